//! How a run ends and what it leaves behind: Ctrl-C and SIGTERM stop early with every file
//! written, under sudo the files belong to the user who ran sudo, a closed or full stdout
//! ends the run without a panic once the files are written, runs started together never
//! share a default directory, and a pid given twice is one target.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use integration_tests::{
    ERROR_PREFIX, FixtureProcess, Folded, Running, assert_outputs, prerequisites, profiler_command,
    spawn_profiler, temp_dir,
};

/// Starts a whole-host profile meant to last a minute, stops it with `signal` after two
/// seconds, and checks it stopped at once with everything written.
fn stops_cleanly_on(signal: libc::c_int, name: &str) {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    // Something busy, so an otherwise idle host still gives samples to write.
    let _busy = FixtureProcess::spawn("bystander", &["30"]);
    let running = spawn_profiler(&["--duration", "60s", "--profiles", "cpu"], &out);
    thread::sleep(Duration::from_secs(2));
    // SAFETY: kill with a valid pid and signal number.
    let sent = unsafe { libc::kill(running.pid() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "cannot send {name}");
    let run = running.wait_timeout(Duration::from_secs(30));
    run.assert_success();
    assert!(
        run.elapsed < Duration::from_secs(20),
        "{name} did not stop the run early: {:?}\n{}",
        run.elapsed,
        run.transcript()
    );
    assert!(
        run.stdout.contains(&format!("stopped early by {name}")),
        "the summary does not say why the run ended\n{}",
        run.transcript()
    );
    assert_outputs(&out);
    assert!(Folded::load(&out).total() > 0, "no samples were written");
}

#[test]
fn ctrl_c_stops_early_and_writes_everything() {
    if !prerequisites() {
        return;
    }
    stops_cleanly_on(libc::SIGINT, "Ctrl-C");
}

#[test]
fn sigterm_stops_early_and_writes_everything() {
    if !prerequisites() {
        return;
    }
    stops_cleanly_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn files_belong_to_the_sudo_user() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let mut cmd =
        integration_tests::profiler_command(&["--duration", "1s", "--profiles", "cpu,io"]);
    cmd.arg("-o")
        .arg(&out)
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534");
    let run = integration_tests::run_command(cmd);
    run.assert_success();
    let mut checked = 0;
    for path in std::iter::once(out.clone()).chain(
        std::fs::read_dir(&out)
            .expect("list the output directory")
            .map(|e| e.expect("read entry").path()),
    ) {
        let meta = std::fs::metadata(&path).expect("stat output");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{} is not owned by the sudo user",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 7,
        "expected the directory and six files, checked {checked}"
    );
}

/// Runs the profiler (a one-second CPU profile of a busy fixture, into `out`) with its
/// standard output connected to `stdout`, and returns its status and standard error.
fn run_with_stdout(stdout: Stdio, out: &Path) -> (std::process::ExitStatus, String) {
    let busy = FixtureProcess::spawn("bystander", &["10"]);
    let pid = busy.pid().to_string();
    let mut cmd = profiler_command(&["--duration", "1s", "--profiles", "cpu", "--pid", &pid]);
    cmd.arg("-o").arg(out).stdin(Stdio::null()).stdout(stdout);
    let done = cmd.output().expect("run the profiler");
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "the profiler panicked:\n{stderr}"
    );
    (done.status, stderr)
}

#[test]
fn a_full_stdout_is_one_error_after_the_files_are_written() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let (status, stderr) = run_with_stdout(full.into(), &out);
    assert!(
        status.code().is_some_and(|c| c != 0),
        "writing the summary to /dev/full should fail the run with an exit code: {status}\n{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(ERROR_PREFIX))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    assert!(
        errors[0].contains("standard output"),
        "the error does not name standard output: {}",
        errors[0]
    );
    assert_outputs(&out);
}

#[test]
fn a_closed_stdout_ends_the_run_quietly_after_the_files_are_written() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let mut fds = [0; 2];
    assert_eq!(
        // SAFETY: pipe fills the two descriptors it is given.
        unsafe { libc::pipe(fds.as_mut_ptr()) },
        0,
        "cannot make a pipe"
    );
    // SAFETY: both descriptors were just created and are owned here alone.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The reader is gone before the profiler writes, as with `| head -1` done reading.
    drop(reader);
    let (status, stderr) = run_with_stdout(writer.into(), &out);
    assert!(
        status.code().is_some_and(|c| c != 0),
        "a closed stdout should end the run with a failing exit code: {status}\n{stderr}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with(ERROR_PREFIX)),
        "nobody reads the output: the profiler should exit quietly, as cat does\n{stderr}"
    );
    assert_outputs(&out);
}

/// The `profile-*` directories in `dir`.
fn profile_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list the working directory")
        .map(|e| e.expect("read entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("profile-"))
        })
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn runs_started_together_get_their_own_default_directories() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let _busy = FixtureProcess::spawn("bystander", &["10"]);
    let start = |_| {
        let mut cmd = profiler_command(&["--duration", "1s", "--profiles", "cpu"]);
        cmd.current_dir(tmp.path());
        Running::spawn(cmd)
    };
    let running: Vec<Running> = (0..2).map(start).collect();
    for run in running {
        run.wait().assert_success();
    }
    let dirs = profile_dirs(tmp.path());
    assert_eq!(
        dirs.len(),
        2,
        "two runs without -o should leave two directories, found {dirs:?}"
    );
    for dir in &dirs {
        assert_outputs(dir);
    }
}

#[test]
fn a_pid_given_twice_is_one_target() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let busy = FixtureProcess::spawn("bystander", &["10"]);
    let pid = busy.pid().to_string();
    let twice = format!("{pid},{pid}");
    let run = integration_tests::run_profiler(
        &[
            "--duration",
            "1s",
            "--profiles",
            "cpu",
            "--pid",
            &pid,
            "--pid",
            &twice,
        ],
        &tmp.path().join("out"),
    );
    run.assert_success();
    assert!(
        run.stdout.contains(&format!(
            "target: pid {pid} (bystander) with threads and new children"
        )),
        "the run's facts should name pid {pid} once\n{}",
        run.transcript()
    );
}
