//! The runtimes whose idle worker pools must not read as lock contention (issue 25): a
//! JVM with one busy thread (`fixtures/block_jvm.java`) and Node.js keeping libuv's pool
//! busy in bursts (`fixtures/block_libuv.js`), how to run them, and the checks of a
//! blocking-profile run that had them in it: the summary's `Blocked time per process` and
//! `Contention` sections read back, and the hand-off evidence of `block.pb.gz`. Shared by
//! `block_runtimes` (each runtime profiled alone) and `whole_host_busy` (both on a busy
//! host, profiled whole); include it next to `../block/raw.rs` as module `raw`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::run_command;

use crate::raw::RawSample;

/// A runtime's pool whose idle wait the test looks at: the function the pool's threads
/// wait for work in (on the stack of their waits), and what it is, for messages.
pub struct Pool {
    pub what: &'static str,
    pub site: &'static str,
}

/// The runtime's wait primitives: where a thread sleeps until another notifies it (a
/// condition variable or a semaphore), not where it takes a lock.
pub struct Runtime {
    pub comm: &'static str,
    pub pools: &'static [Pool],
    pub waits: &'static [&'static str],
}

/// OpenJDK 17 with G1 (JDK 21 renamed `GangWorker` to `WorkerThread`, not installed here).
pub const JVM: Runtime = Runtime {
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
pub const NODE: Runtime = Runtime {
    comm: "node",
    pools: &[Pool {
        what: "libuv's worker pool waiting for jobs",
        site: "worker",
    }],
    waits: &["uv_cond_wait", "uv_sem_wait"],
};

/// glibc's condition-variable wait sleeps on the condvar's word, then retakes the mutex
/// in this function, where it may wait again, on the mutex's word.
pub const COND_MUTEX_RELOCK: &str = "__pthread_mutex_cond_lock";

/// A tool the test runs, or a failure saying what installs it.
pub fn tool(name: &'static str, package: &str) -> &'static str {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "{name} not found: `cargo xtask setup --for-tests` installs Debian's {package}"
    );
    name
}

/// A fixture's source in `tests/fixtures/`.
pub fn fixture_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The JVM fixture's command line without its `SECONDS RESULT` arguments, its class
/// compiled into `dir` (a directory of the test's, which the JVM may also write logs to).
pub fn jvm_command(dir: &Path) -> Vec<OsString> {
    let javac = tool("javac", "openjdk-17-jdk-headless");
    let java = tool("java", "openjdk-17-jdk-headless");
    let mut compile = Command::new(javac);
    compile
        .arg("-d")
        .arg(dir)
        .arg(fixture_source("block_jvm.java"));
    run_command(compile).assert_success();
    // G1 is the default on a machine with 2 CPUs and 2 GiB, and the collector whose
    // worker pool the issue saw; named so that a smaller machine does not get Serial.
    // A small heap makes young collections frequent.
    vec![
        java.into(),
        "-XX:+UseG1GC".into(),
        "-Xmx64m".into(),
        "-cp".into(),
        dir.into(),
        "BlockJvm".into(),
    ]
}

/// The Node.js fixture's command line without its `SECONDS RESULT` arguments.
pub fn node_command() -> Vec<OsString> {
    let node = tool("node", "nodejs");
    vec![node.into(), fixture_source("block_libuv.js").into()]
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
pub struct BlockedLine {
    pub line: String,
    pub waited_ns: f64,
    pub name: String,
    pub pid: String,
    pub threads: u64,
}

/// `  26.5 ms contended of    80.46 s waited  java (pid 17558, 20 threads)[; ...]`.
pub fn blocked_lines(stdout: &str) -> Vec<BlockedLine> {
    let parse = |line: &str| -> Option<BlockedLine> {
        let (before, after) = line.split_once(" waited  ")?;
        let waited = before.rsplit_once(" of ").map_or(before, |(_, w)| w);
        let (name, rest) = after.rsplit_once(" (pid ")?;
        let (pid, rest) = rest.split_once(", ")?;
        // A Go process's line may go on after its threads (`; 1.2 ms of it in the Go
        // runtime's own locks`).
        let threads = rest.split_once(" threads)")?.0.parse().ok()?;
        Some(BlockedLine {
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
pub fn window_seconds(stdout: &str) -> f64 {
    let run = stdout
        .lines()
        .find(|l| l.starts_with("run: "))
        .unwrap_or_else(|| panic!("no `run:` line\n{stdout}"));
    run.split_once("window: ")
        .and_then(|(_, w)| w.split_once("s ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no window in {run:?}"))
}

/// The entries of the Contention section: each `* ...` line with its `waited in` lines.
pub fn contention_entries(stdout: &str) -> Vec<Vec<&str>> {
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in integration_tests::contention_section(stdout) {
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
pub fn entry_futex(entry: &[&str]) -> Option<String> {
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

/// Every `Blocked time per process` line within what its threads could wait in the
/// window; the failures. Any process's line, not only a runtime's: a sum of overlapping
/// or double-counted waits is no process's blocked time.
pub fn blocked_time_failures(stdout: &str) -> Vec<String> {
    let window = window_seconds(stdout);
    blocked_lines(stdout)
        .iter()
        .filter(|l| {
            // The line rounds to 0.01 s and the window to 0.01 s.
            let bound = l.threads as f64 * (window + 0.005) * 1e9 + 5e6;
            l.waited_ns > bound
        })
        .map(|l| {
            format!(
                "{:?}: more waited than {} threads can in a {window:.2} s window",
                l.line, l.threads
            )
        })
        .collect()
}

/// Whether a Contention entry is about process `pid` of `comm`: it names that pid, or
/// it is an acquire site across several processes of that name.
fn entry_is_of(entry: &[&str], comm: &str, pid: &str) -> bool {
    let header = entry[0];
    header.contains(&format!(" in {comm} (pid {pid})"))
        || (header.contains(&format!(" in {comm} (")) && header.contains(" processes)"))
}

/// Every check of a runtime's process `pid` in a run that printed `stdout` and wrote the
/// blocking profile `all` (every process's samples): its blocked-time line names the
/// process, no line is named after one of its threads, each of its pools' idle waits
/// was handed work by a thread that never waited there, and the Contention section has
/// nothing of it at a wait primitive or a pool's futex. The failures, each with its
/// evidence.
pub fn check_runtime(runtime: &Runtime, pid: &str, stdout: &str, all: &[RawSample]) -> Vec<String> {
    let mut failures = Vec::new();
    let samples: Vec<&RawSample> = all.iter().filter(|s| s.label("pid") == pid).collect();
    let names = thread_names(&samples);
    let waiters_on = |futex: &str| -> BTreeSet<&str> {
        samples
            .iter()
            .filter(|s| s.label("futex") == futex)
            .map(|s| s.label("tid"))
            .collect()
    };

    // Blocked time per process: the process, by its name, never one of its threads'.
    let lines = blocked_lines(stdout);
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
    }

    // Each pool sleeps on a futex no producer sleeps on: the waits ended by a thread that
    // never waited there are the hand-off. A pool's threads may pass a wake-up on once
    // each (libuv hands its exit message from worker to worker when the process exits).
    let mut pool_futexes = BTreeSet::new();
    let mut pool_threads = BTreeSet::new();
    for pool in runtime.pools {
        let at_site: Vec<&&RawSample> = samples
            .iter()
            .filter(|s| s.has(pool.site) && runtime.waits.iter().any(|w| s.has(w)))
            .collect();
        pool_futexes.extend(at_site.iter().map(|s| s.label("futex").to_owned()));
        pool_threads.extend(at_site.iter().map(|s| s.label("tid")));
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
            "{} (pid {pid}): {}: {handed} waits handed work by {wakers:?}, {peers} woken by a \
             peer\n{evidence}",
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
    // futexes (the one its threads sleep on and the mutex they retake on waking), and no
    // acquire site whose waiters are all the pools' threads (whatever the site's frames
    // say: a site may be a placeholder, such as a stack lost to a full ring).
    for entry in contention_entries(stdout) {
        if !entry_is_of(&entry, runtime.comm, pid) {
            continue;
        }
        let futex = entry_futex(&entry);
        let at_wait = entry.iter().skip(1).any(|l| {
            let f = l.trim_start().trim_start_matches("waited in ");
            runtime.waits.iter().any(|w| f.starts_with(w))
        });
        let at_pool = futex.as_ref().is_some_and(|f| pool_futexes.contains(f));
        let site = entry_site(&entry, runtime.comm);
        let site_waits: Vec<&RawSample> = site.as_ref().map_or_else(Vec::new, |frames| {
            samples
                .iter()
                .copied()
                .filter(|s| frames.iter().all(|f| s.has(f)))
                .collect()
        });
        let by_pools = !site_waits.is_empty()
            && site_waits
                .iter()
                .all(|s| pool_threads.contains(s.label("tid")));
        if at_wait || at_pool || by_pools {
            let evidence = match (&futex, &site) {
                (Some(f), _) => futex_evidence(&samples, f),
                (None, Some(_)) => waiters_evidence(&site_waits, &names),
                (None, None) => String::new(),
            };
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

/// The frames an acquire-site entry of a `comm` process names, innermost last
/// (`* lock-acquire site A > B > C in postgres (9 processes): ...`), if it is one.
pub fn entry_site(entry: &[&str], comm: &str) -> Option<Vec<String>> {
    let rest = entry[0].trim_start().strip_prefix("* lock-acquire site ")?;
    let (site, _) = rest.split_once(&format!(" in {comm} ("))?;
    Some(site.split(" > ").map(str::to_owned).collect())
}

/// Who waited in `waits` (a site's), by thread, with their wakers, for a failure message.
fn waiters_evidence(waits: &[&RawSample], names: &BTreeMap<String, String>) -> String {
    let who = |tid: &str| match names.get(tid) {
        Some(n) => format!("{tid} ({n})"),
        None if tid.is_empty() => "-".to_owned(),
        None => tid.to_owned(),
    };
    let mut rows: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
    for s in waits {
        let row = rows
            .entry((
                who(s.label("tid")),
                s.label("outcome").to_owned(),
                who(s.label("waker_tid")),
            ))
            .or_default();
        row.0 += s.contentions();
        row.1 += s.delay();
    }
    let mut out = String::from("    waits at the site:\n");
    for ((waiter, outcome, waker), (waits, delay)) in rows {
        let _ = writeln!(
            out,
            "      {waiter}: {waits} waits, {}, {outcome}, waker {waker}",
            ms(delay as f64)
        );
    }
    out
}

/// Prints the figures the summary gives for the runtime's process `pid` (and `measured`,
/// what the fixture said of itself), for the record.
pub fn print_figures(runtime: &Runtime, pid: &str, stdout: &str, measured: &str) {
    let line = blocked_lines(stdout)
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
        .filter(|e| entry_is_of(e, runtime.comm, pid))
        .map(|e| e.join("\n"))
        .collect();
    eprintln!(
        "{} (pid {pid}): fixture {measured}\n  {}\n  window {:.2} s; waits handed work or timed out: {idle}\n  \
         {findings}\n{}",
        runtime.comm,
        line.trim(),
        window_seconds(stdout),
        entries.join("\n")
    );
}

/// What the blocking profile `all` says of the waits behind each Contention entry of
/// process `pid` of `comm` (its futex's waiters and wakers, or its site's), for the record.
pub fn contention_evidence(comm: &str, pid: &str, stdout: &str, all: &[RawSample]) -> String {
    let samples: Vec<&RawSample> = all.iter().filter(|s| s.label("pid") == pid).collect();
    let names = thread_names(&samples);
    let mut out = String::new();
    for entry in contention_entries(stdout) {
        if !entry_is_of(&entry, comm, pid) {
            continue;
        }
        let _ = writeln!(out, "{}", entry.join("\n"));
        if let Some(futex) = entry_futex(&entry) {
            out.push_str(&futex_evidence(&samples, &futex));
        } else if let Some(frames) = entry_site(&entry, comm) {
            let waits: Vec<&RawSample> = samples
                .iter()
                .copied()
                .filter(|s| frames.iter().all(|f| s.has(f)))
                .collect();
            out.push_str(&waiters_evidence(&waits, &names));
        }
    }
    out
}
