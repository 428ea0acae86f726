//! Builds the blocking profile: futex waits by call stack and futex address, with their time
//! and how they ended, as Go's block and mutex profiles count them.

use std::collections::{HashMap, HashSet};

use profiler_common::{BlockKey, counter, wait_outcome};
use profiler_model::{Label, LostStack, Profile, ProfileKind};

use crate::collect::session::RunOutcome;
use crate::config::Config;
use crate::convert::cpu::comm;
use crate::convert::facts;
use crate::convert::facts::IN_PROGRESS;
use crate::convert::goroutines;
use crate::convert::stacks::{StackResolver, stacks_by_site};

/// Builds the symbolized blocking profile: sample types `contentions/count` and
/// `delay/nanoseconds` (the default, which weights the folded stacks and flame graph);
/// futex waits labelled `pid`, `tid`, `comm`, `futex` (the address, in hex) and `outcome`
/// (woken, timed out, interrupted, no wait, or in progress), those of idle Go runtime
/// threads also `class` = `idle`; goroutine waits as [`goroutines::add`] labels them.
pub fn build<'run>(
    run: &'run RunOutcome,
    config: &Config,
    resolver: &mut StackResolver<'run>,
) -> Profile {
    // With goroutine waits only (`--profiles goroutines`) no futex was traced.
    let mut accounted = if config.profiles.block {
        accounting(run)
    } else {
        Vec::new()
    };
    if config.profiles.goroutines {
        accounted.extend(goroutines::accounting(run));
    }
    let mut builder = facts::start(ProfileKind::Block, run, config, accounted);
    let stacks_of = stacks_by_site(&run.samples.block);
    let mut comms = HashMap::new();
    for (key, value) in &run.block_waits {
        let comm = comm(&value.comm);
        comms.insert(key.tid, comm.clone());
        let sampled = stacks_of.get(key).map_or(&[][..], Vec::as_slice);
        for outcome in 0..wait_outcome::COUNT {
            let (waits, nanos) = (value.waits[outcome], value.nanos[outcome]);
            if waits == 0 {
                continue;
            }
            let labels = labels(key, &comm, wait_outcome::NAMES[outcome]);
            let missing = LostStack::RingBufferFull;
            resolver.add_site(&mut builder, sampled, missing, &[waits, nanos], &labels);
        }
    }
    let recorded: HashSet<BlockKey> = run.block_waits.iter().map(|(key, _)| *key).collect();
    for entry in &run.waits_in_progress {
        let key = BlockKey::of(entry);
        // Counted up to the end of the window: the wait goes on, the profile does not.
        let nanos = run.window_end_ktime_ns.saturating_sub(entry.start_ns);
        let comm = comms.get(&entry.tid).cloned().unwrap_or_default();
        // A wait whose site is not in the map was not recorded at its entry: the map was
        // full, so its stack was never taken either.
        let missing = if recorded.contains(&key) {
            LostStack::RingBufferFull
        } else {
            LostStack::MapFull
        };
        let sampled = stacks_of.get(&key).map_or(&[][..], Vec::as_slice);
        let labels = labels(&key, &comm, IN_PROGRESS);
        resolver.add_site(&mut builder, sampled, missing, &[1, nanos], &labels);
    }
    if config.profiles.goroutines {
        goroutines::add(&mut builder, run, resolver);
    }
    let mut profile = builder.build();
    goroutines::mark_idle_threads(&mut profile);
    profile
}

fn labels(key: &BlockKey, comm: &str, outcome: &str) -> Vec<Label> {
    vec![
        Label::num("pid", i64::from(key.pid)),
        Label::num("tid", i64::from(key.tid)),
        Label::str("comm", comm),
        Label::str("futex", format!("{:#x}", key.uaddr)),
        Label::str("outcome", outcome),
    ]
}

fn accounting(run: &RunOutcome) -> Vec<String> {
    let c = &run.counters;
    vec![
        "traced: futex waits (WAIT, WAIT_BITSET, LOCK_PI, LOCK_PI2, WAIT_REQUEUE_PI, \
         futex_waitv, futex_wait) from entry to return; wakes are not waits"
            .to_owned(),
        format!(
            "waits: {} completed, {} still in progress at the end (counted up to it); lost: {} \
             (blocking map full); stack samples: {} taken, {} lost (ring buffer full)",
            c.get(counter::BLOCK_WAITS),
            run.waits_in_progress.len(),
            c.get(counter::LOST_BLOCK_FULL),
            c.get(counter::BLOCK_STACKS),
            c.get(counter::LOST_BLOCK_STACK)
        ),
    ]
}
