//! CPU-profile tests: the profile must agree with what the fixtures measured
//! about themselves, cover exactly the targets asked for, and be symbolized
//! (user and kernel frames, also for processes that exited before the end).

use std::path::Path;
use std::thread;
use std::time::Duration;

use integration_tests::{
    FixtureProcess, FixtureResult, Folded, assert_outputs, fixture, kernel_symbols, pprof,
    prerequisites, run_profiler, spawn_profiler, temp_dir,
};

/// Largest allowed gap, in percentage points, between the profile's
/// alpha/(alpha+beta) split and the fixture's own CPU-clock measurement.
const SPLIT_TOLERANCE_PP: f64 = 3.0;

/// Compares the burn_alpha / burn_beta split of the profile with the
/// fixture's own measurement; returns the number of alpha+beta samples.
fn assert_split_matches(folded: &Folded, measured: &FixtureResult) -> u64 {
    let alpha = folded.samples_containing("burn_alpha");
    let beta = folded.samples_containing("burn_beta");
    let both = alpha + beta;
    assert!(
        both >= 200,
        "too few samples in burn_alpha/burn_beta ({alpha}+{beta}) for a 499 Hz run of seconds\n{}",
        folded.summary(15)
    );
    let alpha_ns = measured.u64("alpha_ns") as f64;
    let beta_ns = measured.u64("beta_ns") as f64;
    let want = 100.0 * alpha_ns / (alpha_ns + beta_ns);
    let got = 100.0 * alpha as f64 / both as f64;
    assert!(
        (got - want).abs() <= SPLIT_TOLERANCE_PP,
        "profile split alpha={got:.1}% ({alpha} of {both} samples) differs from the fixture's own \
         CPU-clock split alpha={want:.1}% by more than {SPLIT_TOLERANCE_PP} pp\n{}",
        folded.summary(15)
    );
    both
}

#[test]
fn pid_mode_cpu_split_matches_fixture_self_measurement() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let target = FixtureProcess::spawn("cpu_split", &["60"]);
    let pid = target.pid().to_string();

    let run = run_profiler(&["-F", "499", "--duration", "4s", "--pid", &pid], &out);
    run.assert_success();
    let measured = target.stop();

    assert_outputs(&out);
    let folded = Folded::load(&out);
    let foreign: Vec<_> = folded
        .comms()
        .into_iter()
        .filter(|(c, _)| c != "cpu_split")
        .collect();
    assert!(
        foreign.is_empty(),
        "--pid {pid} profile has samples of other commands: {foreign:?}\n{}",
        folded.summary(15)
    );
    assert_split_matches(&folded, &measured);
}

#[test]
fn command_mode_cpu_split_matches_fixture_self_measurement() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let cpu_split = fixture("cpu_split");

    let run = run_profiler(
        &[
            "-F".as_ref(),
            "499".as_ref(),
            "--duration".as_ref(),
            "60s".as_ref(),
            "--".as_ref(),
            cpu_split.as_os_str(),
            "4".as_ref(),
            result.as_os_str(),
        ],
        &out,
    );
    run.assert_success();
    let measured = FixtureResult::read(&result);

    assert_outputs(&out);
    let folded = Folded::load(&out);
    let both = assert_split_matches(&folded, &measured);

    // -F is a rate per CPU-second: the whole command was profiled, so the
    // alpha+beta samples should be about 499 per second of its measured CPU.
    let cpu_s = (measured.u64("alpha_ns") + measured.u64("beta_ns")) as f64 / 1e9;
    let expected = 499.0 * cpu_s;
    let ratio = both as f64 / expected;
    assert!(
        (0.5..=1.3).contains(&ratio),
        "{both} alpha+beta samples for {cpu_s:.2} CPU-seconds at -F 499 (expected ~{expected:.0})\n{}",
        folded.summary(15)
    );
}

#[test]
fn pid_mode_profiles_every_thread_and_excludes_busy_bystander() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    // Stopped after the run, and long enough to outlast the profiler's start: it took 60 s
    // in a loaded TCG guest (CI at 19fd710, 6.12), when both ran for 60 s and the target
    // exited 0.08 s into the window.
    let bystander = FixtureProcess::spawn("bystander", &["600"]);
    let target = FixtureProcess::spawn("threads", &["600"]);
    let pid = target.pid().to_string();

    let run = run_profiler(&["-F", "199", "--duration", "3s", "--pid", &pid], &out);
    run.assert_success();
    let threads = target.stop();
    let spin = bystander.stop();
    assert!(
        spin.u64("spin_ns") >= 500_000_000,
        "the bystander barely ran ({} ns), so its absence proves nothing",
        spin.get("spin_ns")
    );

    assert_outputs(&out);
    let folded = Folded::load(&out);
    let total = folded.total();
    for (i, f) in ["thread_work_0", "thread_work_1", "thread_work_2"]
        .iter()
        .enumerate()
    {
        let n = folded.samples_containing(f);
        assert!(
            n * 10 >= total && total > 0,
            "{f} has {n} of {total} samples (< 10%); the thread measured {} ns of CPU\n{}",
            threads.get("work_ns").split(',').nth(i).unwrap_or("?"),
            folded.summary(15)
        );
    }
    let text = std::fs::read_to_string(out.join("cpu.folded")).unwrap();
    let leaked: Vec<&str> = text.lines().filter(|l| l.contains("bystander")).collect();
    assert!(
        leaked.is_empty(),
        "a process outside --pid {pid} was profiled: {leaked:?}"
    );
    // The workers name themselves worker-N: their samples are the process's, and each
    // keeps its thread's name as a label.
    let comms: Vec<String> = folded.comms().into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        comms,
        ["threads"],
        "the folded roots are not the process's name\n{}",
        folded.summary(15)
    );
    let traces = pprof(&["-traces".as_ref(), out.join("cpu.pb.gz").as_os_str()]);
    traces.assert_success();
    for i in 0..3 {
        let thread = format!("worker-{i}");
        assert!(
            traces
                .stdout
                .lines()
                .any(|l| l.trim_start().starts_with("thread:") && l.contains(&thread)),
            "no sample carries the label `thread: {thread}`\n{}",
            traces.stdout
        );
    }
}

/// Runs the profiler on the comma-joined or repeated `--pid` flags for a
/// cpu_split and a threads fixture, with a bystander that must stay out.
fn two_pid_targets(pid_args: impl Fn(&str, &str) -> Vec<String>) {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let bystander = FixtureProcess::spawn("bystander", &["60"]);
    let a = FixtureProcess::spawn("cpu_split", &["60"]);
    let b = FixtureProcess::spawn("threads", &["60"]);
    let mut args: Vec<String> = ["-F", "199", "--duration", "2s"]
        .map(str::to_owned)
        .to_vec();
    args.extend(pid_args(&a.pid().to_string(), &b.pid().to_string()));

    let run = run_profiler(&args, &out);
    run.assert_success();
    drop((a.stop(), b.stop(), bystander.stop()));

    assert_outputs(&out);
    let folded = Folded::load(&out);
    for f in [
        "burn_alpha",
        "thread_work_0",
        "thread_work_1",
        "thread_work_2",
    ] {
        assert!(
            folded.samples_containing(f) > 0,
            "{f} missing from a profile of {args:?}\n{}",
            folded.summary(15)
        );
    }
    let comms: Vec<String> = folded.comms().into_iter().map(|(c, _)| c).collect();
    assert!(
        comms.contains(&"cpu_split".to_owned()) && comms.contains(&"threads".to_owned()),
        "expected comms cpu_split and threads, got {comms:?}"
    );
    assert_eq!(
        folded.samples_containing("bystander_spin") + folded.with_comm("bystander").total(),
        0,
        "a process outside {args:?} was profiled\n{}",
        folded.summary(15)
    );
}

#[test]
fn comma_separated_pids_profile_both_processes() {
    if !prerequisites() {
        return;
    }
    two_pid_targets(|a, b| vec!["--pid".into(), format!("{a},{b}")]);
}

#[test]
fn repeated_pid_flags_profile_both_processes() {
    if !prerequisites() {
        return;
    }
    two_pid_targets(|a, b| vec!["--pid".into(), a.into(), "--pid".into(), b.into()]);
}

#[test]
fn kernel_frames_under_syscall_heavy_code_are_kallsyms_names() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let syscalls = fixture("syscalls");

    let run = run_profiler(
        &[
            "-F".as_ref(),
            "499".as_ref(),
            "--duration".as_ref(),
            "60s".as_ref(),
            "--".as_ref(),
            syscalls.as_os_str(),
            "2".as_ref(),
            result.as_os_str(),
        ],
        &out,
    );
    run.assert_success();
    let measured = FixtureResult::read(&result);
    assert!(measured.u64("syscalls") > 1000, "fixture made few syscalls");

    assert_outputs(&out);
    let folded = Folded::load(&out).with_comm("syscalls");
    let kallsyms = kernel_symbols();
    // The fixture issues `syscall` inline from do_syscalls, so every kernel
    // frame of its syscalls sits leafward of do_syscalls.
    let kernel_frames_below = |frames: &[String]| -> Vec<String> {
        match frames.iter().position(|f| f == "do_syscalls") {
            Some(i) => frames[i + 1..]
                .iter()
                .filter(|f| kallsyms.contains(f.as_str()))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    };
    let in_do_syscalls = folded.samples_containing("do_syscalls");
    let with_kernel = folded.samples_where(|s| !kernel_frames_below(&s.frames).is_empty());
    assert!(
        in_do_syscalls > 0,
        "no sample in do_syscalls\n{}",
        folded.summary(15)
    );
    // The fixture spends most of its time in the kernel (getppid + write).
    assert!(
        with_kernel * 4 >= in_do_syscalls,
        "only {with_kernel} of {in_do_syscalls} do_syscalls samples have a /proc/kallsyms function \
         below do_syscalls\n{}",
        folded.summary(15)
    );
    let names: std::collections::BTreeSet<String> = folded
        .stacks
        .iter()
        .flat_map(|s| kernel_frames_below(&s.frames))
        .collect();
    assert!(
        names.iter().any(|n| n.to_lowercase().contains("sys")),
        "no syscall-path kernel function (name containing 'sys') below do_syscalls; got {names:?}"
    );
}

#[test]
fn exited_process_in_host_wide_profile_is_symbolized() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let profiler = spawn_profiler(&["-F", "99", "--duration", "5s"], &out);
    // Starts 1 s into the run and exits 2.5 s into it, 2.5 s before the end.
    thread::sleep(Duration::from_secs(1));
    let mut short = FixtureProcess::spawn("short_lived", &["1.5"]);
    let burned = short.wait_result(Duration::from_secs(30));
    let run = profiler.wait();
    run.assert_success();

    assert_outputs(&out);
    let all = Folded::load(&out);
    let folded = all.with_comm("short_lived");
    let total = folded.total();
    let in_burn = folded.samples_containing("burn_short");
    assert!(
        total >= 20,
        "only {total} samples of short_lived (it burned {} ns during the run)\ncomms: {:?}",
        burned.get("burn_ns"),
        all.comms().into_iter().take(15).collect::<Vec<_>>()
    );
    assert!(
        in_burn * 2 >= total,
        "only {in_burn} of {total} short_lived samples are symbolized as burn_short\n{}",
        folded.summary(15)
    );
}

#[test]
fn command_mode_stops_when_command_exits_before_duration() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let short = fixture("short_lived");

    let run = run_profiler(
        &[
            "-F".as_ref(),
            "99".as_ref(),
            "--duration".as_ref(),
            "30s".as_ref(),
            "--".as_ref(),
            short.as_os_str(),
            "1".as_ref(),
            result.as_os_str(),
        ],
        &out,
    );
    run.assert_success();
    assert!(
        run.elapsed < Duration::from_secs(15),
        "profiler ran {:?} for a 1 s command with --duration 30s: it did not stop when the \
         command exited",
        run.elapsed
    );
    FixtureResult::read(&result);

    assert_outputs(&out);
    let folded = Folded::load(&out);
    assert!(
        folded.samples_containing("burn_short") >= 20,
        "burn_short missing or rare in the profile of a 1 s burn at 99 Hz\n{}",
        folded.summary(15)
    );
}

#[test]
fn pid_mode_follows_forked_child_and_survives_target_exit() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    // parent_burn 0-2 s, then a child burns 2-4 s and both exit, 1 s before
    // the profile's end.
    let mut target = FixtureProcess::spawn("forker", &["2", "2"]);
    let pid = target.pid().to_string();

    let run = run_profiler(&["-F", "199", "--duration", "5s", "--pid", &pid], &out);
    run.assert_success();
    let forked = target.wait_result(Duration::from_secs(30));

    assert_outputs(&out);
    let folded = Folded::load(&out);
    assert!(
        folded.samples_containing("parent_burn") > 0,
        "the --pid target's own function parent_burn is missing\n{}",
        folded.summary(15)
    );
    assert!(
        folded.samples_containing("child_burn") >= 20,
        "child_burn of the child (pid {}) forked by --pid {pid} is missing or rare\n{}",
        forked.get("child_pid"),
        folded.summary(15)
    );
}

#[test]
fn command_mode_profiles_forked_descendants() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let forker = fixture("forker");

    let run = run_profiler(
        &[
            "-F".as_ref(),
            "199".as_ref(),
            "--duration".as_ref(),
            "60s".as_ref(),
            "--".as_ref(),
            forker.as_os_str(),
            "1.5".as_ref(),
            "0.5".as_ref(),
            result.as_os_str(),
        ],
        &out,
    );
    run.assert_success();
    FixtureResult::read(&result);

    assert_outputs(&out);
    let folded = Folded::load(&out);
    for f in ["parent_burn", "child_burn"] {
        assert!(
            folded.samples_containing(f) > 0,
            "{f} missing from the profile of a command that forks\n{}",
            folded.summary(15)
        );
    }
}

#[test]
fn go_tool_pprof_reads_profile_with_functions_and_labels() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let target = FixtureProcess::spawn("cpu_split", &["60"]);
    let pid = target.pid().to_string();

    let run = run_profiler(&["-F", "199", "--duration", "2s", "--pid", &pid], &out);
    run.assert_success();
    drop(target.stop());
    let pb: &Path = &out.join("cpu.pb.gz");

    let top = pprof(&["-top".as_ref(), pb.as_os_str()]);
    top.assert_success();
    assert!(
        top.stdout.contains("burn_alpha"),
        "`go tool pprof -top` does not list burn_alpha\n{}",
        top.transcript()
    );

    let traces = pprof(&["-traces".as_ref(), pb.as_os_str()]);
    traces.assert_success();
    let label = |key: &str, value: &str| {
        traces.stdout.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("{key}:")) && l.contains(value)
        })
    };
    assert!(
        label("comm", "cpu_split"),
        "`go tool pprof -traces` shows no `comm: cpu_split` label\n{}",
        traces.transcript()
    );
    assert!(
        label("pid", &pid),
        "`go tool pprof -traces` shows no `pid: {pid}` label\n{}",
        traces.transcript()
    );
}

/// The number after `word` in `line` (`received: 985 ticks` -> 985 for `received:`).
fn number_after(line: &str, word: &str) -> Option<u64> {
    let at = line.find(word)? + word.len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// A whole-host run's CPU ticks are counted in the window they are checked against: no
/// more than one per sampling period per CPU, even with every CPU busy (ticks taken while
/// the profiler started its probes, or drained its rings after the window, once made it
/// "received 2121 ticks ... at most 1981").
#[test]
fn ticks_received_are_at_most_what_the_window_allows() {
    if !prerequisites() {
        return;
    }
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let spinners: Vec<FixtureProcess> = (0..cpus)
        .map(|_| FixtureProcess::spawn("bystander", &["60"]))
        .collect();
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let run = run_profiler(
        &[
            "--profiles",
            "cpu",
            "--duration",
            "3s",
            "--format",
            "folded",
        ],
        &out,
    );
    run.assert_success();
    for spinner in spinners {
        spinner.stop();
    }
    let line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("received:"))
        .unwrap_or_else(|| panic!("no \"received: N ticks\" line\n{}", run.stdout));
    let received = number_after(line, "received:").expect("received: N");
    let at_most = number_after(line, "at most").expect("at most N");
    // One tick per CPU of slack: a period that began just before the window closed.
    assert!(
        received <= at_most + cpus as u64,
        "{received} ticks received in a window that allows at most {at_most}: {line}"
    );
}
