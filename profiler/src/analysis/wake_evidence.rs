//! Who woke each futex wait, read as evidence of what the wait was. A wait ended by a
//! thread that itself waited on the same futex, or at the same lock-acquire call site, was
//! waiting for a lock that thread held and passed on: contention. A wait ended by a thread
//! that never waited there was handed something (work to an idle pool, data to a consumer,
//! a thread's exit to its joiner): an idle wait, whatever the functions are called.
//!
//! The acquire site matters for designs where each waiter sleeps on its own futex and the
//! lock's holder wakes the next one (PostgreSQL's LWLocks, Java monitors): no futex has two
//! waiters there, but one call site has many, and they wake each other. There the waker
//! must have waited at the site before its wake: a chain of threads that each wake their
//! creator and then wait there for a thread of their own is no lock.

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

/// The threads that slept at an acquire site, each with when it first did (`None` when
/// the profile does not say: one from before the time was kept).
type Waiters = HashMap<i64, Option<i64>>;

/// Notes that `tid` slept there, first at `first` by this sample.
fn note_waiter(waiters: &mut Waiters, tid: i64, first: Option<i64>) {
    let known = waiters.entry(tid).or_insert(first);
    *known = match (*known, first) {
        (Some(a), Some(b)) => Some(a.min(b)),
        // A sample that does not say may hide an earlier wait.
        _ => None,
    };
}

/// Whether a waker that first slept there at `first` had done so before it woke a wait
/// at `woke`; when either time is unknown, it is taken to have.
fn waited_before(first: Option<i64>, woke: Option<i64>) -> bool {
    match (first, woke) {
        (Some(first), Some(woke)) => first < woke,
        _ => true,
    }
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
    // The threads that slept on each futex and at each acquire site, with when each
    // first did (CI saw node's main thread, whose condition wait at start returned at
    // once, counted as a waiter on the mutex it then released to a worker: an 80 µs
    // start-up hand-off read as contention).
    let mut on_futex: HashMap<(i64, &str), HashSet<i64>> = HashMap::new();
    let mut at_site: HashMap<(&str, &[&str]), Waiters> = HashMap::new();
    for (wait, ..) in waits
        .iter()
        .filter(|(w, ..)| w.sample.label_str(LabelKey::Outcome) != Some(NO_WAIT))
    {
        on_futex
            .entry((wait.pid, wait.futex))
            .or_default()
            .insert(wait.tid);
        if !wait.site.is_empty() {
            let first = wait.sample.label_num(LabelKey::FirstWait);
            note_waiter(
                at_site.entry((wait.comm, &wait.site[..])).or_default(),
                wait.tid,
                first,
            );
        }
    }
    let mut settled: Vec<Evidence> = Vec::with_capacity(waits.len());
    for (wait, waker, woken) in &waits {
        settled.push(match (woken, waker) {
            (false, _) => wait.evidence,
            (true, None) => Evidence::Unknown,
            (true, Some(waker)) => {
                let woke = wait.sample.label_num(LabelKey::LastWake);
                let on_same_futex = on_futex
                    .get(&(wait.pid, wait.futex))
                    .is_some_and(|w| *waker != wait.tid && w.contains(waker));
                // At one site with a futex each, the waker must have waited there before
                // it woke this wait: a thread that first waited there only afterwards (a
                // new thread waking its creator, then creating threads of its own, as
                // HotSpot's compiler threads do in `os::create_thread`) handed something
                // over. On one futex any other waiter is a competitor for it, whenever it
                // waited (a holder that took the mutex at once wakes the first waiter).
                let at_same_site = !wait.site.is_empty()
                    && at_site
                        .get(&(wait.comm, &wait.site[..]))
                        .and_then(|w| w.get(waker))
                        .is_some_and(|&first| *waker != wait.tid && waited_before(first, woke));
                if on_same_futex || at_same_site {
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
    use profiler_model::Label;

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

    /// `labels(tid, futex, outcome, waker)` with when the thread first slept there and,
    /// for a woken wait, when its waker last woke one there (ns into the window).
    fn timed(tid: i64, outcome: &str, waker: Option<i64>, first: i64, woke: i64) -> Vec<Label> {
        let mut l = labels(tid, &format!("{:#x}", 0x100 + tid), outcome, waker);
        l.push(Label::num(LabelKey::FirstWait, first));
        if waker.is_some() {
            l.push(Label::num(LabelKey::LastWake, woke));
        }
        l
    }

    #[test]
    fn a_waker_that_first_waited_at_the_site_after_its_wake_handed_something_over() {
        // HotSpot's compiler threads: 1 waits in `os::create_thread` for new thread 2 to
        // start, which wakes it at 100; 2 later waits there for its own thread 3 (at 300,
        // woken at 400); 3 never waits there.
        let p = block_profile(&[
            ("create_thread", 90, timed(1, "woken", Some(2), 10, 100)),
            ("create_thread", 100, timed(2, "woken", Some(3), 300, 400)),
        ]);
        assert_eq!(
            evidence(&p),
            [(1, Evidence::HandedOff), (2, Evidence::HandedOff)]
        );
        // Threads that waited there first and then woke each other passed a lock on.
        let p = block_profile(&[
            ("lwlock_acquire", 90, timed(1, "woken", Some(2), 10, 500)),
            ("lwlock_acquire", 100, timed(2, "woken", Some(1), 20, 600)),
        ]);
        assert_eq!(
            evidence(&p),
            [(1, Evidence::Contended), (2, Evidence::Contended)]
        );
        // On one futex the order does not matter: 2 took the mutex at once, woke 1 at
        // 100 when it let go, and waited for it only later.
        let mut first = timed(1, "woken", Some(2), 10, 100);
        let mut then = timed(2, "woken", Some(1), 300, 400);
        for labels in [&mut first, &mut then] {
            labels.retain(|l| l.key != LabelKey::Futex);
            labels.push(Label::str(LabelKey::Futex, "0x10"));
        }
        let p = block_profile(&[("mutex_lock", 90, first), ("mutex_lock", 100, then)]);
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
