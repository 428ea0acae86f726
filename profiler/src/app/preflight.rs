//! Checks made before anything is loaded, each failing with what to do about it.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::output::OutputDir;

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails unless the process may load eBPF programs and open perf events.
///
/// # Errors
/// When neither root nor CAP_BPF and CAP_PERFMON are held.
pub fn check_privileges() -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_BPF) && has(CAP_PERFMON) {
        return Ok(());
    }
    bail!("profiling needs root or CAP_BPF+CAP_PERFMON: run with sudo")
}

/// Fails unless the kernel exposes BTF at `path`.
///
/// # Errors
/// When the file is missing.
pub fn check_btf(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    bail!(
        "this kernel has no BTF at {}: the profiler needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2021)",
        path.display()
    )
}

/// Fails unless every pid names a live process.
///
/// # Errors
/// On the first pid with no process.
pub fn check_pids(pids: &[u32]) -> Result<()> {
    for &pid in pids {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process with pid {pid}: check it with `ps -p {pid}`");
        }
    }
    Ok(())
}

/// Opens the output directory, creating it owned by the invoking user under sudo (one
/// that exists keeps its owner), and proves it writable with a file made as every output
/// file is.
///
/// # Errors
/// When the directory cannot be created, opened or written.
pub fn prepare_output_dir(dir: &Path) -> Result<OutputDir> {
    let advice = "choose another directory with -o";
    let out = OutputDir::create(dir)
        .with_context(|| format!("cannot use output directory {}: {advice}", dir.display()))?;
    let probe = ".profiler-write-test";
    out.write(probe, |_| Ok(())).with_context(|| {
        format!(
            "cannot write in output directory {}: {advice}",
            dir.display()
        )
    })?;
    let _ = out.remove(probe);
    Ok(out)
}
