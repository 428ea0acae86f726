//! The heap profile's raw form: allocations made in the window and memory still in use at
//! its end, by allocation site and sampled stack, with Go's heap-profile sample types, so
//! `go tool pprof` reads it as it reads a Go heap profile; and what the probes cost.

use std::collections::HashMap;

use profiler_common::{HeapSiteKey, counter};
use profiler_model::LabelKey;
use profiler_model::labels::ONLY_GREW;
use profiler_model::{
    Account, Cause, Comment, Count, Counted, HeapValue, Interposed, Interposer, Label, Loss,
    LostStack, Measured, ProfileKind, Refused, Subject, Table, Tally, TrapCost,
};

use crate::collect::allocators::go_version;
use crate::collect::collector::RunEnd;
use crate::collect::go_heap::{GoAllocStack, GoHeap};
use crate::collect::heap::HeapRun;
use crate::collect::preload::{Preload, RECORDED_STARTS};
use crate::collect::raw_profile::{RawProfile, RawStack, SiteStacks, StackStart};
use crate::collect::records::comm;

const ALLOC_OBJECTS: usize = HeapValue::AllocObjects.index();
const ALLOC_SPACE: usize = HeapValue::AllocSpace.index();
const INUSE_OBJECTS: usize = HeapValue::InuseObjects.index();
const INUSE_SPACE: usize = HeapValue::InuseSpace.index();
/// Go's sampling rate when a process's `runtime.MemProfileRate` could not be read.
const GO_DEFAULT_RATE: i64 = 512 * 1024;
/// Snapshots of a site's in-use bytes needed before its growth means anything.
const MIN_SNAPSHOTS: usize = 3;

/// The heap profile of what was collected: sample types as [`ProfileKind::Heap`] names
/// them (`inuse_space` the default); labels `pid`, `comm`, and `trend` on sites whose
/// memory in use only grew.
pub fn raw(
    heap: &HeapRun,
    stacks: &SiteStacks<HeapSiteKey>,
    go_heap: &GoHeap,
    run: &RunEnd<'_>,
) -> RawProfile {
    let mut raw = RawProfile::new(ProfileKind::Heap, accounting(run, heap, go_heap));
    let mut live: HashMap<HeapSiteKey, (u64, u64)> = HashMap::new();
    for (key, block) in &heap.live {
        let site = HeapSiteKey {
            pid: key.pid,
            _pad: 0,
            ret: block.ret,
        };
        let entry = live.entry(site).or_default();
        entry.0 += 1;
        entry.1 += block.size;
    }
    for (site, &(objects, bytes)) in &heap.interposed_in_use {
        let entry = live.entry(*site).or_default();
        entry.0 += objects;
        entry.1 += bytes;
    }
    let growing = only_growing(&heap.timeline);
    let mut stacks_of = stacks.by_site();
    let mut sites: Vec<_> = heap.sites.iter().collect();
    sites.sort_by_key(|(key, _)| (key.pid, key.ret));
    for (key, value) in sites {
        let (objects, bytes) = live.get(key).copied().unwrap_or_default();
        let mut labels = vec![
            Label::num(LabelKey::Pid, i64::from(key.pid)),
            Label::str(LabelKey::Comm, comm(&value.comm)),
        ];
        if growing.contains_key(key) {
            labels.push(Label::str(LabelKey::Trend, ONLY_GREW));
        }
        let sampled = stacks_of.remove(key).unwrap_or_default();
        let totals = [value.allocs, value.bytes, objects, bytes];
        raw.add_site(&sampled, LostStack::RingBufferFull, &totals, &labels);
    }
    add_go(heap, go_heap, &mut raw);
    raw
}

/// The Go runtime's sampled allocations, weighted as Go weights them.
fn add_go(heap: &HeapRun, go_heap: &GoHeap, raw: &mut RawProfile) {
    let first_go = raw.samples.len();
    let rate_of = |pid: u32| go_rate(go_heap, heap, pid).unwrap_or(GO_DEFAULT_RATE);
    // Totals per stack first: Go scales a stack's counts by its average object size.
    let mut by_stack: HashMap<GoAllocStack, [u64; 4]> = HashMap::new();
    for ((stack, size), &count) in &go_heap.allocs {
        let totals = by_stack.entry(stack.clone()).or_default();
        totals[ALLOC_OBJECTS] += count;
        totals[ALLOC_SPACE] += count * size;
    }
    for (stack, size) in go_heap.live() {
        let totals = by_stack.entry(stack.clone()).or_default();
        totals[INUSE_OBJECTS] += 1;
        totals[INUSE_SPACE] += size;
    }
    let mut stacks: Vec<_> = by_stack.into_iter().collect();
    stacks.sort_by(|(a, _), (b, _)| {
        (a.pid, a.user.order(), &a.program).cmp(&(b.pid, b.user.order(), &b.program))
    });
    for (stack, totals) in stacks {
        let rate = rate_of(stack.pid);
        let (alloc_objects, alloc_space) =
            scale_heap_sample(totals[ALLOC_OBJECTS], totals[ALLOC_SPACE], rate);
        let (inuse_objects, inuse_space) =
            scale_heap_sample(totals[INUSE_OBJECTS], totals[INUSE_SPACE], rate);
        let labels = vec![
            Label::num(LabelKey::Pid, i64::from(stack.pid)),
            Label::str(LabelKey::Comm, comm(&stack.comm)),
        ];
        raw.add_labeled(
            RawStack::user(stack.user),
            vec![alloc_objects, alloc_space, inuse_objects, inuse_space],
            labels,
            stack.program,
        );
    }
    // Go's heap profile starts each stack past the runtime's allocation frames.
    for sample in &mut raw.samples[first_go..] {
        sample.start = StackStart::GoHeap;
    }
}

/// `runtime.MemProfileRate` of a Go process: as its sampling events read it, else as
/// last read from its memory.
fn go_rate(go_heap: &GoHeap, heap: &HeapRun, pid: u32) -> Option<i64> {
    let from_events = go_heap.rates.get(&pid).map(|&r| r as i64);
    let from_memory = || heap.probes.go.iter().find(|t| t.pid == pid)?.rate;
    from_events.or_else(from_memory)
}

/// Go's `scaleHeapSample`: a stack's sampled `count` objects of `bytes` in total stand for
/// `1 / (1 - e^(-avg/rate))` times as many, since an object of `avg` bytes is sampled with
/// probability `1 - e^(-avg/rate)`.
pub fn scale_heap_sample(count: u64, bytes: u64, rate: i64) -> (i64, i64) {
    if count == 0 || bytes == 0 {
        return (0, 0);
    }
    if rate <= 1 {
        return (count as i64, bytes as i64);
    }
    let average = bytes as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-average / rate as f64).exp());
    ((count as f64 * scale) as i64, (bytes as f64 * scale) as i64)
}

/// Sites whose in-use bytes never fell and rose over the window, with their growth.
pub fn only_growing(timeline: &[HashMap<HeapSiteKey, i64>]) -> HashMap<HeapSiteKey, i64> {
    let mut growing = HashMap::new();
    let Some(last) = timeline.last() else {
        return growing;
    };
    for (&site, &end) in last {
        let series: Vec<i64> = timeline
            .iter()
            .filter_map(|snapshot| snapshot.get(&site).copied())
            .collect();
        if series.len() < MIN_SNAPSHOTS || end <= 0 {
            continue;
        }
        let never_fell = series.windows(2).all(|w| w[1] >= w[0]);
        if never_fell && end > series[0] {
            growing.insert(site, end - series[0]);
        }
    }
    growing
}

/// The `cost:` account: how many traps the targets took and, from the trap cost measured
/// at the start, what they cost them.
fn cost(run: &RunEnd<'_>, heap: &HeapRun, traps: u64) -> Account {
    let c = run.counters;
    let seconds = run.duration.as_secs_f64().max(1e-9);
    let measured = heap.probes.trap_cost.as_ref().map(|cost| {
        let allocs = c.get(counter::HEAP_ALLOCS);
        let frees = c.get(counter::HEAP_FREES) + c.get(counter::HEAP_FREES_UNKNOWN);
        let stacks = heap.preload.as_ref().map_or(0, |p| p.counts().stacks);
        let entries = frees + c.get(counter::GO_ALLOCS) + stacks;
        let spent = cost.entry_and_return * u32::try_from(allocs).unwrap_or(u32::MAX)
            + cost.entry * u32::try_from(entries).unwrap_or(u32::MAX);
        Measured {
            allocation_us: cost.entry_and_return.as_secs_f64() * 1e6,
            free_us: cost.entry.as_secs_f64() * 1e6,
            spent_seconds: spent.as_secs_f64(),
            stepped: (heap.probes.stepped > 0)
                .then_some((heap.probes.stepped as u64, heap.probes.entry_points as u64)),
        }
    });
    Account::Cost(TrapCost {
        traps,
        seconds,
        per_second: traps as f64 / seconds,
        interposer: heap.preload.is_some(),
        measured,
    })
}

/// The `interposed:` account: what the `LD_PRELOAD` interposer counted, or that it did not
/// start.
fn interposed(preload: &Preload) -> Account {
    let (pids, starts) = preload.processes();
    let n = preload.counts();
    let refused = preload.refused();
    let refused = (refused.total() > 0).then(|| Refused {
        total: refused.total(),
        foreign: refused.foreign_pids,
        impossible: refused.impossible,
        header: refused.header,
    });
    const SHOWN: usize = 8;
    let mut shown: Vec<String> = pids.iter().take(SHOWN).map(u32::to_string).collect();
    if pids.len() > SHOWN {
        shown.push("...".to_owned());
    }
    let started = (!pids.is_empty()).then(|| Interposer {
        // Only the first starts are recorded by pid.
        at_least: starts as usize > RECORDED_STARTS,
        processes: pids.len() as u64,
        pids: shown.join(", "),
        allocations: n.allocs,
        frees: n.frees,
        frees_unknown: n.frees_unknown,
        lost: vec![
            Loss {
                count: n.lost_sites,
                cause: Cause::MapFull(Table::InterposerSites),
            },
            Loss {
                count: n.lost_live,
                cause: Cause::MapFull(Table::InterposerLive),
            },
        ],
        stacks: n.stacks,
        every: crate::collect::preload::STACK_SAMPLE_EVERY,
    });
    Account::Interposed(Interposed { started, refused })
}

fn accounting(run: &RunEnd<'_>, heap: &HeapRun, go_heap: &GoHeap) -> Vec<Comment> {
    let c = run.counters;
    let files: Vec<&str> = heap.probes.files.iter().map(String::as_str).collect();
    let traps = c.get(counter::HEAP_ALLOCS) * 2
        + c.get(counter::HEAP_FREES)
        + c.get(counter::HEAP_FREES_UNKNOWN)
        + c.get(counter::GO_ALLOCS)
        + heap.preload.as_ref().map_or(0, |p| p.counts().stacks);
    let method = format!(
        "traced: uprobes on {} allocator entry points (malloc, calloc, realloc, \
             reallocarray, free, posix_memalign, aligned_alloc, memalign, valloc, pvalloc and \
             jemalloc, mimalloc, tcmalloc names; C++ operator new goes through malloc) in {}; \
             the Go runtime's own sampled profiling events (mProf_Malloc, freeSpecial); stacks \
             are sampled 1 allocation in {} per site and CPU",
        heap.probes.entry_points,
        if files.is_empty() {
            "no file".to_owned()
        } else {
            files.join(", ")
        },
        profiler_common::HEAP_STACK_SAMPLE_EVERY
    );
    let mut lines = vec![
        cost(run, heap, traps),
        Account::Tally(Tally {
            subject: Subject::Allocations,
            counts: vec![
                Count {
                    count: c.get(counter::HEAP_ALLOCS),
                    what: Counted::Allocated,
                },
                Count {
                    count: c.get(counter::HEAP_FREES),
                    what: Counted::Freed,
                },
                Count {
                    count: c.get(counter::HEAP_FREES_UNKNOWN),
                    what: Counted::FreedFromBefore,
                },
            ],
            lost: vec![
                Loss {
                    count: c.get(counter::LOST_HEAP_SITES),
                    cause: Cause::MapFull(Table::Sites),
                },
                Loss {
                    count: c.get(counter::LOST_HEAP_LIVE),
                    cause: Cause::MapFull(Table::Live {
                        capacity: u64::from(profiler_common::MAX_HEAP_LIVE),
                    }),
                },
                Loss {
                    count: c.get(counter::LOST_HEAP_SLOT),
                    cause: Cause::Unpaired,
                },
            ],
            stacks_taken: c.get(counter::HEAP_STACKS),
            stacks_lost: c.get(counter::LOST_HEAP_STACK),
        }),
        Account::Note(
            "in use: blocks allocated in the window and not freed by its end (memory \
             allocated before the window is not counted)"
                .to_owned(),
        ),
    ];
    if let Some(preload) = &heap.preload {
        lines.push(interposed(preload));
    }
    for target in &heap.probes.go {
        let go = &target.runtime;
        let rate = go_rate(go_heap, heap, target.pid);
        // A program may turn profiling on by setting the rate itself.
        let disabled = match rate {
            Some(rate) => rate <= 0,
            None => go.profiling_disabled,
        };
        if disabled {
            lines.push(Account::Note(format!(
                "note: Go memory profiling is disabled in pid {} ({}, {}): the linker turns \
                 it off when nothing references runtime.MemProfile; import runtime/pprof or \
                 set runtime.MemProfileRate to profile its Go allocations",
                target.pid, target.path, go.version
            )));
        } else {
            let rate = rate.unwrap_or(GO_DEFAULT_RATE);
            let (major, minor) = go_version(&go.version);
            lines.push(Account::GoHeap(profiler_model::GoHeap {
                pid: u64::from(target.pid),
                path: target.path.clone(),
                version: (u64::from(major), u64::from(minor)),
                allocations: c.get(counter::GO_ALLOCS),
                rate: u64::try_from(rate).unwrap_or(0),
                frees_before: go_heap.frees_before,
                lost: c.get(counter::LOST_GO_EVENTS),
            }));
        }
    }
    for failure in &heap.probes.failures {
        lines.push(Account::Note(format!("not probed: {failure}")));
    }
    let mut comments = vec![Comment::Method(method)];
    comments.extend(lines.into_iter().map(Comment::Account));
    comments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_as_go_does() {
        assert_eq!(scale_heap_sample(10, 320, 1), (10, 320));
        assert_eq!(scale_heap_sample(0, 0, 512 * 1024), (0, 0));
        // An object as large as the rate is sampled with probability 1 - 1/e.
        let (objects, bytes) = scale_heap_sample(1000, 1000 * 524_288, 524_288);
        assert_eq!(objects, 1581);
        assert_eq!(bytes, 1581 * 524_288 + bytes % 524_288);
    }

    #[test]
    fn growth_is_a_series_that_never_fell() {
        let site = |ret| HeapSiteKey {
            pid: 1,
            _pad: 0,
            ret,
        };
        let snapshots: Vec<HashMap<HeapSiteKey, i64>> = [[10, 5], [20, 9], [30, 4], [40, 6]]
            .iter()
            .map(|v| HashMap::from([(site(1), v[0]), (site(2), v[1])]))
            .collect();
        let growing = only_growing(&snapshots);
        assert_eq!(growing.get(&site(1)), Some(&30));
        assert!(!growing.contains_key(&site(2)));
        assert!(only_growing(&snapshots[..2]).is_empty());
    }
}
