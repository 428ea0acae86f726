//! Turns the kernel's raw stacks (ids into the stack map) into interned profile stacks:
//! kernel frames, then user frames with the frames a frame-pointer walk skipped restored,
//! with markers where a stack was lost. Every profile builds its stacks here.

use crate::probes::RawStacks;
use crate::procmaps::ProcessTable;
use crate::profile::{Label, Line, Location, Mapping, ProfileBuilder};
use crate::symbolize::{KERNEL_MAPPING, Symbolizer};
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

/// Resolves stacks of one run into locations of profiles being built.
pub struct StackResolver<'run> {
    stacks: &'run RawStacks,
    processes: &'run ProcessTable,
    symbolizer: Symbolizer,
    unwinder: LeafUnwinder,
}

impl<'run> StackResolver<'run> {
    /// A resolver over the stacks and process snapshots of one run.
    pub fn new(stacks: &'run RawStacks, processes: &'run ProcessTable) -> Self {
        Self {
            stacks,
            processes,
            symbolizer: Symbolizer::new(),
            unwinder: LeafUnwinder::default(),
        }
    }

    /// The process snapshots of the run.
    pub fn processes(&self) -> &'run ProcessTable {
        self.processes
    }

    /// Interns the stack of a sample of process `pid` into `builder`, leaf first: kernel
    /// frames, then user frames (with the callers the frame-pointer walk skipped restored
    /// from `top`, the user stack's top copied with the sample). Never empty: a sample
    /// without any frame gets `[unknown]`.
    pub fn intern(
        &mut self,
        builder: &mut ProfileBuilder,
        pid: u32,
        user_stack_id: i32,
        kernel_stack_id: i32,
        top: Option<&StackTop>,
    ) -> usize {
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
        for (addr, call_site) in self.user_addresses(pid, user_stack_id, top) {
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

    /// The user stack's addresses, leaf first, with the frames the frame-pointer walk skipped
    /// above the leaf put back; each with whether it is a return address.
    fn user_addresses(&mut self, pid: u32, id: i32, top: Option<&StackTop>) -> Vec<(u64, bool)> {
        let frames = self.frames(id);
        let Some((&leaf, callers)) = frames.split_first() else {
            return Vec::new();
        };
        let mut addresses = vec![(leaf, false)];
        if let (Some(top), Some(process)) = (top, self.processes.get(pid)) {
            let skipped = self.unwinder.skipped_frames(process, leaf, top, callers);
            // The walk found the last of them itself when the chain rejoined it early.
            let skipped = skipped
                .iter()
                .take_while(|&&addr| callers.first() != Some(&addr));
            addresses.extend(skipped.map(|&addr| (addr, true)));
        }
        addresses.extend(callers.iter().map(|&addr| (addr, true)));
        addresses
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
