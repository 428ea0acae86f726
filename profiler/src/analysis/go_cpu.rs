//! Go's small-I/O pattern in the CPU profile: a large share of CPU samples under
//! `syscall.Read`/`syscall.Write` (each call a trip into the kernel), by the Go function
//! that made the calls, with what to do about it.

use std::collections::HashMap;

use profiler_model::Profile;

use super::io::{IoSite, SmallIoFinding, SmallIoKind};

/// The share of the CPU profile under Go's read/write syscalls that is a finding.
pub const MIN_SHARE: f64 = 0.05;

/// How many calling functions a finding names.
const NAMED: usize = 5;

/// The Go frames that make a read or write syscall (Go 1.19 to 1.27).
const SYSCALL_FRAMES: [&str; 8] = [
    "syscall.Read",
    "syscall.Write",
    "syscall.read",
    "syscall.write",
    "syscall.Pread",
    "syscall.Pwrite",
    "internal/poll.(*FD).Read",
    "internal/poll.(*FD).Write",
];

/// What to do about it when the calls ask for little each (or nothing says otherwise).
pub const HINT: &str = "the program spends its CPU entering the kernel for small reads and \
    writes: wrap the file or connection in bufio.NewReaderSize / bufio.NewWriterSize (and \
    Flush once per batch), build output in a bytes.Buffer and write it whole, or read \
    larger blocks";

/// What the run's I/O profile says of the calls behind a hot spot: whether a buffer can
/// merge them is a fact of the calls (what they asked for, which way they went), not of
/// the CPU profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum IoEvidence {
    /// The run has no I/O profile.
    #[default]
    Unknown,
    /// The small-I/O cases the I/O profile found at call sites under the hot spot's callers.
    Cases(Vec<SmallIoKind>),
    /// The I/O profile has call sites under the callers, and none is a small-I/O hot path:
    /// their calls are few, or large.
    NoSmallCalls,
}

impl IoEvidence {
    /// What the I/O profile's `sites` and its small-I/O findings say of the calls under
    /// `callers`; [`Self::Unknown`] when no site lies under them (the I/O profile cannot
    /// tell).
    pub fn of(callers: &[(String, i64)], sites: &[IoSite], small_io: &[SmallIoFinding]) -> Self {
        let under = |path: &[String]| callers.iter().any(|(c, _)| path.contains(c));
        let mut cases: Vec<SmallIoKind> = small_io
            .iter()
            .filter(|f| under(&f.site.path))
            .map(|f| f.kind)
            .collect();
        cases.dedup_by_key(|k| k.name());
        if !cases.is_empty() {
            Self::Cases(cases)
        } else if sites.iter().any(|s| under(&s.path)) {
            Self::NoSmallCalls
        } else {
            Self::Unknown
        }
    }

    /// What to do, by what the calls were found to be.
    pub fn hint(&self) -> String {
        let cases = match self {
            Self::Unknown => return HINT.to_owned(),
            Self::NoSmallCalls => {
                return "the I/O profile finds no hot path of small calls under these \
                    functions (their calls are few, or large): a buffer would not cut them, \
                    and this CPU is the kernel's own work on the data"
                    .to_owned();
            }
            Self::Cases(cases) => cases,
        };
        if cases
            .iter()
            .any(|k| matches!(k, SmallIoKind::SmallRequests { .. }))
        {
            return HINT.to_owned();
        }
        let mut names: Vec<&str> = cases.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        format!(
            "no buffer merges these calls: the I/O profile finds them to be {} (its small-I/O \
             findings below say what cuts them)",
            names.join(" and ")
        )
    }
}

/// CPU time in Go's read/write syscalls, by the Go function that called them.
#[derive(Debug, Clone, PartialEq)]
pub struct GoSyscallHotSpot {
    /// The value (default sample type) of the stacks in a read/write syscall.
    pub value: i64,
    /// The profile's total of that sample type.
    pub total: i64,
    /// The Go functions that made the calls (the first frame above the syscall outside
    /// `os`, `syscall`, `internal/` and the runtime), most value first.
    pub callers: Vec<(String, i64)>,
    /// What the run's I/O profile says of these calls.
    pub io: IoEvidence,
}

impl GoSyscallHotSpot {
    /// `value` as a fraction of `total`.
    pub fn share(&self) -> f64 {
        if self.total > 0 {
            self.value as f64 / self.total as f64
        } else {
            0.0
        }
    }
}

fn is_io_machinery(function: &str) -> bool {
    [
        "os.",
        "syscall.",
        "internal/",
        "runtime.",
        "net.(*netFD)",
        "net.(*conn)",
    ]
    .iter()
    .any(|p| function.starts_with(p))
}

/// The Go read/write syscall hot spot of a CPU profile, when it reaches [`MIN_SHARE`].
pub fn syscall_hot_spot(profile: &Profile) -> Option<GoSyscallHotSpot> {
    let index = profile.default_sample_type;
    let total = profile.total(index);
    let mut value = 0i64;
    let mut callers: HashMap<&str, i64> = HashMap::new();
    // By stack: each distinct stack's frames are walked once.
    for (stack, v) in profile.stack_totals(index) {
        // Root first.
        let frames = profile.stack_functions(stack);
        let Some(first) = frames.iter().position(|f| SYSCALL_FRAMES.contains(f)) else {
            continue;
        };
        value = value.saturating_add(v);
        if let Some(caller) = frames[..first].iter().rev().find(|f| !is_io_machinery(f)) {
            let slot = callers.entry(caller).or_default();
            *slot = slot.saturating_add(v);
        }
    }
    if total <= 0 || (value as f64) < MIN_SHARE * total as f64 {
        return None;
    }
    let mut callers: Vec<(String, i64)> = callers
        .into_iter()
        .map(|(f, v)| (f.to_owned(), v))
        .collect();
    callers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    callers.truncate(NAMED);
    Some(GoSyscallHotSpot {
        value,
        total,
        callers,
        io: IoEvidence::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::{ProfileBuilder, ValueType};

    use super::*;

    fn profile(stacks: &[(&[&str], i64)]) -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        for (names, n) in stacks {
            // Given root first; stacks are leaf first.
            let leaf_first: Vec<&str> = names.iter().rev().copied().collect();
            let stack = profiler_model::fixture::named_stack(&mut b, &leaf_first);
            b.add_sample(stack, &[*n], vec![]);
        }
        b.build()
    }

    #[test]
    fn names_the_go_function_that_writes() {
        let p = profile(&[
            (
                &[
                    "main.main",
                    "main.emit",
                    "os.(*File).Write",
                    "internal/poll.(*FD).Write",
                    "syscall.Write",
                    "syscall.write",
                ],
                30,
            ),
            (&["main.main", "main.compute"], 70),
        ]);
        let spot = syscall_hot_spot(&p).expect("30% in write");
        assert_eq!(spot.value, 30);
        assert_eq!(spot.callers, vec![("main.emit".to_owned(), 30)]);
        let quiet = profile(&[
            (&["main.emit", "syscall.Write"], 1),
            (&["main.compute"], 99),
        ]);
        assert!(syscall_hot_spot(&quiet).is_none());
    }

    #[test]
    fn the_fix_is_what_the_i_o_profile_found_the_calls_to_be() {
        use crate::analysis::io::{SmallIoFinding, tests::site};
        use crate::analysis::language::Language;
        let finding = |caller: &str, kind| {
            let mut site = site("read", 1000, 68_000, Language::Go);
            site.path = vec!["main.serve".into(), caller.into(), "syscall.read".into()];
            SmallIoFinding {
                site,
                kind,
                calls_per_sec: 1000.0,
                hint: String::new(),
            }
        };
        let callers = vec![("net/http.(*connReader).Read".to_owned(), 30)];
        let round_trips = [
            finding("net/http.(*connReader).Read", SmallIoKind::RoundTrips),
            finding(
                "main.elsewhere",
                SmallIoKind::SmallRequests { calls_saved: 9 },
            ),
        ];
        let sites: Vec<IoSite> = round_trips.iter().map(|f| f.site.clone()).collect();
        let evidence = IoEvidence::of(&callers, &sites, &round_trips);
        assert_eq!(evidence, IoEvidence::Cases(vec![SmallIoKind::RoundTrips]));
        assert!(evidence.hint().starts_with(
            "no buffer merges these calls: the I/O profile finds them to be round trips"
        ));
        let small = [finding(
            "net/http.(*connReader).Read",
            SmallIoKind::SmallRequests { calls_saved: 9 },
        )];
        assert_eq!(IoEvidence::of(&callers, &sites, &small).hint(), HINT);
        // Sites under the callers, none of them a hot path of small calls.
        assert!(
            IoEvidence::of(&callers, &sites, &[])
                .hint()
                .contains("no hot path of small calls")
        );
        // No site under the callers: the I/O profile cannot tell.
        assert_eq!(IoEvidence::of(&callers, &[], &[]), IoEvidence::Unknown);
        assert_eq!(IoEvidence::Unknown.hint(), HINT);
    }
}
