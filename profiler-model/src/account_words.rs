//! The words of each account, walked once in order: [`Account::text`] writes them and
//! [`Account::read`] reads the fields back from them ([`Walk`]). The words here are the
//! ones pprof files carry; change them only knowing that files already written keep the
//! old ones (they then read as a [`Account::Note`]).

use crate::account::{
    Account, Cause, Counted, GoHeap, GoroutineCost, Interposed, Interposer, Loss, Measured,
    Refused, RingFull, Subject, Table, Tally, Ticks, TrapCost,
};
use crate::account_walk::Walk;
use crate::model::{ELIDED_INLINE_PREFIX, MAX_INLINE_LINES};

impl Subject {
    /// In the order the reader tries them: a choice takes the first whose words start the
    /// text, so "waits off CPU" comes before "waits".
    const ALL: [Self; 5] = [
        Self::OffCpuWaits,
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
            Self::OffCpuWaits => "waits off CPU",
        }
    }
}

impl Counted {
    const ALL: [Self; 9] = [
        Self::Completed,
        Self::InProgress,
        Self::Parked,
        Self::EndedUnseen,
        Self::Traced,
        Self::Allocated,
        Self::Freed,
        Self::FreedFromBefore,
        Self::WakerUnkept,
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
            Self::WakerUnkept => "without their waker (its table was full)",
        }
    }
}

impl Cause {
    /// Every cause, as the reader tries them.
    const ALL: [Self; 20] = [
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
        Self::MapFull(Table::OffCpuSites),
        Self::MapFull(Table::OffCpuThreads),
        Self::MapFull(Table::OffCpuExited),
        Self::SlotShared,
        Self::Unpaired,
        Self::StackUnreadable,
        Self::StackNotTaken,
        Self::OverRate,
        Self::OverLimit,
        Self::EndsLost,
    ];
}

impl Account {
    /// One account of each shape, blank, for the reader to try.
    pub(crate) fn shapes() -> [Self; 13] {
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
            Self::RingFull(RingFull::default()),
            Self::ProcessesLost {
                announcements: 0,
                forks: 0,
            },
            Self::IoRequested { iovecs: 0, more: 0 },
            Self::Tally(Tally::default()),
            Self::Cost(TrapCost::default()),
            Self::GoroutineCost(GoroutineCost::default()),
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
    pub(crate) fn walk(&mut self, w: &mut Walk<'_>) {
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
            Self::RingFull(r) => walk_ring_full(r, w),
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
            Self::GoroutineCost(c) => walk_goroutine_cost(c, w),
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

/// `ring buffer full: N samples lost in all, with R MB/s through a S MiB ring buffer;
/// rerun with --ring-buffer 64M`: the flag's value in the words `--ring-buffer` takes.
fn walk_ring_full(r: &mut RingFull, w: &mut Walk<'_>) {
    w.lit("ring buffer full: ");
    w.num(&mut r.lost);
    w.lit(" samples lost in all, with ");
    w.float(&mut r.mb_per_second, 2);
    w.lit(" MB/s through a ");
    w.num(&mut r.ring_mib);
    w.lit(" MiB ring buffer; ");
    w.choice(&mut r.rerun_mib, &[Some(0), None], |rerun, w| match rerun {
        Some(mib) => {
            w.lit("rerun with --ring-buffer ");
            w.num(mib);
            w.lit("M");
        }
        None => w.lit(
            "it is the largest --ring-buffer takes; rerun with --call-graph fp, whose \
             samples are a fraction of the size",
        ),
    });
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
            Cause::OverRate => {
                return w.lit(" stack samples not taken (over the CPU's rate: time still counted)");
            }
            Cause::OverLimit => {
                return w.lit(" stack samples not kept (over the run's limit: time still counted)");
            }
            Cause::EndsLost => return w.lit(" ends of sampled waits (ring buffer full)"),
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
            Table::OffCpuSites => "off-CPU site map",
            Table::OffCpuThreads => "off-CPU thread map",
            Table::OffCpuExited => "exited-thread map",
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

fn walk_goroutine_cost(c: &mut GoroutineCost, w: &mut Walk<'_>) {
    w.lit(
        "cost: a uprobe traps on every goroutine park and wake in the processes running a \
         probed Go binary: ",
    );
    w.num(&mut c.parks);
    w.lit(" parks and ");
    w.num(&mut c.wakes);
    w.lit(" wakes in ");
    w.float(&mut c.seconds, 1);
    w.lit("s (");
    w.float(&mut c.per_second, 0);
    w.lit("/s)");
    w.choice(&mut c.measured, &[Some((0.0, 0.0)), None], |measured, w| {
        let Some((us, spent)) = measured else {
            return w.lit("; the cost of a trap could not be measured here");
        };
        w.lit("; measured here at the start, a bare trap costs ");
        w.float(us, 2);
        w.lit(" µs, so at least ");
        w.float(spent, 2);
        w.lit("s of those processes' time went to the probes (the programs' own run time comes on top)");
    });
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
