//! The heap profile's collector: its probes on the allocators of every target, the
//! interposer of a launched command, the allocation sites (the kernel's and the
//! interposer's) read during and at the end of the window, and the sampled stacks.

use std::collections::HashMap;
use std::ffi::OsString;

use anyhow::Result;
use profiler_common::{HeapLive, HeapLiveKey, HeapSiteKey, HeapSiteValue, sample_kind};
use tokio::process::Child;

use crate::collect::collector::{Collector, RunEnd, Sample, Seen, Tick};
use crate::collect::gate;
use crate::collect::go_heap::{GoAllocStack, GoHeap};
use crate::collect::heap_probes::HeapProbes;
use crate::collect::heap_profile;
use crate::collect::preload::Preload;
use crate::collect::probes::Probes;
use crate::collect::raw_profile::{RawProfile, SiteStacks};
use crate::collect::samples::StackSampler;
use crate::collect::start_command;
use crate::config::{Config, HeapVia};

/// Counts allocations and frees of every target, and the stacks sampled at their sites.
pub struct HeapCollector {
    probes: HeapProbes,
    /// The `LD_PRELOAD` interposer of a launched command, when it counts its allocations.
    preload: Option<Preload>,
    /// The launched command.
    command: Option<u32>,
    /// Bytes in use per site, about once a second.
    timeline: Vec<HashMap<HeapSiteKey, i64>>,
    /// Stack samples of native allocation sites: how often each stack was seen at each.
    stacks: SiteStacks<HeapSiteKey>,
    /// The allocations the Go runtime sampled.
    go: GoHeap,
}

impl HeapCollector {
    /// Loads the heap programs.
    ///
    /// # Errors
    /// When the kernel refuses them.
    pub fn load(probes: &mut Probes) -> Result<Self> {
        Ok(Self {
            probes: HeapProbes::load(probes.ebpf_mut())?,
            preload: None,
            command: None,
            timeline: Vec::new(),
            stacks: SiteStacks::default(),
            go: GoHeap::default(),
        })
    }

    /// Launches the command `argv` as a target whose allocations are counted from its
    /// first instruction: by the interposer when it can be used, else by probes placed
    /// while it waits before executing.
    ///
    /// # Errors
    /// When the command cannot be started.
    pub fn spawn(
        &mut self,
        probes: &mut Probes,
        config: &Config,
        argv: &[OsString],
        sampler: &mut StackSampler,
    ) -> Result<Child> {
        self.preload = start_interposer(config, argv, &mut self.probes, probes);
        let child = start_command::spawn_followed(
            probes,
            argv,
            config.run_as_root,
            Some(&mut self.probes),
            self.preload.as_ref(),
        )?;
        self.command = child.id();
        self.sync_go_stack_roots(sampler);
        if let Some(preload) = &self.preload {
            preload.note_pids(self.command);
        }
        Ok(child)
    }

    /// Tells the unwinding stage where each Go target's `runtime.systemstack` is.
    fn sync_go_stack_roots(&self, sampler: &mut StackSampler) {
        for (pid, start, end) in self.probes.go_stack_roots() {
            sampler.set_go_stack_root(pid, start, end);
        }
    }
}

impl Collector for HeapCollector {
    fn takes(&self, kind: u32) -> bool {
        matches!(
            kind,
            sample_kind::HEAP
                | sample_kind::HEAP_PRELOAD
                | sample_kind::GO_ALLOC
                | sample_kind::GO_FREE
        )
    }

    fn attach(&mut self, probes: &mut Probes, seen: Seen) {
        if let Seen::Target(pid) = seen {
            self.probes.attach_process(probes.ebpf_mut(), pid);
        }
    }

    fn take(&mut self, sample: &Sample) {
        let header = &sample.header;
        match header.kind {
            sample_kind::GO_FREE => self.go.free(header.pid, header.heap.ptr),
            sample_kind::GO_ALLOC => {
                let stack = GoAllocStack {
                    pid: header.pid,
                    comm: header.comm,
                    user: sample.user,
                    program: sample.program.clone(),
                };
                self.go
                    .alloc(stack, header.heap.ptr, header.heap.size, header.heap.rate);
            }
            _ => {
                self.stacks
                    .count(header.heap.site, sample.user, &sample.program);
            }
        }
    }

    fn tick(&mut self, tick: &mut Tick<'_>) {
        let probes = &mut *tick.probes;
        if let Some(preload) = &self.preload {
            preload.note_pids(probes.targets());
        }
        // New processes (forked children) and new mappings (dlopen) get probes.
        for pid in probes.targets() {
            if !tick.config.is_own_process(pid) {
                self.probes.attach_process(probes.ebpf_mut(), pid);
            }
        }
        self.probes.refresh_go_rates();
        self.sync_go_stack_roots(tick.sampler);
        if tick.count.is_multiple_of(SNAPSHOT_TICKS)
            && let Ok(sites) = sites(probes, self.preload.as_ref())
        {
            self.timeline.push(in_use_by_site(&sites));
        }
    }

    fn close(&mut self, _probes: &mut Probes, _window_end_ktime_ns: u64) {
        self.probes.refresh_go_rates();
    }

    fn finish(self: Box<Self>, probes: &mut Probes, run: &RunEnd<'_>) -> Result<RawProfile> {
        if let (Some(preload), Some(pid)) = (&self.preload, self.command) {
            // Children that lived between two ticks were seen forking.
            preload.note_pids(run.processes.descendants(pid));
            preload.note_pids(probes.targets());
        }
        let this = *self;
        let mut heap = finish(this.probes, probes, this.preload, this.timeline)?;
        heap.sites.retain(|(site, _)| run.keeps(site.pid));
        heap.live.retain(|(block, _)| run.keeps(block.pid));
        heap.interposed_in_use.retain(|site, _| run.keeps(site.pid));
        let mut stacks = this.stacks;
        stacks.retain(|site| run.keeps(site.pid));
        Ok(heap_profile::raw(&heap, &stacks, &this.go, run))
    }
}

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
const SNAPSHOT_TICKS: u32 = 4;

/// Sets up the `LD_PRELOAD` interposer for the command `argv` when `--heap-via preload`
/// (the default) and the command can load it; `None` otherwise, or with one line when it
/// cannot be set up (its allocations are then traced by uprobes).
fn start_interposer(
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
fn finish(
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
fn sites(probes: &Probes, preload: Option<&Preload>) -> Result<Vec<(HeapSiteKey, HeapSiteValue)>> {
    let mut sites = probes.read_heap_sites()?;
    if let Some(preload) = preload {
        sites.extend(preload.sites());
    }
    Ok(sites)
}

/// Bytes in use (allocated, not freed) per site.
fn in_use_by_site(sites: &[(HeapSiteKey, HeapSiteValue)]) -> HashMap<HeapSiteKey, i64> {
    sites
        .iter()
        .map(|(key, value)| (*key, value.bytes.wrapping_sub(value.freed_bytes) as i64))
        .collect()
}
