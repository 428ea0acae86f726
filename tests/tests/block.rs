//! Blocking-profile tests: the futex waits the profile records must add up to the time
//! the fixtures measured themselves blocked (around each `pthread_mutex_lock` or
//! `pthread_cond_wait` call), under the function that called the libc lock function,
//! with the futex address of the lock; a contended lock must be named in the summary and
//! a private one must not; a wait still going on when the window closes must be counted up
//! to the end of the window.

#[path = "../block/raw.rs"]
mod raw;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use integration_tests::{
    FixtureResult, Folded, Run, assert_counted_to_window_end, fixture, monotonic_ns, pprof,
    prerequisites, run_profiler, temp_dir,
};
use raw::{RawSample, delay_by_tid, describe, raw_samples};

/// Largest allowed relative gap between a profile's delay and a fixture's own
/// measurement of the same waits. The fixture's clock brackets each libc call and the
/// profile times the futex syscalls inside it: the difference is the call's user-space
/// part (a few atomic operations, well under a microsecond) per call, against waits of
/// milliseconds, so well under 1% of the total; 10% leaves room for a loaded machine.
const DELAY_TOLERANCE: f64 = 0.10;

/// The frames of a restored libc lock call (the leaf frame the profiler puts back below
/// the caller of `pthread_mutex_lock`).
const LIBC_LOCK_FRAMES: &[&str] = &["pthread_mutex_lock", "lll_lock_wait"];

// ---------------------------------------------------------------------------
// The fixtures

/// The command name the kernel gives the fixture `name` (its first 15 bytes).
fn comm_of(name: &str) -> &str {
    &name[..name.len().min(15)]
}

// ---------------------------------------------------------------------------
// Running the profiler on them

/// One finished blocking profile of a fixture run as the profiler's command.
struct BlockRun {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    run: Run,
    measured: FixtureResult,
    /// CLOCK_MONOTONIC just before the profiler was started and just after it exited.
    started_ns: u64,
    exited_ns: u64,
}

impl BlockRun {
    fn folded(&self) -> Folded {
        let p = self.out.join("block.folded");
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        Folded::parse(&text)
    }

    fn pb(&self) -> PathBuf {
        self.out.join("block.pb.gz")
    }

    fn samples(&self) -> Vec<RawSample> {
        raw_samples(&self.pb())
    }

    /// The stdout block that follows `Contention (locks threads queued for, ...):` (empty
    /// when there is none).
    fn contention_section(&self) -> Vec<&str> {
        integration_tests::contention_section(&self.run.stdout)
    }
}

/// Runs `profiler --profiles block [extra] -- <fixture> <args> <result file>`.
fn profile_fixture(name: &str, extra: &[&str], args: &[&str]) -> BlockRun {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture(name);
    let mut argv: Vec<&OsStr> = vec!["--profiles".as_ref(), "block".as_ref()];
    argv.extend(extra.iter().map(OsStr::new));
    argv.push("--".as_ref());
    argv.push(exe.as_os_str());
    argv.extend(args.iter().map(OsStr::new));
    argv.push(result.as_os_str());

    let started_ns = monotonic_ns();
    let run = run_profiler(&argv, &out);
    let exited_ns = monotonic_ns();
    run.assert_success();
    let measured = FixtureResult::read(&result);
    for name in ["block.folded", "block.pb.gz", "block.svg"] {
        let p = out.join(name);
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("output {} missing: {e}\n{}", p.display(), run.transcript()))
            .len();
        assert!(len > 0, "output {} is empty", p.display());
    }
    BlockRun {
        _tmp: tmp,
        out,
        run,
        measured,
        started_ns,
        exited_ns,
    }
}

fn ms(ns: impl Into<f64>) -> String {
    format!("{:.1} ms", ns.into() / 1e6)
}

/// Asserts `got` is within [`DELAY_TOLERANCE`] of `want` (both nanoseconds).
fn assert_delay_close(what: &str, got: u64, want: u64, context: &str) {
    let gap = (got as f64 - want as f64).abs() / want as f64;
    assert!(
        gap <= DELAY_TOLERANCE,
        "{what}: the profile has {} where the fixture measured {} itself ({:+.1}%, more than \
         {:.0}% off)\n{context}",
        ms(got as f64),
        ms(want as f64),
        100.0 * (got as f64 - want as f64) / want as f64,
        100.0 * DELAY_TOLERANCE
    );
}

// ---------------------------------------------------------------------------
// The tests

/// The thread ids in a fixture's comma-separated list (`none` for an empty one).
fn tid_list(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .filter(|t| !t.is_empty() && *t != "none")
        .map(str::to_owned)
        .collect()
}

/// block_mutex: 4 threads, 8000 times each through one mutex held ~tens of µs. Which of
/// them ever has to sleep is the scheduler's choice: the fixture says which did. At 2000
/// the fixture ran 50 ms and blocked 60-110 ms in all here, and under a helper's load
/// 38-45 ms: under the 50 ms it must block for its figures to mean anything (5 of 13
/// runs failed there).
#[test]
fn contended_mutex_delay_matches_fixture_and_names_the_lock() {
    if !prerequisites() {
        return;
    }
    let r = profile_fixture("block_mutex", &["--duration", "60s"], &["8000"]);
    let measured_wait = r.measured.u64("wait_ns");
    let mutex = r.measured.get("mutex").to_owned();
    let threads: Vec<String> = r
        .measured
        .get("tids")
        .split(',')
        .map(str::to_owned)
        .collect();
    let thread_wait: Vec<u64> = r
        .measured
        .get("thread_wait_ns")
        .split(',')
        .map(|w| w.parse().expect("thread_wait_ns is a list of numbers"))
        .collect();
    let slept = tid_list(r.measured.get("slept_tids"));
    let folded = r.folded();
    let samples = r.samples();
    let context = format!(
        "fixture: {:?}\n{}\n{}",
        r.measured.0,
        folded.summary(10),
        describe(&samples)
    );

    // The fixture must really have contended, or nothing below means anything.
    assert!(
        measured_wait >= 50_000_000 && !slept.is_empty(),
        "the fixture was blocked only {} in pthread_mutex_lock and threads {slept:?} slept \
         there: no real contention",
        ms(measured_wait as f64)
    );

    // Delay under contend_lock = the fixture's own blocked time.
    let in_contend = folded.samples_containing("contend_lock");
    assert_delay_close(
        "delay under contend_lock",
        in_contend,
        measured_wait,
        &context,
    );

    // The libc frames below contend_lock are restored: the caller of the lock function
    // is followed by the lock function itself.
    for stack in folded.stacks.iter().filter(|s| s.has("contend_lock")) {
        let at = stack
            .frames
            .iter()
            .position(|f| f == "contend_lock")
            .unwrap();
        let below = &stack.frames[at + 1..];
        assert!(
            below
                .iter()
                .any(|f| LIBC_LOCK_FRAMES.iter().any(|l| f.contains(l))),
            "block.folded line under contend_lock has no libc lock frame ({LIBC_LOCK_FRAMES:?}) \
             after it: {};{} {}",
            stack.comm,
            stack.frames.join(";"),
            stack.count
        );
    }

    // Every wait under contend_lock is on the one mutex.
    let contend: Vec<&RawSample> = samples.iter().filter(|s| s.has("contend_lock")).collect();
    let futexes: BTreeSet<&str> = contend.iter().map(|s| s.label("futex")).collect();
    assert_eq!(
        futexes,
        BTreeSet::from([mutex.as_str()]),
        "the waits under contend_lock should all carry the fixture's mutex address {mutex} \
         as their futex label\n{context}"
    );
    // The waiting threads are the fixture's: every thread that slept in the lock is there,
    // and none that is not a worker. (A worker that never slept may still show, with futex
    // calls that found the lock released and returned at once.)
    let tids: BTreeSet<String> = contend.iter().map(|s| s.label("tid").to_owned()).collect();
    assert!(
        slept.is_subset(&tids),
        "threads {:?} slept in the lock by the fixture's count but have no wait under \
         contend_lock (waiting tids {tids:?})\n{context}",
        slept.difference(&tids).collect::<Vec<_>>()
    );
    assert!(
        tids.iter().all(|t| threads.contains(t)),
        "waits under contend_lock from tids {tids:?}, not all among the fixture's workers \
         {threads:?}\n{context}"
    );
    // No thread waited in the futex longer than it measured itself blocked around the lock.
    let by_tid = delay_by_tid(&samples, |s| s.has("contend_lock"));
    for (tid, wait) in threads.iter().zip(&thread_wait) {
        let delay = by_tid.get(tid).copied().unwrap_or(0).max(0) as u64;
        assert!(
            delay as f64 <= *wait as f64 * (1.0 + DELAY_TOLERANCE) + 1e6,
            "thread {tid} has {} of delay under contend_lock but measured itself blocked \
             only {}\n{context}",
            ms(delay as f64),
            ms(*wait as f64)
        );
    }
    let pid = r.run.stdout.lines().find_map(|l| {
        l.rsplit_once("block_mutex (pid ").map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
    });
    for s in &contend {
        assert_eq!(s.label("comm"), "block_mutex", "comm label\n{context}");
        assert!(
            pid.as_deref().is_none_or(|pid| s.label("pid") == pid),
            "pid label {:?} differs from the summary's pid {pid:?}\n{context}",
            s.label("pid")
        );
        assert!(
            ["woken", "timed out", "interrupted", "no wait"].contains(&s.label("outcome")),
            "unexpected outcome {:?} for a wait that ended before the command did\n{context}",
            s.label("outcome")
        );
    }

    // Who woke the waits is the evidence of contention: a lock released by one worker
    // wakes another, so every woken wait on the mutex whose waker was recorded names a
    // worker as its waker, and nearly all woken waits have one.
    let woken: Vec<&&RawSample> = contend
        .iter()
        .filter(|s| s.label("outcome") == "woken")
        .collect();
    let with_waker: i64 = woken
        .iter()
        .filter(|s| !s.label("waker_tid").is_empty())
        .map(|s| s.delay())
        .sum();
    let all_woken: i64 = woken.iter().map(|s| s.delay()).sum();
    assert!(
        with_waker as f64 >= 0.95 * all_woken as f64,
        "only {} of {} of woken waits on the mutex name their waker\n{context}",
        ms(with_waker as f64),
        ms(all_woken as f64)
    );
    for s in woken.iter().filter(|s| !s.label("waker_tid").is_empty()) {
        assert!(
            threads.iter().any(|t| t == s.label("waker_tid"))
                && s.label("waker_tid") != s.label("tid"),
            "a wait of thread {} on the mutex was woken by {}, not another worker {threads:?}\n\
             {context}",
            s.label("tid"),
            s.label("waker_tid")
        );
    }

    // With two threads or more waiting, the summary names the lock, as many threads as
    // the profile has on it and the function that waited, and says what to do.
    if slept.len() < 2 {
        return;
    }
    let on_mutex: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.label("futex") == mutex)
        .map(|s| s.label("tid"))
        .collect();
    let waiting = on_mutex.len();
    let section = r.contention_section();
    let stdout = &r.run.stdout;
    let head = format!("* futex {mutex} in block_mutex (pid ");
    let at = section
        .iter()
        .position(|l| l.trim_start().starts_with(&head))
        .unwrap_or_else(|| {
            panic!("the Contention section does not list the mutex {mutex}\n{stdout}")
        });
    assert!(
        section[at].contains(&format!("): {waiting} threads waited "))
            && section[at].contains(" of it for a lock another of them held"),
        "the mutex's contention line does not say {waiting} threads: {:?}\n{stdout}",
        section[at]
    );
    let waiters: Vec<&str> = section[at + 1..]
        .iter()
        .take_while(|l| l.starts_with("    "))
        .copied()
        .collect();
    assert!(
        waiters
            .iter()
            .any(|l| l.trim_start().starts_with("waited in contend_lock (")),
        "the mutex's contention entry does not say `waited in contend_lock`: {waiters:?}\n{stdout}"
    );
    assert!(
        section.iter().any(|l| l.trim_start().starts_with("fix: ")),
        "the Contention section has no `fix:` line\n{stdout}"
    );
}

/// block_condvar: the consumer waits ~2 ms for each of 200 items in consume().
#[test]
fn condvar_waits_are_attributed_to_the_consumer() {
    if !prerequisites() {
        return;
    }
    let r = profile_fixture("block_condvar", &["--duration", "60s"], &["200"]);
    let measured_wait = r.measured.u64("wait_ns");
    let consumer_tid = r.measured.get("consumer_tid").to_owned();
    let folded = r.folded();
    let samples = r.samples();
    let context = format!("{}\n{}", folded.summary(10), describe(&samples));
    assert!(
        measured_wait >= 200_000_000,
        "the consumer waited only {} for 200 items made every 2 ms",
        ms(measured_wait as f64)
    );

    // Only the consumer thread runs consume().
    let by_tid = delay_by_tid(&samples, |s| s.has("consume"));
    assert!(
        by_tid.keys().all(|tid| *tid == consumer_tid),
        "waits under consume carry tids other than the consumer's ({consumer_tid}): delay by \
         tid {by_tid:?}\n{context}"
    );
    let in_consume = folded.samples_containing("consume");
    assert_delay_close("delay under consume", in_consume, measured_wait, &context);

    // The consumer is handed items, not kept from a lock: the producer, which never waits
    // on the condition variable, woke it. So its waits are not contention, and the summary
    // reports none.
    // glibc waits on a word inside the pthread_cond_t (48 bytes), not at its start.
    let hex = |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok();
    let cond = hex(r.measured.get("cond")).expect("cond= is an address");
    let cond_waits: Vec<&RawSample> = samples
        .iter()
        .filter(|s| hex(s.label("futex")).is_some_and(|f| (cond..cond + 48).contains(&f)))
        .filter(|s| s.label("outcome") == "woken")
        .collect();
    assert!(
        cond_waits
            .iter()
            .all(|s| s.label("waker_tid").is_empty() || s.label("waker_tid") != consumer_tid),
        "the consumer's condition-variable waits name the consumer as their waker\n{context}"
    );
    assert!(
        cond_waits.iter().any(|s| !s.label("waker_tid").is_empty()),
        "no condition-variable wait names its waker (the producer)\n{context}"
    );
    assert!(
        r.run.stdout.contains("Contention: none"),
        "a producer handing items to a consumer is reported as contention\n{}",
        r.run.stdout
    );
}

/// block_uncontended: 2 threads, each with its own mutex, never wait on each other.
#[test]
fn uncontended_private_locks_do_not_block() {
    if !prerequisites() {
        return;
    }
    let r = profile_fixture("block_uncontended", &["--duration", "60s"], &["1000000"]);
    let runtime = r.measured.u64("runtime_ns");
    let comm = comm_of("block_uncontended");
    let folded = r.folded();
    let context = folded.summary(10);

    // The run was traced: the main thread waited in pthread_join, when it had to (the
    // fixture counts its sleeps there; the workers may have finished first).
    assert!(
        r.measured.u64("join_sleeps") == 0 || folded.with_comm(comm).total() > 0,
        "no futex wait of {comm} at all (its main thread joins its workers)\n{context}\n{}",
        r.run.stdout
    );
    let in_private = folded.samples_containing("private_lock");
    assert!(
        (in_private as f64) < 0.01 * runtime as f64,
        "{} of delay under private_lock, which only takes uncontended locks, in a run of {} \
         (limit 1%)\n{context}",
        ms(in_private as f64),
        ms(runtime as f64)
    );
    let section = r.contention_section();
    let listed: Vec<&&str> = section
        .iter()
        .filter(|l| l.contains(&format!(" in {comm} (pid ")) || l.contains("private_lock"))
        .collect();
    assert!(
        listed.is_empty(),
        "the summary reports contention in the uncontended fixture: {listed:?}\n{}",
        r.run.stdout
    );
}

#[test]
fn go_tool_pprof_top_by_delay_shows_contend_lock() {
    if !prerequisites() {
        return;
    }
    let r = profile_fixture("block_mutex", &["--duration", "60s"], &["500"]);
    // Whether any thread had to wait is the scheduler's choice; without a wait there is
    // nothing for pprof to show.
    if tid_list(r.measured.get("slept_tids")).is_empty() {
        eprintln!("no thread of block_mutex slept in the lock; nothing to look for");
        return;
    }
    let pb = r.pb();
    let top = pprof(&[
        "-top".as_ref(),
        "-sample_index=delay".as_ref(),
        pb.as_os_str(),
    ]);
    top.assert_success();
    assert!(
        top.stdout.contains("contend_lock"),
        "`go tool pprof -top -sample_index=delay` does not list contend_lock\n{}",
        top.transcript()
    );
    let top = pprof(&[
        "-top".as_ref(),
        "-sample_index=contentions".as_ref(),
        pb.as_os_str(),
    ]);
    top.assert_success();
    assert!(
        top.stdout.contains("contend_lock"),
        "`go tool pprof -top -sample_index=contentions` does not list contend_lock\n{}",
        top.transcript()
    );
}

/// block_stuck: its waiter enters a wait that never ends right after the launch; the
/// window closes 2 s later with the wait still going on.
#[test]
fn wait_in_progress_at_the_end_is_counted_up_to_it() {
    if !prerequisites() {
        return;
    }
    const WINDOW: Duration = Duration::from_secs(2);
    // The fixture outlives the window by 1 s, then exits by itself.
    let r = profile_fixture("block_stuck", &["--duration", "2s"], &["3"]);
    let wait_start = r.measured.u64("wait_start_ns");
    let waiter_tid = r.measured.get("waiter_tid").to_owned();
    let samples = r.samples();
    let context = describe(&samples);

    let waiting: Vec<&RawSample> = samples.iter().filter(|s| s.has("wait_forever")).collect();
    assert!(
        !waiting.is_empty(),
        "no wait under wait_forever in the profile\n{context}"
    );
    for s in &waiting {
        assert_eq!(
            s.label("outcome"),
            "in progress",
            "the never-ending wait under wait_forever has the wrong outcome\n{context}"
        );
        assert_eq!(s.label("tid"), waiter_tid, "tid label\n{context}");
        assert_eq!(s.label("comm"), "block_stuck", "comm label\n{context}");
    }
    let waits: i64 = waiting.iter().map(|s| s.contentions()).sum();
    assert_eq!(waits, 1, "one wait, counted once\n{context}");
    let delay = waiting.iter().map(|s| s.delay()).sum::<i64>() as u64;

    let run = (r.started_ns, r.exited_ns);
    assert_counted_to_window_end("wait", delay, wait_start, run, WINDOW, &context);
    let nominal = WINDOW.as_nanos() as f64;
    assert!(
        (delay as f64 - nominal).abs() <= 0.2 * nominal,
        "the in-progress wait has {} of delay in a {WINDOW:?} window it spent waiting\n{context}",
        ms(delay as f64)
    );
    let folded = r.folded();
    assert_eq!(
        folded.samples_containing("wait_forever"),
        delay,
        "block.folded and block.pb.gz disagree on wait_forever\n{}",
        folded.summary(10)
    );
}
