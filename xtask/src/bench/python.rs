//! Row 16: what reading CPython's frames at each sample costs. A Python program does a
//! fixed amount of work (`python_work.py`: recursion, json, hashing) unobserved (A) and
//! under each observer (B), in alternating pairs: the profiler's CPU profile at 999 Hz
//! with the Python walk and with `--no-python-frames`, and py-spy recording at the same
//! rate, pausing the program at each sample (its default) and not (`--nonblocking`). The
//! kernel programs' time per sample comes from `kernel.bpf_stats_enabled`, the walk's
//! own cost as the difference with it on and off; py-spy's own CPU is its process's,
//! the program's taken out.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{Context, Result};

use super::parse::{self, need_field};
use super::report::{self, Goal, Section, Status, Table};
use super::runner::{self, Workdir};
use super::stats::{Spread, median, ratio_of_pairs};
use super::{Ctx, title};
use crate::util::{which, workspace_root};

/// Samples per second of every observer.
const HZ: &str = "999";

/// What one observed run gave: the program's time, and the observer's own costs.
struct Observed {
    elapsed_s: f64,
    /// The kernel programs' time per recorded sample, ns (the profiler, with stats on).
    kernel_ns_per_sample: Option<f64>,
    /// The observer's own CPU seconds (py-spy: its process's, the program's left out).
    own_cpu_s: Option<f64>,
    /// The observer's own CPU per sample, ns (py-spy, from the samples it says it took).
    own_ns_per_sample: Option<f64>,
}

/// An observer of the program: how to run it, wrapped around the program's command.
struct Watcher {
    label: &'static str,
    argv: Vec<OsString>,
    py_spy: bool,
}

/// `(elapsed, cpu)` seconds from the program's output.
fn timing(out: &str) -> Result<(f64, f64)> {
    Ok((
        need_field(out, "elapsed_s", "python_work.py")?,
        need_field(out, "cpu_s", "python_work.py")?,
    ))
}

/// Row 16.
pub fn python(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "python")?;
    let python = which("python3").context("row 16 needs python3 (Debian's)")?;
    let script = workspace_root().join("xtask/src/bench/python_work.py");
    let argv = |rounds: u64| -> Vec<OsString> {
        vec![
            python.clone().into_os_string(),
            script.clone().into_os_string(),
            rounds.to_string().into(),
        ]
    };
    // Calibrate the rounds to the plan's CPU work time.
    let probe = 200;
    let (probe_s, _) = timing(&runner::unobserved(&argv(probe), &dir)?)?;
    let rounds = ((ctx.plan.cpu_work_secs / probe_s.max(1e-3)) * probe as f64).ceil() as u64;
    let program = argv(rounds);
    let profiler = |extra: &[&str]| -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![ctx.profiler.clone().into_os_string()];
        v.extend(extra.iter().map(OsString::from));
        v.extend(["-F", HZ, "--profiles", "cpu", "--format", "pprof", "-o"].map(OsString::from));
        v.push(dir.out.clone().into_os_string());
        v.push("--".into());
        v
    };
    let mut watchers = vec![
        Watcher {
            label: "profiler (Python walk)",
            argv: profiler(&[]),
            py_spy: false,
        },
        Watcher {
            label: "profiler --no-python-frames",
            argv: profiler(&["--no-python-frames"]),
            py_spy: false,
        },
    ];
    let py_spy = which("py-spy").or_else(|| install_py_spy(&ctx.scratch));
    if let Some(py_spy) = &py_spy {
        for (label, extra) in [
            ("py-spy record", None),
            ("py-spy record --nonblocking", Some("--nonblocking")),
        ] {
            let mut v: Vec<OsString> = vec![py_spy.clone().into_os_string(), "record".into()];
            v.extend(extra.map(OsString::from));
            v.extend(["-r", HZ, "-f", "raw", "-o"].map(OsString::from));
            v.push(dir.out.join("py-spy.txt").into_os_string());
            v.push("--".into());
            watchers.push(Watcher {
                label,
                argv: v,
                py_spy: true,
            });
        }
    }
    let mut section = Section::new(
        title("python"),
        format!(
            "`python3 python_work.py {rounds}` (Debian's CPython; recursion, json and \
             sha256 in Python functions, about {:.1} s unobserved), timed by itself. A: \
             unobserved; B: under each observer at {HZ} samples a second: the profiler's CPU \
             profile (`-F {HZ} --profiles cpu`) with the Python walk (up to 64 frames read in \
             the kernel at each sample) and with `--no-python-frames`; py-spy recording \
             (pausing the program at each sample, its default, and `--nonblocking`). Kernel \
             time per sample: the profiler's kernel programs' run time \
             (`kernel.bpf_stats_enabled=1`; the 16 KiB stack copy included) over its \
             recorded samples; the walk's own cost is the difference between the two \
             profiler rows. py-spy's own CPU: its process's CPU time less the program's.{}",
            ctx.plan.cpu_work_secs,
            if py_spy.is_none() {
                " py-spy was not found and could not be installed from PyPI: its rows are left out."
            } else {
                ""
            }
        ),
    );
    let mut table = Table::new(&[
        "Observer",
        "A: unobserved, s",
        "B: observed, s",
        "Slowdown: median of pair ratios (min … max)",
        "Kernel programs: ns per sample (median)",
        "Observer's own CPU, ms (median)",
        "Observer's own CPU per sample, ns (median)",
    ]);
    // Per watcher: the kernel programs' and the observer's own ns per sample.
    let mut per_sample = Vec::new();
    for watcher in &watchers {
        let mut pairs = Vec::new();
        let mut kernel = Vec::new();
        let mut own = Vec::new();
        let mut own_per_sample = Vec::new();
        for rep in 1..=ctx.plan.reps {
            let (a, _) = timing(&runner::unobserved(&program, &dir)?)?;
            let b = observe(watcher, &program, &dir)?;
            println!(
                "xtask: bench: {}: pair {rep}/{}: A {a:.3} s, B {:.3} s, B/A {:.3}",
                watcher.label,
                ctx.plan.reps,
                b.elapsed_s,
                b.elapsed_s / a
            );
            pairs.push((a, b.elapsed_s));
            kernel.extend(b.kernel_ns_per_sample);
            own.extend(b.own_cpu_s);
            own_per_sample.extend(b.own_ns_per_sample);
        }
        let a = Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).context("no pairs")?;
        let b = Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).context("no pairs")?;
        let kernel_median = median(&kernel);
        per_sample.push((kernel_median, median(&own_per_sample)));
        table.row(vec![
            format!("`{}`", watcher.label),
            report::spread(a, 3),
            report::spread(b, 3),
            report::overhead(ratio_of_pairs(&pairs).context("no pairs")?),
            kernel_median.map_or("—".to_owned(), |ns| format!("{ns:.0}")),
            median(&own).map_or("—".to_owned(), |s| format!("{:.0}", s * 1e3)),
            median(&own_per_sample).map_or("—".to_owned(), |ns| format!("{ns:.0}")),
        ]);
    }
    // The walk's kernel cost per sample against py-spy's own CPU per sample, blocking.
    let walk = match per_sample[..] {
        [(Some(on), _), (Some(off), _), ..] => Some((on, off)),
        _ => None,
    };
    let py_spy_ns = per_sample.get(2).and_then(|&(_, own)| own);
    let goal = "the Python walk's kernel cost per sample (with the walk less without) below \
                py-spy's own CPU per sample";
    section.goals.push(match (walk, py_spy_ns) {
        (Some((on, off)), Some(spy)) => Goal::new(
            goal,
            format!(
                "{:.0} ns ({on:.0} with the walk, {off:.0} without) vs py-spy {spy:.0} ns",
                on - off
            ),
            Status::from_bool(on - off < spy),
        ),
        _ => Goal::new(
            goal,
            "not measured (bpf stats off, or py-spy missing)",
            Status::NotMeasured,
        ),
    });
    section.tables.push(table);
    Ok(section)
}

/// Runs the program under `watcher` and reads what it cost.
fn observe(watcher: &Watcher, program: &[OsString], dir: &Workdir) -> Result<Observed> {
    dir.fresh_out()?;
    let mut full = watcher.argv.clone();
    full.extend(program.iter().cloned());
    let done = runner::run(
        &mut runner::command(&full),
        &dir.logs,
        "observed",
        Duration::from_secs(300),
    )?
    .ok()?;
    let (elapsed_s, cpu_s) = timing(&done.stdout)?;
    let kernel_ns_per_sample = parse::cost(&done.stdout)
        .and_then(|c| c.run_ms)
        .zip(parse::samples_recorded(&done.stdout).filter(|&n| n > 0))
        .map(|(ms, samples)| ms * 1e6 / samples as f64);
    // py-spy reaps the program, so its CPU time holds the program's too.
    let own_cpu_s = watcher
        .py_spy
        .then(|| (done.cpu.as_secs_f64() - cpu_s).max(0.0));
    // `py-spy> Wrote raw flamegraph data to '...'. Samples: 222 Errors: 0`
    let own_ns_per_sample = own_cpu_s
        .zip(py_spy_samples(&done.stdout).or(py_spy_samples(&done.stderr)))
        .filter(|&(_, n)| n > 0.0)
        .map(|(s, n)| s * 1e9 / n);
    Ok(Observed {
        elapsed_s,
        kernel_ns_per_sample,
        own_cpu_s,
        own_ns_per_sample,
    })
}

/// The samples py-spy says it took: `... Samples: 222 Errors: 0`.
fn py_spy_samples(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Samples:")?;
    words.next()?.parse().ok()
}

/// The py-spy release the row installs from PyPI when none is on PATH.
const PY_SPY: &str = "py-spy==0.4.3";

/// Installs [`PY_SPY`] with `pip install --target` beside the bench's scratch directory
/// (which every run wipes) and returns its binary; `None`, said, when that fails.
fn install_py_spy(scratch: &std::path::Path) -> Option<std::path::PathBuf> {
    let target = scratch.parent()?.join("py-spy");
    let binary = target.join("bin/py-spy");
    if binary.is_file() {
        return Some(binary);
    }
    println!(
        "xtask: bench: installing {PY_SPY} from PyPI into {}",
        target.display()
    );
    let installed = crate::go_bin::pip().and_then(|mut cmd| {
        cmd.args(["install", "--quiet", "--no-deps", "--target"])
            .arg(&target)
            .arg(PY_SPY);
        crate::util::run(&mut cmd)
    });
    match installed {
        Ok(_) if binary.is_file() => Some(binary),
        Ok(_) => {
            println!(
                "xtask: bench: {PY_SPY} installed, but {} is missing",
                binary.display()
            );
            None
        }
        Err(err) => {
            println!("xtask: bench: cannot install {PY_SPY}: {err:#}");
            None
        }
    }
}
