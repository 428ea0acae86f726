//! Turns the kernel's raw stacks (ids into the stack map) into interned profile stacks:
//! kernel frames, then user frames with the frames a frame-pointer walk skipped restored,
//! with markers where a stack was lost. Every profile builds its stacks here.
//!
//! Before the first stack is interned, [`StackResolver::prepare_run`] goes over every stack
//! the run's profiles will intern: it restores their skipped frames while the unwinder has
//! the files' unwind tables loaded, then symbolizes all their addresses in one batch per
//! file (see [`crate::symbolize`]), so that each file is read once and its parsed data
//! freed before the next. Interning then only reads the results.

use std::collections::HashMap;
use std::time::Instant;

use crate::config::Config;
use crate::probes::RawStacks;
use crate::procmaps::ProcessTable;
use crate::profile::{Label, Line, Location, Mapping, ProfileBuilder};
use crate::session::RunOutcome;
use crate::symbolize::{self, KERNEL_MAPPING, Symbolizer};
use crate::unwind::{LeafUnwinder, StackTop};

const EEXIST: i32 = 17;
const ENOMEM: i32 = 12;

/// A user stack sampled at a call site: its id, how often it was seen, and the top of the
/// stack copied with its first sighting.
#[derive(Debug, Clone, Copy)]
pub struct SampledStack<'a> {
    /// The stack id, or a negative error.
    pub id: i32,
    /// Times it was sampled at the site.
    pub seen: u64,
    /// The user stack's top at the first sighting.
    pub top: Option<&'a StackTop>,
}

/// A key of a map of sampled stacks: a call site and one user stack seen at it.
pub trait SiteStackKey {
    /// The call site.
    type Site: Copy + Eq + std::hash::Hash;
    /// The site part of the key.
    fn site(&self) -> Self::Site;
    /// The stack id part of the key.
    fn stack_id(&self) -> i32;
}

impl SiteStackKey for profiler_common::IoStackKey {
    type Site = profiler_common::IoKey;
    fn site(&self) -> Self::Site {
        self.site
    }
    fn stack_id(&self) -> i32 {
        self.user_stack_id
    }
}

impl SiteStackKey for profiler_common::BlockStackKey {
    type Site = profiler_common::BlockKey;
    fn site(&self) -> Self::Site {
        self.site
    }
    fn stack_id(&self) -> i32 {
        self.user_stack_id
    }
}

/// The stacks sampled at each call site, with how often each was seen and its stack top.
pub fn stacks_by_site<'a, K: SiteStackKey + Eq + std::hash::Hash>(
    samples: &'a [(K, u64)],
    tops: &'a HashMap<K, StackTop>,
) -> HashMap<K::Site, Vec<SampledStack<'a>>> {
    let mut by_site: HashMap<K::Site, Vec<SampledStack<'a>>> = HashMap::new();
    for (key, seen) in samples {
        by_site.entry(key.site()).or_default().push(SampledStack {
            id: key.stack_id(),
            seen: *seen,
            top: tops.get(key),
        });
    }
    by_site
}

/// A stack that a profile will intern: what [`StackResolver::prepare`] needs to find its
/// addresses.
#[derive(Debug, Clone, Copy)]
pub struct PendingStack<'a> {
    /// The process sampled.
    pub pid: u32,
    /// The user stack id, or a negative error.
    pub user_stack_id: i32,
    /// The kernel stack id, or a negative error.
    pub kernel_stack_id: i32,
    /// The user stack's top copied with the sample.
    pub top: Option<&'a StackTop>,
}

/// The frames the frame-pointer walk skipped, as restored from a stack top, innermost first.
type Restored<'run> = (&'run StackTop, Vec<u64>);

/// Resolves stacks of one run into locations of profiles being built.
pub struct StackResolver<'run> {
    stacks: &'run RawStacks,
    processes: &'run ProcessTable,
    symbolizer: Symbolizer,
    unwinder: LeafUnwinder,
    /// The frames restored above the leaf of each prepared stack, by (pid, user stack id,
    /// stack pointer).
    skipped: HashMap<(u32, i32, u64), Vec<Restored<'run>>>,
    /// Whether [`Self::prepare_run`] was called.
    prepared_run: bool,
}

impl<'run> StackResolver<'run> {
    /// A resolver over the stacks and process snapshots of one run.
    pub fn new(stacks: &'run RawStacks, processes: &'run ProcessTable) -> Self {
        Self {
            stacks,
            processes,
            symbolizer: Symbolizer::new(),
            unwinder: LeafUnwinder::default(),
            skipped: HashMap::new(),
            prepared_run: false,
        }
    }

    /// The process snapshots of the run.
    pub fn processes(&self) -> &'run ProcessTable {
        self.processes
    }

    /// Gets every stack the profiles of `run` that `config` asks for will intern ready, as
    /// [`Self::prepare`] does; only the first call does anything, so each profile can make
    /// it before interning.
    pub fn prepare_run(&mut self, run: &'run RunOutcome, config: &Config) {
        if self.prepared_run {
            return;
        }
        self.prepared_run = true;
        // As the profiles do: in command mode the profiler is a target for the instant it
        // forks the command, and its own samples are left out.
        let skip = |pid: u32| config.is_own_process(pid);
        let profiles = config.profiles;
        let cpu = run
            .cpu_samples
            .iter()
            .filter(|(key, _)| profiles.cpu && !skip(key.pid))
            .map(|(key, _)| PendingStack {
                pid: key.pid,
                user_stack_id: key.user_stack_id,
                kernel_stack_id: key.kernel_stack_id,
                top: run.stack_tops.cpu.get(key),
            });
        // Call sites intern their sampled user stacks alone (see `add_site`).
        let io = run
            .io_stack_samples
            .iter()
            .filter(|(key, _)| profiles.io && !skip(key.site.pid))
            .map(|(key, _)| PendingStack {
                pid: key.site.pid,
                user_stack_id: key.user_stack_id,
                kernel_stack_id: -1,
                top: run.stack_tops.io.get(key),
            });
        let block = run
            .block_stack_samples
            .iter()
            .filter(|(key, _)| profiles.block && !skip(key.site.pid))
            .map(|(key, _)| PendingStack {
                pid: key.site.pid,
                user_stack_id: key.user_stack_id,
                kernel_stack_id: -1,
                top: run.stack_tops.block.get(key),
            });
        self.prepare(cpu.chain(io).chain(block));
    }

    /// Gets every stack in `stacks`, which are about to be interned, ready: first their
    /// addresses are gathered, with the frames the frame-pointer walk skipped restored and
    /// kept for [`Self::intern`]; then they are symbolized in one batch per file, a file at a
    /// time. Interning a stack that was not prepared still works, but symbolizes its
    /// addresses one by one, parsing their files each time.
    pub fn prepare(&mut self, stacks: impl IntoIterator<Item = PendingStack<'run>>) {
        let started = Instant::now();
        // What the run freed (the maps read at the end of the window) goes back before the
        // unwinder reads whole files, which cannot reuse it.
        symbolize::release_freed_memory();
        let mut count = 0;
        for stack in stacks {
            count += 1;
            let (pid, id) = (stack.pid, stack.user_stack_id);
            if let Some(top) = stack.top
                && !self.frames(id).is_empty()
                && self.cached_skipped(pid, id, top).is_none()
            {
                let skipped = self.unwind(pid, id, top);
                self.skipped
                    .entry((pid, id, top.sp))
                    .or_default()
                    .push((top, skipped));
            }
            let user = self.user_addresses(pid, id, stack.top);
            self.request(pid, stack.kernel_stack_id, &user);
        }
        // The unwinder holds the files it read (whole ELF files, some of hundreds of MiB)
        // and is not needed again: the skipped frames are kept above. Freed before the
        // symbolizer parses files of its own.
        self.unwinder = LeafUnwinder::default();
        let unwound = started.elapsed();
        self.symbolizer.resolve_requests();
        log::debug!(
            "prepared {count} stacks in {:?}: addresses gathered in {unwound:?}",
            started.elapsed()
        );
    }

    /// Interns the stack of a sample of process `pid` into `builder`, leaf first: kernel
    /// frames, then user frames (with the callers the frame-pointer walk skipped restored
    /// from `top`, the user stack's top copied with the sample). Never empty: a sample
    /// without any frame gets `[unknown]`.
    ///
    /// Reads what [`Self::prepare_run`] (or [`Self::prepare`]) found; a stack they were not
    /// given is unwound and symbolized on its own, which is slow.
    pub fn intern(
        &mut self,
        builder: &mut ProfileBuilder,
        pid: u32,
        user_stack_id: i32,
        kernel_stack_id: i32,
        top: Option<&StackTop>,
    ) -> usize {
        let user = self.user_addresses(pid, user_stack_id, top);
        let mut locations = Vec::new();
        for (i, &addr) in self.frames(kernel_stack_id).iter().enumerate() {
            let lines = self.symbolizer.kernel(addr, i > 0);
            // Interned on first use, so that a user binary can be pprof's main mapping.
            let mapping = builder.mapping(kernel_mapping());
            locations.push(builder.location(Location {
                address: addr,
                mapping: Some(mapping),
                lines,
                kernel: true,
            }));
        }
        if let Some(reason) = lost_stack(kernel_stack_id) {
            locations
                .push(builder.location(marker(&format!("[kernel stack lost: {reason}]"), true)));
        }
        let process = self.processes.get(pid);
        for (addr, call_site) in user {
            let frame = self.symbolizer.user(process, addr, call_site);
            let mapping = frame.mapping.map(|m| builder.mapping(m));
            locations.push(builder.location(Location {
                address: addr,
                mapping,
                lines: frame.lines,
                kernel: false,
            }));
        }
        if let Some(reason) = lost_stack(user_stack_id) {
            locations
                .push(builder.location(marker(&format!("[user stack lost: {reason}]"), false)));
        }
        if locations.is_empty() {
            locations.push(builder.location(marker("[unknown]", false)));
        }
        builder.stack(locations)
    }

    /// Adds the exact totals of a call site of process `pid` to `builder`, split over the
    /// user stacks sampled at it in proportion to how often each was seen; a site whose
    /// samples were all lost gets a lost-stack marker.
    pub fn add_site(
        &mut self,
        builder: &mut ProfileBuilder,
        pid: u32,
        sampled: &[SampledStack<'_>],
        totals: &[u64],
        labels: &[Label],
    ) {
        let lost = [SampledStack {
            id: -ENOMEM,
            seen: 1,
            top: None,
        }];
        let sampled = if sampled.is_empty() {
            &lost[..]
        } else {
            sampled
        };
        let weights: Vec<u64> = sampled.iter().map(|s| s.seen).collect();
        let shares: Vec<Vec<u64>> = totals.iter().map(|&t| apportion(t, &weights)).collect();
        for (i, stack) in sampled.iter().enumerate() {
            let stack = self.intern(builder, pid, stack.id, -1, stack.top);
            let values: Vec<i64> = shares.iter().map(|share| share[i] as i64).collect();
            builder.add_sample(stack, &values, labels.to_vec());
        }
    }

    /// Asks the symbolizer for the kernel stack's addresses and the user ones not yet
    /// symbolized.
    fn request(&mut self, pid: u32, kernel_stack_id: i32, user: &[(u64, bool)]) {
        for (i, &addr) in self.frames(kernel_stack_id).iter().enumerate() {
            self.symbolizer.request_kernel(addr, i > 0);
        }
        let process = self.processes.get(pid);
        for &(addr, call_site) in user {
            self.symbolizer.request_user(process, addr, call_site);
        }
    }

    /// The user stack's addresses, leaf first, with the frames the frame-pointer walk skipped
    /// above the leaf put back; each with whether it is a return address.
    fn user_addresses(&mut self, pid: u32, id: i32, top: Option<&StackTop>) -> Vec<(u64, bool)> {
        let frames = self.frames(id);
        let Some((&leaf, callers)) = frames.split_first() else {
            return Vec::new();
        };
        let mut addresses = vec![(leaf, false)];
        if let Some(top) = top {
            match self.cached_skipped(pid, id, top) {
                Some(skipped) => addresses.extend(skipped.iter().map(|&addr| (addr, true))),
                None => addresses.extend(self.unwind(pid, id, top).into_iter().map(|a| (a, true))),
            }
        }
        addresses.extend(callers.iter().map(|&addr| (addr, true)));
        addresses
    }

    /// The frames the frame-pointer walk skipped above the leaf of user stack `id`, found
    /// from `top`, innermost first.
    fn unwind(&mut self, pid: u32, id: i32, top: &StackTop) -> Vec<u64> {
        let Some((&leaf, callers)) = self.frames(id).split_first() else {
            return Vec::new();
        };
        let Some(process) = self.processes.get(pid) else {
            return Vec::new();
        };
        let mut skipped = self.unwinder.skipped_frames(process, leaf, top, callers);
        // The walk found the last of them itself when the chain rejoined it early.
        if let Some(rejoined) = skipped
            .iter()
            .position(|&addr| callers.first() == Some(&addr))
        {
            skipped.truncate(rejoined);
        }
        skipped
    }

    /// The skipped frames [`Self::prepare`] restored for a stack, if it prepared it.
    fn cached_skipped(&self, pid: u32, id: i32, top: &StackTop) -> Option<&[u64]> {
        self.skipped
            .get(&(pid, id, top.sp))?
            .iter()
            .find(|(cached, _)| std::ptr::eq(*cached, top) || *cached == top)
            .map(|(_, skipped)| skipped.as_slice())
    }

    fn frames(&self, id: i32) -> &'run [u64] {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.stacks.frames.get(&id))
            .map_or(&[], Vec::as_slice)
    }
}

fn kernel_mapping() -> Mapping {
    Mapping {
        start: 0,
        limit: u64::MAX,
        file_offset: 0,
        path: KERNEL_MAPPING.to_owned(),
        build_id: None,
    }
}

/// Why a stack id is missing, when it was lost rather than absent (a kernel thread has no
/// user stack; a sample in user mode has no kernel stack).
fn lost_stack(id: i32) -> Option<&'static str> {
    match -id {
        EEXIST => Some("stack-map collision"),
        ENOMEM => Some("stack map full"),
        _ => None,
    }
}

fn marker(name: &str, kernel: bool) -> Location {
    Location {
        address: 0,
        mapping: None,
        lines: vec![Line {
            function: name.to_owned(),
            file: None,
            line: 0,
        }],
        kernel,
    }
}

/// Splits `total` in proportion to `weights`, exactly: the parts add up to `total`, and the
/// remainder goes to the largest fractional parts.
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        let mut parts = vec![0; weights.len()];
        if let Some(first) = parts.first_mut() {
            *first = total;
        }
        return parts;
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let scaled = u128::from(total) * u128::from(w);
            ((scaled / sum) as u64, scaled % sum)
        })
        .collect();
    let mut parts: Vec<u64> = exact.iter().map(|&(q, _)| q).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ValueType;
    use std::time::{Duration, SystemTime};

    fn builder() -> ProfileBuilder {
        ProfileBuilder::new(
            "t",
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        )
    }

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(10, &[1]), vec![10]);
        assert_eq!(apportion(10, &[1, 1]), vec![5, 5]);
        assert_eq!(apportion(10, &[1, 2]), vec![3, 7]);
        assert_eq!(apportion(7, &[0, 0]), vec![7, 0]);
        let parts = apportion(1_000_003, &[3, 5, 7]);
        assert_eq!(parts.iter().sum::<u64>(), 1_000_003);
        assert_eq!(parts, vec![200_001, 333_334, 466_668]);
    }

    #[test]
    fn lost_stacks_become_marker_frames() {
        let stacks = RawStacks::default();
        let processes = ProcessTable::default();
        let mut resolver = StackResolver::new(&stacks, &processes);
        let mut b = builder();
        let stack = resolver.intern(&mut b, 1, -EEXIST, -ENOMEM, None);
        let profile = b.build();
        assert_eq!(
            profile.stack_functions(stack),
            vec![
                "[user stack lost: stack-map collision]",
                "[kernel stack lost: stack map full]"
            ]
        );
    }

    #[inline(never)]
    fn a_leaf() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn prepared_stacks_intern_as_unprepared_ones_do() {
        let mut processes = ProcessTable::default();
        assert!(processes.snapshot(std::process::id()));
        let leaf = a_leaf as fn() -> _ as usize as u64;
        let caller = prepared_stacks_intern_as_unprepared_ones_do as fn() as usize as u64 + 8;
        let libc = libc::getppid as unsafe extern "C" fn() -> _ as usize as u64;
        let stacks = RawStacks {
            frames: [
                (1, vec![leaf, caller]),
                (2, vec![libc + 4, caller, 0x10]),
                (3, vec![libc, 0x1234]),
            ]
            .into(),
        };
        // At a function's entry the return address is at [rsp]: the walk skipped `caller`.
        let top = StackTop {
            sp: 0x7ff0_0000,
            bp: 0,
            words: vec![caller, 0, 0, 0],
        };
        let pid = std::process::id();
        let interned = |prepare: bool| {
            let mut resolver = StackResolver::new(&stacks, &processes);
            let pending =
                [(1, None), (2, None), (3, Some(&top)), (-EEXIST, None)].map(|(id, top)| {
                    PendingStack {
                        pid,
                        user_stack_id: id,
                        kernel_stack_id: -14,
                        top,
                    }
                });
            if prepare {
                resolver.prepare(pending);
            }
            let mut b = builder();
            // A copy of the top, as a caller could hand in, finds what was prepared.
            let top = top.clone();
            let ids: Vec<usize> = pending
                .iter()
                .map(|p| {
                    let top = p.top.map(|_| &top);
                    resolver.intern(&mut b, pid, p.user_stack_id, p.kernel_stack_id, top)
                })
                .collect();
            let profile = b.build();
            let functions: Vec<Vec<String>> = ids
                .iter()
                .map(|&id| {
                    let names = profile.stack_functions(id);
                    names.into_iter().map(str::to_owned).collect()
                })
                .collect();
            (functions, profile.locations, profile.mappings)
        };
        let (functions, locations, mappings) = interned(true);
        assert!(
            functions[0].iter().any(|f| f.contains("a_leaf")),
            "{functions:?}"
        );
        assert_eq!(functions[1].first().map(String::as_str), Some("[unknown]"));
        let restored = "prepared_stacks_intern_as_unprepared_ones_do";
        assert!(
            functions[2].iter().any(|f| f.contains(restored)),
            "{functions:?}"
        );
        assert_eq!(functions[3], vec!["[user stack lost: stack-map collision]"]);
        assert_eq!((functions, locations, mappings), interned(false));
    }

    #[test]
    fn a_sample_without_frames_is_unknown_not_dropped() {
        let stacks = RawStacks::default();
        let processes = ProcessTable::default();
        let mut resolver = StackResolver::new(&stacks, &processes);
        let mut b = builder();
        // -EFAULT: a kernel thread's user stack, not a loss.
        let stack = resolver.intern(&mut b, 1, -14, -14, None);
        assert_eq!(b.build().stack_functions(stack), vec!["[unknown]"]);
    }
}
