//! A whole-host run on a busy host (issue 25): Debian's nginx (two workers) under `ab`,
//! redis-server under `redis-benchmark` and two CPU spinners (one with three busy threads)
//! all at once, more than the CPUs can run, while the profiler samples the whole host with
//! the CPU, I/O and blocking profiles on and the default ring buffer, as a user would run
//! it. The loads are bounded runs, one after another, from before the window to its end.
//!
//! The ring buffer must hold what such a host sends: the summary's `lost: N samples (ring
//! buffer full)` line must say 0. And the per-process lines must name each process by its
//! own name, never by one of its threads: the `threads` spinner burns its CPU in threads
//! named `worker-0` to `worker-2` while its main thread only waits; redis-server has
//! threads named `bio_close_file` and `jemalloc_bg_thd`. A process whose CPU time, read
//! from `/proc` over the window, was worth many samples must have its line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use integration_tests::{
    FixtureProcess, Nginx, NginxConfig, Redis, prerequisites, spawn_profiler, temp_dir,
};

#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;

use attach::wait_until_attached;

/// The window, as `--duration` gives it.
const WINDOW: Duration = Duration::from_secs(10);
/// Requests per `ab` run and per `redis-benchmark` run: each run is bounded, and runs
/// follow one another until the profiler is done.
const AB_REQUESTS: u64 = 20_000;
const REDIS_REQUESTS: u64 = 20_000;
/// A process that used this much CPU in the window was worth about 99 samples at the
/// default 99 Hz: one with none, or left out of the table, is a fault, not chance.
const CPU_WORTH_A_LINE: Duration = Duration::from_secs(1);

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A row of the summary's "CPU by process" table: the process's name and pid.
#[derive(Debug, PartialEq)]
struct ProcessLine {
    name: String,
    pid: u32,
}

/// The rows of the summary's "CPU by process" table, up to the blank line that ends it
/// (the column titles and the `N other processes` row left out).
fn process_lines(stdout: &str) -> Vec<ProcessLine> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("CPU by process"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let (front, pid) = line.trim_end().strip_suffix(')')?.rsplit_once(" (pid ")?;
            // samples, %, then the CPU time: `1.75 s`, `272.7 ms`, or `-`.
            let words: Vec<&str> = front.split_whitespace().collect();
            let skip = if words.get(2) == Some(&"-") { 3 } else { 4 };
            Some(ProcessLine {
                name: words.get(skip..)?.join(" "),
                pid: pid.parse().ok()?,
            })
        })
        .collect()
}

/// The `N` of the summary's `lost: N samples (ring buffer full); ...` line.
fn cpu_samples_lost(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("lost: "))
        .and_then(|rest| rest.split_once(" samples (ring buffer full)"))
        .and_then(|(n, _)| n.parse().ok())
}

/// The CPU time process `pid` has used so far (user and system, all its threads), from
/// `/proc/PID/stat`; zero once it is gone.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which may hold spaces and parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12] // utime and stime, fields 14 and 15 of proc(5)
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

#[test]
fn busy_whole_host_loses_no_cpu_samples_and_names_processes_not_threads() {
    if !prerequisites() {
        return;
    }
    let nginx = match Nginx::start(NginxConfig {
        workers: 2,
        sendfile: true,
    }) {
        Ok(nginx) => nginx,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let redis = match Redis::start() {
        Ok(redis) => redis,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    nginx.put_file("page.html", &[b'x'; 16 * 1024]);
    // Both spin until stopped (their bound is far past the window).
    let spinner = FixtureProcess::spawn("bystander", &["120"]);
    let threaded = FixtureProcess::spawn("threads", &["120"]);

    let done = AtomicBool::new(false);
    let (requests, commands) = (AtomicU64::new(0), AtomicU64::new(0));
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let (run, used) = thread::scope(|s| {
        // The loads stop when this scope ends, a failed assertion in it included: the
        // scope waits for them.
        let _stop = StopOnDrop(&done);
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let ab = nginx.ab("page.html", AB_REQUESTS, 4, true);
                requests.fetch_add(ab.complete, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                redis.benchmark(REDIS_REQUESTS, 4, 1);
                commands.fetch_add(REDIS_REQUESTS, Ordering::Relaxed);
            }
        });
        let window = format!("{}s", WINDOW.as_secs());
        let profiler = spawn_profiler(
            &[
                "--profiles",
                "cpu,io,block",
                "--duration",
                &window,
                // Every busy process gets a line of its own.
                "--top",
                "50",
            ],
            &out,
        );
        wait_until_attached(profiler.pid());
        let ours: Vec<(u32, &str)> = [
            (nginx.pid(), "nginx"),
            (redis.pid(), "redis-server"),
            (spinner.pid(), "bystander"),
            (threaded.pid(), "threads"),
        ]
        .into_iter()
        .chain(nginx.workers().into_iter().map(|pid| (pid, "nginx")))
        .collect();
        let before: Vec<Duration> = ours.iter().map(|&(pid, _)| cpu_time(pid)).collect();
        thread::sleep(WINDOW);
        let used: Vec<(u32, &str, Duration)> = ours
            .iter()
            .zip(before)
            .map(|(&(pid, name), before)| (pid, name, cpu_time(pid).saturating_sub(before)))
            .collect();
        (profiler.wait(), used)
    });
    run.assert_success();
    let summary = run.transcript();
    eprintln!(
        "load during the run: {} nginx requests, {} redis GETs; CPU used in the window: \
         {used:?}",
        requests.load(Ordering::Relaxed),
        commands.load(Ordering::Relaxed)
    );

    let lost = cpu_samples_lost(&run.stdout)
        .unwrap_or_else(|| panic!("the summary has no `lost: N samples` line\n{summary}"));
    assert_eq!(
        lost, 0,
        "a busy whole-host run with the default ring buffer lost CPU samples\n{summary}"
    );

    let lines = process_lines(&run.stdout);
    assert!(!lines.is_empty(), "no per-process lines\n{summary}");
    for &(pid, name, cpu) in &used {
        match lines.iter().find(|l| l.pid == pid) {
            Some(line) => assert_eq!(
                line.name, name,
                "pid {pid}'s line names it {:?}, not its process name {name:?}\n{summary}",
                line.name
            ),
            None => assert!(
                cpu < CPU_WORTH_A_LINE,
                "{name} (pid {pid}) used {cpu:?} of CPU in the window but has no line of its \
                 own\n{summary}"
            ),
        }
    }
    // Without a busy `threads` process the check of its name above checked nothing.
    let threads_cpu = used.iter().find(|u| u.0 == threaded.pid()).map(|u| u.2);
    assert!(
        threads_cpu >= Some(CPU_WORTH_A_LINE),
        "the `threads` spinner got {threads_cpu:?} of CPU in the window, too little to \
         tell its process name from its threads' names: the host is too busy for this test"
    );
    drop(spinner.stop());
    drop(threaded.stop());
}

#[test]
fn process_lines_are_read_as_the_summary_writes_them() {
    let stdout = "CPU by process (CPU time = samples / 99 Hz):\n  samples      %  CPU time  \
                  process\n      173  45.1%    1.75 s  redis-server (pid 23919)\n        2   \
                  0.5%  20.2 ms  my (odd) name (pid 7)\n        1   0.3%         -  x (pid \
                  9)\n        8   2.1%   80.8 ms  8 other processes\n\nTop 5 functions\n";
    assert_eq!(
        process_lines(stdout),
        [
            ProcessLine {
                name: "redis-server".into(),
                pid: 23919
            },
            ProcessLine {
                name: "my (odd) name".into(),
                pid: 7
            },
            ProcessLine {
                name: "x".into(),
                pid: 9
            },
        ]
    );
    let lost = "  lost: 433 samples (ring buffer full); 0 user stacks unreadable, 0 kernel \
                stacks not taken\n";
    assert_eq!(cpu_samples_lost(lost), Some(433));
    assert_eq!(cpu_samples_lost("no such line"), None);
}
