//! Where the off-CPU time went, by process, reason and the program's function that waited;
//! and which of those waits have a fix worth naming: a thread that spends a large share of
//! the window waiting for the disk, in page faults, for a CPU, or sleeping in a loop.

use std::collections::HashMap;

use profiler_model::labels::OffCpuReason;
use profiler_model::{LabelKey, OffCpuValue, Profile};

use super::language::user_caller;

/// Share of the window a thread's waits of one reason and function must take to be a
/// finding: a tenth of the time is worth a look, less is noise.
pub const FINDING_SHARE: f64 = 0.10;

/// Sleeps a second above which a sleeping loop polls rather than waits for a timer.
pub const POLLING_SLEEPS_PER_SECOND: f64 = 50.0;

/// The waits of one process, for one reason, in one of its functions.
#[derive(Debug, Clone, PartialEq)]
pub struct OffCpuWaits {
    /// Process id.
    pub pid: i64,
    /// Its name.
    pub comm: String,
    /// Why it waited.
    pub reason: OffCpuReason,
    /// The program's function that waited (innermost frame outside the kernel and the
    /// C library).
    pub function: String,
    /// Nanoseconds off CPU.
    pub delay: u64,
    /// Waits.
    pub waits: u64,
    /// Threads that waited there.
    pub threads: usize,
    /// Who woke most of its time, when known.
    pub waker: Option<String>,
    /// The window, in seconds.
    pub seconds: f64,
}

impl OffCpuWaits {
    /// Its time as a share of the window of the threads that waited there, at most all
    /// of it: the programs start timing a little before the window's clock does.
    pub fn share(&self) -> f64 {
        let window = self.seconds * self.threads.max(1) as f64;
        if window > 0.0 {
            (self.delay as f64 / 1e9 / window).min(1.0)
        } else {
            0.0
        }
    }

    /// Whether the wait has a fix to name: waiting for the disk, in faults, for a CPU, or
    /// sleeping in a loop, for a tenth of the window or more. Waiting for a peer, a client,
    /// a lock or an event is what servers do when idle, and is not a finding by itself.
    pub fn is_finding(&self) -> bool {
        if self.share() < FINDING_SHARE {
            return false;
        }
        match self.reason {
            OffCpuReason::Disk | OffCpuReason::Pagefault | OffCpuReason::Runqueue => true,
            OffCpuReason::Sleep => {
                self.seconds > 0.0 && self.waits as f64 / self.seconds >= POLLING_SLEEPS_PER_SECOND
            }
            _ => false,
        }
    }
}

/// The waits of `profile` grouped by process, reason and function, the longest first.
pub fn waits(profile: &Profile) -> Vec<OffCpuWaits> {
    let seconds = profile.duration.as_secs_f64();
    type Key = (i64, OffCpuReason, String);
    let mut groups: HashMap<Key, OffCpuWaits> = HashMap::new();
    let mut threads: HashMap<Key, Vec<i64>> = HashMap::new();
    let mut wakers: HashMap<Key, HashMap<String, u64>> = HashMap::new();
    for sample in &profile.samples {
        let Some(reason) = sample
            .label_str(LabelKey::Reason)
            .and_then(OffCpuReason::from_label)
        else {
            continue;
        };
        let pid = sample.label_num(LabelKey::Pid).unwrap_or(-1);
        let function = user_caller(profile, sample.stack);
        let key = (pid, reason, function.clone());
        let delay = sample.count(OffCpuValue::Delay.index());
        let entry = groups.entry(key.clone()).or_insert_with(|| OffCpuWaits {
            pid,
            comm: sample.label_str(LabelKey::Comm).unwrap_or("").to_owned(),
            reason,
            function,
            delay: 0,
            waits: 0,
            threads: 0,
            waker: None,
            seconds,
        });
        // A file given to `profiler report` holds any values: sums saturate.
        entry.delay = entry.delay.saturating_add(delay);
        entry.waits = entry
            .waits
            .saturating_add(sample.count(OffCpuValue::Waits.index()));
        if let Some(tid) = sample.label_num(LabelKey::Tid) {
            let seen = threads.entry(key.clone()).or_default();
            if !seen.contains(&tid) {
                seen.push(tid);
            }
        }
        if let Some(waker) = sample.label_str(LabelKey::Waker) {
            let by_waker = wakers
                .entry(key)
                .or_default()
                .entry(waker.to_owned())
                .or_default();
            *by_waker = by_waker.saturating_add(delay);
        }
    }
    let mut out: Vec<OffCpuWaits> = groups
        .into_iter()
        .map(|(key, mut waits)| {
            waits.threads = threads.get(&key).map_or(0, Vec::len);
            waits.waker = wakers.get(&key).and_then(|by| {
                by.iter()
                    .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                    .map(|(name, _)| name.clone())
            });
            waits
        })
        .filter(|w| w.delay > 0)
        .collect();
    out.sort_by(|a, b| {
        b.delay
            .cmp(&a.delay)
            .then_with(|| (a.pid, a.reason, &a.function).cmp(&(b.pid, b.reason, &b.function)))
    });
    out
}

/// What to do about waits of `reason`, in one sentence an engineer can act on.
pub fn hint(reason: OffCpuReason) -> &'static str {
    match reason {
        OffCpuReason::Disk => {
            "waits for the disk: group the writes and sync once per group (group commit) \
             instead of once per write; for reads, keep the working set in the page cache \
             (memory) or read larger, sequential blocks"
        }
        OffCpuReason::Pagefault => {
            "waits in page faults: prefault what it will touch (MAP_POPULATE, \
             madvise(MADV_WILLNEED)), access mapped files sequentially so readahead works, \
             or give it the memory it swaps out"
        }
        OffCpuReason::Runqueue => {
            "runnable but waiting for a CPU: the host or its CPU quota is saturated (check \
             nr_throttled in the cgroup's cpu.stat), or it runs more busy threads than CPUs; \
             give it CPUs or run fewer threads"
        }
        OffCpuReason::Sleep => {
            "sleeps in a loop, polling: wait on the event itself (a condition variable, a \
             channel, epoll on the descriptor) instead of sleeping and checking"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(reason: OffCpuReason, delay_s: f64, waits: u64) -> OffCpuWaits {
        OffCpuWaits {
            pid: 1,
            comm: "app".to_owned(),
            reason,
            function: "f".to_owned(),
            delay: (delay_s * 1e9) as u64,
            waits,
            threads: 1,
            waker: None,
            seconds: 10.0,
        }
    }

    #[test]
    fn only_waits_with_a_fix_and_a_real_share_are_findings() {
        assert!(waits(OffCpuReason::Disk, 5.0, 100).is_finding());
        assert!(!waits(OffCpuReason::Disk, 0.5, 100).is_finding());
        assert!(waits(OffCpuReason::Runqueue, 2.0, 100).is_finding());
        // An idle server waiting for clients is not a finding.
        assert!(!waits(OffCpuReason::Poll, 9.0, 100).is_finding());
        assert!(!waits(OffCpuReason::Net, 9.0, 100).is_finding());
        // A timer sleeping long is not polling; a thousand 1 ms sleeps a second are.
        assert!(!waits(OffCpuReason::Sleep, 9.0, 9).is_finding());
        assert!(waits(OffCpuReason::Sleep, 9.0, 9000).is_finding());
    }
}
