//! One profiling run: load and attach, launch or find the targets, unwind and count the
//! stack samples as they arrive until the end of the window, then collect what the kernel
//! aggregated. The ring buffers are drained in `session/drain.rs`, and the kernel told
//! which processes run a language runtime in `session/runtimes.rs`.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use aya::Btf;
use aya::maps::{MapData, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};

use crate::collect::collector::{Collector, RunEnd, Seen, Tick};
use crate::collect::cpu::CpuCollector;
use crate::collect::cpustat::CpuTimes;
use crate::collect::futex::FutexCollector;
use crate::collect::goroutine_waits::GoroutineCollector;
use crate::collect::heap::HeapCollector;
use crate::collect::io::IoCollector;
use crate::collect::offcpu::OffCpuCollector;
use crate::collect::probes::{self, LoadOptions, Probes};
use crate::collect::raw_profile::RawProfile;
use crate::collect::ring_size;
use crate::collect::samples::{StackSampler, Unwinding};
use crate::collect::selfcost::KernelCost;
use crate::collect::start_command;
use crate::collect::status_line::{status_line, status_text};
pub use crate::collect::stop_reason::StopReason;
use crate::collect::tracefs;
use crate::collect::uprobe_check;
use crate::config::{CallGraph, Config, Target};
use crate::process::bpf_symbols::BpfSymbols;
use crate::process::descendants::{self, Limits, Tree};
use crate::process::jit_maps::JitMaps;
use crate::process::names::ProcessNames;
use crate::process::procmaps::ProcessTable;
use crate::sys::{console, fdlimit};

mod drain;
mod runtimes;

const TICK: Duration = Duration::from_millis(250);
/// How often the sample ring buffer is drained when no sample wakes the profiler earlier:
/// often, so that a short-lived process's mappings are read while it still lives.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// The longest a ring buffer (samples, process events) is drained at once during the
/// window: one flooded as fast as it is read must not hold the window open.
const DRAIN_BUDGET: Duration = Duration::from_millis(100);
/// How often live processes' mappings are re-read, to catch `dlopen` and late mappings.
const REFRESH_EVERY_TICKS: u32 = 16;

/// What a run collected, unresolved: symbolization happens afterwards, once.
pub struct RunOutcome {
    /// When sampling started.
    pub start: SystemTime,
    /// How long sampling ran.
    pub duration: Duration,
    /// Why it ended.
    pub stop: StopReason,
    /// Online CPUs.
    pub cpus: usize,
    /// What the kernel programs and maps cost during the run.
    pub kernel_cost: KernelCost,
    /// When the profiling window closed, to time the end of the run.
    pub window_end: Instant,
    /// How user stacks were taken.
    pub call_graph: CallGraph,
    /// Bytes of sample ring buffer the run had.
    pub ring_bytes: u32,
    /// Samples of every kind the kernel programs found no room for in it.
    pub ring_lost: u64,
    /// Every distinct stack of the samples, and how they were unwound.
    pub unwinding: Unwinding,
    /// Mapping snapshots of every sampled process.
    pub processes: ProcessTable,
    /// The names of the processes seen, which name their records (not their threads).
    pub process_names: ProcessNames,
    /// The processes already below the `--pid` targets when the run started, when looked
    /// for (not with `--pid-only`).
    pub descendants: Option<Tree>,
    /// The BPF programs loaded during the run (the profiler's own among them), which are
    /// gone from kallsyms by the time kernel frames are symbolized.
    pub bpf_symbols: BpfSymbols,
    /// Each collector's raw profile, in the order the collectors were started.
    pub profiles: Vec<RawProfile>,
    /// What asking the JVMs for perf maps gave (`--jit-maps`), one line each.
    pub jit_map_notes: Vec<String>,
}

/// Runs the profiler as `config` says, with the kernel's BTF when the kernel check read it.
///
/// # Errors
/// When a target cannot be found or started, or the kernel refuses the programs.
pub async fn run(config: &Config, btf: Option<Btf>) -> Result<RunOutcome> {
    fdlimit::raise();
    let (probes, cpus, ring_bytes) = load(config, btf)?;
    let mut session = Session {
        probes,
        collectors: Vec::new(),
        processes: ProcessTable::default(),
        names: ProcessNames::default(),
        sampler: StackSampler::new(config.python_frames),
        tree: None,
        jit_maps: config.jit_maps.then(JitMaps::default),
    };
    let heap = session.start_collectors(config)?;
    // SAFETY: the ring buffer owns its map fd and keeps it open until it is dropped, which is
    // when the AsyncFd is.
    let events = unsafe {
        AsyncFd::register_with_interest(session.probes.take_proc_events()?, Interest::READABLE)
    }
    .map_err(|err| anyhow::anyhow!("cannot poll the process-event ring buffer: {err}"))?;
    // SAFETY: as above, for the sample ring buffer.
    let samples = unsafe {
        AsyncFd::register_with_interest(session.probes.take_samples()?, Interest::READABLE)
    }
    .map_err(|err| anyhow::anyhow!("cannot poll the sample ring buffer: {err}"))?;
    let mut rings = Rings { events, samples };
    if config.profiles.io || config.profiles.block {
        session.probes.attach_syscalls()?;
    }
    let mut bpf_symbols = BpfSymbols::default();
    bpf_symbols.snapshot();
    // The window opens as CPU sampling starts and closes as it stops, so every tick is
    // in the window it is counted against (a launched command starts inside it).
    let start = SystemTime::now();
    let started = Instant::now();
    log::debug!("the window opens");
    let cpu_times_at_start = CpuTimes::now();
    let window_start_ktime_ns = crate::sys::clock::monotonic_ns();
    if config.profiles.block {
        // Waits counted from here (the programs were attached before the snapshot).
        session
            .probes
            .set_block_window(false, window_start_ktime_ns)?;
    }
    if config.profiles.cpu {
        session
            .probes
            .attach_cpu_sampling(&cpus, config.frequency)?;
    }
    // Here, not where they were loaded: time off CPU before the window is not in it (a
    // thread's budget came out 75 ms longer than the window when they were attached
    // before the snapshot above).
    if config.profiles.offcpu {
        session.probes.attach_offcpu()?;
    }
    let mut child = session.launch(config, heap)?;
    let command_pid = child.as_ref().and_then(Child::id);
    // Launching returns once the command executed: its name now is the program's.
    if let Some(pid) = command_pid {
        session.names.note_exec(pid);
    }
    let stop = session
        .window(config, &mut rings, &mut child, started)
        .await?;
    session.probes.stop_cpu_sampling();
    let duration = started.elapsed();
    let cpu_times = CpuTimes::now();
    let window_end_ktime_ns = crate::sys::clock::monotonic_ns();
    for collector in &mut session.collectors {
        collector.close(&mut session.probes, window_end_ktime_ns);
    }
    let mut kernel_cost = KernelCost::now();
    if config.profiles.heap || config.profiles.goroutines {
        kernel_cost.uprobes = Some(uprobe_check::running_kernel());
    }
    let busy_cpu_seconds = cpu_times.busy_seconds_since(&cpu_times_at_start);
    if config.profiles.offcpu {
        let switches = cpu_times
            .context_switches
            .saturating_sub(cpu_times_at_start.context_switches);
        kernel_cost.context_switches = Some((switches, duration));
    }
    // Before the programs are detached and unloaded, and with those loaded since the start.
    bpf_symbols.snapshot();
    session.drain_after_window(&mut rings, started, duration);
    if let (Some(pid), StopReason::Elapsed | StopReason::Signal(_)) = (command_pid, &stop) {
        console::eprint_line(&format!(
            "profiler: the command (pid {pid}) is still running; it was left alone"
        ));
    }
    let jit_map_notes = session
        .jit_maps
        .as_ref()
        .map(JitMaps::notes)
        .unwrap_or_default();
    let counters = session.probes.counters()?;
    let me = std::process::id();
    let end = RunEnd {
        config,
        duration,
        cpus: cpus.len(),
        busy_cpu_seconds,
        call_graph: config.call_graph,
        window_start_ktime_ns,
        window_end_ktime_ns,
        counters: &counters,
        processes: &session.processes,
        // The one place the profiler's own records are left out, so no later stage
        // filters them again.
        excluded: config.is_own_process(me).then_some(me),
    };
    let mut profiles: Vec<RawProfile> = Vec::new();
    for collector in session.collectors {
        profiles.push(collector.finish(&mut session.probes, &end)?);
    }
    session
        .names
        .settle(profiles.iter().flat_map(RawProfile::processes));
    Ok(RunOutcome {
        start,
        duration,
        stop,
        cpus: cpus.len(),
        kernel_cost,
        window_end: started + duration,
        call_graph: config.call_graph,
        ring_bytes,
        ring_lost: ring_size::lost(&counters),
        unwinding: session.sampler.finish(),
        processes: session.processes,
        process_names: session.names,
        descendants: session.tree,
        bpf_symbols,
        profiles,
        jit_map_notes,
    })
}

/// Loads the kernel programs with maps sized for the run's CPUs, and attaches the
/// tracepoints every profile needs; returns them, the online CPUs and the sample ring
/// buffer's size.
fn load(config: &Config, btf: Option<Btf>) -> Result<(Probes, Vec<u32>, u32)> {
    let tracefs = tracefs::ensure_mounted()?;
    let fork_offset = tracefs::field_offset(&tracefs, "sched", "sched_process_fork", "child_pid")?;
    let possible_cpus = aya::util::nr_cpus().map_err(|(path, err)| {
        anyhow::anyhow!("cannot read the possible CPUs from {path}: {err}")
    })?;
    let cpus = aya::util::online_cpus()
        .map_err(|(path, err)| anyhow::anyhow!("cannot read the online CPUs from {path}: {err}"))?;
    // Sized by the CPUs that can take samples now, not by the possible ones (a VM may list
    // hundreds it does not have).
    let ring_bytes = ring_size::for_run(config, cpus.len());
    let options = LoadOptions {
        filter: !matches!(config.target, Target::Host),
        fork_child_pid_offset: fork_offset,
        io: config.profiles.io,
        block: config.profiles.block,
        heap: config.profiles.heap,
        call_graph: config.call_graph,
        ring_bytes,
        possible_cpus: u32::try_from(possible_cpus).unwrap_or(u32::MAX),
    };
    let mut probes = Probes::load(btf, &probes::btf_path(), &options)?;
    probes.attach_tracepoints()?;
    if config.profiles.heap || config.profiles.goroutines {
        // Asked before any probe is hit in the profiler: its answer shows in what the
        // profiler's own process maps (see uprobe_check), and it decides the probe points.
        uprobe_check::running_kernel();
    }
    Ok((probes, cpus, ring_bytes))
}

/// The run's two ring buffers, polled by the window's loop.
struct Rings {
    events: AsyncFd<RingBuf<MapData>>,
    samples: AsyncFd<RingBuf<MapData>>,
}

/// What the window's loop drives: the kernel programs, the collectors events and samples
/// are routed to, the processes' mappings, and the unwinding stage.
struct Session {
    probes: Probes,
    collectors: Vec<Box<dyn Collector>>,
    processes: ProcessTable,
    names: ProcessNames,
    sampler: StackSampler,
    /// The JVMs asked for perf maps, with `--jit-maps`.
    jit_maps: Option<JitMaps>,
    /// The processes already below the `--pid` targets when the run started, when looked for.
    tree: Option<Tree>,
}

impl Session {
    /// Starts the collectors `config` asks for and attaches them to the `--pid` targets.
    /// The heap collector is returned apart, by its type, when the command is still to be
    /// launched: it launches it.
    fn start_collectors(&mut self, config: &Config) -> Result<Option<HeapCollector>> {
        let probes = &mut self.probes;
        if config.profiles.cpu {
            self.collectors.push(Box::new(CpuCollector::default()));
        }
        if config.profiles.io {
            self.collectors.push(Box::new(IoCollector::default()));
        }
        if config.profiles.block {
            self.collectors.push(Box::new(FutexCollector::default()));
        }
        if config.profiles.goroutines {
            let goroutines = GoroutineCollector::start(probes, &config.target)?;
            self.collectors.push(Box::new(goroutines));
        }
        if config.profiles.offcpu {
            self.collectors
                .push(Box::new(OffCpuCollector::start(probes)?));
        }
        let mut heap = if config.profiles.heap {
            Some(HeapCollector::load(probes)?)
        } else {
            None
        };
        if let Target::Pids(pids) = &config.target {
            for &pid in pids {
                self.probes.add_target(pid)?;
                self.add_target(pid, heap.as_mut());
            }
            // After the named pids are in the kernel's filter, which follows their forks
            // from then on: a child forked during the walk is either listed or followed.
            if config.existing_descendants {
                let limits = Limits::default();
                let tree = descendants::walk(Path::new("/proc"), pids, std::process::id(), limits);
                for line in tree.warnings(limits) {
                    console::eprint_line(&format!("profiler: {line}"));
                }
                for descendant in &tree.found {
                    if let Err(err) = self.probes.add_target(descendant.pid) {
                        console::eprint_line(&format!(
                            "profiler: {err:#}: pid {} and the rest of the targets' \
                             descendants are not profiled",
                            descendant.pid
                        ));
                        break;
                    }
                    self.add_target(descendant.pid, heap.as_mut());
                }
                self.tree = Some(tree);
            }
        }
        if !matches!(config.target, Target::Command(_))
            && let Some(heap) = heap.take()
        {
            self.collectors.push(Box::new(heap));
        }
        Ok(heap)
    }

    /// Tells every collector (the heap collector too, still apart) of target `pid`, which
    /// the kernel's filter already has, and reads its mappings.
    fn add_target(&mut self, pid: u32, heap: Option<&mut HeapCollector>) {
        self.processes.snapshot(pid);
        self.names.note(pid);
        let heap = heap.map(|h| h as &mut dyn Collector);
        for collector in self.collectors.iter_mut().map(Box::as_mut).chain(heap) {
            collector.attach(&mut self.probes, Seen::Target(pid));
        }
        // After the probes: reading a Go binary's layout takes a moment, which must not
        // delay what they count.
        self.note_if_go(pid);
        self.note_if_python(pid);
    }

    /// Launches the command of a `-- COMMAND` run as a target from its first instruction
    /// (by the heap collector when there is one); then every collector is routed to.
    fn launch(&mut self, config: &Config, heap: Option<HeapCollector>) -> Result<Option<Child>> {
        let Target::Command(argv) = &config.target else {
            return Ok(None);
        };
        let child = match heap {
            Some(mut heap) => {
                let child = heap.spawn(&mut self.probes, config, argv, &mut self.sampler)?;
                self.collectors.push(Box::new(heap));
                child
            }
            None => start_command::spawn_followed(
                &mut self.probes,
                argv,
                config.run_as_root,
                None,
                None,
            )?,
        };
        Ok(Some(child))
    }

    /// The profiling window: routes events and samples as they arrive and ticks the
    /// collectors until the duration elapses, a signal or the command ends it, or every
    /// target exited.
    async fn window(
        &mut self,
        config: &Config,
        rings: &mut Rings,
        child: &mut Option<Child>,
        started: Instant,
    ) -> Result<StopReason> {
        let deadline = config
            .duration
            .map(|d| tokio::time::Instant::from_std(started + d));
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut tick = tokio::time::interval(TICK);
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        let status = status_line();
        let mut ticks = 0u32;
        let budget = Some(DRAIN_BUDGET);
        let stop = loop {
            tokio::select! {
                () = sleep_until(deadline) => break StopReason::Elapsed,
                _ = sigint.recv() => break StopReason::Signal("Ctrl-C"),
                _ = sigterm.recv() => break StopReason::Signal("SIGTERM"),
                exit = wait_child(child) => break StopReason::CommandExited(exit?),
                guard = rings.events.readable_mut() => {
                    let mut guard = guard.context("cannot poll the process-event ring buffer")?;
                    if self.drain_events(guard.get_inner_mut(), budget) {
                        guard.clear_ready();
                    }
                }
                guard = rings.samples.readable_mut() => {
                    let mut guard = guard.context("cannot poll the sample ring buffer")?;
                    self.drain_events(rings.events.get_mut(), budget);
                    if self.drain_samples(guard.get_inner_mut(), budget) {
                        guard.clear_ready();
                    }
                }
                _ = drain.tick() => {
                    // Forks first: a child's samples may need its parent's mappings.
                    self.drain_events(rings.events.get_mut(), budget);
                    self.drain_samples(rings.samples.get_mut(), budget);
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.tick(config, ticks);
                    if let Ok(counters) = self.probes.counters() {
                        status.set_message(status_text(started.elapsed(), config.duration, &counters));
                    }
                    if let Target::Pids(pids) = &config.target
                        && pids.iter().all(|&pid| !is_alive(pid))
                        && self.tree.iter().flat_map(|t| &t.found).all(|d| !is_alive(d.pid))
                    {
                        break StopReason::TargetsExited;
                    }
                }
            }
        };
        status.finish_and_clear();
        Ok(stop)
    }

    /// Once a tick: the kernel programs' logs, the processes' mappings that may have
    /// changed, and every collector's tick.
    fn tick(&mut self, config: &Config, ticks: u32) {
        self.probes.flush_logs();
        self.processes.refresh_perf_maps();
        if let Some(jit_maps) = &mut self.jit_maps {
            jit_maps.tick(&mut self.processes);
        }
        self.processes.refresh_execd();
        if ticks.is_multiple_of(REFRESH_EVERY_TICKS) {
            self.processes.refresh();
            self.sampler.forget_exited_python();
        }
        let mut tick = Tick {
            count: ticks,
            probes: &mut self.probes,
            sampler: &mut self.sampler,
            config,
        };
        for collector in &mut self.collectors {
            collector.tick(&mut tick);
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn wait_child(child: &mut Option<Child>) -> Result<ExitStatus> {
    match child {
        Some(child) => child.wait().await.context("cannot wait for the command"),
        None => std::future::pending().await,
    }
}

fn is_alive(pid: u32) -> bool {
    // A zombie keeps its /proc entry but runs no more: state Z in /proc/PID/stat.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}
