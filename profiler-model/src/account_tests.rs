use super::*;
use crate::model::MAX_INLINE_LINES;

/// Lines the profiler wrote before accounts were typed, one of each shape: they must read
/// as that shape and write back byte for byte.
const WRITTEN: [&str; 13] = [
    "received: 60 ticks on busy CPUs of 36 expected (99 Hz x 0.36 busy CPU-seconds from \
     /proc/stat), 168.4%; at most 36 (99 Hz x 0.18s x 2 CPUs) if every CPU had been busy; \
     idle CPUs take no ticks",
    "samples: 14 recorded; 46 ticks in other processes not recorded",
    "lost: 0 samples (ring buffer full); 0 user stacks unreadable, 0 kernel stacks not taken",
    "also lost: 2 process announcements (ring buffer full: those processes may be \
     unsymbolized) and 1 forked children not followed (target map full)",
    "requested: what each call asked for, failed calls included (for vector calls and *msg, \
     the first 8 iovecs: 0 calls had more); short: calls that moved less; eagain: calls that \
     found nothing (EAGAIN)",
    "calls: 82007 traced; lost: 0 (I/O map full), 0 (entry overwritten by a thread sharing \
     its slot); stack samples: 1291 taken, 0 lost (ring buffer full)",
    "waits: 24 completed, 0 still in progress at the end (counted up to it); lost: 0 \
     (blocking map full); stack samples: 9 taken, 0 lost (ring buffer full)",
    "goroutine waits: 3608 completed, 0 still parked at the end (counted up to it), 5 ended \
     unseen (readied by the network poller, or their process exited; not counted); lost: 0 \
     (wait map full), 0 (parked table full); stack samples: 67 taken, 0 lost (ring buffer \
     full)",
    "allocations: 0 native counted by uprobes, 0 frees of them, 0 frees of blocks from \
     before the window (not counted); lost: 0 (site map full), 0 not tracked as live (live \
     table of 524288 full: their in-use figures are missing), 0 returns unpaired; stack \
     samples: 91 taken, 0 lost (ring buffer full)",
    "cost: a uprobe traps on every allocation and free it probes: 91 traps in 0.1s (1222/s) \
     (the interposer's calls trap only to have their stack sampled); measured here at the \
     start, an allocation's entry and return probes cost 1.29 µs and a free's probe 0.73 µs, \
     so about 0.00s of the targets' time went to the probes",
    "interposed: an LD_PRELOAD library in the command (1 processes: pid 29515) counted 22204 \
     allocations and 22002 frees of them without trapping but for the sampled stacks, 0 \
     frees of blocks it did not see allocated (from before it started, inherited over a \
     fork, or not tracked); lost: 0 (site table full), 0 not tracked as live (their memory \
     shows as in use); 91 stacks taken (the first allocation of each site, then one in 256) \
     through one uprobe on its marker function",
    "go: pid 29543 (/work/main/target/tmp/go/1.24.11/go_alloc, go1.24): 3 allocations \
     sampled by the runtime at MemProfileRate 524288 bytes, weighted as Go weights them; 0 \
     frees of objects sampled before the window; 0 events lost (ring buffer full)",
    "labels: 3 left out whose keys the profiler does not know",
];

#[test]
fn the_words_written_before_read_as_typed_accounts_and_write_back_the_same() {
    let elided = format!(
        "inlined frames: 7 elided at 2 locations whose inline chain was over the \
         {MAX_INLINE_LINES} frames a location keeps; each shows one `[elided: N inlined \
         frames]` frame"
    );
    for text in WRITTEN.into_iter().chain([elided.as_str()]) {
        let account = Account::read(text.to_owned());
        assert!(
            !matches!(account, Account::Note(_)),
            "not recognised: {text}"
        );
        assert_eq!(account.text(), text);
    }
}

fn every_shape() -> Vec<Account> {
    let loss = |count, cause| Loss { count, cause };
    vec![
        Account::Ticks(Ticks::new(1234, 99, 12.5, 6.25, 4)),
        Account::Recorded {
            recorded: 10,
            filtered: 3,
        },
        Account::SamplesLost {
            samples: 1,
            user_stacks: 2,
            kernel_stacks: 3,
        },
        Account::ProcessesLost {
            announcements: 4,
            forks: 5,
        },
        Account::RingFull(RingFull {
            lost: 2785,
            mb_per_second: 16.16,
            ring_mib: 2,
            rerun_mib: Some(64),
        }),
        Account::RingFull(RingFull {
            lost: 1,
            mb_per_second: 900.5,
            ring_mib: 1024,
            rerun_mib: None,
        }),
        Account::IoRequested {
            iovecs: 8,
            more: 17,
        },
        Account::Tally(Tally {
            subject: Subject::OffCpuWaits,
            counts: vec![Count {
                count: 1948084,
                what: Counted::Completed,
            }],
            lost: vec![
                loss(18746, Cause::OverRate),
                loss(3, Cause::OverLimit),
                loss(4, Cause::EndsLost),
                loss(5, Cause::MapFull(Table::OffCpuSites)),
                loss(6, Cause::MapFull(Table::OffCpuThreads)),
                loss(7, Cause::MapFull(Table::OffCpuExited)),
            ],
            stacks_taken: 16010,
            stacks_lost: 2,
        }),
        Account::Tally(Tally {
            subject: Subject::Waits,
            counts: vec![
                Count {
                    count: 24,
                    what: Counted::Completed,
                },
                Count {
                    count: 2,
                    what: Counted::InProgress,
                },
            ],
            lost: vec![loss(6, Cause::MapFull(Table::Blocking))],
            stacks_taken: 9,
            stacks_lost: 1,
        }),
        Account::Tally(Tally {
            subject: Subject::Allocations,
            counts: vec![
                Count {
                    count: 5,
                    what: Counted::Allocated,
                },
                Count {
                    count: 4,
                    what: Counted::Freed,
                },
                Count {
                    count: 3,
                    what: Counted::FreedFromBefore,
                },
            ],
            lost: vec![
                loss(1, Cause::MapFull(Table::Sites)),
                loss(2, Cause::MapFull(Table::Live { capacity: 524288 })),
                loss(3, Cause::Unpaired),
            ],
            stacks_taken: 7,
            stacks_lost: 0,
        }),
        Account::Cost(TrapCost {
            traps: 3,
            seconds: 1.0,
            per_second: 3.0,
            interposer: false,
            measured: None,
        }),
        Account::Cost(TrapCost {
            traps: 300,
            seconds: 2.5,
            per_second: 120.0,
            interposer: true,
            measured: Some(Measured {
                allocation_us: 1.25,
                free_us: 0.75,
                spent_seconds: 0.5,
                stepped: Some((2, 40)),
            }),
        }),
        Account::GoroutineCost(GoroutineCost {
            parks: 12,
            wakes: 10,
            seconds: 2.0,
            per_second: 11.0,
            measured: None,
        }),
        Account::GoroutineCost(GoroutineCost {
            parks: 120_000,
            wakes: 100_000,
            seconds: 2.0,
            per_second: 110_000.0,
            measured: Some((1.25, 0.28)),
        }),
        Account::Interposed(Interposed {
            started: Some(Interposer {
                at_least: true,
                processes: 300,
                pids: "1, 2, 3, ...".to_owned(),
                allocations: 10,
                frees: 9,
                frees_unknown: 1,
                lost: vec![
                    loss(2, Cause::MapFull(Table::InterposerSites)),
                    loss(3, Cause::MapFull(Table::InterposerLive)),
                ],
                stacks: 4,
                every: 256,
            }),
            refused: Some(Refused {
                total: 6,
                foreign: 1,
                impossible: 2,
                header: 3,
            }),
        }),
        Account::Interposed(Interposed {
            started: None,
            refused: None,
        }),
        Account::GoHeap(GoHeap {
            pid: 42,
            path: "/bin/go app".to_owned(),
            version: (1, 22),
            allocations: 3,
            rate: 524288,
            frees_before: 1,
            lost: 2,
        }),
        Account::Elided {
            lines: 9,
            locations: 1,
            on_read: true,
        },
        Account::LabelsLeftOut(5),
        Account::Note("in use: blocks allocated in the window".to_owned()),
    ]
}

#[test]
fn every_shape_reads_back_as_it_was_written() {
    for account in every_shape() {
        let text = account.text();
        let again = Account::read(text.clone());
        assert_eq!(again.text(), text);
        if let (Account::Ticks(a), Account::Ticks(b)) = (&account, &again) {
            // Its figures are read as they were shown, rounded.
            assert_eq!(
                (a.received, a.frequency, a.cpus),
                (b.received, b.frequency, b.cpus)
            );
        } else {
            assert_eq!(again, account, "{text}");
        }
    }
}

#[test]
fn other_words_stay_a_note() {
    for text in [
        "lost: 0 samples",
        "waits: many completed",
        "calls: 3 traced; lost: 0 (I/O map full); stack samples: 1 taken, 0 lost (ring \
         buffer full) and more",
        "labels: 01 left out whose keys the profiler does not know",
        "",
        "go: pid 1 (x, gone): 3 allocations",
    ] {
        assert_eq!(
            Account::read(text.to_owned()),
            Account::Note(text.to_owned())
        );
    }
}

#[test]
fn losses_count_by_cause() {
    let losses: Vec<Loss> = every_shape().iter().flat_map(Account::losses).collect();
    let of = |cause: fn(&Cause) -> bool| -> u64 {
        losses
            .iter()
            .filter(|l| cause(&l.cause))
            .map(|l| l.count)
            .sum()
    };
    // Samples 1, announcements 4, the waits' stacks 1, the Go events 2, off-CPU stacks 2.
    assert_eq!(of(|c| *c == Cause::RingBufferFull), 10);
    // Forks 5, blocking 6, sites 1, live 2, the interposer's sites 2 and live 3, off-CPU
    // sites 5, threads 6 and exited threads 7.
    assert_eq!(of(|c| matches!(c, Cause::MapFull(_))), 37);
    assert_eq!(of(|c| *c == Cause::OverRate), 18746);
    assert_eq!(of(|c| *c == Cause::EndsLost), 4);
    assert_eq!(of(|c| *c == Cause::Unpaired), 3);
    assert_eq!(of(|c| *c == Cause::StackUnreadable), 2);
    assert_eq!(of(|c| *c == Cause::StackNotTaken), 3);
}

#[test]
fn any_cut_of_the_words_reads_back_as_it_was() {
    // Files are others' input: a line cut anywhere, or with a unit in the middle of a
    // number, is kept as it was, never misread or dropped.
    for account in every_shape() {
        let text = account.text();
        for (at, _) in text.char_indices() {
            let cut = &text[..at];
            assert_eq!(Account::read(cut.to_owned()).text(), cut);
            let spliced = format!("{cut}µ{}", &text[at..]);
            assert_eq!(Account::read(spliced.clone()).text(), spliced);
        }
    }
}
