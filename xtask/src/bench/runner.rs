//! Spawning, stopping and timing the bench's processes, and the paired A/B runs.
//!
//! Every process is reaped with `wait4`, which hands back its rusage: that is how the
//! bench learns the profiler's own CPU time and peak RSS without sampling /proc. Output
//! goes to files rather than pipes so a chatty tool (bpftrace prints its maps at exit)
//! can never block on a full pipe while we wait for it.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

/// How long any single process may run before the bench gives up on it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a stopped observer (profiler, perf, bpftrace) may take to write its output.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches Ctrl-C so the bench can stop between runs and still restore the sysctl it
/// changed. A caught (not ignored) signal is reset to the default in children at exec,
/// so the profiler and peers still stop on the terminal's Ctrl-C as usual.
pub fn catch_ctrl_c() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Fails once Ctrl-C was pressed, so every row stops at its next step.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted (Ctrl-C)");
    }
    Ok(())
}

/// A process that has exited, with what it printed and what it cost.
pub struct Finished {
    /// The command, as printed.
    pub shown: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// User + system CPU time of the process (and of children it reaped itself).
    pub cpu: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
}

impl Finished {
    /// The same, or an error quoting the end of its stderr unless it exited with 0.
    pub fn ok(self) -> Result<Finished> {
        if self.status.success() {
            Ok(self)
        } else {
            bail!(
                "`{}` {}; its stderr ends with:\n{}",
                self.shown,
                describe(self.status),
                tail(&self.stderr, 15)
            )
        }
    }

    /// Whether it ended the way a tool stopped with SIGINT should: exit 0, exit 130, or
    /// killed by SIGINT.
    pub fn stopped_cleanly(&self) -> bool {
        self.status.success()
            || self.status.code() == Some(130)
            || self.status.signal() == Some(libc::SIGINT)
    }
}

/// `exited with code N` or `was killed by signal N`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended abnormally".to_string(),
    }
}

/// The last `lines` lines of `text`, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A started process whose stdout and stderr go to files.
pub struct Running {
    pid: libc::pid_t,
    shown: String,
    stdout: PathBuf,
    stderr: PathBuf,
    done: Option<(ExitStatus, libc::rusage)>,
}

impl Running {
    /// Spawns `cmd` with stdin from /dev/null and output into `<logs>/<name>.stdout` and
    /// `.stderr`.
    pub fn start(cmd: &mut Command, logs: &Path, name: &str) -> Result<Running> {
        let shown = util::display(cmd);
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let open = |path: &Path| {
            File::create(path).with_context(|| format!("cannot create {}", path.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(open(&stdout)?)
            .stderr(open(&stderr)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{shown}`"))?;
        Ok(Running {
            pid: child.id() as libc::pid_t,
            shown,
            stdout,
            stderr,
            done: None,
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The pid while the process has not been reaped (afterwards it may be reused).
    pub fn pid(&self) -> Option<libc::pid_t> {
        self.done.is_none().then_some(self.pid)
    }

    /// What it printed to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Reaps the process if it has exited; true while it still runs.
    pub fn poll(&mut self) -> Result<bool> {
        if self.done.is_some() {
            return Ok(false);
        }
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; pid is our own unreaped child.
        let got = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == self.pid {
            self.done = Some((ExitStatus::from_raw(status), usage));
            Ok(false)
        } else if got == 0 {
            Ok(true)
        } else {
            Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot wait for `{}`", self.shown))
        }
    }

    /// Sends `signal` unless the process was already reaped (its pid may be reused).
    pub fn signal(&self, signal: libc::c_int) {
        if self.done.is_none() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(self.pid, signal);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit; on timeout it is killed and the
    /// wait fails.
    pub fn wait(mut self, timeout: Duration) -> Result<Finished> {
        let deadline = Instant::now() + timeout;
        while self.poll()? {
            if Instant::now() >= deadline {
                self.signal(libc::SIGKILL);
                while self.poll()? {
                    thread::sleep(Duration::from_millis(10));
                }
                bail!(
                    "`{}` did not exit within {} s and was killed",
                    self.shown,
                    timeout.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        let (status, usage) = self.done.expect("poll reaped it");
        let seconds = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
        Ok(Finished {
            shown: self.shown.clone(),
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
            cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
        })
    }

    /// SIGINT (how a user stops the profiler and every peer), then [`Running::wait`].
    pub fn stop(self, timeout: Duration) -> Result<Finished> {
        self.signal(libc::SIGINT);
        self.wait(timeout)
    }
}

impl Drop for Running {
    /// A row that fails half-way must not leave a profiler or tracer running: ask it to
    /// stop, and kill it if it does not.
    fn drop(&mut self) {
        if self.done.is_some() {
            return;
        }
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.poll(), Ok(true)) {
            if Instant::now() >= deadline {
                self.signal(libc::SIGKILL);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// User + system CPU seconds a live process has used so far (/proc/PID/stat).
pub fn proc_cpu_seconds(pid: libc::pid_t) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// A live process's peak resident set so far, KiB (VmHWM in /proc/PID/status).
pub fn proc_peak_rss_kib(pid: libc::pid_t) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Runs `cmd` to the end (output to files under `logs`).
pub fn run(cmd: &mut Command, logs: &Path, name: &str, timeout: Duration) -> Result<Finished> {
    check_interrupted()?;
    Running::start(cmd, logs, name)?.wait(timeout)
}

/// A command given as program + arguments, cloneable (unlike `Command`).
pub fn command(argv: &[OsString]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

/// `argv` rendered for printing.
pub fn shown(argv: &[OsString]) -> String {
    util::display(&command(argv))
}

/// How to know a background observer is watching.
#[derive(Clone, Copy, Debug)]
pub enum Ready {
    /// Wait a fixed time after the spawn (the profiler prints nothing until the end).
    After(Duration),
    /// Wait until stdout contains this text, then a further settling time (bpftrace
    /// prints "Attaching N probes..." just before it attaches).
    Line(&'static str, Duration),
}

/// Something that watches the fixture in the B half of a pair.
#[derive(Clone, Debug)]
pub enum Observer {
    /// Started before the fixture and stopped with SIGINT after it.
    Background { argv: Vec<OsString>, ready: Ready },
    /// Runs the fixture itself: `argv` then the fixture's command (strace, perf trace).
    Wrap { argv: Vec<OsString> },
}

/// The observer itself failed (not the fixture): rows skip a failed peer with a note,
/// but treat a failed profiler as an error.
#[derive(Debug)]
pub struct ObserverFailed(pub String);

impl fmt::Display for ObserverFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ObserverFailed {}

/// Where a row's runs keep their logs and outputs; `out` is wiped before every run.
pub struct Workdir {
    pub logs: PathBuf,
    pub out: PathBuf,
}

impl Workdir {
    pub fn new(root: &Path, name: &str) -> Result<Workdir> {
        let logs = root.join(name);
        let out = logs.join("out");
        fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
        Ok(Workdir { logs, out })
    }

    /// Empties the output directory (a profile or perf.data per run would otherwise
    /// pile up to gigabytes over a bench).
    pub fn fresh_out(&self) -> Result<()> {
        if self.out.exists() {
            fs::remove_dir_all(&self.out)
                .with_context(|| format!("cannot clear {}", self.out.display()))?;
        }
        fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))
    }
}

/// Runs the fixture alone (the A half of a pair) and returns its stdout.
pub fn unobserved(fixture: &[OsString], dir: &Workdir) -> Result<String> {
    Ok(
        run(&mut command(fixture), &dir.logs, "fixture", RUN_TIMEOUT)?
            .ok()?
            .stdout,
    )
}

/// Runs the fixture under `observer` (the B half of a pair) and returns the fixture's
/// stdout (for a wrapping observer, the combined stdout, which includes the fixture's).
pub fn observed(observer: &Observer, fixture: &[OsString], dir: &Workdir) -> Result<String> {
    dir.fresh_out()?;
    match observer {
        Observer::Background { argv, ready } => {
            check_interrupted()?;
            let bg = Running::start(&mut command(argv), &dir.logs, "observer")?;
            let mut bg = wait_ready(bg, *ready)?;
            let stdout = unobserved(fixture, dir)?;
            if !bg.poll()? {
                let done = bg.wait(STOP_TIMEOUT)?;
                return Err(ObserverFailed(format!(
                    "`{}` exited while the fixture ran ({}):\n{}",
                    done.shown,
                    describe(done.status),
                    tail(&done.stderr, 15)
                ))
                .into());
            }
            let done = bg.stop(STOP_TIMEOUT)?;
            if !done.stopped_cleanly() {
                return Err(ObserverFailed(format!(
                    "`{}` {} when stopped with SIGINT:\n{}",
                    done.shown,
                    describe(done.status),
                    tail(&done.stderr, 15)
                ))
                .into());
            }
            Ok(stdout)
        }
        Observer::Wrap { argv } => {
            let mut full = argv.clone();
            full.extend(fixture.iter().cloned());
            let done = run(&mut command(&full), &dir.logs, "wrapped", RUN_TIMEOUT)?;
            if !done.status.success() {
                return Err(ObserverFailed(format!(
                    "`{}` {}:\n{}",
                    done.shown,
                    describe(done.status),
                    tail(&done.stderr, 15)
                ))
                .into());
            }
            Ok(done.stdout)
        }
    }
}

/// Waits until a background observer is attached and hands it back; fails (as
/// [`ObserverFailed`]) if it exits first.
pub fn wait_ready(mut bg: Running, ready: Ready) -> Result<Running> {
    let (text, settle) = match ready {
        Ready::After(delay) => (None, delay),
        Ready::Line(text, settle) => (Some(text), settle),
    };
    if let Some(text) = text {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !bg.stdout_so_far().contains(text) {
            if !bg.poll()? {
                return Err(early_exit(bg));
            }
            if Instant::now() >= deadline {
                return Err(ObserverFailed(format!(
                    "`{}` did not print {text:?} within 60 s",
                    bg.shown()
                ))
                .into());
            }
            check_interrupted()?;
            thread::sleep(Duration::from_millis(20));
        }
    }
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline {
        if !bg.poll()? {
            return Err(early_exit(bg));
        }
        check_interrupted()?;
        thread::sleep(Duration::from_millis(20));
    }
    Ok(bg)
}

/// The error for an observer that exited before it was asked to.
fn early_exit(bg: Running) -> anyhow::Error {
    match bg.wait(STOP_TIMEOUT) {
        Ok(done) => ObserverFailed(format!(
            "`{}` exited before the fixture started ({}):\n{}",
            done.shown,
            describe(done.status),
            tail(&done.stderr, 15)
        ))
        .into(),
        Err(err) => err,
    }
}
