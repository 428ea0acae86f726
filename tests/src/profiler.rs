//! Running the profiler binary and checking the CPU outputs it writes.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Run, Running, profiler_bin};

/// A `Command` for the profiler binary with the given arguments. The tests' own sudo
/// (`cargo xtask test`) is hidden from it, so launched fixtures run as root and can write
/// their results into the tests' root-owned temporary directories; a test about sudo sets
/// `SUDO_UID` and `SUDO_GID` itself.
pub fn profiler_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(profiler_bin());
    cmd.env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .env_remove("SUDO_USER")
        .args(args);
    cmd
}

/// Starts the profiler with `-o out_dir` followed by `args`, without waiting.
pub fn spawn_profiler<S: AsRef<OsStr>>(args: &[S], out_dir: &Path) -> Running {
    let mut cmd = profiler_command(&["-o".as_ref(), out_dir.as_os_str()]);
    cmd.args(args);
    Running::spawn(cmd)
}

/// Runs the profiler with `-o out_dir` followed by `args` and waits for it
/// (at most [`default_timeout`](crate::default_timeout)).
pub fn run_profiler<S: AsRef<OsStr>>(args: &[S], out_dir: &Path) -> Run {
    spawn_profiler(args, out_dir).wait()
}

/// Runs `profiler report DIR` and waits for it at most `timeout`; the run's
/// [`Run::peak_rss_kib`] is what the report's memory caps are checked against.
pub fn run_report(dir: &Path, timeout: Duration) -> Run {
    Running::spawn(profiler_command(&["report".as_ref(), dir.as_os_str()])).wait_timeout(timeout)
}

/// Asserts that `dir` holds the three outputs: `cpu.folded`, `cpu.pb.gz`
/// (gzip) and `cpu.svg` (an SVG document), none empty.
pub fn assert_outputs(dir: &Path) {
    for name in ["cpu.folded", "cpu.pb.gz", "cpu.svg"] {
        let p = dir.join(name);
        let meta =
            std::fs::metadata(&p).unwrap_or_else(|e| panic!("output {} missing: {e}", p.display()));
        assert!(meta.len() > 0, "output {} is empty", p.display());
    }
    let pb = std::fs::read(dir.join("cpu.pb.gz")).unwrap();
    assert_eq!(&pb[..2], &[0x1f, 0x8b], "cpu.pb.gz is not gzip-compressed");
    let svg = std::fs::read_to_string(dir.join("cpu.svg")).expect("cpu.svg is UTF-8");
    assert!(svg.contains("<svg"), "cpu.svg is not an SVG document");
}

/// The lines of the summary's Contention section below its heading (`Contention (locks
/// threads queued for, ...):`), up to the first line not indented; empty when there is none.
pub fn contention_section(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Contention (locks threads queued for"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
}
