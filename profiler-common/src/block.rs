//! Types of the blocking profile shared with its kernel programs: how a futex wait ended,
//! the wait-site aggregation map, and the map of who woke the waits at each site.

use crate::{COMM_LEN, InFlight};

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

/// Key of the blocking aggregation map: a wait site, keyed by registers like [`IoKey`](crate::IoKey),
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
    /// called from one parent with equal frames. 0 when `bp` is, and in a Go process, whose
    /// calls all pass through the `syscall` package: there it is one of that package's own
    /// wrappers' (one address for every read and write of go_service), which tells nothing
    /// apart, and reading it was a third of a call's time.
    pub ret: u64,
    /// A hash of the innermost [`PYTHON_WAIT_FRAMES`] Python frames (code object and
    /// instruction) of a CPython thread, 0 for any other: every `with lock:` of a Python
    /// program waits at the same C call with the same registers, and without it waits at
    /// two Python lines of one thread on one lock were one site, whose whole time went to
    /// whichever line's stack was sampled first.
    pub python: u64,
}

/// Python frames whose identity keys a CPython thread's futex wait site
/// ([`BlockKey::python`]) and off-CPU wait site ([`crate::OffCpuKey::python`]): enough to
/// tell the line that waits and its callers' apart, few enough to keep each wait's entry
/// and each switch-out cheap.
pub const PYTHON_WAIT_FRAMES: usize = 4;

/// Value of the blocking aggregation map: waits and their time, by outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockValue {
    /// Completed waits, by [`wait_outcome`].
    pub waits: [u64; wait_outcome::COUNT],
    /// Nanoseconds waited, by [`wait_outcome`].
    pub nanos: [u64; wait_outcome::COUNT],
    /// When the thread's first wait here that slept (not [`wait_outcome::NO_WAIT`]) and
    /// ended in the window began, kernel monotonic nanoseconds; 0 before one did. A
    /// thread that woke a wait here is evidence of a lock passed on only if it had waited
    /// here before (a new thread wakes its creator, then creates threads of its own).
    pub first_ns: u64,
    /// The thread's command name at the first wait.
    pub comm: [u8; COMM_LEN],
}

impl BlockKey {
    /// The wait site of a futex wait that entered the kernel (the same at its exit, and
    /// for a wait still in progress when the run ends).
    #[inline(always)]
    pub fn of(entry: &InFlight) -> Self {
        Self {
            pid: entry.pid,
            tid: entry.tid,
            uaddr: entry.uaddr,
            ip: entry.ip,
            sp: entry.sp,
            bp: entry.bp,
            ret: entry.ret,
            python: entry.python,
        }
    }
}

/// Key of the wakers map: a wait site and the thread that woke waits there. Who wakes a
/// wait is the evidence that tells a lock passed among competing threads (contention)
/// from work handed to an idle thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockWakeKey {
    /// The wait site.
    pub site: BlockKey,
    /// The waker's process id.
    pub waker_pid: u32,
    /// The waker's thread id.
    pub waker_tid: u32,
}

/// Value of the wakers map: the waits a waker ended at a site, and their time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockWake {
    /// Waits woken.
    pub waits: u64,
    /// Nanoseconds those waits lasted.
    pub nanos: u64,
    /// When the last of them ended, kernel monotonic nanoseconds.
    pub last_ns: u64,
}

/// Entries of the wakers map ([`BlockWakeKey`] -> [`BlockWake`]).
pub const MAX_BLOCK_WAKERS: u32 = 32768;

/// Threads in a futex wait at once whose waker can be noted.
pub const MAX_FUTEX_SLEEPERS: u32 = 16384;
