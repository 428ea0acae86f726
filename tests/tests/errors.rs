//! Failure modes: each must end with a non-zero exit code and exactly one
//! `profiler: error: ` line naming the cause, never a panic. Also: a missing
//! tracefs mount is not an error (the profiler mounts it).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration_tests::{
    Folded, assert_outputs, fixture, prerequisites, profiler_bin, profiler_command, run_command,
    run_profiler, set_mode, setpriv_nobody, temp_dir, unused_pid,
};

/// The profiler binary at a path user nobody can execute: the original if
/// nobody can reach it, else a copy inside `dir`.
fn binary_for_nobody(dir: &Path) -> PathBuf {
    let bin = profiler_bin();
    let ok = setpriv_nobody()
        .arg("test")
        .arg("-x")
        .arg(&bin)
        .status()
        .expect("run setpriv (util-linux)")
        .success();
    if ok {
        return bin;
    }
    let copy = dir.join("profiler");
    std::fs::copy(&bin, &copy).expect("copy profiler binary");
    set_mode(&copy, 0o755);
    copy
}

#[test]
fn not_root_is_a_clear_error() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    set_mode(tmp.path(), 0o755);
    let bin = binary_for_nobody(tmp.path());
    // An output directory nobody may write, so only the missing privilege fails.
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    set_mode(&out, 0o777);

    let mut cmd = setpriv_nobody();
    cmd.arg(&bin)
        .args(["--duration", "1s", "-o"])
        .arg(&out)
        .current_dir(tmp.path());
    let run = run_command(cmd);
    run.assert_error_mentioning(&["root", "CAP_BPF"]);
}

#[test]
fn nonexistent_pid_is_a_clear_error() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let pid = unused_pid().to_string();
    let run = run_profiler(
        &["--duration", "1s", "--pid", &pid],
        &tmp.path().join("out"),
    );
    run.assert_error_mentioning(&[&pid]);
}

#[test]
fn unstartable_command_is_a_clear_error() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let run = run_profiler(
        &["--duration", "1s", "--", "/nonexistent/cmd"],
        &tmp.path().join("out"),
    );
    run.assert_error_mentioning(&["/nonexistent/cmd"]);
}

#[test]
fn unwritable_output_dir_is_a_clear_error() {
    if !prerequisites() {
        return;
    }
    let run = run_profiler(&["--duration", "1s"], Path::new("/proc/1/nope"));
    run.assert_error_mentioning(&["/proc/1/nope"]);
}

#[test]
fn kernel_without_btf_is_a_clear_error() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let mut cmd = profiler_command(&["--duration", "1s", "-o"]);
    cmd.arg(tmp.path().join("out"))
        .env("PROFILER_BTF_PATH", "/nonexistent");
    let run = run_command(cmd);
    run.assert_error_mentioning(&["BTF"]);
}

#[test]
fn unmounted_tracefs_is_mounted_by_the_profiler() {
    if !prerequisites() {
        return;
    }
    // Fails harmlessly when tracefs is not mounted there to begin with.
    let _ = Command::new("umount")
        .arg("/sys/kernel/tracing")
        .stderr(std::process::Stdio::null())
        .status();

    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let cpu_split = fixture("cpu_split");
    let run = run_profiler(
        &[
            "--duration".as_ref(),
            "5s".as_ref(),
            "--".as_ref(),
            cpu_split.as_os_str(),
            "1".as_ref(),
        ],
        &out,
    );
    run.assert_success();
    assert_outputs(&out);
    let folded = Folded::load(&out);
    assert!(
        folded.samples_containing("burn_alpha") > 0,
        "profile without tracefs mounted beforehand lacks burn_alpha\n{}",
        folded.summary(15)
    );
}

#[test]
fn a_duration_past_the_clock_is_refused_before_anything_starts() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let marker = tmp.path().join("started");
    let script = format!("touch {}", marker.display());
    let run = run_profiler(
        &["--duration", "500000000000years", "--", "sh", "-c", &script],
        &out,
    );
    let line = run.assert_error_mentioning(&["longest duration"]);
    assert!(
        line.contains("365days"),
        "the error should say the limit: {line}"
    );
    assert!(
        run.elapsed < Duration::from_secs(5),
        "refusing a duration took {:?}: something was loaded first",
        run.elapsed
    );
    assert!(!marker.exists(), "the command was started");
    assert!(!out.exists(), "the output directory was created");
}

#[test]
fn running_out_of_descriptors_says_to_raise_the_limit() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let mut cmd = profiler_command(&["--duration", "1s", "-o"]);
    cmd.arg(tmp.path().join("out"));
    // A hard limit the profiler cannot raise past: too few for its maps and per-CPU events.
    // SAFETY: the hook only calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 24,
                rlim_max: 24,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = run_command(cmd);
    let line = run.assert_error_mentioning(&["too many open files"]);
    assert!(
        line.contains("ulimit -n") && line.contains("(limit 24)"),
        "the error should give the limit and how to raise it: {line}"
    );
    assert!(
        !line.contains("paranoid"),
        "running out of descriptors is not a perf_event_paranoid problem: {line}"
    );
}
