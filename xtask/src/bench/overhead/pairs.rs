//! Paired A/B runs: the fixture unobserved (A), then observed (B), and the spread of the
//! figures and of their per-pair ratios.

use std::ffi::OsString;

use anyhow::Result;

use crate::bench::Ctx;
use crate::bench::runner::{self, Observer, ObserverFailed, Workdir};
use crate::bench::stats::{Spread, ratio_of_pairs};

/// One configuration of a paired measurement.
pub(super) struct Config {
    /// Who observes, e.g. "profiler", "perf record".
    pub(super) who: String,
    /// Their setting, e.g. "99 Hz".
    pub(super) setting: String,
    /// `None` for the A/A control.
    pub(super) observer: Option<Observer>,
    /// The fixture's command line (its size may differ between configs: slow tracers
    /// get fewer calls so a run stays short; the figure is per call).
    pub(super) fixture: Vec<OsString>,
    /// True for the profiler: its failure fails the row; a peer's is only noted.
    pub(super) is_profiler: bool,
}

/// The measured pairs of one config, or why a peer was skipped.
pub(super) enum Outcome {
    /// `(a, b)` per pair of the wall-clock figure, and of the CPU-time figure when the
    /// fixture prints one.
    Pairs {
        wall: Vec<(f64, f64)>,
        cpu: Vec<(f64, f64)>,
    },
    Skipped(String),
}

/// A fixture's figures from its stdout: wall-clock based, and CPU-time based if any.
///
/// The wall-clock figure is the one the goals use. The CPU-time figure (the fixture's
/// own process CPU clock) still includes the tracing done in the fixture's syscalls and,
/// on kernels without CONFIG_IRQ_TIME_ACCOUNTING (Debian's default, and this VM's), the
/// sampling interrupts too, which are charged to the interrupted task; but it leaves out
/// time spent waiting for a CPU held by other work, so on a shared or busy machine it
/// separates overhead from noise far better.
pub(super) type Metric<'a> = &'a dyn Fn(&str) -> Result<(f64, Option<f64>)>;

/// Runs `reps` pairs (A unobserved, then B observed) and returns `(a, b)` per pair of
/// the fixture's figures read by `metric`.
pub(super) fn run_pairs(
    ctx: &Ctx,
    dir: &Workdir,
    config: &Config,
    metric: Metric<'_>,
    unit: &str,
) -> Result<Outcome> {
    let label = format!("{} {}", config.who, config.setting);
    println!(
        "xtask: bench: {label}: A = `{}`",
        runner::shown(&config.fixture)
    );
    match &config.observer {
        Some(Observer::Background { argv, .. }) => println!(
            "xtask: bench: {label}: B = `{}` in the background, then A's command",
            runner::shown(argv)
        ),
        Some(Observer::Wrap { argv }) => {
            println!(
                "xtask: bench: {label}: B = `{} <A's command>`",
                runner::shown(argv)
            )
        }
        None => println!("xtask: bench: {label}: B = A's command again (A/A control)"),
    }
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for rep in 1..=ctx.plan.reps {
        let a = metric(&runner::unobserved(&config.fixture, dir)?)?;
        let b = match &config.observer {
            None => runner::unobserved(&config.fixture, dir),
            Some(observer) => runner::observed(observer, &config.fixture, dir),
        };
        let b = match b {
            Ok(stdout) => metric(&stdout)?,
            Err(err) if !config.is_profiler && err.downcast_ref::<ObserverFailed>().is_some() => {
                println!("xtask: bench: {label}: skipped: {err:#}");
                return Ok(Outcome::Skipped(format!("{label} failed to run: {err:#}")));
            }
            Err(err) => return Err(err),
        };
        println!(
            "xtask: bench: {label}: pair {rep}/{}: A {:.4} {unit}, B {:.4} {unit}, B/A {:.4}{}",
            ctx.plan.reps,
            a.0,
            b.0,
            b.0 / a.0,
            match (a.1, b.1) {
                (Some(ac), Some(bc)) => format!(" (by CPU time {:.4})", bc / ac),
                _ => String::new(),
            }
        );
        wall.push((a.0, b.0));
        if let (Some(ac), Some(bc)) = (a.1, b.1) {
            cpu.push((ac, bc));
        }
    }
    Ok(Outcome::Pairs { wall, cpu })
}

/// The spread of the A and B figures and of the per-pair ratios.
pub(super) struct Measured {
    pub(super) a: Spread,
    pub(super) b: Spread,
    pub(super) ratio: Spread,
}

pub(super) fn measured(pairs: &[(f64, f64)]) -> Option<Measured> {
    Some(Measured {
        a: Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>())?,
        b: Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>())?,
        ratio: ratio_of_pairs(pairs)?,
    })
}

/// Scales a fixture's size so that an unprofiled run takes about `seconds`, from one
/// calibration run of `probe` units that took `probe_secs`.
pub(super) fn scaled(probe: u64, probe_secs: f64, seconds: f64, min: u64) -> u64 {
    ((probe as f64 * seconds / probe_secs.max(1e-6)).round() as u64).max(min)
}
