//! Idle worker pools of real runtimes are not lock contention: a JVM (Debian's OpenJDK
//! 17) whose one busy thread allocates, so G1's GC workers are woken for collections and
//! the JIT compiler threads for methods, and Node.js keeping libuv's worker pool busy in
//! bursts with pauses between them. Their pool threads sleep most of the window and are
//! woken by a producer (the VM thread, the Java thread, Node's main thread) that never
//! sleeps where they do. The blocking profile must show that hand-off (the woken waits
//! carry a `waker_tid` of a thread that never waited on that futex), the summary must
//! report no contention at the pools' waits, and its blocked time per process must be a
//! process's, named after the process, within its threads times the window.

#[path = "../block/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{
    FixtureResult, Run, prerequisites, profiler_command, run_command, temp_dir,
};
use raw::{RawSample, raw_samples};

/// How long each fixture works, in seconds: long enough for dozens of collections and
/// bursts, short enough to keep the machine free.
const SECONDS: &str = "3";

/// A runtime's pool whose idle wait the test looks at: the function the pool's threads
/// wait for work in (on the stack of their waits), and what it is, for messages.
struct Pool {
    what: &'static str,
    site: &'static str,
}

/// The runtime's wait primitives: where a thread sleeps until another notifies it (a
/// condition variable or a semaphore), not where it takes a lock.
struct Runtime {
    comm: &'static str,
    pools: &'static [Pool],
    waits: &'static [&'static str],
}

/// OpenJDK 17 with G1 (JDK 21 renamed `GangWorker` to `WorkerThread`, not installed here).
const JVM: Runtime = Runtime {
    comm: "java",
    pools: &[
        Pool {
            what: "G1's GC workers waiting for a collection",
            site: "GangWorker::loop",
        },
        Pool {
            what: "the JIT compiler threads waiting for a method to compile",
            site: "CompileQueue::get",
        },
        Pool {
            what: "the VM thread waiting for an operation (a collection)",
            site: "VMThread::wait_for_operation",
        },
    ],
    waits: &["os::PlatformMonitor::wait", "PosixSemaphore::wait"],
};

/// Node.js 20, libuv linked in (its thread pool's loop is the static `worker`).
const NODE: Runtime = Runtime {
    comm: "node",
    pools: &[Pool {
        what: "libuv's worker pool waiting for jobs",
        site: "worker",
    }],
    waits: &["uv_cond_wait", "uv_sem_wait"],
};

/// glibc's condition-variable wait sleeps on the condvar's word, then retakes the mutex
/// in this function, where it may wait again, on the mutex's word.
const COND_MUTEX_RELOCK: &str = "__pthread_mutex_cond_lock";

/// A tool the test runs, or a failure saying what installs it.
fn tool(name: &'static str, package: &str) -> &'static str {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "{name} not found: `cargo xtask setup --for-tests` installs Debian's {package}"
    );
    name
}

fn fixture_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// One profiled run of a runtime fixture.
struct RuntimeRun {
    _tmp: tempfile::TempDir,
    run: Run,
    measured: FixtureResult,
    samples: Vec<RawSample>,
}

/// Runs `profiler --profiles cpu,block -- <command> RESULT` in a fresh directory.
fn profile(command: &[&OsStr], dir: tempfile::TempDir) -> RuntimeRun {
    let out = dir.path().join("out");
    let result = dir.path().join("result.txt");
    let mut argv: Vec<&OsStr> = vec![
        "-o".as_ref(),
        out.as_os_str(),
        "--profiles".as_ref(),
        "cpu,block".as_ref(),
        "--".as_ref(),
    ];
    argv.extend(command);
    argv.push(result.as_os_str());
    let mut cmd = profiler_command(&argv);
    // Runtimes leave logs and class files in their working directory.
    cmd.current_dir(dir.path());
    let run = run_command(cmd);
    run.assert_success();
    let measured = FixtureResult::read(&result);
    let samples = raw_samples(&out.join("block.pb.gz"));
    RuntimeRun {
        _tmp: dir,
        run,
        measured,
        samples,
    }
}

/// Parses the summary's durations: `80.46 s`, `26.5 ms`, `515.7 µs`, in nanoseconds.
fn parse_duration(text: &str) -> Option<f64> {
    let (value, unit) = text.trim().split_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let scale = match unit {
        "s" => 1e9,
        "ms" => 1e6,
        "µs" => 1e3,
        "ns" => 1.0,
        _ => return None,
    };
    Some(value * scale)
}

fn ms(ns: f64) -> String {
    format!("{:.1} ms", ns / 1e6)
}

/// One line of `Blocked time per process`.
#[derive(Debug)]
struct ProcessLine {
    line: String,
    waited_ns: f64,
    name: String,
    pid: String,
    threads: u64,
}

/// `  26.5 ms contended of    80.46 s waited  java (pid 17558, 20 threads)`.
fn process_lines(stdout: &str) -> Vec<ProcessLine> {
    let parse = |line: &str| -> Option<ProcessLine> {
        let (before, after) = line.split_once(" waited  ")?;
        let waited = before.rsplit_once(" of ").map_or(before, |(_, w)| w);
        let (name, rest) = after.rsplit_once(" (pid ")?;
        let (pid, rest) = rest.split_once(", ")?;
        let threads = rest.strip_suffix(" threads)")?.parse().ok()?;
        Some(ProcessLine {
            line: line.to_owned(),
            waited_ns: parse_duration(waited)?,
            name: name.to_owned(),
            pid: pid.to_owned(),
            threads,
        })
    };
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Blocked time per process"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| parse(l).unwrap_or_else(|| panic!("unparsed blocked-time line {l:?}")))
        .collect()
}

/// The window's length in seconds, from the `run:` line (`window: 4.40s from ...`).
fn window_seconds(stdout: &str) -> f64 {
    let run = stdout
        .lines()
        .find(|l| l.starts_with("run: "))
        .unwrap_or_else(|| panic!("no `run:` line\n{stdout}"));
    run.split_once("window: ")
        .and_then(|(_, w)| w.split_once("s ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no window in {run:?}"))
}

/// The entries of the Contention section: each `* ...` line with its `waited in` lines.
fn contention_entries(stdout: &str) -> Vec<Vec<&str>> {
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in stdout
        .lines()
        .skip_while(|l| !l.starts_with("Contention (locks threads queued for"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
    {
        if line.starts_with("  * ") {
            entries.push(vec![line]);
        } else if line.starts_with("    ")
            && let Some(entry) = entries.last_mut()
        {
            entry.push(line);
        }
    }
    entries
}

/// The futex an entry names (`* futex 0x7f94... in java (pid 1): ...`), if it names one.
fn entry_futex(entry: &[&str]) -> Option<String> {
    let rest = entry[0].trim_start().strip_prefix("* futex ")?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// The innermost functions of a wait outside the C library and the kernel, for messages.
fn callers(s: &RawSample) -> String {
    s.functions()
        .iter()
        .filter(|f| {
            !["_", "futex", "lll_", "do_", "entry_", "x64_", "syscall"]
                .iter()
                .any(|p| f.starts_with(p))
        })
        .take(4)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" < ")
}

/// What the process's samples say about each thread: its name, when it has one.
fn thread_names(samples: &[&RawSample]) -> BTreeMap<String, String> {
    samples
        .iter()
        .filter(|s| !s.label("thread").is_empty())
        .map(|s| (s.label("tid").to_owned(), s.label("thread").to_owned()))
        .collect()
}

/// Who waited on `futex` and who woke them, grouped by waiter, waker and callers, for a
/// failure message: the evidence an analysis fix needs.
fn futex_evidence(samples: &[&RawSample], futex: &str) -> String {
    let names = thread_names(samples);
    let who = |tid: &str| match names.get(tid) {
        Some(n) => format!("{tid} ({n})"),
        None if tid.is_empty() => "-".to_owned(),
        None => tid.to_owned(),
    };
    let on: Vec<&&RawSample> = samples
        .iter()
        .filter(|s| s.label("futex") == futex)
        .collect();
    let waiters: BTreeSet<&str> = on.iter().map(|s| s.label("tid")).collect();
    let mut rows: BTreeMap<(String, String, String, String), (i64, i64)> = BTreeMap::new();
    for s in &on {
        let waker = s.label("waker_tid");
        let kind = match (s.label("outcome"), waker) {
            ("woken", "") => "woken, waker unknown".to_owned(),
            ("woken", w) if waiters.contains(w) => "woken by a thread that waited here".into(),
            ("woken", _) => "woken by a thread that never waited here".into(),
            (outcome, _) => outcome.to_owned(),
        };
        let row = rows
            .entry((who(s.label("tid")), kind, who(waker), callers(s)))
            .or_default();
        row.0 += s.contentions();
        row.1 += s.delay();
    }
    let mut out = format!("    waits on futex {futex} (waiters {waiters:?}):\n");
    for ((waiter, kind, waker, callers), (waits, delay)) in rows {
        let _ = writeln!(
            out,
            "      {waiter}: {waits} waits, {}, {kind}, waker {waker}; in {callers}",
            ms(delay as f64)
        );
    }
    out
}

/// Every check of one runtime's run; the failures, each with its evidence.
fn check(runtime: &Runtime, r: &RuntimeRun) -> Vec<String> {
    let mut failures = Vec::new();
    let pid = r.measured.get("pid");
    let stdout = &r.run.stdout;
    let samples: Vec<&RawSample> = r.samples.iter().filter(|s| s.label("pid") == pid).collect();
    let names = thread_names(&samples);
    let waiters_on = |futex: &str| -> BTreeSet<&str> {
        samples
            .iter()
            .filter(|s| s.label("futex") == futex)
            .map(|s| s.label("tid"))
            .collect()
    };

    // Blocked time per process: the process, by its name, never one of its threads',
    // and no more than its threads could wait in the window.
    let window = window_seconds(stdout);
    let lines = process_lines(stdout);
    match lines.iter().find(|l| l.pid == pid) {
        None => failures.push(format!("no blocked-time line for pid {pid}")),
        Some(l) if l.name != runtime.comm => failures.push(format!(
            "the blocked-time line of pid {pid} names {:?}, not the process {:?}: {:?}",
            l.name, runtime.comm, l.line
        )),
        Some(_) => {}
    }
    for l in &lines {
        if names.values().any(|n| *n == l.name && n != runtime.comm) {
            failures.push(format!(
                "a blocked-time line is named after a thread of {}: {:?}",
                runtime.comm, l.line
            ));
        }
        // The line rounds to 0.01 s and the window to 0.01 s.
        let bound = l.threads as f64 * (window + 0.005) * 1e9 + 5e6;
        if l.waited_ns > bound {
            failures.push(format!(
                "{:?}: more waited than {} threads can in a {window:.2} s window",
                l.line, l.threads
            ));
        }
    }

    // Each pool sleeps on a futex no producer sleeps on: the waits ended by a thread that
    // never waited there are the hand-off. A pool's threads may pass a wake-up on once
    // each (libuv hands its exit message from worker to worker when the process exits).
    let mut pool_futexes = BTreeSet::new();
    for pool in runtime.pools {
        let at_site: Vec<&&RawSample> = samples
            .iter()
            .filter(|s| s.has(pool.site) && runtime.waits.iter().any(|w| s.has(w)))
            .collect();
        pool_futexes.extend(at_site.iter().map(|s| s.label("futex").to_owned()));
        let sleeping: BTreeSet<&str> = at_site
            .iter()
            .filter(|s| !s.has(COND_MUTEX_RELOCK))
            .map(|s| s.label("futex"))
            .collect();
        let (mut handed, mut peers, mut threads) = (0, 0, 0);
        let mut wakers = BTreeSet::new();
        for futex in &sleeping {
            let waiters = waiters_on(futex);
            threads += waiters.len();
            for s in at_site.iter().filter(|s| s.label("futex") == *futex) {
                let waker = s.label("waker_tid");
                if s.label("outcome") != "woken" || waker.is_empty() {
                    continue;
                }
                if waiters.contains(waker) {
                    peers += s.contentions();
                } else {
                    handed += s.contentions();
                    wakers.insert(names.get(waker).map_or(waker, String::as_str));
                }
            }
        }
        let evidence: String = sleeping
            .iter()
            .map(|f| futex_evidence(&samples, f))
            .collect();
        eprintln!(
            "{}: {}: {handed} waits handed work by {wakers:?}, {peers} woken by a peer\n{evidence}",
            runtime.comm, pool.what
        );
        if handed == 0 {
            failures.push(format!(
                "{} ({}): no wait there was woken by a thread that never waited there, \
                 though the fixture made the pool work\n{evidence}",
                pool.what, pool.site
            ));
        }
        if peers > threads as i64 {
            failures.push(format!(
                "{} ({}): {peers} waits woken by another of the {threads} threads that \
                 waited there, more than one each\n{evidence}",
                pool.what, pool.site
            ));
        }
    }

    // The Contention section: nothing of the process at a wait primitive or at a pool's
    // futexes (the one its threads sleep on and the mutex they retake on waking).
    for entry in contention_entries(stdout) {
        if !entry[0].contains(&format!(" in {} (", runtime.comm)) {
            continue;
        }
        let futex = entry_futex(&entry);
        let at_wait = entry.iter().skip(1).any(|l| {
            let f = l.trim_start().trim_start_matches("waited in ");
            runtime.waits.iter().any(|w| f.starts_with(w))
        });
        let at_pool = futex.as_ref().is_some_and(|f| pool_futexes.contains(f));
        if at_wait || at_pool {
            let evidence = futex.map_or(String::new(), |f| futex_evidence(&samples, &f));
            failures.push(format!(
                "the Contention section reports a wait of an idle or handed-off {} thread:\n\
                 {}\n{evidence}",
                runtime.comm,
                entry.join("\n")
            ));
        }
    }
    failures
}

/// Prints the figures the summary gives for the process, for the record.
fn print_figures(runtime: &Runtime, r: &RuntimeRun) {
    let stdout = &r.run.stdout;
    let pid = r.measured.get("pid");
    let line = process_lines(stdout)
        .into_iter()
        .find(|l| l.pid == pid)
        .map_or_else(|| "(none)".to_owned(), |l| l.line);
    let idle = stdout
        .lines()
        .find_map(|l| {
            l.split_once("left out: ")
                .map(|(_, v)| v.trim_end_matches("):"))
        })
        .unwrap_or("(none)");
    let findings = stdout
        .lines()
        .find(|l| l.starts_with("Findings: "))
        .unwrap_or("(none)");
    let entries: Vec<String> = contention_entries(stdout)
        .iter()
        .map(|e| e.join("\n"))
        .collect();
    eprintln!(
        "{}: fixture {:?}\n  {}\n  window {:.2} s; waits handed work or timed out: {idle}\n  \
         {findings}\n{}",
        runtime.comm,
        r.measured.0,
        line.trim(),
        window_seconds(stdout),
        entries.join("\n")
    );
}

fn assert_no_failures(runtime: &Runtime, r: &RuntimeRun, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{}: {} failures:\n\n{}\n\n--- summary ---\n{}",
        runtime.comm,
        failures.len(),
        failures.join("\n\n"),
        r.run.stdout
    );
}

/// A JVM with one busy thread: its GC workers, JIT compiler threads and VM thread sleep
/// until handed work, which is no contention.
#[test]
fn a_jvm_s_idle_pools_are_not_contention() {
    if !prerequisites() {
        return;
    }
    let javac = tool("javac", "openjdk-17-jdk-headless");
    let java = tool("java", "openjdk-17-jdk-headless");
    let dir = temp_dir();
    let source = fixture_source("block_jvm.java");
    let mut compile = Command::new(javac);
    compile.arg("-d").arg(dir.path()).arg(&source);
    run_command(compile).assert_success();
    // G1 is the default on a machine with 2 CPUs and 2 GiB, and the collector whose
    // worker pool the issue saw; named so that a smaller machine does not get Serial.
    // A small heap makes young collections frequent.
    let class_path = dir.path().as_os_str().to_owned();
    let r = profile(
        &[
            java.as_ref(),
            "-XX:+UseG1GC".as_ref(),
            "-Xmx64m".as_ref(),
            "-cp".as_ref(),
            &class_path,
            "BlockJvm".as_ref(),
            SECONDS.as_ref(),
        ],
        dir,
    );
    print_figures(&JVM, &r);
    let mut failures = Vec::new();
    // The fixture did its work: it ran its loop and the JVM collected, so the GC workers
    // were woken.
    if r.measured.u64("iterations") == 0 || r.measured.u64("cpu_ns") == 0 {
        failures.push(format!("the fixture did no work: {:?}", r.measured.0));
    }
    if r.measured.u64("collections") == 0 {
        failures.push(format!(
            "the JVM collected no garbage, so its GC workers had nothing to do: {:?}",
            r.measured.0
        ));
    }
    failures.extend(check(&JVM, &r));
    assert_no_failures(&JVM, &r, &failures);
}

/// Node.js with libuv's pool busy in bursts and idle between them.
#[test]
fn node_s_idle_libuv_pool_is_not_contention() {
    if !prerequisites() {
        return;
    }
    let node = tool("node", "nodejs");
    let script = fixture_source("block_libuv.js");
    let r = profile(
        &[node.as_ref(), script.as_os_str(), SECONDS.as_ref()],
        temp_dir(),
    );
    print_figures(&NODE, &r);
    let mut failures = Vec::new();
    // Every job queued completed, over several bursts with pauses between them.
    let (queued, completed) = (r.measured.u64("queued"), r.measured.u64("completed"));
    if completed == 0 || completed != queued || r.measured.u64("rounds") < 2 {
        failures.push(format!(
            "the fixture did not run its bursts: {:?}",
            r.measured.0
        ));
    }
    failures.extend(check(&NODE, &r));
    assert_no_failures(&NODE, &r, &failures);
}
