//! Lock contention in a blocking profile: waits grouped by futex, and what to do when many
//! threads wait on one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use profiler_model::LabelKey;
use profiler_model::{BlockValue, Profile};

use super::language;

/// The waits on one futex of one process.
#[derive(Debug, Clone, PartialEq)]
pub struct FutexWaits {
    /// The process.
    pub pid: i64,
    /// Its name.
    pub comm: String,
    /// The futex address, as labelled (`0x...`).
    pub futex: String,
    /// Threads that waited on it.
    pub threads: usize,
    /// Waits on it.
    pub waits: u64,
    /// Nanoseconds waited on it.
    pub delay: u64,
    /// The functions that waited (the innermost frame outside the C library), most delay
    /// first, with their delay.
    pub waiters: Vec<(String, u64)>,
}

impl FutexWaits {
    /// Whether several threads wait on this futex: a contended lock (or a busy condition
    /// variable).
    pub fn contended(&self) -> bool {
        self.threads >= 2
    }
}

/// What to do about a contended lock.
pub const CONTENTION_HINT: &str = "shorten the critical section (move work out of the lock), \
    shard or partition the data so threads take different locks, buffer and batch updates \
    locally, use copy-on-write for read-mostly data, or a reader/writer lock if most holders \
    only read";

/// Waits grouped by (process, futex), most delay first.
pub fn by_futex(profile: &Profile) -> Vec<FutexWaits> {
    #[derive(Default)]
    struct Acc {
        comm: String,
        tids: BTreeSet<i64>,
        waits: u64,
        delay: u64,
        waiters: HashMap<String, u64>,
    }
    let mut groups: BTreeMap<(i64, String), Acc> = BTreeMap::new();
    for sample in profile.samples.iter().filter(|s| !is_idle(s)) {
        let pid = sample.label_num(LabelKey::Pid).unwrap_or(0);
        // Goroutine waits have no futex: `goroutines` finds their contention.
        let Some(futex) = sample.label_str(LabelKey::Futex).map(str::to_owned) else {
            continue;
        };
        let acc = groups.entry((pid, futex)).or_default();
        if acc.comm.is_empty() {
            acc.comm = sample.label_str(LabelKey::Comm).unwrap_or("").to_owned();
        }
        if let Some(tid) = sample.label_num(LabelKey::Tid) {
            acc.tids.insert(tid);
        }
        let delay = sample.count(BlockValue::Delay.index());
        // Saturating: values read from a file can add up past the largest number.
        let waits = sample.count(BlockValue::Contentions.index());
        acc.waits = acc.waits.saturating_add(waits);
        acc.delay = acc.delay.saturating_add(delay);
        let waiter = acc
            .waiters
            .entry(language::user_caller(profile, sample.stack))
            .or_default();
        *waiter = waiter.saturating_add(delay);
    }
    let mut all: Vec<FutexWaits> = groups
        .into_iter()
        .map(|((pid, futex), acc)| {
            let mut waiters: Vec<(String, u64)> = acc.waiters.into_iter().collect();
            waiters.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            FutexWaits {
                pid,
                comm: acc.comm,
                futex,
                threads: acc.tids.len(),
                waits: acc.waits,
                delay: acc.delay,
                waiters,
            }
        })
        .collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.delay));
    all
}

/// Whether a sample is an idle Go runtime thread's futex wait (the scheduler parking an
/// M with nothing to run), which is not blocking anyone.
pub fn is_idle(sample: &profiler_model::Sample) -> bool {
    profiler_model::labels::class_of(sample) == Some(profiler_model::labels::WaitClass::Idle)
        && sample.label_num(LabelKey::Goroutine).is_none()
}

/// Nanoseconds blocked per process (pid, comm), most first; idle Go runtime threads are
/// left out.
pub fn by_process(profile: &Profile) -> Vec<(i64, String, u64)> {
    let mut totals: BTreeMap<i64, (String, u64)> = BTreeMap::new();
    for sample in profile.samples.iter().filter(|s| !is_idle(s)) {
        let entry = totals
            .entry(sample.label_num(LabelKey::Pid).unwrap_or(0))
            .or_insert_with(|| (sample.label_str(LabelKey::Comm).unwrap_or("").to_owned(), 0));
        let delay = sample.count(BlockValue::Delay.index());
        entry.1 = entry.1.saturating_add(delay);
    }
    let mut all: Vec<(i64, String, u64)> = totals
        .into_iter()
        .map(|(pid, (comm, delay))| (pid, comm, delay))
        .collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.2));
    all
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::{Label, Line, Location, ProfileBuilder, ValueType};

    use super::*;

    fn profile() -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Block,
            vec![
                ValueType::new("contentions", "count"),
                ValueType::new("delay", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let loc = |b: &mut ProfileBuilder, name: &str| {
            b.location(Location {
                address: name.len() as u64,
                mapping: None,
                lines: vec![Line {
                    function: name.to_owned(),
                    file: None,
                    line: 0,
                }],
                kind: profiler_model::FrameKind::Function,
            })
        };
        let (lock, consume) = (loc(&mut b, "contend_lock"), loc(&mut b, "consume"));
        let (s1, s2) = (b.stack(vec![lock]), b.stack(vec![consume]));
        let labels = |tid: i64, futex: &str| {
            vec![
                Label::num(LabelKey::Pid, 7),
                Label::num(LabelKey::Tid, tid),
                Label::str(LabelKey::Comm, "app"),
                Label::str(LabelKey::Futex, futex),
            ]
        };
        b.add_sample(s1, &[10, 500], labels(1, "0x10"));
        b.add_sample(s1, &[12, 700], labels(2, "0x10"));
        b.add_sample(s2, &[3, 100], labels(3, "0x20"));
        b.build()
    }

    #[test]
    fn groups_waits_by_futex() {
        let groups = by_futex(&profile());
        assert_eq!(groups.len(), 2);
        let lock = &groups[0];
        assert_eq!(
            (lock.futex.as_str(), lock.threads, lock.waits, lock.delay),
            ("0x10", 2, 22, 1200)
        );
        assert!(lock.contended());
        assert_eq!(lock.waiters, vec![("contend_lock".to_owned(), 1200)]);
        assert!(!groups[1].contended());
    }

    #[test]
    fn totals_by_process() {
        assert_eq!(by_process(&profile()), vec![(7, "app".to_owned(), 1300)]);
    }
}
