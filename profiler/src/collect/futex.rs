//! The futex waits of the blocking profile: every wait from entry to return, counted by
//! the kernel per site and futex with its time and how it ended, as Go's block and mutex
//! profiles count them, and the stacks sampled at each site.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use profiler_common::{
    BlockKey, BlockWake, BlockWakeKey, counter, futex_syscall, sample_kind, wait_outcome,
};
use profiler_model::LabelKey;
use profiler_model::labels::IN_PROGRESS;
use profiler_model::{
    Account, Cause, Comment, Count, Counted, Label, Loss, LostStack, ProfileKind, Subject, Table,
    Tally,
};

use crate::collect::collector::{Collector, RunEnd, Sample};
use crate::collect::probes::Probes;
use crate::collect::raw_profile::{RawProfile, SiteStacks};
use crate::collect::records::comm;

/// Counts the stacks sampled at each futex wait site.
#[derive(Default)]
pub struct FutexCollector {
    stacks: SiteStacks<BlockKey>,
}

impl Collector for FutexCollector {
    fn takes(&self, kind: u32) -> bool {
        kind == sample_kind::BLOCK
    }

    fn take(&mut self, sample: &Sample) {
        self.stacks
            .count(sample.header.block_site, sample.user, &sample.program);
    }

    fn close(&mut self, probes: &mut Probes, window_end_ktime_ns: u64) {
        if let Err(err) = probes.set_block_window(true, window_end_ktime_ns) {
            log::warn!("{err:#}");
        }
    }

    /// Sample types `contentions/count` and `delay/nanoseconds`; labels `pid`, `tid`,
    /// `comm`, `futex` (the address, in hex) and `outcome` (woken, timed out,
    /// interrupted, no wait, or in progress), and for woken waits whose waker was seen,
    /// `waker_pid` and `waker_tid`.
    fn finish(self: Box<Self>, probes: &mut Probes, run: &RunEnd<'_>) -> Result<RawProfile> {
        let mut waits = probes.read_block_waits()?;
        waits.retain(|(key, _)| run.keeps(key.pid));
        let mut wakers: HashMap<BlockKey, Vec<(BlockWakeKey, BlockWake)>> = HashMap::new();
        for (key, wake) in probes.read_block_wakers()? {
            wakers.entry(key.site).or_default().push((key, wake));
        }
        let mut in_progress = probes.read_in_flight()?;
        in_progress.retain(|entry| entry.syscall >= futex_syscall::FUTEX && run.keeps(entry.pid));
        let mut comments = accounting(run, in_progress.len());
        if !run.config.profiles.goroutines {
            let pids = waits.iter().map(|(key, _)| key.pid);
            if let Some(note) = crate::collect::goroutines::untraced_note(pids) {
                comments.push(Comment::Account(Account::Note(note)));
            }
        }
        let mut raw = RawProfile::new(ProfileKind::Block, comments);
        let stacks_of = self.stacks.by_site();
        let mut comms = HashMap::new();
        for (key, value) in &waits {
            let comm = comm(&value.comm);
            comms.insert(key.tid, comm.clone());
            let sampled = stacks_of.get(key).map_or(&[][..], Vec::as_slice);
            // Every sample of the site says when the thread first slept there.
            let first_wait = (value.first_ns != 0).then_some(value.first_ns);
            for outcome in 0..wait_outcome::COUNT {
                let (mut count, mut nanos) = (value.waits[outcome], value.nanos[outcome]);
                let mut labels = labels(key, &comm, wait_outcome::NAMES[outcome]);
                if let Some(first) = first_wait {
                    labels.push(since_window(run, LabelKey::FirstWait, first));
                }
                let missing = LostStack::RingBufferFull;
                if outcome == wait_outcome::WOKEN {
                    // One sample per waker; what is left had no waker noted.
                    for (wake, by) in wakers.get(key).map_or(&[][..], Vec::as_slice) {
                        let mut labels = labels.clone();
                        labels.push(Label::num(LabelKey::WakerPid, i64::from(wake.waker_pid)));
                        labels.push(Label::num(LabelKey::WakerTid, i64::from(wake.waker_tid)));
                        labels.push(since_window(run, LabelKey::LastWake, by.last_ns));
                        raw.add_site(sampled, missing, &[by.waits, by.nanos], &labels);
                        count = count.saturating_sub(by.waits);
                        nanos = nanos.saturating_sub(by.nanos);
                    }
                }
                if count == 0 {
                    continue;
                }
                raw.add_site(sampled, missing, &[count, nanos], &labels);
            }
        }
        let recorded: HashSet<BlockKey> = waits.iter().map(|(key, _)| *key).collect();
        let waits_first: HashMap<BlockKey, u64> = waits
            .iter()
            .filter(|(_, value)| value.first_ns != 0)
            .map(|(key, value)| (*key, value.first_ns))
            .collect();
        for entry in &in_progress {
            let key = BlockKey::of(entry);
            // Counted up to the end of the window: the wait goes on, the profile does not.
            let started = entry.start_ns.max(run.window_start_ktime_ns);
            let nanos = run.window_end_ktime_ns.saturating_sub(started);
            let comm = comms.get(&entry.tid).cloned().unwrap_or_default();
            // A wait whose site is not in the map was not recorded at its entry: the map
            // was full, so its stack was never taken either.
            let missing = if recorded.contains(&key) {
                LostStack::RingBufferFull
            } else {
                LostStack::MapFull
            };
            let sampled = stacks_of.get(&key).map_or(&[][..], Vec::as_slice);
            let mut labels = labels(&key, &comm, IN_PROGRESS);
            // Its own start, or an earlier wait's there that ended in the window.
            let first = waits_first
                .get(&key)
                .map_or(entry.start_ns, |&first| first.min(entry.start_ns));
            labels.push(since_window(run, LabelKey::FirstWait, first));
            raw.add_site(sampled, missing, &[1, nanos], &labels);
        }
        Ok(raw)
    }
}

fn labels(key: &BlockKey, comm: &str, outcome: &str) -> Vec<Label> {
    vec![
        Label::num(LabelKey::Pid, i64::from(key.pid)),
        Label::num(LabelKey::Tid, i64::from(key.tid)),
        Label::str(LabelKey::Comm, comm),
        Label::str(LabelKey::Futex, format!("{:#x}", key.uaddr)),
        Label::str(LabelKey::Outcome, outcome),
    ]
}

/// A label of kernel time `ktime_ns` as nanoseconds from the window's start.
fn since_window(run: &RunEnd<'_>, key: LabelKey, ktime_ns: u64) -> Label {
    Label::num(
        key,
        (i128::from(ktime_ns) - i128::from(run.window_start_ktime_ns)) as i64,
    )
}

fn accounting(run: &RunEnd<'_>, in_progress: usize) -> Vec<Comment> {
    let c = run.counters;
    vec![
        Comment::Method(
            "traced: futex waits (WAIT, WAIT_BITSET, LOCK_PI, LOCK_PI2, WAIT_REQUEUE_PI, \
         futex_waitv, futex_wait) from entry to return; wakes are not waits"
                .to_owned(),
        ),
        Comment::Account(Account::Tally(Tally {
            subject: Subject::Waits,
            counts: vec![
                Count {
                    count: c.get(counter::BLOCK_WAITS),
                    what: Counted::Completed,
                },
                Count {
                    count: in_progress as u64,
                    what: Counted::InProgress,
                },
                Count {
                    count: c.get(counter::LOST_BLOCK_WAKERS),
                    what: Counted::WakerUnkept,
                },
            ],
            lost: vec![Loss {
                count: c.get(counter::LOST_BLOCK_FULL),
                cause: Cause::MapFull(Table::Blocking),
            }],
            stacks_taken: c.get(counter::BLOCK_STACKS),
            stacks_lost: c.get(counter::LOST_BLOCK_STACK),
        })),
    ]
}
