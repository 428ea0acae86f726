//! A wait site's exact totals split over the stacks of its sampled waits: the kernel counts
//! every wait of a site but sends the stacks of only some, so the profile shows the site's
//! totals on those stacks.

use profiler_common::OFFCPU_STACK_SAMPLE_EVERY;
use profiler_model::{Label, OffCpuValue, ProgramLabels};

use crate::collect::raw_profile::{
    RawProfile, RawSample, RawStack, RawWaker, StackStart, apportion,
};

/// A site's exact totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub waits: u64,
    pub nanos: u64,
    pub runnable: u64,
}

impl Totals {
    pub fn add(&mut self, waits: u64, nanos: u64, runnable: u64) {
        self.waits += waits;
        self.nanos += nanos;
        self.runnable += runnable;
    }
}

/// Why the kernel sent a wait's stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Sampling {
    /// It was the first wait at its site (or its thread's first preemption): chosen for
    /// being first, it is not a fair draw of the site's waits and stands for itself only.
    First,
    /// It was its thread's wait number 1, N+1, 2N+1, ... (N =
    /// [`OFFCPU_STACK_SAMPLE_EVERY`]): it stands for the waits around it.
    OneInN,
}

impl Sampling {
    /// The reason the kernel sent the stacks of a thread's wait number `seq`.
    pub fn of(seq: u32) -> Self {
        if seq % OFFCPU_STACK_SAMPLE_EVERY == 1 {
            Self::OneInN
        } else {
            Self::First
        }
    }
}

/// The sampled waits of one site that had the same stacks, waker and sampling, and their
/// own times.
#[derive(Debug, Clone)]
pub(crate) struct Sampled {
    pub stack: RawStack,
    pub waker: Option<RawWaker>,
    pub sampling: Sampling,
    pub seen: u64,
    pub delay: u64,
    pub runnable: u64,
}

/// Adds a site's totals split over its sampled stacks.
///
/// Waits sampled for being first count their own times once; what is left of the totals
/// goes to the waits sampled one in N, waits by how often each was seen, time off CPU and
/// runnable time by their own times (by count when none ended in the window). Without
/// waits sampled one in N, the first ones share the totals the same way. The runnable part
/// is its own sample with reason `runqueue`.
///
/// A thread's one runqueue site holds every preemption wherever it struck, and its first
/// preemption is often atypical (a spinner's, before it reached its loop): given a share
/// like the others, it put a fifth of four spinners' runqueue time on a frame outside
/// their loop (CI at b190e2e).
pub(crate) fn add_split(
    raw: &mut RawProfile,
    stacks: &[Sampled],
    t: &Totals,
    labels: &[Label],
    runnable_labels: Vec<Label>,
) {
    if stacks.is_empty() {
        let lost = RawStack::Lost(profiler_model::LostStack::NotSampled);
        push(raw, lost, None, [t.waits, t.nanos], labels.to_vec());
        if t.runnable > 0 {
            push(raw, lost, None, [0, t.runnable], runnable_labels);
        }
        return;
    }
    let (first, one_in_n): (Vec<&Sampled>, Vec<&Sampled>) =
        stacks.iter().partition(|s| s.sampling == Sampling::First);
    if one_in_n.is_empty() {
        return split(raw, &first, t, labels, &runnable_labels);
    }
    let mut left = *t;
    for s in first {
        let own = Totals {
            waits: s.seen.min(left.waits),
            nanos: s.delay.min(left.nanos),
            runnable: s.runnable.min(left.runnable),
        };
        left.waits -= own.waits;
        left.nanos -= own.nanos;
        left.runnable -= own.runnable;
        put(raw, s, own, labels, &runnable_labels);
    }
    split(raw, &one_in_n, &left, labels, &runnable_labels);
}

/// Splits `t` over `stacks`: waits by how often each was seen, times by their own times.
fn split(
    raw: &mut RawProfile,
    stacks: &[&Sampled],
    t: &Totals,
    labels: &[Label],
    runnable_labels: &[Label],
) {
    let seen: Vec<u64> = stacks.iter().map(|s| s.seen).collect();
    let by_time = |time: fn(&Sampled) -> u64| -> Vec<u64> {
        let weights: Vec<u64> = stacks.iter().map(|s| time(s)).collect();
        if weights.iter().all(|&w| w == 0) {
            seen.clone()
        } else {
            weights
        }
    };
    let waits = apportion(t.waits, &seen);
    let nanos = apportion(t.nanos, &by_time(|s| s.delay));
    let runnable = apportion(t.runnable, &by_time(|s| s.runnable));
    for (i, s) in stacks.iter().enumerate() {
        let share = Totals {
            waits: waits[i],
            nanos: nanos[i],
            runnable: runnable[i],
        };
        put(raw, s, share, labels, runnable_labels);
    }
}

/// Puts a share of a site's totals on one sampled stack.
fn put(raw: &mut RawProfile, s: &Sampled, share: Totals, labels: &[Label], runnable: &[Label]) {
    let waker = s.waker.clone();
    push(
        raw,
        s.stack,
        waker,
        [share.waits, share.nanos],
        labels.to_vec(),
    );
    if share.runnable > 0 {
        push(raw, s.stack, None, [0, share.runnable], runnable.to_vec());
    }
}

/// Adds one off-CPU sample, unless it is empty.
pub(crate) fn push(
    raw: &mut RawProfile,
    stack: RawStack,
    waker: Option<RawWaker>,
    [waits, delay]: [u64; 2],
    labels: Vec<Label>,
) {
    if waits == 0 && delay == 0 {
        return;
    }
    let mut values = vec![0; OffCpuValue::Delay.index() + 1];
    values[OffCpuValue::Waits.index()] = waits as i64;
    values[OffCpuValue::Delay.index()] = delay as i64;
    raw.samples.push(RawSample {
        stack,
        start: StackStart::Leaf,
        values,
        labels,
        program: ProgramLabels::NONE,
        waker,
    });
}

#[cfg(test)]
mod tests {
    use profiler_model::{LostStack, ProfileKind};

    use super::*;

    fn sampled(which: LostStack, sampling: Sampling, seen: u64, delay: u64) -> Sampled {
        Sampled {
            // Distinct stacks without a stack table: the lost kinds stand in for them.
            stack: RawStack::Lost(which),
            waker: None,
            sampling,
            seen,
            delay,
            runnable: 0,
        }
    }

    fn split_of(stacks: &[Sampled], t: Totals) -> Vec<(RawStack, [i64; 2])> {
        let mut raw = RawProfile::new(ProfileKind::OffCpu, Vec::new());
        add_split(&mut raw, stacks, &t, &[], Vec::new());
        raw.samples
            .iter()
            .map(|s| (s.stack, [s.values[0], s.values[1]]))
            .collect()
    }

    #[test]
    fn the_kernel_s_choice_of_wait_is_read_from_its_number() {
        assert_eq!(Sampling::of(1), Sampling::OneInN);
        assert_eq!(
            Sampling::of(OFFCPU_STACK_SAMPLE_EVERY + 1),
            Sampling::OneInN
        );
        assert_eq!(Sampling::of(2), Sampling::First);
        assert_eq!(Sampling::of(OFFCPU_STACK_SAMPLE_EVERY), Sampling::First);
    }

    #[test]
    fn a_first_wait_counts_once_and_the_one_in_n_waits_take_the_rest() {
        let (a, b) = (LostStack::NotSampled, LostStack::RingBufferFull);
        let stacks = [
            sampled(a, Sampling::First, 1, 30),
            sampled(b, Sampling::OneInN, 2, 20),
        ];
        let t = Totals {
            waits: 200,
            nanos: 10_000,
            runnable: 0,
        };
        let got = split_of(&stacks, t);
        assert_eq!(
            got,
            vec![
                (RawStack::Lost(a), [1, 30]),
                (RawStack::Lost(b), [199, 9_970])
            ]
        );
    }

    #[test]
    fn without_one_in_n_waits_the_first_ones_share_the_totals() {
        let (a, b) = (LostStack::NotSampled, LostStack::RingBufferFull);
        let stacks = [
            sampled(a, Sampling::First, 1, 30),
            sampled(b, Sampling::First, 1, 10),
        ];
        let t = Totals {
            waits: 4,
            nanos: 400,
            runnable: 0,
        };
        let got = split_of(&stacks, t);
        assert_eq!(
            got,
            vec![(RawStack::Lost(a), [2, 300]), (RawStack::Lost(b), [2, 100])]
        );
    }

    #[test]
    fn totals_are_kept_when_first_waits_claim_more_than_the_site_has() {
        let (a, b) = (LostStack::NotSampled, LostStack::RingBufferFull);
        let stacks = [
            sampled(a, Sampling::First, 3, 500),
            sampled(b, Sampling::OneInN, 1, 10),
        ];
        let t = Totals {
            waits: 2,
            nanos: 100,
            runnable: 0,
        };
        let got = split_of(&stacks, t);
        let sum = got
            .iter()
            .fold([0, 0], |s, (_, v)| [s[0] + v[0], s[1] + v[1]]);
        assert_eq!(sum, [2, 100]);
    }
}
