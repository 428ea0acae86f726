//! Off-CPU-profile tests: each mode of the `offcpu_waits` fixture waits one way from its
//! own named function and measures that function's wall time (and its thread's CPU time)
//! itself. With `--profiles cpu,offcpu`, the function's CPU samples / frequency plus its
//! off-CPU delay must make up its wall time, the delay must carry the reason of the way it
//! waited, and a reply's wait must name the peer function that sent the reply as its waker.
//! A wait still open when the window closes is counted up to its end, marked in progress;
//! each thread's time budget in the summary adds up to its time in the window.
//!
//! fdatasync and page faults need a block device under the fixture's files: the tests use
//! [`BlockScratch`] (a loop-mounted ext4 image where the temporary directory is tmpfs).

#[path = "io/raw.rs"]
mod raw;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use integration_tests::{
    BlockScratch, FixtureResult, Folded, Run, fixture, monotonic_ns, prerequisites, run_profiler,
    temp_dir,
};
use raw::{RawProfile, RawSample};

/// The fixture, and the process name the kernel gives it.
const FIXTURE: &str = "offcpu_waits";
/// Its reply thread's name (set with prctl; the process name stays [`FIXTURE`]).
const PEER_THREAD: &str = "peer";
/// How long each mode runs, in seconds.
const SECONDS: &str = "3";
/// The CPU profile's sampling rate (`-F`), per CPU-second.
const FREQUENCY: f64 = 499.0;
/// Largest allowed gap between a function's CPU + off-CPU time in the profile and the wall
/// time it measured itself, relative to that wall time. The CPU part is sampled (at 499 Hz,
/// a few hundred samples at least: a few % of noise); the off-CPU part is exact.
const TOLERANCE: f64 = 0.10;
/// The reason of the time a thread is runnable, waiting for a CPU.
const RUNQUEUE: &str = "runqueue";
/// The smallest share of a reply wait's delay that must name the replying function as its
/// waker: every reply is sent by it, but a signal (the fixture's stop timer) may wake one
/// wait, and the waker is known per sampled wait only.
const WAKER_SHARE: f64 = 0.75;

// ---------------------------------------------------------------------------
// Running the profiler on a mode

/// One `--profiles cpu,offcpu` run of a mode of the fixture, with its outputs read back.
struct OffCpuRun {
    _tmp: tempfile::TempDir,
    run: Run,
    measured: FixtureResult,
    /// `cpu.folded`.
    cpu: Folded,
    /// `offcpu.pb.gz`, through `go tool pprof -raw`.
    offcpu: RawProfile,
    /// `offcpu.folded` (waker parts included, after a `--` frame).
    offcpu_folded: Folded,
    /// CLOCK_MONOTONIC just before the profiler was started and just after it exited.
    started_ns: u64,
    exited_ns: u64,
}

/// Runs `profiler --profiles cpu,offcpu -F 499 -- offcpu_waits MODE SECONDS DIR RESULT`.
fn profile_mode(mode: &str, dir: &Path) -> OffCpuRun {
    profile_mode_for(mode, dir, "60s")
}

/// [`profile_mode`] with a window of `duration` (`--duration`).
fn profile_mode_for(mode: &str, dir: &Path, duration: &str) -> OffCpuRun {
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
fn block_scratch() -> Option<BlockScratch> {
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
struct FunctionTime {
    /// CPU samples with the function on the stack, and their time at [`FREQUENCY`].
    cpu_samples: u64,
    cpu_ns: f64,
    /// Off-CPU delay with the function on the blocked stack, in total and by reason.
    off_ns: i64,
    by_reason: BTreeMap<String, i64>,
}

impl OffCpuRun {
    fn time_of(&self, function: &str) -> FunctionTime {
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
    fn context(&self, function: &str) -> String {
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
    fn assert_wall_time(&self, function: &str, wall_ns: u64) -> FunctionTime {
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
    fn assert_dominant_reason(&self, function: &str, reason: &str) {
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
    fn assert_thread_labels(&self, function: &str, tid: &str, thread: &str) {
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
    fn assert_waker(&self, function: &str, reason: &str, waker: &str) {
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
    fn assert_folded_waker(&self, function: &str, waker_function: &str) {
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
fn label(s: &RawSample, key: &str) -> Option<String> {
    s.labels.get(key).map(|words| words.join(" "))
}

fn ms(ns: f64) -> String {
    format!("{:.1} ms", ns / 1e6)
}

fn ms_map(m: &BTreeMap<String, i64>) -> BTreeMap<&str, String> {
    m.iter().map(|(k, v)| (k.as_str(), ms(*v as f64))).collect()
}

/// Asserts that the fixture's `function` spent at least a fifth of its wall time off CPU
/// by its own clocks, or the run says nothing about waiting.
fn assert_fixture_waited(r: &OffCpuRun, function: &str) -> u64 {
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
fn check_single(mode: &str, dir: &Path, function: &str, reason: &str) -> OffCpuRun {
    let r = profile_mode(mode, dir);
    let wall = assert_fixture_waited(&r, function);
    r.assert_wall_time(function, wall);
    r.assert_dominant_reason(function, reason);
    let tid = r.measured.get(&format!("{function}_tid")).to_owned();
    r.assert_thread_labels(function, &tid, FIXTURE);
    r
}

// ---------------------------------------------------------------------------
// The tests

/// 4 KiB pwrite + fdatasync, over and over: the waits are the disk's.
#[test]
fn fdatasync_waits_are_disk_and_make_up_the_wall_time() {
    if !prerequisites() {
        return;
    }
    let Some(scratch) = block_scratch() else {
        return;
    };
    eprintln!("scratch: {}", scratch.describe());
    check_single("fsync", scratch.path(), "fsync_loop", "disk");
}

/// 1 ms nanosleeps: sleep, ended by the timer interrupt.
#[test]
fn nanosleep_waits_are_sleep_woken_by_the_timer() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let r = check_single("sleep", tmp.path(), "sleep_loop", "sleep");
    r.assert_waker("sleep_loop", "sleep", "timer (interrupt)");
}

/// poll(NULL, 0, 2): poll, ended by the timer interrupt.
#[test]
fn poll_timeouts_are_poll_woken_by_the_timer() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let r = check_single("poll", tmp.path(), "poll_loop", "poll");
    r.assert_waker("poll_loop", "poll", "timer (interrupt)");
}

/// A request over a pipe (or a socket) to a peer thread that thinks 20 ms before replying:
/// the reader waits in `reason`, woken by peer_reply; the peer mostly sleeps.
fn check_round_trips(mode: &str, reader: &str, reason: &str) {
    let tmp = temp_dir();
    let r = check_single(mode, tmp.path(), reader, reason);
    let peer_wall = assert_fixture_waited(&r, "peer_reply");
    r.assert_wall_time("peer_reply", peer_wall);
    r.assert_dominant_reason("peer_reply", "sleep");
    let peer_tid = r.measured.get("peer_reply_tid").to_owned();
    r.assert_thread_labels("peer_reply", &peer_tid, PEER_THREAD);

    // The waker: the label names the peer's function and its process.
    r.assert_folded_waker(reader, "peer_reply");
    r.assert_waker(reader, reason, &format!("peer_reply ({FIXTURE})"));
}

#[test]
fn pipe_reply_waits_are_pipe_and_name_the_peer_as_waker() {
    if !prerequisites() {
        return;
    }
    check_round_trips("pipe", "pipe_reader", "pipe");
}

#[test]
fn socket_reply_waits_are_net_and_name_the_peer_as_waker() {
    if !prerequisites() {
        return;
    }
    check_round_trips("socket", "socket_reader", "net");
}

/// One byte read per page of a mapped file whose cache was dropped: every touch is a major
/// fault waiting for the disk.
#[test]
fn major_fault_waits_are_pagefault() {
    if !prerequisites() {
        return;
    }
    let Some(scratch) = block_scratch() else {
        return;
    };
    eprintln!("scratch: {}", scratch.describe());
    let r = profile_mode("fault", scratch.path());
    let touches = r.measured.u64("fault_loop_calls");
    let majflt = r.measured.u64("fault_loop_majflt");
    assert!(
        touches >= 1000 && majflt * 10 >= touches * 9,
        "fault_loop touched {touches} pages and took {majflt} major faults: the page cache \
         was not dropped, the run cannot test fault waits\n{:?}",
        r.measured.0
    );
    let wall = assert_fixture_waited(&r, "fault_loop");
    r.assert_wall_time("fault_loop", wall);
    r.assert_dominant_reason("fault_loop", "pagefault");
    let tid = r.measured.get("fault_loop_tid").to_owned();
    r.assert_thread_labels("fault_loop", &tid, FIXTURE);
}

/// Four spinners pinned to one CPU: each is runnable, waiting for the CPU, whenever it is
/// not running, so its runqueue delay is its wall time minus its CPU time.
#[test]
fn spinners_sharing_one_cpu_wait_in_the_runqueue_for_wall_minus_cpu() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let r = profile_mode("runqueue", tmp.path());
    let list =
        |key: &str| -> Vec<String> { r.measured.get(key).split(',').map(str::to_owned).collect() };
    let number = |v: &String| -> u64 {
        v.parse()
            .unwrap_or_else(|e| panic!("fixture value {v:?} is not a number: {e}"))
    };
    let tids = list("spin_worker_tids");
    let walls: Vec<u64> = list("spin_worker_wall_ns").iter().map(number).collect();
    let cpus: Vec<u64> = list("spin_worker_cpu_ns").iter().map(number).collect();
    let function = "spin_worker";

    for ((tid, &wall), &cpu) in tids.iter().zip(&walls).zip(&cpus) {
        let waited = wall.saturating_sub(cpu);
        assert!(
            wall >= 1_000_000_000 && waited * 5 >= wall,
            "spinner {tid} ran {} with {} of CPU: it hardly waited for the CPU, the run \
             cannot test runqueue time\n{:?}",
            ms(wall as f64),
            ms(cpu as f64),
            r.measured.0
        );
        let runqueue = r.offcpu.sum("delay", |s| {
            s.has(function) && s.label("tid") == Some(tid) && s.label("reason") == Some(RUNQUEUE)
        });
        let gap = (runqueue as f64 - waited as f64) / waited as f64;
        assert!(
            gap.abs() <= TOLERANCE,
            "spinner {tid}: {} of runqueue delay under {function} in the profile, where it \
             measured wall {} - CPU {} = {} itself ({:+.1}%, more than {:.0}% off)\n{}",
            ms(runqueue as f64),
            ms(wall as f64),
            ms(cpu as f64),
            ms(waited as f64),
            100.0 * gap,
            100.0 * TOLERANCE,
            r.context(function)
        );
    }
    // All spinners together: their CPU samples and delays make up their wall times.
    r.assert_wall_time(function, walls.iter().sum());
    r.assert_dominant_reason(function, RUNQUEUE);
}

/// A read that never ends, begun right after the launch; the window closes 2 s later with
/// the read still waiting: it is counted, once, up to the end of the window, marked as in
/// progress.
#[test]
fn wait_in_progress_at_the_end_is_counted_up_to_it() {
    if !prerequisites() {
        return;
    }
    const WINDOW: Duration = Duration::from_secs(2);
    let tmp = temp_dir();
    // The fixture outlives the window by 1 s, then exits by itself.
    let r = profile_mode_for("stuck", tmp.path(), "2s");
    let function = "stuck_reader";
    let wait_start = r.measured.u64("stuck_reader_wait_start_ns");
    let tid = r.measured.get("stuck_reader_tid").to_owned();
    let context = r.context(function);
    // Only the read is in progress; the thread's waits before it (being preempted on its way
    // there) ended.
    let in_progress = |s: &RawSample| label(s, "outcome").as_deref() == Some("in progress");
    let waiting: Vec<&RawSample> = r
        .offcpu
        .containing(function)
        .filter(|s| in_progress(s))
        .collect();
    assert!(
        !waiting.is_empty(),
        "no wait in progress under {function} in the profile\n{context}"
    );
    for s in r.offcpu.containing(function) {
        let pipe = label(s, "reason").as_deref() == Some("pipe");
        assert_eq!(
            pipe,
            in_progress(s),
            "under {function}, whose one wait on a pipe never ends, a wait {} a pipe wait \
             and {} in progress: {}\n{context}",
            if pipe { "is" } else { "is not" },
            if in_progress(s) { "is" } else { "is not" },
            s.describe()
        );
    }
    r.assert_thread_labels(function, &tid, FIXTURE);
    let waits: i64 = waiting.iter().map(|s| s.value("waits")).sum();
    assert_eq!(waits, 1, "one wait, counted once\n{context}");
    let delay = waiting.iter().map(|s| s.value("delay")).sum::<i64>() as u64;

    // The window opened after the profiler started and lasted WINDOW; it closed before the
    // profiler exited. The read began after the launch, and so inside the window.
    let lower = (r.started_ns + WINDOW.as_nanos() as u64).saturating_sub(wait_start);
    let upper = r.exited_ns - wait_start;
    assert!(
        (lower.saturating_sub(5_000_000)..=upper).contains(&delay),
        "the in-progress read has {} of delay; it waited from {} ms after the profiler's start \
         to the window's end, which is {}..{}\n{context}",
        ms(delay as f64),
        (wait_start - r.started_ns) / 1_000_000,
        ms(lower as f64),
        ms(upper as f64)
    );
}

/// One `budget:` line of the terminal summary: `budget: NAME (pid P), N threads: T s = on
/// CPU X s + runnable Y s + REASON Z s ...` for a process, `budget:   thread NAME (tid T):
/// ...` for each of its threads.
#[derive(Debug)]
struct BudgetLine {
    name: String,
    /// `pid` or `tid`, and its value.
    id_kind: String,
    id: String,
    total_s: f64,
    /// The terms after `=`, by name (`on CPU`, `runnable`, reasons).
    terms: BTreeMap<String, f64>,
}

impl BudgetLine {
    fn parse(line: &str) -> Option<BudgetLine> {
        let rest = line.trim_start().strip_prefix("budget:")?.trim_start();
        let rest = rest.strip_prefix("thread ").unwrap_or(rest);
        let open = rest.rfind(" (")?;
        let name = rest[..open].to_owned();
        let after = &rest[open + 2..];
        let close = after.find(')')?;
        let (id_kind, id) = after[..close].split_once(' ')?;
        let (_, sums) = after[close..].split_once(": ")?;
        let (total, terms) = sums.split_once(" = ")?;
        let seconds = |t: &str| t.trim().strip_suffix(" s")?.trim().parse::<f64>().ok();
        let mut parsed = BTreeMap::new();
        for term in terms.split(" + ") {
            let (key, value) = term.trim().rsplit_once(' ').and_then(|(k, unit)| {
                let (key, number) = k.rsplit_once(' ')?;
                Some((key, seconds(&format!("{number} {unit}"))?))
            })?;
            parsed.insert(key.to_owned(), value);
        }
        Some(BudgetLine {
            name,
            id_kind: id_kind.to_owned(),
            id: id.to_owned(),
            total_s: seconds(total)?,
            terms: parsed,
        })
    }
}

/// The run's window in seconds, from the summary's `window: 3.01s from ...`.
fn window_seconds(stdout: &str) -> f64 {
    stdout
        .split("window: ")
        .nth(1)
        .and_then(|w| w.split('s').next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("the summary has no `window: N.NNs`:\n{stdout}"))
}

/// Four spinners on one CPU: the time budget of each thread adds up to its time in the
/// window (its own wall time, the whole window for the main thread) within 2%, and its
/// on-CPU and runnable parts are the CPU time and wall minus CPU time the spinner measured.
#[test]
fn time_budget_per_thread_adds_up_to_the_window_and_to_the_spinners_own_clocks() {
    if !prerequisites() {
        return;
    }
    const BUDGET_TOLERANCE: f64 = 0.02;
    let tmp = temp_dir();
    let r = profile_mode("runqueue", tmp.path());
    let stdout = &r.run.stdout;
    let window = window_seconds(stdout);
    let budgets: Vec<BudgetLine> = stdout.lines().filter_map(BudgetLine::parse).collect();
    let pid = r.measured.get("pid");
    let context = format!(
        "fixture: {:?}\nbudget lines: {budgets:#?}\nprofiler stdout:\n{stdout}",
        r.measured.0
    );
    let close = |got: f64, want: f64, tolerance: f64| (got - want).abs() <= tolerance * want;

    let process = budgets
        .iter()
        .find(|b| b.id_kind == "pid" && b.id == pid)
        .unwrap_or_else(|| panic!("no budget line for the fixture's process {pid}\n{context}"));
    assert_eq!(
        process.name, FIXTURE,
        "the budget names the fixture's process by another name\n{context}"
    );
    for b in budgets.iter().filter(|b| b.id_kind == "tid") {
        let sum: f64 = b.terms.values().sum();
        assert!(
            close(sum, b.total_s, BUDGET_TOLERANCE),
            "thread {}: its budget's parts add up to {sum:.3} s, not to its {:.3} s\n{context}",
            b.id,
            b.total_s
        );
        assert!(
            b.total_s <= window * (1.0 + BUDGET_TOLERANCE),
            "thread {}: a budget of {:.3} s in a window of {window:.2} s\n{context}",
            b.id,
            b.total_s
        );
    }
    let thread = |tid: &str| {
        budgets
            .iter()
            .find(|b| b.id_kind == "tid" && b.id == tid)
            .unwrap_or_else(|| panic!("no budget line for thread {tid}\n{context}"))
    };
    // The main thread lives through the whole window (the command is the run).
    let main = thread(pid);
    assert!(
        close(main.total_s, window, BUDGET_TOLERANCE),
        "the main thread's budget is {:.3} s in a window of {window:.2} s it lived through\n\
         {context}",
        main.total_s
    );

    let list =
        |key: &str| -> Vec<String> { r.measured.get(key).split(',').map(str::to_owned).collect() };
    let tids = list("spin_worker_tids");
    let walls = list("spin_worker_wall_ns");
    let cpus = list("spin_worker_cpu_ns");
    for ((tid, wall), cpu) in tids.iter().zip(&walls).zip(&cpus) {
        let wall_s = wall.parse::<f64>().expect("wall is a number") / 1e9;
        let cpu_s = cpu.parse::<f64>().expect("cpu is a number") / 1e9;
        let b = thread(tid);
        let on_cpu = b.terms.get("on CPU").copied().unwrap_or(0.0);
        let runnable = b.terms.get("runnable").copied().unwrap_or(0.0);
        // The thread lived a little longer than its spinning: start, barrier, exit.
        assert!(
            wall_s <= b.total_s * (1.0 + BUDGET_TOLERANCE) && b.total_s <= window,
            "spinner {tid}: budget {:.3} s, but it spun {wall_s:.3} s by its own clock in a \
             window of {window:.2} s\n{context}",
            b.total_s
        );
        assert!(
            close(on_cpu, cpu_s, TOLERANCE),
            "spinner {tid}: {on_cpu:.3} s on CPU in its budget, {cpu_s:.3} s of CPU time by \
             its own clock\n{context}"
        );
        assert!(
            close(runnable, wall_s - cpu_s, TOLERANCE),
            "spinner {tid}: {runnable:.3} s runnable in its budget, wall {wall_s:.3} s - CPU \
             {cpu_s:.3} s = {:.3} s by its own clocks\n{context}",
            wall_s - cpu_s
        );
    }
}

#[test]
fn budget_lines_parse() {
    let b = BudgetLine::parse(
        "  budget:   thread offcpu_waits (tid 976): 3.008 s = on CPU 0.493 s + runnable 2.515 s \
         + lock 0.000 s",
    )
    .expect("parses");
    assert_eq!(
        (b.name.as_str(), b.id_kind.as_str()),
        ("offcpu_waits", "tid")
    );
    assert_eq!(b.id, "976");
    assert_eq!(b.total_s, 3.008);
    assert_eq!(b.terms["on CPU"] + b.terms["runnable"], 3.008);
    let p = BudgetLine::parse(
        "  budget: offcpu_waits (pid 974), 5 threads: 15.044 s = on CPU 1.981 s + runnable \
         10.065 s",
    )
    .expect("parses");
    assert_eq!((p.id_kind.as_str(), p.id.as_str()), ("pid", "974"));
    assert_eq!(p.terms.len(), 2);
}
