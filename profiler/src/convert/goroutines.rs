//! Goroutine waits in the blocking profile: each park of a goroutine until it was made
//! ready, by goroutine stack and the runtime's wait reason, as Go's own block profile
//! counts them (`contentions`, `delay`); and the futex waits of Go runtime threads that
//! only mean "idle" (the scheduler parking an M), marked so findings look past them.

use std::collections::{HashMap, HashSet};

use profiler_common::{GoWaitKey, counter};
use profiler_model::{Label, LostStack, Profile, ProfileBuilder, StackId};

use crate::collect::session::RunOutcome;
use crate::convert::cpu::comm;
use crate::convert::stacks::{StackResolver, stacks_by_site};

/// The label that says what kind of wait a sample is (see [`WaitClass`]).
pub const CLASS: &str = "class";

/// What a wait means, for findings: only synchronisation is contention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitClass {
    /// A goroutine waiting for a lock: `sync.Mutex`, `sync.RWMutex`, a runtime semaphore.
    Lock,
    /// A goroutine waiting on a channel operation or `select`.
    Channel,
    /// A goroutine waiting for others: `sync.WaitGroup`, `sync.Cond`.
    Sync,
    /// A goroutine sleeping (`time.Sleep`).
    Sleep,
    /// A goroutine waiting for the network poller (a socket or pipe to become ready).
    Network,
    /// Garbage-collector workers and helpers idling or waiting for a cycle.
    Gc,
    /// A runtime thread with nothing to run (the scheduler parked its M), or another
    /// runtime goroutine's idle wait.
    Idle,
    /// Any other wait reason.
    Other,
}

impl WaitClass {
    /// Every class, in order.
    pub const ALL: [WaitClass; 8] = [
        Self::Lock,
        Self::Channel,
        Self::Sync,
        Self::Sleep,
        Self::Network,
        Self::Gc,
        Self::Idle,
        Self::Other,
    ];

    /// Its value of the [`CLASS`] label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Channel => "channel",
            Self::Sync => "sync",
            Self::Sleep => "sleep",
            Self::Network => "network",
            Self::Gc => "gc",
            Self::Idle => "idle",
            Self::Other => "other",
        }
    }

    /// The class a [`CLASS`] label names.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.label() == label)
    }

    /// The class of a runtime wait reason, by its name in `runtime.waitReasonStrings`.
    pub fn of_reason(reason: &str) -> Self {
        let gc = [
            "GC",
            "garbage collection",
            "finalizer",
            "force gc",
            "wait for GC",
        ];
        if reason.starts_with("sync.Mutex")
            || reason.starts_with("sync.RWMutex")
            || reason == "semacquire"
        {
            Self::Lock
        } else if reason.starts_with("chan ") || reason.starts_with("select") {
            Self::Channel
        } else if reason.starts_with("sync.") {
            Self::Sync
        } else if reason == "sleep" {
            Self::Sleep
        } else if reason == "IO wait" {
            Self::Network
        } else if gc.iter().any(|g| reason.contains(g)) {
            Self::Gc
        } else if reason.contains("(idle)") {
            Self::Idle
        } else {
            Self::Other
        }
    }
}

/// The `outcome` of a goroutine wait that ended with the goroutine made ready.
const READIED: &str = "woken";

/// Adds the run's goroutine waits to the blocking profile being built: labels `pid`,
/// `goroutine` (the id), `reason` (the runtime's name), `class`, `comm` and `outcome`
/// (`woken`, or `in progress` for a goroutine still parked at the end, counted up to it).
pub fn add<'run>(
    builder: &mut ProfileBuilder,
    run: &'run RunOutcome,
    resolver: &mut StackResolver<'run>,
) {
    let go = &run.goroutines;
    let stacks_of = stacks_by_site(&run.samples.go);
    for (key, value) in &go.waits {
        if value.waits == 0 {
            continue;
        }
        let sampled = stacks_of.get(key).map_or(&[][..], Vec::as_slice);
        let labels = labels(run, key, &comm(&value.comm), READIED);
        let totals = [value.waits, value.nanos];
        resolver.add_site(
            builder,
            sampled,
            LostStack::RingBufferFull,
            &totals,
            &labels,
        );
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
        let labels = labels(run, key, comm, crate::convert::facts::IN_PROGRESS);
        resolver.add_site(builder, sampled, missing, &[1, nanos], &labels);
    }
}

/// The name of a wait reason of process `pid`, from its binary's table.
fn reason_name(run: &RunOutcome, pid: u32, reason: u32) -> String {
    run.goroutines
        .binaries
        .get(&pid)
        .and_then(|b| b.reasons.get(reason as usize))
        .filter(|name| !name.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("wait reason {reason}"))
}

fn labels(run: &RunOutcome, key: &GoWaitKey, comm: &str, outcome: &str) -> Vec<Label> {
    let reason = reason_name(run, key.pid, key.reason);
    vec![
        Label::num("pid", i64::from(key.pid)),
        Label::num("goroutine", i64::try_from(key.goid).unwrap_or(i64::MAX)),
        Label::str("comm", comm),
        Label::str(CLASS, WaitClass::of_reason(&reason).label()),
        Label::str("reason", reason),
        Label::str("outcome", outcome),
    ]
}

/// What the goroutine tracing recorded and lost, for the profile's comments.
pub fn accounting(run: &RunOutcome) -> Vec<String> {
    let c = &run.counters;
    let go = &run.goroutines;
    let mut versions: Vec<String> = go
        .binaries
        .iter()
        .map(|(pid, b)| format!("pid {pid} ({})", b.version))
        .collect();
    versions.sort();
    let mut lines = vec![
        format!(
            "goroutine waits (uprobes on runtime.gopark and runtime.ready) of {} Go \
             process(es){}{}",
            go.binaries.len(),
            if versions.is_empty() { "" } else { ": " },
            versions.join(", ")
        ),
        format!(
            "goroutine waits: {} completed, {} still parked at the end (counted up to it), {} \
             ended unseen (readied by the network poller, or their process exited; not \
             counted); lost: {} (wait map full), {} (parked table full); stack samples: {} \
             taken, {} lost (ring buffer full)",
            c.get(counter::GO_WAITS),
            go.parked.len(),
            c.get(counter::GO_END_UNSEEN) + go.ended_unseen,
            c.get(counter::LOST_GO_WAIT_FULL),
            c.get(counter::LOST_GO_PARKED_FULL),
            c.get(counter::GO_STACKS),
            c.get(counter::LOST_GO_STACK)
        ),
    ];
    lines.extend(go.notes.iter().cloned());
    lines
}

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
        .filter(|s| s.label_num("goroutine").is_none())
        .map(|s| s.stack)
        .filter(|&stack| {
            let functions = profile.stack_functions(stack);
            functions.contains(&"runtime.futexsleep")
                && functions.iter().any(|f| IDLE_SCHEDULER.contains(f))
        })
        .collect();
    for sample in &mut profile.samples {
        if idle_stacks.contains(&sample.stack) && sample.label_num("goroutine").is_none() {
            sample
                .labels
                .push(Label::str(CLASS, WaitClass::Idle.label()));
        }
    }
}

/// The class of a blocking-profile sample: its [`CLASS`] label, or `None` for a futex wait
/// that is not a Go runtime thread's idling.
pub fn class_of(sample: &profiler_model::Sample) -> Option<WaitClass> {
    sample.label_str(CLASS).and_then(WaitClass::from_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_classes() {
        assert_eq!(WaitClass::of_reason("sync.Mutex.Lock"), WaitClass::Lock);
        assert_eq!(WaitClass::of_reason("semacquire"), WaitClass::Lock);
        assert_eq!(WaitClass::of_reason("sync.RWMutex.RLock"), WaitClass::Lock);
        assert_eq!(WaitClass::of_reason("chan receive"), WaitClass::Channel);
        assert_eq!(WaitClass::of_reason("select"), WaitClass::Channel);
        assert_eq!(WaitClass::of_reason("sync.WaitGroup.Wait"), WaitClass::Sync);
        assert_eq!(WaitClass::of_reason("sleep"), WaitClass::Sleep);
        assert_eq!(WaitClass::of_reason("IO wait"), WaitClass::Network);
        assert_eq!(WaitClass::of_reason("GC worker (idle)"), WaitClass::Gc);
        assert_eq!(
            WaitClass::of_reason("timer goroutine (idle)"),
            WaitClass::Idle
        );
        assert_eq!(WaitClass::of_reason("preempted"), WaitClass::Other);
        for class in WaitClass::ALL {
            assert_eq!(WaitClass::from_label(class.label()), Some(class));
        }
    }
}
