//! `--pid` of a process covers the processes it forked before the run: a fixture builds a
//! tree (three children, one grandchild) before the profiler starts, each of which writes
//! to /dev/null from a function of its own only once the profiler is attached; the I/O
//! profile must count exactly the writes each process counted itself, under its own pid.
//! With `--pid-only` none of them is followed. And on real software: Debian's nginx,
//! profiled by its master's pid under `ab`, whose workers (forked before the run) must
//! show the writes the server itself says it made.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use integration_tests::{
    FixtureProcess, FixtureResult, Nginx, NginxConfig, Run, prerequisites, spawn_profiler, temp_dir,
};

// Waiting for the profiler's programs and the fixture's signal handler.
#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
// The pprof reader of the I/O tests: samples with values, frames and labels.
#[allow(dead_code)]
#[path = "io/raw.rs"]
mod raw;

use attach::{wait_until_attached, wait_until_catches};
use raw::{RawProfile, RawSample};

/// Each process below the fixture's parent: its key in the fixture's result, and the
/// function it writes from.
const WRITERS: [(&str, &str); 4] = [
    ("a", "child_a_writes"),
    ("b", "child_b_writes"),
    ("c", "child_c_writes"),
    ("g", "grandchild_writes"),
];

/// Starts the `pid_tree` fixture, waits until its whole tree waits for the signal,
/// profiles `--pid PARENT` with `extra` flags, lets the tree write inside the window, and
/// returns what the fixture measured, the profiler's run and the I/O profile.
fn profile_tree(extra: &[&str]) -> (FixtureResult, Run, RawProfile) {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let mut tree = FixtureProcess::spawn("pid_tree", &[]);
    let pid = tree.pid();
    // The parent catches SIGUSR1 only once its children and grandchild exist and wait.
    wait_until_catches(pid, libc::SIGUSR1);
    let pid_text = pid.to_string();
    let mut args = vec!["--profiles", "io", "--duration", "30s", "--pid", &pid_text];
    args.extend_from_slice(extra);
    let profiler = spawn_profiler(&args, &out);
    wait_until_attached(profiler.pid());
    // SAFETY: kill(2) on our own child, which is still running (it waits for this signal).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGUSR1);
    }
    let measured = tree.wait_result(Duration::from_secs(30));
    // The profiler stops by itself once its targets have exited.
    let run = profiler.wait();
    run.assert_success();
    let profile = RawProfile::load(&out.join("io.pb.gz"));
    (measured, run, profile)
}

#[test]
fn pid_of_a_parent_counts_the_writes_of_its_existing_children_and_grandchild_exactly() {
    if !prerequisites() {
        return;
    }
    let (measured, run, profile) = profile_tree(&[]);
    let parent = measured.get("parent_pid");
    let pids: BTreeSet<&str> = WRITERS
        .iter()
        .map(|(key, _)| measured.get(&format!("{key}_pid")))
        .collect();
    assert_eq!(pids.len(), 4, "the fixture's four processes: {measured:?}");
    let line = format!("target: pid {parent} (pid_tree) and its 4 descendant processes");
    assert!(
        run.stdout.contains(&line),
        "the summary should say `{line}`\n{}",
        run.transcript()
    );
    for (key, function) in WRITERS {
        let pid = measured.get(&format!("{key}_pid"));
        let calls = measured.u64(&format!("{key}_calls"));
        let bytes = measured.u64(&format!("{key}_bytes"));
        assert!(calls > 0, "{function} wrote nothing: {measured:?}");
        let samples: Vec<_> = profile.containing(function).collect();
        let elsewhere: Vec<String> = samples
            .iter()
            .filter(|s| s.label("pid") != Some(pid) || s.label("syscall") != Some("write"))
            .map(|s| s.describe())
            .collect();
        assert!(
            elsewhere.is_empty(),
            "{function} ran only in pid {pid} and only wrote; the profile has \
             {elsewhere:#?}"
        );
        let got = (
            profile.sum("calls", |s| s.has(function)),
            profile.sum("bytes", |s| s.has(function)),
        );
        assert_eq!(
            got,
            (calls as i64, bytes as i64),
            "io.pb.gz has (calls, bytes) = {got:?} for {function} in pid {pid}; the process \
             counted ({calls}, {bytes})\n{}",
            profile.describe(function)
        );
    }
    let of_parent = profile
        .samples
        .iter()
        .filter(|s| s.label("pid") == Some(parent))
        .filter(|s| WRITERS.iter().any(|(_, f)| s.has(f)))
        .count();
    assert_eq!(
        of_parent, 0,
        "the parent ({parent}) called no writer function"
    );
}

#[test]
fn pid_only_leaves_the_existing_children_out() {
    if !prerequisites() {
        return;
    }
    let (measured, run, profile) = profile_tree(&["--pid-only"]);
    let parent = measured.get("parent_pid");
    let line = format!("target: pid {parent} with threads and new children only (--pid-only)");
    assert!(
        run.stdout.contains(&line),
        "the summary should say `{line}`\n{}",
        run.transcript()
    );
    for (key, function) in WRITERS {
        let calls = measured.u64(&format!("{key}_calls"));
        assert!(
            calls > 0,
            "{function} wrote nothing, so its absence proves nothing"
        );
        let got = profile.sum("calls", |s| s.has(function));
        assert_eq!(
            got,
            0,
            "with --pid-only, {function} (pid {}, forked before the run) is not a target\n{}",
            measured.get(&format!("{key}_pid")),
            profile.describe(function)
        );
    }
}

/// Requests `ab` makes in the nginx test, and the body it asks for.
const REQUESTS: u64 = 200;
const PAGE_BYTES: usize = 3000;

/// Debian's nginx, started before the profiler with two workers, profiled by its master's
/// pid while `ab` makes a bounded number of requests. What the server logs per request
/// (the worker's pid, `$bytes_sent`) is what the profile must show of the workers: every
/// response's bytes written to the client under `ngx_http_write_filter` (with `sendfile
/// off`, headers and body go out by `writev`), and every access-log line written with one
/// `write` under `ngx_http_free_request`, each under the pid of the worker that logged
/// it; nothing of it under the master's pid.
#[test]
fn pid_of_nginx_master_profiles_its_workers() {
    if !prerequisites() {
        return;
    }
    let config = NginxConfig {
        workers: 2,
        sendfile: false,
    };
    let nginx = match Nginx::start(config) {
        Ok(nginx) => nginx,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    nginx.put_file("page.html", &[b'x'; PAGE_BYTES]);
    let master = nginx.pid();
    let workers = nginx.workers();
    assert_eq!(workers.len(), 2, "nginx's workers: {workers:?}");
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let master_text = master.to_string();
    let profiler = spawn_profiler(
        &[
            "--profiles",
            "io",
            "--duration",
            "60s",
            "--pid",
            &master_text,
        ],
        &out,
    );
    wait_until_attached(profiler.pid());
    let before = nginx.access_log().len();
    let ab = nginx.ab("page.html", REQUESTS, 4, false);
    // A worker logs a request just after sending its response, which ab may have read
    // first: the window closes once every request is in the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nginx.access_log().len() < before + REQUESTS as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The log line is in the file before the write returns; leave it that moment.
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our own child, still running (its duration is far off).
    unsafe {
        libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT);
    }
    let run = profiler.wait();
    run.assert_success();
    let log = nginx.access_log();
    let logs = nginx.logs();
    drop(nginx);

    assert_eq!(
        (ab.complete, ab.failed),
        (REQUESTS, 0),
        "ab's requests: {ab:?}\n{logs}"
    );
    let served = &log[before..];
    assert_eq!(
        served.len() as u64,
        REQUESTS,
        "access-log lines written during the run: {served:#?}"
    );
    let line = format!("target: pid {master} (nginx) and its 2 child processes");
    assert!(
        run.stdout.contains(&line),
        "the summary should say `{line}`\n{}",
        run.transcript()
    );
    // What each worker logged: requests, bytes sent to clients, bytes of log lines.
    let mut logged: BTreeMap<u32, (u64, u64, u64)> = BTreeMap::new();
    for l in served {
        assert!(
            l.status == 200 && workers.contains(&l.pid),
            "a request not served by a worker ({workers:?}) with 200: {l:?}"
        );
        let text = format!(
            "{} {} {} {} {} {}\n",
            l.pid, l.status, l.body_bytes_sent, l.bytes_sent, l.request_length, l.uri
        );
        let entry = logged.entry(l.pid).or_default();
        entry.0 += 1;
        entry.1 += l.bytes_sent;
        entry.2 += text.len() as u64;
    }
    let profile = RawProfile::load(&out.join("io.pb.gz"));
    for (&worker, &(requests, sent, log_bytes)) in &logged {
        let pid = worker.to_string();
        let of_worker = |s: &RawSample| s.label("pid") == Some(pid.as_str());
        let response = |s: &RawSample| of_worker(s) && s.has("ngx_http_write_filter");
        let written = (
            profile.sum("calls", response),
            profile.sum("bytes", response),
        );
        assert!(
            written.0 >= requests as i64 && written.1 == sent as i64,
            "worker {worker} logged {requests} responses of {sent} bytes in all ($bytes_sent); \
             the profile has {} calls of {} bytes under ngx_http_write_filter in its pid\n{}",
            written.0,
            written.1,
            profile.describe("ngx_http_write_filter")
        );
        let logging = |s: &RawSample| {
            of_worker(s) && s.has("ngx_http_free_request") && s.label("syscall") == Some("write")
        };
        let logs_written = (profile.sum("calls", logging), profile.sum("bytes", logging));
        assert_eq!(
            logs_written,
            (requests as i64, log_bytes as i64),
            "worker {worker} wrote {requests} access-log lines of {log_bytes} bytes in all; \
             the profile's (calls, bytes) of write under ngx_http_free_request in its pid\n{}",
            profile.describe("ngx_http_free_request")
        );
    }
    let master_text = master.to_string();
    let of_master: Vec<String> = profile
        .samples
        .iter()
        .filter(|s| s.label("pid") == Some(master_text.as_str()))
        .filter(|s| s.frames.iter().any(|f| f.starts_with("ngx_http_")))
        .map(RawSample::describe)
        .collect();
    assert!(
        of_master.is_empty(),
        "the master ({master}) serves no request: {of_master:#?}"
    );
}
