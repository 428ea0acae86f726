//! The kernel check at start: a profile whose kernel feature is missing is refused with one
//! line naming the feature and the first Linux that has it, and the rest runs; a feature
//! every profile needs is one error line and nothing runs. The profiler is told to treat a
//! feature as missing (`PROFILER_KERNEL_WITHOUT`), since this machine's kernel has them
//! all; the answers of real kernels (6.1, 6.12, 6.1 under lockdown) are in the README.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration_tests::{
    Folded, Running, fixture, prerequisites, profiler_command, run_command, temp_dir,
};

/// The profiler with `args`, writing to `out`, told to treat `features` as missing.
fn profiler_without(features: &str, out: &Path, args: &[&OsStr]) -> Command {
    // Before `args`, which may end in `-- COMMAND`.
    let mut all: Vec<&OsStr> = vec!["-o".as_ref(), out.as_os_str()];
    all.extend_from_slice(args);
    let mut cmd = profiler_command(&all);
    cmd.env("PROFILER_KERNEL_WITHOUT", features);
    cmd
}

#[test]
fn a_profile_whose_feature_is_missing_is_refused_in_one_line_and_the_rest_runs() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let cmd = profiler_without(
        "attach_cookie",
        &out,
        &[
            "--profiles".as_ref(),
            "cpu,io,goroutines,heap".as_ref(),
            "--format".as_ref(),
            "pprof,folded".as_ref(),
            "--".as_ref(),
            fixture("cpu_split").as_os_str(),
            "2".as_ref(),
        ],
    );
    let run = Running::spawn(cmd).wait_timeout(Duration::from_secs(60));
    run.assert_success();
    run.assert_no_panic();
    let transcript = run.transcript();
    let refused: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("not collected") || line.contains("not traced"))
        .collect();
    assert_eq!(
        refused,
        [
            "profiler: goroutine waits not traced: uprobe BPF cookies are missing from this \
             kernel (RELEASE) although Linux 5.15 has them: asked, the kernel refused (its \
             build or settings leave this out)"
                .replace("RELEASE", &release()),
            "profiler: heap profile not collected: uprobe BPF cookies are missing from this \
             kernel (RELEASE) although Linux 5.15 has them: asked, the kernel refused (its \
             build or settings leave this out)"
                .replace("RELEASE", &release()),
        ],
        "{transcript}"
    );
    // The summary repeats them where the run's other facts are.
    for line in &refused {
        let line = line.strip_prefix("profiler: ").unwrap();
        assert!(
            run.stdout.lines().any(|l| l == line),
            "summary lacks {line:?}\n{transcript}"
        );
    }
    // The rest ran: the command's CPU time is in the CPU profile, the I/O profile is
    // written, and nothing of the refused profiles is.
    let cpu = Folded::load(&out);
    assert!(
        cpu.samples_containing("burn_alpha") > 0,
        "no CPU samples in burn_alpha\n{}\n{transcript}",
        cpu.summary(10)
    );
    assert!(out.join("io.pb.gz").is_file(), "{transcript}");
    assert!(!out.join("heap.pb.gz").exists(), "{transcript}");
    assert!(!out.join("block.pb.gz").exists(), "{transcript}");
}

#[test]
fn without_a_feature_every_profile_needs_nothing_runs() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let cmd = profiler_without("ring_buffer", &out, &["--duration".as_ref(), "5s".as_ref()]);
    let run = run_command(cmd);
    let line = run.assert_error_mentioning(&["ring buffer"]);
    assert!(
        line.contains("Linux 5.8") && line.contains("Kernel requirements"),
        "{line}"
    );
    run.assert_no_panic();
    // Refused before anything was loaded or written, and at once.
    assert!(!out.exists(), "{}", run.transcript());
    assert!(run.elapsed < Duration::from_secs(5), "{}", run.transcript());
}

#[test]
fn when_every_requested_profile_is_refused_it_is_one_error_line() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let cmd = profiler_without(
        "btf_tracepoints",
        &out,
        &[
            "--profiles".as_ref(),
            "io,block".as_ref(),
            "--duration".as_ref(),
            "5s".as_ref(),
        ],
    );
    let run = run_command(cmd);
    let line = run.assert_error_mentioning(&["tp_btf"]);
    assert!(
        line.contains("I/O profile not collected") && line.contains("futex waits"),
        "{line}"
    );
    assert!(!out.exists(), "{}", run.transcript());
}

#[test]
fn a_kernel_without_sched_switch_s_state_refuses_the_off_cpu_profile_alone() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let cmd = profiler_without(
        "sched_switch_state",
        &out,
        &[
            "--profiles".as_ref(),
            "offcpu".as_ref(),
            "--duration".as_ref(),
            "5s".as_ref(),
        ],
    );
    let run = run_command(cmd);
    let line = run.assert_error_mentioning(&["sched_switch"]);
    assert!(
        line.contains("off-CPU profile not collected") && line.contains("5.18"),
        "{line}"
    );
    assert!(!out.exists(), "{}", run.transcript());
}

/// This kernel's release, as the profiler names it.
fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_owned()
}
