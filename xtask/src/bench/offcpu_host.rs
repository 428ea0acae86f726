//! Row 14, whole-host part: a host busy switching (one `bench_pingpong` pair per CPU,
//! each pinned to its CPU) under `profiler --profiles offcpu` over the whole host, where
//! every thread's switches are the profile's. It shows the slowdown of that load and
//! what the profiler says it lost or skipped (its ring buffer must not flood: stacks are
//! sampled and totals summed in the kernel).

use std::ffi::OsString;

use anyhow::{Context, Result, bail};

use super::Ctx;
use super::fixtures::argv;
use super::parse::need_field;
use super::report::{self, Section, Table};
use super::runner::{self, Ready, Running, Workdir};
use super::stats::{Spread, ratio_of_pairs};

/// Adds the whole-host table to `section`.
pub(super) fn whole_host(ctx: &Ctx, dir: &Workdir, section: &mut Section) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fixture = &ctx.fixtures.pingpong;
    let probe = 100_000u64;
    let per_switch = load(dir, &loads(fixture, probe, cpus))?;
    let secs = if ctx.plan.quick { 1.5 } else { 3.0 };
    let rounds = ((secs * 1e6 / (2.0 * per_switch)).round() as u64).max(10_000);
    let load_argv = loads(fixture, rounds, cpus);

    let mut pairs = Vec::new();
    let mut said = Vec::new();
    for rep in 1..=ctx.plan.reps {
        let a = load(dir, &load_argv)?;
        dir.fresh_out()?;
        let mut profiler = runner::command(&[
            ctx.profiler.clone().into_os_string(),
            "--profiles".into(),
            "offcpu".into(),
            "-o".into(),
            dir.out.clone().into_os_string(),
        ]);
        let bg = Running::start(&mut profiler, &dir.logs, "host-profiler")?;
        let bg = runner::wait_ready(bg, Ready::After(ctx.plan.settle))?;
        let b = load(dir, &load_argv)?;
        let done = bg.stop(runner::STOP_TIMEOUT)?;
        if !done.stopped_cleanly() {
            bail!(
                "`{}` {} when stopped with SIGINT:\n{}",
                done.shown,
                runner::describe(done.status),
                runner::tail(&done.stderr, 15)
            );
        }
        said = losses(&format!("{}\n{}", done.stdout, done.stderr));
        println!(
            "xtask: bench: whole host: pair {rep}/{}: A {a:.3} µs, B {b:.3} µs per switch, \
             B/A {:.3}",
            ctx.plan.reps,
            b / a
        );
        pairs.push((a, b));
    }
    let a = Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).context("no pairs")?;
    let b = Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).context("no pairs")?;
    let ratio = ratio_of_pairs(&pairs).context("no pairs")?;
    section.method.push_str(&format!(
        "\n\nWhole host: {cpus} `bench_pingpong {rounds} cpu=N` pairs at once, one pinned to \
         each CPU (about {:.0}k switches per second in all, unobserved), alone (A) and \
         under `profiler --profiles offcpu` over the whole host (B). Figures are the mean \
         µs per switch of the pairs.",
        cpus as f64 / a.median * 1e3
    ));
    let mut table = Table::new(&[
        "Whole host",
        "A: unobserved, µs/switch",
        "B: profiled, µs/switch",
        "Slowdown: median of pair ratios (min … max)",
    ]);
    table.row(vec![
        format!("profiler `--profiles offcpu`, {cpus} pairs"),
        report::spread(a, 3),
        report::spread(b, 3),
        report::overhead(ratio),
    ]);
    section.tables.push(table);
    section.notes.push(if said.is_empty() {
        "Whole host, last run: the profiler's summary has no line about losses.".to_string()
    } else {
        format!(
            "Whole host, last run, the profiler's summary on losses and cost: {}",
            said.iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    Ok(())
}

/// One pair per CPU, each `bench_pingpong ROUNDS cpu=N`.
fn loads(fixture: &std::path::Path, rounds: u64, cpus: usize) -> Vec<Vec<OsString>> {
    (0..cpus)
        .map(|cpu| argv(fixture, &[rounds.to_string(), format!("cpu={cpu}")]))
        .collect()
}

/// Runs every pair at once and returns their mean µs per switch.
fn load(dir: &Workdir, pairs: &[Vec<OsString>]) -> Result<f64> {
    runner::check_interrupted()?;
    let running = pairs
        .iter()
        .enumerate()
        .map(|(i, argv)| {
            Running::start(&mut runner::command(argv), &dir.logs, &format!("load-{i}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sum = 0.0;
    for run in running {
        let done = run.wait(runner::RUN_TIMEOUT)?.ok()?;
        sum += need_field(&done.stdout, "us_per_switch", "bench_pingpong")?;
    }
    Ok(sum / pairs.len().max(1) as f64)
}

/// The summary's lines about losses, skipped stacks and the profiler's cost, as printed.
fn losses(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("profiler cost:")
                || (l.contains("off-cpu") || l.contains("offcpu") || l.contains("waits"))
                    && (l.contains("lost") || l.contains("rate"))
        })
        .map(|l| l.chars().take(400).collect())
        .take(8)
        .collect()
}
