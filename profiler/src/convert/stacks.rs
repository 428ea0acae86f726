//! Turns the run's unwound stacks into interned profile stacks: kernel frames, then user
//! frames, with a marker where a user stack could not be read. Every profile builds its
//! stacks here.
//!
//! Before the first stack is interned, [`StackResolver::prepare_run`] (called once, by
//! [`crate::convert::profiles`]) goes over every stack the run's profiles will intern and
//! symbolizes all their addresses in one batch per file (see [`crate::symbolize`]), so
//! that each file is read once and its parsed data freed before the next. Interning then only reads the results.

use std::collections::HashMap;
use std::time::Instant;

use profiler_model::{
    FrameKind, Label, Line, Location, LostStack, Mapping, ProfileBuilder, RawFrame, StackId,
};

use crate::collect::samples::{StackHandle, StackTable, UserStack};
use crate::collect::session::RunOutcome;
use crate::config::ProfileSet;
use crate::process::procmaps::ProcessTable;

/// The [`RawFrame::space`] of kernel frames.
const KERNEL_SPACE: u64 = u64::MAX;
/// The [`RawFrame::space`] of user frames whose process's mappings were never read.
const NO_SPACE: u64 = u64::MAX - 1;
use crate::symbolize::{KERNEL_MAPPING, Symbolizer};

/// A user stack sampled at a call site and how often it was seen there.
#[derive(Debug, Clone, Copy)]
pub struct SampledStack {
    /// The stack.
    pub user: UserStack,
    /// Times it was sampled at the site.
    pub seen: u64,
}

/// The stacks sampled at each call site, with how often each was seen.
pub fn stacks_by_site<K: Copy + Eq + std::hash::Hash>(
    samples: &HashMap<(K, UserStack), u64>,
) -> HashMap<K, Vec<SampledStack>> {
    let mut by_site: HashMap<K, Vec<SampledStack>> = HashMap::new();
    for (&(site, user), &seen) in samples {
        by_site
            .entry(site)
            .or_default()
            .push(SampledStack { user, seen });
    }
    // The same order whatever the hash map's, so profiles come out the same.
    for stacks in by_site.values_mut() {
        stacks.sort_by_key(|s| s.user.order());
    }
    by_site
}

/// Resolves stacks of one run into locations of profiles being built.
pub struct StackResolver<'run> {
    stacks: &'run StackTable,
    processes: &'run ProcessTable,
    symbolizer: Symbolizer,
}

impl<'run> StackResolver<'run> {
    /// A resolver over the stacks and process snapshots of one run, with the default
    /// sources of names.
    #[cfg(test)]
    pub fn new(stacks: &'run StackTable, processes: &'run ProcessTable) -> Self {
        Self::with_symbolizer(stacks, processes, Symbolizer::new())
    }

    /// A resolver naming frames with `symbolizer` (and the sources it was given).
    pub fn with_symbolizer(
        stacks: &'run StackTable,
        processes: &'run ProcessTable,
        symbolizer: Symbolizer,
    ) -> Self {
        Self {
            stacks,
            processes,
            symbolizer,
        }
    }

    /// What the summary says of where names came from (see [`Symbolizer::notes`]).
    pub fn notes(&self) -> Vec<String> {
        self.symbolizer.notes()
    }

    /// The process snapshots of the run.
    pub fn processes(&self) -> &'run ProcessTable {
        self.processes
    }

    /// Symbolizes, in one batch per file, every address of the stacks the profiles of `run`
    /// that `profiles` asks for will intern.
    pub fn prepare_run(&mut self, run: &'run RunOutcome, profiles: ProfileSet) {
        let started = Instant::now();
        let samples = &run.samples;
        let cpu = samples
            .cpu
            .keys()
            .filter(|_| profiles.cpu)
            .map(|key| (key.user, key.kernel));
        // Call sites intern their sampled user stacks alone (see `add_site`).
        let io = samples
            .io
            .keys()
            .filter(|_| profiles.io)
            .map(|(_, user)| (*user, StackTable::EMPTY));
        let block = samples
            .block
            .keys()
            .filter(|_| profiles.block)
            .map(|(_, user)| (*user, StackTable::EMPTY));
        let heap = samples
            .heap
            .keys()
            .filter(|_| profiles.heap)
            .map(|(_, user)| (*user, StackTable::EMPTY));
        let go_heap = samples
            .go_heap
            .allocs
            .keys()
            .filter(|_| profiles.heap)
            .map(|(stack, _)| (stack.user, StackTable::EMPTY));
        let go = samples
            .go
            .keys()
            .filter(|_| profiles.goroutines)
            .map(|(_, user)| (*user, StackTable::EMPTY));
        let mut count = 0;
        for (user, kernel) in cpu
            .chain(io)
            .chain(block)
            .chain(heap)
            .chain(go_heap)
            .chain(go)
        {
            count += 1;
            self.request(user, kernel);
        }
        self.symbolizer.resolve_requests();
        log::debug!("symbolized {count} stacks in {:?}", started.elapsed());
    }

    /// Interns the stack of a sample into `builder`, leaf first: kernel frames, then user
    /// frames, symbolized in the address space they were unwound in. Never empty: a sample
    /// without any frame gets `[unknown]`.
    ///
    /// Reads what [`Self::prepare_run`] symbolized; a stack it was not given is symbolized
    /// on its own, which is slow.
    pub fn intern(
        &mut self,
        builder: &mut ProfileBuilder,
        user: UserStack,
        kernel: StackHandle,
    ) -> StackId {
        let mut locations = Vec::new();
        for (i, &addr) in self.stacks.frames(kernel).iter().enumerate() {
            let frame = RawFrame {
                space: KERNEL_SPACE,
                address: addr,
                call_site: i > 0,
            };
            let symbolizer = &mut self.symbolizer;
            locations.push(builder.frame_location(frame, |builder| {
                let kernel = symbolizer.kernel(addr, i > 0);
                // Interned on first use, so that a user binary can be pprof's main mapping.
                let mapping = builder.mapping(kernel_mapping(kernel.module.as_deref()));
                Location {
                    address: addr,
                    mapping: Some(mapping),
                    lines: kernel.frame.lines,
                    kind: kernel.frame.kind,
                }
            }));
        }
        match user {
            UserStack::Frames { stack, space } => {
                let process = space.and_then(|s| self.processes.space_info(s));
                let jit = space.and_then(|s| self.processes.space_perf_map(s));
                let space = space.map_or(NO_SPACE, |s| u64::from(s.index()));
                for (i, &addr) in self.stacks.frames(stack).iter().enumerate() {
                    let raw = RawFrame {
                        space,
                        address: addr,
                        call_site: i > 0,
                    };
                    let symbolizer = &mut self.symbolizer;
                    locations.push(builder.frame_location(raw, |builder| {
                        let user = symbolizer.user(process, jit, addr, i > 0);
                        let mapping = user.mapping.map(|m| builder.mapping(m));
                        Location {
                            address: addr,
                            mapping,
                            lines: user.frame.lines,
                            kind: user.frame.kind,
                        }
                    }));
                }
            }
            UserStack::Unreadable => {
                locations.push(builder.location(lost(LostStack::Unreadable)));
            }
        }
        if locations.is_empty() {
            locations.push(builder.location(lost(LostStack::NoFrames)));
        }
        builder.stack(locations)
    }

    /// Adds the exact totals of a call site to `builder`, split over the
    /// user stacks sampled at it in proportion to how often each was seen; a site whose
    /// stack samples were all lost gets a marker saying why (`missing`).
    pub fn add_site(
        &mut self,
        builder: &mut ProfileBuilder,
        sampled: &[SampledStack],
        missing: LostStack,
        totals: &[u64],
        labels: &[Label],
    ) {
        if sampled.is_empty() {
            let location = builder.location(lost(missing));
            let stack = builder.stack(vec![location]);
            let values: Vec<i64> = totals.iter().map(|&t| t as i64).collect();
            builder.add_sample(stack, &values, labels.to_vec());
            return;
        }
        let weights: Vec<u64> = sampled.iter().map(|s| s.seen).collect();
        let shares: Vec<Vec<u64>> = totals.iter().map(|&t| apportion(t, &weights)).collect();
        for (i, stack) in sampled.iter().enumerate() {
            let stack = self.intern(builder, stack.user, StackTable::EMPTY);
            let values: Vec<i64> = shares.iter().map(|share| share[i] as i64).collect();
            builder.add_sample(stack, &values, labels.to_vec());
        }
    }

    /// Asks the symbolizer for a stack's addresses.
    fn request(&mut self, user: UserStack, kernel: StackHandle) {
        for (i, &addr) in self.stacks.frames(kernel).iter().enumerate() {
            self.symbolizer.request_kernel(addr, i > 0);
        }
        let UserStack::Frames { stack, space } = user else {
            return;
        };
        let process = space.and_then(|s| self.processes.space_info(s));
        for (i, &addr) in self.stacks.frames(stack).iter().enumerate() {
            self.symbolizer.request_user(process, addr, i > 0);
        }
    }
}

/// The mapping of kernel frames: the kernel's, or a module's (`[fuse]`, as perf names it).
fn kernel_mapping(module: Option<&str>) -> Mapping {
    Mapping {
        start: 0,
        limit: u64::MAX,
        file_offset: 0,
        path: module.map_or_else(|| KERNEL_MAPPING.to_owned(), |m| format!("[{m}]")),
        build_id: None,
    }
}

/// The stand-in location for user frames that could not be collected.
fn lost(why: LostStack) -> Location {
    Location {
        address: 0,
        mapping: None,
        lines: vec![Line {
            function: why.frame_name().to_owned(),
            file: None,
            line: 0,
        }],
        kind: FrameKind::Lost(why),
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
    use profiler_model::ValueType;

    use super::*;
    use std::time::{Duration, SystemTime};

    fn builder() -> ProfileBuilder {
        ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
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

    #[inline(never)]
    fn a_leaf() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn interns_kernel_then_user_frames_with_markers() {
        let mut processes = ProcessTable::default();
        let pid = std::process::id();
        assert!(processes.snapshot(pid));
        let leaf = a_leaf as fn() -> _ as usize as u64;
        let caller = interns_kernel_then_user_frames_with_markers as fn() as usize as u64 + 8;
        let mut stacks = StackTable::default();
        let user = UserStack::Frames {
            stack: stacks.intern(vec![leaf, caller]),
            space: processes.space(pid),
        };
        let mut resolver = StackResolver::new(&stacks, &processes);
        let mut b = builder();
        let full = resolver.intern(&mut b, user, StackTable::EMPTY);
        let unreadable = resolver.intern(&mut b, UserStack::Unreadable, StackTable::EMPTY);
        let empty = resolver.intern(&mut b, UserStack::NONE, StackTable::EMPTY);
        let profile = b.build();
        let names = profile.stack_functions(full);
        assert!(names.iter().any(|n| n.contains("a_leaf")), "{names:?}");
        assert!(
            names
                .iter()
                .any(|n| n.contains("interns_kernel_then_user_frames_with_markers")),
            "{names:?}"
        );
        assert_eq!(
            profile.stack_functions(unreadable),
            vec!["[user stack unreadable]"]
        );
        assert_eq!(profile.stack_functions(empty), vec!["[unknown]"]);
    }

    #[test]
    fn a_site_without_stack_samples_keeps_its_totals() {
        let stacks = StackTable::default();
        let processes = ProcessTable::default();
        let mut resolver = StackResolver::new(&stacks, &processes);
        let mut b = builder();
        resolver.add_site(&mut b, &[], LostStack::RingBufferFull, &[42], &[]);
        let profile = b.build();
        assert_eq!(profile.total(0), 42);
        assert_eq!(
            profile.stack_functions(profile.samples[0].stack),
            vec!["[user stack lost: ring buffer full]"]
        );
    }
}
