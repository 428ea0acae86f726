//! Plain `no_std` types shared by the profiler's eBPF programs and its userspace loader.
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree on the layout
//! of map keys, values and ring-buffer events byte for byte.
#![no_std]

/// Length of a task's command name in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Maximum number of pids the kernel-side target filter holds (targets and their children).
pub const MAX_TARGETS: u32 = 8192;

/// Entries of the CPU aggregation map: distinct (pid, tid, user stack, kernel stack) keys.
pub const MAX_CPU_KEYS: u32 = 65536;

/// Entries of the stack-trace map shared by user and kernel stacks.
pub const MAX_STACKS: u32 = 16384;

/// Entries of the map of pids already announced to userspace.
pub const MAX_SEEN_PIDS: u32 = 32768;

/// Words of the user stack copied with the first sample of each user stack, from which
/// userspace recovers the frames a frame-pointer walk skips (see the profiler's `unwind`).
pub const STACK_TOP_WORDS: usize = 32;

/// Size in bytes of the ring buffer that announces new processes to userspace.
pub const PROC_EVENTS_BYTES: u32 = 256 * 1024;

/// Key of the CPU aggregation map: one sampled (process, thread, stacks) combination.
///
/// A negative stack id is the error `bpf_get_stackid` returned: `-EFAULT` for a kernel
/// thread's missing user stack, `-EEXIST`/`-ENOMEM` for a stack lost to the map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuKey {
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    /// Id of the user stack in the stack-trace map, or a negative error.
    pub user_stack_id: i32,
    /// Id of the kernel stack in the stack-trace map, or a negative error.
    pub kernel_stack_id: i32,
}

/// Value of the CPU aggregation map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CpuValue {
    /// Samples taken with this key.
    pub count: u64,
    /// The thread's command name when first sampled, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// The top of a user stack when a stack was first seen: the stack pointer and the words
/// above it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StackTopRaw {
    /// The user stack pointer.
    pub sp: u64,
    /// `STACK_TOP_WORDS` words from `sp` upwards (zero where unreadable).
    pub words: [u64; STACK_TOP_WORDS],
}

/// Indices of the per-CPU counters the kernel programs keep: what was seen and what was lost.
pub mod counter {
    /// Every run of the sampling program: one per timer tick delivered on any CPU.
    pub const TICKS: u32 = 0;
    /// Ticks that landed on an idle CPU (pid 0), not recorded.
    pub const IDLE: u32 = 1;
    /// Ticks that landed in a process that is not a target, not recorded.
    pub const FILTERED: u32 = 2;
    /// Samples recorded in the aggregation map.
    pub const RECORDED: u32 = 3;
    /// Samples whose user stack was lost: stack-map hash collision or full map.
    pub const LOST_USER_STACK: u32 = 4;
    /// Samples whose kernel stack was lost: stack-map hash collision or full map.
    pub const LOST_KERNEL_STACK: u32 = 5;
    /// Samples lost because the aggregation map was full.
    pub const LOST_AGG_FULL: u32 = 6;
    /// Process announcements lost because the ring buffer was full.
    pub const LOST_PROC_EVENTS: u32 = 7;
    /// Children added to the target filter by the fork tracepoint.
    pub const FORKS_FOLLOWED: u32 = 8;
    /// Children that could not be followed because the target map was full.
    pub const LOST_FORKS: u32 = 9;
    /// Number of counters.
    pub const COUNT: u32 = 10;
}

/// Kinds of [`ProcEvent`].
pub mod proc_event {
    /// A process was sampled for the first time (or for the first time since it exec'd):
    /// userspace should snapshot its memory mappings now, while it lives.
    pub const FIRST_SAMPLE: u32 = 1;
}

/// An announcement from the kernel programs to userspace through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcEvent {
    /// One of the [`proc_event`] kinds.
    pub kind: u32,
    /// The process it concerns.
    pub pid: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers and byte arrays without padding holes.
    unsafe impl aya::Pod for super::CpuKey {}
    // SAFETY: as above: u64 then [u8; 16], no padding.
    unsafe impl aya::Pod for super::CpuValue {}
    // SAFETY: only u64s.
    unsafe impl aya::Pod for super::StackTopRaw {}
}
