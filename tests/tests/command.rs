//! The command launched after `--`: the profiler exits with its status, as `time` and
//! `perf stat` do.

use integration_tests::{prerequisites, run_profiler, temp_dir};

#[test]
fn exits_with_the_commands_exit_code() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let run = run_profiler(
        &["--profiles", "cpu", "--", "sh", "-c", "exit 42"],
        &tmp.path().join("out"),
    );
    assert_eq!(
        run.status.code(),
        Some(42),
        "the profiler should exit with the command's code\n{}",
        run.transcript()
    );
    assert!(
        run.error_lines().is_empty(),
        "a command's failure is not the profiler's\n{}",
        run.transcript()
    );
    assert!(
        tmp.path().join("out/cpu.pb.gz").is_file(),
        "the profile was not written\n{}",
        run.transcript()
    );
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_its_number() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let run = run_profiler(
        &["--profiles", "cpu", "--", "sh", "-c", "kill -KILL $$"],
        &tmp.path().join("out"),
    );
    assert_eq!(
        run.status.code(),
        Some(128 + libc::SIGKILL),
        "a command killed by SIGKILL should give 128+9\n{}",
        run.transcript()
    );
}
