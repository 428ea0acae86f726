//! Row 14: what the off-CPU profile costs a context-switch-heavy program, per switch,
//! beside the peers that time off-CPU waits: a bpftrace script on the `sched_switch`
//! tracepoint shaped like bcc's `offcputime`, and `perf record` of `sched_switch` with
//! call graphs. The bar: the profile joins the default set only if it adds at
//! most 5% per switch.
//!
//! The Go part is in `offcpu_go.rs`, the whole-host part (a busy host under the profile
//! without `--pid`) in `offcpu_host.rs`.
//!
//! The fixture (`bench_pingpong ROUNDS wait`) forks its peer, prints both pids and waits
//! for SIGUSR1, so every observer attaches by pid (`--pid`, `-p`, a pid filter) before
//! the first round, as a user would attach to a running service.

use std::ffi::OsString;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::fixtures::argv;
use super::offcpu_go::go_channels;
use super::offcpu_host::whole_host;
use super::parse::need_field;
use super::report::{self, Goal, Section, Status, Table};
use super::runner::{self, ObserverFailed, Ready, Running, Workdir};
use super::stats::{Spread, ratio_of_pairs};
use super::{Ctx, title};

/// An observer's command line for the fixture's pids, and how to know it is attached.
type ObserverFor = Box<dyn Fn(&[u32], &Workdir) -> (Vec<OsString>, Ready)>;

/// Who observes the fixture, given the fixture's two pids.
struct Config {
    who: &'static str,
    setting: String,
    observer: ObserverFor,
    /// True for the profiler: its failure fails the row; a peer's is only noted.
    is_profiler: bool,
}

/// Row 14.
pub fn offcpu(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "offcpu")?;
    let fixture = &ctx.fixtures.pingpong;
    let probe_rounds = 100_000u64;
    let probe = once(&dir, &argv(fixture, &[probe_rounds.to_string()]), None)?;
    let secs = if ctx.plan.quick { 1.0 } else { 3.0 };
    let rounds = ((secs * 1e6 / (2.0 * probe)).round() as u64).max(10_000);
    let fixture_argv = argv(fixture, &[rounds.to_string(), "wait".into()]);

    let goal = "profiler --profiles offcpu: at most 5% more time per context switch";
    let mut section = Section::new(
        title("offcpu"),
        format!(
            "`bench_pingpong {rounds} wait`: two processes pinned to one CPU pass a byte \
             back and forth through two pipes, each read blocking until the other writes \
             (two context switches per round trip; about {secs:.0} s unprofiled), timing \
             the rounds itself. The fixture prints both pids and waits, so each observer \
             attaches by pid before the rounds start. A: unobserved; B: `profiler \
             --profiles offcpu --pid PARENT,CHILD`, a bpftrace script on the classic \
             `sched_switch` tracepoint shaped like bcc's offcputime (on switch-out of a \
             target: start time and state into two maps; on every switch-in: look up, \
             delete, and `sum()` the time off CPU by (tid, state); no stacks), or `perf \
             record -e sched:sched_switch -g -p PARENT,CHILD` (a record with both stacks \
             per switch). Figures are µs per context switch.",
        ),
    );

    let settle = ctx.plan.settle;
    let mut configs = Vec::new();
    let mut notes = Vec::new();
    let refused = offcpu_refused(ctx, &dir)?;
    match &refused {
        None => {
            let profiler = ctx.profiler.clone();
            configs.push(Config {
                who: "profiler",
                setting: "--profiles offcpu --pid".into(),
                observer: Box::new(move |pids, dir| {
                    let argv = vec![
                        profiler.clone().into_os_string(),
                        "--profiles".into(),
                        "offcpu".into(),
                        "--pid".into(),
                        join(pids).into(),
                        "-o".into(),
                        dir.out.clone().into_os_string(),
                    ];
                    (argv, Ready::After(settle))
                }),
                is_profiler: true,
            });
        }
        Some(why) => {
            println!("xtask: bench: off-CPU profile not available in this build; row skipped");
            notes.push(format!(
                "profiler row skipped: this build refuses `--profiles offcpu` ({why})."
            ));
        }
    }
    if ctx.peers.bpftrace.ready() {
        configs.push(Config {
            who: "bpftrace",
            setting: "sched_switch, offcputime-like sum by (tid, state)".into(),
            observer: Box::new(|pids, _| {
                let filter = pids
                    .iter()
                    .map(|p| format!("pid == {p}"))
                    .collect::<Vec<_>>()
                    .join(" || ");
                let program = format!(
                    "tracepoint:sched:sched_switch {{ \
                       if ({filter}) {{ @start[tid] = nsecs; @state[tid] = args->prev_state; }} \
                       $t = @start[args->next_pid]; \
                       if ($t) {{ \
                         @off[args->next_pid, @state[args->next_pid]] = sum(nsecs - $t); \
                         delete(@start[args->next_pid]); \
                       }} \
                     }}"
                );
                (
                    vec!["bpftrace".into(), "-e".into(), program.into()],
                    Ready::Line("Attaching", Duration::from_secs(1)),
                )
            }),
            is_profiler: false,
        });
    } else {
        notes.push(format!(
            "bpftrace skipped: bpftrace {}",
            ctx.peers.bpftrace.describe()
        ));
    }
    if ctx.peers.perf.ready() {
        configs.push(Config {
            who: "perf record",
            setting: "-e sched:sched_switch -g -p".into(),
            observer: Box::new(move |pids, dir| {
                let argv = vec![
                    "perf".into(),
                    "record".into(),
                    "-q".into(),
                    "-e".into(),
                    "sched:sched_switch".into(),
                    "-g".into(),
                    "-p".into(),
                    join(pids).into(),
                    "-o".into(),
                    dir.out.join("perf.data").into_os_string(),
                ];
                (argv, Ready::After(settle))
            }),
            is_profiler: false,
        });
    } else {
        notes.push(format!("perf skipped: perf {}", ctx.peers.perf.describe()));
    }
    notes.push(
        "`perf record --off-cpu` is not in the table: Debian's perf is built without \
         BUILD_BPF_SKEL and ignores the option. bcc's python offcputime needs kprobes \
         (`finish_task_switch`); the bpftrace script stands in for it on the tracepoint."
            .to_string(),
    );

    let mut table = Table::new(&[
        "Observer",
        "Setting",
        "A: unobserved, µs/switch",
        "B: observed, µs/switch",
        "Slowdown: median of pair ratios (min … max)",
        "Extra ns per switch (median)",
    ]);
    let mut ours = None;
    for config in &configs {
        let label = format!("{} {}", config.who, config.setting);
        let mut pairs = Vec::new();
        let mut skipped = None;
        for rep in 1..=ctx.plan.reps {
            let a = once(&dir, &fixture_argv, None)?;
            let b = match once(&dir, &fixture_argv, Some(config)) {
                Ok(b) => b,
                Err(err)
                    if !config.is_profiler && err.downcast_ref::<ObserverFailed>().is_some() =>
                {
                    println!("xtask: bench: {label}: skipped: {err:#}");
                    skipped = Some(format!("{label} failed to run: {err:#}"));
                    break;
                }
                Err(err) => return Err(err),
            };
            println!(
                "xtask: bench: {label}: pair {rep}/{}: A {a:.3} µs, B {b:.3} µs per switch, \
                 B/A {:.3}",
                ctx.plan.reps,
                b / a
            );
            pairs.push((a, b));
        }
        if let Some(why) = skipped {
            notes.push(why);
            continue;
        }
        let a = Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).context("no pairs")?;
        let b = Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).context("no pairs")?;
        let ratio = ratio_of_pairs(&pairs).context("no pairs")?;
        let mut extra: Vec<f64> = pairs.iter().map(|(a, b)| (b - a) * 1e3).collect();
        extra.sort_by(f64::total_cmp);
        table.row(vec![
            config.who.to_string(),
            format!("`{}`", config.setting),
            report::spread(a, 3),
            report::spread(b, 3),
            report::overhead(ratio),
            format!("{:.0}", extra[extra.len() / 2]),
        ]);
        if config.is_profiler {
            ours = Some(ratio.median);
        }
    }
    section.tables.push(table);
    section.goals.push(cost_goal(goal, ours));
    let go_goal = "profiler --profiles offcpu: at most 5% more time per hand-off of a Go \
                   channel ping-pong";
    match go_channels(ctx, &dir, refused.is_none(), &mut section) {
        Ok(go) => section.goals.push(cost_goal(go_goal, go)),
        Err(err) => {
            runner::check_interrupted()?;
            println!("xtask: bench: Go ping-pong failed: {err:#}");
            notes.push(format!("Go ping-pong not measured: {err:#}"));
            section
                .goals
                .push(Goal::new(go_goal, "not measured", Status::NotMeasured));
        }
    }
    if refused.is_none() {
        whole_host(ctx, &dir, &mut section)?;
    } else {
        notes.push("Whole host not measured: this build has no off-CPU profile.".to_string());
    }
    section.notes.extend(notes);
    Ok(section)
}

/// The goal of at most 5% more time, from the profiler's median B/A if it ran.
fn cost_goal(goal: &str, ratio: Option<f64>) -> Goal {
    match ratio {
        Some(r) => {
            let p = (r - 1.0) * 100.0;
            Goal::new(goal, report::signed_pct(p), Status::from_bool(p <= 5.0))
        }
        None => Goal::new(
            goal,
            "off-CPU profile not available in this build",
            Status::NotMeasured,
        ),
    }
}

/// Why this build refuses `--profiles offcpu` (clap exits with 2 on an unknown value),
/// or `None` when it takes it.
fn offcpu_refused(ctx: &Ctx, dir: &Workdir) -> Result<Option<String>> {
    dir.fresh_out()?;
    let mut cmd = runner::command(&[
        ctx.profiler.clone().into_os_string(),
        "--profiles".into(),
        "offcpu".into(),
        "--duration".into(),
        "100ms".into(),
        "-o".into(),
        dir.out.clone().into_os_string(),
    ]);
    let probe = runner::run(&mut cmd, &dir.logs, "probe", runner::RUN_TIMEOUT)?;
    if probe.status.code() == Some(2) {
        // clap's own line (`error: invalid value 'offcpu' for ...`), not its hints.
        let line = probe
            .stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .or_else(|| probe.stderr.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .trim()
            .to_string();
        return Ok(Some(format!(
            "`{}` exited with code 2: {line}",
            probe.shown
        )));
    }
    probe.ok()?;
    Ok(None)
}

/// One run of the fixture, observed by `config` if given; returns µs per switch.
///
/// With `wait` in its arguments the fixture prints its pids and waits for SIGUSR1: the
/// observer starts on those pids, and the rounds once it is attached. The profiler and
/// perf stop by themselves once their targets exit, bpftrace when sent SIGINT; either
/// way the observer must end cleanly.
fn once(dir: &Workdir, fixture: &[OsString], config: Option<&Config>) -> Result<f64> {
    runner::check_interrupted()?;
    dir.fresh_out()?;
    let mut fx = Running::start(&mut runner::command(fixture), &dir.logs, "fixture")?;
    let waits = fixture.last().is_some_and(|a| a == "wait");
    let mut observer = None;
    if waits {
        let pids = wait_for_pids(&mut fx)?;
        if let Some(config) = config {
            let (argv, ready) = (config.observer)(&pids, dir);
            let bg = Running::start(&mut runner::command(&argv), &dir.logs, "observer")?;
            observer = Some(runner::wait_ready(bg, ready)?);
        }
        fx.signal(libc::SIGUSR1);
    }
    let done = fx.wait(runner::RUN_TIMEOUT)?.ok()?;
    if let Some(bg) = observer {
        let stopped = bg.stop(runner::STOP_TIMEOUT)?;
        if !stopped.stopped_cleanly() {
            return Err(ObserverFailed(format!(
                "`{}` {}:\n{}",
                stopped.shown,
                runner::describe(stopped.status),
                runner::tail(&stopped.stderr, 15)
            ))
            .into());
        }
    }
    need_field(&done.stdout, "us_per_switch", "bench_pingpong")
}

/// The `pids=PARENT,CHILD` line of a waiting fixture.
fn wait_for_pids(fx: &mut Running) -> Result<Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = fx.stdout_so_far();
        if let Some(line) = out.lines().find_map(|l| l.trim().strip_prefix("pids=")) {
            return line
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<u32>()
                        .context("a pid in bench_pingpong's pids=")
                })
                .collect();
        }
        if !fx.poll()? {
            bail!("bench_pingpong exited before printing its pids:\n{out}");
        }
        if Instant::now() >= deadline {
            bail!("bench_pingpong printed no pids within 30 s");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
