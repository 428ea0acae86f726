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

/// One way of watching the B server.
struct Observer {
    label: &'static str,
    /// Profiler flags (`--pid PID` is added), or `None` for Go's own profiling.
    profiler: Option<&'static [&'static str]>,
}

const OBSERVERS: [Observer; 5] = [
    Observer {
        label: "profiler (default set: cpu,io,block)",
        profiler: Some(&[]),
    },
    Observer {
        label: "profiler --profiles cpu",
        profiler: Some(&["--profiles", "cpu"]),
    },
    Observer {
        label: "profiler --profiles goroutines",
        profiler: Some(&["--profiles", "goroutines"]),
    },
    Observer {
        label: "profiler --profiles heap",
        profiler: Some(&["--profiles", "heap"]),
    },
    Observer {
        label: "Go's own block + mutex profiling at rate 1",
        profiler: None,
    },
];

/// A running server and its port.
struct Server {
    process: Running,
    port: u16,
}

impl Server {
    fn start(binary: &Path, dir: &Workdir, go_profiling: bool) -> Result<Server> {
        let port_file = dir.logs.join("port");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(binary);
        cmd.arg(&port_file);
        if go_profiling {
            cmd.env("GO_SERVICE_PROFILE_RATE", "1");
        }
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

    /// (requests answered, CPU nanoseconds), as the server measured them.
    fn stats(&self) -> Result<(f64, f64)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
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

/// One measurement: a fresh server, warmed, then loaded for `secs` under `observer`
/// (`None`: unprofiled); its CPU per request in nanoseconds.
fn measure(
    ctx: &Ctx,
    binary: &Path,
    dir: &Workdir,
    observer: Option<&Observer>,
    secs: f64,
) -> Result<f64> {
    let go_profiling = observer.is_some_and(|o| o.profiler.is_none());
    let server = Server::start(binary, dir, go_profiling)?;
    load(server.port, 1.0, dir)?;
    let profiler = match observer.and_then(|o| o.profiler) {
        Some(flags) => {
            dir.fresh_out()?;
            let pid = server.process.pid().context("the server has no pid")?;
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
            let bg = Running::start(&mut runner::command(&argv), &dir.logs, "observer")?;
            Some(runner::wait_ready(bg, Ready::After(ctx.plan.settle))?)
        }
        None => None,
    };
    let measured = server.cpu_per_request(secs, dir);
    if let Some(profiler) = profiler {
        let done = profiler.stop(runner::STOP_TIMEOUT)?;
        if !done.stopped_cleanly() {
            bail!(
                "`{}` {} when stopped:\n{}",
                done.shown,
                runner::describe(done.status),
                runner::tail(&done.stderr, 15)
            );
        }
    }
    server.stop()?;
    measured
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
             {CONNECTIONS} -t {secs}` after a 1 s warm-up. Each measurement starts a fresh \
             server; A is unprofiled, B profiled by `profiler --pid` (attached {:.0} s \
             before the load) or run with Go's own block and mutex profiling at rate 1 \
             (`GO_SERVICE_PROFILE_RATE=1`). The figure is the server's own CPU time \
             (getrusage) over the requests it answered, both read from its /stats before \
             and after the load; A and B alternate in pairs.",
            super::goroutines::go_tool().display(),
            ctx.plan.settle.as_secs_f64()
        ),
    );
    let mut table = Table::new(&[
        "Observer",
        "A: unprofiled, µs CPU per request",
        "B: observed, µs CPU per request",
        "B/A: median of pair ratios (min–max)",
    ]);
    for observer in &OBSERVERS {
        let mut pairs = Vec::new();
        for rep in 1..=ctx.plan.reps {
            runner::check_interrupted()?;
            let a = measure(ctx, &binary, &dir, None, secs)?;
            let b = measure(ctx, &binary, &dir, Some(observer), secs)?;
            println!(
                "xtask: bench: {}: pair {rep}/{}: A {:.1} µs, B {:.1} µs CPU per request, \
                 B/A {:.2}",
                observer.label,
                ctx.plan.reps,
                a / 1e3,
                b / 1e3,
                b / a
            );
            pairs.push((a / 1e3, b / 1e3));
        }
        let a = Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).context("no pairs")?;
        let b = Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).context("no pairs")?;
        let ratio = ratio_of_pairs(&pairs).context("no pairs")?;
        table.row(vec![
            observer.label.to_owned(),
            report::spread(a, 1),
            report::spread(b, 1),
            report::times(ratio),
        ]);
        let goal = match observer.label {
            l if l.starts_with("profiler (default") => Some("the default set"),
            l if l.ends_with("goroutines") => {
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
