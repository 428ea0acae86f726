//! One profiling run: load and attach, launch or find the targets, unwind and count the
//! stack samples as they arrive until the end of the window, then collect what the kernel
//! aggregated.

use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use aya::Btf;
use aya::maps::{MapData, RingBuf};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use profiler_common::{ProcEvent, counter, proc_event};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};

use crate::collect::collector::{Collector, RunEnd, Seen, Tick};
use crate::collect::cpu::CpuCollector;
use crate::collect::cpustat::CpuTimes;
use crate::collect::futex::FutexCollector;
use crate::collect::goroutine_waits::GoroutineCollector;
use crate::collect::heap_run::HeapCollector;
use crate::collect::io::IoCollector;
use crate::collect::probes::{self, Counters, LoadOptions, Probes};
use crate::collect::raw_profile::RawProfile;
use crate::collect::samples::{StackSampler, Unwinding};
use crate::collect::selfcost::KernelCost;
use crate::collect::start_command;
use crate::collect::tracefs;
use crate::collect::uprobe_check;
use crate::config::{CallGraph, Config, Target};
use crate::process::bpf_symbols::BpfSymbols;
use crate::process::procmaps::ProcessTable;
use crate::sys::fdlimit;

const TICK: Duration = Duration::from_millis(250);
/// How often the sample ring buffer is drained when no sample wakes the profiler earlier:
/// often, so that a short-lived process's mappings are read while it still lives.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// The longest a ring buffer (samples, process events) is drained at once during the
/// window: one flooded as fast as it is read must not hold the window open.
const DRAIN_BUDGET: Duration = Duration::from_millis(100);
/// How often live processes' mappings are re-read, to catch `dlopen` and late mappings.
const REFRESH_EVERY_TICKS: u32 = 16;

/// Why the run ended.
#[derive(Debug, Clone)]
pub enum StopReason {
    /// The requested duration elapsed.
    Elapsed,
    /// A signal asked to stop early.
    Signal(&'static str),
    /// The launched command exited.
    CommandExited(ExitStatus),
    /// Every `--pid` target exited.
    TargetsExited,
}

impl StopReason {
    /// The profiler's exit status for a run that otherwise succeeded: the launched
    /// command's when it exited, as `time` and `perf stat` give it (its code, or 128+N
    /// when signal N killed it); else 0.
    pub fn exit_status(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt;
        let Self::CommandExited(status) = self else {
            return 0;
        };
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        };
        u8::try_from(code).unwrap_or(u8::MAX)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Elapsed => write!(f, "the duration elapsed"),
            Self::Signal(name) => write!(f, "stopped early by {name}"),
            Self::CommandExited(status) => write!(f, "the command exited ({status})"),
            Self::TargetsExited => write!(f, "every target process exited"),
        }
    }
}

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
    /// Every distinct stack of the samples, and how they were unwound.
    pub unwinding: Unwinding,
    /// Mapping snapshots of every sampled process.
    pub processes: ProcessTable,
    /// The BPF programs loaded during the run (the profiler's own among them), which are
    /// gone from kallsyms by the time kernel frames are symbolized.
    pub bpf_symbols: BpfSymbols,
    /// Each collector's raw profile, in the order the collectors were started.
    pub profiles: Vec<RawProfile>,
}

/// Runs the profiler as `config` says, with the kernel's BTF when the kernel check read it.
///
/// # Errors
/// When a target cannot be found or started, or the kernel refuses the programs.
pub async fn run(config: &Config, btf: Option<Btf>) -> Result<RunOutcome> {
    fdlimit::raise();
    let tracefs = tracefs::ensure_mounted()?;
    let fork_offset = tracefs::field_offset(&tracefs, "sched", "sched_process_fork", "child_pid")?;
    let possible_cpus = aya::util::nr_cpus().map_err(|(path, err)| {
        anyhow::anyhow!("cannot read the possible CPUs from {path}: {err}")
    })?;
    let cpus = aya::util::online_cpus()
        .map_err(|(path, err)| anyhow::anyhow!("cannot read the online CPUs from {path}: {err}"))?;
    // Sized by the CPUs that can take samples now, not by the possible ones (a VM may list
    // hundreds it does not have).
    let mut ring_bytes = probes::ring_bytes(
        config.frequency,
        cpus.len(),
        config.call_graph.record_bytes(),
    );
    if config.profiles.heap {
        // A Go runtime sampling every allocation (MemProfileRate = 1) sends a record per
        // allocation: room for bursts of them.
        ring_bytes = ring_bytes.max(probes::HEAP_RING_BYTES);
    }
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
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    if config.profiles.cpu {
        collectors.push(Box::new(CpuCollector::default()));
    }
    if config.profiles.io {
        collectors.push(Box::new(IoCollector::default()));
    }
    if config.profiles.block {
        collectors.push(Box::new(FutexCollector::default()));
    }
    if config.profiles.goroutines {
        collectors.push(Box::new(GoroutineCollector::start(
            &mut probes,
            &config.target,
        )?));
    }
    // Kept by its type until the command is launched: it launches it.
    let mut heap = if config.profiles.heap {
        Some(HeapCollector::load(&mut probes)?)
    } else {
        None
    };
    let mut processes = ProcessTable::default();
    if let Target::Pids(pids) = &config.target {
        for &pid in pids {
            probes.add_target(pid)?;
            processes.snapshot(pid);
            let heap = heap.as_mut().map(|h| h as &mut dyn Collector);
            for collector in collectors.iter_mut().map(Box::as_mut).chain(heap) {
                collector.attach(&mut probes, Seen::Target(pid));
            }
        }
    }
    // SAFETY: the ring buffer owns its map fd and keeps it open until it is dropped, which is
    // when the AsyncFd is.
    let mut events =
        unsafe { AsyncFd::register_with_interest(probes.take_proc_events()?, Interest::READABLE) }
            .map_err(|err| anyhow::anyhow!("cannot poll the process-event ring buffer: {err}"))?;
    // SAFETY: as above, for the sample ring buffer.
    let mut sample_ring =
        unsafe { AsyncFd::register_with_interest(probes.take_samples()?, Interest::READABLE) }
            .map_err(|err| anyhow::anyhow!("cannot poll the sample ring buffer: {err}"))?;
    let mut sampler = StackSampler::default();
    if config.profiles.io || config.profiles.block {
        probes.attach_syscalls()?;
    }
    if config.profiles.cpu {
        probes.attach_cpu_sampling(&cpus, config.frequency)?;
    }
    let cpus = cpus.len();
    let mut bpf_symbols = BpfSymbols::default();
    bpf_symbols.snapshot();
    let mut child = match (&config.target, &mut heap) {
        (Target::Command(argv), Some(heap)) => {
            Some(heap.spawn(&mut probes, config, argv, &mut sampler)?)
        }
        (Target::Command(argv), None) => Some(start_command::spawn_followed(
            &mut probes,
            argv,
            config.run_as_root,
            None,
            None,
        )?),
        _ => None,
    };
    if let Some(heap) = heap {
        collectors.push(Box::new(heap));
    }
    let command_pid = child.as_ref().and_then(Child::id);
    let start = SystemTime::now();
    let started = Instant::now();
    let cpu_times_at_start = CpuTimes::now();
    let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);

    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut tick = tokio::time::interval(TICK);
    let mut drain = tokio::time::interval(DRAIN_EVERY);
    let status = status_line();
    let mut ticks = 0u32;
    let stop = loop {
        tokio::select! {
            () = sleep_until(deadline) => break StopReason::Elapsed,
            _ = sigint.recv() => break StopReason::Signal("Ctrl-C"),
            _ = sigterm.recv() => break StopReason::Signal("SIGTERM"),
            exit = wait_child(&mut child) => break StopReason::CommandExited(exit?),
            guard = events.readable_mut() => {
                let mut guard = guard.context("cannot poll the process-event ring buffer")?;
                if drain_events(guard.get_inner_mut(), &mut processes, &mut collectors, &mut probes, Some(DRAIN_BUDGET)) {
                    guard.clear_ready();
                }
            }
            guard = sample_ring.readable_mut() => {
                let mut guard = guard.context("cannot poll the sample ring buffer")?;
                drain_events(events.get_mut(), &mut processes, &mut collectors, &mut probes, Some(DRAIN_BUDGET));
                if drain_samples(guard.get_inner_mut(), &mut sampler, &mut collectors, &mut processes, Some(DRAIN_BUDGET)) {
                    guard.clear_ready();
                }
            }
            _ = drain.tick() => {
                // Forks first: a child's samples may need its parent's mappings.
                drain_events(events.get_mut(), &mut processes, &mut collectors, &mut probes, Some(DRAIN_BUDGET));
                drain_samples(sample_ring.get_mut(), &mut sampler, &mut collectors, &mut processes, Some(DRAIN_BUDGET));
            }
            _ = tick.tick() => {
                ticks += 1;
                probes.flush_logs();
                processes.refresh_perf_maps();
                processes.refresh_execd();
                if ticks.is_multiple_of(REFRESH_EVERY_TICKS) {
                    processes.refresh();
                }
                let mut tick = Tick {
                    count: ticks,
                    probes: &mut probes,
                    sampler: &mut sampler,
                    config,
                };
                for collector in &mut collectors {
                    collector.tick(&mut tick);
                }
                if let Ok(counters) = probes.counters() {
                    status.set_message(status_text(started.elapsed(), config.duration, &counters));
                }
                if let Target::Pids(pids) = &config.target
                    && pids.iter().all(|&pid| !is_alive(pid))
                {
                    break StopReason::TargetsExited;
                }
            }
        }
    };
    let duration = started.elapsed();
    let window_end_ktime_ns = monotonic_ns();
    for collector in &mut collectors {
        collector.close();
    }
    let mut kernel_cost = KernelCost::now();
    if config.profiles.heap || config.profiles.goroutines {
        kernel_cost.uprobes = Some(uprobe_check::running_kernel());
    }
    let busy_cpu_seconds = CpuTimes::now().busy_seconds_since(&cpu_times_at_start);
    status.finish_and_clear();
    // Before the programs are detached and unloaded, and with those loaded since the start.
    bpf_symbols.snapshot();
    probes.stop();
    drain_events(
        events.get_mut(),
        &mut processes,
        &mut collectors,
        &mut probes,
        None,
    );
    drain_samples(
        sample_ring.get_mut(),
        &mut sampler,
        &mut collectors,
        &mut processes,
        None,
    );
    log::debug!(
        "last samples drained {:?} after the window",
        started.elapsed() - duration
    );
    processes.refresh();
    probes.flush_logs();
    log::debug!(
        "mappings read again {:?} after the window",
        started.elapsed() - duration
    );
    if let (Some(pid), StopReason::Elapsed | StopReason::Signal(_)) = (command_pid, &stop) {
        crate::sys::console::eprint_line(&format!(
            "profiler: the command (pid {pid}) is still running; it was left alone"
        ));
    }
    let counters = probes.counters()?;
    let me = std::process::id();
    let end = RunEnd {
        config,
        duration,
        cpus,
        busy_cpu_seconds,
        call_graph: config.call_graph,
        window_end_ktime_ns,
        counters: &counters,
        processes: &processes,
        // The one place the profiler's own records are left out, so no later stage
        // filters them again.
        excluded: config.is_own_process(me).then_some(me),
    };
    let mut profiles = Vec::new();
    for collector in collectors {
        profiles.push(collector.finish(&mut probes, &end)?);
    }
    Ok(RunOutcome {
        start,
        duration,
        stop,
        cpus,
        kernel_cost,
        window_end: started + duration,
        call_graph: config.call_graph,
        ring_bytes,
        unwinding: sampler.finish(),
        processes,
        bpf_symbols,
        profiles,
    })
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

/// Reads what is needed of every process that recorded a new stack, while it still lives:
/// its mappings when they do not cover the new stack (new code was mapped: the C library
/// after the dynamic loader, a `dlopen`), and the kind of a new call site's descriptor.
fn drain_events(
    ring: &mut RingBuf<MapData>,
    processes: &mut ProcessTable,
    collectors: &mut [Box<dyn Collector>],
    probes: &mut Probes,
    budget: Option<Duration>,
) -> bool {
    let started = Instant::now();
    while let Some(item) = ring.next() {
        handle_event(&item, processes, collectors, probes);
        drop(item);
        if budget.is_some_and(|budget| started.elapsed() >= budget) {
            return false;
        }
    }
    true
}

/// Handles one process event.
fn handle_event(
    item: &[u8],
    processes: &mut ProcessTable,
    collectors: &mut [Box<dyn Collector>],
    probes: &mut Probes,
) {
    if item.len() < size_of::<ProcEvent>() {
        return;
    }
    // SAFETY: the kernel wrote a ProcEvent; read_unaligned copes with any alignment.
    let event: ProcEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
    let seen = match event.kind {
        proc_event::NEW_KEY => {
            processes.note_new_key(event.pid, event.ip, event.fd);
            Seen::NewCode(event.pid)
        }
        proc_event::FORK => {
            processes.note_fork(event.parent, event.pid);
            return;
        }
        proc_event::EXEC => {
            processes.note_exec(event.pid);
            Seen::Exec(event.pid)
        }
        _ => return,
    };
    for collector in collectors {
        collector.attach(probes, seen);
    }
}

/// Unwinds and counts the stack samples waiting in the ring buffer, for at most `budget`
/// during the window (samples arriving as fast as they are unwound, from a process that
/// keeps executing itself, must not keep the loop from the end of the window); returns
/// whether the ring buffer was emptied.
fn drain_samples(
    ring: &mut RingBuf<MapData>,
    sampler: &mut StackSampler,
    collectors: &mut [Box<dyn Collector>],
    processes: &mut ProcessTable,
    budget: Option<Duration>,
) -> bool {
    let started = Instant::now();
    while let Some(item) = ring.next() {
        let sample = sampler.add(&item, processes);
        drop(item);
        if let Some(sample) = sample {
            for collector in collectors.iter_mut() {
                if collector.takes(sample.header.kind) {
                    collector.take(&sample);
                }
            }
        }
        if budget.is_some_and(|budget| started.elapsed() >= budget) {
            return false;
        }
    }
    true
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

fn status_line() -> ProgressBar {
    // indicatif draws nothing when stderr is not a terminal.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn status_text(elapsed: Duration, duration: Option<Duration>, counters: &Counters) -> String {
    let elapsed_s = elapsed.as_secs_f64();
    let window = match duration {
        Some(d) => format!("{elapsed_s:.1}s of {:.1}s", d.as_secs_f64()),
        None => format!("{elapsed_s:.1}s (Ctrl-C to stop)"),
    };
    let lost = counters.get(counter::LOST_CPU_SAMPLES)
        + counters.get(counter::LOST_IO_STACK)
        + counters.get(counter::LOST_BLOCK_STACK)
        + counters.get(counter::LOST_IO_FULL)
        + counters.get(counter::LOST_SLOT);
    format!(
        "profiling: {window} | {} samples | {} I/O calls | {lost} lost",
        counters.get(counter::RECORDED),
        counters.get(counter::IO_CALLS)
    )
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn exit_status_is_the_commands() {
        let exited = |raw| StopReason::CommandExited(ExitStatus::from_raw(raw)).exit_status();
        assert_eq!(exited(42 << 8), 42);
        assert_eq!(exited(0), 0);
        assert_eq!(exited(libc::SIGKILL), 128 + 9);
        assert_eq!(StopReason::Elapsed.exit_status(), 0);
        assert_eq!(StopReason::Signal("Ctrl-C").exit_status(), 0);
    }
}
