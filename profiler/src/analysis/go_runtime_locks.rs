//! The Go runtime's own locks, seen as futex waits: `runtime.lock2` puts a thread to sleep
//! on a futex when another holds the lock. They are not the program's locks, and the fix
//! of a C lock ("shorten the critical section") cannot apply to them:
//!
//! - a lock taken inside a channel operation (`chansend`, `chanrecv`, `selectgo`,
//!   `closechan`) is the channel's own lock: threads on several CPUs sent to or received
//!   from one channel at once. It is a finding of the channel, named by the Go function
//!   that used it;
//! - any other (the scheduler's, the heap's, a timer's) is the runtime's business, left
//!   out of the contention findings: its time stays in the blocking profile.

use std::collections::{BTreeMap, BTreeSet};

use profiler_model::{Profile, Sample, labels::Waiters};

use super::goroutines::{GoWaitFinding, GoWaitKind, MIN_CHANNEL_SHARE, is_machinery};
use super::wake_evidence::Wait;

/// The runtime function that sleeps on a futex for a runtime lock.
const LOCK: &str = "runtime.lock2";

/// The channel operations that take a channel's lock, with the operation's name as Go's
/// wait reasons say it.
const CHANNEL_OPS: [(&str, &str); 4] = [
    ("runtime.chansend", "chan send"),
    ("runtime.chanrecv", "chan receive"),
    ("runtime.selectgo", "select"),
    ("runtime.closechan", "close"),
];

/// Which runtime lock a futex wait waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeLock {
    /// A channel's lock, taken by `operation` in Go function `function`.
    Channel {
        /// The Go function that used the channel.
        function: String,
        /// The channel operation (`chan send`, ...).
        operation: &'static str,
    },
    /// Another of the runtime's locks.
    Runtime,
}

/// The runtime lock a futex wait waited for, if it waited in `runtime.lock2`.
pub fn runtime_lock(profile: &Profile, sample: &Sample) -> Option<RuntimeLock> {
    let mut frames = profile.stack_functions(sample.stack);
    frames.reverse();
    let lock = frames.iter().position(|f| *f == LOCK)?;
    let channel = frames[lock..].iter().enumerate().find_map(|(i, f)| {
        let (_, operation) = CHANNEL_OPS.iter().find(|(op, _)| f == op)?;
        Some((lock + i, *operation))
    });
    let Some((at, operation)) = channel else {
        return Some(RuntimeLock::Runtime);
    };
    let function = frames[at..]
        .iter()
        .find(|f| !is_machinery(f))
        .map_or("[unknown]", |f| f);
    Some(RuntimeLock::Channel {
        function: function.to_owned(),
        operation,
    })
}

/// A blocking profile's futex waits parted, each stack read once: the Go runtime's lock
/// waits, each with its lock, and the program's own.
pub fn split<'a>(
    profile: &Profile,
    waits: Vec<Wait<'a>>,
) -> (Vec<(Wait<'a>, RuntimeLock)>, Vec<Wait<'a>>) {
    let mut runtime = Vec::new();
    let mut program = Vec::new();
    for wait in waits {
        match runtime_lock(profile, wait.sample) {
            Some(lock) => runtime.push((wait, lock)),
            None => program.push(wait),
        }
    }
    (runtime, program)
}

/// The channels whose locks threads of a process queued for (among the runtime's lock
/// waits [`split`] found), by the function that used them: those two threads or more
/// waited at, together for at least [`MIN_CHANNEL_SHARE`] of the window, as for a
/// channel's goroutine waits; most delay first.
pub fn channel_lock_findings(
    profile: &Profile,
    waits: &[(Wait<'_>, RuntimeLock)],
) -> Vec<GoWaitFinding> {
    #[derive(Default)]
    struct Acc {
        comm: String,
        threads: BTreeSet<i64>,
        waits: u64,
        delay: u64,
    }
    let mut groups: BTreeMap<(i64, String, &'static str), Acc> = BTreeMap::new();
    for (wait, lock) in waits.iter().filter(|(w, _)| !w.evidence.is_idle()) {
        let RuntimeLock::Channel {
            function,
            operation,
        } = lock
        else {
            continue;
        };
        let acc = groups
            .entry((wait.pid, function.clone(), *operation))
            .or_default();
        wait.comm.clone_into(&mut acc.comm);
        acc.threads.insert(wait.tid);
        acc.waits = acc.waits.saturating_add(wait.waits);
        acc.delay = acc.delay.saturating_add(wait.delay);
    }
    let window = profile.duration.as_nanos() as f64;
    let mut all: Vec<GoWaitFinding> = groups
        .into_iter()
        .filter(|(_, acc)| acc.threads.len() >= 2 && acc.delay as f64 >= MIN_CHANNEL_SHARE * window)
        .map(|((pid, function, operation), acc)| GoWaitFinding {
            kind: GoWaitKind::ChannelLock,
            pid,
            comm: acc.comm,
            function,
            operation: format!("{operation} (the channel's lock)"),
            waiters: Waiters::Several,
            waits: acc.waits,
            delay: acc.delay,
        })
        .collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.delay));
    all
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::named_stack;
    use profiler_model::{ProfileBuilder, ProfileKind, ValueType};

    use super::*;

    fn profile_of(leaf_first: &[&str]) -> Profile {
        let mut builder = ProfileBuilder::with_sample_types(
            ProfileKind::Block,
            vec![ValueType::new("contentions", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        );
        let stack = named_stack(&mut builder, leaf_first);
        builder.add_sample(stack, &[1], vec![]);
        builder.build()
    }

    #[test]
    fn a_lock_in_a_send_is_the_channel_s_named_by_its_user() {
        let profile = profile_of(&[
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.lock2",
            "runtime.lockWithRank",
            "runtime.lock",
            "runtime.chansend",
            "runtime.chansend1",
            "main.kv",
            "net/http.HandlerFunc.ServeHTTP",
        ]);
        assert_eq!(
            runtime_lock(&profile, &profile.samples[0]),
            Some(RuntimeLock::Channel {
                function: "main.kv".into(),
                operation: "chan send",
            })
        );
    }

    #[test]
    fn the_scheduler_s_lock_is_the_runtime_s() {
        let profile = profile_of(&[
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.semasleep",
            "runtime.lock2",
            "runtime.lock",
            "runtime.goschedImpl",
            "runtime.newstack",
            "runtime.morestack",
        ]);
        assert_eq!(
            runtime_lock(&profile, &profile.samples[0]),
            Some(RuntimeLock::Runtime)
        );
    }

    /// The frames of a send that queued for its channel's lock, leaf first.
    const SEND_LOCK: [&str; 8] = [
        "runtime.futex",
        "runtime.futexsleep",
        "runtime.lock2",
        "runtime.lock",
        "runtime.chansend",
        "runtime.chansend1",
        "main.kv",
        "runtime.goexit",
    ];

    #[test]
    fn threads_queued_on_a_channel_s_lock_are_its_finding_not_a_c_lock() {
        let mut builder = ProfileBuilder::with_sample_types(
            ProfileKind::Block,
            vec![
                ValueType::new("contentions", "count"),
                ValueType::new("delay", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let stack = named_stack(&mut builder, &SEND_LOCK);
        // Two threads, each woken by the other: 60 ms of a 1 s window.
        for (tid, waker) in [(1, 2), (2, 1)] {
            let labels = crate::analysis::block::tests::labels(tid, "0x10", "woken", Some(waker));
            builder.add_sample(stack, &[3, 30_000_000], labels);
        }
        let profile = builder.build();
        let waits = crate::analysis::wake_evidence::futex_waits(&profile);
        let (runtime, program) = split(&profile, waits);
        let found = channel_lock_findings(&profile, &runtime);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(
            (f.kind, f.function.as_str(), f.waits, f.delay),
            (GoWaitKind::ChannelLock, "main.kv", 6, 60_000_000)
        );
        assert_eq!(f.operation, "chan send (the channel's lock)");
        // The same waits make no C-style contended lock.
        assert!(program.is_empty());
        assert!(crate::analysis::block::lock_waits(&profile, &program).is_empty());
    }

    #[test]
    fn a_program_s_own_futex_is_no_runtime_lock() {
        let profile = profile_of(&["futex_wait", "__lll_lock_wait", "pthread_mutex_lock"]);
        assert_eq!(runtime_lock(&profile, &profile.samples[0]), None);
    }
}
