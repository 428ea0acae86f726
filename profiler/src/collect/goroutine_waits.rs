//! The goroutine waits of the blocking profile: each park of a goroutine until it was made
//! ready, by goroutine stack and the runtime's wait reason, as Go's own block profile
//! counts them (`contentions`, `delay`). The probes and the Go binaries they are placed
//! in are [`GoTracer`]'s.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use profiler_common::{GoWaitKey, counter, sample_kind};
use profiler_model::LabelKey;
use profiler_model::labels::{IN_PROGRESS, WaitClass, Waiters};
use profiler_model::{
    Account, Cause, Comment, Count, Counted, GoroutineCost, Label, Loss, LostStack, ProfileKind,
    Subject, Table, Tally,
};

use crate::collect::collector::{Collector, RunEnd, Sample, Seen};
use crate::collect::goroutines::{GoTracer, GoroutineWaits};
use crate::collect::probes::Probes;
use crate::collect::raw_profile::{RawProfile, SiteStacks, StackStart};
use crate::collect::records::comm;
use crate::config::Target;

/// The `outcome` of a goroutine wait that ended with the goroutine made ready.
const READIED: &str = "woken";

/// Traces goroutine waits in the target's Go processes.
pub struct GoroutineCollector {
    tracer: GoTracer,
    stacks: SiteStacks<GoWaitKey>,
}

impl GoroutineCollector {
    /// Loads the goroutine probes and places them in the Go programs `target` runs now
    /// (the whole host's) or will run (a command's program, found on `PATH`).
    ///
    /// # Errors
    /// When the kernel refuses the programs.
    pub fn start(probes: &mut Probes, target: &Target) -> Result<Self> {
        let mut tracer = GoTracer::default();
        tracer.load(probes)?;
        match target {
            Target::Host => tracer.scan_host(probes),
            Target::Command(argv) => {
                if let Some(program) = argv.first() {
                    tracer.prepare_command(probes, program);
                }
            }
            Target::Pids(_) => {}
        }
        Ok(Self {
            tracer,
            stacks: SiteStacks::default(),
        })
    }
}

impl Collector for GoroutineCollector {
    fn takes(&self, kind: u32) -> bool {
        kind == sample_kind::GO_WAIT
    }

    fn attach(&mut self, probes: &mut Probes, seen: Seen) {
        match seen {
            Seen::Target(pid) | Seen::Exec(pid) => self.tracer.consider(probes, pid),
            Seen::NewCode(pid) => self.tracer.note_pid(probes, pid),
        }
    }

    fn take(&mut self, sample: &Sample) {
        self.stacks
            .count(sample.header.go_site, sample.user, &sample.program);
    }

    fn close(&mut self, probes: &mut Probes, _window_end_ktime_ns: u64) {
        self.tracer.close(probes);
    }

    /// One sample per wait stack, with exact totals, labelled `pid`, `waiters` (one
    /// goroutine or several), `reason` (the runtime's name), `class`, `comm` and `outcome`
    /// (`woken`, or `in progress` for a goroutine still parked at the end, counted up to
    /// it, with its id as `goroutine`).
    fn finish(self: Box<Self>, probes: &mut Probes, run: &RunEnd<'_>) -> Result<RawProfile> {
        let mut go = self.tracer.finish(probes)?;
        go.waits.retain(|(key, _)| run.keeps(key.pid));
        go.parked.retain(|entry| run.keeps(entry.site.pid));
        let mut raw = RawProfile::new(ProfileKind::Block, accounting(run, &go));
        let stacks_of = self.stacks.by_site();
        for (key, value) in &go.waits {
            if value.waits == 0 {
                continue;
            }
            let sampled = stacks_of.get(key).map_or(&[][..], Vec::as_slice);
            let waiters = if value.others > 0 {
                Waiters::Several
            } else {
                Waiters::One
            };
            let labels = labels(&go, key, &comm(&value.comm), waiters, None, READIED);
            let totals = [value.waits, value.nanos];
            raw.add_site(sampled, LostStack::RingBufferFull, &totals, &labels);
        }
        let recorded: HashSet<GoWaitKey> = go.waits.iter().map(|(key, _)| *key).collect();
        // A goroutine parked since before its first finished wait has no comm of its own:
        // its process's.
        let comms: HashMap<u32, String> = go
            .waits
            .iter()
            .map(|(key, value)| (key.pid, comm(&value.comm)))
            .collect();
        for parked in &go.parked {
            let key = &parked.site;
            // Counted up to the end of the window: the wait goes on, the profile does not.
            let nanos = run.window_end_ktime_ns.saturating_sub(parked.start_ns);
            let missing = if recorded.contains(key) {
                LostStack::RingBufferFull
            } else {
                LostStack::MapFull
            };
            let sampled = stacks_of.get(key).map_or(&[][..], Vec::as_slice);
            let comm = comms.get(&key.pid).map_or("", String::as_str);
            let labels = labels(&go, key, comm, Waiters::One, Some(parked.goid), IN_PROGRESS);
            raw.add_site(sampled, missing, &[1, nanos], &labels);
        }
        raw.start_stacks_at(StackStart::GoBlock);
        Ok(raw)
    }
}

/// The name of a wait reason of process `pid`, from its binary's table.
fn reason_name(go: &GoroutineWaits, pid: u32, reason: u32) -> String {
    go.binaries
        .get(&pid)
        .and_then(|b| b.reasons.get(reason as usize))
        .filter(|name| !name.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("wait reason {reason}"))
}

/// A site's labels; `goroutine` is the id of a goroutine still parked at the end (a
/// completed site's goroutines are not kept: see [`Waiters`]).
fn labels(
    go: &GoroutineWaits,
    key: &GoWaitKey,
    comm: &str,
    waiters: Waiters,
    goroutine: Option<u64>,
    outcome: &str,
) -> Vec<Label> {
    let reason = reason_name(go, key.pid, key.reason);
    let mut labels = vec![Label::num(LabelKey::Pid, i64::from(key.pid))];
    if let Some(goid) = goroutine {
        labels.push(Label::num(
            LabelKey::Goroutine,
            i64::try_from(goid).unwrap_or(i64::MAX),
        ));
    }
    labels.extend([
        Label::str(LabelKey::Waiters, waiters.label()),
        Label::str(LabelKey::Comm, comm),
        Label::str(LabelKey::Class, WaitClass::of_reason(&reason).label()),
        Label::str(LabelKey::Reason, reason),
        Label::str(LabelKey::Outcome, outcome),
    ]);
    labels
}

/// What the goroutine tracing recorded and lost, for the profile's comments.
fn accounting(run: &RunEnd<'_>, go: &GoroutineWaits) -> Vec<Comment> {
    let c = run.counters;
    let mut versions: Vec<String> = go
        .binaries
        .iter()
        .map(|(pid, b)| format!("pid {pid} ({})", b.version))
        .collect();
    versions.sort();
    let ended_unseen = c.get(counter::GO_END_UNSEEN) + go.ended_unseen;
    // Said in the terminal too, unlike the other profiles' `traced:` lines.
    let method = format!(
        "goroutine waits (uprobes on runtime.gopark and runtime.ready) of {} Go \
         process(es){}{}",
        go.binaries.len(),
        if versions.is_empty() { "" } else { ": " },
        versions.join(", ")
    );
    let tally = Tally {
        subject: Subject::GoroutineWaits,
        counts: vec![
            Count {
                count: c.get(counter::GO_WAITS),
                what: Counted::Completed,
            },
            Count {
                count: go.parked.len() as u64,
                what: Counted::Parked,
            },
            Count {
                count: ended_unseen,
                what: Counted::EndedUnseen,
            },
        ],
        lost: vec![
            Loss {
                count: c.get(counter::LOST_GO_WAIT_FULL),
                cause: Cause::MapFull(Table::Wait),
            },
            Loss {
                count: c.get(counter::LOST_GO_PARKED_FULL),
                cause: Cause::MapFull(Table::Parked),
            },
        ],
        stacks_taken: c.get(counter::GO_STACKS),
        stacks_lost: c.get(counter::LOST_GO_STACK),
    };
    let (parks, wakes) = (c.get(counter::GO_PARK_HITS), c.get(counter::GO_READY_HITS));
    let seconds = run.duration.as_secs_f64().max(1e-9);
    let trap = crate::collect::uprobe_check::running_kernel().trap;
    let cost = GoroutineCost {
        parks,
        wakes,
        seconds,
        per_second: (parks + wakes) as f64 / seconds,
        measured: trap.map(|trap| {
            let us = trap.as_secs_f64() * 1e6;
            (us, us * (parks + wakes) as f64 / 1e6)
        }),
    };
    [
        Account::Note(method),
        Account::Tally(tally),
        Account::GoroutineCost(cost),
    ]
    .into_iter()
    .chain(go.notes.iter().cloned().map(Account::Note))
    .map(Comment::Account)
    .collect()
}
