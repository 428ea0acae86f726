//! The futex waits of Go runtime threads that only mean "idle" (the scheduler parking an
//! M), found by their symbolized stacks and marked so findings look past them.

use std::collections::HashSet;

use profiler_model::LabelKey;
use profiler_model::labels::WaitClass;
use profiler_model::{Label, Profile, StackId};

/// The Go scheduler's functions under which a thread's futex wait means it has nothing to
/// run (Go 1.19's `findrunnable` became `findRunnable` in 1.20).
const IDLE_SCHEDULER: [&str; 7] = [
    "runtime.findRunnable",
    "runtime.findrunnable",
    "runtime.stopm",
    "runtime.stoplockedm",
    "runtime.notesleep",
    "runtime.notetsleep",
    "runtime.mPark",
];

/// Marks the futex waits of Go runtime threads parked for want of work
/// (`runtime.futexsleep` under the scheduler's idle paths) with class `idle`.
pub fn mark_idle_threads(profile: &mut Profile) {
    let idle_stacks: HashSet<StackId> = profile
        .samples
        .iter()
        .filter(|s| !s.is_goroutine_wait())
        .map(|s| s.stack)
        .filter(|&stack| {
            let functions = profile.stack_functions(stack);
            functions.contains(&"runtime.futexsleep")
                && functions.iter().any(|f| IDLE_SCHEDULER.contains(f))
        })
        .collect();
    for sample in &mut profile.samples {
        if idle_stacks.contains(&sample.stack) && !sample.is_goroutine_wait() {
            sample
                .labels
                .push(Label::str(LabelKey::Class, WaitClass::Idle.label()));
        }
    }
}
