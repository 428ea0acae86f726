//! Types of the off-CPU profile shared with its kernel programs: the site a thread waited
//! at, the exact totals per site, the per-thread state and time budget, and what a sampled
//! wait's records carry.

use crate::COMM_LEN;

/// Kernel-side class of a switch-out, from the scheduler's arguments and the thread's
/// saved user registers; userspace refines it into a reason.
pub mod offcpu_class {
    /// Preempted, or switched out still runnable: waiting for a CPU.
    pub const RUNQUEUE: u32 = 0;
    /// In an exception (a page fault), not a syscall.
    pub const FAULT: u32 = 1;
    /// In a syscall, uninterruptible (disk, some locks).
    pub const SYSCALL_D: u32 = 2;
    /// In a syscall, interruptible (sockets, pipes, poll, sleep, futex).
    pub const SYSCALL_S: u32 = 3;
    /// Stopped or traced.
    pub const STOPPED: u32 = 4;
    /// Without a user context (an io_uring worker, a kernel thread of a target).
    pub const NO_USER: u32 = 5;
    /// Number of classes.
    pub const COUNT: usize = 6;
}

/// Syscall number of a switch-out outside any syscall (an exception or an interrupt).
pub const NO_SYSCALL: i32 = -1;

/// Key of the off-CPU aggregation map: where a thread waited, keyed by registers like an
/// I/O call site, and by its Python frames in a CPython thread (a runnable thread's
/// preemptions are one site per thread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OffCpuKey {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// One of [`offcpu_class`].
    pub class: u32,
    /// The syscall it waited in (x86-64 number), or [`NO_SYSCALL`].
    pub syscall: i32,
    /// The descriptor of a syscall on one, or -1.
    pub fd: i64,
    /// User instruction pointer (0 for [`offcpu_class::RUNQUEUE`]).
    pub ip: u64,
    /// User stack pointer.
    pub sp: u64,
    /// User frame pointer, or 0 when `rbp` held data.
    pub bp: u64,
    /// `[bp + 8]`, or 0.
    pub ret: u64,
    /// A hash of a CPython thread's innermost [`crate::PYTHON_WAIT_FRAMES`] Python frames
    /// at a wait in user mode, 0 for any other wait: every `time.sleep` or `with lock:` of
    /// a Python program waits at one C call with the same registers, and without it waits
    /// at two Python lines of one thread were one site, whose time was split over the
    /// stacks sampled there, not by what each line waited.
    pub python: u64,
}

/// Value of the off-CPU aggregation map: every finished wait of a site.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpuValue {
    /// Waits that ended in the window.
    pub waits: u64,
    /// Nanoseconds from switch-out to the wakeup (to the switch-in when never woken).
    pub nanos: u64,
    /// Nanoseconds from the wakeup to the switch-in: runnable, waiting for a CPU.
    pub runnable_nanos: u64,
}

/// What a sampled wait's records carry besides the stacks: the site and the wait's
/// number at switch-out; its times and waker when it ended; the wakee for a waker's stacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpuWait {
    /// The site.
    pub site: OffCpuKey,
    /// The wait's number in its thread, which ties its records together.
    pub seq: u32,
    /// The waiting thread (for the waker's record: the wakee).
    pub tid: u32,
    /// The waker's process id, or 0 when nothing woke it (preempted, or still waiting).
    pub waker_pid: u32,
    /// The waker's thread id.
    pub waker_tid: u32,
    /// Nanoseconds from switch-out to the wakeup.
    pub delay_ns: u64,
    /// Nanoseconds from the wakeup to the switch-in.
    pub runnable_ns: u64,
}

/// A traced thread's state and time budget, keyed by its `task_struct` address (nothing is
/// read out of the task: its ids come from the helpers when it is current).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpuThread {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// When it was created (`sched_wakeup_new`), or 0 when it existed before the window.
    pub born_ns: u64,
    /// Its first switch-in in the window, when that came before anything else of it was
    /// seen (it was off CPU since before the window), else 0.
    pub first_in_ns: u64,
    /// Its first switch-out, when it had been on CPU since before the window (nothing of it
    /// was seen before), else 0.
    pub first_out_ns: u64,
    /// When the pending wait began (switch-out), or 0 when none is pending.
    pub out_ns: u64,
    /// When the pending wait was woken, or 0.
    pub wake_ns: u64,
    /// The pending wait's waker: process id.
    pub waker_pid: u32,
    /// The pending wait's waker: thread id.
    pub waker_tid: u32,
    /// Waits begun, which numbers them.
    pub seq: u32,
    /// Non-zero when the pending wait's stacks were sampled.
    pub sampled: u32,
    /// When it exited, or 0.
    pub exit_ns: u64,
    /// Where the pending wait is.
    pub site: OffCpuKey,
    /// The site of its last wait that was not a preemption.
    pub run_site: OffCpuKey,
    /// The finished waits at `run_site` not yet added to the aggregation map: a thread that
    /// waits at one site again and again adds them there only when it moves on (userspace
    /// adds what is left at the end).
    pub run: OffCpuValue,
    /// Its finished waits for a CPU (preemptions, and its first run), never added to the
    /// aggregation map: one site per thread, whose totals userspace takes from here.
    pub runq: OffCpuValue,
    /// Nanoseconds on CPU from a switch-in seen in the window to the next switch-out.
    pub oncpu_ns: u64,
    /// Nanoseconds from a wakeup to the switch-in, over its finished waits.
    pub runnable_ns: u64,
    /// Nanoseconds of finished waits, switch-out to wakeup, whether their site was recorded
    /// or not: what the budget checks its reasons against.
    pub offcpu_ns: u64,
    /// Its command name at its first switch-out.
    pub comm: [u8; COMM_LEN],
}

/// The task a CPU switched to last and when: a thread's switch-in costs this one per-CPU
/// write, and is read back at its next switch-out, which happens on the same CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpuSwitchIn {
    /// The `task_struct` address.
    pub task: u64,
    /// `bpf_ktime_get_ns` at the switch.
    pub at_ns: u64,
}

/// A CPU's off-CPU stack samples in the current second, to keep it under its rate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpuRate {
    /// When the current second began (`bpf_ktime_get_ns`).
    pub second_ns: u64,
    /// Stack samples sent in it.
    pub sent: u64,
}

/// Entries of the off-CPU aggregation map.
pub const MAX_OFFCPU_SITES: u32 = 32768;

/// Threads the off-CPU programs can follow at once.
pub const MAX_OFFCPU_THREADS: u32 = 65536;

/// Exited threads whose budgets the off-CPU programs can keep.
pub const MAX_OFFCPU_DONE: u32 = 16384;

/// One wait in this many of a thread has its stacks taken (the first wait of a site always
/// does): by the wait's order, never its length, so delays per stack stay unbiased.
pub const OFFCPU_STACK_SAMPLE_EVERY: u32 = 64;

/// Off-CPU and waker stack samples one CPU may send per second; those above are counted
/// in [`crate::counter::OFFCPU_STACKS_RATE_LIMITED`], their time still counted.
pub const OFFCPU_STACKS_PER_CPU_SECOND: u64 = 2000;

const _: () = {
    assert!(size_of::<OffCpuKey>() == 64);
    assert!(size_of::<OffCpuValue>() == 24);
    assert!(size_of::<OffCpuWait>() == 96);
    assert!(size_of::<OffCpuSwitchIn>() == 16);
    assert!(size_of::<OffCpuRate>() == 16);
    assert!(size_of::<OffCpuThread>() == 8 * 9 + 64 * 2 + 24 * 2 + 16 + 8 + 16);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: four u32s, then i64 and u64s: no padding (size asserted above).
    unsafe impl aya::Pod for super::OffCpuKey {}
    // SAFETY: three u64s.
    unsafe impl aya::Pod for super::OffCpuValue {}
    // SAFETY: a key, four u32s, two u64s: no padding (size asserted above).
    unsafe impl aya::Pod for super::OffCpuWait {}
    // SAFETY: u32 pairs, u64s, keys, sums and 16 bytes: no padding (size asserted).
    unsafe impl aya::Pod for super::OffCpuThread {}
    // SAFETY: two u64s.
    unsafe impl aya::Pod for super::OffCpuSwitchIn {}
    // SAFETY: two u64s.
    unsafe impl aya::Pod for super::OffCpuRate {}
}
