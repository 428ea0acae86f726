//! Goroutine waits of a real Go net/http service (`fixtures/go_service.go`: JSON answers,
//! a mutex-guarded map, a worker goroutine fed by a channel, net/http/pprof mounted), by
//! its pid, under a bounded keep-alive `ab` load with the garbage collector running often
//! (`GOGC=5`), for every Go toolchain the tests cover. The service runs Go's own block
//! profiling at rate 1, and the test takes its block profile (/debug/pprof/block) just
//! before and just after the load: the handler's waits (its reply channel, the map's
//! mutex) must have the count and delay of Go's own profile over that load within 10%,
//! and no wait of the handler's channel or mutex may be put under the garbage collector's
//! functions (the handler's GC assists are waits of their own, which Go does not profile).
//! The worker waiting for jobs and the GC's sweeper are idle: the summary names neither,
//! and the Go runtime's own lock waits are not called the service's contention.
//!
//! The worker spins 50 µs per request, so a reply wait lasts about that long: Go times a
//! channel wait from the start of the operation, the profiler from the park, and the
//! probe's own microsecond or two would be 15% of the ~10 µs waits of a worker that does
//! nothing (seen here on every release).

#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
#[allow(dead_code)]
#[path = "../go/mod.rs"]
mod go;
#[path = "../block/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::path::Path;
use std::process::Command;

use integration_tests::{GoToolchain, prerequisites, run_command, spawn_profiler, temp_dir};
use raw::{RawSample, describe, raw_samples};

const REQUESTS: u64 = 20_000;
/// The largest relative gap allowed between the profile's figures and Go's own.
const TOLERANCE: f64 = 0.10;
/// The handler: every wait under it is a request's.
const HANDLER: &str = "main.kv";

/// Go's own block profile now, saved to `path` and read back.
fn go_block_profile(port: u16, path: &Path) -> Vec<RawSample> {
    std::fs::write(path, go::http_get(port, "/debug/pprof/block"))
        .expect("write Go's block profile");
    raw_samples(path)
}

/// Whether a stack passes through the garbage collector (an assist, a mark phase's end).
fn in_gc(sample: &RawSample) -> bool {
    sample
        .functions()
        .iter()
        .any(|f| f.starts_with("runtime.gc"))
}

/// (waits, delay) of the finished waits under `function`, the garbage collector's left
/// out (Go's block profile does not record them).
fn under(samples: &[RawSample], function: &str) -> (i64, i64) {
    samples
        .iter()
        .filter(|s| s.has(function) && s.label("outcome") != "in progress" && !in_gc(s))
        .fold((0, 0), |(n, d), s| (n + s.contentions(), d + s.delay()))
}

/// The handler's own blocking calls.
const USER_CALLS: [&str; 2] = ["runtime.chanrecv1", "sync.(*Mutex).Lock"];

fn gap(ours: i64, theirs: i64) -> f64 {
    (ours - theirs) as f64 / (theirs.max(1)) as f64
}

fn check(toolchain: &GoToolchain) -> Result<String, String> {
    let binary = go::build(toolchain, "go_service");
    let tmp = temp_dir();
    let (server, port) = go::start_server(
        &binary,
        tmp.path(),
        &[("GO_SERVICE_PROFILE_RATE", "1"), ("GOGC", "5")],
    );
    let pid = server.pid().to_string();
    let out = tmp.path().join("out");
    let profiler = spawn_profiler(
        &[
            "--pid",
            &pid,
            "--profiles",
            "block,goroutines",
            "--duration",
            "120s",
        ],
        &out,
    );
    attach::wait_until_attached(profiler.pid());
    let before = go_block_profile(port, &tmp.path().join("before.pb.gz"));
    let mut ab = Command::new(go::AB);
    ab.args(["-q", "-k", "-s", "30", "-c", "8", "-n"])
        .arg(REQUESTS.to_string())
        .arg(format!("http://127.0.0.1:{port}/kv?key=k1&work=50"));
    run_command(ab).assert_success();
    let after = go_block_profile(port, &tmp.path().join("after.pb.gz"));
    // SAFETY: kill(2) on our own child, still running (its window is 120 s).
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT) };
    let run = profiler.wait();
    run.assert_success();
    drop(server);

    let ours = raw_samples(&out.join("block.pb.gz"));
    let context = format!(
        "--- profile ---\n{}\n--- Go's block profile after the load ---\n{}\n{}",
        describe(&ours),
        describe(&after),
        run.transcript()
    );
    let (their_waits, their_delay) = {
        let (n1, d1) = under(&after, HANDLER);
        let (n0, d0) = under(&before, HANDLER);
        (n1 - n0, d1 - d0)
    };
    let (our_waits, our_delay) = under(&ours, HANDLER);
    if their_waits < REQUESTS as i64 / 2 {
        return Err(format!(
            "Go's own block profile has only {their_waits} waits under {HANDLER} for \
             {REQUESTS} requests: the service did not block as it should\n{context}"
        ));
    }
    if gap(our_waits, their_waits).abs() > TOLERANCE
        || gap(our_delay, their_delay).abs() > TOLERANCE
    {
        return Err(format!(
            "under {HANDLER}: {our_waits} waits, {:.1} ms in the profile; {their_waits} waits, \
             {:.1} ms in Go's own block profile of the load ({:+.1}% and {:+.1}%, more than \
             {:.0}% off)\n{context}",
            our_delay as f64 / 1e6,
            their_delay as f64 / 1e6,
            100.0 * gap(our_waits, their_waits),
            100.0 * gap(our_delay, their_delay),
            100.0 * TOLERANCE
        ));
    }
    // The garbage collector ran through the load: its waits have stacks of their own,
    // and the handler's channel and mutex waits are never among them.
    let gc_waits: i64 = ours
        .iter()
        .filter(|s| in_gc(s))
        .map(RawSample::contentions)
        .sum();
    if let Some(mixed) = ours
        .iter()
        .find(|s| in_gc(s) && USER_CALLS.iter().any(|call| s.has(call)))
    {
        return Err(format!(
            "a channel or mutex wait is under the garbage collector: {:?}\n{context}",
            mixed.functions()
        ));
    }
    // The worker waits for work at its goroutine's top, and the GC's sweeper idles: the
    // summary names neither, as a finding or among the top waiting stacks.
    if let Some(line) = run
        .stdout
        .lines()
        .find(|l| l.contains("main.worker") || l.contains("runtime.bgsweep"))
    {
        return Err(format!(
            "the summary names an idle goroutine: {line:?}\n{context}"
        ));
    }
    // A Go program's locks park goroutines; its threads' futex waits are the runtime's
    // (its own locks, idle threads). The service, pure Go, has no lock of its own that a
    // thread waits for on a futex: its blocked time says none is contended, whatever the
    // runtime's locks did.
    let blocked = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Blocked time per process"))
        .find(|l| l.contains(&format!("(pid {pid},")));
    if let Some(line) = blocked
        && let Some((contended, _)) = line.trim().split_once(" contended of ")
        && !contended.starts_with("0.0 ")
    {
        return Err(format!(
            "the service's futex waits, all the Go runtime's, are called its contention: \
             {line:?}\n{context}"
        ));
    }
    Ok(format!(
        "{our_waits} waits, {:.1} ms under {HANDLER} vs Go's {their_waits}, {:.1} ms; \
         {gc_waits} waits of the garbage collector's, apart",
        our_delay as f64 / 1e6,
        their_delay as f64 / 1e6
    ))
}

#[test]
fn a_go_service_s_waits_match_go_s_own_block_profile_with_gc_running() {
    if !prerequisites() {
        return;
    }
    if go::ab_missing() {
        return;
    }
    go::for_each_toolchain("go service", check);
}
