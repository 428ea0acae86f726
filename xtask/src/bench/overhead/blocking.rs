//! Row 3: blocking-profile overhead, on threads contending on a mutex.

use anyhow::Result;

use super::observers::{profiler_bg, profiler_bin_bg};
use super::pairs::{Config, Outcome, measured, run_pairs, scaled};
use crate::bench::fixtures::argv;
use crate::bench::parse::need_field;
use crate::bench::report::{self, Goal, Section, Status, Table};
use crate::bench::runner::{self, Workdir};
use crate::bench::{Ctx, title};

/// Row 3: blocking-profile overhead.
pub fn blocking(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "block")?;
    let goal = "profiler --profiles block: overhead under 5%";
    let mut section = Section::new(
        title("block"),
        "`bench_contention ITERATIONS 4`: 4 threads lock one pthread mutex around a tiny \
         critical section ITERATIONS times each (so they wait in futex all the time), timing \
         themselves from a start barrier; unprofiled (A) vs under `profiler --profiles \
         block` over the whole host (B).",
    );

    // A build without the blocking profile rejects the flag value through clap (exit 2).
    dir.fresh_out()?;
    let mut probe_cmd = runner::command(&[
        ctx.profiler.clone().into_os_string(),
        "--profiles".into(),
        "block".into(),
        "--duration".into(),
        "100ms".into(),
        "-o".into(),
        dir.out.clone().into_os_string(),
    ]);
    let probe = runner::run(&mut probe_cmd, &dir.logs, "probe", runner::RUN_TIMEOUT)?;
    if probe.status.code() == Some(2) {
        println!("xtask: bench: blocking profile not available in this build; row skipped");
        section.notes.push(format!(
            "Blocking profile not available in this build: `{}` exited with code 2 ({}).",
            probe.shown,
            runner::tail(&probe.stderr, 3)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        ));
        section.goals.push(Goal::new(
            goal,
            "blocking profile not available in this build",
            Status::NotMeasured,
        ));
        return Ok(section);
    }
    probe.ok()?;

    let fixture = &ctx.fixtures.contention;
    let probe_iters = 100_000;
    let out = runner::unobserved(&argv(fixture, &[probe_iters.to_string(), "4".into()]), &dir)?;
    let probe_secs = need_field(&out, "elapsed_ns", "bench_contention")? / 1e9;
    let iters = scaled(probe_iters, probe_secs, ctx.plan.contention_secs, 1000);
    let config = Config {
        who: "profiler".into(),
        setting: "--profiles block".into(),
        observer: Some(profiler_bg(ctx, &dir, &["--profiles", "block"])),
        fixture: argv(fixture, &[iters.to_string(), "4".into()]),
        is_profiler: true,
    };
    // Wall time only: blocked threads use no CPU, so CPU time would hide the very waits
    // this profile adds to.
    let elapsed = |out: &str| {
        Ok((
            need_field(out, "elapsed_ns", "bench_contention")? / 1e9,
            None,
        ))
    };
    let Outcome::Pairs { wall, .. } = run_pairs(ctx, &dir, &config, &elapsed, "s")? else {
        unreachable!("the profiler's failures are errors, not skips");
    };
    let m = measured(&wall).expect("at least one pair");
    let mut table = Table::new(&[
        "Observer",
        "Iterations per thread",
        "A: unprofiled, s",
        "B: profiled, s",
        "Overhead: median of pair ratios (min … max)",
    ]);
    table.row(vec![
        "profiler `--profiles block`".into(),
        iters.to_string(),
        report::spread(m.a, 3),
        report::spread(m.b, 3),
        report::overhead(m.ratio),
    ]);
    // The baseline runs the same flags and workload right after, so what a change adds to
    // each futex wait shows under the same load.
    if let Some(baseline) = &ctx.baseline_profiler {
        let config = Config {
            who: "profiler (baseline)".into(),
            setting: "--profiles block".into(),
            observer: Some(profiler_bin_bg(
                ctx,
                baseline,
                &dir,
                &["--profiles", "block"],
            )),
            fixture: argv(fixture, &[iters.to_string(), "4".into()]),
            is_profiler: false,
        };
        match run_pairs(ctx, &dir, &config, &elapsed, "s")? {
            Outcome::Pairs { wall, .. } => {
                let b = measured(&wall).expect("at least one pair");
                table.row(vec![
                    "profiler (baseline) `--profiles block`".into(),
                    iters.to_string(),
                    report::spread(b.a, 3),
                    report::spread(b.b, 3),
                    report::overhead(b.ratio),
                ]);
            }
            Outcome::Skipped(why) => section.notes.push(format!("baseline not run: {why}")),
        }
        section.notes.push(format!(
            "profiler (baseline) is `{}` (--baseline-profiler), benched with the same flags \
             and iterations, each pair with its own unprofiled run.",
            baseline.display()
        ));
    }
    section.tables.push(table);
    let p = (m.ratio.median - 1.0) * 100.0;
    section.goals.push(Goal::new(
        goal,
        report::signed_pct(p),
        Status::from_bool(p < 5.0),
    ));
    Ok(section)
}
