//! The off-CPU profile's stacks once named: the scheduler's and the profiler's own frames
//! cut from the leaf of every wait and waker stack, and each waker named by what it ran.

use std::collections::HashSet;

use profiler_model::{Label, LabelKey, Profile, StackId, Waker};

/// The scheduler function every switch-out passes through: frames leafward of it (it, the
/// tracepoint, the profiler's program) are the profiler watching, not the thread waiting.
const SWITCH: &str = "__schedule";
/// The wakeup every waker passes through, kept as the waker stack's leaf.
const WAKE: &str = "try_to_wake_up";

/// Frames that mean the waker ran in an interrupt: whatever thread it interrupted did not
/// wake anyone.
const INTERRUPT_ENTRIES: [&str; 8] = [
    "asm_sysvec_",
    "asm_common_interrupt",
    "sysvec_",
    "__sysvec_",
    "handle_softirqs",
    "__do_softirq",
    "hrtimer_interrupt",
    "irq_exit_rcu",
];

/// Cuts the scheduler's frames from the leaf of the wait stacks and everything leafward
/// of the wakeup from the waker stacks, then labels each waker.
pub fn finish(profile: &mut Profile) {
    let waits: HashSet<StackId> = profile.samples.iter().map(|s| s.stack).collect();
    let wakers: HashSet<StackId> = profile
        .samples
        .iter()
        .filter_map(|s| s.waker.as_ref().map(|w| w.stack))
        .collect();
    for stack in waits {
        cut_leaf(profile, stack, SWITCH, false);
    }
    for stack in wakers {
        cut_leaf(profile, stack, WAKE, true);
    }
    let mut interrupted = HashSet::new();
    for i in 0..profile.samples.len() {
        let Some(waker) = profile.samples[i].waker.clone() else {
            continue;
        };
        let name = waker_name(profile, &waker);
        let sample = &mut profile.samples[i];
        if name.ends_with("(interrupt)") || name == "interrupt" {
            interrupted.insert(waker.stack);
            if let Some(waker) = &mut sample.waker {
                waker.comm = "interrupt".to_owned();
            }
        }
        sample.labels.retain(|l| l.key != LabelKey::Waker);
        sample.labels.push(Label::str(LabelKey::Waker, name));
    }
    for stack in interrupted {
        cut_interrupted(profile, stack);
    }
}

/// Drops the frames of an interrupt's stack rootward of its entry: the thread it
/// interrupted woke no one.
fn cut_interrupted(profile: &mut Profile, stack: StackId) {
    let locations = profile.stack(stack);
    let entry = locations.iter().rposition(|&loc| {
        let location = profile.location(loc);
        location.kind.is_kernel()
            && location
                .lines
                .iter()
                .any(|l| INTERRUPT_ENTRIES.iter().any(|e| l.function.starts_with(e)))
    });
    if let Some(entry) = entry {
        profile.stacks[stack.index()].truncate(entry + 1);
    }
}

/// Drops the frames of `stack` leafward of the kernel function `at` (and `at` itself
/// unless `keep`).
fn cut_leaf(profile: &mut Profile, stack: StackId, at: &str, keep: bool) {
    let locations = profile.stack(stack);
    let found = locations.iter().position(|&loc| {
        let location = profile.location(loc);
        location.kind.is_kernel() && location.lines.iter().any(|l| l.function == at)
    });
    if let Some(index) = found {
        let from = if keep { index } else { index + 1 };
        profile.stacks[stack.index()].drain(..from);
    }
}

/// `peer_reply (app)`: the innermost named user function the waker ran and its process;
/// `timer (interrupt)`, `I/O completion (interrupt)` or `interrupt` when it woke from an
/// interrupt; `comm (kernel)` for a kernel thread.
pub fn waker_name(profile: &Profile, waker: &Waker) -> String {
    let locations: Vec<_> = profile
        .stack(waker.stack)
        .iter()
        .map(|&loc| profile.location(loc))
        .collect();
    let kernel_functions = || {
        locations
            .iter()
            .filter(|l| l.kind.is_kernel())
            .flat_map(|l| l.lines.iter().map(|line| line.function.as_str()))
    };
    if kernel_functions().any(|f| INTERRUPT_ENTRIES.iter().any(|e| f.starts_with(e))) {
        return if kernel_functions().any(|f| f == "hrtimer_wakeup") {
            "timer (interrupt)".to_owned()
        } else if kernel_functions().any(|f| {
            f.starts_with("blk_") || f.starts_with("bio_") || f.contains("_end_io")
        }) {
            "I/O completion (interrupt)".to_owned()
        } else {
            "interrupt".to_owned()
        };
    }
    let user = locations
        .iter()
        .filter(|l| !l.kind.is_kernel() && l.kind.is_named())
        .find_map(|l| l.lines.first().map(|line| line.function.as_str()));
    match user {
        Some(function) => format!("{function} ({})", waker.comm),
        None => format!("{} (kernel)", waker.comm),
    }
}
