//! A whole-host run on a busy host (issue 25): every server of the issue under load at
//! once, more than the CPUs can run, while the profiler samples the whole host with its
//! default profiles (cpu, io, block) and the default ring buffer, as a user
//! would run it. On the host: Debian's nginx (two workers) under `ab`, redis-server under
//! `redis-benchmark`, PostgreSQL under `pgbench`, a JVM with one busy thread and Node.js
//! with libuv's pool working in bursts (`block_jvm.java`, `block_libuv.js`), a Go
//! net/http server (`go_http.go`) under `ab`, and two CPU spinners (one with three busy
//! threads). Every load is bounded: the client loads are runs one after another until the
//! window ends; pgbench and the two runtimes start when the profiler has attached and
//! work for the window's length.
//!
//! The ring buffer must hold what such a host sends: the summary's `lost: N samples (ring
//! buffer full)` line must say 0. The per-process lines (CPU and blocked time) must name
//! each process by its own name, never by one of its threads: the `threads` spinner burns
//! its CPU in threads named `worker-0` to `worker-2` while its main thread only waits;
//! redis-server has `bio_close_file` and `jemalloc_bg_thd`, the JVM `GC Thread#0` and
//! `C2 CompilerThre`. A process whose CPU time, read from `/proc` over the window, was
//! worth many samples must have its line, and the profiler itself has none. The JVM's and
//! Node's idle pools, woken for work by a thread that never waits where they do, must not
//! be reported as contention (the checks of `block_runtimes`, on this busier run), and no
//! process's blocked time may exceed what its threads could wait in the window.

#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
#[allow(dead_code)]
#[path = "../go/mod.rs"]
mod go;
#[allow(dead_code)]
#[path = "../block/raw.rs"]
mod raw;
#[allow(dead_code)]
#[path = "../block/runtimes.rs"]
mod runtimes;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{
    FixtureProcess, FixtureResult, Nginx, NginxConfig, Postgres, Redis, Running,
    debian_go_toolchain, prerequisites, run_command, spawn_profiler, temp_dir,
};

use attach::wait_until_attached;
use raw::raw_samples;
use runtimes::{
    JVM, NODE, blocked_lines, blocked_time_failures, check_runtime, contention_entries,
    contention_evidence, jvm_command, node_command, print_figures,
};

/// The window, as `--duration` gives it.
const WINDOW: Duration = Duration::from_secs(10);
/// Requests per `ab` run (nginx, the Go server) and per `redis-benchmark` run: each run
/// is bounded, and runs follow one another until the profiler is done.
const AB_REQUESTS: u64 = 20_000;
const REDIS_REQUESTS: u64 = 20_000;
const GO_REQUESTS: u64 = 10_000;
/// pgbench's clients, each a backend of its own.
const PGBENCH_CLIENTS: usize = 4;
const AB: &str = "/usr/bin/ab";
/// A process that used this much CPU in the window was worth about 99 samples at the
/// default 99 Hz: one with none, or left out of the table, is a fault, not chance.
const CPU_WORTH_A_LINE: Duration = Duration::from_secs(1);
/// How long the runtimes and pgbench may take to end after the window, having started
/// after the profiler attached and worked for the window's length.
const AFTER_WINDOW: Duration = Duration::from_secs(60);
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

/// The processes whose parent is `pid`, from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // The parent is the second field after the command name.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            ppid == Some(pid)
        })
        .collect()
}

/// The threads of process `pid`: their ids and names (`comm`), from `/proc`.
fn threads_of(pid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((tid, comm.trim_end().to_owned()))
        })
        .collect()
}

/// Builds the Go net/http fixture with Debian's Go (one release is enough here: the test
/// is not about Go's releases), starts it and returns it with its port.
fn start_go_http(dir: &Path) -> (Running, u16) {
    let toolchain = debian_go_toolchain();
    go::start_server(&go::build(&toolchain, "go_http"), dir, &[])
}

/// The pids of pgbench's backends, once all `clients` have connected (by the server's
/// `pg_stat_activity`; pgbench names its sessions `pgbench`).
fn pgbench_backends(pg: &Postgres, clients: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pids: Vec<u32> = pg
            .psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= clients {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "pgbench's {clients} clients did not connect within 30 s (connected: {pids:?})\n{}",
            pg.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A runtime fixture started in `dir` (its working directory, where it may leave logs):
/// `command SECONDS dir/result.txt`, working for the window's length.
fn spawn_runtime(command: &[OsString], dir: &Path) -> (Running, PathBuf) {
    let result = dir.join("result.txt");
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .arg(WINDOW.as_secs().to_string())
        .arg(&result)
        .current_dir(dir);
    (Running::spawn(cmd), result)
}

/// What a runtime fixture measured, once it has ended.
fn runtime_result(runtime: Running, result: &Path) -> FixtureResult {
    runtime.wait_timeout(AFTER_WINDOW).assert_success();
    FixtureResult::read(result)
}

#[test]
fn busy_whole_host_loses_no_cpu_samples_and_names_processes_not_threads() {
    if !prerequisites() {
        return;
    }
    assert!(
        Path::new(AB).is_file(),
        "{AB} is not installed; `cargo xtask setup --for-tests` installs Debian's apache2-utils"
    );
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
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    pg.pgbench_init(1);
    nginx.put_file("page.html", &[b'x'; 16 * 1024]);
    let (go_dir, jvm_dir, node_dir) = (temp_dir(), temp_dir(), temp_dir());
    let (go_server, go_port) = start_go_http(go_dir.path());
    let (jvm, node) = (jvm_command(jvm_dir.path()), node_command());
    // Both spin until stopped (their bound is far past the window).
    let spinner = FixtureProcess::spawn("bystander", &["120"]);
    let threaded = FixtureProcess::spawn("threads", &["120"]);

    let done = AtomicBool::new(false);
    let (requests, commands, go_requests) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let (run, profiler_pid, used, threads, started) = thread::scope(|s| {
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
        s.spawn(|| {
            let url = format!("http://127.0.0.1:{go_port}/hello");
            while !done.load(Ordering::Relaxed) {
                let mut ab = Command::new(AB);
                ab.args(["-q", "-k", "-s", "30", "-c", "4", "-n"])
                    .arg(GO_REQUESTS.to_string())
                    .arg(&url);
                run_command(ab).assert_success();
                go_requests.fetch_add(GO_REQUESTS, Ordering::Relaxed);
            }
        });
        let window = format!("{}s", WINDOW.as_secs());
        // The default profiles and ring buffer; every busy process gets a line of its own.
        let profiler = spawn_profiler(&["--duration", &window, "--top", "50"], &out);
        wait_until_attached(profiler.pid());
        let attached = Instant::now();
        let started = [
            spawn_runtime(&jvm, jvm_dir.path()),
            spawn_runtime(&node, node_dir.path()),
        ];
        let clients = PGBENCH_CLIENTS.to_string();
        let pgbench = Running::spawn(pg.pgbench(&[
            "-N",
            "-n",
            "-c",
            &clients,
            "-j",
            "2",
            "-T",
            &WINDOW.as_secs().to_string(),
        ]));
        let backends = pgbench_backends(&pg, PGBENCH_CLIENTS);
        let ours: Vec<(u32, &str)> = [
            (nginx.pid(), "nginx"),
            (redis.pid(), "redis-server"),
            (spinner.pid(), "bystander"),
            (threaded.pid(), "threads"),
            (pg.pid(), "postgres"),
            (go_server.pid(), "go_http"),
            (started[0].0.pid(), "java"),
            (started[1].0.pid(), "node"),
        ]
        .into_iter()
        .chain(nginx.workers().into_iter().map(|pid| (pid, "nginx")))
        // pgbench's backends and the server's own processes (checkpointer, WAL writer...).
        .chain(children(pg.pid()).into_iter().map(|pid| (pid, "postgres")))
        .collect();
        assert!(
            backends.iter().all(|b| ours.iter().any(|o| o.0 == *b)),
            "pgbench's backends {backends:?} are not children of the postmaster {}",
            pg.pid()
        );
        let before: Vec<Duration> = ours.iter().map(|&(pid, _)| cpu_time(pid)).collect();
        thread::sleep(WINDOW.saturating_sub(attached.elapsed()));
        let used: Vec<(u32, &str, Duration)> = ours
            .iter()
            .zip(before)
            .map(|(&(pid, name), before)| (pid, name, cpu_time(pid).saturating_sub(before)))
            .collect();
        // Every thread of ours and of the profiler, as the window ends.
        let threads: BTreeMap<u32, Vec<(u32, String)>> = ours
            .iter()
            .map(|o| o.0)
            .chain([profiler.pid()])
            .map(|pid| (pid, threads_of(pid)))
            .collect();
        let profiler_pid = profiler.pid();
        (
            profiler.wait(),
            profiler_pid,
            used,
            threads,
            (started, pgbench),
        )
    });
    let ([(jvm_run, jvm_result), (node_run, node_result)], pgbench) = started;
    let jvm_measured = runtime_result(jvm_run, &jvm_result);
    let node_measured = runtime_result(node_run, &node_result);
    let bench = pgbench.wait_timeout(AFTER_WINDOW);
    bench.assert_success();
    run.assert_success();
    let summary = run.transcript();
    let transactions = bench
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .unwrap_or("?");
    eprintln!(
        "load during the run: {} nginx requests, {} redis GETs, {} Go requests, {transactions} \
         pgbench transactions; JVM {:?}; node {:?}\nCPU used in the window: {used:?}",
        requests.load(Ordering::Relaxed),
        commands.load(Ordering::Relaxed),
        go_requests.load(Ordering::Relaxed),
        jvm_measured.0,
        node_measured.0,
    );

    // What the ring lost, of every kind (CPU samples; I/O and futex stacks).
    let losses: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("ring buffer full") && !l.contains("[user stack lost"))
        .map(str::trim)
        .collect();
    eprintln!("ring buffer:\n  {}", losses.join("\n  "));

    let mut failures = Vec::new();
    let lost = cpu_samples_lost(&run.stdout)
        .unwrap_or_else(|| panic!("the summary has no `lost: N samples` line\n{summary}"));
    if lost != 0 {
        failures.push(format!(
            "a busy whole-host run with the default ring buffer lost {lost} CPU samples"
        ));
    }
    // The names a line must never have: a thread's of ours (or the profiler's) that is no
    // process's of ours; and the ids that are threads, not processes.
    let process_names: BTreeSet<&str> = used.iter().map(|u| u.1).collect();
    let thread_names: BTreeSet<&str> = threads
        .iter()
        .flat_map(|(pid, tids)| {
            let main = tids.iter().find(|t| t.0 == *pid).map(|t| t.1.as_str());
            tids.iter()
                .map(|t| t.1.as_str())
                .filter(move |n| Some(*n) != main)
        })
        .filter(|n| !process_names.contains(n))
        .collect();
    let thread_ids: BTreeSet<u32> = threads
        .iter()
        .flat_map(|(pid, tids)| tids.iter().map(|t| t.0).filter(move |t| t != pid))
        .collect();
    eprintln!("thread names of the processes: {thread_names:?}");
    let expected = |pid: u32| used.iter().find(|u| u.0 == pid).map(|u| u.1);
    let mut check_line = |what: &str, pid: u32, name: &str, line: &str| {
        if pid == profiler_pid {
            failures.push(format!("the profiler itself has a {what} line: {line}"));
        } else if thread_ids.contains(&pid) {
            failures.push(format!(
                "a {what} line is a thread's, not a process's: {line}"
            ));
        } else if thread_names.contains(name) {
            failures.push(format!("a {what} line is named after a thread: {line}"));
        } else if let Some(want) = expected(pid).filter(|want| *want != name) {
            failures.push(format!(
                "pid {pid}'s {what} line names it {name:?}, not its process name {want:?}: \
                 {line}"
            ));
        }
    };

    let lines = process_lines(&run.stdout);
    assert!(!lines.is_empty(), "no per-process lines\n{summary}");
    for l in &lines {
        check_line(
            "CPU",
            l.pid,
            &l.name,
            &format!("{} (pid {})", l.name, l.pid),
        );
    }
    let blocked = blocked_lines(&run.stdout);
    for l in &blocked {
        let pid = l.pid.parse().unwrap_or(0);
        check_line("blocked-time", pid, &l.name, l.line.trim());
    }
    for &(pid, name, cpu) in &used {
        if cpu >= CPU_WORTH_A_LINE && !lines.iter().any(|l| l.pid == pid) {
            failures.push(format!(
                "{name} (pid {pid}) used {cpu:?} of CPU in the window but has no line of its own"
            ));
        }
    }
    // Every blocked-time line within what its threads could wait in the window.
    failures.extend(blocked_time_failures(&run.stdout));

    // The runtimes' idle pools: handed work, and no contention.
    let samples = raw_samples(&out.join("block.pb.gz"));
    for (runtime, measured) in [(&JVM, &jvm_measured), (&NODE, &node_measured)] {
        let pid = measured.get("pid");
        print_figures(runtime, pid, &run.stdout, &format!("{:?}", measured.0));
        eprintln!(
            "{}",
            contention_evidence(runtime.comm, pid, &run.stdout, &samples)
        );
        failures.extend(check_runtime(runtime, pid, &run.stdout, &samples));
    }
    // Without the work the pools were given, their checks checked nothing.
    if jvm_measured.u64("collections") == 0 {
        failures.push(format!(
            "the JVM collected no garbage, so its GC workers had nothing to do: {:?}",
            jvm_measured.0
        ));
    }
    if node_measured.u64("rounds") < 2 {
        failures.push(format!(
            "the Node.js fixture ran fewer than two bursts: {:?}",
            node_measured.0
        ));
    }
    let entries: Vec<String> = contention_entries(&run.stdout)
        .iter()
        .map(|e| e.join("\n"))
        .collect();
    eprintln!("Contention entries:\n{}", entries.join("\n"));
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}\n\n--- summary ---\n{summary}",
        failures.len(),
        failures.join("\n\n")
    );

    // Without a busy `threads` process the check of its name above checked nothing.
    let threads_cpu = used.iter().find(|u| u.0 == threaded.pid()).map(|u| u.2);
    assert!(
        threads_cpu >= Some(CPU_WORTH_A_LINE),
        "the `threads` spinner got {threads_cpu:?} of CPU in the window, too little to \
         tell its process name from its threads' names: the host is too busy for this test"
    );
    drop(spinner.stop());
    drop(threaded.stop());
    drop(go_server);
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
