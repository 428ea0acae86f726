//! What a collector hands on at the end of a run: one raw profile of its kind, its samples
//! on unwound but unnamed stacks with their values and labels, and what it traced,
//! received and lost. [`crate::convert`] names every stack of every raw profile at once
//! and turns them into [`profiler_model::Profile`]s; nothing here symbolizes.

use std::collections::HashMap;
use std::hash::Hash;

use profiler_model::{
    Comment, Label, LabelKey, LabelValue, LostStack, ProfileKind, ProgramLabels, ValueType,
};

use crate::collect::stacks::{StackHandle, StackTable, UserStack};

/// The stack a raw sample is counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawStack {
    /// Unwound stacks: the kernel's (empty unless the sample was taken in it) and the
    /// user's, leaf first.
    Sampled {
        /// The user stack.
        user: UserStack,
        /// The kernel stack.
        kernel: StackHandle,
    },
    /// A call site's totals whose every stack sample was lost, and why.
    Lost(LostStack),
}

impl RawStack {
    /// A user stack alone, as call sites sample them.
    pub fn user(user: UserStack) -> Self {
        Self::Sampled {
            user,
            kernel: StackTable::EMPTY,
        }
    }
}

/// Where a sample's stack is to start once its frames are named: at the frame it was
/// unwound from, or where one of Go's own profiles starts the same stack (the rule is
/// [`crate::convert::go_stack_start`]'s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StackStart {
    /// At the leaf it was unwound from.
    #[default]
    Leaf,
    /// Where Go's heap profile starts a sampled allocation's stack: past the runtime's
    /// allocation frames (`mProf_Malloc`, `mallocgc`, `makeslice`...).
    GoHeap,
    /// Where Go's block profile starts a goroutine wait's stack: at the blocking call
    /// (`runtime.chanrecv1`, `sync.(*Mutex).Lock`...), not at `runtime.gopark`.
    GoBlock,
}

/// One sample of a raw profile: values in the order of its kind's sample types.
#[derive(Debug, Clone)]
pub struct RawSample {
    /// Where it was counted.
    pub stack: RawStack,
    /// Where its stack starts in the profile.
    pub start: StackStart,
    /// Its values, one per sample type of the profile's kind.
    pub values: Vec<i64>,
    /// Its labels.
    pub labels: Vec<Label>,
    /// The labels the program had put on the work (Go's profiler labels).
    pub program: ProgramLabels,
    /// Who woke it, for an off-CPU wait whose waker's stacks were taken.
    pub waker: Option<RawWaker>,
}

/// The thread that woke an off-CPU wait, as its stacks were taken at the wakeup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawWaker {
    /// Its stacks (kernel and user: a wakeup from an interrupt has the interrupted thread's
    /// user stack, which the converter leaves out).
    pub stack: RawStack,
    /// Its process's command name, or its own.
    pub comm: String,
}

/// One collector's profile of a run, before its stacks are named.
#[derive(Debug, Clone)]
pub struct RawProfile {
    /// The profile it becomes part of (the futex and goroutine collectors both fill the
    /// blocking profile).
    pub kind: ProfileKind,
    /// The sampling period, for kinds sampled at a fixed rate.
    pub period: Option<(ValueType, i64)>,
    /// How it sampled or traced, and what was received and lost.
    pub accounting: Vec<Comment>,
    /// The samples, in the order the profile lists them.
    pub samples: Vec<RawSample>,
}

impl RawProfile {
    /// An empty raw profile of `kind` with its accounting.
    pub fn new(kind: ProfileKind, accounting: Vec<Comment>) -> Self {
        Self {
            kind,
            period: None,
            accounting,
            samples: Vec::new(),
        }
    }

    /// Each sample's process, whether its thread is the process's main thread (whose name
    /// is the process's), its thread's name (from the `pid`, `tid` and `comm` labels), and
    /// its weight: its first value (samples, calls, waits), at least 1.
    pub fn processes(&self) -> impl Iterator<Item = (u32, bool, Option<&str>, u64)> + '_ {
        self.samples.iter().filter_map(|sample| {
            let (mut pid, mut tid, mut comm) = (None, None, None);
            for label in &sample.labels {
                match (label.key, &label.value) {
                    (LabelKey::Pid, LabelValue::Num(n)) => pid = u32::try_from(*n).ok(),
                    (LabelKey::Tid, LabelValue::Num(n)) => tid = u32::try_from(*n).ok(),
                    (LabelKey::Comm, LabelValue::Str(s)) => comm = Some(s.as_str()),
                    _ => {}
                }
            }
            let pid = pid?;
            let weight = sample
                .values
                .first()
                .map_or(1, |&v| v.max(1).unsigned_abs());
            Some((pid, tid == Some(pid), comm, weight))
        })
    }

    /// Adds one sample.
    pub fn add(&mut self, stack: RawStack, values: Vec<i64>, labels: Vec<Label>) {
        self.add_labeled(stack, values, labels, ProgramLabels::NONE);
    }

    /// Adds one sample of work the program labelled `program`.
    pub fn add_labeled(
        &mut self,
        stack: RawStack,
        values: Vec<i64>,
        labels: Vec<Label>,
        program: ProgramLabels,
    ) {
        self.samples.push(RawSample {
            stack,
            start: StackStart::Leaf,
            values,
            labels,
            program,
            waker: None,
        });
    }

    /// Makes every sample's stack start at `start`: for a collector whose samples are all
    /// of one of Go's profiles.
    pub fn start_stacks_at(&mut self, start: StackStart) {
        for sample in &mut self.samples {
            sample.start = start;
        }
    }

    /// Adds the exact totals of a call site, split over the user stacks sampled at it in
    /// proportion to how often each was seen; a site whose stack samples were all lost
    /// gets a marker saying why (`missing`).
    pub fn add_site(
        &mut self,
        sampled: &[SampledStack],
        missing: LostStack,
        totals: &[u64],
        labels: &[Label],
    ) {
        if sampled.is_empty() {
            let values = totals.iter().map(|&t| t as i64).collect();
            self.add(RawStack::Lost(missing), values, labels.to_vec());
            return;
        }
        let weights: Vec<u64> = sampled.iter().map(|s| s.seen).collect();
        let shares: Vec<Vec<u64>> = totals.iter().map(|&t| apportion(t, &weights)).collect();
        for (i, stack) in sampled.iter().enumerate() {
            let values = shares.iter().map(|share| share[i] as i64).collect();
            let program = stack.program.clone();
            self.add_labeled(RawStack::user(stack.user), values, labels.to_vec(), program);
        }
    }
}

/// A user stack sampled at a call site, with the labels the program had put on the work,
/// and how often it was seen there.
#[derive(Debug, Clone)]
pub struct SampledStack {
    /// The stack.
    pub user: UserStack,
    /// The program's labels (Go's profiler labels): the site's totals are split by them
    /// as by stacks.
    pub program: ProgramLabels,
    /// Times it was sampled at the site.
    pub seen: u64,
}

/// The user stacks sampled at each call site of a profile, counted as they arrive.
#[derive(Debug)]
pub struct SiteStacks<K> {
    seen: HashMap<(K, UserStack, ProgramLabels), u64>,
}

impl<K> Default for SiteStacks<K> {
    fn default() -> Self {
        Self {
            seen: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> SiteStacks<K> {
    /// Counts one sample of `user` at `site`, of work the program labelled `program`.
    pub fn count(&mut self, site: K, user: UserStack, program: &ProgramLabels) {
        *self.seen.entry((site, user, program.clone())).or_default() += 1;
    }

    /// Keeps only the stacks of the sites `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.seen.retain(|(site, _, _), _| keep(site));
    }

    /// The stacks sampled at each site, with how often each was seen.
    pub fn by_site(&self) -> HashMap<K, Vec<SampledStack>> {
        let mut by_site: HashMap<K, Vec<SampledStack>> = HashMap::new();
        for ((site, user, program), &seen) in &self.seen {
            by_site.entry(*site).or_default().push(SampledStack {
                user: *user,
                program: program.clone(),
                seen,
            });
        }
        // The same order whatever the hash map's, so profiles come out the same.
        for stacks in by_site.values_mut() {
            stacks.sort_by(|a, b| (a.user.order(), &a.program).cmp(&(b.user.order(), &b.program)));
        }
        by_site
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
    use profiler_model::FrameAddress;

    use super::*;

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
    fn a_site_without_stack_samples_keeps_its_totals() {
        let mut raw = RawProfile::new(ProfileKind::Io, Vec::new());
        raw.add_site(&[], LostStack::RingBufferFull, &[42, 7], &[]);
        assert_eq!(raw.samples.len(), 1);
        assert_eq!(
            raw.samples[0].stack,
            RawStack::Lost(LostStack::RingBufferFull)
        );
        assert_eq!(raw.samples[0].values, vec![42, 7]);
    }

    #[test]
    fn a_site_s_totals_are_split_over_its_stacks() {
        let mut table = StackTable::default();
        let stack = |table: &mut StackTable, addr| UserStack::Frames {
            stack: table.intern(FrameAddress::stack([addr])),
            space: None,
        };
        let sampled = [
            SampledStack {
                user: stack(&mut table, 1),
                program: ProgramLabels::NONE,
                seen: 1,
            },
            SampledStack {
                user: stack(&mut table, 2),
                program: ProgramLabels::new(vec![("endpoint".into(), "/kv".into())]),
                seen: 3,
            },
        ];
        let mut raw = RawProfile::new(ProfileKind::Io, Vec::new());
        raw.add_site(&sampled, LostStack::RingBufferFull, &[8, 100], &[]);
        let values: Vec<&[i64]> = raw.samples.iter().map(|s| &s.values[..]).collect();
        assert_eq!(values, vec![&[2, 25][..], &[6, 75][..]]);
        assert_eq!(raw.samples[1].program.get("endpoint"), Some("/kv"));
    }
}
