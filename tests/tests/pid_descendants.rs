//! `--pid` of a process covers the processes it forked before the run: a fixture builds a
//! tree (three children, one grandchild) before the profiler starts, each of which writes
//! to /dev/null from a function of its own only once the profiler is attached; the I/O
//! profile must count exactly the writes each process counted itself, under its own pid.
//! With `--pid-only` none of them is followed.

use std::collections::BTreeSet;
use std::time::Duration;

use integration_tests::{
    FixtureProcess, FixtureResult, Run, prerequisites, spawn_profiler, temp_dir,
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
use raw::RawProfile;

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
