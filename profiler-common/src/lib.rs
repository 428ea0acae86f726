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

/// Words of the user stack copied with the first sample of each user stack, from which
/// userspace recovers the frames a frame-pointer walk skips (see the profiler's `unwind`).
pub const STACK_TOP_WORDS: usize = 64;

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
    /// The user `rbp`: a frame pointer, or data in code built without them.
    pub bp: u64,
    /// `STACK_TOP_WORDS` words from `sp` upwards (zero where unreadable).
    pub words: [u64; STACK_TOP_WORDS],
}

/// Entries of the I/O aggregation map: distinct (pid, tid, user stack, syscall) keys.
pub const MAX_IO_KEYS: u32 = 32768;

/// Slots of the in-flight syscall table, indexed by thread id modulo its size.
pub const IN_FLIGHT_SLOTS: u32 = 65536;

/// Buckets of the bytes-per-call histogram: bucket `b` counts calls of `2^(b-1)..2^b` bytes
/// (bucket 0: zero bytes).
pub const IO_HIST_BUCKETS: usize = 34;

/// The read/write-family syscalls the I/O profile traces, in the order of their indices.
pub mod io_syscall {
    /// The syscalls' names, indexed by the syscall index stored in [`super::IoKey`].
    pub const NAMES: [&str; 16] = [
        "read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2",
        "pwritev2", "recvfrom", "sendto", "recvmsg", "sendmsg", "recvmmsg", "sendmmsg",
    ];
    /// Number of traced syscalls.
    pub const COUNT: usize = NAMES.len();
    /// Index of `recvmmsg`, whose result counts messages, not bytes.
    pub const RECVMMSG: u32 = 14;
    /// Index of `sendmmsg`, whose result counts messages, not bytes.
    pub const SENDMMSG: u32 = 15;
}

/// The futex waits the blocking profile traces, numbered after the I/O syscalls in
/// [`InFlight::syscall`].
pub mod futex_syscall {
    /// `futex` with a waiting operation (WAIT, WAIT_BITSET, LOCK_PI, LOCK_PI2,
    /// WAIT_REQUEUE_PI).
    pub const FUTEX: u32 = 16;
    /// `futex_waitv`.
    pub const FUTEX_WAITV: u32 = 17;
    /// `futex_wait` (Linux 6.7).
    pub const FUTEX_WAIT: u32 = 18;
    /// The syscalls' names, indexed by `syscall - FUTEX`.
    pub const NAMES: [&str; 3] = ["futex", "futex_waitv", "futex_wait"];
}

/// A traced syscall that has entered the kernel and not yet returned, per thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    /// The thread, to tell apart threads that share a slot.
    pub tid: u32,
    /// Index of the syscall: [`io_syscall::NAMES`] below 16, then [`futex_syscall`].
    pub syscall: u32,
    /// `bpf_ktime_get_ns` at entry; zero when the slot is free.
    pub start_ns: u64,
    /// The process, for waits still in progress when the run ends.
    pub pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// For futex waits: the futex address and the registers that key the call site.
    pub uaddr: u64,
    /// User instruction pointer at entry (futex waits only).
    pub ip: u64,
    /// User stack pointer at entry (futex waits only).
    pub sp: u64,
    /// User frame pointer at entry, or 0 (futex waits only).
    pub bp: u64,
    /// The return address above that frame, or 0 (futex waits only).
    pub ret: u64,
}

/// One in this many waits of a blocking call site has its full user stack taken (the
/// first always does).
pub const BLOCK_STACK_SAMPLE_EVERY: u64 = 64;

/// Entries of the blocking aggregation map.
pub const MAX_BLOCK_KEYS: u32 = 16384;

/// How a futex wait ended, the index into [`BlockValue`]'s arrays.
pub mod wait_outcome {
    /// Woken by another thread (or the lock was acquired).
    pub const WOKEN: usize = 0;
    /// The timeout expired (`-ETIMEDOUT`).
    pub const TIMED_OUT: usize = 1;
    /// A signal interrupted it (`-EINTR`, `-ERESTARTSYS`).
    pub const INTERRUPTED: usize = 2;
    /// It did not sleep: the futex value had already changed (`-EAGAIN`), or another error.
    pub const NO_WAIT: usize = 3;
    /// Number of outcomes.
    pub const COUNT: usize = 4;
    /// Names for labels, by index.
    pub const NAMES: [&str; COUNT] = ["woken", "timed out", "interrupted", "no wait"];
}

/// Key of the blocking aggregation map: a wait site, keyed by registers like [`IoKey`],
/// and the futex waited on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The futex's user address (for `futex_waitv`, the first waiter's).
    pub uaddr: u64,
    /// User instruction pointer at the syscall.
    pub ip: u64,
    /// User stack pointer at the syscall.
    pub sp: u64,
    /// User frame pointer at the syscall, or 0 when `rbp` held data, not a frame pointer.
    pub bp: u64,
    /// The return address above that frame (`[bp + 8]`): tells apart sibling functions
    /// called from one parent with equal frames. 0 when `bp` is.
    pub ret: u64,
}

/// Key of the map of sampled stacks per blocking call site.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockStackKey {
    /// The wait site.
    pub site: BlockKey,
    /// A user stack id sampled at it, or a negative error as in [`CpuKey`].
    pub user_stack_id: i32,
    /// Reserved, zero.
    pub _pad: u32,
}

/// Value of the blocking aggregation map: waits and their time, by outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockValue {
    /// Completed waits, by [`wait_outcome`].
    pub waits: [u64; wait_outcome::COUNT],
    /// Nanoseconds waited, by [`wait_outcome`].
    pub nanos: [u64; wait_outcome::COUNT],
    /// The thread's command name at the first wait.
    pub comm: [u8; COMM_LEN],
}

/// One in this many calls of an I/O call site has its full user stack taken (the first
/// call always does); every call is counted.
pub const IO_STACK_SAMPLE_EVERY: u64 = 64;

/// Key of the I/O aggregation map: a call site, told apart by the registers that locate
/// the call (no user memory is read to build it, which keeps each call cheap).
///
/// Equal registers almost always mean an equal stack; the stacks sampled for a key (see
/// [`IoStackKey`]) show where they do not.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoKey {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Index into [`io_syscall::NAMES`].
    pub syscall: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// User instruction pointer at the syscall.
    pub ip: u64,
    /// User stack pointer at the syscall.
    pub sp: u64,
    /// User frame pointer at the syscall, or 0 when `rbp` held data, not a frame pointer.
    pub bp: u64,
    /// The return address above that frame (`[bp + 8]`): tells apart sibling functions
    /// called from one parent with equal frames. 0 when `bp` is.
    pub ret: u64,
}

/// Key of the map of sampled stacks per I/O call site.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoStackKey {
    /// The call site.
    pub site: IoKey,
    /// A user stack id sampled at it, or a negative error as in [`CpuKey`].
    pub user_stack_id: i32,
    /// Reserved, zero.
    pub _pad: u32,
}

/// Value of the I/O aggregation map: what the calls with one key did.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoValue {
    /// Calls made.
    pub calls: u64,
    /// Bytes transferred by the calls that succeeded (messages for `*mmsg`).
    pub bytes: u64,
    /// Nanoseconds spent inside the syscalls.
    pub nanos: u64,
    /// Calls that failed (negative result).
    pub errors: u64,
    /// The descriptor of the first call, to tell what it was (file, socket, pipe...).
    pub fd: i64,
    /// The thread's command name at the first call.
    pub comm: [u8; COMM_LEN],
    /// Calls by log2 of their byte count, see [`IO_HIST_BUCKETS`].
    pub hist: [u64; IO_HIST_BUCKETS],
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
    /// Traced I/O syscalls recorded.
    pub const IO_CALLS: u32 = 10;
    /// I/O syscalls lost because the I/O aggregation map was full.
    pub const LOST_IO_FULL: u32 = 11;
    /// Traced syscalls (I/O or futex) whose entry was overwritten by another thread sharing
    /// its in-flight slot.
    pub const LOST_SLOT: u32 = 12;
    /// Stack samples of I/O call sites lost to the stack map or a full sample map.
    pub const LOST_IO_STACK: u32 = 13;
    /// Futex waits recorded.
    pub const BLOCK_WAITS: u32 = 14;
    /// Futex waits lost because the blocking map was full.
    pub const LOST_BLOCK_FULL: u32 = 15;
    /// Stack samples of wait sites lost to the stack map or a full sample map.
    pub const LOST_BLOCK_STACK: u32 = 16;
    /// Number of counters.
    pub const COUNT: u32 = 17;
}

/// Kinds of [`ProcEvent`].
pub mod proc_event {
    /// A process recorded a new stack or call site: userspace reads its memory mappings
    /// again if they do not cover the stack's instruction pointer (new code was mapped, such
    /// as the C library after the dynamic loader), and the kind of its descriptor.
    pub const NEW_KEY: u32 = 1;
}

/// An announcement from the kernel programs to userspace through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcEvent {
    /// One of the [`proc_event`] kinds.
    pub kind: u32,
    /// The process it concerns.
    pub pid: u32,
    /// The user instruction pointer of the new stack: if the process's mapping snapshot
    /// already covers it, nothing needs reading again.
    pub ip: u64,
    /// The descriptor of a new I/O call site, or -1: its kind is read while it is open.
    pub fd: i64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers and byte arrays without padding holes.
    unsafe impl aya::Pod for super::CpuKey {}
    // SAFETY: as above: u64 then [u8; 16], no padding.
    unsafe impl aya::Pod for super::CpuValue {}
    // SAFETY: only u64s.
    unsafe impl aya::Pod for super::StackTopRaw {}
    // SAFETY: four u32s, then u64s: no padding.
    unsafe impl aya::Pod for super::IoKey {}
    // SAFETY: an IoKey (8-aligned, 48 bytes), then two u32s: no padding.
    unsafe impl aya::Pod for super::IoStackKey {}
    // SAFETY: two u32s, then u64s: no padding.
    unsafe impl aya::Pod for super::BlockKey {}
    // SAFETY: a BlockKey (8-aligned, 48 bytes), then two u32s: no padding.
    unsafe impl aya::Pod for super::BlockStackKey {}
    // SAFETY: u64 arrays, then 16 bytes: no padding.
    unsafe impl aya::Pod for super::BlockValue {}
    // SAFETY: u32 pairs and u64s, no padding.
    unsafe impl aya::Pod for super::InFlight {}
    // SAFETY: u64s, then 16 bytes, then u64s: no padding.
    unsafe impl aya::Pod for super::IoValue {}
}
