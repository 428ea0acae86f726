//! Who woke each futex wait, read as evidence of what the wait was. A wait ended by a
//! thread that itself waited on the same futex, or at the same lock-acquire call site, was
//! waiting for a lock that thread held and passed on: contention. A wait ended by a thread
//! that never waited there was handed something (work to an idle pool, data to a consumer,
//! a thread's exit to its joiner): an idle wait, whatever the functions are called.
//!
//! The acquire site matters for designs where each waiter sleeps on its own futex and the
//! lock's holder wakes the next one (PostgreSQL's LWLocks, Java monitors): no futex has two
//! waiters there, but one call site has many, and they wake each other.

use std::collections::{HashMap, HashSet};

use profiler_model::callers::user_frames;
use profiler_model::labels::IN_PROGRESS;
use profiler_model::{BlockValue, FrameKind, LabelKey, Profile, Sample, StackId};

use super::block::is_idle;

/// Frames outside the C library that name a lock-acquire call site.
pub const SITE_FRAMES: usize = 3;

/// The outcome label of a wait a thread ended.
const WOKEN: &str = "woken";

/// The outcome label of a futex call that returned at once, the futex's value having
/// changed: the thread never slept there, so it was no waiter there.
const NO_WAIT: &str = "no wait";

/// What a futex wait's end says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// Woken by another thread that also waited on the same futex or at the same acquire
    /// site: it held the lock this one wanted.
    Contended,
    /// Woken by a thread that never waited there: work, data or an exit was handed over.
    HandedOff,
    /// Taking back a condition variable's mutex after the condition wait was woken: the
    /// second half of that wait (the notifier often still holds the mutex), not a queue
    /// for the lock.
    Relocking,
    /// Not ended by a thread: it timed out, a signal interrupted it, or it never slept.
    NotWoken,
    /// Still waiting when the window closed.
    Waiting,
    /// Woken by a thread that was not recorded (a profile from before wakers were kept,
    /// or a full table of wakers).
    Unknown,
}

impl Evidence {
    /// Whether the wait is known to be idle: a hand-off or a timed wait, not a lock.
    pub fn is_idle(self) -> bool {
        matches!(self, Self::HandedOff | Self::Relocking | Self::NotWoken)
    }
}

/// One futex wait sample, with what its end says about it.
#[derive(Debug, Clone)]
pub struct Wait<'a> {
    /// The sample.
    pub sample: &'a Sample,
    /// Its process.
    pub pid: i64,
    /// Its thread.
    pub tid: i64,
    /// The futex address, as labelled.
    pub futex: &'a str,
    /// The process's name.
    pub comm: &'a str,
    /// The acquire site: up to [`SITE_FRAMES`] innermost functions outside the C
    /// library, innermost first; empty when none is named.
    pub site: Vec<&'a str>,
    /// What its end says.
    pub evidence: Evidence,
    /// Waits the sample counts.
    pub waits: u64,
    /// Nanoseconds it counts.
    pub delay: u64,
}

/// Whether a stack (innermost first) takes back a condition variable's mutex inside the
/// condition wait: glibc's `pthread_cond_wait` through `__pthread_mutex_cond_lock`, Rust's
/// `Condvar::wait` through `Mutex::lock_contended`.
fn is_condition_relock(functions: &[&str]) -> bool {
    functions.iter().enumerate().any(|(i, f)| {
        *f == "__pthread_mutex_cond_lock"
            || (f.ends_with("Mutex::lock_contended")
                && functions
                    .get(i + 1)
                    .is_some_and(|up| up.contains("Condvar::wait")))
    })
}

/// Every futex wait sample of a blocking profile (goroutine waits and the Go runtime's
/// idle threads left out), each with its evidence.
pub fn futex_waits(profile: &Profile) -> Vec<Wait<'_>> {
    let mut site_of: HashMap<StackId, (Vec<&str>, bool)> = HashMap::new();
    let mut waits: Vec<(Wait<'_>, Option<i64>, bool)> = Vec::new();
    for sample in &profile.samples {
        let Some(futex) = sample.label_str(LabelKey::Futex) else {
            continue; // A goroutine wait: `goroutines` reads those.
        };
        if is_idle(sample) {
            continue;
        }
        let (site, relocking) = site_of
            .entry(sample.stack)
            .or_insert_with(|| {
                let functions = profile.stack_functions(sample.stack);
                // A stand-in for a lost user stack names no call site: waits whose stacks
                // were lost are not one group.
                let lost = profile
                    .stack(sample.stack)
                    .iter()
                    .any(|&id| matches!(profile.location(id).kind, FrameKind::Lost(_)));
                let site = if lost {
                    Vec::new()
                } else {
                    user_frames(profile, sample.stack, SITE_FRAMES)
                };
                (site, is_condition_relock(&functions))
            })
            .clone();
        let outcome = sample.label_str(LabelKey::Outcome).unwrap_or(WOKEN);
        let evidence = match outcome {
            IN_PROGRESS => Evidence::Waiting,
            WOKEN if relocking => Evidence::Relocking,
            WOKEN => Evidence::Unknown, // Settled below, once every waiter is known.
            _ => Evidence::NotWoken,
        };
        let wait = Wait {
            sample,
            pid: sample.label_num(LabelKey::Pid).unwrap_or(0),
            tid: sample.label_num(LabelKey::Tid).unwrap_or(0),
            futex,
            comm: sample.label_str(LabelKey::Comm).unwrap_or(""),
            site,
            evidence,
            waits: sample.count(BlockValue::Contentions.index()),
            delay: sample.count(BlockValue::Delay.index()),
        };
        let waker = sample.label_num(LabelKey::WakerTid);
        waits.push((wait, waker, outcome == WOKEN && !relocking));
    }
    // The threads that slept on each futex and at each acquire site (CI saw node's main
    // thread, whose condition wait at start returned at once, counted as a waiter on the
    // mutex it then released to a worker: an 80 µs start-up hand-off read as contention).
    let mut on_futex: HashMap<(i64, &str), HashSet<i64>> = HashMap::new();
    let mut at_site: HashMap<(&str, &[&str]), HashSet<i64>> = HashMap::new();
    for (wait, ..) in waits
        .iter()
        .filter(|(w, ..)| w.sample.label_str(LabelKey::Outcome) != Some(NO_WAIT))
    {
        on_futex
            .entry((wait.pid, wait.futex))
            .or_default()
            .insert(wait.tid);
        if !wait.site.is_empty() {
            at_site
                .entry((wait.comm, &wait.site[..]))
                .or_default()
                .insert(wait.tid);
        }
    }
    let mut settled: Vec<Evidence> = Vec::with_capacity(waits.len());
    for (wait, waker, woken) in &waits {
        settled.push(match (woken, waker) {
            (false, _) => wait.evidence,
            (true, None) => Evidence::Unknown,
            (true, Some(waker)) => {
                let peer = |threads: Option<&HashSet<i64>>| {
                    *waker != wait.tid && threads.is_some_and(|t| t.contains(waker))
                };
                if peer(on_futex.get(&(wait.pid, wait.futex)))
                    || (!wait.site.is_empty() && peer(at_site.get(&(wait.comm, &wait.site[..]))))
                {
                    Evidence::Contended
                } else {
                    Evidence::HandedOff
                }
            }
        });
    }
    waits
        .into_iter()
        .zip(settled)
        .map(|((mut wait, ..), evidence)| {
            wait.evidence = evidence;
            wait
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::block::tests::{block_profile, labels};

    fn evidence(profile: &Profile) -> Vec<(i64, Evidence)> {
        futex_waits(profile)
            .iter()
            .map(|w| (w.tid, w.evidence))
            .collect()
    }

    #[test]
    fn a_waker_whose_futex_call_returned_at_once_never_waited_there() {
        // Thread 1's only call on the futex returned at once; it then woke thread 2.
        let p = block_profile(&[
            ("a", 1, labels(1, "0x10", "no wait", None)),
            ("b", 1, labels(2, "0x10", "woken", Some(1))),
        ]);
        assert!(
            evidence(&p).contains(&(2, Evidence::HandedOff)),
            "{:?}",
            evidence(&p)
        );
    }

    #[test]
    fn a_lock_passed_among_its_waiters_is_contended() {
        // Threads 1 and 2 wait on one futex and wake each other.
        let p = block_profile(&[
            ("contend_lock", 500, labels(1, "0x10", "woken", Some(2))),
            ("contend_lock", 700, labels(2, "0x10", "woken", Some(1))),
        ]);
        assert_eq!(
            evidence(&p),
            [(1, Evidence::Contended), (2, Evidence::Contended)]
        );
    }

    #[test]
    fn a_pool_woken_by_its_producer_is_handed_work() {
        // Workers 1 and 2 wait on one condition variable; thread 9 (never waiting) wakes them.
        let p = block_profile(&[
            ("worker_wait", 500, labels(1, "0x10", "woken", Some(9))),
            ("worker_wait", 700, labels(2, "0x10", "woken", Some(9))),
            ("worker_wait", 900, labels(2, "0x10", IN_PROGRESS, None)),
            ("worker_wait", 100, labels(1, "0x10", "timed out", None)),
        ]);
        assert_eq!(
            evidence(&p),
            [
                (1, Evidence::HandedOff),
                (2, Evidence::HandedOff),
                (2, Evidence::Waiting),
                (1, Evidence::NotWoken)
            ]
        );
    }

    #[test]
    fn taking_back_a_condition_variables_mutex_is_part_of_the_condition_wait() {
        assert!(is_condition_relock(&[
            "futex_wait",
            "__GI___lll_lock_wait",
            "__pthread_mutex_cond_lock",
            "__pthread_cond_wait_common",
            "worker"
        ]));
        assert!(is_condition_relock(&[
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            "std::sys::sync::condvar::futex::Condvar::wait_optional_timeout",
        ]));
        assert!(!is_condition_relock(&[
            "__GI___lll_lock_wait",
            "___pthread_mutex_lock",
            "contend_lock"
        ]));
        // Thread 1 takes back the mutex its notifier 2 holds; 2 also waited on it.
        let p = block_profile(&[
            (
                "__pthread_mutex_cond_lock",
                500,
                labels(1, "0x10", "woken", Some(2)),
            ),
            ("contend_lock", 700, labels(2, "0x10", "woken", Some(1))),
        ]);
        assert_eq!(
            evidence(&p),
            [(1, Evidence::Relocking), (2, Evidence::Contended)]
        );
    }

    #[test]
    fn per_waiter_semaphores_are_contended_at_their_acquire_site() {
        // Each thread sleeps on its own futex at one acquire site, woken by the other.
        let p = block_profile(&[
            ("lwlock_acquire", 500, labels(1, "0x10", "woken", Some(2))),
            ("lwlock_acquire", 700, labels(2, "0x20", "woken", Some(1))),
            ("other_site", 300, labels(3, "0x30", "woken", Some(1))),
            ("unknown", 300, labels(3, "0x40", "woken", None)),
        ]);
        assert_eq!(
            evidence(&p),
            [
                (1, Evidence::Contended),
                (2, Evidence::Contended),
                (3, Evidence::HandedOff),
                (3, Evidence::Unknown)
            ]
        );
    }
}
