//! The names by which userspace finds the kernel programs' maps, programs and load-time
//! globals in the eBPF object.
//!
//! The eBPF crate names each of them by its Rust item (aya's `#[map]` and program macros,
//! `#[unsafe(no_mangle)]` statics), which cannot take a constant; the tests in the
//! profiler's `collect/probes/object_tests.rs` tie the built object to these lists both
//! ways, and each map's key and value to the types of this crate.

/// Maps, by the name of their `#[map]` static.
pub mod map_name {
    /// The target filter (tgid -> 1).
    pub const TARGETS: &str = "TARGETS";
    /// Go processes (tgid -> 1), filled by userspace: their CPU samples carry their
    /// frame-pointer chain too ([`crate::sample_flag::GO_FRAMES`]).
    pub const GO_PROCESSES: &str = "GO_PROCESSES";
    /// CPython processes (tgid -> [`crate::PythonProcess`]), filled by userspace: their
    /// CPU samples carry their Python frames ([`crate::sample_flag::PYTHON_FRAMES`]).
    pub const PYTHON_PROCESSES: &str = "PYTHON_PROCESSES";
    /// The thread states of CPython threads (tid -> `PyThreadState` address).
    pub const PYTHON_THREADS: &str = "PYTHON_THREADS";
    /// Where a sample is built before it is sent, sized per CPU at load.
    pub const SAMPLE_SCRATCH: &str = "SAMPLE_SCRATCH";
    /// The stack-sample ring buffer, sized from the rate at load.
    pub const SAMPLES: &str = "SAMPLES";
    /// The per-CPU counters ([`crate::counter`]).
    pub const COUNTERS: &str = "COUNTERS";
    /// The ring buffer of process announcements ([`crate::ProcEvent`]).
    pub const PROC_EVENTS: &str = "PROC_EVENTS";
    /// The I/O aggregation map ([`crate::IoKey`] -> [`crate::IoValue`]).
    pub const IO_CALLS: &str = "IO_CALLS";
    /// The I/O programs' per-CPU scratch value.
    pub const IO_SCRATCH: &str = "IO_SCRATCH";
    /// Which way data last moved on each descriptor of a target ([`crate::IoFdKey`] ->
    /// [`crate::io_direction`]), to count the calls that turn it around.
    pub const IO_DIRECTIONS: &str = "IO_DIRECTIONS";
    /// The blocking aggregation map ([`crate::BlockKey`] -> [`crate::BlockValue`]).
    pub const BLOCK_WAITS: &str = "BLOCK_WAITS";
    /// Who woke futex waits, by site ([`crate::BlockWakeKey`] -> [`crate::BlockWake`]).
    pub const BLOCK_WAKERS: &str = "BLOCK_WAKERS";
    /// The window futex waits are counted in: `[start, end]` on the kernel's monotonic
    /// clock, 0 while not yet opened or closed.
    pub const BLOCK_WINDOW: &str = "BLOCK_WINDOW";
    /// Threads in a futex wait (`task_struct` address -> their waker, `pid << 32 | tid`,
    /// or 0 until one wakes them).
    pub const FUTEX_SLEEPERS: &str = "FUTEX_SLEEPERS";
    /// Traced syscalls in progress ([`crate::InFlight`]).
    pub const IN_FLIGHT: &str = "IN_FLIGHT";
    /// Native allocation sites ([`crate::HeapSiteKey`] -> [`crate::HeapSiteValue`]).
    pub const HEAP_SITES: &str = "HEAP_SITES";
    /// Blocks allocated in the window and still live ([`crate::HeapLiveKey`] ->
    /// [`crate::HeapLive`]).
    pub const HEAP_LIVE: &str = "HEAP_LIVE";
    /// Allocations whose return is awaited ([`crate::HeapPending`]).
    pub const HEAP_PENDING: &str = "HEAP_PENDING";
    /// Goroutines parked and not yet made ready ([`crate::ParkedKey`] -> [`crate::Parked`]).
    pub const PARKED: &str = "PARKED";
    /// The goroutine wait aggregation map ([`crate::GoWaitKey`] -> [`crate::GoWaitValue`]).
    pub const GO_WAITS: &str = "GO_WAITS";
    /// The off-CPU aggregation map ([`crate::OffCpuKey`] -> [`crate::OffCpuValue`]).
    pub const OFFCPU_SITES: &str = "OFFCPU_SITES";
    /// Threads the off-CPU programs follow (`task_struct` address ->
    /// [`crate::OffCpuThread`]).
    pub const OFFCPU_THREADS: &str = "OFFCPU_THREADS";
    /// Threads that exited in the window (pid << 32 | tid -> [`crate::OffCpuThread`]).
    pub const OFFCPU_DONE: &str = "OFFCPU_DONE";
    /// Each CPU's latest switch-in ([`crate::OffCpuSwitchIn`]).
    pub const OFFCPU_SWITCH_IN: &str = "OFFCPU_SWITCH_IN";
    /// The window's end (`bpf_ktime_get_ns`), written by userspace when it closes: nothing
    /// after it is added.
    pub const OFFCPU_WINDOW_END: &str = "OFFCPU_WINDOW_END";
    /// Each CPU's off-CPU stack-sample budget for the current second.
    pub const OFFCPU_RATE: &str = "OFFCPU_RATE";
    /// Where the off-CPU programs build a new thread's state ([`crate::OffCpuThread`]).
    pub const OFFCPU_NEW_THREAD: &str = "OFFCPU_NEW_THREAD";

    /// Every map of the profiler's own (aya-log's and the data sections' are not).
    pub const ALL: [&str; 28] = [
        TARGETS,
        GO_PROCESSES,
        PYTHON_PROCESSES,
        PYTHON_THREADS,
        SAMPLE_SCRATCH,
        SAMPLES,
        COUNTERS,
        PROC_EVENTS,
        IO_CALLS,
        IO_SCRATCH,
        IO_DIRECTIONS,
        BLOCK_WAITS,
        BLOCK_WAKERS,
        BLOCK_WINDOW,
        FUTEX_SLEEPERS,
        IN_FLIGHT,
        HEAP_SITES,
        HEAP_LIVE,
        HEAP_PENDING,
        PARKED,
        GO_WAITS,
        OFFCPU_SITES,
        OFFCPU_THREADS,
        OFFCPU_DONE,
        OFFCPU_SWITCH_IN,
        OFFCPU_WINDOW_END,
        OFFCPU_RATE,
        OFFCPU_NEW_THREAD,
    ];
}

/// Programs, by the name of their function.
pub mod program_name {
    /// The `cpu-clock` sampler.
    pub const CPU_SAMPLE: &str = "cpu_sample";
    /// The fork tracepoint: follows targets' children (named after its tracepoint, to
    /// which userspace attaches it by this name).
    pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
    /// The exit tracepoint: forgets exited targets (named after its tracepoint).
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    /// The exec tracepoint: announces new programs (named after its tracepoint).
    pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    /// The BTF `sys_enter` tracepoint of the I/O and blocking profiles.
    pub const SYS_ENTER: &str = "sys_enter";
    /// The BTF `sys_exit` tracepoint of the I/O and blocking profiles.
    pub const SYS_EXIT: &str = "sys_exit";
    /// The BTF `sched_waking` tracepoint of the blocking profile: who woke a futex wait.
    pub const FUTEX_WAKING: &str = "futex_waking";
    /// The uprobe on an allocator entry point.
    pub const HEAP_ALLOC: &str = "heap_alloc";
    /// The uretprobe on an allocator entry point.
    pub const HEAP_ALLOC_RETURN: &str = "heap_alloc_return";
    /// The uprobe on a free entry point.
    pub const HEAP_FREE: &str = "heap_free";
    /// The uprobe on the heap interposer's stack marker.
    pub const HEAP_PRELOAD_STACK: &str = "heap_preload_stack";
    /// The uprobe on the Go runtime's sampled allocations.
    pub const GO_MALLOC: &str = "go_malloc";
    /// The uprobe on the Go runtime's frees of sampled objects.
    pub const GO_FREE: &str = "go_free";
    /// The uprobe on `runtime.gopark`.
    pub const GO_PARK: &str = "go_park";
    /// The uprobe on `runtime.ready`.
    pub const GO_READY: &str = "go_ready";
    /// The BTF `sched_switch` tracepoint of the off-CPU profile.
    pub const SCHED_SWITCH: &str = "sched_switch";
    /// The BTF `sched_waking` tracepoint of the off-CPU profile: who woke a wait.
    pub const SCHED_WAKING: &str = "sched_waking";
    /// The BTF `sched_wakeup_new` tracepoint of the off-CPU profile: a thread's birth.
    pub const SCHED_WAKEUP_NEW: &str = "sched_wakeup_new";

    /// The off-CPU profile's programs, named after their BTF tracepoints.
    pub const OFFCPU: [&str; 3] = [SCHED_SWITCH, SCHED_WAKING, SCHED_WAKEUP_NEW];

    /// The heap profile's programs.
    pub const HEAP: [&str; 6] = [
        HEAP_ALLOC,
        HEAP_ALLOC_RETURN,
        HEAP_FREE,
        HEAP_PRELOAD_STACK,
        GO_MALLOC,
        GO_FREE,
    ];

    /// Every program.
    pub const ALL: [&str; 18] = [
        CPU_SAMPLE,
        SCHED_PROCESS_FORK,
        SCHED_PROCESS_EXIT,
        SCHED_PROCESS_EXEC,
        SYS_ENTER,
        SYS_EXIT,
        FUTEX_WAKING,
        HEAP_ALLOC,
        HEAP_ALLOC_RETURN,
        HEAP_FREE,
        HEAP_PRELOAD_STACK,
        GO_MALLOC,
        GO_FREE,
        GO_PARK,
        GO_READY,
        SCHED_SWITCH,
        SCHED_WAKING,
        SCHED_WAKEUP_NEW,
    ];
}

/// Globals userspace sets at load time, by the name of their `#[unsafe(no_mangle)]` static.
pub mod global_name {
    /// Non-zero when only the targets are profiled (`u8`).
    pub const FILTER_PIDS: &str = "FILTER_PIDS";
    /// Offset of `child_pid` in the `sched_process_fork` record (`u32`).
    pub const FORK_CHILD_PID_OFFSET: &str = "FORK_CHILD_PID_OFFSET";
    /// Non-zero when the I/O profile is collected (`u8`).
    pub const TRACE_IO: &str = "TRACE_IO";
    /// Non-zero when the blocking profile is collected (`u8`).
    pub const TRACE_BLOCK: &str = "TRACE_BLOCK";
    /// How user stacks are taken, one of [`crate::stack_mode`] (`u8`).
    pub const STACK_MODE: &str = "STACK_MODE";
    /// Bytes of user stack copied per sample in DWARF mode (`u32`).
    pub const USER_STACK_BYTES: &str = "USER_STACK_BYTES";
    /// Data waiting in the sample ring buffer above which a sample wakes userspace (`u64`).
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// The profiler's own process id, whose records are never wanted (`u32`).
    pub const PROFILER_TGID: &str = "PROFILER_TGID";

    /// Every global userspace sets (aya-log's `AYA_LOG_LEVEL` is aya-log's own).
    pub const ALL: [&str; 8] = [
        FILTER_PIDS,
        FORK_CHILD_PID_OFFSET,
        TRACE_IO,
        TRACE_BLOCK,
        STACK_MODE,
        USER_STACK_BYTES,
        WAKEUP_BYTES,
        PROFILER_TGID,
    ];
}
