//! The parent's side: starts workers under their limits, hands them files, and stops
//! those over a budget.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use profiler_model::Unnamed;

use super::Accounting;
use super::{Answer, Budgets, Job, MAX_ANSWER, Outcome, Setup, WORKERS, WorkerCommand, named_of};

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
        // Only the bytes that came since are looked at for the newline: a long answer
        // arrives in many chunks, and scanning it whole each time would be quadratic.
        let mut scanned = 0;
        loop {
            if let Some(at) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=scanned + at).collect();
                line.pop();
                return Ok(line);
            }
            scanned = self.buf.len();
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
/// worker's finder did besides naming (its debuginfod activity, its refusals).
pub fn name_files(
    jobs: &[Job],
    command: &WorkerCommand,
    setup: &Setup,
    budgets: Budgets,
    run_start: Instant,
    merge: &(dyn Fn(&Accounting) + Sync),
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
    merge: &(dyn Fn(&Accounting) + Sync),
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
            merge(&answer.accounting);
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
