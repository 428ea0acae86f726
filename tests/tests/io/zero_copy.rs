//! The calls that move data between two descriptors in the kernel, on `io_zero_copy`:
//! `sendfile`, `copy_file_range`, `vmsplice`, `tee` and `splice` must be counted exactly as
//! the fixture counted them (calls, bytes moved, bytes asked for), under their own syscall
//! names, with the descriptor they wrote to; and none of them gets read/write advice.

use integration_tests::{FixtureResult, prerequisites};

use super::exact::assert_pprof_exact;
use super::expected::Expected;
use super::findings::small_io_findings;
use super::raw::RawProfile;
use super::run::profile_command;

/// The `io_zero_copy` functions, the syscall each makes and the kind of the descriptor
/// it writes to.
const FUNCTIONS: [(&str, &str, &str); 6] = [
    ("sendfile_to_socket", "sendfile", "socket"),
    ("copy_range", "copy_file_range", "file"),
    ("gift_to_pipe", "vmsplice", "pipe"),
    ("tee_pipe", "tee", "pipe"),
    ("splice_to_file", "splice", "file"),
    ("drain_pipe", "read", "pipe"),
];

fn expected(m: &FixtureResult) -> Vec<Expected> {
    FUNCTIONS
        .iter()
        .map(|&(function, syscall, _)| Expected {
            function,
            parts: vec![(
                syscall,
                m.u64(&format!("{function}_calls")),
                m.u64(&format!("{function}_bytes")),
            )],
        })
        .collect()
}

#[test]
fn zero_copy_calls_are_counted_exactly_by_the_descriptor_written_to() {
    if !prerequisites() {
        return;
    }
    let r = profile_command("io_zero_copy", &[], &[]);
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    assert_pprof_exact(&raw, &expected(&r.measured));
    for (function, syscall, kind) in FUNCTIONS {
        for s in raw.containing(function) {
            assert_eq!(
                (s.label("syscall"), s.label("descriptor")),
                (Some(syscall), Some(kind)),
                "a sample of {function} is not labelled syscall={syscall} descriptor={kind} \
                 (the descriptor {syscall} writes to): {}",
                s.describe()
            );
        }
    }
}

#[test]
fn zero_copy_calls_get_no_small_io_advice() {
    if !prerequisites() {
        return;
    }
    // Any rate is hot, and 4000-byte calls small, so what decides is the kind of call, not
    // how fast this host ran or where the default size line sits.
    let r = profile_command(
        "io_zero_copy",
        &[],
        &["--small-io-rate", "1", "--small-io-bytes", "4096"],
    );
    let m = &r.measured;
    let findings = small_io_findings(&r.run.stdout);
    // drain_pipe reads, one call per round, exactly the bytes each of the three below
    // moves in the same round: it is the control that calls of this size are a finding.
    let control = findings.iter().find(|f| f.function == "drain_pipe");
    assert!(
        control.is_some_and(|f| f.syscall == "read" && f.calls == m.u64("drain_pipe_calls")),
        "drain_pipe ({} reads of {} B) is not listed as a read small-I/O hot path with its \
         exact calls, so the run cannot tell whether its siblings would be\n{}",
        m.u64("drain_pipe_calls"),
        m.u64("drain_pipe_bytes") / m.u64("drain_pipe_calls").max(1),
        r.run.transcript()
    );
    for function in ["gift_to_pipe", "tee_pipe", "splice_to_file"] {
        assert!(
            !findings.iter().any(|f| f.function == function),
            "{function} ({} calls of {} B between descriptors) got small-I/O advice that \
             only applies to read/write\n{}",
            m.u64(&format!("{function}_calls")),
            m.u64(&format!("{function}_bytes")) / m.u64(&format!("{function}_calls")).max(1),
            r.run.stdout
        );
    }
}
