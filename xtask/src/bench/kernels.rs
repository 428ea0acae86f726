//! Row 13: what profiling costs on each kernel our users run, side by side: the kernel
//! programs' time per CPU sample (`kernel.bpf_stats_enabled`) and what a uprobe costs
//! (the profiler's own start-up check: a bare trap; the heap probes' entry+return and
//! free), with what the kernel answered (push emulated, one hit a call).
//!
//! The same script runs on this machine's kernel and inside Debian's 6.1 and 6.12 booted
//! under qemu by `vm` (TCG: an emulated CPU, so guest times compare with each other, not
//! with the host's).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::parse;
use super::report::{Section, Table};
use super::{Ctx, title};
use crate::kernel_image::KernelName;
use crate::vm::{self, Boot, Ended};

/// The kernels booted in the emulator, besides this machine's own.
const GUEST_KERNELS: [&str; 2] = ["6.1", "6.12"];

/// CPU samples' window, and malloc+free rounds under the heap probes.
const CPU_SECONDS: u64 = 10;
const MALLOC_ROUNDS: u64 = 200_000;

/// A guest that has not finished its runs by then is killed.
const GUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The figures of one kernel.
struct Figures {
    release: String,
    cpu_ns_per_run: Option<f64>,
    cpu_runs: Option<u64>,
    samples: Option<u64>,
    trap_us: Option<f64>,
    alloc_us: Option<f64>,
    free_us: Option<f64>,
    uprobe_line: String,
    malloc_ns: Option<f64>,
    heap_counted: Option<u64>,
}

/// The shell script run on each kernel: writes `cpu.txt`, `heap.txt` and `release` into
/// `out`.
fn script(ctx: &Ctx, out: &Path) -> String {
    let mut s = String::from("set -u\n");
    let _ = writeln!(s, "echo 1 > /proc/sys/kernel/bpf_stats_enabled");
    let _ = writeln!(s, "cd /tmp");
    let _ = writeln!(s, "uname -r > '{}/release'", out.display());
    let _ = writeln!(
        s,
        "'{}' -F 99 --profiles cpu -o /tmp/kernels-cpu -- '{}' time {CPU_SECONDS} > '{}/cpu.txt' 2>&1",
        ctx.profiler.display(),
        ctx.fixtures.cpu.display(),
        out.display()
    );
    let _ = writeln!(
        s,
        "'{}' --profiles heap --heap-via uprobes -o /tmp/kernels-heap -- '{}' {MALLOC_ROUNDS} > '{}/heap.txt' 2>&1",
        ctx.profiler.display(),
        ctx.fixtures.malloc.display(),
        out.display()
    );
    let _ = writeln!(s, "echo done > '{}/done'", out.display());
    s
}

fn read(out: &Path) -> Result<Figures> {
    let text = |name: &str| {
        fs::read_to_string(out.join(name))
            .with_context(|| format!("no {} from this kernel's run", out.join(name).display()))
    };
    let cpu = text("cpu.txt")?;
    let heap = text("heap.txt")?;
    let cost = parse::cost(&cpu);
    let (run_ms, runs) = cost.map_or((None, None), |c| (c.run_ms, c.runs));
    let uprobe_line = heap
        .lines()
        .find(|l| l.starts_with("profiler cost:"))
        .and_then(|l| l.split_once("uprobes: "))
        .map_or_else(|| "not shown".to_string(), |(_, rest)| rest.to_string());
    Ok(Figures {
        release: text("release")?.trim().to_string(),
        cpu_ns_per_run: run_ms.zip(runs).map(|(ms, n)| ms * 1e6 / n.max(1) as f64),
        cpu_runs: runs,
        samples: parse::samples_recorded(&cpu),
        trap_us: number_after(&uprobe_line, "a uprobe trap costs "),
        alloc_us: number_after(&heap, "entry and return probes cost "),
        free_us: number_after(&heap, "a free's probe "),
        uprobe_line,
        malloc_ns: parse::field(&heap, "ns_per_iter"),
        heap_counted: number_after(&heap, "allocations: ").map(|n| n as u64),
    })
}

/// The number that follows `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn run_here(ctx: &Ctx, out: &Path) -> Result<Figures> {
    fs::create_dir_all(out)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(script(ctx, out))
        .status()
        .context("cannot run the kernel row's script here")?;
    if !status.success() {
        bail!("the kernel row's script failed here: {status}");
    }
    read(out)
}

fn run_in_guest(ctx: &Ctx, name: &str, out: &Path) -> Result<Figures> {
    let kernel: KernelName = name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let (_, image) = kernel.ensure_installed()?;
    fs::create_dir_all(out)?;
    let log = out.join("console.log");
    let boot = Boot {
        image: &image,
        writable: vec![out.to_path_buf()],
        command: script(ctx, out),
        log: &log,
        timeout: GUEST_TIMEOUT,
        cpus: 2,
        tcg_single_thread: false,
        show: |_| false,
    };
    match boot.run()? {
        Ended::TimedOut => bail!(
            "the {name} guest did not finish within {GUEST_TIMEOUT:?} (console: {})",
            log.display()
        ),
        Ended::Exited(_) if !out.join("done").exists() => bail!(
            "the {name} guest stopped before its runs ended (console: {})",
            log.display()
        ),
        Ended::Exited(_) => read(out),
    }
}

fn cell<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| v.to_string())
}

/// Row 13.
pub fn kernels(ctx: &Ctx) -> Result<Section> {
    vm::ensure_tools()?;
    let dir = ctx.scratch.join("kernels");
    let _ = fs::remove_dir_all(&dir);
    let mut section = Section::new(
        title("kernels"),
        format!(
            "On each kernel, the same two runs: `profiler -F 99 --profiles cpu` launching \
             `bench_cpu time {CPU_SECONDS}` with `kernel.bpf_stats_enabled=1` (the kernel \
             programs' run time over their runs, nearly all of them CPU samples), and \
             `profiler --profiles heap --heap-via uprobes` launching `bench_malloc \
             {MALLOC_ROUNDS}` (malloc(32)+free rounds timing themselves). The uprobe figures \
             are the profiler's own start-up measurements, as its summary prints them: a \
             bare uprobe trap (no program) on a function of its own that starts with \
             `push`, and the heap programs' entry+return and free probes. This machine's \
             kernel runs on its (virtual) CPU; Debian's 6.1 and 6.12 boot under qemu \
             without KVM (TCG, an emulated CPU, about 10-50x slower), so compare the guests \
             with each other, not with the host."
        ),
    );
    let mut rows: Vec<(String, String, Figures)> = Vec::new();
    match run_here(ctx, &dir.join("host")) {
        Ok(f) => rows.push(("this machine".into(), "KVM guest (native)".into(), f)),
        Err(err) => section
            .notes
            .push(format!("this machine's kernel: {err:#}")),
    }
    for name in GUEST_KERNELS {
        println!("xtask: bench: kernels: booting Debian's {name}");
        match run_in_guest(ctx, name, &dir.join(name)) {
            Ok(f) => rows.push((format!("Debian {name}"), "qemu TCG".into(), f)),
            Err(err) => section.notes.push(format!("Debian {name}: {err:#}")),
        }
    }
    if rows.is_empty() {
        bail!("no kernel's runs could be read");
    }
    let mut table = Table::new(&[
        "Kernel",
        "Release",
        "CPU",
        "Kernel programs, ns per run (runs; CPU samples)",
        "Bare uprobe trap, µs",
        "Heap probes: malloc entry+return / free, µs",
        "malloc+free under uprobes, ns",
        "Allocations counted",
    ]);
    for (kernel, cpu, f) in &rows {
        table.row(vec![
            kernel.clone(),
            f.release.clone(),
            cpu.clone(),
            format!(
                "{} ({}; {})",
                cell(f.cpu_ns_per_run.map(|ns| format!("{ns:.0}"))),
                cell(f.cpu_runs),
                cell(f.samples)
            ),
            cell(f.trap_us.map(|us| format!("{us:.2}"))),
            format!(
                "{} / {}",
                cell(f.alloc_us.map(|us| format!("{us:.2}"))),
                cell(f.free_us.map(|us| format!("{us:.2}")))
            ),
            cell(f.malloc_ns.map(|ns| format!("{ns:.0}"))),
            cell(f.heap_counted),
        ]);
    }
    section.tables.push(table);
    for (kernel, _, f) in &rows {
        section.notes.push(format!(
            "{kernel}: the summary said \"uprobes: {}\"",
            f.uprobe_line
        ));
    }
    section.notes.push(format!(
        "Allocations counted: `bench_malloc` makes {MALLOC_ROUNDS} malloc calls in its loop \
         plus 1000 warming up; the rest are the C library's own at start."
    ));
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_after_their_words() {
        let line = "this kernel emulates a probed `push` (one trap a hit), one hit a call \
                    (2000 of 2000); a uprobe trap costs 6.79 µs here";
        assert_eq!(number_after(line, "a uprobe trap costs "), Some(6.79));
        assert_eq!(
            number_after("allocations: 111005 native", "allocations: "),
            Some(111005.0)
        );
        assert_eq!(number_after("nothing", "allocations: "), None);
    }
}
