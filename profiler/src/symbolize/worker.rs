//! Names files in worker processes, each under a memory limit and a time budget, so that a
//! file a user crafted can neither take the profiler's memory nor its time.
//!
//! A worker is the profiler binary run again (`/proc/self/exe`) with [`WORKER_ARG`]. Before
//! it executes, its data (heap and anonymous memory) is limited with `RLIMIT_DATA` (not
//! `RLIMIT_AS`, which would count the read-only mappings of large legitimate debug files),
//! it dumps no core, and the kernel kills it when its parent dies. It reads one [`Setup`]
//! line on standard input, then one [`Job`] line per file, and answers each on descriptor 3
//! with one [`Answer`] line (standard output stays free for whatever a library prints).
//!
//! The parent runs [`WORKERS`] at a time and gives each file [`Budgets::per_file`] and the
//! whole run [`Budgets::per_run`]: a worker over either is killed (and a new one started
//! for the files left), and a worker that dies on a file (its allocation failed at its
//! limit) is replaced the same way. Those files keep their frames unnamed, the reason
//! carried as [`Unnamed`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::profile::{Line, Unnamed};
use crate::symbolize::debuginfo::{DebugInfoFinder, DebugOrigin};
use crate::symbolize::debuginfod::{Activity, Debuginfod, DebuginfodSettings};
use crate::symbolize::file_names::{self, NoName};
use crate::symbolize::inflation::Refusal;

/// The hidden first argument that makes the profiler binary a symbolization worker.
pub const WORKER_ARG: &str = "__symbolize-worker";
/// Workers run at once: one a CPU of a small machine, and each may take its memory limit.
pub const WORKERS: usize = 2;
/// How long one file may take to be named.
pub const FILE_BUDGET: Duration = Duration::from_secs(10);
/// How long naming all the files of a run may take.
pub const RUN_BUDGET: Duration = Duration::from_secs(30);
/// The data (heap and anonymous memory) a worker may take: `RLIMIT_DATA`.
pub const MEMORY_BUDGET: u64 = 1 << 30;
/// The largest answer read from a worker: a file's frames, a few lines an offset.
const MAX_ANSWER: usize = 128 << 20;

/// The profiler's allocator: the system's, noting when an allocation fails, so that a
/// worker that reached its memory limit while naming a file (blazesym inflating a section
/// whose header lied, into a buffer that could not grow) says so instead of naming less.
pub struct NotingAllocator;

static ALLOCATION_FAILED: AtomicBool = AtomicBool::new(false);

fn noted(ptr: *mut u8) -> *mut u8 {
    if ptr.is_null() {
        ALLOCATION_FAILED.store(true, Ordering::Relaxed);
    }
    ptr
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for NotingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees are System's.
        noted(unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        noted(unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        noted(unsafe { System.realloc(ptr, layout, new_size) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Whether an allocation failed since the last call.
fn allocation_failed() -> bool {
    ALLOCATION_FAILED.swap(false, Ordering::Relaxed)
}

/// This process's `RLIMIT_DATA`, if it has one.
fn data_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut limit) } == 0;
    (got && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// What every worker of a run is told once: where separate debug files are looked for.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    /// Debug roots from `--debuginfo-dir` (the system's is added by the worker).
    pub roots: Vec<PathBuf>,
    /// The debuginfod client to make, when servers are named and not given up on.
    pub debuginfod: Option<DebuginfodSettings>,
    /// Whether the worker logs its debug detail on the parent's standard error.
    pub verbose: bool,
}

/// One file to name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The path the worker opens it by (`/proc/<parent>/fd/N`: the parent's held file).
    pub open: String,
    /// The path its process named it by.
    pub name: String,
    /// The file offsets to name.
    pub offsets: Vec<u64>,
}

/// A line of a frame, as it crosses the pipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct WireLine {
    function: String,
    file: Option<String>,
    line: u32,
}

/// Why an offset has no name, as it crosses the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum WireWhy {
    NoSymbol,
    Unreadable,
    NoDebugInfo,
    OverBudget,
}

/// Where separate debug information came from, as it crosses the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum WireOrigin {
    BuildIdDir,
    DebugLink,
    Debuginfod,
}

/// A worker's answer for one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Answer {
    frames: Vec<Result<Vec<WireLine>, WireWhy>>,
    debug_origin: Option<WireOrigin>,
    refused: Vec<Refusal>,
    /// What the worker's debuginfod client did for this file.
    debuginfod: Option<Activity>,
}

/// The names of one file's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Per offset, in order: its frames (innermost first), or why it has none.
    pub frames: Vec<Result<Vec<Line>, Unnamed>>,
    /// Where separate debug information came from, if it did.
    pub debug_origin: Option<DebugOrigin>,
    /// Debug information that was not read, and why.
    pub refused: Vec<Refusal>,
}

/// How naming one file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The worker answered.
    Named(Named),
    /// The file was not named, and why: over its time budget, its worker died on it, or the
    /// run's budget was spent; with a few words for the summary.
    Stopped(Unnamed, String),
    /// No worker could be started: the caller names the file itself.
    NoWorker,
}

/// The time and memory a run's workers get.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Per file.
    pub per_file: Duration,
    /// For all the files of the run, from the first.
    pub per_run: Duration,
    /// `RLIMIT_DATA` of each worker.
    pub memory: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            per_file: FILE_BUDGET,
            per_run: RUN_BUDGET,
            memory: MEMORY_BUDGET,
        }
    }
}

/// How a worker is started: the profiler binary with [`WORKER_ARG`], or, in unit tests,
/// the test binary running the worker's entry test.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Default for WorkerCommand {
    #[cfg(not(test))]
    fn default() -> Self {
        Self {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![WORKER_ARG.to_owned()],
            env: Vec::new(),
        }
    }

    #[cfg(test)]
    fn default() -> Self {
        tests::harness_command()
    }
}

/// The names of the names from [`file_names::name_offsets`] as they cross the pipe.
fn answer_of(names: file_names::FileNames, debuginfod: Option<Activity>) -> Answer {
    let frames = names
        .frames
        .into_iter()
        .map(|frame| match frame {
            Ok(lines) => Ok(lines
                .into_iter()
                .map(|l| WireLine {
                    function: l.function,
                    file: l.file,
                    line: l.line,
                })
                .collect()),
            Err(NoName::Blazesym(_)) => Err(WireWhy::NoSymbol),
            Err(NoName::Unreadable) => Err(WireWhy::Unreadable),
            Err(NoName::NoDebugInfo) => Err(WireWhy::NoDebugInfo),
            Err(NoName::OverBudget) => Err(WireWhy::OverBudget),
        })
        .collect();
    Answer {
        frames,
        debug_origin: names.debug_origin.map(|o| match o {
            DebugOrigin::BuildIdDir => WireOrigin::BuildIdDir,
            DebugOrigin::DebugLink => WireOrigin::DebugLink,
            DebugOrigin::Debuginfod => WireOrigin::Debuginfod,
        }),
        refused: names.refused,
        debuginfod,
    }
}

/// Why an offset has no name, as a frame says it.
pub fn unnamed_of(why: NoName) -> Unnamed {
    match why {
        NoName::Blazesym(_) => Unnamed::NoSymbol,
        NoName::Unreadable => Unnamed::FileUnreadable,
        NoName::NoDebugInfo => Unnamed::NoDebugInfo,
        NoName::OverBudget => Unnamed::OverMemoryBudget,
    }
}

/// The names of a worker's answer, `offsets` long whatever the worker sent.
fn named_of(answer: Answer, offsets: usize) -> Named {
    let mut frames: Vec<Result<Vec<Line>, Unnamed>> = answer
        .frames
        .into_iter()
        .take(offsets)
        .map(|frame| match frame {
            Ok(lines) if !lines.is_empty() => Ok(lines
                .into_iter()
                .map(|l| Line {
                    function: l.function,
                    file: l.file,
                    line: l.line,
                })
                .collect()),
            Ok(_) => Err(Unnamed::NoSymbol),
            Err(WireWhy::NoSymbol) => Err(Unnamed::NoSymbol),
            Err(WireWhy::Unreadable) => Err(Unnamed::FileUnreadable),
            Err(WireWhy::NoDebugInfo) => Err(Unnamed::NoDebugInfo),
            Err(WireWhy::OverBudget) => Err(Unnamed::OverMemoryBudget),
        })
        .collect();
    frames.resize(offsets, Err(Unnamed::FileUnreadable));
    Named {
        frames,
        debug_origin: answer.debug_origin.map(|o| match o {
            WireOrigin::BuildIdDir => DebugOrigin::BuildIdDir,
            WireOrigin::DebugLink => DebugOrigin::DebugLink,
            WireOrigin::Debuginfod => DebugOrigin::Debuginfod,
        }),
        refused: answer.refused,
    }
}

/// The worker's side: reads the setup and then jobs on standard input, and answers each on
/// descriptor 3, until standard input closes.
pub fn serve() -> std::process::ExitCode {
    // SAFETY: fcntl only asks whether descriptor 3 is open.
    if unsafe { libc::fcntl(3, libc::F_GETFD) } < 0 {
        // Not started by the profiler, which opens it for the answers.
        return std::process::ExitCode::FAILURE;
    }
    // SAFETY: descriptor 3 is open (checked above): the parent opened it for the answers
    // before executing the worker, and nothing else in this process owns it.
    let mut out = unsafe { File::from_raw_fd(3) };
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let Some(Ok(setup)) = lines.next() else {
        return std::process::ExitCode::FAILURE;
    };
    let Ok(setup) = serde_json::from_str::<Setup>(&setup) else {
        return std::process::ExitCode::FAILURE;
    };
    let debuginfod = setup
        .debuginfod
        .as_ref()
        .and_then(Debuginfod::from_settings);
    let finder = DebugInfoFinder::new(&setup.roots, debuginfod);
    let mut reported = Activity::default();
    for line in lines {
        let Ok(job) = line.and_then(|l| Ok(serde_json::from_str::<Job>(&l)?)) else {
            return std::process::ExitCode::FAILURE;
        };
        allocation_failed();
        #[cfg(test)]
        tests::misbehave(&job.name);
        let named = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            file_names::name_offsets(Path::new(&job.open), &job.name, &job.offsets, &finder)
        }));
        let mut names = named.unwrap_or_else(|_| file_names::FileNames {
            frames: vec![Err(NoName::Unreadable); job.offsets.len()],
            debug_origin: None,
            refused: Vec::new(),
        });
        if allocation_failed() {
            // What was not named may have been, had the limit been higher.
            names.refused.push(Refusal::MemoryLimit {
                limit: data_limit(),
            });
            for frame in &mut names.frames {
                if frame.is_err() {
                    *frame = Err(NoName::OverBudget);
                }
            }
        }
        let activity = finder.debuginfod().map(|d| {
            let now = d.activity();
            let delta = activity_delta(&now, &reported);
            reported = now;
            delta
        });
        let answer = answer_of(names, activity);
        let written = serde_json::to_writer(&mut out, &answer)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if written.is_err() {
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

/// What a client did between two readings of its activity.
fn activity_delta(now: &Activity, before: &Activity) -> Activity {
    Activity {
        fetched: now.fetched.saturating_sub(before.fetched),
        bytes: now.bytes.saturating_sub(before.bytes),
        cached: now.cached.saturating_sub(before.cached),
        missing: now.missing.saturating_sub(before.missing),
        gave_up: now.gave_up.clone().filter(|_| before.gave_up.is_none()),
        elapsed: now.elapsed.saturating_sub(before.elapsed),
    }
}

/// How waiting for an answer failed.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The deadline passed.
    Timeout,
    /// The worker closed its answers (it died), or sent what is not an answer.
    Died,
    /// The answer was longer than [`MAX_ANSWER`].
    TooLong,
}

/// A running worker, owned by the thread that started it (the kernel kills it when that
/// thread ends: `PR_SET_PDEATHSIG` follows the thread).
struct Worker {
    child: Child,
    requests: Option<ChildStdin>,
    answers: File,
    buf: Vec<u8>,
}

impl Worker {
    fn spawn(command: &WorkerCommand, setup: &Setup, memory: u64) -> std::io::Result<Self> {
        let (answers, answer_w) = pipe()?;
        let parent = std::process::id();
        let write_fd = answer_w.as_raw_fd();
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            // Not in the terminal's process group: Ctrl-C is the profiler's to handle (it
            // stops the window), and must not take a worker down mid-file.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(if setup.verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let limit = libc::rlimit {
            rlim_cur: memory,
            rlim_max: memory,
        };
        // SAFETY: only async-signal-safe calls (setrlimit, prctl, getppid, dup2, fcntl,
        // _exit) between fork and exec, on values copied before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0
                    || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the request to be killed with it was made.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                if write_fd == 3 {
                    // dup2 onto itself would keep close-on-exec.
                    if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(write_fd, 3) != 3 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(answer_w);
        let mut requests = child.stdin.take();
        let setup_line = serde_json::to_string(setup)?;
        let sent = requests
            .as_mut()
            .map(|r| writeln!(r, "{setup_line}"))
            .transpose();
        let worker = Self {
            child,
            requests,
            answers,
            buf: Vec::new(),
        };
        if let Err(err) = sent {
            worker.kill();
            return Err(err);
        }
        Ok(worker)
    }

    /// Sends `job` and waits for its answer until `deadline`.
    fn ask(&mut self, job: &Job, deadline: Instant) -> Result<Answer, Failure> {
        let line = serde_json::to_string(job).map_err(|_| Failure::Died)?;
        let requests = self.requests.as_mut().ok_or(Failure::Died)?;
        writeln!(requests, "{line}").map_err(|_| Failure::Died)?;
        requests.flush().map_err(|_| Failure::Died)?;
        let line = self.read_line(deadline)?;
        serde_json::from_slice(&line).map_err(|_| Failure::Died)
    }

    /// The next line of answers, without its newline.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, Failure> {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                return Ok(line);
            }
            if self.buf.len() > MAX_ANSWER {
                return Err(Failure::TooLong);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Timeout);
            }
            let mut poll = libc::pollfd {
                fd: self.answers.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, ms) };
            if ready <= 0 {
                // Timed out (checked above) or interrupted: look again.
                continue;
            }
            match self.answers.read(&mut chunk) {
                Ok(0) => return Err(Failure::Died),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::Died),
            }
        }
    }

    /// Ends a worker that did its work: it exits when its requests close; one that does not
    /// within a second is killed.
    fn finish(mut self) {
        drop(self.requests.take());
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
    }

    /// Kills the worker and reaps it; how it ended, in a few words.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        describe_end(self.child.wait().ok())
    }

    /// Reaps a worker that closed its answers; how it ended, in a few words.
    fn reap(mut self) -> String {
        drop(self.requests.take());
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return describe_end(Some(status));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill()
    }
}

/// How a worker ended, for the summary.
fn describe_end(status: Option<std::process::ExitStatus>) -> String {
    match status.and_then(|s| s.signal().map(|sig| (s, sig))) {
        Some((_, libc::SIGABRT)) => "its symbolizer ran out of its memory limit".to_owned(),
        Some((_, sig)) => format!("its symbolizer died of signal {sig}"),
        None => match status.and_then(|s| s.code()) {
            Some(code) => format!("its symbolizer exited with status {code}"),
            None => "its symbolizer died".to_owned(),
        },
    }
}

/// A pipe whose ends close on exec: (read, write).
fn pipe() -> std::io::Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here only.
    unsafe { Ok((File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// Names `jobs` in workers started by `command`, [`WORKERS`] at a time, within `budgets`
/// counted from `run_start`; one outcome per job, in order. `merge` gets what each
/// worker's debuginfod client did.
pub fn name_files(
    jobs: &[Job],
    command: &WorkerCommand,
    setup: &Setup,
    budgets: Budgets,
    run_start: Instant,
    merge: &(dyn Fn(&Activity) + Sync),
) -> Vec<Outcome> {
    let run_deadline = run_start + budgets.per_run;
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; jobs.len()]);
    let serve = || {
        let mut worker: Option<Worker> = None;
        let mut spawn_failed = false;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            let outcome = name_one(
                job,
                &mut worker,
                &mut spawn_failed,
                command,
                setup,
                budgets,
                run_deadline,
                merge,
            );
            if let Ok(mut outcomes) = outcomes.lock() {
                outcomes[i] = Some(outcome);
            }
        }
        if let Some(worker) = worker {
            worker.finish();
        }
    };
    let threads = WORKERS.min(jobs.len());
    std::thread::scope(|scope| {
        // The calling thread is one of the workers' owners.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("symbolize-{i}"))
                    .spawn_scoped(scope, serve)
                    .ok()
            })
            .collect();
        serve();
        for helper in helpers {
            let _ = helper.join();
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::NoWorker))
        .collect()
}

/// Names one job in `worker`, starting one if there is none, and stopping it when the job
/// blows a budget.
#[allow(clippy::too_many_arguments)]
fn name_one(
    job: &Job,
    worker: &mut Option<Worker>,
    spawn_failed: &mut bool,
    command: &WorkerCommand,
    setup: &Setup,
    budgets: Budgets,
    run_deadline: Instant,
    merge: &(dyn Fn(&Activity) + Sync),
) -> Outcome {
    let now = Instant::now();
    if now >= run_deadline {
        return Outcome::Stopped(
            Unnamed::RunBudgetSpent,
            format!(
                "the run's {}s budget for naming files was spent",
                budgets.per_run.as_secs()
            ),
        );
    }
    if *spawn_failed {
        return Outcome::NoWorker;
    }
    let mut running = match worker.take() {
        Some(running) => running,
        None => match Worker::spawn(command, setup, budgets.memory) {
            Ok(running) => running,
            Err(err) => {
                log::debug!("cannot start a symbolization worker: {err}");
                *spawn_failed = true;
                return Outcome::NoWorker;
            }
        },
    };
    let file_deadline = now + budgets.per_file;
    let deadline = file_deadline.min(run_deadline);
    match running.ask(job, deadline) {
        Ok(answer) => {
            if let Some(activity) = &answer.debuginfod {
                merge(activity);
            }
            *worker = Some(running);
            Outcome::Named(named_of(answer, job.offsets.len()))
        }
        Err(Failure::Timeout) => {
            running.kill();
            if file_deadline <= run_deadline {
                Outcome::Stopped(
                    Unnamed::OverTimeBudget,
                    format!("over its {}s time budget", budgets.per_file.as_secs()),
                )
            } else {
                Outcome::Stopped(
                    Unnamed::RunBudgetSpent,
                    format!(
                        "the run's {}s budget for naming files ran out on it",
                        budgets.per_run.as_secs()
                    ),
                )
            }
        }
        Err(Failure::TooLong) => {
            running.kill();
            Outcome::Stopped(
                Unnamed::OverMemoryBudget,
                format!("its names took over {} MiB", MAX_ANSWER >> 20),
            )
        }
        Err(Failure::Died) => {
            let how = running.reap();
            Outcome::Stopped(
                Unnamed::OverMemoryBudget,
                format!("{how} ({} MiB)", budgets.memory >> 20),
            )
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The environment variable that makes [`serve_as_worker`] serve.
    const UNDER_TEST: &str = "PROFILER_SYMBOLIZE_WORKER_UNDER_TEST";

    /// This test binary, running [`serve_as_worker`] alone.
    pub fn harness_command() -> WorkerCommand {
        WorkerCommand {
            program: std::env::current_exe().expect("the test binary"),
            args: [
                "symbolize::worker::tests::serve_as_worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ]
            .map(str::to_owned)
            .to_vec(),
            env: vec![(UNDER_TEST.to_owned(), "1".to_owned())],
        }
    }

    /// The worker's entry point when unit tests start workers (the test binary has no
    /// `main` of the profiler's).
    #[test]
    #[ignore = "the worker of the unit tests, started by them"]
    fn serve_as_worker() {
        if std::env::var_os(UNDER_TEST).is_some() {
            let code = serve();
            std::process::exit(if code == std::process::ExitCode::SUCCESS {
                0
            } else {
                1
            });
        }
    }

    /// Files named `[test:...]` make the unit tests' worker misbehave as a crafted file
    /// would make it.
    pub fn misbehave(name: &str) {
        match name {
            "[test:hang]" => std::thread::sleep(Duration::from_secs(3600)),
            "[test:abort]" => std::process::abort(),
            "[test:fail-allocation]" => {
                // As blazesym's inflating does: the allocation fails, and is handled.
                let mut buf: Vec<u8> = Vec::new();
                assert!(buf.try_reserve(1 << 40).is_err());
            }
            "[test:allocate]" => {
                // Past the memory limit, as an inflating section would go.
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    held.push(vec![1u8; 64 << 20]);
                }
            }
            _ => {}
        }
    }

    #[inline(never)]
    fn named_in_a_worker() -> u64 {
        std::hint::black_box(11)
    }

    /// The file offset of `addr` in this test binary, and the binary's path.
    fn own_offset(addr: u64) -> (String, u64) {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = fields[0].split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            if (start..end).contains(&addr) {
                let offset = u64::from_str_radix(fields[2], 16).unwrap();
                return (fields[5].to_owned(), addr - start + offset);
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    fn job(name: &str) -> Job {
        let (path, offset) = own_offset(named_in_a_worker as fn() -> u64 as usize as u64);
        Job {
            open: path,
            name: name.to_owned(),
            offsets: vec![offset, u64::MAX / 2],
        }
    }

    fn is_named(outcome: &Outcome) -> bool {
        match outcome {
            Outcome::Named(named) => {
                named.frames[0]
                    .as_ref()
                    .is_ok_and(|l| l.iter().any(|l| l.function.contains("named_in_a_worker")))
                    && named.frames[1].is_err()
            }
            _ => false,
        }
    }

    #[test]
    fn a_request_round_trips() {
        let job = job("/bin/app");
        let line = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<Job>(&line).unwrap(), job);
        let answer = Answer {
            frames: vec![
                Ok(vec![WireLine {
                    function: "f".to_owned(),
                    file: Some("f.c".to_owned()),
                    line: 3,
                }]),
                Err(WireWhy::OverBudget),
            ],
            debug_origin: Some(WireOrigin::DebugLink),
            refused: vec![Refusal::DebugDataStated { stated: 1 << 32 }],
            debuginfod: Some(Activity {
                fetched: 1,
                ..Activity::default()
            }),
        };
        let line = serde_json::to_string(&answer).unwrap();
        assert!(!line.contains('\n'));
        let back: Answer = serde_json::from_str(&line).unwrap();
        assert_eq!(back, answer);
        let named = named_of(back, 3);
        assert_eq!(named.frames[1], Err(Unnamed::OverMemoryBudget));
        // An answer short of offsets leaves the rest unreadable, never out of step.
        assert_eq!(named.frames[2], Err(Unnamed::FileUnreadable));
        assert_eq!(named.debug_origin, Some(DebugOrigin::DebugLink));
    }

    #[test]
    fn a_worker_names_files_and_merges_debuginfod_activity() {
        let jobs = vec![job("/bin/a"), job("/bin/b"), job("/bin/c")];
        let merged = Mutex::new(0);
        let outcomes = name_files(
            &jobs,
            &harness_command(),
            &Setup::default(),
            Budgets::default(),
            Instant::now(),
            &|_| *merged.lock().unwrap() += 1,
        );
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes.iter().all(is_named), "{outcomes:?}");
        // No debuginfod client: nothing to merge.
        assert_eq!(*merged.lock().unwrap(), 0);
    }

    #[test]
    fn a_worker_killed_mid_file_gives_the_reason_and_the_next_file_is_named() {
        let jobs = vec![
            job("[test:hang]"),
            job("/bin/after-hang"),
            job("[test:abort]"),
            job("/bin/after-abort"),
            job("[test:allocate]"),
            job("/bin/after-allocate"),
        ];
        let budgets = Budgets {
            per_file: Duration::from_secs(2),
            per_run: Duration::from_secs(60),
            memory: 256 << 20,
        };
        let started = Instant::now();
        let outcomes = name_files(
            &jobs,
            &harness_command(),
            &Setup::default(),
            budgets,
            started,
            &|_| {},
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        let reason = |i: usize| match &outcomes[i] {
            Outcome::Stopped(why, _) => Some(*why),
            _ => None,
        };
        assert_eq!(reason(0), Some(Unnamed::OverTimeBudget), "{outcomes:?}");
        assert_eq!(reason(2), Some(Unnamed::OverMemoryBudget), "{outcomes:?}");
        assert_eq!(reason(4), Some(Unnamed::OverMemoryBudget), "{outcomes:?}");
        for i in [1, 3, 5] {
            assert!(is_named(&outcomes[i]), "{i}: {outcomes:?}");
        }
    }

    #[test]
    fn a_file_that_reached_the_memory_limit_says_so() {
        let jobs = vec![job("[test:fail-allocation]"), job("/bin/after")];
        let outcomes = name_files(
            &jobs,
            &harness_command(),
            &Setup::default(),
            Budgets::default(),
            Instant::now(),
            &|_| {},
        );
        let Outcome::Named(named) = &outcomes[0] else {
            panic!("{outcomes:?}");
        };
        assert_eq!(
            named.refused,
            [Refusal::MemoryLimit {
                limit: Some(MEMORY_BUDGET)
            }]
        );
        // Named from what fit, and the rest over the budget.
        assert!(named.frames[0].is_ok());
        assert_eq!(named.frames[1], Err(Unnamed::OverMemoryBudget));
        assert!(is_named(&outcomes[1]), "{outcomes:?}");
    }

    #[test]
    fn files_after_the_run_budget_are_not_started() {
        let jobs = vec![job("[test:hang]"), job("[test:hang]"), job("/bin/late")];
        let budgets = Budgets {
            per_file: Duration::from_secs(10),
            per_run: Duration::from_secs(1),
            memory: MEMORY_BUDGET,
        };
        let started = Instant::now();
        let outcomes = name_files(
            &jobs,
            &harness_command(),
            &Setup::default(),
            budgets,
            started,
            &|_| {},
        );
        assert!(started.elapsed() < Duration::from_secs(8));
        for outcome in &outcomes {
            assert!(
                matches!(outcome, Outcome::Stopped(Unnamed::RunBudgetSpent, _)),
                "{outcomes:?}"
            );
        }
    }

    #[test]
    fn activity_deltas_count_only_what_is_new() {
        let before = Activity {
            fetched: 2,
            bytes: 10,
            ..Activity::default()
        };
        let now = Activity {
            fetched: 3,
            bytes: 15,
            gave_up: Some("timeout".to_owned()),
            ..Activity::default()
        };
        let delta = activity_delta(&now, &before);
        assert_eq!((delta.fetched, delta.bytes), (1, 5));
        assert_eq!(delta.gave_up.as_deref(), Some("timeout"));
        assert_eq!(activity_delta(&now, &now).gave_up, None);
    }
}
