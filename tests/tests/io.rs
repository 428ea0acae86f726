//! I/O-profile tests: every read/write-family call of the target is counted, so the
//! profile's calls and bytes per function must equal exactly what the fixtures counted
//! themselves; the small-I/O findings must name the functions that make many small calls
//! and not the one that reads in large chunks; other processes must stay out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{
    FixtureProcess, FixtureResult, Folded, Run, fixture, pprof, prerequisites, run_profiler,
    spawn_profiler, temp_dir,
};

// The three small-I/O cases, on their own fixture.
#[path = "io/cases.rs"]
mod cases;

// ---------------------------------------------------------------------------
// What the fixtures did

/// What one function of a fixture did, by syscall: `(syscall, calls, bytes)`.
#[derive(Debug)]
struct Expected {
    function: &'static str,
    parts: Vec<(&'static str, u64, u64)>,
}

impl Expected {
    fn calls(&self) -> u64 {
        self.parts.iter().map(|p| p.1).sum()
    }

    fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.2).sum()
    }
}

/// The io_mix functions and what each one's own count says it did.
fn io_mix_expected(m: &FixtureResult) -> Vec<Expected> {
    let one = |function: &'static str, syscall: &'static str| Expected {
        function,
        parts: vec![(
            syscall,
            m.u64(&format!("{function}_calls")),
            m.u64(&format!("{function}_bytes")),
        )],
    };
    vec![
        one("tiny_reads", "pread64"),
        one("line_writes", "write"),
        one("chunked_reads", "read"),
        Expected {
            function: "socket_ping",
            parts: vec![
                (
                    "sendto",
                    m.u64("socket_ping_send_calls"),
                    m.u64("socket_ping_send_bytes"),
                ),
                (
                    "recvfrom",
                    m.u64("socket_ping_recv_calls"),
                    m.u64("socket_ping_recv_bytes"),
                ),
            ],
        },
        one("vector_writes", "writev"),
    ]
}

// ---------------------------------------------------------------------------
// Running the profiler on the fixtures

/// One finished I/O profile of a fixture.
struct IoRun {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    run: Run,
    measured: FixtureResult,
}

/// Profiles `fixture_args` (a fixture and its arguments; its result file is appended) in
/// command mode with `--profiles io` and `extra` options.
fn profile_command(name: &str, fixture_args: &[&str], extra: &[&str]) -> IoRun {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture(name);
    let mut args: Vec<&OsStr> = ["--profiles", "io"].map(OsStr::new).to_vec();
    args.extend(extra.iter().map(OsStr::new));
    args.extend(["--duration", "60s", "--"].map(OsStr::new));
    args.push(exe.as_os_str());
    args.extend(fixture_args.iter().map(OsStr::new));
    args.push(result.as_os_str());

    let run = run_profiler(&args, &out);
    run.assert_success();
    let measured = FixtureResult::read(&result);
    assert_io_outputs(&out);
    IoRun {
        _tmp: tmp,
        out,
        run,
        measured,
    }
}

/// `io_mix run` profiled in command mode.
fn profile_io_mix(extra: &[&str]) -> IoRun {
    profile_command("io_mix", &["run"], extra)
}

/// Asserts that `dir` holds `io.folded`, `io.pb.gz` (gzip) and `io.svg`, none empty, and
/// no CPU profile (only `--profiles io` was asked for).
fn assert_io_outputs(dir: &Path) {
    for name in ["io.folded", "io.pb.gz", "io.svg"] {
        let p = dir.join(name);
        let meta =
            std::fs::metadata(&p).unwrap_or_else(|e| panic!("output {} missing: {e}", p.display()));
        assert!(meta.len() > 0, "output {} is empty", p.display());
    }
    let pb = std::fs::read(dir.join("io.pb.gz")).unwrap();
    assert_eq!(&pb[..2], &[0x1f, 0x8b], "io.pb.gz is not gzip-compressed");
    let svg = std::fs::read_to_string(dir.join("io.svg")).expect("io.svg is UTF-8");
    assert!(svg.contains("<svg"), "io.svg is not an SVG document");
    for name in ["cpu.folded", "cpu.pb.gz", "cpu.svg"] {
        assert!(
            !dir.join(name).exists(),
            "{name} was written although only --profiles io was asked for"
        );
    }
}

fn load_io_folded(dir: &Path) -> Folded {
    let p = dir.join("io.folded");
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    Folded::parse(&text)
}

// ---------------------------------------------------------------------------
// `go tool pprof -raw`

/// One sample of a pprof profile as `go tool pprof -raw` prints it.
#[derive(Debug, Clone)]
struct RawSample {
    /// By sample type name (`calls`, `bytes`, `time`, `errors`).
    values: HashMap<String, i64>,
    /// Function names, leaf first (inlined frames expanded).
    frames: Vec<String>,
    /// Label key to values.
    labels: HashMap<String, Vec<String>>,
}

impl RawSample {
    fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|f| f == function)
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    fn value(&self, name: &str) -> i64 {
        *self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("sample has no value {name}: {self:?}"))
    }

    fn describe(&self) -> String {
        let mut labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.join(",")))
            .collect();
        labels.sort();
        let mut values: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        values.sort();
        let mut frames = self.frames.clone();
        frames.reverse();
        format!(
            "[{}] {{{}}} {}",
            values.join(" "),
            labels.join(" "),
            frames.join(";")
        )
    }
}

/// The samples of a profile, parsed from `go tool pprof -raw`.
#[derive(Debug)]
struct RawProfile {
    samples: Vec<RawSample>,
    /// The `-raw` text, for assertion messages.
    text: String,
}

impl RawProfile {
    fn load(pb: &Path) -> RawProfile {
        let run = pprof(&["-raw".as_ref(), pb.as_os_str()]);
        run.assert_success();
        RawProfile::parse(&run.stdout)
    }

    fn parse(text: &str) -> RawProfile {
        #[derive(PartialEq)]
        enum Section {
            Head,
            SampleTypes,
            Samples,
            Locations,
            Tail,
        }
        let mut section = Section::Head;
        let mut types: Vec<String> = Vec::new();
        // Samples with their location ids, resolved once the locations are known.
        let mut pending: Vec<(RawSample, Vec<u64>)> = Vec::new();
        let mut locations: HashMap<u64, Vec<String>> = HashMap::new();
        let mut current_location: Option<u64> = None;
        for line in text.lines() {
            let trimmed = line.trim();
            match trimmed {
                "Samples:" => {
                    section = Section::SampleTypes;
                    continue;
                }
                "Locations" => {
                    section = Section::Locations;
                    continue;
                }
                "Mappings" => {
                    section = Section::Tail;
                    continue;
                }
                _ => {}
            }
            if trimmed.is_empty() {
                continue;
            }
            match section {
                Section::Head | Section::Tail => {}
                Section::SampleTypes => {
                    types = trimmed
                        .split_whitespace()
                        .map(|t| t.split('/').next().unwrap_or(t).to_owned())
                        .collect();
                    section = Section::Samples;
                }
                Section::Samples => {
                    let is_values = trimmed
                        .split(':')
                        .next()
                        .is_some_and(|v| v.split_whitespace().all(|n| n.parse::<i64>().is_ok()));
                    if is_values && trimmed.contains(':') {
                        let (values, locs) = trimmed.split_once(':').unwrap();
                        let values = types
                            .iter()
                            .cloned()
                            .zip(values.split_whitespace().map(|n| n.parse::<i64>().unwrap()))
                            .collect();
                        let locs = locs
                            .split_whitespace()
                            .map(|id| id.parse::<u64>().expect("location id"))
                            .collect();
                        pending.push((
                            RawSample {
                                values,
                                frames: Vec::new(),
                                labels: HashMap::new(),
                            },
                            locs,
                        ));
                    } else if let Some((sample, _)) = pending.last_mut() {
                        for (key, value) in parse_labels(trimmed) {
                            sample.labels.entry(key).or_default().extend(value);
                        }
                    }
                }
                Section::Locations => {
                    let mut tokens: Vec<&str> = trimmed.split_whitespace().collect();
                    let id = tokens
                        .first()
                        .and_then(|t| t.strip_suffix(':'))
                        .and_then(|t| t.parse::<u64>().ok());
                    if let Some(id) = id {
                        // `ID: 0xADDR [M=N] FUNCTION FILE:LINE s=N`
                        tokens.drain(..2);
                        if tokens.first().is_some_and(|t| t.starts_with("M=")) {
                            tokens.remove(0);
                        }
                        current_location = Some(id);
                        locations.entry(id).or_default();
                    }
                    // An inlined frame: `FUNCTION FILE:LINE s=N`.
                    let Some(id) = current_location else { continue };
                    if tokens.len() >= 3 {
                        let name = tokens[..tokens.len() - 2].join(" ");
                        locations.entry(id).or_default().push(name);
                    } else if let Some(first) = tokens.first() {
                        locations.entry(id).or_default().push((*first).to_owned());
                    }
                }
            }
        }
        let samples = pending
            .into_iter()
            .map(|(mut sample, locs)| {
                for id in locs {
                    match locations.get(&id) {
                        Some(names) if !names.is_empty() => sample.frames.extend(names.clone()),
                        _ => sample.frames.push("[unknown]".to_owned()),
                    }
                }
                sample
            })
            .collect();
        RawProfile {
            samples,
            text: text.to_owned(),
        }
    }

    /// The samples with `function` in their stack.
    fn containing<'a>(&'a self, function: &'a str) -> impl Iterator<Item = &'a RawSample> + 'a {
        self.samples.iter().filter(move |s| s.has(function))
    }

    /// The sum of value `name` over the samples for which `pred` holds.
    fn sum(&self, name: &str, pred: impl Fn(&RawSample) -> bool) -> i64 {
        self.samples
            .iter()
            .filter(|s| pred(s))
            .map(|s| s.value(name))
            .sum()
    }

    /// The samples with `function` in their stack, as text.
    fn describe(&self, function: &str) -> String {
        let lines: Vec<String> = self.containing(function).map(RawSample::describe).collect();
        if lines.is_empty() {
            format!("no sample has {function} in its stack")
        } else {
            lines.join("\n")
        }
    }
}

/// The `key:[value ...]` pairs of a `-raw` label line.
fn parse_labels(line: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find(":[") {
        let key = rest[..open]
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or("")
            .to_owned();
        let after = &rest[open + 2..];
        let Some(close) = after.find(']') else { break };
        let values = after[..close]
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        out.push((key, values));
        rest = &after[close + 1..];
    }
    out
}

// ---------------------------------------------------------------------------
// Assertions shared by the tests

/// Words one of which the libc wrapper at the leaf of every I/O stack has in its name.
const WRAPPER_WORDS: [&str; 4] = ["read", "write", "send", "recv"];

/// For each expected function: the `io.folded` lines that contain it add up to exactly its
/// calls, all of them are of `comm`, end in a libc read/write wrapper and have the
/// function right above that wrapper (the caller of the frame-pointer-less wrapper is
/// restored).
fn assert_folded_exact(folded: &Folded, expected: &[Expected], comm: &str) {
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
fn assert_pprof_exact(raw: &RawProfile, expected: &[Expected]) {
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

/// A parsed `  * SYSCALL in FUNCTION: N calls (R/s) of X on average[, on a KIND]` entry of
/// the summary's small-I/O section, with the lines under it.
#[derive(Debug)]
struct Finding {
    syscall: String,
    function: String,
    calls: u64,
    header: String,
    details: Vec<String>,
}

impl Finding {
    fn fix(&self) -> Option<&str> {
        self.details
            .iter()
            .find_map(|d| d.trim_start().strip_prefix("fix:"))
            .map(str::trim)
            .filter(|f| !f.is_empty())
    }
}

/// The entries of the "Small I/O hot paths" section of the summary.
fn small_io_findings(stdout: &str) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut inside = false;
    for line in stdout.lines() {
        if line.starts_with("Small I/O hot paths") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(entry) = line.strip_prefix("  * ") {
            let (site, rest) = entry.split_once(": ").unwrap_or((entry, ""));
            let (syscall, function) = site.split_once(" in ").unwrap_or(("", site));
            let calls = rest
                .split_whitespace()
                .next()
                .map(|n| n.replace(',', ""))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            findings.push(Finding {
                syscall: syscall.to_owned(),
                function: function.to_owned(),
                calls,
                header: line.to_owned(),
                details: Vec::new(),
            });
        } else if line.starts_with("    ") {
            if let Some(last) = findings.last_mut() {
                last.details.push(line.to_owned());
            }
        } else {
            inside = false;
        }
    }
    findings
}

// ---------------------------------------------------------------------------
// Attaching to a running process

/// How many BPF links process `pid` holds (its attached programs).
fn bpf_links(pid: u32) -> Option<usize> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|t| t.to_string_lossy() == "anon_inode:bpf_link")
            .count(),
    )
}

/// Waits until the profiler `pid` has attached its programs: it holds BPF links and their
/// number has not changed for 300 ms. Returns early if the profiler exits (its run then
/// tells why).
fn wait_until_attached(pid: u32) {
    let start = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let Some(n) = bpf_links(pid) else { return };
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() >= Duration::from_millis(300) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the profiler (pid {pid}) attached no BPF program within 30 s ({n} bpf_link \
             descriptors)"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Attaching finishes with the links; leave the profiler a moment more.
    thread::sleep(Duration::from_millis(200));
}

/// Waits until process `pid` catches signal `sig` (per `/proc/PID/status` SigCgt).
fn wait_until_catches(pid: u32, sig: i32) {
    let start = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1u64 << (sig - 1)) != 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "process {pid} did not install its signal {sig} handler within 10 s"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn command_mode_counts_every_call_and_byte_of_each_function_exactly() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let expected = io_mix_expected(&r.measured);
    let folded = load_io_folded(&r.out);
    assert_folded_exact(&folded, &expected, "io_mix");
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    assert_pprof_exact(&raw, &expected);
}

#[test]
fn small_io_findings_name_small_calls_and_not_large_reads() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let m = &r.measured;
    let stdout = &r.run.stdout;
    assert!(
        stdout.contains("I/O call sites by calls:"),
        "the summary has no \"Top N I/O call sites by calls:\" table\n{}",
        r.run.transcript()
    );
    let findings = small_io_findings(stdout);
    for (function, syscall) in [("tiny_reads", "pread64"), ("line_writes", "write")] {
        let found = findings
            .iter()
            .find(|f| f.function == function)
            .unwrap_or_else(|| {
                panic!(
                    "{function} ({} {syscall} calls of {} B in {:.0} ms) is not listed as a \
                     small I/O hot path\n{}",
                    m.u64(&format!("{function}_calls")),
                    m.u64(&format!("{function}_bytes")) / m.u64(&format!("{function}_calls")),
                    m.u64("work_ns") as f64 / 1e6,
                    r.run.transcript()
                )
            });
        assert_eq!(
            found.syscall, syscall,
            "wrong syscall in {:?}",
            found.header
        );
        assert_eq!(
            found.calls,
            m.u64(&format!("{function}_calls")),
            "the finding {:?} does not count the fixture's exact calls",
            found.header
        );
        assert!(
            found.header.contains("on a file"),
            "the finding {:?} does not say the calls were on a file",
            found.header
        );
        assert!(
            found.fix().is_some(),
            "the finding for {function} has no `fix:` hint: {found:?}"
        );
    }
    assert!(
        !findings.iter().any(|f| f.function == "chunked_reads"),
        "chunked_reads ({} reads of {} B each) is listed as a small I/O hot path\n{}",
        m.u64("chunked_reads_calls"),
        m.u64("chunked_reads_bytes") / m.u64("chunked_reads_calls"),
        r.run.stdout
    );
}

#[test]
fn small_io_thresholds_are_respected() {
    if !prerequisites() {
        return;
    }
    // tiny_reads moves 1 B per call, line_writes 20 B: only the first is at most 1 B.
    let r = profile_io_mix(&["--small-io-bytes", "1"]);
    let names: Vec<String> = small_io_findings(&r.run.stdout)
        .into_iter()
        .map(|f| f.function)
        .collect();
    assert!(
        names.iter().any(|n| n == "tiny_reads") && !names.iter().any(|n| n == "line_writes"),
        "with --small-io-bytes 1 expected tiny_reads and not line_writes among the findings, \
         got {names:?}\n{}",
        r.run.stdout
    );

    // No site makes a billion calls per second.
    let r = profile_io_mix(&["--small-io-rate", "1000000000"]);
    assert!(
        r.run.stdout.contains("Small I/O hot paths: none."),
        "with --small-io-rate 1000000000 expected \"Small I/O hot paths: none.\"\n{}",
        r.run.stdout
    );
}

#[test]
fn pid_mode_counts_target_exactly_and_excludes_io_bystander() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let bystander = FixtureProcess::spawn("io_bystander", &["60"]);
    let mut target = FixtureProcess::spawn("io_mix", &["wait"]);
    let pid = target.pid();
    wait_until_catches(pid, libc::SIGUSR1);

    let profiler = spawn_profiler(
        &[
            "--profiles",
            "io",
            "--duration",
            "30s",
            "--pid",
            &pid.to_string(),
        ],
        &out,
    );
    wait_until_attached(profiler.pid());
    // SAFETY: kill(2) on our own child, which is still running (it waits for this signal).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGUSR1);
    }
    let measured = target.wait_result(Duration::from_secs(30));
    // The profiler stops by itself once its only target has exited.
    let run = profiler.wait();
    run.assert_success();
    let spun = bystander.stop();
    assert!(
        spun.u64("io_calls") >= 10_000,
        "the bystander made only {} I/O calls, so its absence proves nothing",
        spun.get("io_calls")
    );

    assert_io_outputs(&out);
    let text = std::fs::read_to_string(out.join("io.folded")).unwrap();
    let leaked: Vec<&str> = text.lines().filter(|l| l.contains("bystander")).collect();
    assert!(
        leaked.is_empty(),
        "io.folded of --pid {pid} has lines of the bystander: {leaked:?}"
    );
    let folded = Folded::parse(&text);
    let comms: Vec<String> = folded.comms().into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        comms,
        vec!["io_mix".to_owned()],
        "io.folded of --pid {pid} has other commands\n{}",
        folded.summary(20)
    );
    let expected = io_mix_expected(&measured);
    assert_folded_exact(&folded, &expected, "io_mix");

    let raw = RawProfile::load(&out.join("io.pb.gz"));
    let pids: BTreeSet<&str> = raw.samples.iter().filter_map(|s| s.label("pid")).collect();
    assert_eq!(
        pids,
        BTreeSet::from([pid.to_string().as_str()]),
        "io.pb.gz of --pid {pid} has samples of other processes"
    );
    assert_pprof_exact(&raw, &expected);
}

#[test]
fn go_tool_pprof_reads_io_profile_with_functions_and_syscall_labels() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let pb = r.out.join("io.pb.gz");
    let functions = [
        "tiny_reads",
        "line_writes",
        "chunked_reads",
        "socket_ping",
        "vector_writes",
    ];
    for index in ["bytes", "calls", "requested"] {
        // -nodefraction=0: tiny_reads moves 0.3% of the bytes, below the default cut.
        let top = pprof(&[
            "-top".as_ref(),
            "-nodefraction=0".as_ref(),
            format!("-sample_index={index}").as_ref(),
            pb.as_os_str(),
        ]);
        top.assert_success();
        for f in functions {
            assert!(
                top.stdout
                    .lines()
                    .any(|l| l.split_whitespace().last() == Some(f)),
                "`go tool pprof -top -nodefraction=0 -sample_index={index}` does not list {f}\n{}",
                top.transcript()
            );
        }
    }

    let raw = RawProfile::load(&pb);
    let syscalls: BTreeMap<&str, i64> = raw.samples.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.label("syscall").unwrap_or("<none>")).or_default() += s.value("calls");
        m
    });
    for name in ["pread64", "write", "read", "sendto", "recvfrom", "writev"] {
        assert!(
            syscalls.contains_key(name),
            "no sample has the label syscall={name}; calls by syscall label: {syscalls:?}\n{}",
            raw.text
        );
    }
    assert!(
        !syscalls.contains_key("<none>"),
        "some samples have no syscall label: {syscalls:?}"
    );
    for s in &raw.samples {
        assert_eq!(
            s.label("comm"),
            Some("io_mix"),
            "a sample without comm io_mix: {}",
            s.describe()
        );
        assert!(
            s.label("pid").is_some_and(|p| p.parse::<u32>().is_ok()),
            "a sample without a numeric pid label: {}",
            s.describe()
        );
    }

    let tags = pprof(&["-tags".as_ref(), pb.as_os_str()]);
    tags.assert_success();
    assert!(
        tags.stdout.contains("syscall:") && tags.stdout.contains("pread64"),
        "`go tool pprof -tags` shows no syscall tag with pread64\n{}",
        tags.transcript()
    );
}

#[test]
fn descriptor_labels_tell_files_from_sockets() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    for (function, kind) in [
        ("tiny_reads", "file"),
        ("line_writes", "file"),
        ("chunked_reads", "file"),
        ("vector_writes", "file"),
        ("socket_ping", "socket"),
    ] {
        let samples: Vec<&RawSample> = raw.containing(function).collect();
        assert!(!samples.is_empty(), "no sample has {function} in its stack");
        for s in samples {
            assert_eq!(
                s.label("descriptor"),
                Some(kind),
                "a sample of {function} does not have descriptor={kind}: {}",
                s.describe()
            );
        }
    }
}

#[test]
fn sibling_functions_with_identical_frames_are_counted_apart() {
    if !prerequisites() {
        return;
    }
    // write_header and write_records call write(2) from the same stack depth with the
    // same frame size: same ip, sp and bp at the syscall, different call stacks.
    let r = profile_command("io_siblings", &[], &[]);
    let m = &r.measured;
    let expected: Vec<Expected> = ["write_header", "write_records"]
        .into_iter()
        .map(|function| Expected {
            function,
            parts: vec![(
                "write",
                m.u64(&format!("{function}_calls")),
                m.u64(&format!("{function}_bytes")),
            )],
        })
        .collect();
    let folded = load_io_folded(&r.out);
    assert_folded_exact(&folded, &expected, "io_siblings");
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    assert_pprof_exact(&raw, &expected);
}

#[test]
fn raw_parser_reads_samples_labels_and_inlined_frames() {
    let raw = RawProfile::parse(
        "PeriodType:  \nSamples:\ncalls/count[dflt] bytes/bytes time/nanoseconds errors/count\n\
         \x20        128       3780      77724          0: 1 2 3 \n\
         \x20               comm:[io_siblings] descriptor:[file] syscall:[write]\n\
         \x20               pid:[6408]\n\
         Locations\n\
         \x20    1: 0x7fc4 M=1 __GI___libc_write ./io/write.c:26 s=0\n\
         \x20    2: 0x55f0 M=2 report /f/fixture.h:103 s=0\n\
         \x20            main /f/io_siblings.c:69 s=0\n\
         \x20    3: 0x6c61 [unknown] :0 s=0\n\
         Mappings\n1: 0x7fc4/0x7fea/0x26000 /usr/lib/libc.so.6 93ac [FN]\n",
    );
    assert_eq!(raw.samples.len(), 1);
    let s = &raw.samples[0];
    assert_eq!(s.value("calls"), 128);
    assert_eq!(s.value("bytes"), 3780);
    assert_eq!(
        s.frames,
        vec!["__GI___libc_write", "report", "main", "[unknown]"]
    );
    assert_eq!(s.label("syscall"), Some("write"));
    assert_eq!(s.label("descriptor"), Some("file"));
    assert_eq!(s.label("pid"), Some("6408"));
    let findings = small_io_findings(
        "Small I/O hot paths (many small calls; buffering would remove most):\n\
         \x20 * pread64 in tiny_reads: 20,000 calls (587,479/s) of 1 B on average, on a file\n\
         \x20   path: main > tiny_reads > __libc_pread64\n\
         \x20   fix:  read through stdio\n\
         \x20   saves: 19,999 of 20,000 calls\n\nwrote:\n",
    );
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].function, "tiny_reads");
    assert_eq!(findings[0].syscall, "pread64");
    assert_eq!(findings[0].calls, 20_000);
    assert_eq!(findings[0].fix(), Some("read through stdio"));
}
