//! Row 15: what each profile set costs a busy Go net/http service, in its own CPU time
//! per request: `tests/fixtures/go_service.go` (JSON answers, a mutex-guarded map, a worker
//! goroutine fed by a channel) under keep-alive `ab`, unprofiled (A) against profiled (B)
//! in alternating pairs, beside Go's own block and mutex profiling at rate 1. The server
//! measures both figures itself: the requests it answered and its CPU time (getrusage).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::report::{self, Goal, Section, Status, Table};
use super::runner::{self, Ready, Running, Workdir};
use super::stats::{Spread, ratio_of_pairs};
use super::{Ctx, title};

/// The load: keep-alive connections `ab` holds open.
const CONNECTIONS: u32 = 8;

/// The most CPU per request a profile set may add to stay in the default set (issue 24).
const DEFAULT_SET_GOAL: f64 = 1.10;

/// One way of watching the B window.
struct Observer {
    label: &'static str,
    how: How,
}

/// What watches the B window.
#[derive(Clone, Copy)]
enum How {
    /// The profiler with these flags (`--pid PID` is added).
    Profiler(&'static [&'static str]),
    /// Go's own block and mutex profiling at rate 1, set through the server's /profilerate.
    GoOwn,
    /// The least an eBPF syscall tracer does, as a peer: bpftrace timing each of the
    /// server's syscalls on the raw `sys_enter`/`sys_exit` tracepoints (count and time by
    /// number), the tracepoints the I/O and blocking profiles use.
    Bpftrace,
    /// `perf trace -s -p PID`, the syscall summary users compare with.
    PerfTrace,
}

const OBSERVERS: [Observer; 7] = [
    Observer {
        label: "profiler (default set: cpu,io,block)",
        how: How::Profiler(&[]),
    },
    Observer {
        label: "profiler --profiles cpu",
        how: How::Profiler(&["--profiles", "cpu"]),
    },
    Observer {
        label: "profiler --profiles goroutines",
        how: How::Profiler(&["--profiles", "goroutines"]),
    },
    Observer {
        label: "profiler --profiles heap",
        how: How::Profiler(&["--profiles", "heap"]),
    },
    Observer {
        label: "Go's own block + mutex profiling at rate 1",
        how: How::GoOwn,
    },
    Observer {
        label: "bpftrace: each syscall of the server timed (sys_enter/sys_exit)",
        how: How::Bpftrace,
    },
    Observer {
        label: "perf trace -s -p PID",
        how: How::PerfTrace,
    },
];

/// bpftrace's script for [`How::Bpftrace`]; `PID` is replaced. `args->id` is the spelling
/// Debian 12's bpftrace (0.17) takes.
const BPFTRACE_SCRIPT: &str = "tracepoint:raw_syscalls:sys_enter /pid == PID/ { @start[tid] = \
     nsecs; } tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @calls[args->id] = count(); \
     @nanos[args->id] = sum(nsecs - @start[tid]); delete(@start[tid]); }";

/// A running server and its port.
struct Server {
    process: Running,
    port: u16,
}

impl Server {
    fn start(binary: &Path, dir: &Workdir) -> Result<Server> {
        let port_file = dir.logs.join("port");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(binary);
        cmd.arg(&port_file);
        let process = Running::start(&mut cmd, &dir.logs, "server")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return Ok(Server { process, port });
            }
            if Instant::now() > deadline {
                bail!("go_service wrote no port within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The body of the server's answer to `GET path`.
    fn get(&self, path: &str) -> Result<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("go_service answered {path} with {response:?}");
        }
        Ok(response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned())
    }

    /// (requests answered, CPU nanoseconds), as the server measured them.
    fn stats(&self) -> Result<(f64, f64)> {
        let body = self.get("/stats")?;
        let field = |name: &str| -> Result<f64> {
            body.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .with_context(|| format!("go_service /stats has no {name}: {body:?}"))
        };
        Ok((field("requests")?, field("cpu_ns")?))
    }

    /// Loads the server for `secs` and returns its CPU nanoseconds per request.
    fn cpu_per_request(&self, secs: f64, dir: &Workdir) -> Result<f64> {
        let (r0, c0) = self.stats()?;
        load(self.port, secs, dir)?;
        let (r1, c1) = self.stats()?;
        if r1 <= r0 {
            bail!("go_service answered no request under load");
        }
        Ok((c1 - c0) / (r1 - r0))
    }

    fn stop(self) -> Result<()> {
        self.process.stop(runner::STOP_TIMEOUT).map(drop)
    }
}

fn load(port: u16, secs: f64, dir: &Workdir) -> Result<()> {
    let url = format!("http://127.0.0.1:{port}/kv?key=k1");
    let argv: Vec<OsString> = vec![
        "ab".into(),
        "-k".into(),
        "-c".into(),
        CONNECTIONS.to_string().into(),
        "-t".into(),
        format!("{secs}").into(),
        "-n".into(),
        "100000000".into(),
        url.into(),
    ];
    runner::run(
        &mut runner::command(&argv),
        &dir.logs,
        "ab",
        runner::RUN_TIMEOUT,
    )?
    .ok()
    .map(drop)
}

/// One pair on one server, warmed: unobserved, observed by `observer`, unobserved again,
/// each loaded for `secs`; CPU nanoseconds per request in each window. Measuring both
/// sides on one server keeps out how much one Go server's CPU per request differs from the
/// next one's (26 to 44 µs here between fresh servers, unobserved), and the two unobserved
/// windows around the observed one show how much it moves within one.
fn measure_pair(
    ctx: &Ctx,
    binary: &Path,
    dir: &Workdir,
    observer: &Observer,
    secs: f64,
) -> Result<[f64; 3]> {
    let server = Server::start(binary, dir)?;
    let measured = observe_pair(ctx, &server, dir, observer, secs);
    server.stop()?;
    measured
}

fn observe_pair(
    ctx: &Ctx,
    server: &Server,
    dir: &Workdir,
    observer: &Observer,
    secs: f64,
) -> Result<[f64; 3]> {
    load(server.port, 1.0, dir)?;
    let before = server.cpu_per_request(secs, dir)?;
    let pid = server.process.pid().context("the server has no pid")?;
    let argv: Option<Vec<OsString>> = match observer.how {
        How::Profiler(flags) => {
            dir.fresh_out()?;
            let mut argv: Vec<OsString> = vec![
                ctx.profiler.clone().into_os_string(),
                "--pid".into(),
                pid.to_string().into(),
                "--format".into(),
                "pprof".into(),
                "-o".into(),
                dir.out.clone().into_os_string(),
            ];
            argv.extend(flags.iter().map(OsString::from));
            Some(argv)
        }
        How::Bpftrace => Some(vec![
            "bpftrace".into(),
            "-e".into(),
            BPFTRACE_SCRIPT.replace("PID", &pid.to_string()).into(),
        ]),
        How::PerfTrace => Some(vec![
            "perf".into(),
            "trace".into(),
            "-s".into(),
            "-p".into(),
            pid.to_string().into(),
        ]),
        How::GoOwn => {
            server.get("/profilerate?rate=1")?;
            None
        }
    };
    let watcher = match argv {
        Some(argv) => {
            let bg = Running::start(&mut runner::command(&argv), &dir.logs, "observer")?;
            Some(runner::wait_ready(bg, Ready::After(ctx.plan.settle))?)
        }
        None => None,
    };
    let observed = server.cpu_per_request(secs, dir);
    match watcher {
        Some(watcher) => {
            let done = watcher.stop(runner::STOP_TIMEOUT)?;
            if !done.stopped_cleanly() {
                bail!(
                    "`{}` {} when stopped:\n{}",
                    done.shown,
                    runner::describe(done.status),
                    runner::tail(&done.stderr, 15)
                );
            }
        }
        None => drop(server.get("/profilerate?rate=0")?),
    }
    let after = server.cpu_per_request(secs, dir)?;
    Ok([before, observed?, after])
}

/// Row 15.
pub fn go_service(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "go_service")?;
    let binary = super::goroutines::build_go_fixture(&ctx.scratch.join("go-bin"), "go_service")?;
    let secs = if ctx.plan.quick { 2.0 } else { 4.0 };
    let mut section = Section::new(
        title("goservice"),
        format!(
            "`go_service` (tests/fixtures/go_service.go, built by {}): a JSON-over-HTTP \
             service on loopback whose handler counts a hit in a mutex-guarded map and \
             waits for a worker goroutine's answer over channels, loaded by `ab -k -c \
             {CONNECTIONS} -t {secs}`. Each pair is one fresh server, warmed for 1 s, then \
             measured in three windows: A unobserved, B observed, A again unobserved. B is \
             observed by `profiler --pid` (attached {:.0} s before its load), by Go's own \
             block and mutex profiling at rate 1 (set and unset through the server's \
             /profilerate), or by a peer tracing the server's syscalls. The figure is the \
             server's own CPU time (getrusage) over the requests it answered, both read \
             from its /stats around each window; a pair's ratio is B over the mean of its \
             two A windows.",
            super::goroutines::go_tool().display(),
            ctx.plan.settle.as_secs_f64()
        ),
    );
    let mut table = Table::new(&[
        "Observer",
        "A: unobserved, µs CPU per request",
        "B: observed, µs CPU per request",
        "A after / A before",
        "B/A: median of pair ratios (min–max)",
    ]);
    for observer in &OBSERVERS {
        let missing = match observer.how {
            How::Bpftrace => Some(&ctx.peers.bpftrace),
            How::PerfTrace => Some(&ctx.peers.perf_trace),
            How::Profiler(_) | How::GoOwn => None,
        }
        .filter(|tool| !tool.ready());
        if let Some(tool) = missing {
            section
                .notes
                .push(format!("{} skipped: {}", observer.label, tool.describe()));
            continue;
        }
        let mut pairs = Vec::new();
        let mut drift = Vec::new();
        for rep in 1..=ctx.plan.reps {
            runner::check_interrupted()?;
            let [before, b, after] = measure_pair(ctx, &binary, &dir, observer, secs)?;
            let a = (before + after) / 2.0;
            println!(
                "xtask: bench: {}: pair {rep}/{}: A {:.1} and {:.1} µs, B {:.1} µs CPU per \
                 request, B/A {:.2}",
                observer.label,
                ctx.plan.reps,
                before / 1e3,
                after / 1e3,
                b / 1e3,
                b / a
            );
            pairs.push((a / 1e3, b / 1e3));
            drift.push(after / before);
        }
        let a = Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).context("no pairs")?;
        let b = Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).context("no pairs")?;
        let drift = Spread::of(&drift).context("no pairs")?;
        let ratio = ratio_of_pairs(&pairs).context("no pairs")?;
        table.row(vec![
            observer.label.to_owned(),
            report::spread(a, 1),
            report::spread(b, 1),
            report::times(drift),
            report::times(ratio),
        ]);
        let goal = match observer.how {
            How::Profiler([]) => Some("the default set"),
            How::Profiler(["--profiles", "goroutines"]) => {
                Some("goroutine tracing (in the default set only if it meets this)")
            }
            _ => None,
        };
        if let Some(what) = goal {
            section.goals.push(Goal::new(
                format!(
                    "{what}: at most {:.0}% more CPU per request on a busy Go net/http service",
                    (DEFAULT_SET_GOAL - 1.0) * 100.0
                ),
                report::times(ratio),
                Status::from_bool(ratio.median <= DEFAULT_SET_GOAL),
            ));
        }
    }
    section.tables.push(table);
    Ok(section)
}
