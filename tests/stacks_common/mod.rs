//! Helpers shared by the tests of true stacks (issue 10): `stacks_native.rs`,
//! `stacks_many.rs`, `stacks_namespace.rs` and `call_graph.rs` each include this
//! file with `#[path = "../stacks_common/mod.rs"] mod common;`.
//!
//! The rule they share: a test compares the profile only with what its fixture
//! measured about itself (its own CPU clock), never with what the scheduler
//! happens to give it. So sample counts are checked against `-F` times the
//! fixture's measured CPU seconds ([`assert_received`]), and CPU splits against
//! the fixture's own split ([`assert_split`]).

// Each test file uses only some of the helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;

use integration_tests::{
    FixtureResult, Folded, Run, Stack, assert_outputs, fixture, run_profiler, temp_dir,
};

/// Largest allowed gap, in percentage points, between a split in the profile
/// and the fixture's own CPU-clock measurement of it.
pub const SPLIT_TOLERANCE_PP: f64 = 3.0;

/// How many standard deviations of the binomial sampling noise the split
/// tolerance must span for a failure to mean something.
pub const SPLIT_TOLERANCE_SD: f64 = 3.0;

/// The longest a fixture given a CPU budget may run, in seconds of wall time
/// (the SECONDS argument, then only a cap): a budget of a few CPU-seconds fits
/// even when the fixture gets a tenth of a CPU, and the profiler's timeout is
/// 60 s.
pub const WALL_CAP_SECONDS: &str = "40";

/// Rate and CPU budget (CPU_SECONDS, seconds of the fixture's own CPU time) of
/// the split tests. The noise sd is sqrt(p (1 - p) / n): for a 70/30 split the
/// 3-point tolerance spans 3 sd from n = 2100 samples on. 5 CPU-seconds at
/// 999 Hz give about 5000 samples (sd 0.65 pp, 4.6 sd), however busy the
/// machine, since the fixture runs until it has had them.
pub const SPLIT_HZ: u64 = 999;
pub const SPLIT_CPU_SECONDS: &str = "5";

/// Share of a function's samples whose stack must reach the root of its chain.
pub const UNWOUND_SHARE: f64 = 0.95;

/// Least CPU time a fixture must have had for its profile to mean anything.
/// Below it the test fails as inconclusive (the machine starved the fixture);
/// this is a sanity floor, not a check of the profiler.
pub const MIN_FIXTURE_CPU_S: f64 = 1.0;

/// Allowed range of received / expected samples, expected being `-F` times the
/// fixture's own CPU seconds. `-F` on the cpu-clock event is a fixed period of
/// the task's CPU time, so the ratio is about 1 however loaded the machine is;
/// the profiler falls short only when it misses ticks (it is broken). The upper
/// bound is the one of `cpu.rs`'s command-mode test.
pub const RECEIVED_RANGE: std::ops::RangeInclusive<f64> = 0.8..=1.3;

/// Runs `profiler -F HZ [extra] -- EXE ARGS...` in command mode, asserts it
/// succeeded and wrote its outputs, and returns the run.
pub fn profile_command(hz: u64, extra: &[&str], argv: &[&OsStr], out: &Path) -> Run {
    let hz = hz.to_string();
    let mut args: Vec<&OsStr> = vec!["-F".as_ref(), hz.as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    args.push("--".as_ref());
    args.extend_from_slice(argv);
    let run = run_profiler(&args, out);
    run.assert_success();
    assert_outputs(out);
    run
}

/// Runs fixture `name` under `profiler -F HZ [extra]` on a budget of `cpu_seconds` of its
/// own CPU time (capped at [`WALL_CAP_SECONDS`] of wall time), and returns what the
/// fixture measured and the profile's folded stacks of its command name.
pub fn profile_budgeted(
    name: &str,
    hz: u64,
    extra: &[&str],
    cpu_seconds: &str,
) -> (FixtureResult, Folded) {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture(name);
    let argv = [
        exe.as_os_str(),
        WALL_CAP_SECONDS.as_ref(),
        result.as_os_str(),
        cpu_seconds.as_ref(),
    ];
    profile_command(hz, extra, &argv, &out);
    let measured = FixtureResult::read(&result);
    (measured, Folded::load(&out).with_comm(name))
}

/// A frame's name without a Rust symbol hash (`::h0123456789abcdef`) and
/// without an ` (inlined)` note, should the symbolizer add either.
pub fn plain(frame: &str) -> &str {
    let frame = frame.strip_suffix(" (inlined)").unwrap_or(frame);
    match frame.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => frame,
    }
}

/// Whether the stack has, root first, a frame matching each of `wanted` in
/// this order (other frames may sit between them).
pub fn in_order(stack: &Stack, wanted: &[&dyn Fn(&str) -> bool]) -> bool {
    let mut frames = stack.frames.iter().map(String::as_str).map(plain);
    wanted.iter().all(|want| frames.any(want))
}

/// [`in_order`] for frames named exactly `names`.
pub fn in_order_names<S: AsRef<str>>(stack: &Stack, names: &[S]) -> bool {
    let mut frames = stack.frames.iter().map(String::as_str).map(plain);
    names.iter().all(|want| frames.any(|f| f == want.as_ref()))
}

/// Matches a frame named exactly `name`.
pub fn named(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |f: &str| f == name
}

/// Asserts that every frame-less unwind is visible: `share` of `of` samples
/// satisfy the property, else fails with `what` and the heaviest stacks.
pub fn assert_share(good: u64, of: u64, share: f64, what: &str, folded: &Folded) {
    assert!(
        of > 0 && good as f64 >= share * of as f64,
        "{what}: {good} of {of} samples ({:.1}%, want >= {:.0}%)\n{}",
        100.0 * good as f64 / of.max(1) as f64,
        100.0 * share,
        folded.summary(20)
    );
}

/// The fixture's measured CPU time `cpu_ns` in seconds; fails the test as
/// inconclusive when it is under [`MIN_FIXTURE_CPU_S`].
pub fn fixture_cpu_seconds(what: &str, cpu_ns: u64) -> f64 {
    let cpu_s = cpu_ns as f64 / 1e9;
    assert!(
        cpu_s >= MIN_FIXTURE_CPU_S,
        "inconclusive: {what} measured only {cpu_s:.2} s of its own CPU time (want >= \
         {MIN_FIXTURE_CPU_S} s for the profile to mean anything); the machine starved the \
         fixture, which says nothing about the profiler"
    );
    cpu_s
}

/// Asserts that `received` samples are what `-F hz` gives for the fixture's own
/// `cpu_ns` of CPU time (within [`RECEIVED_RANGE`]); returns the expected count.
pub fn assert_received(what: &str, received: u64, hz: u64, cpu_ns: u64, folded: &Folded) -> f64 {
    let cpu_s = fixture_cpu_seconds(what, cpu_ns);
    let expected = hz as f64 * cpu_s;
    let ratio = received as f64 / expected;
    assert!(
        RECEIVED_RANGE.contains(&ratio),
        "{what}: {received} samples for the {cpu_s:.2} CPU-seconds the fixture measured at -F \
         {hz} (expected ~{expected:.0}, ratio {ratio:.2}, want {:.1}..={:.1})\n{}",
        RECEIVED_RANGE.start(),
        RECEIVED_RANGE.end(),
        folded.summary(20)
    );
    println!("{what}: {received} samples, expected {expected:.0} (ratio {ratio:.3})");
    expected
}

/// Compares the share of `a` in `a + b` samples with `a_ns / (a_ns + b_ns)`,
/// within [`SPLIT_TOLERANCE_PP`]. First makes sure the comparison means
/// something: with n samples and a true share p, the sampling noise alone has
/// sd = sqrt(p (1 - p) / n), and the tolerance must span [`SPLIT_TOLERANCE_SD`]
/// of them; with fewer samples the test fails as inconclusive.
pub fn assert_split(what: &str, a: u64, b: u64, a_ns: u64, b_ns: u64, folded: &Folded) {
    let n = a + b;
    let p = a_ns as f64 / (a_ns + b_ns) as f64;
    let sd_pp = 100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt();
    assert!(
        n > 0 && SPLIT_TOLERANCE_PP >= SPLIT_TOLERANCE_SD * sd_pp,
        "inconclusive: {what}: {n} samples ({a}+{b}) leave a sampling noise of sd {sd_pp:.2} pp \
         for the fixture's split of {:.1}%, so a {SPLIT_TOLERANCE_PP} pp tolerance is under \
         {SPLIT_TOLERANCE_SD} sd (raise -F or the fixture's run time)\n{}",
        100.0 * p,
        folded.summary(20)
    );
    let want = 100.0 * p;
    let got = 100.0 * a as f64 / n as f64;
    assert!(
        (got - want).abs() <= SPLIT_TOLERANCE_PP,
        "{what}: profile split {got:.1}% ({a} of {n} samples) differs from the fixture's own \
         CPU-clock split {want:.1}% by more than {SPLIT_TOLERANCE_PP} pp (sampling noise sd \
         {sd_pp:.2} pp)\n{}",
        folded.summary(20)
    );
    println!(
        "{what}: profile {got:.1}% of {n} samples, fixture {want:.1}% (gap {:.2} pp, sd {sd_pp:.2} pp)",
        (got - want).abs()
    );
}
