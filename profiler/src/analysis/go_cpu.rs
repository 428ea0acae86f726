//! Go's small-I/O pattern in the CPU profile: a large share of CPU samples under
//! `syscall.Read`/`syscall.Write` (each call a trip into the kernel), by the Go function
//! that made the calls, with what to do about it.

use std::collections::HashMap;

use profiler_model::Profile;

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

/// What to do about it.
pub const HINT: &str = "the program spends its CPU entering the kernel for small reads and \
    writes: wrap the file or connection in bufio.NewReaderSize / bufio.NewWriterSize (and \
    Flush once per batch), build output in a bytes.Buffer and write it whole, or read \
    larger blocks";

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
}
