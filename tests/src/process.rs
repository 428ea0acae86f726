//! Running a process with its output captured and a timeout, and what it left behind.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a profiler run may take before it is killed and the test fails, on this
/// machine; see [`default_timeout`] for an emulated one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// [`DEFAULT_TIMEOUT`] times `PROFILER_TEST_TIME_SCALE` (1 to 10, default 1), which
/// `cargo xtask test --kernel` sets in its guest: under qemu's TCG a profiler sharing one
/// emulated CPU with busy fixtures needs several times longer to end, without hanging.
pub fn default_timeout() -> Duration {
    let scale = std::env::var("PROFILER_TEST_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 10);
    DEFAULT_TIMEOUT * scale
}

/// The prefix of the one stderr line the profiler prints for a fatal error.
pub const ERROR_PREFIX: &str = "profiler: error: ";

/// What a finished process left behind.
#[derive(Debug)]
pub struct Run {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Its peak resident set in KiB (`ru_maxrss` from `wait4`), or 0 when not measured.
    pub peak_rss_kib: i64,
}

impl Run {
    /// stdout and stderr, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "exit status: {}\nelapsed: {:.2?}\npeak RSS: {} KiB\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.peak_rss_kib, self.stdout, self.stderr
        )
    }

    /// Panics unless the process exited with code 0.
    pub fn assert_success(&self) {
        assert_eq!(
            self.status.code(),
            Some(0),
            "profiler did not exit 0\n{}",
            self.transcript()
        );
    }

    /// The stderr lines that start with [`ERROR_PREFIX`].
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with(ERROR_PREFIX))
            .collect()
    }

    /// Asserts a clean failure: non-zero exit, exactly one
    /// `profiler: error: ` line on stderr, and that line mentions at least one
    /// of `keywords` (case-insensitively). Returns the line.
    pub fn assert_error_mentioning(&self, keywords: &[&str]) -> String {
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "expected a non-zero exit code (not a signal)\n{}",
            self.transcript()
        );
        let lines = self.error_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one stderr line starting with {ERROR_PREFIX:?}\n{}",
            self.transcript()
        );
        let line = lines[0].to_owned();
        let lower = line.to_lowercase();
        assert!(
            keywords.iter().any(|k| lower.contains(&k.to_lowercase())),
            "error line {line:?} mentions none of {keywords:?}\n{}",
            self.transcript()
        );
        line
    }

    /// Panics if any stderr line mentions `panicked` or `RUST_BACKTRACE`.
    pub fn assert_no_panic(&self) {
        for line in self.stderr.lines() {
            assert!(
                !line.contains("panicked") && !line.contains("RUST_BACKTRACE"),
                "stderr shows a panic: {line:?}\n{}",
                self.transcript()
            );
        }
    }
}

/// A spawned process whose output is being collected.
pub struct Running {
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    what: String,
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl Running {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured.
    pub fn spawn(mut cmd: Command) -> Running {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        Running {
            child,
            started,
            stdout,
            stderr,
            what,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process up to `timeout`; on timeout kills it and panics
    /// with what it printed. Also fails on a panic message in stderr. The process is
    /// reaped by `wait4`, which also gives its peak RSS ([`Run::peak_rss_kib`]).
    pub fn wait_timeout(mut self, timeout: Duration) -> Run {
        let (status, peak_rss_kib) = loop {
            match reap(self.child.id(), false) {
                Some(done) => break done,
                None if self.started.elapsed() > timeout => {
                    let _ = self.child.kill();
                    let (status, rss) = reap(self.child.id(), true).expect("reap killed process");
                    let what = self.what.clone();
                    let mut run = self.finish(status);
                    run.peak_rss_kib = rss;
                    panic!(
                        "{what} did not finish within {timeout:?}; killed it\n{}",
                        run.transcript()
                    );
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        let what = std::mem::take(&mut self.what);
        let mut run = self.finish(status);
        run.peak_rss_kib = peak_rss_kib;
        if !run.stderr.is_empty() || !run.stdout.is_empty() {
            // Shown only for failing tests (the test harness captures it).
            eprintln!("--- {what} ---\n{}", run.transcript());
        }
        run.assert_no_panic();
        run
    }

    /// [`Running::wait_timeout`] with [`default_timeout`].
    pub fn wait(self) -> Run {
        self.wait_timeout(default_timeout())
    }

    fn finish(&mut self, status: ExitStatus) -> Run {
        let elapsed = self.started.elapsed();
        // A grandchild (a profiled command left behind) may still hold the
        // pipes open; don't wait for it for long.
        let join = |h: Option<JoinHandle<String>>| -> String {
            let Some(h) = h else { return String::new() };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !h.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                h.join().unwrap_or_default()
            } else {
                "<output still open 10 s after exit: a child kept the pipe>".to_owned()
            }
        };
        Run {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
            elapsed,
            peak_rss_kib: 0,
        }
    }
}

/// Reaps child `pid` with `wait4` (blocking when `block`): its exit status and peak RSS in
/// KiB, or `None` while it runs.
fn reap(pid: u32, block: bool) -> Option<(ExitStatus, i64)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: pid is a child of this process; status and usage point to live locals.
        let done = unsafe { libc::wait4(pid as libc::pid_t, &mut status, flags, &mut usage) };
        if done == pid as libc::pid_t {
            return Some((ExitStatus::from_raw(status), usage.ru_maxrss));
        }
        if done == 0 {
            return None;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4({pid}): {err}"
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs an arbitrary command (e.g. the profiler under `setpriv`) and waits for
/// it (at most [`default_timeout`]).
pub fn run_command(cmd: Command) -> Run {
    Running::spawn(cmd).wait()
}
