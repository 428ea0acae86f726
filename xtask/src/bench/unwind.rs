//! Row 8: unwinding success — how often a sample's user stack reaches `main` in code
//! built without frame pointers (issue 10, "true stacks on real software").
//!
//! Two subjects: `stacks_deep` (the tests' fixture: two 12-deep call chains built with
//! `-O2 -fomit-frame-pointer`) and Debian's own `/usr/bin/python3` running a pure-Python
//! busy loop (built without frame pointers, like the rest of the distribution). Each runs
//! under the profiler (`--call-graph dwarf`, the default, and `--call-graph fp`),
//! `perf record --call-graph dwarf`, `perf record -g` (frame pointers) and `bpftrace`
//! counting `ustack` (frame pointers, in the kernel). The figure is the share of the
//! subject's samples whose stack has a `main` frame. Debian's python3 tail-calls
//! `Py_BytesMain` from `main`, so for it `Py_BytesMain` (exported, always named) stands
//! for `main`.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::fixtures::argv;
use super::parse::{self, Folded};
use super::report::{Goal, Section, Status, Table};
use super::runner::{self, RUN_TIMEOUT, Running, STOP_TIMEOUT, Workdir};
use super::{Ctx, title};

/// Sampling rate of every tool in this row: enough samples in a few seconds.
const HZ: u64 = 499;
/// Debian's python3 (not a pyenv shim that may come first on PATH).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// A program to profile.
struct Subject {
    name: &'static str,
    /// Its comm, to pick its samples out.
    comm: &'static str,
    /// Its command line, running about `secs` (given to `command`).
    command: Box<dyn Fn(f64) -> Vec<OsString>>,
    /// The frame that means "reached main".
    main: fn(&str) -> bool,
}

fn is_main(frame: &str) -> bool {
    frame == "main"
}

fn is_python_main(frame: &str) -> bool {
    frame == "main" || frame == "Py_BytesMain"
}

/// A pure-Python busy loop of `secs` seconds.
fn python_busy(secs: f64) -> String {
    format!(
        "import time\n\
         def stk_spin(until):\n    x = 0\n    while time.monotonic() < until:\n        \
         for i in range(1000):\n            x += i * i\n    return x\n\
         stk_spin(time.monotonic() + {secs})\n"
    )
}

/// One tool's figure on one subject.
enum Share {
    /// (samples of the subject, of which reached main, ring-buffer MB/s if printed).
    Measured(u64, u64, Option<f64>),
    Failed(String),
}

/// The profiler in command mode with `mode` (`None`: the build's default).
fn profiler_share(
    ctx: &Ctx,
    dir: &Workdir,
    subject: &Subject,
    secs: f64,
    mode: &str,
) -> Result<Share> {
    dir.fresh_out()?;
    let mut args: Vec<OsString> = vec![
        ctx.profiler.clone().into_os_string(),
        "--profiles".into(),
        "cpu".into(),
        "-F".into(),
        HZ.to_string().into(),
    ];
    args.push("--call-graph".into());
    args.push(mode.into());
    args.push("-o".into());
    args.push(dir.out.clone().into_os_string());
    args.push("--".into());
    args.extend((subject.command)(secs));
    let mut cmd = runner::command(&args);
    println!("xtask: bench: running: {}", crate::util::display(&cmd));
    let done = runner::run(&mut cmd, &dir.logs, "profiler", RUN_TIMEOUT)?.ok()?;
    let folded = Folded::read(&dir.out.join("cpu.folded"))?;
    let comm = |c: &str| c == subject.comm;
    let total = folded.total(comm);
    let hits = folded.with_frame_where(comm, subject.main);
    let mb = parse::ring_buffer(&done.stdout).and_then(|r| r.mb_per_s);
    Ok(Share::Measured(total, hits, mb))
}

/// `perf record -e cpu-clock -F HZ <call_graph> -o FILE -- CMD`, then `perf script`.
fn perf_share(dir: &Workdir, subject: &Subject, secs: f64, call_graph: &[&str]) -> Result<Share> {
    dir.fresh_out()?;
    let data = dir.out.join("perf.data");
    let mut record = Command::new("perf");
    record
        .args(["record", "-q", "-e", "cpu-clock", "-F", &HZ.to_string()])
        .args(call_graph)
        .arg("-o")
        .arg(&data)
        .arg("--")
        .args((subject.command)(secs));
    println!("xtask: bench: running: {}", crate::util::display(&record));
    let rec = runner::run(&mut record, &dir.logs, "perf-record", RUN_TIMEOUT)?;
    if !rec.status.success() {
        return Ok(Share::Failed(format!(
            "`{}` {}: {}",
            rec.shown,
            runner::describe(rec.status),
            runner::tail(&rec.stderr, 3)
        )));
    }
    let mut script = Command::new("perf");
    script
        .args(["script", "-F", "comm,ip,sym", "-i"])
        .arg(&data);
    let scr = runner::run(&mut script, &dir.logs, "perf-script", RUN_TIMEOUT)?;
    if !scr.status.success() {
        return Ok(Share::Failed(format!(
            "`{}` {}: {}",
            scr.shown,
            runner::describe(scr.status),
            runner::tail(&scr.stderr, 3)
        )));
    }
    let (total, hits) = parse::perf_script_share(&scr.stdout, |c| c == subject.comm, subject.main);
    Ok(Share::Measured(total, hits, None))
}

/// `bpftrace -e 'profile:hz:HZ /pid == N/ { @[ustack] = count(); }'` on the running
/// subject for `secs`, stopped (and its map printed) while the subject still runs, so
/// that bpftrace can still read its symbols.
fn bpftrace_share(ctx: &Ctx, dir: &Workdir, subject: &Subject, secs: f64) -> Result<Share> {
    dir.fresh_out()?;
    // Long enough for bpftrace to start and attach; stopped once bpftrace is done.
    let target = Running::start(
        &mut runner::command(&(subject.command)(secs + 60.0)),
        &dir.logs,
        "subject",
    )?;
    let Some(pid) = target.pid() else {
        return Ok(Share::Failed("the subject exited at once".into()));
    };
    let program = format!("profile:hz:{HZ} /pid == {pid}/ {{ @[ustack] = count(); }}");
    let mut cmd = Command::new("bpftrace");
    cmd.args(["-e", &program]);
    println!("xtask: bench: running: {}", crate::util::display(&cmd));
    let mut bt = Running::start(&mut cmd, &dir.logs, "bpftrace")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bt.stdout_so_far().contains("Attaching") {
        if !bt.poll()? || Instant::now() >= deadline {
            let done = bt.stop(STOP_TIMEOUT)?;
            target.signal(libc::SIGINT);
            return Ok(Share::Failed(format!(
                "`{}` did not attach: {}",
                done.shown,
                runner::tail(&done.stderr, 3)
            )));
        }
        runner::check_interrupted()?;
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(ctx.plan.settle.min(Duration::from_secs(1)) + Duration::from_secs_f64(secs));
    let done = bt.stop(STOP_TIMEOUT)?;
    target.signal(libc::SIGINT);
    target.wait(STOP_TIMEOUT)?;
    if !done.stopped_cleanly() {
        return Ok(Share::Failed(format!(
            "`{}` {}: {}",
            done.shown,
            runner::describe(done.status),
            runner::tail(&done.stderr, 3)
        )));
    }
    let (total, hits) = parse::bpftrace_stacks_share(&done.stdout, subject.main);
    Ok(Share::Measured(total, hits, None))
}

fn pct(hits: u64, total: u64) -> f64 {
    100.0 * hits as f64 / total.max(1) as f64
}

/// Row 8.
pub fn unwinding(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "unwind")?;
    let secs = ctx.plan.accuracy_secs;
    let deep = ctx.fixtures.deep.clone();
    let mut subjects = vec![Subject {
        name: "stacks_deep (C, -O2 -fomit-frame-pointer)",
        comm: "stacks_deep",
        command: Box::new(move |secs| argv(&deep, &[format!("{secs}")])),
        main: is_main,
    }];
    let mut notes = Vec::new();
    let (perf, bpftrace) = (ctx.peers.perf.ready(), ctx.peers.bpftrace.ready());
    if !perf {
        notes.push(format!("perf skipped: {}", ctx.peers.perf.describe()));
    }
    if !bpftrace {
        notes.push(format!(
            "bpftrace skipped: {}",
            ctx.peers.bpftrace.describe()
        ));
    }
    if Path::new(DEBIAN_PYTHON).is_file() {
        subjects.push(Subject {
            name: "Debian python3 (busy loop)",
            comm: "python3",
            command: Box::new(|secs| {
                vec![DEBIAN_PYTHON.into(), "-c".into(), python_busy(secs).into()]
            }),
            main: is_python_main,
        });
    } else {
        notes.push(format!(
            "{DEBIAN_PYTHON} is not installed: the python3 rows are skipped."
        ));
    }
    let mut section = Section::new(
        title("unwind"),
        format!(
            "Each subject runs about {secs:.0} s under each tool at {HZ} Hz; the figure is \
             the share of the subject's samples whose user stack has a `main` frame (for \
             python3, `Py_BytesMain`, which its `main` tail-calls). The profiler runs \
             `profiler --profiles cpu -F {HZ} [--call-graph MODE] -o DIR -- CMD`; perf runs \
             `perf record -e cpu-clock -F {HZ} --call-graph dwarf` or `-g` and is read with \
             `perf script -F comm,ip,sym`; bpftrace runs `bpftrace -e 'profile:hz:{HZ} /pid \
             == N/ {{ @[ustack] = count(); }}'` on the running subject and is stopped before \
             it. *Ring buffer* is the profiler's own `ring buffer:` throughput, when it \
             prints one."
        ),
    );
    let mut table = Table::new(&[
        "Subject",
        "Tool",
        "Samples",
        "Reaching main, %",
        "Ring buffer, MB/s",
    ]);
    // (subject, profiler dwarf %, perf dwarf %)
    let mut compared = Vec::new();
    for subject in &subjects {
        let mut runs: Vec<(String, Share)> = Vec::new();
        runs.push((
            "profiler --call-graph dwarf".into(),
            profiler_share(ctx, &dir, subject, secs, "dwarf")?,
        ));
        runs.push((
            "profiler --call-graph fp".into(),
            profiler_share(ctx, &dir, subject, secs, "fp")?,
        ));
        if perf {
            runs.push((
                "perf record --call-graph dwarf".into(),
                perf_share(&dir, subject, secs, &["--call-graph", "dwarf"])?,
            ));
            runs.push((
                "perf record -g".into(),
                perf_share(&dir, subject, secs, &["-g"])?,
            ));
        }
        if bpftrace {
            runs.push((
                "bpftrace ustack".into(),
                bpftrace_share(ctx, &dir, subject, secs)?,
            ));
        }
        let mut ours = None;
        let mut perf_dwarf = None;
        for (tool, share) in runs {
            match share {
                Share::Measured(total, hits, mb) => {
                    let p = pct(hits, total);
                    println!(
                        "xtask: bench: {}: {tool}: {p:.1}% of {total} samples reach main",
                        subject.name
                    );
                    table.row(vec![
                        subject.name.to_string(),
                        tool.clone(),
                        total.to_string(),
                        format!("{p:.1}"),
                        mb.map_or("-".to_string(), |mb| format!("{mb:.1}")),
                    ]);
                    if tool.starts_with("profiler") && !tool.ends_with(" fp") {
                        ours = Some(p);
                    }
                    if tool == "perf record --call-graph dwarf" {
                        perf_dwarf = Some(p);
                    }
                }
                Share::Failed(why) => {
                    println!("xtask: bench: {}: {tool} failed: {why}", subject.name);
                    table.row(vec![
                        subject.name.to_string(),
                        tool.clone(),
                        "-".into(),
                        "failed".into(),
                        "-".into(),
                    ]);
                    notes.push(format!("{} under {tool} failed: {why}", subject.name));
                }
            }
        }
        compared.push((subject.name, ours, perf_dwarf));
    }
    section.tables.push(table);
    for (name, ours, perf) in compared {
        let goal = format!("profiler (dwarf): 95% of samples reach main on {name}");
        section.goals.push(match ours {
            Some(p) => Goal::new(goal, format!("{p:.1}%"), Status::from_bool(p >= 95.0)),
            None => Goal::new(goal, "-", Status::NotMeasured),
        });
        let goal =
            format!("profiler (dwarf): at most 2 points below perf --call-graph dwarf on {name}");
        section.goals.push(match (ours, perf) {
            (Some(o), Some(p)) => Goal::new(
                goal,
                format!("profiler {o:.1}% vs perf {p:.1}%"),
                Status::from_bool(o >= p - 2.0),
            ),
            _ => Goal::new(goal, "perf not measured", Status::NotMeasured),
        });
    }
    section.notes.extend(notes);
    section.notes.push(
        "Frame-pointer walkers (perf -g, bpftrace, --call-graph fp) are expected near 0% \
         here: that is the gap the dwarf unwinder closes."
            .to_string(),
    );
    Ok(section)
}
