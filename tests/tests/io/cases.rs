//! The three cases of small I/O on `io_cases`: what each call asked for, how many were
//! short and how many found nothing must equal exactly what the fixture counted, and each
//! function must be classified as its case, with the fix (and the saving) of that case
//! only; `profiler report` of the run's directory must find the same.

use std::ffi::OsStr;

use integration_tests::{FixtureResult, prerequisites, profiler_command, run_command};

use super::findings::{Finding, small_io_findings};
use super::raw::{RawProfile, RawSample};
use super::run::{IoRun, profile_command};

/// The `io_cases` functions and the syscall each makes.
const FUNCTIONS: [(&str, &str); 5] = [
    ("bytewise_reads", "read"),
    ("vector_reads", "readv"),
    ("chatty_sends", "sendmsg"),
    ("chatty_reads", "recvfrom"),
    ("empty_polls", "read"),
];

/// The pprof sample types the fixture counts per function, by its key suffix.
const MEASURES: [(&str, &str); 5] = [
    ("calls", "calls"),
    ("bytes", "bytes"),
    ("requested", "requested"),
    ("short", "short"),
    ("eagain", "eagain"),
];

/// Words of buffering advice, which a finding about a chatty peer or a polling loop must
/// not give.
const BUFFERING_WORDS: [&str; 6] = ["buffer", "BufReader", "bufio", "setvbuf", "stdio", "fread"];

fn profile_io_cases() -> IoRun {
    profile_command("io_cases", &["run"], &[])
}

/// The summary's finding for `function`, failing with the whole transcript when missing.
fn finding<'a>(r: &IoRun, findings: &'a [Finding], function: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.function == function)
        .unwrap_or_else(|| {
            panic!(
                "{function} is not listed as a small I/O hot path (the fixture measured: \
                 {})\n{}",
                measured(&r.measured, function),
                r.run.transcript()
            )
        })
}

fn measured(m: &FixtureResult, function: &str) -> String {
    MEASURES
        .iter()
        .map(|(key, _)| format!("{key}={}", m.u64(&format!("{function}_{key}"))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn detail<'a>(f: &'a Finding, prefix: &str) -> Option<&'a str> {
    f.details
        .iter()
        .find_map(|d| d.trim_start().strip_prefix(prefix))
        .map(str::trim)
}

#[test]
fn requested_short_and_eagain_equal_the_fixtures_own_counts() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_cases();
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    for (function, syscall) in FUNCTIONS {
        let this = |s: &RawSample| s.has(function) && s.label("syscall") == Some(syscall);
        for (key, sample_type) in MEASURES {
            let want = r.measured.u64(&format!("{function}_{key}")) as i64;
            let got = raw.sum(sample_type, this);
            assert_eq!(
                got,
                want,
                "io.pb.gz has {sample_type}={got} for {syscall} in {function}; the fixture \
                 counted {want} ({})\n{}",
                measured(&r.measured, function),
                raw.describe(function)
            );
        }
    }
    // A failure with EAGAIN is still a failure.
    let errors = raw.sum("errors", |s| s.has("empty_polls"));
    assert_eq!(errors, r.measured.u64("empty_polls_eagain") as i64);
}

#[test]
fn socket_reads_of_small_messages_are_small_arrivals_without_buffering_advice() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_cases();
    let findings = small_io_findings(&r.run.stdout);
    let f = finding(&r, &findings, "chatty_reads");
    let case = detail(f, "case:").unwrap_or_default();
    // 8192 B asked for, MESSAGE_BYTES (40) got, per the fixture's own counts.
    let calls = r.measured.u64("chatty_reads_calls");
    let asks = r.measured.u64("chatty_reads_requested") / calls;
    let gets = r.measured.u64("chatty_reads_bytes") / calls;
    assert_eq!((asks, gets), (8192, 40), "the fixture changed");
    assert!(
        case.starts_with("small arrivals: asks for 8.0 KiB per call, gets 40 B"),
        "chatty_reads is not classified as small arrivals: {f:?}"
    );
    assert!(
        f.header.contains("on a socket"),
        "no socket in {:?}",
        f.header
    );
    assert_eq!(
        detail(f, "saves:"),
        None,
        "a saving for small arrivals: {f:?}"
    );
    let fix = f.fix().unwrap_or_default();
    assert!(fix.contains("TCP_CORK"), "no sender-side fix: {f:?}");
    for word in BUFFERING_WORDS {
        assert!(
            !fix.contains(word),
            "buffering advice ({word}) for small arrivals: {f:?}"
        );
    }
}

#[test]
fn bytewise_file_reads_are_small_requests_with_the_buffering_fix_and_a_saving() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_cases();
    let findings = small_io_findings(&r.run.stdout);
    let f = finding(&r, &findings, "bytewise_reads");
    let m = &r.measured;
    assert_eq!(f.calls, m.u64("bytewise_reads_calls"), "{f:?}");
    assert_eq!(
        detail(f, "case:"),
        Some("small requests: asks for 1 B per call"),
        "{f:?}"
    );
    assert!(
        f.fix().unwrap_or_default().contains("64 KiB buffer"),
        "{f:?}"
    );
    // Every byte the fixture read fits one 64 KiB buffer: all calls but one are saved.
    let calls = m.u64("bytewise_reads_calls");
    let needed = m.u64("bytewise_reads_bytes").div_ceil(65536).max(1);
    let saves = format!("{} of {} calls", group(calls - needed), group(calls));
    assert!(
        detail(f, "saves:").is_some_and(|s| s.starts_with(&saves)),
        "expected `saves: {saves} ...` in {f:?}"
    );
}

#[test]
fn non_blocking_reads_of_an_empty_pipe_are_flagged_for_their_eagain_share() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_cases();
    let findings = small_io_findings(&r.run.stdout);
    let f = finding(&r, &findings, "empty_polls");
    let m = &r.measured;
    assert_eq!(m.u64("empty_polls_eagain"), m.u64("empty_polls_calls"));
    let case = format!(
        "empty polls: 100% of the calls ({} of {}) found nothing (EAGAIN)",
        group(m.u64("empty_polls_eagain")),
        group(m.u64("empty_polls_calls"))
    );
    assert_eq!(detail(f, "case:"), Some(case.as_str()), "{f:?}");
    assert!(f.header.contains("on a pipe"), "{f:?}");
    assert!(f.fix().unwrap_or_default().contains("epoll"), "{f:?}");
    assert_eq!(detail(f, "saves:"), None, "a saving for empty polls: {f:?}");
}

#[test]
fn profiler_report_finds_the_same_cases_from_the_pprof_file() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_cases();
    let report = run_command({
        let mut cmd = profiler_command(&[OsStr::new("report"), r.out.as_os_str()]);
        cmd.env("NO_COLOR", "1");
        cmd
    });
    report.assert_success();
    let key = |f: &Finding| (f.header.clone(), f.details.clone());
    let live: Vec<_> = small_io_findings(&r.run.stdout).iter().map(key).collect();
    let again: Vec<_> = small_io_findings(&report.stdout).iter().map(key).collect();
    assert!(live.len() >= 3, "{}", r.run.stdout);
    assert_eq!(
        again,
        live,
        "`profiler report` finds other small-I/O cases than the run did\n{}",
        report.transcript()
    );
}

/// `n` with thousands separators, as the summary prints counts.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
