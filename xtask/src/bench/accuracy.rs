//! Row 4: sample accuracy — does the profiler receive the samples it should, and does
//! the profile split CPU time between functions the way the program really did?
//!
//! `cpu_split` alternates between two functions with randomized slice lengths and
//! measures its own split with the thread CPU clock; the profiler runs it in command mode
//! at 99, 999 and 4999 Hz. Three figures per run: the host-wide `received:` ratio the
//! profiler prints (ticks on busy CPUs vs /proc/stat's busy time), the fixture's samples
//! against F x its own CPU time, and the split error in percentage points.

use anyhow::{Context, Result};

use super::fixtures::argv;
use super::parse::{self, Folded, need_field};
use super::report::{self, Section, Table};
use super::runner::{self, RUN_TIMEOUT, Workdir};
use super::stats::Spread;
use super::{Ctx, title};

const FREQUENCIES: [u64; 3] = [99, 999, 4999];

/// One run's figures.
struct Run {
    /// Host-wide received / expected ticks, %.
    received_pct: f64,
    /// Fixture samples / (F x fixture CPU seconds), %.
    target_pct: f64,
    /// Fixture samples.
    samples: f64,
    /// burn_alpha's share in the profile and as measured, %.
    profile_alpha: f64,
    measured_alpha: f64,
}

fn one_run(ctx: &Ctx, dir: &Workdir, hz: u64) -> Result<Run> {
    dir.fresh_out()?;
    let mut cmd = runner::command(&[
        ctx.profiler.clone().into_os_string(),
        "--profiles".into(),
        "cpu".into(),
        "-F".into(),
        hz.to_string().into(),
        "-o".into(),
        dir.out.clone().into_os_string(),
        "--".into(),
    ]);
    cmd.args(argv(
        &ctx.fixtures.split,
        &[format!("{}", ctx.plan.accuracy_secs)],
    ));
    let done = runner::run(&mut cmd, &dir.logs, "profiler", RUN_TIMEOUT)?.ok()?;
    let out = &done.stdout;
    let alpha_ns = need_field(out, "alpha_ns", "cpu_split")?;
    let beta_ns = need_field(out, "beta_ns", "cpu_split")?;
    let received = parse::received(out)
        .with_context(|| format!("no `received:` line in the profiler's output:\n{out}"))?;
    let folded = Folded::read(&dir.out.join("cpu.folded"))?;
    let samples = folded.total(|comm| comm == "cpu_split") as f64;
    let alpha = folded.with_frame("burn_alpha") as f64;
    let beta = folded.with_frame("burn_beta") as f64;
    let cpu_secs = (alpha_ns + beta_ns) / 1e9;
    let run = Run {
        received_pct: 100.0 * received.ticks / received.expected.max(1.0),
        target_pct: 100.0 * samples / (hz as f64 * cpu_secs).max(1.0),
        samples,
        profile_alpha: 100.0 * alpha / (alpha + beta).max(1.0),
        measured_alpha: 100.0 * alpha_ns / (alpha_ns + beta_ns).max(1.0),
    };
    println!(
        "xtask: bench: {hz} Hz: received {:.1}% of expected, fixture samples {:.1}% of F x \
         its CPU time, alpha share {:.2}% in the profile vs {:.2}% measured",
        run.received_pct, run.target_pct, run.profile_alpha, run.measured_alpha
    );
    Ok(run)
}

/// Row 4.
pub fn accuracy(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "accuracy")?;
    let secs = ctx.plan.accuracy_secs;
    let mut section = Section::new(
        title("accuracy"),
        format!(
            "`profiler --profiles cpu -F HZ -o DIR -- cpu_split {secs}`, {} runs per \
             rate. `cpu_split` alternates between `burn_alpha` (about 70%) and \
             `burn_beta` with randomized slice lengths, timing each slice with its thread \
             CPU clock. *Received* is the profiler's own `received:` figure (ticks on busy \
             CPUs of the whole host vs F x busy CPU-seconds from /proc/stat). *Fixture \
             samples* is the fixture's samples in cpu.folded vs F x the CPU time it \
             measured itself. The *split error* is |burn_alpha's share of the profile − \
             its measured share|, in percentage points; *sampling noise* is one binomial \
             standard deviation of that share for the number of samples taken, the error \
             a perfect sampler would still show.",
            ctx.plan.reps
        ),
    );
    let mut table = Table::new(&[
        "Rate",
        "Received / expected (host), %",
        "Fixture samples / (F x its CPU time), %",
        "Fixture samples",
        "Split error, pp",
        "Sampling noise (1σ), pp",
    ]);
    for hz in FREQUENCIES {
        let mut runs = Vec::new();
        for rep in 1..=ctx.plan.reps {
            println!(
                "xtask: bench: accuracy at {hz} Hz, run {rep}/{}",
                ctx.plan.reps
            );
            runs.push(one_run(ctx, &dir, hz)?);
        }
        let of = |f: fn(&Run) -> f64| {
            Spread::of(&runs.iter().map(f).collect::<Vec<_>>()).expect("at least one run")
        };
        let errors = of(|r| (r.profile_alpha - r.measured_alpha).abs());
        let samples = of(|r| r.samples);
        let p = of(|r| r.measured_alpha).median / 100.0;
        let noise = 100.0 * (p * (1.0 - p) / samples.median.max(1.0)).sqrt();
        table.row(vec![
            format!("{hz} Hz"),
            report::spread(of(|r| r.received_pct), 1),
            report::spread(of(|r| r.target_pct), 1),
            report::spread(samples, 0),
            report::spread(errors, 2),
            format!("{noise:.2}"),
        ]);
    }
    section.tables.push(table);
    section.notes.push(
        "The issue sets no goal for this row. A received figure far below 100% means lost \
         ticks; a split error well above the sampling noise means biased sampling."
            .to_string(),
    );
    Ok(section)
}
