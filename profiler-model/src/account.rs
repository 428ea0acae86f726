//! What a collector received, against what it expected, what it lost and why, and what
//! its tracing cost, as typed fields. [`Account::text`] gives its words (the pprof writer's
//! comments) and [`Account::read`] types them again (the pprof reader); both go through
//! one walk of the words per account ([`Account::walk`]), so they cannot drift apart.
//! Text no account recognises (other tools' comments, older versions' words) stays a
//! [`Account::Note`].

use crate::account_walk::Walk;
use crate::model::{ELIDED_INLINE_PREFIX, MAX_INLINE_LINES};

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
}

impl Subject {
    const ALL: [Self; 4] = [
        Self::Waits,
        Self::GoroutineWaits,
        Self::Calls,
        Self::Allocations,
    ];

    fn words(self) -> &'static str {
        match self {
            Self::Waits => "waits",
            Self::GoroutineWaits => "goroutine waits",
            Self::Calls => "calls",
            Self::Allocations => "allocations",
        }
    }
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
}

impl Counted {
    const ALL: [Self; 8] = [
        Self::Completed,
        Self::InProgress,
        Self::Parked,
        Self::EndedUnseen,
        Self::Traced,
        Self::Allocated,
        Self::Freed,
        Self::FreedFromBefore,
    ];

    fn words(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::InProgress => "still in progress at the end (counted up to it)",
            Self::Parked => "still parked at the end (counted up to it)",
            Self::EndedUnseen => {
                "ended unseen (readied by the network poller, or their process exited; not \
                 counted)"
            }
            Self::Traced => "traced",
            Self::Allocated => "native counted by uprobes",
            Self::Freed => "frees of them",
            Self::FreedFromBefore => "frees of blocks from before the window (not counted)",
        }
    }
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
}

impl Cause {
    /// Every cause, as the reader tries them.
    const ALL: [Self; 14] = [
        Self::RingBufferFull,
        Self::MapFull(Table::Blocking),
        Self::MapFull(Table::Io),
        Self::MapFull(Table::Wait),
        Self::MapFull(Table::Parked),
        Self::MapFull(Table::Sites),
        Self::MapFull(Table::Live { capacity: 0 }),
        Self::MapFull(Table::InterposerSites),
        Self::MapFull(Table::InterposerLive),
        Self::MapFull(Table::Target),
        Self::SlotShared,
        Self::Unpaired,
        Self::StackUnreadable,
        Self::StackNotTaken,
    ];
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

    /// One account of each shape, blank, for the reader to try.
    fn shapes() -> [Self; 11] {
        [
            Self::Ticks(Ticks::default()),
            Self::Recorded {
                recorded: 0,
                filtered: 0,
            },
            Self::SamplesLost {
                samples: 0,
                user_stacks: 0,
                kernel_stacks: 0,
            },
            Self::ProcessesLost {
                announcements: 0,
                forks: 0,
            },
            Self::IoRequested { iovecs: 0, more: 0 },
            Self::Tally(Tally::default()),
            Self::Cost(TrapCost::default()),
            Self::Interposed(Interposed::default()),
            Self::GoHeap(GoHeap::default()),
            Self::Elided {
                lines: 0,
                locations: 0,
                on_read: false,
            },
            Self::LabelsLeftOut(0),
        ]
    }

    /// The account's words and fields, in order: what [`Account::text`] writes and
    /// [`Account::read`] reads.
    fn walk(&mut self, w: &mut Walk<'_>) {
        match self {
            Self::Ticks(t) => {
                w.lit("received: ");
                w.num(&mut t.received);
                w.lit(" ticks on busy CPUs of ");
                w.float(&mut t.expected, 0);
                w.lit(" expected (");
                w.num(&mut t.frequency);
                w.lit(" Hz x ");
                w.float(&mut t.busy_cpu_seconds, 2);
                w.lit(" busy CPU-seconds from /proc/stat), ");
                w.float(&mut t.percent, 1);
                w.lit("%; at most ");
                w.float(&mut t.at_most, 0);
                w.lit(" (");
                w.num(&mut t.frequency);
                w.lit(" Hz x ");
                w.float(&mut t.seconds, 2);
                w.lit("s x ");
                w.num(&mut t.cpus);
                w.lit(" CPUs) if every CPU had been busy; idle CPUs take no ticks");
            }
            Self::Recorded { recorded, filtered } => {
                w.lit("samples: ");
                w.num(recorded);
                w.lit(" recorded; ");
                w.num(filtered);
                w.lit(" ticks in other processes not recorded");
            }
            Self::SamplesLost {
                samples,
                user_stacks,
                kernel_stacks,
            } => {
                w.lit("lost: ");
                w.num(samples);
                w.lit(" samples (ring buffer full); ");
                w.num(user_stacks);
                w.lit(" user stacks unreadable, ");
                w.num(kernel_stacks);
                w.lit(" kernel stacks not taken");
            }
            Self::ProcessesLost {
                announcements,
                forks,
            } => {
                w.lit("also lost: ");
                w.num(announcements);
                w.lit(
                    " process announcements (ring buffer full: those processes may be \
                     unsymbolized) and ",
                );
                w.num(forks);
                w.lit(" forked children not followed (target map full)");
            }
            Self::IoRequested { iovecs, more } => {
                w.lit(
                    "requested: what each call asked for, failed calls included (for vector \
                     calls and *msg, the first ",
                );
                w.num(iovecs);
                w.lit(" iovecs: ");
                w.num(more);
                w.lit(
                    " calls had more); short: calls that moved less; eagain: calls that \
                     found nothing (EAGAIN)",
                );
            }
            Self::Tally(t) => walk_tally(t, w),
            Self::Cost(c) => walk_cost(c, w),
            Self::Interposed(i) => walk_interposed(i, w),
            Self::GoHeap(g) => {
                w.lit("go: pid ");
                w.num(&mut g.pid);
                w.lit(" (");
                w.text(&mut g.path, ", go");
                w.lit(", go");
                w.num(&mut g.version.0);
                w.lit(".");
                w.num(&mut g.version.1);
                w.lit("): ");
                w.num(&mut g.allocations);
                w.lit(" allocations sampled by the runtime at MemProfileRate ");
                w.num(&mut g.rate);
                w.lit(" bytes, weighted as Go weights them; ");
                w.num(&mut g.frees_before);
                w.lit(" frees of objects sampled before the window; ");
                w.num(&mut g.lost);
                w.lit(" events lost (ring buffer full)");
            }
            Self::Elided {
                lines,
                locations,
                on_read,
            } => {
                w.lit("inlined frames: ");
                w.num(lines);
                w.lit(" elided at ");
                w.num(locations);
                w.lit(" locations whose inline chain was over the ");
                w.lit(&MAX_INLINE_LINES.to_string());
                w.lit(" frames a location keeps");
                w.flag(on_read, ", when the file was read");
                w.lit("; each shows one `");
                w.lit(ELIDED_INLINE_PREFIX);
                w.lit("N inlined frames]` frame");
            }
            Self::LabelsLeftOut(n) => {
                w.lit("labels: ");
                w.num(n);
                w.lit(" left out whose keys the profiler does not know");
            }
            Self::Note(text) => w.text(text, ""),
        }
    }
}

fn walk_tally(t: &mut Tally, w: &mut Walk<'_>) {
    w.choice(&mut t.subject, &Subject::ALL, |s, w| w.lit(s.words()));
    w.lit(": ");
    w.list(&mut t.counts, ", ", |c, w| {
        w.num(&mut c.count);
        w.lit(" ");
        w.choice(&mut c.what, &Counted::ALL, |what, w| w.lit(what.words()));
    });
    w.lit("; lost: ");
    w.list(&mut t.lost, ", ", walk_loss);
    w.lit("; stack samples: ");
    w.num(&mut t.stacks_taken);
    w.lit(" taken, ");
    w.num(&mut t.stacks_lost);
    w.lit(" lost (ring buffer full)");
}

fn walk_loss(loss: &mut Loss, w: &mut Walk<'_>) {
    w.num(&mut loss.count);
    w.choice(&mut loss.cause, &Cause::ALL, |cause, w| {
        let table = match cause {
            Cause::RingBufferFull => return w.lit(" (ring buffer full)"),
            Cause::SlotShared => return w.lit(" (entry overwritten by a thread sharing its slot)"),
            Cause::Unpaired => return w.lit(" returns unpaired"),
            Cause::StackUnreadable => return w.lit(" user stacks unreadable"),
            Cause::StackNotTaken => return w.lit(" kernel stacks not taken"),
            Cause::MapFull(Table::Live { capacity }) => {
                w.lit(" not tracked as live (live table of ");
                w.num(capacity);
                return w.lit(" full: their in-use figures are missing)");
            }
            Cause::MapFull(Table::InterposerLive) => {
                return w.lit(" not tracked as live (their memory shows as in use)");
            }
            Cause::MapFull(table) => table,
        };
        w.lit(" (");
        w.lit(match table {
            Table::Blocking => "blocking map",
            Table::Io => "I/O map",
            Table::Wait => "wait map",
            Table::Parked => "parked table",
            Table::Sites => "site map",
            Table::InterposerSites => "site table",
            Table::Target => "target map",
            Table::Live { .. } | Table::InterposerLive => unreachable!("said above"),
        });
        w.lit(" full)");
    });
}

fn walk_cost(c: &mut TrapCost, w: &mut Walk<'_>) {
    w.lit("cost: a uprobe traps on every allocation and free it probes: ");
    w.num(&mut c.traps);
    w.lit(" traps in ");
    w.float(&mut c.seconds, 1);
    w.lit("s (");
    w.float(&mut c.per_second, 0);
    w.lit("/s)");
    w.flag(
        &mut c.interposer,
        " (the interposer's calls trap only to have their stack sampled)",
    );
    w.choice(
        &mut c.measured,
        &[Some(Measured::default()), None],
        |m, w| {
            let Some(m) = m else {
                return w.lit("; the cost of a trap could not be measured here");
            };
            w.lit("; measured here at the start, an allocation's entry and return probes cost ");
            w.float(&mut m.allocation_us, 2);
            w.lit(" µs and a free's probe ");
            w.float(&mut m.free_us, 2);
            w.lit(" µs, so about ");
            w.float(&mut m.spent_seconds, 2);
            w.lit("s of the targets' time went to the probes");
            w.choice(&mut m.stepped, &[Some((0, 0)), None], |stepped, w| {
                if let Some((count, of)) = stepped {
                    w.lit(" (more: ");
                    w.num(count);
                    w.lit(" of the ");
                    w.num(of);
                    w.lit(
                        " entry points start with no instruction the kernel emulates, so each \
                     of their calls also traps to single-step one)",
                    );
                }
            });
        },
    );
}

fn walk_interposed(i: &mut Interposed, w: &mut Walk<'_>) {
    w.choice(
        &mut i.started,
        &[Some(Interposer::default()), None],
        |started, w| {
            let Some(s) = started else {
                return w.lit(
                    "note: the LD_PRELOAD interposer started in no process of the command, so its \
                 calls to malloc and free were not counted (a program that clears LD_PRELOAD \
                 or closes inherited descriptors): run again with --heap-via uprobes",
                );
            };
            w.lit("interposed: an LD_PRELOAD library in the command (");
            w.flag(&mut s.at_least, "at least ");
            w.num(&mut s.processes);
            w.lit(" processes: pid ");
            w.text(&mut s.pids, ") counted ");
            w.lit(") counted ");
            w.num(&mut s.allocations);
            w.lit(" allocations and ");
            w.num(&mut s.frees);
            w.lit(" frees of them without trapping but for the sampled stacks, ");
            w.num(&mut s.frees_unknown);
            w.lit(
                " frees of blocks it did not see allocated (from before it started, inherited \
             over a fork, or not tracked); lost: ",
            );
            w.list(&mut s.lost, ", ", walk_loss);
            w.lit("; ");
            w.num(&mut s.stacks);
            w.lit(" stacks taken (the first allocation of each site, then one in ");
            w.num(&mut s.every);
            w.lit(") through one uprobe on its marker function");
        },
    );
    w.choice(
        &mut i.refused,
        &[Some(Refused::default()), None],
        |refused, w| {
            if let Some(r) = refused {
                w.lit("; ");
                w.num(&mut r.total);
                w.lit(" forged or impossible records refused (");
                w.num(&mut r.foreign);
                w.lit(" naming a process that is not the command's, ");
                w.num(&mut r.impossible);
                w.lit(" with counts no allocator could make in the time, ");
                w.num(&mut r.header);
                w.lit(
                    " impossible totals shown as 0): the command wrote them into the \
                 interposer's memory",
                );
            }
        },
    );
}

#[cfg(test)]
#[path = "account_tests.rs"]
mod tests;
