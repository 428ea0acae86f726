//! Lock contention in a blocking profile: waits grouped by futex and by lock-acquire call
//! site, told contended or idle by who woke them (`wake_evidence`), and what to do when
//! threads queue for one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use profiler_model::callers::is_system_library;
use profiler_model::{FrameKind, LabelKey, Profile, StackId};

use super::language;
use super::wake_evidence::{Evidence, Wait};

/// Where a group of waits waited.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaitedOn {
    /// One futex of one process, its address as labelled (`0x...`).
    Futex(String),
    /// One lock-acquire call site, its functions outside the C library from the outermost
    /// in: each waiter slept on a futex of its own (a per-waiter semaphore or park event).
    AcquireSite(Vec<String>),
}

/// Whose lock a group of waits waited for: the program's own, or one a runtime holds for
/// it, whose fix is not the program's critical section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockKind {
    /// A lock of the program's (or of a library it calls).
    #[default]
    Program,
    /// CPython's global interpreter lock: most of the time was waited taking it back.
    PythonGil,
}

impl LockKind {
    /// What to do when threads queue for it.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Program => CONTENTION_HINT,
            Self::PythonGil => GIL_HINT,
        }
    }
}

/// What to do when Python threads queue for the GIL.
pub const GIL_HINT: &str = "only one thread of a CPython process runs Python code at a \
    time, so threads doing CPU work in Python queue for the GIL: run that work in \
    processes (multiprocessing, concurrent.futures.ProcessPoolExecutor), move the hot loop \
    into code that releases the GIL (NumPy, a C or Rust extension), or use a free-threaded \
    build (python3.13t); threads help only while they wait on I/O";

/// CPython's functions that block on a futex only to take the GIL (3.8 to 3.13):
/// `take_gil` itself (a local symbol, unnamed in Debian's stripped python3), and the
/// exported calls that take it back after a wait or for a foreign thread.
const GIL_TAKERS: [&str; 5] = [
    "take_gil",
    "PyEval_RestoreThread",
    "PyEval_AcquireThread",
    "PyEval_AcquireLock",
    "PyGILState_Ensure",
];

/// Whether a futex wait waited for CPython's GIL. Walking out from the wait past the
/// kernel, the system libraries, unnamed frames and the GIL's own condition-variable
/// macros, the first frame is one of [`GIL_TAKERS`] or a Python frame: the evaluation
/// loop blocks on nothing but the GIL by itself (it drops and takes it back when another
/// thread asks), and a Python program's own locks wait through a named C call
/// (`PyThread_acquire_lock_timed`).
fn waits_for_gil(profile: &Profile, stack: StackId) -> bool {
    for &id in profile.stack(stack) {
        let location = profile.location(id);
        match location.kind {
            FrameKind::Python => return true,
            FrameKind::Function => {}
            _ => continue,
        }
        if is_system_library(profile, location) {
            continue;
        }
        for line in &location.lines {
            let name = line.function.as_str();
            if GIL_TAKERS.contains(&name) {
                return true;
            }
            if !name.starts_with("PyCOND_") && !name.starts_with("PyMUTEX_") {
                return false;
            }
        }
    }
    false
}

/// The waits on one futex, or at one lock-acquire site, of a program.
#[derive(Debug, Clone, PartialEq)]
pub struct LockWaits {
    /// The process (for an acquire site shared by several processes, the one that waited
    /// most there).
    pub pid: i64,
    /// Its name.
    pub comm: String,
    /// Processes whose threads waited there.
    pub processes: usize,
    /// The futex or the acquire site.
    pub on: WaitedOn,
    /// Threads that waited there.
    pub threads: usize,
    /// Waits there.
    pub waits: u64,
    /// Nanoseconds waited there.
    pub delay: u64,
    /// Waits ended by another thread that waited there too: it held the lock.
    pub contended_waits: u64,
    /// Their nanoseconds.
    pub contended_delay: u64,
    /// Nanoseconds of waits ended by a thread that never waited there (work handed over),
    /// or taking back a condition variable's mutex once woken (the rest of a hand-off).
    pub handed_off_delay: u64,
    /// Whether the profile recorded who woke its waits (files from before did not).
    pub evidence: bool,
    /// The functions that waited for the lock (the innermost frame outside the C library),
    /// most delay first, with their delay: every wait but those known to have been handed
    /// something or to take back a condition variable's mutex (CI saw node's start-up
    /// mutex, which its platform workers queue for, listed as waited in `uv_cond_wait` for
    /// the main thread's relock after their signal).
    pub waiters: Vec<(String, u64)>,
    /// Whose lock it is.
    pub kind: LockKind,
}

impl LockWaits {
    /// Whether threads queued here for a lock another of them held: most of the woken
    /// time was ended by a fellow waiter. Without wakers recorded, whether two threads
    /// waited on one futex, as older profiles were judged.
    pub fn contended(&self) -> bool {
        if !self.evidence {
            return matches!(self.on, WaitedOn::Futex(_)) && self.threads >= 2;
        }
        self.threads >= 2
            && self.contended_waits > 0
            && self.contended_delay >= self.handed_off_delay
    }
}

/// What to do about a contended lock.
pub const CONTENTION_HINT: &str = "shorten the critical section (move work out of the lock), \
    shard or partition the data so threads take different locks, buffer and batch updates \
    locally, use copy-on-write for read-mostly data, or a reader/writer lock if most holders \
    only read";

#[derive(Default)]
struct Acc {
    pids: BTreeMap<i64, (String, u64)>,
    tids: BTreeSet<i64>,
    futexes: BTreeSet<(i64, String)>,
    waits: u64,
    delay: u64,
    contended_waits: u64,
    contended_delay: u64,
    handed_off_delay: u64,
    waiters: HashMap<String, u64>,
    /// Nanoseconds waited for CPython's GIL.
    gil_delay: u64,
}

impl Acc {
    fn add(&mut self, profile: &Profile, wait: &Wait<'_>) {
        let process = self
            .pids
            .entry(wait.pid)
            .or_insert_with(|| (wait.comm.to_owned(), 0));
        // Saturating: values read from a file can add up past the largest number.
        process.1 = process.1.saturating_add(wait.delay);
        self.tids.insert(wait.tid);
        self.futexes.insert((wait.pid, wait.futex.to_owned()));
        self.waits = self.waits.saturating_add(wait.waits);
        self.delay = self.delay.saturating_add(wait.delay);
        match wait.evidence {
            Evidence::Contended => {
                self.contended_waits = self.contended_waits.saturating_add(wait.waits);
                self.contended_delay = self.contended_delay.saturating_add(wait.delay);
            }
            Evidence::HandedOff | Evidence::Relocking => {
                self.handed_off_delay = self.handed_off_delay.saturating_add(wait.delay);
            }
            _ => {}
        }
        if waits_for_gil(profile, wait.sample.stack) {
            self.gil_delay = self.gil_delay.saturating_add(wait.delay);
        }
        // A wait that was handed something, or took back a condition variable's mutex,
        // did not queue for the lock: where it waited is no place of the contention.
        if !matches!(wait.evidence, Evidence::HandedOff | Evidence::Relocking) {
            let waiter = self
                .waiters
                .entry(language::user_caller(profile, wait.sample.stack))
                .or_default();
            *waiter = waiter.saturating_add(wait.delay);
        }
    }

    fn finish(self, on: WaitedOn, evidence: bool) -> LockWaits {
        let (pid, comm) = self
            .pids
            .iter()
            .max_by_key(|(pid, (_, delay))| (*delay, std::cmp::Reverse(**pid)))
            .map(|(pid, (comm, _))| (*pid, comm.clone()))
            .unwrap_or_default();
        let mut waiters: Vec<(String, u64)> = self.waiters.into_iter().collect();
        waiters.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        LockWaits {
            pid,
            comm,
            processes: self.pids.len(),
            on,
            threads: self.tids.len(),
            waits: self.waits,
            delay: self.delay,
            contended_waits: self.contended_waits,
            contended_delay: self.contended_delay,
            handed_off_delay: self.handed_off_delay,
            evidence,
            waiters,
            // Most of the time, not all: a GIL's futex may see a stray wait elsewhere.
            kind: if self.gil_delay > self.delay / 2 {
                LockKind::PythonGil
            } else {
                LockKind::Program
            },
        }
    }
}

/// Waits grouped by (process, futex), and by (program, acquire site) where each waiter
/// slept on its own futex, most delay first. A wait counts in its acquire site's group only
/// when its futex's group is not contended (so one queue is reported once), and a site's
/// group is kept only when its waits were on two futexes or more.
pub fn lock_waits<'a>(profile: &'a Profile, waits: &[Wait<'a>]) -> Vec<LockWaits> {
    let evidence = records_wakers(profile);
    let mut by_futex: BTreeMap<(i64, &str), Acc> = BTreeMap::new();
    for wait in waits {
        by_futex
            .entry((wait.pid, wait.futex))
            .or_default()
            .add(profile, wait);
    }
    let mut all: Vec<LockWaits> = by_futex
        .into_iter()
        .map(|((_, futex), acc)| acc.finish(WaitedOn::Futex(futex.to_owned()), evidence))
        .collect();
    let contended_futexes: BTreeSet<(i64, String)> = all
        .iter()
        .filter(|w| w.contended())
        .filter_map(|w| match &w.on {
            WaitedOn::Futex(futex) => Some((w.pid, futex.clone())),
            WaitedOn::AcquireSite(_) => None,
        })
        .collect();
    let mut by_site: BTreeMap<(&str, &[&str]), Acc> = BTreeMap::new();
    for wait in waits.iter().filter(|w| !w.site.is_empty()) {
        if contended_futexes.contains(&(wait.pid, wait.futex.to_owned())) {
            continue;
        }
        by_site
            .entry((wait.comm, &wait.site[..]))
            .or_default()
            .add(profile, wait);
    }
    for ((_, site), acc) in by_site {
        if acc.futexes.len() >= 2 {
            let outermost_first = site.iter().rev().map(|f| (*f).to_owned()).collect();
            all.push(acc.finish(WaitedOn::AcquireSite(outermost_first), evidence));
        }
    }
    all.sort_by(|a, b| b.delay.cmp(&a.delay).then_with(|| a.on.cmp(&b.on)));
    all
}

/// Whether the profile recorded who woke its futex waits (files written before it did
/// not): the evidence contention is judged by.
fn records_wakers(profile: &Profile) -> bool {
    profile
        .samples
        .iter()
        .any(|s| s.label_num(LabelKey::WakerTid).is_some())
}

/// Whether a sample is an idle Go runtime thread's futex wait (the scheduler parking an
/// M with nothing to run), which is not blocking anyone.
pub fn is_idle(sample: &profiler_model::Sample) -> bool {
    profiler_model::labels::class_of(sample) == Some(profiler_model::labels::WaitClass::Idle)
        && !sample.is_goroutine_wait()
}

/// One process's futex waits, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessBlocked {
    /// The process.
    pub pid: i64,
    /// Its name.
    pub comm: String,
    /// Threads that waited.
    pub threads: usize,
    /// Nanoseconds waited, all waits (idle Go runtime threads left out): at most threads
    /// times the window.
    pub waited: u64,
    /// Nanoseconds waited for a lock of the program's that another thread held; `None`
    /// when the profile did not record who woke the waits.
    pub contended: Option<u64>,
    /// Nanoseconds of those waits spent in the Go runtime's own locks (`runtime.lock2`):
    /// not the program's, so not in `contended` however they were woken.
    pub runtime_locks: u64,
}

/// Futex waits per process, the most contended first (then the most waited); goroutine
/// waits and idle Go runtime threads left out. `program` are the program's own waits,
/// `runtime` the Go runtime's lock waits ([`super::go_runtime_locks::split`]): both are
/// waited time, only the program's can be its contended locks.
pub fn by_process(program: &[Wait<'_>], runtime: &[Wait<'_>]) -> Vec<ProcessBlocked> {
    #[derive(Default)]
    struct Totals {
        comm: String,
        tids: BTreeSet<i64>,
        waited: u64,
        contended: u64,
        runtime_locks: u64,
        evidence: bool,
    }
    let mut totals: BTreeMap<i64, Totals> = BTreeMap::new();
    let all = program.iter().map(|w| (w, false));
    for (wait, in_runtime) in all.chain(runtime.iter().map(|w| (w, true))) {
        let entry = totals.entry(wait.pid).or_insert_with(|| Totals {
            comm: wait.comm.to_owned(),
            ..Totals::default()
        });
        entry.tids.insert(wait.tid);
        entry.waited = entry.waited.saturating_add(wait.delay);
        if in_runtime {
            entry.runtime_locks = entry.runtime_locks.saturating_add(wait.delay);
        } else if wait.evidence == Evidence::Contended {
            entry.contended = entry.contended.saturating_add(wait.delay);
        }
        entry.evidence |= matches!(wait.evidence, Evidence::Contended | Evidence::HandedOff);
    }
    let mut all: Vec<ProcessBlocked> = totals
        .into_iter()
        .map(|(pid, t)| ProcessBlocked {
            pid,
            comm: t.comm,
            threads: t.tids.len(),
            waited: t.waited,
            contended: t.evidence.then_some(t.contended),
            runtime_locks: t.runtime_locks,
        })
        .collect();
    all.sort_by_key(|p| std::cmp::Reverse((p.contended.unwrap_or(0), p.waited)));
    all
}

/// Nanoseconds of waits known to be idle (handed work, timed out, interrupted, or never
/// slept), which the top waiting stacks leave out.
pub fn idle_delay(waits: &[Wait<'_>]) -> u64 {
    waits
        .iter()
        .filter(|w| w.evidence.is_idle())
        .fold(0u64, |sum, w| sum.saturating_add(w.delay))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::{Label, Line, Location, ProfileBuilder, ValueType};

    use super::*;
    use crate::analysis::wake_evidence::futex_waits;

    /// Labels of one futex wait of process 7 (`app`): thread, futex, outcome, waker.
    pub fn labels(tid: i64, futex: &str, outcome: &str, waker: Option<i64>) -> Vec<Label> {
        let mut labels = vec![
            Label::num(LabelKey::Pid, 7),
            Label::num(LabelKey::Tid, tid),
            Label::str(LabelKey::Comm, "app"),
            Label::str(LabelKey::Futex, futex),
            Label::str(LabelKey::Outcome, outcome),
        ];
        if let Some(waker) = waker {
            labels.push(Label::num(LabelKey::WakerPid, 7));
            labels.push(Label::num(LabelKey::WakerTid, waker));
        }
        labels
    }

    /// A blocking profile of one-frame stacks: (function, delay, labels), one wait each.
    pub fn block_profile(samples: &[(&str, u64, Vec<Label>)]) -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Block,
            vec![
                ValueType::new("contentions", "count"),
                ValueType::new("delay", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        for (function, delay, labels) in samples {
            let loc = b.location(Location {
                address: function.len() as u64,
                mapping: None,
                lines: vec![Line {
                    function: (*function).to_owned(),
                    file: None,
                    line: 0,
                }],
                kind: profiler_model::FrameKind::Function,
            });
            let stack = b.stack(vec![loc]);
            b.add_sample(stack, &[1, *delay as i64], labels.clone());
        }
        b.build()
    }

    #[test]
    fn a_lock_its_waiters_pass_on_is_contended() {
        let p = block_profile(&[
            ("contend_lock", 500, labels(1, "0x10", "woken", Some(2))),
            ("contend_lock", 700, labels(2, "0x10", "woken", Some(1))),
            ("consume", 100, labels(3, "0x20", "woken", Some(1))),
        ]);
        let groups = lock_waits(&p, &futex_waits(&p));
        assert_eq!(groups.len(), 2);
        let lock = &groups[0];
        assert_eq!(lock.on, WaitedOn::Futex("0x10".to_owned()));
        assert_eq!(
            (lock.threads, lock.waits, lock.delay, lock.contended_delay),
            (2, 2, 1200, 1200)
        );
        assert!(lock.contended());
        assert_eq!(lock.waiters, vec![("contend_lock".to_owned(), 1200)]);
        assert!(!groups[1].contended());
    }

    #[test]
    fn a_condition_waits_relock_is_no_place_of_the_locks_contention() {
        // Workers 1 and 2 queue for the mutex and wake each other; the main thread 3 takes
        // it back after its condition wait, woken by worker 2.
        let p = block_profile(&[
            ("contend_lock", 500, labels(1, "0x10", "woken", Some(2))),
            ("contend_lock", 700, labels(2, "0x10", "woken", Some(1))),
            (
                "__pthread_mutex_cond_lock",
                300,
                labels(3, "0x10", "woken", Some(2)),
            ),
        ]);
        let groups = lock_waits(&p, &futex_waits(&p));
        let lock = &groups[0];
        assert!(lock.contended());
        assert_eq!((lock.threads, lock.delay), (3, 1500));
        assert_eq!(lock.waiters, vec![("contend_lock".to_owned(), 1200)]);
    }

    #[test]
    fn waits_in_take_gil_are_the_python_gil() {
        // Two Python threads pass the GIL's condition variable back and forth.
        let p = block_profile(&[
            ("take_gil", 500, labels(1, "0x10", "woken", Some(2))),
            ("take_gil", 700, labels(2, "0x10", "woken", Some(1))),
            ("contend_lock", 500, labels(1, "0x20", "woken", Some(2))),
            ("contend_lock", 700, labels(2, "0x20", "woken", Some(1))),
        ]);
        let groups = lock_waits(&p, &futex_waits(&p));
        let kind_of = |futex: &str| {
            groups
                .iter()
                .find(|g| g.on == WaitedOn::Futex(futex.to_owned()))
                .map(|g| (g.contended(), g.kind))
        };
        assert_eq!(kind_of("0x10"), Some((true, LockKind::PythonGil)));
        assert_eq!(kind_of("0x20"), Some((true, LockKind::Program)));
    }

    #[test]
    fn an_idle_pool_is_not_contended() {
        // Four workers on one condition variable, each woken by the producer (9).
        let p = block_profile(
            &(1..=4)
                .map(|tid| ("worker_wait", 1000, labels(tid, "0x10", "woken", Some(9))))
                .collect::<Vec<_>>(),
        );
        let groups = lock_waits(&p, &futex_waits(&p));
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].threads, groups[0].handed_off_delay), (4, 4000));
        assert!(!groups[0].contended());
        let blocked = by_process(&futex_waits(&p), &[]);
        assert_eq!(
            (blocked[0].waited, blocked[0].contended, blocked[0].threads),
            (4000, Some(0), 4)
        );
        assert_eq!(idle_delay(&futex_waits(&p)), 4000);
    }

    #[test]
    fn go_runtime_lock_waits_are_waited_time_but_not_the_program_s_contention() {
        // Two threads passing a lock between them, once as the program's, once as the
        // Go runtime's: both waited, only the first can be the program's contention.
        let p = block_profile(&[
            ("contend_lock", 500, labels(1, "0x10", "woken", Some(2))),
            ("contend_lock", 700, labels(2, "0x10", "woken", Some(1))),
        ]);
        let waits = futex_waits(&p);
        let as_program = by_process(&waits, &[]);
        assert_eq!(
            (
                as_program[0].waited,
                as_program[0].contended,
                as_program[0].runtime_locks
            ),
            (1200, Some(1200), 0)
        );
        let as_runtime = by_process(&[], &waits);
        assert_eq!(
            (
                as_runtime[0].waited,
                as_runtime[0].contended,
                as_runtime[0].runtime_locks
            ),
            (1200, Some(0), 1200)
        );
    }

    #[test]
    fn a_queue_of_per_waiter_semaphores_is_found_at_its_acquire_site() {
        let p = block_profile(&[
            ("lwlock_acquire", 500, labels(1, "0x10", "woken", Some(2))),
            ("lwlock_acquire", 700, labels(2, "0x20", "woken", Some(1))),
        ]);
        let groups = lock_waits(&p, &futex_waits(&p));
        let site: Vec<&LockWaits> = groups
            .iter()
            .filter(|g| matches!(g.on, WaitedOn::AcquireSite(_)))
            .collect();
        assert_eq!(site.len(), 1, "{groups:?}");
        assert_eq!(
            site[0].on,
            WaitedOn::AcquireSite(vec!["lwlock_acquire".to_owned()])
        );
        assert!(site[0].contended());
        // Each futex alone had one waiter: not contended on its own.
        assert!(
            groups
                .iter()
                .filter(|g| matches!(g.on, WaitedOn::Futex(_)))
                .all(|g| !g.contended())
        );
    }

    #[test]
    fn profiles_without_wakers_are_judged_by_waiters() {
        let p = block_profile(&[
            ("contend_lock", 500, labels(1, "0x10", "woken", None)),
            ("contend_lock", 700, labels(2, "0x10", "woken", None)),
        ]);
        let groups = lock_waits(&p, &futex_waits(&p));
        assert!(groups[0].contended() && !groups[0].evidence);
        assert_eq!(by_process(&futex_waits(&p), &[])[0].contended, None);
    }
}
