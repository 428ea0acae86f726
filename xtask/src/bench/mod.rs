//! `cargo xtask bench`: measure the profiler against the same work unprofiled and
//! against peers (perf, bpftrace, strace) in one run, and write BENCHMARKS.md.
//!
//! The rows, in order: CPU sampling overhead, syscall-tracing overhead, blocking-profile
//! overhead, sample accuracy, the profiler's own cost, end-of-run latency, scale,
//! unwinding success on code without frame pointers, goroutine-tracing overhead, named
//! frames, the heap profile's cost, a whole-host run under attack, and the kernels side by
//! side (the last boots Debian's 6.1 and 6.12 under qemu), the off-CPU profile's cost
//! per context switch, a busy Go service's CPU per request, and the CPython walk's cost
//! per sample beside py-spy's.
//! Each row returns a [`report::Section`]; a row that fails to run is recorded as failed
//! and makes the bench exit non-zero after the report is written, while a missed goal is
//! only reported. Benchmarks assert nothing and are never part of `cargo xtask test`.

mod accuracy;
mod cost;
mod fixtures;
mod go_service;
mod goroutines;
mod heap;
mod hostile;
mod kernels;
mod names;
mod offcpu;
mod offcpu_go;
mod offcpu_host;
mod overhead;
mod parse;
mod peers;
mod python;
mod report;
mod runner;
mod stacks;
mod stats;
mod unwind;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::util;
use crate::{build_cmd, util::host_target_dir};
use fixtures::Fixtures;
use peers::Peers;
use report::{Machine, Report, Section};

/// Flags of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Paired repetitions per measurement [default: 5, or 3 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100))]
    reps: Option<u64>,
    /// 3 repetitions and shorter workloads, for iterating on the bench (about 4 minutes
    /// instead of 15).
    #[arg(long)]
    quick: bool,
    /// Run only these rows (comma-separated): cpu, syscalls, block, accuracy, cost,
    /// latency, scale, unwind, goroutines, names, heap, hostile, kernels, offcpu, goservice,
    /// python.
    /// The report then holds
    /// only those rows.
    #[arg(long, value_delimiter = ',', value_parser = ROW_IDS)]
    only: Vec<String>,
    /// Bench this profiler binary instead of building target/release/profiler (e.g. an
    /// older build to compare with, or while the tree does not build).
    #[arg(long, value_name = "PATH")]
    profiler: Option<PathBuf>,
    /// Also bench this profiler binary (e.g. the previous build) in rows 2, 3 and 9, with the same
    /// flags and the same workload, beside the benched one in the same run: a change's
    /// I/O cost then shows on the same machine under the same load.
    #[arg(long, value_name = "PATH")]
    baseline_profiler: Option<PathBuf>,
}

/// Row ids for `--only`, in bench order.
const ROW_IDS: [&str; 16] = [
    "cpu",
    "syscalls",
    "block",
    "accuracy",
    "cost",
    "latency",
    "scale",
    "unwind",
    "goroutines",
    "names",
    "heap",
    "hostile",
    "kernels",
    "offcpu",
    "goservice",
    "python",
];

/// Durations and counts of one bench run; `--quick` shortens them all.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub reps: usize,
    /// Time a background profiler or perf gets to attach before the fixture starts.
    pub settle: Duration,
    /// Unprofiled run time of the CPU-bound fixture (row 1).
    pub cpu_work_secs: f64,
    /// Unprofiled run time of the pread fixture (row 2).
    pub pread_secs: f64,
    /// Unprofiled run time of the contention fixture (row 3).
    pub contention_secs: f64,
    /// Each accuracy run (row 4), and each unwinding run (row 8).
    pub accuracy_secs: f64,
    /// The profiler's cost window (row 5).
    pub cost_secs: u64,
    /// Runs per size for the end-of-run latency (row 6).
    pub latency_reps: usize,
    /// Fixture run time for about 10k and 100k distinct stacks (row 6).
    pub stacks_10k_secs: f64,
    pub stacks_100k_secs: f64,
    /// Each scale run (row 7).
    pub scale_secs: f64,
    /// Each whole-host run of the named-frames row (row 10).
    pub names_secs: u64,
}

impl Plan {
    fn new(quick: bool, reps: Option<u64>) -> Plan {
        let reps = reps.map_or(if quick { 3 } else { 5 }, |r| r as usize);
        if quick {
            Plan {
                quick,
                reps,
                settle: Duration::from_millis(1500),
                cpu_work_secs: 0.7,
                pread_secs: 0.4,
                contention_secs: 0.5,
                accuracy_secs: 2.0,
                cost_secs: 10,
                latency_reps: 1,
                stacks_10k_secs: 3.0,
                stacks_100k_secs: 5.0,
                scale_secs: 2.0,
                names_secs: 5,
            }
        } else {
            Plan {
                quick,
                reps,
                settle: Duration::from_millis(1500),
                cpu_work_secs: 2.0,
                pread_secs: 1.0,
                contention_secs: 1.0,
                accuracy_secs: 5.0,
                cost_secs: 30,
                latency_reps: reps.min(3),
                stacks_10k_secs: 4.0,
                stacks_100k_secs: 10.0,
                scale_secs: 4.0,
                names_secs: 10,
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} paired repetitions; CPU fixture {:.1} s, pread fixture {:.1} s, contention \
             fixture {:.1} s per unprofiled run; accuracy runs {:.0} s; cost window {} s; \
             {} latency run(s) per size; scale runs {:.0} s{}",
            self.reps,
            self.cpu_work_secs,
            self.pread_secs,
            self.contention_secs,
            self.accuracy_secs,
            self.cost_secs,
            self.latency_reps,
            self.scale_secs,
            if self.quick { " (--quick)" } else { "" }
        )
    }
}

/// What every row needs.
pub struct Ctx {
    pub plan: Plan,
    /// The release `profiler` binary.
    pub profiler: PathBuf,
    /// Another profiler binary row 2 benches beside it (`--baseline-profiler`).
    pub baseline_profiler: Option<PathBuf>,
    pub fixtures: Fixtures,
    pub peers: Peers,
    /// Scratch space for logs and outputs (target/bench/run), wiped at the start.
    pub scratch: PathBuf,
}

type RowFn = fn(&Ctx) -> Result<Section>;

/// (id, title, function) in bench order.
const ROWS: [(&str, &str, RowFn); 16] = [
    ("cpu", "1. CPU sampling overhead", overhead::cpu_sampling),
    (
        "syscalls",
        "2. Syscall-tracing overhead (I/O profile)",
        overhead::syscalls,
    ),
    ("block", "3. Blocking-profile overhead", overhead::blocking),
    ("accuracy", "4. Sample accuracy", accuracy::accuracy),
    ("cost", "5. The profiler's own cost", cost::own_cost),
    ("latency", "6. End-of-run latency", stacks::latency),
    ("scale", "7. Scale", stacks::scale),
    (
        "unwind",
        "8. Unwinding success without frame pointers",
        unwind::unwinding,
    ),
    (
        "goroutines",
        "9. Goroutine-tracing overhead (Go programs)",
        goroutines::goroutine_tracing,
    ),
    ("names", "10. Named frames", names::names),
    ("heap", "11. Heap-profile cost", heap::heap),
    (
        "hostile",
        "12. A whole-host run under attack",
        hostile::hostile,
    ),
    (
        "kernels",
        "13. Kernels side by side: kernel program and uprobe costs",
        kernels::kernels,
    ),
    (
        "offcpu",
        "14. Off-CPU profile: cost per context switch",
        offcpu::offcpu,
    ),
    (
        "goservice",
        "15. A busy Go net/http service: CPU per request under each profile set",
        go_service::go_service,
    ),
    (
        "python",
        "16. CPython frames: the walk's cost per sample, beside py-spy",
        python::python,
    ),
];

/// The title of a row, for the rows' own sections.
pub fn title(id: &str) -> &'static str {
    ROWS.iter()
        .find(|(row, _, _)| *row == id)
        .map_or("?", |(_, title, _)| title)
}

/// `cargo xtask bench`.
pub fn bench(args: &BenchArgs) -> Result<()> {
    if !util::is_root() {
        bail!(
            "the bench loads eBPF programs, runs perf and bpftrace system-wide and sets a \
             sysctl: run it as root (e.g. `sudo -E cargo xtask bench`)"
        );
    }
    let load_before = report::loadavg();
    let plan = Plan::new(args.quick, args.reps);
    let command = reproduce_command(args);
    println!("xtask: bench: {}", plan.describe());

    let profiler = match &args.profiler {
        Some(path) if path.is_file() => path.canonicalize()?,
        Some(path) => bail!("--profiler {}: no such file", path.display()),
        None => build_cmd::build(true)?,
    };
    let baseline_profiler = match &args.baseline_profiler {
        Some(path) if path.is_file() => Some(path.canonicalize()?),
        Some(path) => bail!(
            "--baseline-profiler {}: no such file; give the path of a profiler binary",
            path.display()
        ),
        None => None,
    };
    let peers = peers::prepare()?;
    let bench_dir = host_target_dir().join("bench");
    let fixtures = Fixtures::build(&bench_dir.join("bin"))?;
    let scratch = bench_dir.join("run");
    if scratch.exists() {
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let tools = vec![
        ("perf".to_string(), peers.perf.describe()),
        ("bpftrace".to_string(), peers.bpftrace.describe()),
        ("strace".to_string(), peers.strace.describe()),
    ];
    let ctx = Ctx {
        plan,
        profiler,
        baseline_profiler,
        fixtures,
        peers,
        scratch,
    };

    runner::catch_ctrl_c();
    let stats_guard = BpfStats::remember()?;
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for (id, title, row) in ROWS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == id) {
            continue;
        }
        println!("xtask: bench: == {title}");
        // The accounting costs every BPF program two clock reads, which would inflate the
        // overhead rows; only the rows that report kernel run time get it.
        stats_guard.set(STATS_ROWS.contains(&id))?;
        match row(&ctx) {
            Ok(section) => {
                for goal in &section.goals {
                    println!(
                        "xtask: bench: {title}: {}: {} ({:?})",
                        goal.goal, goal.measured, goal.status
                    );
                }
                sections.push(section);
            }
            Err(err) => {
                // Ctrl-C stops the bench without a half-finished report.
                runner::check_interrupted()?;
                println!("xtask: bench: {title} FAILED: {err:#}");
                sections.push(Section::failed(title, &err));
                failed.push(title);
            }
        }
    }
    drop(stats_guard);

    let report = Report {
        machine: Machine::probe(),
        command,
        settings: ctx.plan.describe(),
        load_before,
        tools,
        sections,
    };
    let path = report.write()?;
    println!("xtask: bench: wrote {}", path.display());
    if !failed.is_empty() {
        bail!(
            "{} row(s) failed to run: {} (see {})",
            failed.len(),
            failed.join(", "),
            path.display()
        );
    }
    Ok(())
}

/// The command line that reproduces this run's figures.
fn reproduce_command(args: &BenchArgs) -> String {
    let mut command = "cargo xtask bench".to_string();
    if args.quick {
        command.push_str(" --quick");
    }
    if let Some(reps) = args.reps {
        command.push_str(&format!(" --reps {reps}"));
    }
    if !args.only.is_empty() {
        command.push_str(&format!(" --only {}", args.only.join(",")));
    }
    if let Some(path) = &args.profiler {
        command.push_str(&format!(" --profiler {}", path.display()));
    }
    if let Some(path) = &args.baseline_profiler {
        command.push_str(&format!(" --baseline-profiler {}", path.display()));
    }
    command
}

/// Switches `kernel.bpf_stats_enabled` per row (the profiler reports its kernel programs'
/// run time only when it is on) and puts the previous value back when dropped, which also
/// happens when a row fails or Ctrl-C stops the bench.
struct BpfStats {
    previous: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// The rows that report the kernel programs' run time, and so need
/// `kernel.bpf_stats_enabled`.
const STATS_ROWS: [&str; 5] = ["cost", "latency", "scale", "goroutines", "python"];

impl BpfStats {
    /// Remembers the current value, to put back when dropped.
    fn remember() -> Result<BpfStats> {
        let previous = match fs::read_to_string(BPF_STATS) {
            Ok(value) => Some(value.trim().to_string()),
            Err(err) => {
                println!(
                    "xtask: bench: cannot read {BPF_STATS} ({err}); kernel program run \
                     times will be unknown"
                );
                None
            }
        };
        Ok(BpfStats { previous })
    }

    /// Turns the accounting on or off for the next row.
    fn set(&self, on: bool) -> Result<()> {
        if self.previous.is_none() {
            return Ok(());
        }
        let value = if on { "1" } else { "0" };
        fs::write(BPF_STATS, value).with_context(|| format!("cannot write {value} to {BPF_STATS}"))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            match fs::write(BPF_STATS, previous) {
                Ok(()) => println!("xtask: bench: kernel.bpf_stats_enabled restored to {previous}"),
                Err(err) => eprintln!(
                    "xtask: bench: warning: could not restore {BPF_STATS} to {previous}: {err}"
                ),
            }
        }
    }
}
