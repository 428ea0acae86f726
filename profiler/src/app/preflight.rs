//! Checks made before anything is loaded, each failing with what to do about it.

use std::fs;
use std::path::Path;

use anyhow::{Context, Error, Result, bail};
use aya::Btf;

use crate::collect::kernel_features::{self, KernelFeatures};
use crate::collect::kernel_probe;
use crate::config::{CallGraph, Config};
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

/// What the kernel check found: the features, and a line for each requested profile that
/// this kernel cannot collect.
pub struct KernelCheck {
    /// What the running kernel has.
    pub features: KernelFeatures,
    /// One line per requested profile that is not collected.
    pub refused: Vec<String>,
    /// The kernel's BTF, read once for the check and the loader.
    pub btf: Option<Btf>,
}

impl KernelCheck {
    /// The summary's lines about the kernel: the refused profiles, or what it lacks.
    pub fn summary_lines(&self) -> Vec<String> {
        if self.refused.is_empty() {
            vec![self.features.to_string()]
        } else {
            self.refused.clone()
        }
    }
}

/// Asks the running kernel for what the profiler's programs use, before anything is
/// loaded, and keeps the requested profiles it can collect.
///
/// # Errors
/// One line when nothing requested can run on this kernel.
pub fn check_kernel(config: &Config) -> Result<(Config, KernelCheck)> {
    let asked = std::time::Instant::now();
    let (features, btf) = kernel_probe::probe(&crate::collect::probes::btf_path());
    log::debug!("{features} (asked in {:?})", asked.elapsed());
    let frame_pointers = config.call_graph == CallGraph::Fp;
    let decision =
        kernel_features::decide(&features, config.profiles, frame_pointers).map_err(Error::msg)?;
    let config = Config {
        profiles: decision.profiles,
        ..config.clone()
    };
    let check = KernelCheck {
        features,
        refused: decision.refused,
        btf,
    };
    Ok((config, check))
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
