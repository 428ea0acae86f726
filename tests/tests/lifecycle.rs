//! How a run ends and what it leaves behind: Ctrl-C and SIGTERM stop early with every file
//! written, and under sudo the files belong to the user who ran sudo.

use std::os::unix::fs::MetadataExt;
use std::thread;
use std::time::Duration;

use integration_tests::{
    FixtureProcess, Folded, assert_outputs, prerequisites, spawn_profiler, temp_dir,
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
