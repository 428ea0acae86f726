//! Running the profiler on a mode of the `offcpu_waits` fixture, and what its profiles say
//! about one function of it: its CPU and off-CPU time, reasons, labels and wakers.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use integration_tests::{
    BlockScratch, FixtureResult, Folded, Run, fixture, monotonic_ns, run_profiler, temp_dir,
};

use crate::raw::{RawProfile, RawSample};

/// The fixture, and the process name the kernel gives it.
pub(crate) const FIXTURE: &str = "offcpu_waits";
/// Its reply thread's name (set with prctl; the process name stays [`FIXTURE`]).
pub(crate) const PEER_THREAD: &str = "peer";
/// How long each mode runs, in seconds.
pub(crate) const SECONDS: &str = "3";
/// The CPU profile's sampling rate (`-F`), per CPU-second.
pub(crate) const FREQUENCY: f64 = 499.0;
/// Largest allowed gap between a function's CPU + off-CPU time in the profile and the wall
/// time it measured itself, relative to that wall time. The CPU part is sampled (at 499 Hz,
/// a few hundred samples at least: a few % of noise); the off-CPU part is exact.
pub(crate) const TOLERANCE: f64 = 0.10;
/// The reason of the time a thread is runnable, waiting for a CPU.
pub(crate) const RUNQUEUE: &str = "runqueue";
/// The smallest share of a reply wait's delay that must name the replying function as its
/// waker: every reply is sent by it, but a signal (the fixture's stop timer) may wake one
/// wait, and the waker is known per sampled wait only.
pub(crate) const WAKER_SHARE: f64 = 0.75;

// ---------------------------------------------------------------------------
// Running the profiler on a mode

/// One `--profiles cpu,offcpu` run of a mode of the fixture, with its outputs read back.
pub(crate) struct OffCpuRun {
    _tmp: tempfile::TempDir,
    pub(crate) run: Run,
    pub(crate) measured: FixtureResult,
    /// `cpu.folded`.
    pub(crate) cpu: Folded,
    /// `offcpu.pb.gz`, through `go tool pprof -raw`.
    pub(crate) offcpu: RawProfile,
    /// `offcpu.folded` (waker parts included, after a `--` frame).
    pub(crate) offcpu_folded: Folded,
    /// CLOCK_MONOTONIC just before the profiler was started and just after it exited.
    pub(crate) started_ns: u64,
    pub(crate) exited_ns: u64,
}

/// Runs `profiler --profiles cpu,offcpu -F 499 -- offcpu_waits MODE SECONDS DIR RESULT`.
pub(crate) fn profile_mode(mode: &str, dir: &Path) -> OffCpuRun {
    profile_mode_for(mode, dir, "60s")
}

/// [`profile_mode`] with a window of `duration` (`--duration`).
pub(crate) fn profile_mode_for(mode: &str, dir: &Path, duration: &str) -> OffCpuRun {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture(FIXTURE);
    let mut args: Vec<&OsStr> = [
        "--profiles",
        "cpu,offcpu",
        "-F",
        "499",
        "--duration",
        duration,
        "--",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(exe.as_os_str());
    args.extend([mode, SECONDS].map(OsStr::new));
    args.push(dir.as_os_str());
    args.push(result.as_os_str());
    let started_ns = monotonic_ns();
    let run = run_profiler(&args, &out);
    let exited_ns = monotonic_ns();
    run.assert_success();
    let measured = FixtureResult::read(&result);
    // cpu.folded may be empty: a fixture that only waits may never be on CPU at a tick.
    assert!(
        out.join("cpu.folded").is_file(),
        "cpu.folded missing\n{}",
        run.transcript()
    );
    for name in ["offcpu.folded", "offcpu.pb.gz", "offcpu.svg"] {
        let p = out.join(name);
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("output {} missing: {e}\n{}", p.display(), run.transcript()))
            .len();
        assert!(len > 0, "output {} is empty", p.display());
    }
    let svg = std::fs::read_to_string(out.join("offcpu.svg")).expect("offcpu.svg is UTF-8");
    assert!(svg.contains("<svg"), "offcpu.svg is not an SVG document");
    let offcpu = RawProfile::load(&out.join("offcpu.pb.gz"));
    assert_sample_types(&offcpu);
    OffCpuRun {
        cpu: Folded::load(&out),
        offcpu_folded: load_folded(&out.join("offcpu.folded")),
        offcpu,
        _tmp: tmp,
        run,
        measured,
        started_ns,
        exited_ns,
    }
}

fn load_folded(p: &Path) -> Folded {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    Folded::parse(&text)
}

/// The profile's sample types are waits/count and delay/nanoseconds, delay the default.
fn assert_sample_types(raw: &RawProfile) {
    let header: Vec<&str> = raw
        .text
        .lines()
        .skip_while(|l| l.trim() != "Samples:")
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["waits/count", "delay/nanoseconds[dflt]"],
        "offcpu.pb.gz should have the sample types waits/count and delay/nanoseconds, \
         delay the default"
    );
}

/// A scratch directory on a block device, or `None` (after saying why) when none can be
/// made here.
pub(crate) fn block_scratch() -> Option<BlockScratch> {
    match BlockScratch::new() {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!("skipping: this test needs a block-backed scratch directory: {why}");
            None
        }
    }
}

// ---------------------------------------------------------------------------
// What the profile says about one function

/// A function's time in the profiles.
pub(crate) struct FunctionTime {
    /// CPU samples with the function on the stack, and their time at [`FREQUENCY`].
    pub(crate) cpu_samples: u64,
    pub(crate) cpu_ns: f64,
    /// Off-CPU delay with the function on the blocked stack, in total and by reason.
    pub(crate) off_ns: i64,
    pub(crate) by_reason: BTreeMap<String, i64>,
}

impl OffCpuRun {
    pub(crate) fn time_of(&self, function: &str) -> FunctionTime {
        let cpu_samples = self.cpu.samples_containing(function);
        let mut by_reason = BTreeMap::new();
        for s in self.offcpu.containing(function) {
            *by_reason
                .entry(label(s, "reason").unwrap_or_else(|| "(none)".to_owned()))
                .or_default() += s.value("delay");
        }
        FunctionTime {
            cpu_samples,
            cpu_ns: cpu_samples as f64 * 1e9 / FREQUENCY,
            off_ns: by_reason.values().sum(),
            by_reason,
        }
    }

    /// The fixture's measurements and the heaviest stacks of both profiles, for messages.
    pub(crate) fn context(&self, function: &str) -> String {
        let samples = self.offcpu.containing(function).count();
        let described = self.offcpu.describe(function);
        let shown: Vec<&str> = described.lines().take(25).collect();
        format!(
            "fixture: {:?}\ncpu.folded: {}offcpu.folded: {}offcpu.pb.gz, {samples} samples \
             under {function} ({} shown):\n{}\nprofiler stdout:\n{}",
            self.measured.0,
            self.cpu.summary(8),
            self.offcpu_folded.summary(8),
            shown.len(),
            shown.join("\n"),
            self.run.stdout
        )
    }

    /// Asserts CPU samples / frequency + off-CPU delay under `function` = the wall time it
    /// measured itself, within [`TOLERANCE`]; returns its time in the profiles.
    pub(crate) fn assert_wall_time(&self, function: &str, wall_ns: u64) -> FunctionTime {
        let t = self.time_of(function);
        let total = t.cpu_ns + t.off_ns as f64;
        let gap = (total - wall_ns as f64) / wall_ns as f64;
        eprintln!(
            "{function}: wall {} by its own clock; profiles: CPU {} ({} samples) + off-CPU {} \
             {:?} = {} ({:+.1}%)",
            ms(wall_ns as f64),
            ms(t.cpu_ns),
            t.cpu_samples,
            ms(t.off_ns as f64),
            ms_map(&t.by_reason),
            ms(total),
            100.0 * gap
        );
        assert!(
            gap.abs() <= TOLERANCE,
            "{function}: {} CPU samples ({}) + {} off-CPU {:?} = {} in the profiles, where the \
             function measured {} of wall time itself ({:+.1}%, more than {:.0}% off)\n{}",
            t.cpu_samples,
            ms(t.cpu_ns),
            ms(t.off_ns as f64),
            ms_map(&t.by_reason),
            ms(total),
            ms(wall_ns as f64),
            100.0 * gap,
            100.0 * TOLERANCE,
            self.context(function)
        );
        t
    }

    /// Asserts that `reason` has more than half of the delay under `function`, leaving out
    /// `runqueue` unless that is the reason asked for: after every wait the thread is
    /// runnable until a CPU takes it, and how long is up to the scheduler and the machine's
    /// load (on a loop device, whose worker thread competes for the same CPUs, it was as
    /// long as the disk waits themselves), not to the fixture.
    pub(crate) fn assert_dominant_reason(&self, function: &str, reason: &str) {
        let t = self.time_of(function);
        let counted = |r: &str| reason == RUNQUEUE || r != RUNQUEUE;
        let of_reason = t.by_reason.get(reason).copied().unwrap_or(0);
        let total: i64 = t
            .by_reason
            .iter()
            .filter(|(r, _)| counted(r))
            .map(|(_, ns)| ns)
            .sum();
        assert!(
            of_reason > 0 && 2 * of_reason > total,
            "{function} waited in {reason} by its own code, but that is not most of its \
             off-CPU delay{}: by reason {:?}\n{}",
            if reason == RUNQUEUE {
                ""
            } else {
                " (runqueue left out)"
            },
            ms_map(&t.by_reason),
            self.context(function)
        );
    }

    /// Asserts that the waits under `function` carry the fixture's process and thread as
    /// their pid, tid, comm and thread labels.
    pub(crate) fn assert_thread_labels(&self, function: &str, tid: &str, thread: &str) {
        let pid = self.measured.get("pid");
        for s in self.offcpu.containing(function) {
            for (key, want) in [
                ("pid", pid),
                ("tid", tid),
                ("comm", FIXTURE),
                ("thread", thread),
            ] {
                assert_eq!(
                    label(s, key).as_deref(),
                    Some(want),
                    "a wait under {function} has the wrong {key} label: {}",
                    s.describe()
                );
            }
        }
    }

    /// Asserts that at least [`WAKER_SHARE`] of the `reason` delay under `function` has the
    /// waker label `waker`.
    pub(crate) fn assert_waker(&self, function: &str, reason: &str, waker: &str) {
        let of_reason = |s: &RawSample| s.has(function) && s.label("reason") == Some(reason);
        let total = self.offcpu.sum("delay", of_reason);
        let named = self.offcpu.sum("delay", |s| {
            of_reason(s) && label(s, "waker").as_deref() == Some(waker)
        });
        let mut by_waker: BTreeMap<String, i64> = BTreeMap::new();
        for s in self.offcpu.samples.iter().filter(|s| of_reason(s)) {
            *by_waker
                .entry(label(s, "waker").unwrap_or_else(|| "(none)".to_owned()))
                .or_default() += s.value("delay");
        }
        assert!(
            total > 0 && named as f64 >= WAKER_SHARE * total as f64,
            "{function}: only {} of its {} of {reason} waits name {waker:?} as the waker \
             (wanted {:.0}% at least); by waker: {:?}\n{}",
            ms(named as f64),
            ms(total as f64),
            100.0 * WAKER_SHARE,
            ms_map(&by_waker),
            self.context(function)
        );
    }

    /// Asserts that offcpu.folded draws a wait of `function` with its waker's stack after
    /// the `--` separator, `waker_function` in it and the waker's name last.
    pub(crate) fn assert_folded_waker(&self, function: &str, waker_function: &str) {
        let found = self.offcpu_folded.stacks.iter().any(|s| {
            let Some(sep) = s.frames.iter().position(|f| f == "--") else {
                return false;
            };
            let (blocked, waker) = (&s.frames[..sep], &s.frames[sep + 1..]);
            // The waker's name closes the line: its process's, or (as bcc's offwaketime
            // prints it) its thread's.
            blocked.iter().any(|f| f == function)
                && waker.iter().any(|f| f == waker_function)
                && waker
                    .last()
                    .is_some_and(|f| f == FIXTURE || f == PEER_THREAD)
        });
        assert!(
            found,
            "offcpu.folded has no line with {function} before a `--` frame and \
             {waker_function} after it, ending in the waker's name ({FIXTURE} or \
             {PEER_THREAD}); lines with a `--`:\n{}",
            self.offcpu_folded
                .stacks
                .iter()
                .filter(|s| s.has("--"))
                .take(20)
                .map(|s| format!("  {};{} {}", s.comm, s.frames.join(";"), s.count))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The value of label `key` of `s`, `None` when it has none. `pprof -raw` prints a label's
/// values space-separated, so a value with spaces (`timer (interrupt)`, `peer_reply (comm)`)
/// comes back as several words, joined again here.
pub(crate) fn label(s: &RawSample, key: &str) -> Option<String> {
    s.labels.get(key).map(|words| words.join(" "))
}

pub(crate) fn ms(ns: f64) -> String {
    format!("{:.1} ms", ns / 1e6)
}

fn ms_map(m: &BTreeMap<String, i64>) -> BTreeMap<&str, String> {
    m.iter().map(|(k, v)| (k.as_str(), ms(*v as f64))).collect()
}

/// Asserts that the fixture's `function` spent at least a fifth of its wall time off CPU
/// by its own clocks, or the run says nothing about waiting.
pub(crate) fn assert_fixture_waited(r: &OffCpuRun, function: &str) -> u64 {
    let wall = r.measured.u64(&format!("{function}_wall_ns"));
    let cpu = r.measured.u64(&format!("{function}_cpu_ns"));
    assert!(
        wall >= 1_000_000_000 && wall.saturating_sub(cpu) * 5 >= wall,
        "{function} ran {} and was on CPU {} of it by its own clocks: it hardly waited, the \
         run cannot test the off-CPU profile\n{:?}",
        ms(wall as f64),
        ms(cpu as f64),
        r.measured.0
    );
    wall
}

/// One function of the fixture, profiled alone: its wall time made up, the right reason.
pub(crate) fn check_single(mode: &str, dir: &Path, function: &str, reason: &str) -> OffCpuRun {
    let r = profile_mode(mode, dir);
    let wall = assert_fixture_waited(&r, function);
    r.assert_wall_time(function, wall);
    r.assert_dominant_reason(function, reason);
    let tid = r.measured.get(&format!("{function}_tid")).to_owned();
    r.assert_thread_labels(function, &tid, FIXTURE);
    r
}
