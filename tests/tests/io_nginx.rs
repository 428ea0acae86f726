//! The I/O profile on real software: Debian's nginx (tests/src/nginx.rs) with
//! `sendfile on`, one worker, serving a 64 KiB file to a bounded `ab` run. nginx sends a
//! static file's body with `sendfile(2)` and only its headers with `writev`, so the
//! `sendfile` bytes of the worker in the profile must equal exactly what the worker logged
//! as `$body_bytes_sent` over its requests: the profiler attaches (to the worker, by
//! `--pid`) before the load starts and is stopped after the last request was logged, so
//! the window holds every request whole. Where the descriptor's kind was seen, it is the
//! socket written to, not the file read.

use std::time::{Duration, Instant};

use integration_tests::{Nginx, NginxConfig, prerequisites, spawn_profiler, temp_dir};

// The I/O tests' helpers: waiting for the profiler to attach, and the pprof reader.
#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
#[allow(dead_code)]
#[path = "io/findings.rs"]
mod findings;
#[allow(dead_code)]
#[path = "io/raw.rs"]
mod raw;

use attach::wait_until_attached;
use findings::{round_trip_finding, small_io_findings};
use raw::RawProfile;

/// The file served, and how many times: 200 bodies of 64 KiB, 12.5 MiB in all.
const FILE: &str = "body.bin";
const FILE_BYTES: usize = 64 * 1024;
const REQUESTS: u64 = 200;

#[test]
fn nginx_sendfile_bytes_equal_the_body_bytes_its_worker_logged() {
    if !prerequisites() {
        return;
    }
    let nginx = match Nginx::start(NginxConfig {
        workers: 1,
        sendfile: true,
    }) {
        Ok(nginx) => nginx,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let body: Vec<u8> = (0..FILE_BYTES).map(|i| (i % 251) as u8).collect();
    nginx.put_file(FILE, &body);
    let workers = nginx.workers();
    assert_eq!(workers.len(), 1, "nginx runs one worker: {workers:?}");
    let worker = workers[0];

    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let pid = worker.to_string();
    let profiler = spawn_profiler(
        &["--pid", &pid, "--profiles", "io", "--duration", "120s"],
        &out,
    );
    wait_until_attached(profiler.pid());

    let ab = nginx.ab(FILE, REQUESTS, 4, false);
    assert_eq!(
        (ab.complete, ab.failed),
        (REQUESTS, 0),
        "ab did not complete every request\n{}",
        nginx.logs()
    );
    // nginx logs a request once it has sent it, which can be just after ab has it all.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = nginx.access_log();
    while (log.len() as u64) < REQUESTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        log = nginx.access_log();
    }
    assert_eq!(
        log.len() as u64,
        REQUESTS,
        "the access log has {} lines for {REQUESTS} requests: {log:?}",
        log.len()
    );
    // Ctrl-C ends the window with every file written.
    // SAFETY: kill(2) on our own child, still running (its window is 120 s).
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT) };
    let run = profiler.wait();
    run.assert_success();

    let logged: Vec<_> = log.iter().filter(|l| l.pid == worker).collect();
    assert!(
        logged
            .iter()
            .all(|l| l.status == 200 && l.body_bytes_sent == FILE_BYTES as u64),
        "the worker did not send the whole file for every request: {logged:?}"
    );
    let body_bytes: u64 = logged.iter().map(|l| l.body_bytes_sent).sum();
    assert!(
        body_bytes > 0,
        "the worker {worker} logged no body bytes: {log:?}"
    );

    let profile = RawProfile::load(&out.join("io.pb.gz"));
    let sendfiles: Vec<_> = profile
        .samples
        .iter()
        .filter(|s| s.label("syscall") == Some("sendfile"))
        .collect();
    let sent = profile.sum("bytes", |s| {
        s.label("syscall") == Some("sendfile") && s.label("pid") == Some(pid.as_str())
    });
    let listing = sendfiles
        .iter()
        .map(|s| s.describe())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        sent,
        body_bytes as i64,
        "the profile's sendfile bytes of worker {worker} are not what it logged as \
         $body_bytes_sent over its {} requests ({body_bytes} B); its sendfile samples:\n\
         {listing}\n{}",
        logged.len(),
        run.transcript()
    );
    // The descriptor's kind is read from /proc while it is open, and a connection without
    // keep-alive may be closed by then: where it was seen, it is the socket written to,
    // never the file read.
    for s in &sendfiles {
        assert!(
            matches!(s.label("descriptor"), None | Some("socket")),
            "a sendfile of nginx is labelled with another descriptor than the socket it \
             writes to: {}",
            s.describe()
        );
    }
}

/// Keep-alive requests for a small file, nginx profiled by its master's pid: each request
/// is read with one `recvfrom` and answered with one `writev` of its headers (the body
/// goes by `sendfile`), so both sites are round trips, as many writes as the worker
/// logged requests, with neither a saving nor advice nginx cannot use (datagram calls on
/// a TCP socket, corking what it already corks).
#[test]
fn nginx_request_and_response_calls_are_round_trips_without_savings() {
    const SMALL_REQUESTS: u64 = 5_000;
    if !prerequisites() {
        return;
    }
    let nginx = match Nginx::start(NginxConfig {
        workers: 1,
        sendfile: true,
    }) {
        Ok(nginx) => nginx,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    nginx.put_file("small.txt", b"a small body\n");
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let master = nginx.pid().to_string();
    let profiler = spawn_profiler(
        &[
            "--pid",
            &master,
            "--profiles",
            "io",
            "--duration",
            "120s",
            "--small-io-rate",
            "100",
        ],
        &out,
    );
    wait_until_attached(profiler.pid());
    let ab = nginx.ab("small.txt", SMALL_REQUESTS, 4, true);
    assert_eq!(
        (ab.complete, ab.failed),
        (SMALL_REQUESTS, 0),
        "{}",
        nginx.logs()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while (nginx.access_log().len() as u64) < SMALL_REQUESTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let logged = nginx.access_log().len() as i64;
    // SAFETY: kill(2) on our own child, still running (its window is 120 s).
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT) };
    let run = profiler.wait();
    run.assert_success();

    let profile = RawProfile::load(&out.join("io.pb.gz"));
    let worker = nginx.workers()[0].to_string();
    let writev = |value: &str| {
        profile.sum(value, |s| {
            s.label("pid") == Some(worker.as_str())
                && s.label("syscall") == Some("writev")
                && s.label("descriptor") == Some("socket")
        })
    };
    let (writes, turns) = (writev("calls"), writev("turns"));
    assert_eq!(
        writes,
        logged,
        "the worker logged {logged} requests, the profile has {writes} writevs on sockets\n{}",
        run.transcript()
    );
    assert!(
        turns * 10 >= writes * 9,
        "only {turns} of {writes} writevs turned the direction around\n{}",
        run.transcript()
    );
    let found = small_io_findings(&run.stdout);
    for syscall in ["recvfrom", "writev"] {
        let f = round_trip_finding(&found, "nginx", syscall, &run.stdout)
            .unwrap_or_else(|why| panic!("{why}"));
        let text = f.text();
        for advice in ["recvmmsg", "sendmmsg", "TCP_CORK", "MSG_MORE"] {
            assert!(
                !text.contains(advice),
                "nginx's {syscall} is told {advice}:\n{text}"
            );
        }
    }
}
