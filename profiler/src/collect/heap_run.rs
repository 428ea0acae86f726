//! The heap profile's part of a run: setting up the interposer for a launched command,
//! reading the allocation sites (the kernel's and the interposer's) during and at the
//! end of the window, and what the profile collected.

use std::collections::HashMap;
use std::ffi::OsString;

use anyhow::Result;
use profiler_common::{HeapLive, HeapLiveKey, HeapSiteKey, HeapSiteValue};

use crate::collect::gate;
use crate::collect::heap_probes::HeapProbes;
use crate::collect::preload::Preload;
use crate::collect::probes::Probes;
use crate::collect::samples::Collector;
use crate::config::{Config, HeapVia};

/// What the heap profile collected.
pub struct HeapRun {
    /// What was probed.
    pub probes: HeapProbes,
    /// Native allocations and frees by site, summed over CPUs.
    pub sites: Vec<(HeapSiteKey, HeapSiteValue)>,
    /// Native blocks allocated in the window and live at its end, as the kernel tracked
    /// them.
    pub live: Vec<(HeapLiveKey, HeapLive)>,
    /// Objects and bytes in use at the end by the interposer's sites (its allocations
    /// less its frees).
    pub interposed_in_use: HashMap<HeapSiteKey, (u64, u64)>,
    /// Bytes in use (allocated in the window, not freed) per site, about once a second.
    pub timeline: Vec<HashMap<HeapSiteKey, i64>>,
    /// The `LD_PRELOAD` interposer a launched command counted its allocations with (its
    /// sites and live blocks are in `sites` and `live` with the kernel's).
    pub preload: Option<Preload>,
}

/// How often (in ticks) the heap sites' in-use bytes are read for the growth findings.
pub const SNAPSHOT_TICKS: u32 = 4;

/// Sets up the `LD_PRELOAD` interposer for the command `argv` when `--heap-via preload`
/// (the default) and the command can load it; `None` otherwise, or with one line when it
/// cannot be set up (its allocations are then traced by uprobes).
pub fn start_interposer(
    config: &Config,
    argv: &[OsString],
    heap: &mut HeapProbes,
    probes: &mut Probes,
) -> Option<Preload> {
    if config.heap_via != HeapVia::Preload || !argv.first().is_some_and(gate::takes_preload) {
        return None;
    }
    let started = Preload::create().and_then(|preload| {
        heap.attach_interposer(probes.ebpf_mut(), preload.library())?;
        Ok(preload)
    });
    match started {
        Ok(preload) => Some(preload),
        Err(err) => {
            crate::sys::console::eprint_line(&format!(
                "profiler: the heap interposer cannot be used ({err:#}): the command's \
                 allocations are traced by uprobes instead"
            ));
            None
        }
    }
}

/// What the heap profile collected, read at the end of the window.
///
/// # Errors
/// When the kernel's maps cannot be read.
pub fn finish(
    probes_of_heap: HeapProbes,
    probes: &Probes,
    preload: Option<Preload>,
    mut timeline: Vec<HashMap<HeapSiteKey, i64>>,
) -> Result<HeapRun> {
    let sites = sites(probes, preload.as_ref())?;
    timeline.push(in_use_by_site(&sites));
    let interposed_in_use = preload
        .as_ref()
        .map(|p| {
            p.sites()
                .into_iter()
                .map(|(key, v)| {
                    let objects = v.allocs.saturating_sub(v.frees);
                    (key, (objects, v.bytes.saturating_sub(v.freed_bytes)))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(HeapRun {
        probes: probes_of_heap,
        live: probes.read_heap_live()?,
        interposed_in_use,
        sites,
        timeline,
        preload,
    })
}

/// The native allocation sites: the kernel's, and the interposer's when it ran.
///
/// # Errors
/// When the kernel's site map cannot be read.
pub fn sites(
    probes: &Probes,
    preload: Option<&Preload>,
) -> Result<Vec<(HeapSiteKey, HeapSiteValue)>> {
    let mut sites = probes.read_heap_sites()?;
    if let Some(preload) = preload {
        sites.extend(preload.sites());
    }
    Ok(sites)
}

/// Tells the collector where each Go target's `runtime.systemstack` is.
pub fn sync_go_stack_roots(heap: &HeapProbes, collector: &mut Collector) {
    for (pid, start, end) in heap.go_stack_roots() {
        collector.set_go_stack_root(pid, start, end);
    }
}

/// Bytes in use (allocated, not freed) per site.
pub fn in_use_by_site(sites: &[(HeapSiteKey, HeapSiteValue)]) -> HashMap<HeapSiteKey, i64> {
    sites
        .iter()
        .map(|(key, value)| (*key, value.bytes.wrapping_sub(value.freed_bytes) as i64))
        .collect()
}
