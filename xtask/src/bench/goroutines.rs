//! Row 9: what tracing goroutine waits costs a Go program that parks about 100,000 times a
//! second: the same ping-pong unprofiled (A), under the profiler with goroutine tracing
//! (`--profiles goroutines`), and under the blocking profile without it (`--profiles
//! block`); and the kernel programs' own run time per probe hit (`kernel.bpf_stats_enabled`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::parse::{self, need_field};
use super::report::{self, Section, Table};
use super::runner::{self, Observer, Workdir};
use super::stats::{Spread, ratio_of_pairs};
use super::{Ctx, title};
use crate::util::{self, workspace_root};

/// Hand-offs per second the fixture is calibrated to (each parks one goroutine and
/// readies the other: two probe hits).
const TARGET_HANDOFFS_PER_SEC: f64 = 100_000.0;

/// The Go tool to build the fixture with: the newest `cargo xtask setup --for-tests`
/// installed, else `go` on PATH.
pub(super) fn go_tool() -> PathBuf {
    let newest = workspace_root().join("target/go-toolchains/1.27.3/go/bin/go");
    if newest.is_file() {
        newest
    } else {
        PathBuf::from("go")
    }
}

pub(super) fn build_fixture(bin_dir: &Path) -> Result<PathBuf> {
    build_go_fixture(bin_dir, "go_block")
}

/// Builds `tests/fixtures/NAME.go` with [`go_tool`] into `bin_dir`.
pub(super) fn build_go_fixture(bin_dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(bin_dir)?;
    let out = bin_dir.join(name);
    let mut cmd = Command::new(go_tool());
    cmd.arg("build")
        .arg("-o")
        .arg(&out)
        .arg(workspace_root().join(format!("tests/fixtures/{name}.go")))
        // Outside the scratch directory, which every bench run wipes.
        .env(
            "GOCACHE",
            crate::util::host_target_dir().join("bench/go-cache"),
        )
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    util::run(&mut cmd)
        .with_context(|| format!("building the Go fixture {name} (is Go installed?)"))?;
    Ok(out)
}

/// `(hand-offs, elapsed seconds)` from the fixture's output.
pub(super) fn handoffs(out: &str) -> Result<(f64, f64)> {
    Ok((
        need_field(out, "rounds", "go_block pingpong")?,
        need_field(out, "elapsed_ns", "go_block pingpong")? / 1e9,
    ))
}

/// Row 9.
pub fn goroutine_tracing(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "goroutines")?;
    let fixture = build_fixture(&ctx.scratch.join("go-bin"))?;
    let secs = if ctx.plan.quick { 1.0 } else { 2.0 };
    let result = dir.logs.join("result.txt");
    let argv = |spin_ns: u64| -> Vec<OsString> {
        vec![
            fixture.clone().into_os_string(),
            "pingpong".into(),
            format!("{secs}").into(),
            result.clone().into_os_string(),
            spin_ns.to_string().into(),
        ]
    };
    // Calibrate the spin between hand-offs to about TARGET_HANDOFFS_PER_SEC.
    let probe_spin = 5_000;
    let (n, s) = handoffs(&runner::unobserved(&argv(probe_spin), &dir)?)?;
    let per_handoff_ns = s * 1e9 / n;
    let spin = (1e9 / TARGET_HANDOFFS_PER_SEC - (per_handoff_ns - probe_spin as f64))
        .max(0.0)
        .round() as u64;
    let fixture_argv = argv(spin);
    let mut section = Section::new(
        title("goroutines"),
        format!(
            "`go_block pingpong {secs} RESULT {spin}` (built by {}): two goroutines hand a \
             token back and forth on unbuffered channels, spinning {spin} ns before each \
             hand-off (calibrated to about {TARGET_HANDOFFS_PER_SEC:.0} hand-offs per second \
             unprofiled, each parking one goroutine in runtime.gopark and readying the other \
             through runtime.ready); the fixture times its hand-offs itself. A: unprofiled; \
             B: launched by `profiler --profiles goroutines` (uprobes on the Go runtime) or \
             `profiler --profiles block` (futex waits only: no goroutine tracing). The \
             kernel cost per probe hit is the goroutine run's kernel program run time over \
             its run count (`kernel.bpf_stats_enabled=1`; the uprobe trap itself is not in \
             it, the slowdown per hand-off is).",
            go_tool().display()
        ),
    );
    let mut table = Table::new(&[
        "Observer",
        "A: unprofiled, ns per hand-off",
        "B: profiled, ns per hand-off",
        "Slowdown: median of pair ratios (min … max)",
        "Extra ns per hand-off (median)",
        "Kernel programs: ns per run (runs)",
    ]);
    for profiles in ["goroutines", "block"] {
        let label = format!("profiler --profiles {profiles}");
        let observer = Observer::Wrap {
            argv: vec![
                ctx.profiler.clone().into_os_string(),
                "--profiles".into(),
                profiles.into(),
                "--format".into(),
                "pprof".into(),
                "-o".into(),
                dir.out.clone().into_os_string(),
                "--".into(),
            ],
        };
        let mut pairs = Vec::new();
        let mut costs = Vec::new();
        for rep in 1..=ctx.plan.reps {
            let (an, asecs) = handoffs(&runner::unobserved(&fixture_argv, &dir)?)?;
            let out = runner::observed(&observer, &fixture_argv, &dir)?;
            let (bn, bsecs) = handoffs(&out)?;
            let (a, b) = (asecs * 1e9 / an, bsecs * 1e9 / bn);
            println!(
                "xtask: bench: {label}: pair {rep}/{}: A {a:.0} ns, B {b:.0} ns per hand-off, \
                 B/A {:.3}",
                ctx.plan.reps,
                b / a
            );
            pairs.push((a, b));
            if let Some(cost) = parse::cost(&out)
                && let (Some(ms), Some(runs)) = (cost.run_ms, cost.runs)
                && runs > 0
            {
                costs.push((ms * 1e6 / runs as f64, runs));
            }
        }
        let a = Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).context("no pairs")?;
        let b = Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).context("no pairs")?;
        let ratio = ratio_of_pairs(&pairs).context("no pairs")?;
        let mut extra: Vec<f64> = pairs.iter().map(|(a, b)| b - a).collect();
        extra.sort_by(f64::total_cmp);
        let kernel = match costs.as_slice() {
            [] => "unknown (bpf stats off)".to_owned(),
            all => {
                // The median run's cost, with that run's count.
                let mut all = all.to_vec();
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (ns, runs) = all[all.len() / 2];
                format!("{ns:.0} ({runs} runs)")
            }
        };
        table.row(vec![
            format!("`{label}`"),
            report::spread(a, 0),
            report::spread(b, 0),
            report::overhead(ratio),
            format!("{:.0}", extra[extra.len() / 2]),
            kernel,
        ]);
    }
    section.tables.push(table);
    Ok(section)
}
