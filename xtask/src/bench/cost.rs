//! Row 5: what the profiler itself costs while it profiles a busy host.
//!
//! One busy process per CPU, then a whole-host run at 99 Hz with the profiler's default
//! profiles (what a user pays when they give no `--profiles`).
//! The profiler's user + system CPU time and peak RSS over the whole run come from
//! `wait4`'s rusage; the kernel programs' run time and the maps' memory from its
//! `profiler cost:` line. The whole-run figures include loading the programs before the
//! window and symbolizing and writing after it, so the bench also reads the profiler's
//! /proc/PID/stat and VmHWM inside the window: that separates the steady cost of
//! profiling from the one-off work at both ends.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::fixtures::argv;
use super::parse;
use super::report::{Goal, Section, Status, Table};
use super::runner::{self, Running, Workdir};
use super::{Ctx, title};

/// The figures of the profiling run.
struct Run {
    window: f64,
    /// Whole run, from rusage.
    cpu: f64,
    rss_mib: f64,
    /// Inside the window: CPU seconds over wall seconds, and peak RSS so far.
    steady_cpu_pct: f64,
    window_rss_mib: f64,
    cost: parse::Cost,
    samples: u64,
}

fn profile_host(ctx: &Ctx, dir: &Workdir, secs: u64) -> Result<Run> {
    dir.fresh_out()?;
    let mut cmd = runner::command(&[
        ctx.profiler.clone().into_os_string(),
        "-F".into(),
        "99".into(),
        "--duration".into(),
        format!("{secs}s").into(),
        "-o".into(),
        dir.out.clone().into_os_string(),
    ]);
    println!("xtask: bench: running: {}", crate::util::display(&cmd));
    runner::check_interrupted()?;
    let spawned = Instant::now();
    let mut profiler = Running::start(&mut cmd, &dir.logs, "profiler")?;
    // The window opens a fraction of a second after the spawn (loading and attaching),
    // so [spawn + settle, spawn + secs - 0.3 s] lies inside it.
    let sample = |profiler: &mut Running, at: Duration| -> Result<(Instant, f64)> {
        while spawned.elapsed() < at {
            runner::check_interrupted()?;
            thread::sleep(Duration::from_millis(20));
        }
        let cpu = match (profiler.poll()?, profiler.pid()) {
            (true, Some(pid)) => runner::proc_cpu_seconds(pid),
            _ => None,
        };
        match cpu {
            Some(cpu) => Ok((Instant::now(), cpu)),
            None => bail!("`{}` exited before its window closed", profiler.shown()),
        }
    };
    let (t0, cpu0) = sample(&mut profiler, ctx.plan.settle)?;
    let end = Duration::from_secs(secs).saturating_sub(Duration::from_millis(300));
    let (t1, cpu1) = sample(&mut profiler, end.max(ctx.plan.settle))?;
    let window_rss_kib = profiler
        .pid()
        .and_then(runner::proc_peak_rss_kib)
        .unwrap_or(0);
    let done = profiler
        .wait(Duration::from_secs(secs) + runner::STOP_TIMEOUT)?
        .ok()?;
    let out = &done.stdout;
    let run = Run {
        window: parse::window_seconds(out)
            .with_context(|| format!("no `window:` line in the profiler's output:\n{out}"))?,
        cpu: done.cpu.as_secs_f64(),
        rss_mib: done.max_rss_kib as f64 / 1024.0,
        steady_cpu_pct: 100.0 * (cpu1 - cpu0) / (t1 - t0).as_secs_f64().max(0.1),
        window_rss_mib: window_rss_kib as f64 / 1024.0,
        cost: parse::cost(out)
            .with_context(|| format!("no `profiler cost:` line in the output:\n{out}"))?,
        samples: parse::samples_recorded(out).unwrap_or(0),
    };
    println!(
        "xtask: bench: {secs} s window: profiler CPU {:.3} s in all ({:.2}% of one CPU inside \
         the window), peak RSS {:.1} MiB ({:.1} MiB inside the window), kernel programs {} \
         ms, maps {:.1} MiB",
        run.cpu,
        run.steady_cpu_pct,
        run.rss_mib,
        run.window_rss_mib,
        run.cost
            .run_ms
            .map_or("unknown".to_string(), |ms| format!("{ms:.1}")),
        run.cost.map_mib
    );
    Ok(run)
}

/// Row 5.
pub fn own_cost(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "cost")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let secs = ctx.plan.cost_secs;
    // Busy long enough to outlast the run; stopped with SIGINT afterwards.
    let busy_secs = secs * 3 + 60;
    let mut busy = Vec::new();
    for i in 0..cpus {
        let mut cmd = runner::command(&argv(
            &ctx.fixtures.cpu,
            &["time".into(), busy_secs.to_string()],
        ));
        busy.push(Running::start(&mut cmd, &dir.logs, &format!("busy{i}"))?);
    }
    thread::sleep(Duration::from_millis(300));
    let run = profile_host(ctx, &dir, secs)?;
    for b in busy {
        b.stop(runner::STOP_TIMEOUT)?.ok()?;
    }

    let cpu_pct = 100.0 * run.cpu / run.window;
    let kernel_pct = run.cost.run_ms.map(|ms| 100.0 * ms / 1000.0 / run.window);
    let per_run_ns = match (run.cost.run_ms, run.cost.runs) {
        (Some(ms), Some(runs)) if runs > 0 => Some(ms * 1e6 / runs as f64),
        _ => None,
    };
    let unknown = || "unknown (kernel.bpf_stats_enabled unavailable)".to_string();

    let mut section = Section::new(
        title("cost"),
        format!(
            "{cpus} busy processes (`bench_cpu time`, one per CPU), then `profiler -F 99 \
             --duration {secs}s` over the whole host, with the profiler's default \
             profiles. The whole-run CPU \
             time and peak RSS are the profiler process's own (`wait4` rusage: user + \
             system, ru_maxrss), including loading its programs before the window and \
             symbolizing and writing after it. The in-window figures are read from \
             /proc/PID/stat (user + system) and VmHWM between {:.1} s after the start and \
             0.3 s before the window closes. Kernel program run time and map memory are the \
             profiler's `profiler cost:` line. Percentages are of one CPU over the window.",
            ctx.plan.settle.as_secs_f64()
        ),
    );
    let mut table = Table::new(&["Figure", "Value"]);
    let rows = [
        ("Window", format!("{:.2} s", run.window)),
        (
            "Profiler user + sys CPU, whole run",
            format!(
                "{:.3} s = {cpu_pct:.2}% of one CPU over the window",
                run.cpu
            ),
        ),
        (
            "Profiler user + sys CPU, inside the window",
            format!("{:.2}% of one CPU", run.steady_cpu_pct),
        ),
        (
            "Kernel programs' run time",
            match (run.cost.run_ms, kernel_pct) {
                (Some(ms), Some(p)) => format!("{ms:.1} ms = {p:.3}% of one CPU"),
                _ => unknown(),
            },
        ),
        (
            "Kernel programs: runs, time per run",
            match (run.cost.runs, per_run_ns) {
                (Some(runs), Some(ns)) => format!("{runs} runs, {ns:.0} ns per run"),
                _ => unknown(),
            },
        ),
        ("CPU samples recorded", run.samples.to_string()),
        ("Peak RSS, whole run", format!("{:.1} MiB", run.rss_mib)),
        (
            "Peak RSS, inside the window",
            format!("{:.1} MiB", run.window_rss_mib),
        ),
        ("BPF map memory", format!("{:.1} MiB", run.cost.map_mib)),
    ];
    for (k, v) in rows {
        table.row(vec![k.to_string(), v]);
    }
    section.tables.push(table);

    // The kernel programs run in the sampled tasks' context, so their time is not in
    // the profiler's rusage: the goal counts both.
    let total = cpu_pct + kernel_pct.unwrap_or(0.0);
    section.goals.push(Goal::new(
        "under 1% of one CPU at 99 Hz (profiler process over the whole run + its kernel \
         programs)",
        match kernel_pct {
            Some(k) => format!(
                "{total:.2}% ({cpu_pct:.2}% process + {k:.3}% kernel programs; {:.2}% \
                 process inside the window)",
                run.steady_cpu_pct
            ),
            None => format!("{cpu_pct:.2}% process; kernel programs unknown"),
        },
        Status::from_bool(total < 1.0),
    ));
    section.goals.push(Goal::new(
        "under 64 MiB peak RSS",
        format!(
            "{:.1} MiB ({:.1} MiB inside the window)",
            run.rss_mib, run.window_rss_mib
        ),
        Status::from_bool(run.rss_mib < 64.0),
    ));
    section.notes.push(
        "The kernel programs run in the context of the sampled tasks, so their time is not \
         in the profiler's rusage; the goal adds them. The goals are judged on the whole \
         run, start-up and write-out included, since that is what a user pays."
            .to_string(),
    );
    Ok(section)
}
