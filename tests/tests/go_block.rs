//! Goroutine waits, for every Go toolchain the tests cover (Debian's and the current
//! releases from `integration_tests::go_toolchains`): the delay the blocking profile has
//! under a fixture's function must be within 25% of Go's own block profile
//! (`runtime.SetBlockProfileRate(1)`) of the same run, with the wait reason that release's
//! runtime gives it and stacks that start at the blocking call, as Go's do; an idle server must show no contention finding; a goroutine still
//! parked at the end must be counted up to it; and a Go program that allocates heavily
//! must get an allocation finding naming its allocating function.

#[allow(dead_code)]
#[path = "../go/mod.rs"]
mod go;
#[path = "../block/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::{
    FixtureResult, GoToolchain, Run, Running, monotonic_ns, prerequisites, run_profiler,
    spawn_profiler, temp_dir,
};
use raw::{RawSample, describe, raw_samples};

/// Largest allowed relative gap between the profile's delay under a function and Go's own
/// block profile's. Both time the same waits (Go from just before the park to the moment
/// the goroutine is readied, the profiler from the park to the ready call), but the
/// profiler's probes are attached only once the command runs, and each probe hit (a few
/// µs) lands inside the waits it times.
const TOLERANCE: f64 = 0.25;

/// How long each fixture blocks.
const SECONDS: &str = "2";

/// One profiled run of a Go fixture.
struct GoRun {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    result: PathBuf,
    run: Run,
    started_ns: u64,
    exited_ns: u64,
}

impl GoRun {
    fn samples(&self) -> Vec<RawSample> {
        raw_samples(&self.out.join("block.pb.gz"))
    }

    /// Go's own block profile of the run, as the fixture wrote it.
    fn go_samples(&self) -> Vec<RawSample> {
        let mut path = self.result.clone().into_os_string();
        path.push(".block.pb.gz");
        raw_samples(Path::new(&path))
    }

    fn measured(&self) -> FixtureResult {
        FixtureResult::read(&self.result)
    }
}

/// Runs `profiler --profiles PROFILES [extra] -- <binary> <args> <result file>`.
fn profile(binary: &Path, profiles: &str, extra: &[&str], args: &[&str]) -> GoRun {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mut argv: Vec<&OsStr> = vec!["--profiles".as_ref(), profiles.as_ref()];
    argv.extend(extra.iter().map(OsStr::new));
    argv.push("--".as_ref());
    argv.push(binary.as_os_str());
    argv.extend(args.iter().map(OsStr::new));
    argv.push(result.as_os_str());
    let started_ns = monotonic_ns();
    let run = run_profiler(&argv, &out);
    let exited_ns = monotonic_ns();
    run.assert_success();
    GoRun {
        _tmp: tmp,
        out,
        result,
        run,
        started_ns,
        exited_ns,
    }
}

fn ms(ns: f64) -> String {
    format!("{:.1} ms", ns / 1e6)
}

/// The sum of delay of the samples with `function` on their stack.
fn delay_under(samples: &[RawSample], function: &str) -> i64 {
    samples
        .iter()
        .filter(|s| s.has(function))
        .map(RawSample::delay)
        .sum()
}

/// The leaf functions of `samples`' stacks.
fn leaves(samples: &[&RawSample]) -> BTreeSet<String> {
    samples
        .iter()
        .filter_map(|s| s.functions().first().cloned())
        .collect()
}

/// The blocking fixture modes that compare with Go's block profile: (mode, the fixture's
/// function, the wait reason by name in releases that have it, else `semacquire`).
const COMPARED: [(&str, &str, &str); 3] = [
    ("mutex", "main.contendMutex", "sync.Mutex.Lock"),
    ("chan", "main.waitChannel", "chan receive"),
    ("waitgroup", "main.waitGroup", "sync.WaitGroup.Wait"),
];

#[test]
fn goroutine_waits_match_go_s_own_block_profile() {
    if !prerequisites() {
        return;
    }
    for (mode, function, named_reason) in COMPARED {
        go::for_each_toolchain(&format!("{mode} ({function})"), |toolchain| {
            let binary = go::build(toolchain, "go_block");
            let r = profile(&binary, "block,goroutines", &[], &[mode, SECONDS]);
            let ours = r.samples();
            let theirs = r.go_samples();
            let context = format!(
                "fixture: {:?}\n--- profile ---\n{}\n--- Go's block profile ---\n{}\n{}",
                r.measured().0,
                describe(&ours),
                describe(&theirs),
                r.run.transcript()
            );
            let want = delay_under(&theirs, function);
            if want < 500_000_000 {
                return Err(format!(
                    "Go's block profile has only {} under {function}: the fixture did not \
                     block\n{context}",
                    ms(want as f64)
                ));
            }
            let reason = if named_reason.starts_with("chan")
                || go::runtime_has_reason(toolchain, named_reason)
            {
                named_reason
            } else {
                "semacquire"
            };
            // Goroutine waits only: a runtime thread's futex wait under the function (a
            // runtime lock) is no goroutine wait, and Go's profile does not have it.
            let under: Vec<&RawSample> = ours
                .iter()
                .filter(|s| s.has(function) && !s.label("waiters").is_empty())
                .collect();
            if let Some(bad) = under.iter().find(|s| s.label("reason") != reason) {
                return Err(format!(
                    "{} waited under {function} with reason {:?}, want {reason:?}\n{context}",
                    bad.label("waiters"),
                    bad.label("reason")
                ));
            }
            let got: i64 = under.iter().map(|s| s.delay()).sum();
            let gap = (got - want) as f64 / want as f64;
            if gap.abs() > TOLERANCE {
                return Err(format!(
                    "{} under {function} where Go's own block profile has {} ({:+.1}%, more \
                     than {:.0}% off)\n{context}",
                    ms(got as f64),
                    ms(want as f64),
                    100.0 * gap,
                    100.0 * TOLERANCE
                ));
            }
            // Stacks start where Go's block profile starts them: at the blocking call.
            let go_under: Vec<&RawSample> = theirs.iter().filter(|s| s.has(function)).collect();
            let (leaves, go_leaves) = (leaves(&under), leaves(&go_under));
            if leaves != go_leaves {
                return Err(format!(
                    "the goroutine waits under {function} start at {leaves:?}, Go's block \
                     profile's at {go_leaves:?}\n{context}"
                ));
            }
            // The summary names the waiting function as a finding, with the operation;
            // waitChannel's goroutines receive at their own top, workers waiting for work,
            // which is no finding.
            if mode == "chan" && r.run.stdout.contains(&format!("  * {function} in ")) {
                return Err(format!(
                    "{function}'s goroutines wait for work at their top, yet the summary \
                     names them as a finding\n{context}"
                ));
            }
            let finding = match mode {
                "mutex" => Some(("Go lock contention", "sync.(*Mutex).Lock")),
                _ => None,
            };
            if let Some((heading, operation)) = finding {
                let named = r
                    .run
                    .stdout
                    .lines()
                    .skip_while(|l| !l.starts_with(heading))
                    .take_while(|l| l.starts_with(heading) || l.starts_with("  "))
                    .any(|l| {
                        l.starts_with(&format!("  * {function} in "))
                            && l.contains(&format!(" times in {operation}, "))
                    });
                if !named {
                    return Err(format!(
                        "no {heading:?} finding naming {function} in {operation}\n{context}"
                    ));
                }
            }
            Ok(format!(
                "profile {} vs Go's {} ({:+.1}%), reason {reason}, leaf {leaves:?}",
                ms(got as f64),
                ms(want as f64),
                100.0 * gap
            ))
        });
    }
}

#[test]
fn idle_server_shows_no_contention() {
    if !prerequisites() {
        return;
    }
    go::for_each_toolchain("idle server", |toolchain| {
        let binary = go::build(toolchain, "go_block");
        // The window closes while the server still runs, its goroutines in Accept.
        let r = profile(
            &binary,
            "block,goroutines",
            &["--duration", "2s"],
            &["server", "4"],
        );
        let samples = r.samples();
        let stdout = &r.run.stdout;
        let context = format!("{}\n{}", describe(&samples), r.run.transcript());
        let findings = stdout
            .lines()
            .find(|l| l.starts_with("Findings: "))
            .unwrap_or("");
        if !findings.contains(" 0 contended locks") || !findings.contains(" 0 busy Go channels") {
            return Err(format!(
                "findings for an idle server: {findings:?}\n{context}"
            ));
        }
        if stdout.contains("Contention (locks") || stdout.contains("Go lock contention") {
            return Err(format!(
                "a contention section for an idle server\n{context}"
            ));
        }
        // The server's goroutines are there, waiting for the network, still at the end.
        let accepting: Vec<&RawSample> =
            samples.iter().filter(|s| s.has("main.serveIdle")).collect();
        let goroutines: std::collections::BTreeSet<&str> =
            accepting.iter().map(|s| s.label("goroutine")).collect();
        let all_network = accepting.iter().all(|s| {
            s.label("class") == "network"
                && s.label("reason") == "IO wait"
                && s.label("outcome") == "in progress"
        });
        if goroutines.len() != 4 || !all_network {
            return Err(format!(
                "want the 4 goroutines of main.serveIdle in progress in `IO wait` (class \
                 network), got goroutines {goroutines:?}\n{context}"
            ));
        }
        // The runtime's idle threads are labelled so, and not among the top stacks.
        let idle = samples
            .iter()
            .filter(|s| s.label("class") == "idle")
            .count();
        Ok(format!(
            "{} goroutines in Accept, {idle} idle runtime thread waits labelled, {findings}",
            goroutines.len()
        ))
    });
}

#[test]
fn goroutine_parked_at_the_end_is_counted_up_to_it() {
    if !prerequisites() {
        return;
    }
    go::for_each_toolchain("parked at the end", |toolchain| {
        parked_at_the_end(toolchain, "")
    });
}

/// Without DWARF (`-ldflags=-w`) the goroutine ids come from the profiler's table of `g`
/// layouts by release: the parked goroutine must still carry its id.
#[test]
fn goroutine_ids_without_dwarf() {
    if !prerequisites() {
        return;
    }
    go::for_each_toolchain("parked at the end, no DWARF", |toolchain| {
        parked_at_the_end(toolchain, "-w")
    });
}

fn parked_at_the_end(toolchain: &GoToolchain, ldflags: &str) -> Result<String, String> {
    const WINDOW: Duration = Duration::from_secs(2);
    let name = if ldflags.is_empty() {
        "go_block"
    } else {
        "go_block_nodwarf"
    };
    let binary = go::build_with(toolchain, "go_block", ldflags, name);
    // The fixture outlives the window by 1 s.
    let r = profile(
        &binary,
        "block,goroutines",
        &["--duration", "2s"],
        &["parked", "3"],
    );
    let measured = r.measured();
    let wait_start = measured.u64("wait_start_ns");
    let samples = r.samples();
    let context = format!("fixture: {:?}\n{}", measured.0, describe(&samples));
    // Goroutine waits only: writing the result file in parkForever may also wait once in
    // a runtime lock's futex (lock2 under netpollGenericInit), when another thread holds it.
    let parked: Vec<&RawSample> = samples
        .iter()
        .filter(|s| s.has("main.parkForever") && !s.label("goroutine").is_empty())
        .collect();
    let waits: i64 = parked.iter().map(|s| s.contentions()).sum();
    if waits != 1 {
        return Err(format!(
            "{waits} goroutine waits under main.parkForever, want 1\n{context}"
        ));
    }
    let s = parked[0];
    if s.label("outcome") != "in progress"
        || s.label("goroutine") != measured.get("goid")
        || s.label("reason") != "chan receive"
    {
        return Err(format!(
            "the parked goroutine has outcome {:?}, goroutine {:?}, reason {:?}; want in \
             progress, goroutine {}, chan receive\n{context}",
            s.label("outcome"),
            s.label("goroutine"),
            s.label("reason"),
            measured.get("goid")
        ));
    }
    let delay = s.delay() as u64;
    // It parked after the launch; the window closed WINDOW after the profiler started,
    // and before it exited.
    let lower = (r.started_ns + WINDOW.as_nanos() as u64).saturating_sub(wait_start);
    let upper = r.exited_ns - wait_start;
    if !(lower.saturating_sub(5_000_000)..=upper).contains(&delay) {
        return Err(format!(
            "the parked goroutine has {} of delay, want {}..{}\n{context}",
            ms(delay as f64),
            ms(lower as f64),
            ms(upper as f64)
        ));
    }
    Ok(format!("parked {} up to the end", ms(delay as f64)))
}

/// Whole-host mode: a Go program started after the profiler (so found through the exec
/// event, not the start-up scan) gets its goroutine waits traced from the moment its
/// binary is probed: its mutex waits are there, with its pid, at most Go's own total (the
/// probes miss what it waited before they were attached) and not far below it.
#[test]
fn a_go_program_executed_later_in_whole_host_mode_is_traced() {
    if !prerequisites() {
        return;
    }
    go::for_each_toolchain("exec'd later, whole host", |toolchain| {
        let binary = go::build(toolchain, "go_block");
        let tmp = temp_dir();
        let out = tmp.path().join("out");
        let result = tmp.path().join("result.txt");
        let profiler = spawn_profiler(
            &[
                "--profiles",
                "goroutines",
                "--duration",
                "6s",
                "--format",
                "pprof",
            ],
            &out,
        );
        // Time to load and scan the host before the program starts.
        std::thread::sleep(Duration::from_secs(2));
        let mut cmd = std::process::Command::new(&binary);
        cmd.arg("mutex").arg(SECONDS).arg(&result);
        let fixture = Running::spawn(cmd);
        let pid = fixture.pid().to_string();
        let fixture_run = fixture.wait();
        fixture_run.assert_success();
        let run = profiler.wait();
        run.assert_success();
        let ours = raw_samples(&out.join("block.pb.gz"));
        let mut go_pb = result.clone().into_os_string();
        go_pb.push(".block.pb.gz");
        let theirs = raw_samples(Path::new(&go_pb));
        let want = delay_under(&theirs, "main.contendMutex");
        let got: i64 = ours
            .iter()
            .filter(|s| s.has("main.contendMutex") && s.label("pid") == pid)
            .map(RawSample::delay)
            .sum();
        let share = got as f64 / want.max(1) as f64;
        if !(0.5..=1.0 + TOLERANCE).contains(&share) {
            return Err(format!(
                "{} under main.contendMutex of pid {pid} where Go's own block profile has {} \
                 ({:.0}%)\n{}",
                ms(got as f64),
                ms(want as f64),
                100.0 * share,
                run.transcript()
            ));
        }
        Ok(format!(
            "profile {} vs Go's {} ({:.0}%)",
            ms(got as f64),
            ms(want as f64),
            100.0 * share
        ))
    });
}

/// `--pid` of a Go program already running: its binary is found and probed at the start,
/// and its mutex waits from then on are there, at most Go's own total for the whole run.
#[test]
fn a_running_go_program_given_by_pid_is_traced() {
    if !prerequisites() {
        return;
    }
    go::for_each_toolchain("--pid", |toolchain| {
        let binary = go::build(toolchain, "go_block");
        let tmp = temp_dir();
        let out = tmp.path().join("out");
        let result = tmp.path().join("result.txt");
        let mut cmd = std::process::Command::new(&binary);
        cmd.arg("mutex").arg("4").arg(&result);
        let fixture = Running::spawn(cmd);
        let pid = fixture.pid().to_string();
        let run = run_profiler(
            &[
                "--profiles",
                "goroutines",
                "--duration",
                "2s",
                "--format",
                "pprof",
                "--pid",
                &pid,
            ],
            &out,
        );
        run.assert_success();
        fixture.wait().assert_success();
        let ours = raw_samples(&out.join("block.pb.gz"));
        let mut go_pb = result.clone().into_os_string();
        go_pb.push(".block.pb.gz");
        let want = delay_under(&raw_samples(Path::new(&go_pb)), "main.contendMutex");
        let got: i64 = ours
            .iter()
            .filter(|s| s.has("main.contendMutex") && s.label("pid") == pid)
            .map(RawSample::delay)
            .sum();
        // Two of the fixture's four seconds were profiled. How much of the run's waiting
        // falls in them is the scheduler's doing (CI at bf84375, a loaded host: 66%), so
        // the window is held only to what Go measured: some of the run's waits, never more
        // than all of them (a doubled count would be).
        let share = got as f64 / want.max(1) as f64;
        if !(0.1..=1.0 + TOLERANCE).contains(&share) {
            return Err(format!(
                "{} under main.contendMutex of pid {pid} in a 2 s window of a 4 s run where \
                 Go's own block profile has {} for the run ({:.0}%)\n{}",
                ms(got as f64),
                ms(want as f64),
                100.0 * share,
                run.transcript()
            ));
        }
        Ok(format!(
            "profile {} (2 s window) vs Go's {} (4 s run): {:.0}%",
            ms(got as f64),
            ms(want as f64),
            100.0 * share
        ))
    });
}

#[test]
fn go_allocation_finding_names_the_allocating_function() {
    if !prerequisites() {
        return;
    }
    go::for_each_toolchain("allocation finding", |toolchain| {
        let binary = go::build(toolchain, "go_alloc");
        let r = profile(&binary, "cpu", &["-F", "499"], &["3"]);
        let allocations = r.measured().u64("allocations");
        let stdout = &r.run.stdout;
        let section: Vec<&str> = stdout
            .lines()
            .skip_while(|l| !l.starts_with("  * allocation:"))
            .take(3)
            .collect();
        let context = format!("fixture: {allocations} allocations\n{}", r.run.transcript());
        if allocations < 1_000_000 {
            return Err(format!(
                "the fixture allocated only {allocations} objects\n{context}"
            ));
        }
        let names_caller = section
            .iter()
            .any(|l| l.trim_start().starts_with("called from main.allocateNodes"));
        let go_fix = section.iter().any(|l| l.contains("sync.Pool"));
        if !names_caller || !go_fix {
            return Err(format!(
                "no allocation finding called from main.allocateNodes with Go's fix: \
                 {section:?}\n{context}"
            ));
        }
        Ok(section
            .first()
            .map_or(String::new(), |l| l.trim().to_owned()))
    });
}
