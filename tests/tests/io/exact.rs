//! The exactness assertions shared by the tests: `io.folded` and `io.pb.gz` must count
//! exactly the calls and bytes each function of a fixture counted itself.

use integration_tests::Folded;

use super::expected::Expected;
use super::raw::{RawProfile, RawSample};

/// Words one of which the libc wrapper at the leaf of every I/O stack has in its name.
pub(crate) const WRAPPER_WORDS: [&str; 4] = ["read", "write", "send", "recv"];

/// For each expected function: the `io.folded` lines that contain it add up to exactly its
/// calls, all of them are of `comm`, end in a libc read/write wrapper and have the
/// function right above that wrapper (the caller of the frame-pointer-less wrapper is
/// restored).
pub(crate) fn assert_folded_exact(folded: &Folded, expected: &[Expected], comm: &str) {
    for e in expected {
        let f = e.function;
        let lines: Vec<_> = folded.stacks.iter().filter(|s| s.has(f)).collect();
        let got: u64 = lines.iter().map(|s| s.count).sum();
        let unmapped = folded
            .stacks
            .iter()
            .any(|s| s.comm == comm && s.frames.last().is_some_and(|l| l == "[unknown]"));
        assert_eq!(
            got,
            e.calls(),
            "io.folded counts {got} calls in {f}, the fixture made exactly {} ({:?}){}\n{}",
            e.calls(),
            e.parts,
            if unmapped {
                " (stacks of the fixture end in [unknown]: its libc addresses were not mapped)"
            } else {
                ""
            },
            folded.summary(20)
        );
        for s in lines {
            let line = format!("{};{} {}", s.comm, s.frames.join(";"), s.count);
            assert_eq!(
                s.comm, comm,
                "a stack through {f} has comm {}: {line}",
                s.comm
            );
            let leaf = s
                .frames
                .last()
                .map(|l| l.to_lowercase())
                .unwrap_or_default();
            assert!(
                WRAPPER_WORDS.iter().any(|w| leaf.contains(w)),
                "the leaf of {line:?} is not a libc read/write wrapper"
            );
            let caller = s.frames.len().checked_sub(2).map(|i| s.frames[i].as_str());
            assert_eq!(
                caller,
                Some(f),
                "in {line:?} the libc wrapper's caller {f} is not the frame above the leaf"
            );
        }
    }
}

/// For each expected function and each of its syscalls: the pprof samples through the
/// function with that `syscall` label add up to exactly its calls and bytes, with no
/// errors and no other syscall.
pub(crate) fn assert_pprof_exact(raw: &RawProfile, expected: &[Expected]) {
    for e in expected {
        let f = e.function;
        for &(syscall, calls, bytes) in &e.parts {
            let this = |s: &RawSample| s.has(f) && s.label("syscall") == Some(syscall);
            let got_calls = raw.sum("calls", this);
            let got_bytes = raw.sum("bytes", this);
            assert_eq!(
                (got_calls, got_bytes),
                (calls as i64, bytes as i64),
                "io.pb.gz has (calls, bytes) = ({got_calls}, {got_bytes}) for {syscall} in {f}; \
                 the fixture made exactly ({calls}, {bytes})\n{}",
                raw.describe(f)
            );
        }
        let all_calls = raw.sum("calls", |s| s.has(f));
        assert_eq!(
            all_calls,
            e.calls() as i64,
            "io.pb.gz has {all_calls} calls in {f} over all syscalls, the fixture made {} ({:?})\n{}",
            e.calls(),
            e.parts,
            raw.describe(f)
        );
        let bytes = raw.sum("bytes", |s| s.has(f));
        assert_eq!(bytes, e.bytes() as i64, "bytes of {f}\n{}", raw.describe(f));
        let errors = raw.sum("errors", |s| s.has(f));
        assert_eq!(errors, 0, "{f} made no failing call\n{}", raw.describe(f));
        // The fixture exits on any short call: each asked for exactly what it moved.
        let requested = raw.sum("requested", |s| s.has(f));
        assert_eq!(
            requested,
            e.bytes() as i64,
            "requested of {f}\n{}",
            raw.describe(f)
        );
        let short = raw.sum("short", |s| s.has(f));
        assert_eq!(short, 0, "{f} made no short call\n{}", raw.describe(f));
        let time = raw.sum("time", |s| s.has(f));
        assert!(time > 0, "{f} has no time in syscalls\n{}", raw.describe(f));
    }
}
