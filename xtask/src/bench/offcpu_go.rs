//! Row 14, Go part: the off-CPU profile's cost on a Go channel ping-pong with
//! `GOMAXPROCS=2`, where the runtime's threads park on futexes between hand-offs (the
//! goroutines row's fixture, `go_block pingpong`, with its spin calibrated the same way).
//!
//! The Go program cannot wait for an observer, so every observer launches it (`profiler
//! -- CMD`, `perf record -- CMD`) or watches its name (bpftrace); the fixture times its
//! hand-offs itself, so start-up is not in the figures.

use std::ffi::OsString;

use anyhow::{Context, Result};

use super::Ctx;
use super::goroutines::{build_fixture, go_tool, handoffs};
use super::report::{self, Section, Table};
use super::runner::{self, Observer, ObserverFailed, Ready, Workdir};
use super::stats::{Spread, ratio_of_pairs};

/// Hand-offs per second the spin is calibrated to, as in the goroutines row.
const TARGET_HANDOFFS_PER_SEC: f64 = 100_000.0;

/// Adds the Go table to `section`; returns the profiler's median B/A, if it ran.
pub(super) fn go_channels(
    ctx: &Ctx,
    dir: &Workdir,
    with_profiler: bool,
    section: &mut Section,
) -> Result<Option<f64>> {
    let fixture = build_fixture(&ctx.scratch.join("go-bin"))?;
    let secs = if ctx.plan.quick { 1.0 } else { 2.0 };
    let result = dir.logs.join("go-result.txt");
    let argv = |spin_ns: u64| -> Vec<OsString> {
        vec![
            "env".into(),
            "GOMAXPROCS=2".into(),
            fixture.clone().into_os_string(),
            "pingpong".into(),
            format!("{secs}").into(),
            result.clone().into_os_string(),
            spin_ns.to_string().into(),
        ]
    };
    let probe_spin = 5_000;
    let (n, s) = handoffs(&runner::unobserved(&argv(probe_spin), dir)?)?;
    let per_handoff_ns = s * 1e9 / n;
    let spin = (1e9 / TARGET_HANDOFFS_PER_SEC - (per_handoff_ns - probe_spin as f64))
        .max(0.0)
        .round() as u64;
    let fixture_argv = argv(spin);
    let switches = if ctx.peers.perf.ready() {
        switches_per_handoff(dir, &fixture_argv)
            .map_or_else(|err| format!("unknown ({err:#})"), |s| format!("{s:.2}"))
    } else {
        "unknown (no perf)".to_string()
    };

    let mut configs: Vec<(&str, &str, Observer, bool)> = Vec::new();
    if with_profiler {
        configs.push((
            "profiler",
            "--profiles offcpu -- CMD",
            Observer::Wrap {
                argv: vec![
                    ctx.profiler.clone().into_os_string(),
                    "--profiles".into(),
                    "offcpu".into(),
                    "-o".into(),
                    dir.out.clone().into_os_string(),
                    "--".into(),
                ],
            },
            true,
        ));
    }
    if ctx.peers.bpftrace.ready() {
        let program = "tracepoint:sched:sched_switch { \
                         if (comm == \"go_block\") { \
                           @start[tid] = nsecs; @state[tid] = args->prev_state; \
                         } \
                         $t = @start[args->next_pid]; \
                         if ($t) { \
                           @off[args->next_pid, @state[args->next_pid]] = sum(nsecs - $t); \
                           delete(@start[args->next_pid]); \
                         } \
                       }";
        configs.push((
            "bpftrace",
            "sched_switch, offcputime-like, comm filter",
            Observer::Background {
                argv: vec!["bpftrace".into(), "-e".into(), program.into()],
                ready: Ready::Line("Attaching", std::time::Duration::from_secs(1)),
            },
            false,
        ));
    }
    if ctx.peers.perf.ready() {
        configs.push((
            "perf record",
            "-e sched:sched_switch -g -- CMD",
            Observer::Wrap {
                argv: vec![
                    "perf".into(),
                    "record".into(),
                    "-q".into(),
                    "-e".into(),
                    "sched:sched_switch".into(),
                    "-g".into(),
                    "-o".into(),
                    dir.out.join("perf.data").into_os_string(),
                    "--".into(),
                ],
            },
            false,
        ));
    }

    section.method.push_str(&format!(
        "\n\nGo: `GOMAXPROCS=2 go_block pingpong {secs} RESULT {spin}` (built by {}): two \
         goroutines hand a token back and forth on unbuffered channels, spinning {spin} ns \
         before each hand-off (calibrated to about {TARGET_HANDOFFS_PER_SEC:.0} hand-offs \
         per second unprofiled), so the runtime's threads park and wake on futexes; \
         {switches} context switches per hand-off (`perf stat -e context-switches`, one \
         run). The profiler and perf launch it; bpftrace watches threads named go_block. \
         Figures are ns per hand-off.",
        go_tool().display()
    ));
    let mut table = Table::new(&[
        "Observer (Go ping-pong)",
        "Setting",
        "A: unobserved, ns/hand-off",
        "B: observed, ns/hand-off",
        "Slowdown: median of pair ratios (min … max)",
        "Extra ns per hand-off (median)",
    ]);
    let mut ours = None;
    for (who, setting, observer, is_profiler) in &configs {
        let label = format!("Go: {who} {setting}");
        let mut pairs = Vec::new();
        for rep in 1..=ctx.plan.reps {
            let (an, asecs) = handoffs(&runner::unobserved(&fixture_argv, dir)?)?;
            let out = match runner::observed(observer, &fixture_argv, dir) {
                Ok(out) => out,
                Err(err) if !is_profiler && err.downcast_ref::<ObserverFailed>().is_some() => {
                    println!("xtask: bench: {label}: skipped: {err:#}");
                    section
                        .notes
                        .push(format!("{label} failed to run: {err:#}"));
                    pairs.clear();
                    break;
                }
                Err(err) => return Err(err),
            };
            let (bn, bsecs) = handoffs(&out)?;
            let (a, b) = (asecs * 1e9 / an, bsecs * 1e9 / bn);
            println!(
                "xtask: bench: {label}: pair {rep}/{}: A {a:.0} ns, B {b:.0} ns per hand-off, \
                 B/A {:.3}",
                ctx.plan.reps,
                b / a
            );
            pairs.push((a, b));
        }
        if pairs.is_empty() {
            continue;
        }
        let a = Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).context("no pairs")?;
        let b = Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).context("no pairs")?;
        let ratio = ratio_of_pairs(&pairs).context("no pairs")?;
        let mut extra: Vec<f64> = pairs.iter().map(|(a, b)| b - a).collect();
        extra.sort_by(f64::total_cmp);
        table.row(vec![
            (*who).to_string(),
            format!("`{setting}`"),
            report::spread(a, 0),
            report::spread(b, 0),
            report::overhead(ratio),
            format!("{:.0}", extra[extra.len() / 2]),
        ]);
        if *is_profiler {
            ours = Some(ratio.median);
        }
    }
    section.tables.push(table);
    section.notes.push(format!(
        "Go: a hand-off is mostly the calibrated spin, with {switches} context switches \
         each, so a cost per switch shows here diluted by about the ratio of a hand-off's \
         time to a switch's: this table says whether a Go service parking at this rate \
         notices the profile, the pipe table what a switch costs."
    ));
    Ok(ours)
}

/// Context switches per hand-off of one run, counted by `perf stat`.
fn switches_per_handoff(dir: &Workdir, fixture: &[OsString]) -> Result<f64> {
    let counts = dir.logs.join("perf-stat.csv");
    let mut argv: Vec<OsString> = vec![
        "perf".into(),
        "stat".into(),
        "-x".into(),
        ",".into(),
        "-e".into(),
        "context-switches".into(),
        "-o".into(),
        counts.clone().into_os_string(),
        "--".into(),
    ];
    argv.extend(fixture.iter().cloned());
    let done = runner::run(
        &mut runner::command(&argv),
        &dir.logs,
        "perf-stat",
        runner::RUN_TIMEOUT,
    )?
    .ok()?;
    let (n, _) = handoffs(&done.stdout)?;
    let text = std::fs::read_to_string(&counts)
        .with_context(|| format!("cannot read {}", counts.display()))?;
    let switches: f64 = text
        .lines()
        .find(|l| l.contains("context-switches"))
        .and_then(|l| l.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no context-switches count in perf stat's output:\n{text}"))?;
    Ok(switches / n.max(1.0))
}
