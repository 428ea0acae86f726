//! The label vocabulary that collectors write and analysis reads: every label key, and
//! the values with a meaning beyond their text. Keys become strings only in the pprof
//! writer and are read back only by the pprof reader.

/// A sample label's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelKey {
    /// The process id (numeric).
    Pid,
    /// The thread id (numeric).
    Tid,
    /// The process's command name (its main thread's, as [`LabelKey::Thread`] is the
    /// thread's own).
    Comm,
    /// An I/O call's syscall name.
    Syscall,
    /// The function that made an I/O call: the innermost frame outside the kernel, the
    /// system libraries and Go's syscall plumbing (`net/http.(*connReader).Read`, not
    /// `internal/runtime/syscall.Syscall6`); the full stack is kept.
    CallSite,
    /// What an I/O call's descriptor was: file, socket, pipe, tty, ...
    Descriptor,
    /// A futex wait's futex address, in hex.
    Futex,
    /// How a wait ended (see [`IN_PROGRESS`]).
    Outcome,
    /// A goroutine's id (numeric): a goroutine wait still in progress at the end.
    Goroutine,
    /// How many goroutines waited at a goroutine wait site (see [`Waiters`]); every
    /// goroutine wait has it.
    Waiters,
    /// What kind of wait a sample is (see [`WaitClass`]).
    Class,
    /// The Go runtime's wait reason.
    Reason,
    /// How a heap site's memory in use moved (see [`ONLY_GREW`]).
    Trend,
    /// The thread's own name, where it differs from its process's `comm`.
    Thread,
    /// Who woke an off-CPU wait: `function (process)`, or an interrupt.
    Waker,
    /// The process of the thread that woke a futex wait (numeric).
    WakerPid,
    /// The thread that woke a futex wait (numeric): the evidence of contention when it
    /// also waited there, of a hand-off when it did not.
    WakerTid,
    /// When the thread first slept at a futex wait site in the window, nanoseconds from
    /// the window's start (negative: a wait that began before it).
    FirstWait,
    /// When a futex wait's waker last ended a wait of that site, nanoseconds from the
    /// window's start: a waker that first waited there later was not passing on a lock.
    LastWake,
}

impl LabelKey {
    /// Every key, in order.
    pub const ALL: [LabelKey; 19] = [
        Self::Pid,
        Self::Tid,
        Self::Comm,
        Self::Syscall,
        Self::CallSite,
        Self::Descriptor,
        Self::Futex,
        Self::Outcome,
        Self::Goroutine,
        Self::Waiters,
        Self::Class,
        Self::Reason,
        Self::Trend,
        Self::Thread,
        Self::Waker,
        Self::WakerPid,
        Self::WakerTid,
        Self::FirstWait,
        Self::LastWake,
    ];

    /// Its name in a pprof file, as `go tool pprof -tags` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pid => "pid",
            Self::Tid => "tid",
            Self::Comm => "comm",
            Self::Syscall => "syscall",
            Self::CallSite => "call_site",
            Self::Descriptor => "descriptor",
            Self::Futex => "futex",
            Self::Outcome => "outcome",
            Self::Goroutine => "goroutine",
            Self::Waiters => "waiters",
            Self::Class => "class",
            Self::Reason => "reason",
            Self::Trend => "trend",
            Self::Thread => "thread",
            Self::Waker => "waker",
            Self::WakerPid => "waker_pid",
            Self::WakerTid => "waker_tid",
            Self::FirstWait => "first_wait",
            Self::LastWake => "last_wake",
        }
    }

    /// The unit of its numeric values in a pprof file, if they have one.
    pub fn unit(self) -> Option<&'static str> {
        match self {
            Self::FirstWait | Self::LastWake => Some("nanoseconds"),
            _ => None,
        }
    }

    /// The key a pprof file names `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The `outcome` label of a wait still in progress when the window closed.
pub const IN_PROGRESS: &str = "in progress";

/// The [`LabelKey::Waiters`] label: whether one goroutine or several waited at a site.
/// The kernel programs know which (each site keeps its first goroutine and counts the
/// waits of others), not how many: goroutines are too many to keep (net/http starts one
/// per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Waiters {
    /// Every wait at the site was the same goroutine's.
    One,
    /// Two goroutines or more waited at the site.
    Several,
}

impl Waiters {
    /// Its value of the [`LabelKey::Waiters`] label.
    pub fn label(self) -> &'static str {
        match self {
            Self::One => "one goroutine",
            Self::Several => "several goroutines",
        }
    }

    /// The value a label holds, if it is one.
    pub fn from_label(text: &str) -> Option<Self> {
        [Self::One, Self::Several]
            .into_iter()
            .find(|w| w.label() == text)
    }
}

/// The `trend` label of a heap site whose memory in use only grew during the window.
pub const ONLY_GREW: &str = "only grew";

/// What a wait means, for findings: only synchronisation is contention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitClass {
    /// A goroutine waiting for a lock: `sync.Mutex`, `sync.RWMutex`, a runtime semaphore.
    Lock,
    /// A goroutine waiting on a channel operation or `select`.
    Channel,
    /// A goroutine waiting for others: `sync.WaitGroup`, `sync.Cond`.
    Sync,
    /// A goroutine sleeping (`time.Sleep`).
    Sleep,
    /// A goroutine waiting for the network poller (a socket or pipe to become ready).
    Network,
    /// Garbage-collector workers and helpers idling or waiting for a cycle.
    Gc,
    /// A runtime thread with nothing to run (the scheduler parked its M), or another
    /// runtime goroutine's idle wait.
    Idle,
    /// Any other wait reason.
    Other,
}

impl WaitClass {
    /// Every class, in order.
    pub const ALL: [WaitClass; 8] = [
        Self::Lock,
        Self::Channel,
        Self::Sync,
        Self::Sleep,
        Self::Network,
        Self::Gc,
        Self::Idle,
        Self::Other,
    ];

    /// Its value of the [`LabelKey::Class`] label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Channel => "channel",
            Self::Sync => "sync",
            Self::Sleep => "sleep",
            Self::Network => "network",
            Self::Gc => "gc",
            Self::Idle => "idle",
            Self::Other => "other",
        }
    }

    /// The class a [`LabelKey::Class`] label names.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.label() == label)
    }

    /// The class of a runtime wait reason, by its name in `runtime.waitReasonStrings`.
    pub fn of_reason(reason: &str) -> Self {
        let gc = [
            "GC",
            "garbage collection",
            "finalizer",
            "force gc",
            "wait for GC",
        ];
        if reason.starts_with("sync.Mutex")
            || reason.starts_with("sync.RWMutex")
            || reason == "semacquire"
        {
            Self::Lock
        } else if reason.starts_with("chan ") || reason.starts_with("select") {
            Self::Channel
        } else if reason.starts_with("sync.") {
            Self::Sync
        } else if reason == "sleep" {
            Self::Sleep
        } else if reason == "IO wait" {
            Self::Network
        } else if gc.iter().any(|g| reason.contains(g)) {
            Self::Gc
        } else if reason.contains("(idle)") {
            Self::Idle
        } else {
            Self::Other
        }
    }
}

/// Why a thread was off CPU: the off-CPU profile's [`LabelKey::Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OffCpuReason {
    /// Runnable, waiting for a CPU: preempted, or woken and not yet running.
    Runqueue,
    /// Waiting for the disk: fsync and its kin, direct or uncached file I/O.
    Disk,
    /// Waiting in a page fault: a major fault or a swap-in.
    Pagefault,
    /// Waiting on a socket.
    Net,
    /// Waiting in poll, select, epoll or io_uring for any of several events.
    Poll,
    /// Sleeping: nanosleep, a timer.
    Sleep,
    /// Waiting for a lock: a futex, a semaphore, a file lock, a kernel lock.
    Lock,
    /// Waiting on a pipe or FIFO.
    Pipe,
    /// Any other wait: a child, a signal, a terminal, stopped.
    Other,
}

impl OffCpuReason {
    /// Every reason, in the order budgets list them.
    pub const ALL: [OffCpuReason; 9] = [
        Self::Runqueue,
        Self::Disk,
        Self::Pagefault,
        Self::Net,
        Self::Poll,
        Self::Sleep,
        Self::Lock,
        Self::Pipe,
        Self::Other,
    ];

    /// Its value of the [`LabelKey::Reason`] label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Runqueue => "runqueue",
            Self::Disk => "disk",
            Self::Pagefault => "pagefault",
            Self::Net => "net",
            Self::Poll => "poll",
            Self::Sleep => "sleep",
            Self::Lock => "lock",
            Self::Pipe => "pipe",
            Self::Other => "other",
        }
    }

    /// The reason a [`LabelKey::Reason`] label of an off-CPU sample names.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == label)
    }
}

/// The class of a blocking-profile sample: its [`LabelKey::Class`] label, or `None` for a futex wait
/// that is not a Go runtime thread's idling.
pub fn class_of(sample: &crate::Sample) -> Option<WaitClass> {
    sample
        .label_str(LabelKey::Class)
        .and_then(WaitClass::from_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_classes() {
        assert_eq!(WaitClass::of_reason("sync.Mutex.Lock"), WaitClass::Lock);
        assert_eq!(WaitClass::of_reason("semacquire"), WaitClass::Lock);
        assert_eq!(WaitClass::of_reason("sync.RWMutex.RLock"), WaitClass::Lock);
        assert_eq!(WaitClass::of_reason("chan receive"), WaitClass::Channel);
        assert_eq!(WaitClass::of_reason("select"), WaitClass::Channel);
        assert_eq!(WaitClass::of_reason("sync.WaitGroup.Wait"), WaitClass::Sync);
        assert_eq!(WaitClass::of_reason("sleep"), WaitClass::Sleep);
        assert_eq!(WaitClass::of_reason("IO wait"), WaitClass::Network);
        assert_eq!(WaitClass::of_reason("GC worker (idle)"), WaitClass::Gc);
        assert_eq!(
            WaitClass::of_reason("timer goroutine (idle)"),
            WaitClass::Idle
        );
        assert_eq!(WaitClass::of_reason("preempted"), WaitClass::Other);
        for class in WaitClass::ALL {
            assert_eq!(WaitClass::from_label(class.label()), Some(class));
        }
        for reason in OffCpuReason::ALL {
            assert_eq!(OffCpuReason::from_label(reason.label()), Some(reason));
        }
        for key in LabelKey::ALL {
            assert_eq!(LabelKey::from_name(key.name()), Some(key));
        }
    }
}
