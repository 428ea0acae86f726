//! Go contention in a blocking profile, in Go's terms: `sync.Mutex`/`RWMutex` waits by the
//! function that took the lock, and channel waits by the function that sent, received or
//! selected, each with what to do about it.

use std::collections::{BTreeMap, BTreeSet};

use profiler_model::LabelKey;
use profiler_model::labels::{WaitClass, Waiters, class_of};
use profiler_model::{BlockValue, Profile, Sample};

/// The share of the profile's window that goroutines must have waited at one channel site,
/// together, for it to be a finding.
pub const MIN_CHANNEL_SHARE: f64 = 0.05;

/// What goroutines waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GoWaitKind {
    /// A `sync.Mutex` or `sync.RWMutex`.
    Mutex,
    /// A channel send: the goroutine waits for a receiver.
    ChannelSend,
    /// A channel receive or `select`, not at the top of its goroutine: the goroutine waits
    /// for a value another one sends (a request waiting for a worker's answer).
    ChannelReceive,
    /// A channel's own lock, which threads queued for in the runtime (`runtime.lock2`
    /// inside a send, receive or `select`): seen as futex waits, not goroutine waits.
    ChannelLock,
}

impl GoWaitKind {
    /// Every kind, in the order the summary lists them.
    pub const ALL: [Self; 4] = [
        Self::Mutex,
        Self::ChannelSend,
        Self::ChannelReceive,
        Self::ChannelLock,
    ];

    /// What to do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Mutex => {
                "goroutines queue on this lock: shorten the critical section (compute outside \
                 Lock/Unlock), shard the data over several mutexes, batch updates per \
                 goroutine and merge them, or publish read-mostly data copy-on-write \
                 (atomic.Pointer) instead of locking it"
            }
            Self::ChannelSend => {
                "senders wait for a receiver: the receiving side is slower than the sending \
                 one; add receivers or make each receive do less, send batches (a slice per \
                 message) instead of single items; a buffer (make(chan T, n)) only absorbs \
                 bursts, and a buffered channel whose senders wait is full"
            }
            Self::ChannelReceive => {
                "these goroutines wait for values other goroutines send: the time is spent \
                 by the senders (profile what they do); more senders or less work per value \
                 shortens it, a buffer does not"
            }
            Self::ChannelLock => {
                "threads on several CPUs used this channel at once, and every send, receive \
                 and select takes the channel's lock: give each producer or worker a channel \
                 of its own, or send batches (a slice per message) so the lock is taken less \
                 often; a buffer does not help, it is behind the same lock"
            }
        }
    }
}

/// Whether a goroutine wait is idle, not a cost of the work: sleeping, waiting for the
/// network or a timer, one of the runtime's background workers, or a goroutine waiting
/// for work at its own top (a receive or `select` in the function the goroutine was
/// started with, as a worker's `for job := range jobs` or a server's accept loop).
pub fn is_idle_wait(profile: &Profile, sample: &Sample) -> bool {
    if !sample.is_goroutine_wait() {
        return false;
    }
    match class_of(sample) {
        Some(WaitClass::Sleep | WaitClass::Network | WaitClass::Gc | WaitClass::Idle) => true,
        Some(WaitClass::Channel) => {
            !is_send(sample) && waits_at_its_top(&leaf_first(profile, sample))
        }
        _ => false,
    }
}

fn is_send(sample: &Sample) -> bool {
    sample
        .label_str(LabelKey::Reason)
        .is_some_and(|r| r.starts_with("chan send"))
}

/// The functions of a sample's stack, leaf first.
fn leaf_first<'a>(profile: &'a Profile, sample: &Sample) -> Vec<&'a str> {
    let mut frames = profile.stack_functions(sample.stack);
    frames.reverse();
    frames
}

/// Whether the Go function that waited (the first outside the machinery of `frames`, leaf
/// first) is its goroutine's own: below it only `runtime.goexit` and the closures a `go`
/// statement wraps its call in (`main.run.func1` before Go 1.22, `main.run.gowrap1` since).
fn waits_at_its_top(frames: &[&str]) -> bool {
    frames
        .iter()
        .position(|f| !is_machinery(f))
        .is_none_or(|at| {
            frames[at + 1..]
                .iter()
                .all(|f| *f == "runtime.goexit" || is_go_statement_wrapper(f))
        })
}

/// Whether `function` is a closure as a `go` statement with arguments makes one: its
/// last element is `funcN` or `gowrapN`.
fn is_go_statement_wrapper(function: &str) -> bool {
    let last = function.rsplit('.').next().unwrap_or("");
    ["func", "gowrap"].iter().any(|prefix| {
        last.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// One Go wait site worth looking at.
#[derive(Debug, Clone, PartialEq)]
pub struct GoWaitFinding {
    /// A mutex or a channel.
    pub kind: GoWaitKind,
    /// The process.
    pub pid: i64,
    /// Its name.
    pub comm: String,
    /// The Go function that waited: the caller of the lock or channel operation.
    pub function: String,
    /// The operation it waited in (`sync.(*Mutex).Lock`, or the wait reason of a channel
    /// wait such as `chan receive`).
    pub operation: String,
    /// Whether several goroutines waited there, or each stack's waits were one goroutine's.
    pub waiters: Waiters,
    /// Waits.
    pub waits: u64,
    /// Nanoseconds waited.
    pub delay: u64,
}

/// Whether a frame belongs to the Go runtime or the standard library's locks and
/// channels, which the findings look past to the code that called them.
pub(super) fn is_machinery(function: &str) -> bool {
    function.starts_with("runtime.")
        || function.starts_with("sync.")
        || function.starts_with("internal/")
        || function.starts_with('[')
}

/// The contended mutexes (waited on by two goroutines or more) and the channel sites where
/// goroutines waited at least [`MIN_CHANNEL_SHARE`] of the window, most delay first.
pub fn findings(profile: &Profile) -> Vec<GoWaitFinding> {
    #[derive(Default)]
    struct Acc {
        comm: String,
        goroutines: BTreeSet<i64>,
        several: bool,
        waits: u64,
        delay: u64,
    }
    let mut groups: BTreeMap<(GoWaitKind, i64, String, String), Acc> = BTreeMap::new();
    for sample in &profile.samples {
        let kind = match class_of(sample) {
            Some(WaitClass::Lock) => GoWaitKind::Mutex,
            Some(WaitClass::Channel) if is_send(sample) => GoWaitKind::ChannelSend,
            Some(WaitClass::Channel) => GoWaitKind::ChannelReceive,
            _ => continue,
        };
        // Leaf first: the first frame outside the machinery is the code that waited.
        let frames = leaf_first(profile, sample);
        if kind == GoWaitKind::ChannelReceive && waits_at_its_top(&frames) {
            continue; // A worker waiting for work is idle, whatever its channel's buffer.
        }
        let Some(at) = frames.iter().position(|f| !is_machinery(f)) else {
            continue; // The runtime's own goroutines.
        };
        let operation = match kind {
            GoWaitKind::Mutex => {
                // Semaphores also serve WaitGroup (Go 1.19 names both `semacquire`).
                let Some(lock) = at.checked_sub(1).map(|i| frames[i]) else {
                    continue;
                };
                if !lock.contains("Mutex)") {
                    continue;
                }
                lock.to_owned()
            }
            GoWaitKind::ChannelSend | GoWaitKind::ChannelReceive | GoWaitKind::ChannelLock => {
                sample
                    .label_str(LabelKey::Reason)
                    .unwrap_or("chan")
                    .to_owned()
            }
        };
        let pid = sample.label_num(LabelKey::Pid).unwrap_or(0);
        let acc = groups
            .entry((kind, pid, frames[at].to_owned(), operation))
            .or_default();
        if acc.comm.is_empty() {
            acc.comm = sample.label_str(LabelKey::Comm).unwrap_or("").to_owned();
        }
        if let Some(g) = sample.label_num(LabelKey::Goroutine) {
            acc.goroutines.insert(g);
        }
        acc.several |= sample
            .label_str(LabelKey::Waiters)
            .and_then(Waiters::from_label)
            == Some(Waiters::Several);
        acc.waits = acc
            .waits
            .saturating_add(sample.count(BlockValue::Contentions.index()));
        acc.delay = acc
            .delay
            .saturating_add(sample.count(BlockValue::Delay.index()));
    }
    let window = profile.duration.as_nanos() as f64;
    let mut all: Vec<GoWaitFinding> = groups
        .into_iter()
        .map(|((kind, pid, function, operation), acc)| GoWaitFinding {
            kind,
            pid,
            comm: acc.comm,
            function,
            operation,
            waiters: if acc.several || acc.goroutines.len() >= 2 {
                Waiters::Several
            } else {
                Waiters::One
            },
            waits: acc.waits,
            delay: acc.delay,
        })
        .filter(|f| match f.kind {
            GoWaitKind::Mutex => f.waiters == Waiters::Several,
            GoWaitKind::ChannelSend | GoWaitKind::ChannelReceive | GoWaitKind::ChannelLock => {
                f.delay as f64 >= MIN_CHANNEL_SHARE * window
            }
        })
        .collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.delay));
    all
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::{Label, ProfileBuilder, ProfileKind};

    use super::*;

    /// A block profile to build, and a stack of `names` (leaf first) in it.
    fn builder() -> ProfileBuilder {
        ProfileBuilder::new(
            ProfileKind::Block,
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        )
    }

    use profiler_model::fixture::named_stack as stack;

    fn profile() -> Profile {
        let mut b = builder();
        // Locations are leaf first, from runtime.gopark as files written before stacks
        // started at the blocking call have them.
        let lock = stack(
            &mut b,
            &[
                "runtime.gopark",
                "sync.(*Mutex).lockSlow",
                "sync.(*Mutex).Lock",
                "main.put",
                "main.main",
            ],
        );
        let wg = stack(
            &mut b,
            &["runtime.gopark", "sync.(*WaitGroup).Wait", "main.main"],
        );
        let recv = stack(
            &mut b,
            &[
                "runtime.gopark",
                "runtime.chanrecv1",
                "main.work",
                "main.handle",
                "runtime.goexit",
            ],
        );
        // A worker waiting for work at its goroutine's top: idle, never a finding.
        let worker = stack(
            &mut b,
            &[
                "runtime.gopark",
                "runtime.chanrecv2",
                "main.worker",
                "runtime.goexit",
            ],
        );
        let labels = |g: i64, class: &str, reason: &str| {
            vec![
                Label::num(LabelKey::Pid, 7),
                Label::num(LabelKey::Goroutine, g),
                Label::str(LabelKey::Comm, "app"),
                Label::str(LabelKey::Class, class),
                Label::str(LabelKey::Reason, reason),
            ]
        };
        b.add_sample(
            lock,
            &[10, 500_000_000],
            labels(1, "lock", "sync.Mutex.Lock"),
        );
        b.add_sample(
            lock,
            &[12, 700_000_000],
            labels(2, "lock", "sync.Mutex.Lock"),
        );
        b.add_sample(wg, &[3, 900_000_000], labels(3, "lock", "semacquire"));
        b.add_sample(recv, &[5, 80_000_000], labels(4, "channel", "chan receive"));
        b.add_sample(recv, &[5, 1_000_000], labels(5, "sleep", "sleep"));
        b.add_sample(
            worker,
            &[50, 900_000_000],
            labels(6, "channel", "chan receive"),
        );
        b.build()
    }

    /// A mutex stack as the profiler now writes it: one sample per stack, with `waiters`,
    /// starting at the blocking call as Go's block profile does.
    fn lock_site(waiters: Waiters) -> Profile {
        let mut b = builder();
        let stack = stack(&mut b, &["sync.(*Mutex).Lock", "main.put"]);
        b.add_sample(
            stack,
            &[40, 900_000_000],
            vec![
                Label::num(LabelKey::Pid, 7),
                Label::str(LabelKey::Waiters, waiters.label()),
                Label::str(LabelKey::Comm, "app"),
                Label::str(LabelKey::Class, "lock"),
                Label::str(LabelKey::Reason, "sync.Mutex.Lock"),
            ],
        );
        b.build()
    }

    #[test]
    fn go_statement_wrappers_are_told_from_named_functions() {
        assert!(is_go_statement_wrapper("main.runChannel.func1"));
        assert!(is_go_statement_wrapper("main.runChannel.gowrap2"));
        assert!(!is_go_statement_wrapper("main.worker"));
        assert!(!is_go_statement_wrapper("main.funcs"));
        assert!(!is_go_statement_wrapper("main.(*T).func"));
    }

    #[test]
    fn a_lock_is_contended_only_where_several_goroutines_waited() {
        let several = findings(&lock_site(Waiters::Several));
        assert_eq!(several.len(), 1, "{several:?}");
        assert_eq!(several[0].waiters, Waiters::Several);
        assert!(findings(&lock_site(Waiters::One)).is_empty());
    }

    #[test]
    fn names_the_lock_caller_and_the_channel_waiter() {
        let found = findings(&profile());
        assert_eq!(found.len(), 2, "{found:?}");
        let lock = &found[0];
        assert_eq!(
            (lock.kind, lock.function.as_str(), lock.operation.as_str()),
            (GoWaitKind::Mutex, "main.put", "sync.(*Mutex).Lock")
        );
        assert_eq!(
            (lock.waiters, lock.waits, lock.delay),
            (Waiters::Several, 22, 1_200_000_000)
        );
        let chan = &found[1];
        assert_eq!(
            (chan.kind, chan.function.as_str(), chan.operation.as_str()),
            (GoWaitKind::ChannelReceive, "main.work", "chan receive")
        );
    }
}
