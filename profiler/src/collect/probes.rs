//! Loads the embedded eBPF object, attaches its programs, writes the maps that steer them
//! and hands out its ring buffers; the tables and counters they fill are read in
//! `probes/maps.rs`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::{BtfTracePoint, PerfEvent, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader, Endianness};
use profiler_common::{
    GoProcess, HEAP_PENDING_SLOTS, MAX_HEAP_LIVE, MAX_HEAP_SITES, PythonProcess, global_name,
    map_name, program_name, stack_mode,
};

use crate::config::CallGraph;

mod maps;
pub use maps::Counters;

/// Where the kernel publishes its BTF; `PROFILER_BTF_PATH` overrides it (tests use this to
/// simulate a kernel without BTF).
pub fn btf_path() -> PathBuf {
    std::env::var_os("PROFILER_BTF_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/kernel/btf/vmlinux"))
}

/// The eBPF object built by `cargo xtask build`, embedded so the binary is all a host needs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler-ebpf.o"));

/// What the kernel programs are told at load time.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Profile only the pids added with [`Probes::add_target`] (and their children).
    pub filter: bool,
    /// Offset of `child_pid` in the `sched_process_fork` record (see [`crate::collect::tracefs`]).
    pub fork_child_pid_offset: u32,
    /// Trace the read/write-family syscalls and the calls between descriptors (sendfile...).
    pub io: bool,
    /// Trace futex waits.
    pub block: bool,
    /// Collect the heap profile (sizes the heap maps; the probes are attached per process).
    pub heap: bool,
    /// How user stacks are taken.
    pub call_graph: CallGraph,
    /// Size of the sample ring buffer (a power of two number of pages).
    pub ring_bytes: u32,
    /// CPUs the kernel may run programs on (sizes the per-CPU scratch space).
    pub possible_cpus: u32,
}

/// The loaded and attached kernel programs.
pub struct Probes {
    ebpf: Ebpf,
    btf: Btf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The CPU sampling events, one per CPU, until [`Self::stop_cpu_sampling`].
    cpu_links: Vec<PerfEventLinkId>,
    /// Whether the blocking profile is collected, which also notes who wakes futex waits.
    trace_block: bool,
}

impl Probes {
    /// Loads the programs with the kernel's BTF, read from `btf_path` unless given;
    /// `options.filter` restricts sampling to pids added with [`Self::add_target`].
    ///
    /// # Errors
    /// When BTF cannot be read or the kernel rejects a program or map.
    pub fn load(btf: Option<Btf>, btf_path: &Path, options: &LoadOptions) -> Result<Self> {
        let btf = match btf {
            Some(btf) => btf,
            None => Btf::parse_file(btf_path, Endianness::default()).with_context(|| {
                format!(
                    "cannot read kernel BTF from {}: the profiler needs a kernel built with \
                     CONFIG_DEBUG_INFO_BTF=y",
                    btf_path.display()
                )
            })?,
        };
        let filter = u8::from(options.filter);
        let trace_io = u8::from(options.io);
        let trace_block = u8::from(options.block);
        let (mode, stack_bytes) = match options.call_graph {
            CallGraph::Dwarf { stack_bytes } => (stack_mode::DWARF, stack_bytes),
            CallGraph::Fp => (stack_mode::FP, 0),
        };
        // Userspace drains the buffer on its timer; a sample wakes it early only when a
        // quarter of the buffer waits.
        let wakeup_bytes = u64::from(options.ring_bytes / 4);
        let heap_size = |entries: u32| if options.heap { entries } else { 1 };
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global(global_name::FILTER_PIDS, &filter, true)
            .override_global(
                global_name::FORK_CHILD_PID_OFFSET,
                &options.fork_child_pid_offset,
                true,
            )
            .override_global(global_name::TRACE_IO, &trace_io, true)
            .override_global(global_name::TRACE_BLOCK, &trace_block, true)
            .override_global(global_name::STACK_MODE, &mode, true)
            .override_global(global_name::USER_STACK_BYTES, &stack_bytes, true)
            .override_global(global_name::WAKEUP_BYTES, &wakeup_bytes, true)
            .override_global(global_name::PROFILER_TGID, &std::process::id(), true)
            .map_max_entries(map_name::SAMPLES, options.ring_bytes)
            .map_max_entries(
                map_name::SAMPLE_SCRATCH,
                options.possible_cpus * profiler_common::SCRATCH_SLOTS_PER_CPU,
            )
            // The heap maps cost memory only when the heap profile is collected.
            .map_max_entries(map_name::HEAP_LIVE, heap_size(MAX_HEAP_LIVE))
            .map_max_entries(map_name::HEAP_SITES, heap_size(MAX_HEAP_SITES))
            .map_max_entries(map_name::HEAP_PENDING, heap_size(HEAP_PENDING_SLOTS))
            .load(EBPF_OBJECT)
            .context("cannot load the eBPF programs into the kernel")?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                log::debug!("kernel-side logs unavailable: {err}");
                None
            }
        };
        Ok(Self {
            ebpf,
            btf,
            logger,
            cpu_links: Vec::new(),
            trace_block: options.block,
        })
    }

    /// Adds a process to the kernel-side target filter.
    ///
    /// # Errors
    /// When the target map is full.
    pub fn add_target(&mut self, pid: u32) -> Result<()> {
        let mut targets: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(self.map_mut(map_name::TARGETS)?)?;
        targets
            .insert(pid, 1, 0)
            .with_context(|| format!("cannot add pid {pid} to the target map"))
    }

    /// Marks process `pid` as Go's: its CPU samples carry their frame-pointer chain, and
    /// its samples the goroutine's labels where `process` says where they are.
    ///
    /// # Errors
    /// When the map cannot be updated.
    pub fn add_go_process(&mut self, pid: u32, process: GoProcess) -> Result<()> {
        let mut go: BpfHashMap<_, u32, GoProcess> =
            BpfHashMap::try_from(self.map_mut(map_name::GO_PROCESSES)?)?;
        go.insert(pid, process, 0)
            .with_context(|| format!("cannot add pid {pid} to the Go process map"))
    }

    /// Tells the kernel where process `pid`'s Python frames are, so that its CPU samples
    /// carry them.
    ///
    /// # Errors
    /// When the map cannot be updated.
    pub fn add_python_process(&mut self, pid: u32, process: PythonProcess) -> Result<()> {
        let mut py: BpfHashMap<_, u32, PythonProcess> =
            BpfHashMap::try_from(self.map_mut(map_name::PYTHON_PROCESSES)?)?;
        py.insert(pid, process, 0)
            .with_context(|| format!("cannot add pid {pid} to the Python process map"))
    }

    /// Tells the kernel the `PyThreadState` address of thread `tid` of a Python process.
    ///
    /// # Errors
    /// When the map cannot be updated.
    pub fn add_python_thread(&mut self, tid: u32, tstate: u64) -> Result<()> {
        let mut threads: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(self.map_mut(map_name::PYTHON_THREADS)?)?;
        threads
            .insert(tid, tstate, 0)
            .with_context(|| format!("cannot add thread {tid} to the Python thread map"))
    }

    /// The processes in the kernel-side target filter (targets and the children they forked).
    pub fn targets(&self) -> Vec<u32> {
        let Ok(map) = self.map(map_name::TARGETS) else {
            return Vec::new();
        };
        let Ok(targets) = BpfHashMap::<_, u32, u8>::try_from(map) else {
            return Vec::new();
        };
        targets.keys().filter_map(Result::ok).collect()
    }

    /// Removes a process from the kernel-side target filter.
    ///
    /// # Errors
    /// When the map cannot be updated.
    pub fn remove_target(&mut self, pid: u32) -> Result<()> {
        let mut targets: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(self.map_mut(map_name::TARGETS)?)?;
        targets
            .remove(&pid)
            .with_context(|| format!("cannot remove pid {pid} from the target map"))
    }

    /// Attaches the scheduler tracepoints that follow forks and forget exited threads.
    ///
    /// # Errors
    /// When tracefs is missing or the kernel refuses the attachment.
    pub fn attach_tracepoints(&mut self) -> Result<()> {
        for name in [
            program_name::SCHED_PROCESS_FORK,
            program_name::SCHED_PROCESS_EXIT,
        ] {
            let program: &mut TracePoint = program_mut(&mut self.ebpf, name)?.try_into()?;
            program
                .load()
                .with_context(|| format!("cannot load {name}"))?;
            program
                .attach("sched", name)
                .with_context(|| format!("cannot attach to tracepoint sched/{name}"))
                .map_err(crate::sys::fdlimit::note_if_exhausted)?;
        }
        Ok(())
    }

    /// Starts sampling each of `cpus` at `frequency` Hz with the software `cpu-clock` event.
    ///
    /// # Errors
    /// When the kernel has no perf events or refuses one.
    pub fn attach_cpu_sampling(&mut self, cpus: &[u32], frequency: u64) -> Result<()> {
        let program: &mut PerfEvent =
            program_mut(&mut self.ebpf, program_name::CPU_SAMPLE)?.try_into()?;
        program
            .load()
            .context("cannot load the CPU sampling program")?;
        for &cpu in cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(frequency),
                    false,
                )
                .map_err(|err| {
                    let err = anyhow::Error::from(err);
                    // Out of descriptors is said as such (see fdlimit::explain), not
                    // blamed on the kernel's settings.
                    if crate::sys::fdlimit::exhaustion(&err).is_some() {
                        return err.context(format!("cannot sample CPU {cpu}"));
                    }
                    err.context(format!(
                        "cannot sample CPU {cpu}: the kernel needs perf events \
                         (CONFIG_PERF_EVENTS) and kernel.perf_event_paranoid must allow it"
                    ))
                })?;
            self.cpu_links.push(link);
        }
        Ok(())
    }

    /// Stops CPU sampling, when the window ends: the ticks after it would be counted
    /// against a window they are not in, and their samples added to its profile.
    pub fn stop_cpu_sampling(&mut self) {
        let links = std::mem::take(&mut self.cpu_links);
        if links.is_empty() {
            return;
        }
        let Ok(program) = program_mut(&mut self.ebpf, program_name::CPU_SAMPLE)
            .and_then(|p| <&mut PerfEvent>::try_from(p).map_err(Into::into))
        else {
            return;
        };
        for link in links {
            if let Err(err) = program.detach(link) {
                log::debug!("cannot stop a CPU sampling event: {err}");
            }
        }
    }

    /// Starts tracing the syscalls the I/O and blocking profiles need (as chosen at load)
    /// through the BTF `sys_enter` and `sys_exit` tracepoints.
    ///
    /// # Errors
    /// When the kernel refuses a program.
    ///
    /// # Minimum kernel version
    /// 5.5, for BTF-enabled tracepoints.
    pub fn attach_syscalls(&mut self) -> Result<()> {
        let programs = [
            (program_name::SYS_ENTER, "sys_enter"),
            (program_name::SYS_EXIT, "sys_exit"),
        ];
        let context = |tracepoint: &str| {
            format!(
                "cannot attach to the {tracepoint} tracepoint for the I/O and blocking profiles"
            )
        };
        if self.trace_block {
            // Before the waits are traced, so a traced wait's waker is always noted.
            let prog: &mut BtfTracePoint =
                program_mut(&mut self.ebpf, program_name::FUTEX_WAKING)?.try_into()?;
            prog.load("sched_waking", &self.btf)
                .context("cannot load the sched_waking program for the blocking profile")?;
            prog.attach()
                .context("cannot attach to the sched_waking tracepoint for the blocking profile")?;
        }
        for (program, tracepoint) in programs {
            let prog: &mut BtfTracePoint = program_mut(&mut self.ebpf, program)?.try_into()?;
            prog.load(tracepoint, &self.btf)
                .with_context(|| context(tracepoint))?;
        }
        // Both loaded first, and the exit attached before the entry: a call entered between
        // the two attaches would leave an entry no exit takes (sys_exit also checks the
        // call's number, for any other way that could happen).
        for (program, tracepoint) in programs.into_iter().rev() {
            let prog: &mut BtfTracePoint = program_mut(&mut self.ebpf, program)?.try_into()?;
            prog.attach().with_context(|| context(tracepoint))?;
        }
        Ok(())
    }

    /// Loads the off-CPU programs, to be attached when the window opens
    /// ([`Self::attach_offcpu`]): the verifier's time is spent before it.
    ///
    /// # Errors
    /// When the kernel refuses a program.
    ///
    /// # Minimum kernel version
    /// 5.18, whose `sched_switch` passes the task's state at the switch.
    pub fn load_offcpu(&mut self) -> Result<()> {
        for name in program_name::OFFCPU {
            let context = || format!("cannot load the {name} program for the off-CPU profile");
            let prog: &mut BtfTracePoint = program_mut(&mut self.ebpf, name)?.try_into()?;
            prog.load(name, &self.btf).with_context(context)?;
        }
        Ok(())
    }

    /// Starts timing every switch-out of a target thread to its switch-in, and who woke it,
    /// through the BTF `sched_switch`, `sched_waking` and `sched_wakeup_new` tracepoints
    /// (loaded by [`Self::load_offcpu`]).
    ///
    /// # Errors
    /// When the kernel refuses to attach a program.
    pub fn attach_offcpu(&mut self) -> Result<()> {
        for name in program_name::OFFCPU {
            let context =
                || format!("cannot attach to the {name} tracepoint for the off-CPU profile");
            let prog: &mut BtfTracePoint = program_mut(&mut self.ebpf, name)?.try_into()?;
            prog.attach().with_context(context)?;
        }
        Ok(())
    }

    /// Tells the blocking programs the window opened (`end` false) or closed (`end` true)
    /// at `ktime_ns` (`bpf_ktime_get_ns`): only the part of a wait inside it counts.
    ///
    /// # Errors
    /// When the map cannot be written.
    pub fn set_block_window(&mut self, end: bool, ktime_ns: u64) -> Result<()> {
        let mut window: aya::maps::Array<_, u64> =
            aya::maps::Array::try_from(self.map_mut(map_name::BLOCK_WINDOW)?)?;
        window
            .set(u32::from(end), ktime_ns, 0)
            .context("cannot set the blocking profile's window")
    }

    /// Tells the off-CPU programs the window closed at `ktime_ns` (`bpf_ktime_get_ns`):
    /// nothing after it is added.
    ///
    /// # Errors
    /// When the map cannot be written.
    pub fn end_offcpu_window(&mut self, ktime_ns: u64) -> Result<()> {
        let mut end: aya::maps::Array<_, u64> =
            aya::maps::Array::try_from(self.map_mut(map_name::OFFCPU_WINDOW_END)?)?;
        end.set(0, ktime_ns, 0)
            .context("cannot close the off-CPU window")
    }

    /// The loaded object, for the heap and goroutine probes to attach to processes
    /// (see [`crate::collect::heap_probes`], [`crate::collect::goroutines`]).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Stops sampling and tracing, so the maps hold still while they are read.
    pub fn stop(&mut self) {
        let names = [
            program_name::CPU_SAMPLE,
            program_name::SYS_ENTER,
            program_name::SYS_EXIT,
            program_name::GO_PARK,
            program_name::GO_READY,
            program_name::SCHED_PROCESS_EXEC,
        ];
        let more = program_name::HEAP.into_iter().chain(program_name::OFFCPU);
        for name in names.into_iter().chain(more) {
            let Some(program) = self.ebpf.program_mut(name) else {
                continue;
            };
            // Unloading a program that was never loaded fails harmlessly.
            let unloaded = match program {
                aya::programs::Program::PerfEvent(p) => p.unload(),
                aya::programs::Program::BtfTracePoint(p) => p.unload(),
                aya::programs::Program::UProbe(p) => p.unload(),
                aya::programs::Program::TracePoint(p) => p.unload(),
                _ => Ok(()),
            };
            if let Err(err) = unloaded {
                log::debug!("cannot unload {name}: {err}");
            }
        }
    }

    /// The ring buffer of process announcements, to poll.
    ///
    /// # Errors
    /// When the map is missing from the object.
    pub fn take_proc_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(map_name::PROC_EVENTS)
            .ok_or_else(|| anyhow!("the eBPF object has no map {}", map_name::PROC_EVENTS))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The ring buffer of stack samples, to poll.
    ///
    /// # Errors
    /// When the map is missing from the object.
    pub fn take_samples(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(map_name::SAMPLES)
            .ok_or_else(|| anyhow!("the eBPF object has no map {}", map_name::SAMPLES))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Moves kernel-side log records to the `log` crate.
    pub fn flush_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .ok_or_else(|| anyhow!("the eBPF object has no map {name}"))
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("the eBPF object has no map {name}"))
    }
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))
}

#[cfg(test)]
mod object_tests;
