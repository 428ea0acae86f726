//! What a collector received, against what it expected, what it lost and why, and what
//! its tracing cost, as typed fields. [`Account::text`] gives its words (the pprof writer's
//! comments) and [`Account::read`] types them again (the pprof reader); both go through
//! one walk of the words per account (in `account_words.rs`), so they cannot drift apart.
//! Text no account recognises (other tools' comments, older versions' words) stays a
//! [`Account::Note`].

use crate::account_walk::Walk;

/// One account line of a profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Account {
    /// CPU ticks received on busy CPUs against those expected.
    Ticks(Ticks),
    /// CPU samples recorded, and ticks in other processes left out.
    Recorded {
        /// Samples recorded.
        recorded: u64,
        /// Ticks in processes that are not targets.
        filtered: u64,
    },
    /// What CPU sampling lost: samples (ring buffer full), user stacks it could not read,
    /// kernel stacks it did not take.
    SamplesLost {
        /// Samples lost to a full ring buffer.
        samples: u64,
        /// User stacks that could not be read.
        user_stacks: u64,
        /// Kernel stacks not taken.
        kernel_stacks: u64,
    },
    /// Samples of every kind the run lost to a full sample ring buffer, and the size to
    /// rerun with (its counts are on the lines above: this one adds no loss).
    RingFull(RingFull),
    /// Process events lost: announcements (ring buffer full) and forked children not
    /// followed (target map full).
    ProcessesLost {
        /// Process announcements lost to a full ring buffer.
        announcements: u64,
        /// Forked children not followed, the target map being full.
        forks: u64,
    },
    /// What the I/O profile's `requested` means, and how many vector calls had more
    /// iovecs than it reads.
    IoRequested {
        /// The iovecs read per call.
        iovecs: u64,
        /// Calls that had more.
        more: u64,
    },
    /// A traced collector's tally: what it counted, what it lost and why, its stacks.
    Tally(Tally),
    /// What the heap probes' traps cost the targets.
    Cost(TrapCost),
    /// What the goroutine probes' traps cost the processes running the probed Go binaries.
    GoroutineCost(GoroutineCost),
    /// What the `LD_PRELOAD` interposer counted, or that it did not start.
    Interposed(Interposed),
    /// What the Go runtime's own heap sampling recorded in one process.
    GoHeap(GoHeap),
    /// Inlined frames elided where a location's inline chain was too long.
    Elided {
        /// Frames elided.
        lines: u64,
        /// Locations they were elided at.
        locations: u64,
        /// Whether the elision was made when a file was read rather than written.
        on_read: bool,
    },
    /// Labels a read file held under keys the profiler does not know, left out.
    LabelsLeftOut(u64),
    /// Any other note, in its own words.
    Note(String),
}

/// CPU ticks received on busy CPUs against those expected from `/proc/stat`, and the most
/// there could have been.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ticks {
    /// Ticks received on busy CPUs.
    pub received: u64,
    /// Ticks expected: `frequency` times the busy CPU-seconds.
    pub expected: f64,
    /// The sampling frequency, in Hz.
    pub frequency: u64,
    /// Busy CPU-seconds, from `/proc/stat`.
    pub busy_cpu_seconds: f64,
    /// `received` as a percentage of `expected`.
    pub percent: f64,
    /// Ticks there would have been had every CPU been busy.
    pub at_most: f64,
    /// The window, in seconds.
    pub seconds: f64,
    /// CPUs sampled.
    pub cpus: u64,
}

impl Ticks {
    /// The ticks `received` at `frequency` over `seconds` on `cpus` CPUs that were busy
    /// for `busy_cpu_seconds`.
    pub fn new(
        received: u64,
        frequency: u64,
        busy_cpu_seconds: f64,
        seconds: f64,
        cpus: u64,
    ) -> Self {
        let expected = frequency as f64 * busy_cpu_seconds;
        let percent = if expected > 0.0 {
            100.0 * received as f64 / expected
        } else {
            0.0
        };
        Self {
            received,
            expected,
            frequency,
            busy_cpu_seconds,
            percent,
            at_most: frequency as f64 * seconds * cpus as f64,
            seconds,
            cpus,
        }
    }
}

/// Samples lost to a full sample ring buffer over the whole run: how many, the ring and
/// what went through it, and the `--ring-buffer` size to rerun with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RingFull {
    /// Samples of every kind lost.
    pub lost: u64,
    /// Megabytes (10^6 bytes) of samples per second that went through the ring.
    pub mb_per_second: f64,
    /// The ring's size, in MiB.
    pub ring_mib: u64,
    /// The `--ring-buffer` size to rerun with, in MiB; `None` when the ring already was the
    /// largest the flag takes.
    pub rerun_mib: Option<u64>,
}

/// A traced collector's tally: `subject: counts; lost: losses; stack samples: ...`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// What it counted.
    pub subject: Subject,
    /// Its counts, the first what it received.
    pub counts: Vec<Count>,
    /// What it lost, and why.
    pub lost: Vec<Loss>,
    /// Stack samples taken.
    pub stacks_taken: u64,
    /// Stack samples lost to a full ring buffer.
    pub stacks_lost: u64,
}

/// What a tally counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Subject {
    /// Futex waits.
    #[default]
    Waits,
    /// Goroutine waits.
    GoroutineWaits,
    /// System calls.
    Calls,
    /// Allocations.
    Allocations,
    /// Waits off CPU.
    OffCpuWaits,
}

/// One count of a tally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// How many.
    pub count: u64,
    /// Of what.
    pub what: Counted,
}

/// What a tally's count counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Counted {
    /// Waits completed in the window.
    #[default]
    Completed,
    /// Waits still in progress at its end (counted up to it).
    InProgress,
    /// Goroutines still parked at its end (counted up to it).
    Parked,
    /// Goroutine waits whose end was not seen (not counted).
    EndedUnseen,
    /// Calls traced.
    Traced,
    /// Native allocations counted by uprobes.
    Allocated,
    /// Frees of those allocations.
    Freed,
    /// Frees of blocks allocated before the window (not counted).
    FreedFromBefore,
    /// Waits counted whose waker was not kept (the table of wakers was full), so they
    /// are not evidence of contention or of idling.
    WakerUnkept,
}

/// Events lost, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loss {
    /// How many.
    pub count: u64,
    /// Why.
    pub cause: Cause,
}

/// Why events were lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cause {
    /// A ring buffer had no room.
    #[default]
    RingBufferFull,
    /// A map or table had no room.
    MapFull(Table),
    /// A thread sharing the entry's slot overwrote it.
    SlotShared,
    /// A return came with no entry to pair it with.
    Unpaired,
    /// A user stack could not be read.
    StackUnreadable,
    /// A kernel stack was not taken.
    StackNotTaken,
    /// Stack samples not taken, their CPU being over its rate (their time is counted).
    OverRate,
    /// Stack samples not kept, the run being over its limit (their time is counted).
    OverLimit,
    /// Ends of sampled waits, the ring buffer having no room.
    EndsLost,
}

/// The map or table that was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Table {
    /// The futex collector's map of waits in progress.
    #[default]
    Blocking,
    /// The I/O collector's map of calls in progress.
    Io,
    /// The goroutine collector's map of waits in progress.
    Wait,
    /// The goroutine collector's table of parked goroutines.
    Parked,
    /// The heap probes' map of call sites.
    Sites,
    /// The heap probes' table of live blocks, of `capacity` entries.
    Live {
        /// Entries it holds.
        capacity: u64,
    },
    /// The interposer's table of call sites.
    InterposerSites,
    /// The interposer's table of live blocks.
    InterposerLive,
    /// The map of processes followed.
    Target,
    /// The off-CPU programs' map of wait sites (the time stays in the thread's budget).
    OffCpuSites,
    /// The off-CPU programs' map of threads followed.
    OffCpuThreads,
    /// The off-CPU programs' map of exited threads' budgets.
    OffCpuExited,
}

/// What the heap probes' traps cost the targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrapCost {
    /// Traps taken.
    pub traps: u64,
    /// The window, in seconds.
    pub seconds: f64,
    /// Traps per second.
    pub per_second: f64,
    /// Whether an `LD_PRELOAD` interposer counted the calls (they trapped only to have
    /// their stack sampled).
    pub interposer: bool,
    /// The cost of a trap, if it could be measured.
    pub measured: Option<Measured>,
}

/// What the goroutine probes' traps cost: every process running a probed Go binary pays
/// one at each goroutine park and wake, target or not (the programs filter after the trap).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GoroutineCost {
    /// Hits of the `runtime.gopark` probe.
    pub parks: u64,
    /// Hits of the `runtime.ready` probe.
    pub wakes: u64,
    /// The window, in seconds.
    pub seconds: f64,
    /// Hits per second.
    pub per_second: f64,
    /// What a bare trap (a uprobe without a program) cost, measured at the start, in µs,
    /// and the least time the processes spent in the probes, in seconds; `None` when it
    /// could not be measured.
    pub measured: Option<(f64, f64)>,
}

/// The cost of a trap, measured at the start, and what the traps cost in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// An allocation's entry and return probes, in µs.
    pub allocation_us: f64,
    /// A free's probe, in µs.
    pub free_us: f64,
    /// The targets' time spent in the probes, in seconds.
    pub spent_seconds: f64,
    /// Entry points whose first instruction the kernel single-steps, and of how many.
    pub stepped: Option<(u64, u64)>,
}

/// What the `LD_PRELOAD` interposer counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interposed {
    /// What it counted, if it started in any process.
    pub started: Option<Interposer>,
    /// Records refused as forged or impossible, if any.
    pub refused: Option<Refused>,
}

/// What an interposer that started counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interposer {
    /// Whether `processes` is a lower bound (only the first starts are recorded).
    pub at_least: bool,
    /// Processes it started in.
    pub processes: u64,
    /// The first of their pids, as shown.
    pub pids: String,
    /// Allocations counted.
    pub allocations: u64,
    /// Frees of them.
    pub frees: u64,
    /// Frees of blocks it did not see allocated.
    pub frees_unknown: u64,
    /// What it lost, and why.
    pub lost: Vec<Loss>,
    /// Stacks taken.
    pub stacks: u64,
    /// One allocation in how many has its stack taken, after a site's first.
    pub every: u64,
}

/// Interposer records refused as forged or impossible.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refused {
    /// All of them.
    pub total: u64,
    /// Naming a process that is not the command's.
    pub foreign: u64,
    /// With counts no allocator could make in the time.
    pub impossible: u64,
    /// Impossible totals shown as 0.
    pub header: u64,
}

/// What the Go runtime's own heap sampling recorded in one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GoHeap {
    /// The process.
    pub pid: u64,
    /// Its executable.
    pub path: String,
    /// Its Go version, major and minor.
    pub version: (u64, u64),
    /// Allocations sampled.
    pub allocations: u64,
    /// The runtime's MemProfileRate, in bytes.
    pub rate: u64,
    /// Frees of objects sampled before the window.
    pub frees_before: u64,
    /// Events lost to a full ring buffer.
    pub lost: u64,
}

impl Account {
    /// The account's words, as the pprof writer writes them.
    pub fn text(&self) -> String {
        let mut walk = Walk::writing();
        self.clone().walk(&mut walk);
        walk.written()
    }

    /// The account `text` says, or a [`Account::Note`] if no account says it so.
    pub fn read(text: String) -> Self {
        for shape in Self::shapes() {
            let mut walk = Walk::reading(&text);
            let mut account = shape;
            account.walk(&mut walk);
            // Figures shown rounded must write back to the same words.
            if walk.read_all() && account.text() == text {
                return account;
            }
        }
        Self::Note(text)
    }

    /// Everything lost, and why, in the order the words say it.
    pub fn losses(&self) -> Vec<Loss> {
        let loss = |count, cause| Loss { count, cause };
        match self {
            Self::SamplesLost {
                samples,
                user_stacks,
                kernel_stacks,
            } => vec![
                loss(*samples, Cause::RingBufferFull),
                loss(*user_stacks, Cause::StackUnreadable),
                loss(*kernel_stacks, Cause::StackNotTaken),
            ],
            Self::ProcessesLost {
                announcements,
                forks,
            } => vec![
                loss(*announcements, Cause::RingBufferFull),
                loss(*forks, Cause::MapFull(Table::Target)),
            ],
            Self::Tally(t) => {
                let mut lost = t.lost.clone();
                lost.push(loss(t.stacks_lost, Cause::RingBufferFull));
                lost
            }
            Self::Interposed(Interposed {
                started: Some(started),
                ..
            }) => started.lost.clone(),
            Self::GoHeap(go) => vec![loss(go.lost, Cause::RingBufferFull)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "account_tests.rs"]
mod tests;
