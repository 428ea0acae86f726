//! The command launched after `--`: the profiler exits with its status, as `time` and
//! `perf stat` do, and under sudo it runs as the user who ran sudo (with `--run-as-root`,
//! as root), while still being profiled from its first instruction.

use integration_tests::{
    Folded, NOBODY, fixture, prerequisites, profiler_command, run_command, run_profiler, set_mode,
    temp_dir,
};

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

/// What the launched command saw of itself, by lines: `id -u`, `id -g`, `id -G`, `$HOME`.
struct Identity {
    uid: String,
    gid: String,
    groups: String,
    home: String,
}

/// Runs the profiler as root with the environment sudo leaves for user nobody, on a
/// command that writes down who it is and then burns CPU in `cpu_split`; returns what
/// the command wrote and the CPU profile.
fn run_under_sudo_as_nobody(extra: &[&str]) -> (Identity, Folded) {
    let tmp = temp_dir();
    // Both the command's file and its copy of the fixture must be reachable by nobody.
    set_mode(tmp.path(), 0o777);
    let burner = tmp.path().join("cpu_split");
    std::fs::copy(fixture("cpu_split"), &burner).expect("copy the cpu_split fixture");
    set_mode(&burner, 0o755);
    let ids = tmp.path().join("ids.txt");
    let script = format!(
        "id -u > {ids}; id -g >> {ids}; id -G >> {ids}; echo \"$HOME\" >> {ids}; exec {burner} 1",
        ids = ids.display(),
        burner = burner.display()
    );
    let out = tmp.path().join("out");
    let mut cmd = profiler_command(&["--profiles", "cpu", "-o"]);
    cmd.arg(&out)
        .args(extra)
        .args(["--", "sh", "-c", &script])
        .env("SUDO_UID", NOBODY)
        .env("SUDO_GID", NOBODY)
        .env("HOME", "/root");
    let run = run_command(cmd);
    run.assert_success();
    let text = std::fs::read_to_string(&ids).unwrap_or_else(|e| {
        panic!(
            "the command wrote no {}: {e}\n{}",
            ids.display(),
            run.transcript()
        )
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "unexpected {}: {text:?}", ids.display());
    let identity = Identity {
        uid: lines[0].to_owned(),
        gid: lines[1].to_owned(),
        groups: lines[2].to_owned(),
        home: lines[3].to_owned(),
    };
    (identity, Folded::load(&out))
}

/// Nobody's home directory as the passwd database has it.
fn home_of_nobody() -> String {
    let out = std::process::Command::new("getent")
        .args(["passwd", NOBODY])
        .output()
        .expect("run getent");
    let entry = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    entry.split(':').nth(5).unwrap_or_default().to_owned()
}

#[test]
fn under_sudo_the_command_runs_as_the_invoking_user() {
    if !prerequisites() {
        return;
    }
    let (who, folded) = run_under_sudo_as_nobody(&[]);
    assert_eq!(
        (who.uid.as_str(), who.gid.as_str()),
        (NOBODY, NOBODY),
        "the command did not run as the sudo user"
    );
    assert!(
        who.groups.split_whitespace().all(|g| g != "0"),
        "the command kept root's group: id -G says {}",
        who.groups
    );
    assert_eq!(who.home, home_of_nobody(), "HOME is not the sudo user's");
    // Still followed from its first instruction: the exec'd fixture was profiled.
    assert!(
        folded
            .with_comm("cpu_split")
            .samples_containing("burn_alpha")
            > 0,
        "the command run as the sudo user was not profiled\n{}",
        folded.summary(10)
    );
}

#[test]
fn run_as_root_keeps_the_command_root_under_sudo() {
    if !prerequisites() {
        return;
    }
    let (who, folded) = run_under_sudo_as_nobody(&["--run-as-root"]);
    assert_eq!(
        (who.uid.as_str(), who.gid.as_str()),
        ("0", "0"),
        "--run-as-root did not keep the command root"
    );
    assert_eq!(who.home, "/root", "--run-as-root changed HOME");
    assert!(
        folded
            .with_comm("cpu_split")
            .samples_containing("burn_alpha")
            > 0,
        "the command was not profiled\n{}",
        folded.summary(10)
    );
}
