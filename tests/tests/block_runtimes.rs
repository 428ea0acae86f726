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
#[path = "../block/runtimes.rs"]
#[allow(dead_code)]
mod runtimes;

use std::ffi::{OsStr, OsString};

use integration_tests::{
    FixtureResult, Run, prerequisites, profiler_command, run_command, temp_dir,
};
use raw::{RawSample, raw_samples};
use runtimes::{
    JVM, NODE, Runtime, blocked_time_failures, check_runtime, jvm_command, node_command,
    print_figures,
};

/// How long each fixture works, in seconds: long enough for dozens of collections and
/// bursts, short enough to keep the machine free.
const SECONDS: &str = "3";

/// One profiled run of a runtime fixture.
struct RuntimeRun {
    _tmp: tempfile::TempDir,
    run: Run,
    measured: FixtureResult,
    samples: Vec<RawSample>,
}

/// Runs `profiler --profiles cpu,block -- <command> SECONDS RESULT` in a fresh directory.
fn profile(command: &[OsString], dir: tempfile::TempDir) -> RuntimeRun {
    let out = dir.path().join("out");
    let result = dir.path().join("result.txt");
    let mut argv: Vec<&OsStr> = vec![
        "-o".as_ref(),
        out.as_os_str(),
        "--profiles".as_ref(),
        "cpu,block".as_ref(),
        "--".as_ref(),
    ];
    argv.extend(command.iter().map(OsString::as_os_str));
    argv.push(SECONDS.as_ref());
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

/// Every check of the run of `runtime`'s fixture; the failures.
fn check(runtime: &Runtime, r: &RuntimeRun) -> Vec<String> {
    let stdout = &r.run.stdout;
    let mut failures = check_runtime(runtime, r.measured.get("pid"), stdout, &r.samples);
    failures.extend(blocked_time_failures(stdout));
    failures
}

/// Prints the figures of the run, for the record.
fn print(runtime: &Runtime, r: &RuntimeRun) {
    let measured = format!("{:?}", r.measured.0);
    print_figures(runtime, r.measured.get("pid"), &r.run.stdout, &measured);
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
    let dir = temp_dir();
    let command = jvm_command(dir.path());
    let r = profile(&command, dir);
    print(&JVM, &r);
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
    let r = profile(&node_command(), temp_dir());
    print(&NODE, &r);
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
