//! Plain `no_std` types shared by the profiler's eBPF programs and its userspace loader.
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree on the layout
//! of map keys, values and ring-buffer events byte for byte.
#![no_std]

mod block;
mod go_labels;
mod heap;
mod io;
mod names;
mod offcpu;
mod python;
pub use block::*;
pub use go_labels::*;
pub use heap::*;
pub use io::*;
pub use names::*;
pub use offcpu::*;
pub use python::*;

/// Length of a task's command name in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Maximum number of pids the kernel-side target filter holds (targets and their children).
pub const MAX_TARGETS: u32 = 8192;

/// Size in bytes of the ring buffer that announces new call sites to userspace.
pub const PROC_EVENTS_BYTES: u32 = 256 * 1024;

/// Frames of a kernel stack a sample carries (the kernel's `PERF_MAX_STACK_DEPTH`).
pub const MAX_KERNEL_FRAMES: usize = 127;

/// Frames of a user stack a sample carries in frame-pointer mode.
pub const MAX_USER_FRAMES: usize = 127;

/// Largest copy of the user stack a sample can carry (`--call-graph dwarf,SIZE`).
pub const MAX_USER_STACK_BYTES: usize = 65536;

/// Bytes at the start of a Go process's CPU sample's user part that hold its frame-pointer
/// chain, zero padded, before the stack copy ([`sample_flag::GO_FRAMES`]).
pub const GO_FRAMES_BYTES: usize = MAX_USER_FRAMES * 8;

/// Room for a sample's user part: the largest stack copy, after a Go process's labels and
/// frame-pointer chain ([`sample_flag::GO_LABELS`], [`sample_flag::GO_FRAMES`]).
pub const USER_AREA_BYTES: usize = GO_LABELS_BYTES + GO_FRAMES_BYTES + MAX_USER_STACK_BYTES;

/// Default size of the stack-sample ring buffer; userspace sizes it from the rate at load.
pub const SAMPLE_RING_BYTES: u32 = 8 << 20;

/// Kinds of [`SampleHeader`]: which profile a sample belongs to.
pub mod sample_kind {
    /// A CPU sample (`cpu-clock` tick).
    pub const CPU: u32 = 1;
    /// A sampled call of an I/O call site ([`super::SampleHeader::io_site`]).
    pub const IO: u32 = 2;
    /// A sampled wait of a blocking site ([`super::SampleHeader::block_site`]).
    pub const BLOCK: u32 = 3;
    /// A sampled call of a native allocation site ([`super::SampleHeader::heap`]).
    pub const HEAP: u32 = 4;
    /// An allocation the Go runtime sampled for its own heap profile
    /// ([`super::SampleHeader::heap`] holds its pointer and size).
    pub const GO_ALLOC: u32 = 5;
    /// An object the Go runtime freed that it had sampled ([`super::SampleHeader::heap`]
    /// holds its pointer and size); no stack is taken.
    pub const GO_FREE: u32 = 6;
    /// A sampled park of a goroutine ([`super::SampleHeader::go_site`]).
    pub const GO_WAIT: u32 = 7;
    /// A sampled call of a native allocation site counted by the `-- COMMAND` interposer
    /// ([`super::SampleHeader::heap`]); taken in its marker function, whose frame is the
    /// leaf and is not the program's.
    pub const HEAP_PRELOAD: u32 = 8;
    /// A sampled off-CPU wait at its switch-out, with the thread's kernel stack
    /// ([`super::SampleHeader::offcpu`] holds its site and number).
    pub const OFFCPU: u32 = 9;
    /// A sampled off-CPU wait that ended: no stack, only its times and waker
    /// ([`super::SampleHeader::offcpu`]).
    pub const OFFCPU_END: u32 = 10;
    /// The stacks of the thread that woke a sampled wait ([`super::SampleHeader::offcpu`]
    /// names the wakee and its wait).
    pub const OFFCPU_WAKER: u32 = 11;
}

/// Bits of [`SampleHeader::flags`].
pub mod sample_flag {
    /// The user part holds frame addresses (frame-pointer mode), not a stack copy.
    pub const USER_FRAMES: u32 = 1;
    /// The stack copy is shorter than asked because the thread's stack ends there: whatever
    /// lies beyond it is not stack.
    pub const STACK_ENDS: u32 = 2;
    /// The user stack could not be read at all.
    pub const USER_UNREADABLE: u32 = 4;
    /// The thread has no user context (a kernel thread): no user stack, and none lost.
    pub const NO_USER: u32 = 8;
    /// A Go process's CPU sample: the user part starts with [`super::GO_FRAMES_BYTES`] of
    /// frame-pointer frames (zero padded), and the stack copy follows. Go switches stacks
    /// (to the system stack, to call the vDSO), which the copy from `sp` does not hold;
    /// its frame pointers lead on into the goroutine's stack.
    pub const GO_FRAMES: u32 = 16;
    /// A Go process's sample taken while its goroutine had profiler labels: the user part
    /// starts with a [`super::GoLabels`] ([`super::GO_LABELS_BYTES`]), and what it would
    /// hold otherwise (frame-pointer chain, stack copy or frames) follows.
    pub const GO_LABELS: u32 = 32;
    /// A CPython thread's sample (of any kind): the user part starts with a
    /// [`super::PythonFrames`] ([`super::PYTHON_FRAMES_BYTES`]), and the stack copy follows.
    pub const PYTHON_FRAMES: u32 = 64;
}

/// How user stacks are taken, set by userspace at load time (`--call-graph`).
pub mod stack_mode {
    /// Copy the user stack for userspace to unwind from call frame information.
    pub const DWARF: u8 = 0;
    /// Walk frame pointers in the kernel; no stack copy.
    pub const FP: u8 = 1;
}

/// The fixed part of one stack sample sent through the ring buffer; the kernel frames and
/// the user stack follow it (see [`SampleRecord`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SampleHeader {
    /// One of [`sample_kind`].
    pub kind: u32,
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    /// Bits of [`sample_flag`].
    pub flags: u32,
    /// Bytes of kernel frames in [`SampleRecord::kernel`] (8 per frame).
    pub kernel_bytes: u32,
    /// Bytes of [`SampleRecord::user`] that were filled: stack copy or frames.
    pub user_bytes: u32,
    /// `bpf_ktime_get_ns` when the sample was taken.
    pub time_ns: u64,
    /// User instruction pointer.
    pub ip: u64,
    /// User stack pointer: the address of the first byte of the stack copy.
    pub sp: u64,
    /// User frame pointer (`rbp`), or data in code built without one.
    pub bp: u64,
    /// The thread's command name, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// The call site, for [`sample_kind::IO`].
    pub io_site: IoKey,
    /// The wait site, for [`sample_kind::BLOCK`].
    pub block_site: BlockKey,
    /// The allocation, for [`sample_kind::HEAP`], [`sample_kind::GO_ALLOC`] and
    /// [`sample_kind::GO_FREE`].
    pub heap: HeapEvent,
    /// The goroutine's wait site, for [`sample_kind::GO_WAIT`].
    pub go_site: GoWaitKey,
    /// The wait, for [`sample_kind::OFFCPU`], [`sample_kind::OFFCPU_END`] and
    /// [`sample_kind::OFFCPU_WAKER`].
    pub offcpu: OffCpuWait,
}

/// Bytes of a record before its user part: the header and the kernel frames, always sent.
pub const SAMPLE_FIXED_BYTES: usize = size_of::<SampleHeader>() + MAX_KERNEL_FRAMES * 8;

/// Slots of the kernel's sample scratch array per CPU: one per kind of program that builds
/// samples (the CPU sampler, the syscall tracepoints, the uprobes, the context switch and
/// the wakeup).
pub const SCRATCH_SLOTS_PER_CPU: u32 = 5;

/// One stack sample as the kernel builds it; only its first [`SAMPLE_FIXED_BYTES`] plus
/// `header.user_bytes` bytes are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SampleRecord {
    /// What, where and whose.
    pub header: SampleHeader,
    /// Kernel return addresses, leaf first.
    pub kernel: [u64; MAX_KERNEL_FRAMES],
    /// The user stack from `sp` upwards, or user frames in frame-pointer mode; in a Go
    /// process's sample, after its labels and frame-pointer chain where it has them.
    pub user: [u8; USER_AREA_BYTES],
}

/// Slots of the in-flight syscall table, indexed by thread id modulo its size.
pub const IN_FLIGHT_SLOTS: u32 = 65536;

/// Whether two strings are equal, in a constant.
pub(crate) const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The futex waits the blocking profile traces, numbered after the I/O syscalls in
/// [`InFlight::syscall`].
pub mod futex_syscall {
    /// `futex` with a waiting operation (WAIT, WAIT_BITSET, LOCK_PI, LOCK_PI2,
    /// WAIT_REQUEUE_PI).
    pub const FUTEX: u32 = 21;
    /// `futex_waitv`.
    pub const FUTEX_WAITV: u32 = 22;
    /// `futex_wait` (Linux 6.7).
    pub const FUTEX_WAIT: u32 = 23;
    /// The syscalls' names, indexed by `syscall - FUTEX`.
    pub const NAMES: [&str; 3] = ["futex", "futex_waitv", "futex_wait"];

    // Numbered right after the I/O syscalls, in the order of `NAMES`: the kernel programs
    // tell the two profiles apart by `syscall >= FUTEX`.
    const _: () = {
        assert!(FUTEX as usize == super::io_syscall::COUNT);
        assert!(super::str_eq(
            NAMES[(FUTEX_WAITV - FUTEX) as usize],
            "futex_waitv"
        ));
        assert!(super::str_eq(
            NAMES[(FUTEX_WAIT - FUTEX) as usize],
            "futex_wait"
        ));
    };
}

/// A traced syscall that has entered the kernel and not yet returned, per thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    /// The thread, to tell apart threads that share a slot.
    pub tid: u32,
    /// Index of the syscall: [`io_syscall::NAMES`] below [`futex_syscall::FUTEX`], then
    /// [`futex_syscall`].
    pub syscall: u32,
    /// `bpf_ktime_get_ns` at entry; zero when the slot is free.
    pub start_ns: u64,
    /// The process, for waits still in progress when the run ends.
    pub pid: u32,
    /// The syscall's number at entry: an exit whose number differs is another call's,
    /// entered before the exit program was attached.
    pub nr: u32,
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
    /// A hash of the innermost Python frames of a CPython thread's futex wait, or 0 (see
    /// [`BlockKey::python`]).
    pub python: u64,
    /// What the call asked for (I/O calls only): bytes, or messages for the `*mmsg` calls.
    pub requested: u64,
    /// What the thread's process was found to be, bits of [`thread_fact`]: kept in the slot
    /// from one traced call of the thread to its next, which then need not look it up.
    pub facts: u32,
    /// Traced calls of the thread that may still use [`Self::facts`] before they are looked
    /// up again.
    pub facts_left: u32,
}

/// Bits of [`InFlight::facts`].
pub mod thread_fact {
    /// The process is profiled.
    pub const TARGET: u32 = 1;
    /// The process runs Go (userspace found it so): its I/O call sites are keyed without
    /// [`IoKey::ret`](crate::IoKey::ret).
    pub const GO: u32 = 2;
    /// Traced calls a thread makes on its facts before they are looked up again: the target
    /// lookup on every call was a third of the entry program's time on a Go HTTP service,
    /// and a fact that changes (a process taken out of the targets, found to run Go, or that
    /// executes another program) is out of date for at most this many of a thread's calls.
    pub const CALLS: u32 = 256;
}

/// Indices of the per-CPU counters the kernel programs keep: what was seen and what was lost.
pub mod counter {
    /// Every run of the sampling program: one per timer tick delivered on any CPU.
    pub const TICKS: u32 = 0;
    /// Ticks that landed on an idle CPU (pid 0), not recorded.
    pub const IDLE: u32 = 1;
    /// Ticks that landed in a process that is not a target, not recorded.
    pub const FILTERED: u32 = 2;
    /// CPU samples sent to userspace.
    pub const RECORDED: u32 = 3;
    /// CPU samples lost because the sample ring buffer was full.
    pub const LOST_CPU_SAMPLES: u32 = 4;
    /// Samples whose user stack could not be read at all (sent without it).
    pub const USER_STACK_UNREADABLE: u32 = 5;
    /// CPU samples whose kernel stack could not be taken (sent without it).
    pub const LOST_KERNEL_STACK: u32 = 6;
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
    /// Stack samples of I/O call sites lost because the sample ring buffer was full.
    pub const LOST_IO_STACK: u32 = 13;
    /// Futex waits recorded.
    pub const BLOCK_WAITS: u32 = 14;
    /// Futex waits lost because the blocking map was full.
    pub const LOST_BLOCK_FULL: u32 = 15;
    /// Stack samples of wait sites lost because the sample ring buffer was full.
    pub const LOST_BLOCK_STACK: u32 = 16;
    /// Stack samples of I/O call sites sent to userspace.
    pub const IO_STACKS: u32 = 17;
    /// Stack samples of wait sites sent to userspace.
    pub const BLOCK_STACKS: u32 = 18;
    /// Vector calls with more than [`super::MAX_IOVECS`] iovecs, whose bytes requested count
    /// only the first ones.
    pub const IO_REQUESTED_PARTIAL: u32 = 19;
    /// Native allocations counted (malloc family and known allocators).
    pub const HEAP_ALLOCS: u32 = 20;
    /// Native allocations lost because the allocation-site map was full.
    pub const LOST_HEAP_SITES: u32 = 21;
    /// Allocations counted but not tracked as live (the live table was full): their
    /// in-use figures are missing.
    pub const LOST_HEAP_LIVE: u32 = 22;
    /// Allocation returns not paired with their entry (another thread took the slot).
    pub const LOST_HEAP_SLOT: u32 = 23;
    /// Stack samples of allocation sites sent to userspace.
    pub const HEAP_STACKS: u32 = 24;
    /// Stack samples of allocation sites lost because the sample ring buffer was full.
    pub const LOST_HEAP_STACK: u32 = 25;
    /// Frees of blocks allocated in the window.
    pub const HEAP_FREES: u32 = 26;
    /// Frees (or reallocs) of blocks not allocated in the window, not counted.
    pub const HEAP_FREES_UNKNOWN: u32 = 27;
    /// Allocations the Go runtime sampled (its profiling events).
    pub const GO_ALLOCS: u32 = 28;
    /// Go allocation or free events lost because the sample ring buffer was full.
    pub const LOST_GO_EVENTS: u32 = 29;
    /// Goroutine waits recorded (parked, then made ready).
    pub const GO_WAITS: u32 = 30;
    /// Goroutine waits lost because the goroutine wait map was full.
    pub const LOST_GO_WAIT_FULL: u32 = 31;
    /// Goroutine parks lost because the table of parked goroutines was full.
    pub const LOST_GO_PARKED_FULL: u32 = 32;
    /// Goroutines that parked again before their previous park's end was seen (the
    /// runtime readied them without `runtime.ready`, as the network poller does): that
    /// wait's time is unknown and not counted.
    pub const GO_END_UNSEEN: u32 = 33;
    /// Stack samples of goroutine waits sent to userspace.
    pub const GO_STACKS: u32 = 34;
    /// Stack samples of goroutine waits lost because the sample ring buffer was full.
    pub const LOST_GO_STACK: u32 = 35;
    /// Off-CPU stack samples sent (waits and wakers).
    pub const OFFCPU_STACKS: u32 = 36;
    /// Off-CPU stack samples lost because the ring buffer was full.
    pub const LOST_OFFCPU_STACK: u32 = 37;
    /// Off-CPU stack samples not taken to keep a CPU under its rate.
    pub const OFFCPU_STACKS_RATE_LIMITED: u32 = 38;
    /// Times a thread's waits at one site could not be added to the site (map full):
    /// their time is in the thread's budget only.
    pub const LOST_OFFCPU_SITES_FULL: u32 = 39;
    /// Threads the off-CPU programs could not follow (map full).
    pub const LOST_OFFCPU_THREADS_FULL: u32 = 40;
    /// Exited threads whose budget could not be kept (map full).
    pub const LOST_OFFCPU_DONE_FULL: u32 = 41;
    /// Ends of sampled waits lost because the ring buffer was full.
    pub const LOST_OFFCPU_END: u32 = 42;
    /// Futex waits whose waker could not be kept (a wakers table was full).
    pub const LOST_BLOCK_WAKERS: u32 = 43;
    /// Hits of the `runtime.gopark` probe in any process running a probed Go binary
    /// (each is a trap the process pays, target or not).
    pub const GO_PARK_HITS: u32 = 44;
    /// Hits of the `runtime.ready` probe, likewise.
    pub const GO_READY_HITS: u32 = 45;
    /// Number of counters.
    pub const COUNT: u32 = 46;
}

/// The cookie of a goroutine probe: the offset of `goid` in the binary's `g`, and flags.
pub mod go_probe_cookie {
    /// The probe is on the `jbe` of the function's stack check: a hit whose branch is
    /// about to be taken (to `morestack`, which comes back to the function's start) is
    /// skipped, so each call counts once.
    pub const AT_STACK_CHECK: u64 = 1 << 63;
    /// The bits that hold the offset of `goid`.
    pub const GOID_OFFSET: u64 = 0xffff_ffff;
}

/// Return addresses of a parking goroutine's stack that its site's hash covers: stacks
/// that differ only deeper are one site.
pub const GO_STACK_HASH_FRAMES: usize = 64;

/// Entries of the goroutine wait aggregation map.
pub const MAX_GO_WAIT_KEYS: u32 = 16384;

/// Goroutines the kernel programs can hold as parked at once.
pub const MAX_PARKED_GOROUTINES: u32 = 65536;

/// Key of the goroutine wait aggregation map: a goroutine's park site, keyed by
/// registers like [`BlockKey`] (no stack is walked in the kernel), and why it parked.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoWaitKey {
    /// Process id.
    pub pid: u32,
    /// The runtime's `waitReason`, an index into the binary's `runtime.waitReasonStrings`.
    pub reason: u32,
    /// A hash of the parking goroutine's stack: the return address at `runtime.gopark`'s
    /// entry, then every return address its frame pointers lead to (at most
    /// [`GO_STACK_HASH_FRAMES`]). Waits at one stack are one site, so totals are exact per
    /// distinct blocking call, and the runtime's waits never mix with the user's.
    pub stack: u64,
    /// A hash of the contents of the goroutine's profiler labels (`pprof.Do`), 0 for none
    /// or when they are not read: the same stack under other labels is another site, so
    /// the site's one stack sample carries labels true of all its waits.
    pub labels: u64,
}

/// Value of the goroutine wait aggregation map: finished waits of one site.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GoWaitValue {
    /// Waits that ended (the goroutine was made ready).
    pub waits: u64,
    /// Nanoseconds from park to ready, summed.
    pub nanos: u64,
    /// The goroutine id (`g.goid`) of the site's first park.
    pub first_goid: u64,
    /// Waits that ended of goroutines other than the first: more than zero means several
    /// goroutines waited at the site.
    pub others: u64,
    /// Whether the site's stack reached userspace (a stack lost to a full ring buffer is
    /// sent again at the site's next park).
    pub stack_sent: u64,
    /// The parking thread's command name at the first wait.
    pub comm: [u8; COMM_LEN],
}

/// Key of the table of parked goroutines: the goroutine's `g` in its process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParkedKey {
    /// Process id.
    pub pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// Address of the goroutine's `g` (R14 at `runtime.gopark`, RAX at `runtime.ready`).
    pub g: u64,
}

/// A goroutine parked and not yet made ready.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Parked {
    /// `bpf_ktime_get_ns` at the park.
    pub start_ns: u64,
    /// The goroutine id (`g.goid`).
    pub goid: u64,
    /// Where and why it parked.
    pub site: GoWaitKey,
}

/// Kinds of [`ProcEvent`].
pub mod proc_event {
    /// A process recorded a new stack or call site: userspace reads its memory mappings
    /// again if they do not cover the stack's instruction pointer (new code was mapped, such
    /// as the C library after the dynamic loader), and the kind of its descriptor.
    pub const NEW_KEY: u32 = 1;
    /// A process (or thread) was forked from [`super::ProcEvent::parent`]: until it maps
    /// anything of its own, its mappings are its parent's.
    pub const FORK: u32 = 2;
    /// A target executed a new program: userspace checks whether it is a Go binary whose
    /// goroutines to trace.
    pub const EXEC: u32 = 3;
    /// A process moved data on a descriptor number it had not used before in the run:
    /// userspace reads the kinds of its descriptors while this one is likely still open
    /// (a call site keeps the descriptor of its first call, often a connection closed by
    /// the end: redis's sites were first used by a short `INFO` connection).
    pub const NEW_FD: u32 = 4;
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
    /// For [`proc_event::FORK`], the forking process; else 0.
    pub parent: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

// The layouts both sides rely on: no padding anywhere (checked where it could hide).
const _: () = {
    assert!(size_of::<InFlight>() == 88);
    assert!(size_of::<BlockKey>() == 56);
    assert!(size_of::<IoKey>() == 48);
    assert!(size_of::<BlockValue>() == 88);
    assert!(size_of::<BlockWakeKey>() == 64);
    assert!(size_of::<BlockWake>() == 24);
    assert!(size_of::<IoValue>() == 88);
    assert!(size_of::<IoFdKey>() == 16);
    assert!(size_of::<ProcEvent>() == 32);
    assert!(size_of::<SampleHeader>() == 256 + 80);
    assert!(size_of::<GoWaitKey>() == 24);
    assert!(size_of::<GoWaitValue>() == 56);
    assert!(size_of::<ParkedKey>() == 16);
    assert!(size_of::<Parked>() == 40);
    assert!(size_of::<SampleRecord>() == SAMPLE_FIXED_BYTES + USER_AREA_BYTES);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: u16s and bytes, no padding (size asserted in go_labels.rs).
    unsafe impl aya::Pod for super::GoProcess {}
    // SAFETY: u16s, no padding (size asserted in python.rs).
    unsafe impl aya::Pod for super::PythonProcess {}
    // SAFETY: four u32s, then u64s: no padding (size asserted above).
    unsafe impl aya::Pod for super::IoKey {}
    // SAFETY: two u32s, then u64s: no padding (size asserted above).
    unsafe impl aya::Pod for super::BlockKey {}
    // SAFETY: u64 arrays, then 16 bytes: no padding (size asserted above).
    unsafe impl aya::Pod for super::BlockValue {}
    // SAFETY: a BlockKey, then two u32s: no padding (size asserted above).
    unsafe impl aya::Pod for super::BlockWakeKey {}
    // SAFETY: repr(C), plain integers, no padding.
    unsafe impl aya::Pod for super::BlockWake {}
    // SAFETY: u32 pairs and u64s, no padding (size asserted above).
    unsafe impl aya::Pod for super::InFlight {}
    // SAFETY: u64s, then 16 bytes, then u64s: no padding (size asserted above).
    unsafe impl aya::Pod for super::IoValue {}
    // SAFETY: two u32s, then u64s: no padding (size asserted above).
    unsafe impl aya::Pod for super::GoWaitKey {}
    // SAFETY: two u64s, then 16 bytes: no padding (size asserted above).
    unsafe impl aya::Pod for super::GoWaitValue {}
    // SAFETY: two u32s and a u64: no padding (size asserted above).
    unsafe impl aya::Pod for super::ParkedKey {}
    // SAFETY: a u64, then a key without padding (size asserted above).
    unsafe impl aya::Pod for super::Parked {}
}
