//! The one lifecycle every profile kind's collector follows: started with the run's
//! targets, attached to processes as they come, given the unwound samples of its kinds,
//! ticked during the window, and finished into one [`RawProfile`]. The session
//! ([`crate::collect::session`]) only routes to collectors; what a kind traces, counts and
//! says about it lives in its collector.

use std::time::Duration;

use anyhow::Result;
use profiler_common::SampleHeader;
use profiler_model::ProgramLabels;

use crate::collect::probes::{Counters, Probes};
use crate::collect::raw_profile::RawProfile;
use crate::collect::samples::StackSampler;
use crate::collect::stacks::{StackHandle, UserStack};
use crate::config::{CallGraph, Config};
use crate::process::procmaps::ProcessTable;

/// One stack sample from the ring buffer, its stacks unwound and interned.
#[derive(Debug, Clone)]
pub struct Sample {
    /// What, where and whose, as the kernel program sent it.
    pub header: SampleHeader,
    /// The user stack.
    pub user: UserStack,
    /// The kernel stack (empty unless the kernel program took one).
    pub kernel: StackHandle,
    /// The labels the program had put on the work (Go's profiler labels).
    pub program: ProgramLabels,
}

/// A process a collector may want to attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A target named by `--pid`, before the window.
    Target(u32),
    /// A target that ran code the profiler had not seen yet (a new call site's stack).
    NewCode(u32),
    /// A process that executed a new program.
    Exec(u32),
}

/// What a collector may use at each tick of the window.
pub struct Tick<'a> {
    /// Ticks since the window opened, this one included.
    pub count: u32,
    /// The kernel programs.
    pub probes: &'a mut Probes,
    /// The unwinding stage, which some kinds tell where stacks end.
    pub sampler: &'a mut StackSampler,
    /// The run's configuration.
    pub config: &'a Config,
}

/// What every collector's [`Collector::finish`] may read of the run that ended.
pub struct RunEnd<'a> {
    /// The run's configuration.
    pub config: &'a Config,
    /// How long the window was open.
    pub duration: Duration,
    /// Online CPUs.
    pub cpus: usize,
    /// CPU-seconds the whole host was busy during the window, from `/proc/stat`.
    pub busy_cpu_seconds: f64,
    /// How user stacks were taken.
    pub call_graph: CallGraph,
    /// The kernel's monotonic clock (`bpf_ktime_get_ns`) when the window opened, right
    /// before the programs that time waits were attached.
    pub window_start_ktime_ns: u64,
    /// The kernel's monotonic clock when the window closed, to time the waits still in
    /// progress.
    pub window_end_ktime_ns: u64,
    /// The kernel programs' counters at the end.
    pub counters: &'a Counters,
    /// The processes' mappings and descriptors as last read.
    pub processes: &'a ProcessTable,
    /// A process whose records every collector leaves out: the profiler itself, when it
    /// is among the targets (see [`Config::is_own_process`]).
    pub excluded: Option<u32>,
}

impl RunEnd<'_> {
    /// Whether the records of `pid` belong in the profiles.
    pub fn keeps(&self, pid: u32) -> bool {
        self.excluded != Some(pid)
    }
}

/// A profile kind's collector.
pub trait Collector {
    /// Whether it takes the ring buffer's samples of this kind (a `sample_kind`).
    fn takes(&self, sample_kind: u32) -> bool;

    /// Attaches to a process: a target, or one that ran new code or a new program.
    fn attach(&mut self, _probes: &mut Probes, _seen: Seen) {}

    /// Counts one unwound sample of a kind it takes.
    fn take(&mut self, sample: &Sample);

    /// Once a tick of the window.
    fn tick(&mut self, _tick: &mut Tick<'_>) {}

    /// The window closed at `window_end_ktime_ns` (the kernel's monotonic clock): what
    /// must be read of the targets, or told to the kernel programs, before the samples still
    /// in flight are taken.
    fn close(&mut self, _probes: &mut Probes, _window_end_ktime_ns: u64) {}

    /// After the window, with the kernel programs stopped and every sample taken: reads
    /// what the kernel aggregated and hands on the raw profile.
    ///
    /// # Errors
    /// When the kernel's maps cannot be read.
    fn finish(self: Box<Self>, probes: &mut Probes, run: &RunEnd<'_>) -> Result<RawProfile>;
}
