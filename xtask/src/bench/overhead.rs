//! Rows 1–3: how much slower the same work runs while observed, as paired A/B runs.
//!
//! 1. CPU sampling: a CPU-bound fixture under the profiler's CPU profile (whole host) at
//!    99 and 999 Hz (in `--call-graph dwarf` mode: a copy of the user stack per sample),
//!    perf record with frame-pointer stacks (`-g`) and with
//!    `--call-graph dwarf`, and bpftrace at the same rates, plus an A/A control (no
//!    observer in either half) that shows the noise floor of the machine.
//! 2. Syscall tracing: a pread loop under the profiler's I/O profile, bpftrace (with and
//!    without user stacks), perf trace and strace.
//! 3. Blocking: threads contending on a mutex under the profiler's blocking profile.
//!
//! Each fixture is calibrated first (one unprofiled run, which also warms caches), so a
//! run lasts about as long on any machine.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::Result;

use super::fixtures::argv;
use super::parse::need_field;
use super::report::{self, Goal, Section, Status, Table};
use super::runner::{self, Observer, ObserverFailed, Ready, Workdir};
use super::stats::{Spread, ratio_of_pairs};
use super::{Ctx, title};

/// One configuration of a paired measurement.
struct Config {
    /// Who observes, e.g. "profiler", "perf record".
    who: String,
    /// Their setting, e.g. "99 Hz".
    setting: String,
    /// `None` for the A/A control.
    observer: Option<Observer>,
    /// The fixture's command line (its size may differ between configs: slow tracers
    /// get fewer calls so a run stays short; the figure is per call).
    fixture: Vec<OsString>,
    /// True for the profiler: its failure fails the row; a peer's is only noted.
    is_profiler: bool,
}

/// The measured pairs of one config, or why a peer was skipped.
enum Outcome {
    /// `(a, b)` per pair of the wall-clock figure, and of the CPU-time figure when the
    /// fixture prints one.
    Pairs {
        wall: Vec<(f64, f64)>,
        cpu: Vec<(f64, f64)>,
    },
    Skipped(String),
}

/// A fixture's figures from its stdout: wall-clock based, and CPU-time based if any.
///
/// The wall-clock figure is the one the goals use. The CPU-time figure (the fixture's
/// own process CPU clock) still includes the tracing done in the fixture's syscalls and,
/// on kernels without CONFIG_IRQ_TIME_ACCOUNTING (Debian's default, and this VM's), the
/// sampling interrupts too, which are charged to the interrupted task; but it leaves out
/// time spent waiting for a CPU held by other work, so on a shared or busy machine it
/// separates overhead from noise far better.
type Metric<'a> = &'a dyn Fn(&str) -> Result<(f64, Option<f64>)>;

/// Runs `reps` pairs (A unobserved, then B observed) and returns `(a, b)` per pair of
/// the fixture's figures read by `metric`.
fn run_pairs(
    ctx: &Ctx,
    dir: &Workdir,
    config: &Config,
    metric: Metric<'_>,
    unit: &str,
) -> Result<Outcome> {
    let label = format!("{} {}", config.who, config.setting);
    println!(
        "xtask: bench: {label}: A = `{}`",
        runner::shown(&config.fixture)
    );
    match &config.observer {
        Some(Observer::Background { argv, .. }) => println!(
            "xtask: bench: {label}: B = `{}` in the background, then A's command",
            runner::shown(argv)
        ),
        Some(Observer::Wrap { argv }) => {
            println!(
                "xtask: bench: {label}: B = `{} <A's command>`",
                runner::shown(argv)
            )
        }
        None => println!("xtask: bench: {label}: B = A's command again (A/A control)"),
    }
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for rep in 1..=ctx.plan.reps {
        let a = metric(&runner::unobserved(&config.fixture, dir)?)?;
        let b = match &config.observer {
            None => runner::unobserved(&config.fixture, dir),
            Some(observer) => runner::observed(observer, &config.fixture, dir),
        };
        let b = match b {
            Ok(stdout) => metric(&stdout)?,
            Err(err) if !config.is_profiler && err.downcast_ref::<ObserverFailed>().is_some() => {
                println!("xtask: bench: {label}: skipped: {err:#}");
                return Ok(Outcome::Skipped(format!("{label} failed to run: {err:#}")));
            }
            Err(err) => return Err(err),
        };
        println!(
            "xtask: bench: {label}: pair {rep}/{}: A {:.4} {unit}, B {:.4} {unit}, B/A {:.4}{}",
            ctx.plan.reps,
            a.0,
            b.0,
            b.0 / a.0,
            match (a.1, b.1) {
                (Some(ac), Some(bc)) => format!(" (by CPU time {:.4})", bc / ac),
                _ => String::new(),
            }
        );
        wall.push((a.0, b.0));
        if let (Some(ac), Some(bc)) = (a.1, b.1) {
            cpu.push((ac, bc));
        }
    }
    Ok(Outcome::Pairs { wall, cpu })
}

/// The spread of the A and B figures and of the per-pair ratios.
struct Measured {
    a: Spread,
    b: Spread,
    ratio: Spread,
}

fn measured(pairs: &[(f64, f64)]) -> Option<Measured> {
    Some(Measured {
        a: Spread::of(&pairs.iter().map(|p| p.0).collect::<Vec<_>>())?,
        b: Spread::of(&pairs.iter().map(|p| p.1).collect::<Vec<_>>())?,
        ratio: ratio_of_pairs(pairs)?,
    })
}

/// Scales a fixture's size so that an unprofiled run takes about `seconds`, from one
/// calibration run of `probe` units that took `probe_secs`.
fn scaled(probe: u64, probe_secs: f64, seconds: f64, min: u64) -> u64 {
    ((probe as f64 * seconds / probe_secs.max(1e-6)).round() as u64).max(min)
}

/// The profiler in the background over the whole host.
fn profiler_bg(ctx: &Ctx, dir: &Workdir, extra: &[&str]) -> Observer {
    profiler_bin_bg(ctx, &ctx.profiler, dir, extra)
}

/// The profiler binary `bin` in the background over the whole host.
fn profiler_bin_bg(ctx: &Ctx, bin: &std::path::Path, dir: &Workdir, extra: &[&str]) -> Observer {
    let mut argv = vec![bin.as_os_str().to_owned()];
    argv.extend(extra.iter().map(OsString::from));
    argv.push("-o".into());
    argv.push(dir.out.clone().into_os_string());
    Observer::Background {
        argv,
        ready: Ready::After(ctx.plan.settle),
    }
}

/// bpftrace with a program; it announces "Attaching N probes..." just before attaching.
fn bpftrace_bg(program: &str) -> Observer {
    Observer::Background {
        argv: vec!["bpftrace".into(), "-e".into(), program.into()],
        ready: Ready::Line("Attaching", Duration::from_secs(1)),
    }
}

/// Row 1: CPU sampling overhead.
pub fn cpu_sampling(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "cpu")?;
    let fixture = &ctx.fixtures.cpu;
    let probe = 20_000;
    let out = runner::unobserved(&argv(fixture, &["work".into(), probe.to_string()]), &dir)?;
    let probe_secs = need_field(&out, "elapsed_ns", "bench_cpu")? / 1e9;
    let chunks = scaled(probe, probe_secs, ctx.plan.cpu_work_secs, 1000);
    let work = argv(fixture, &["work".into(), chunks.to_string()]);

    let mut configs = vec![Config {
        who: "nobody (A/A control)".into(),
        setting: "-".into(),
        observer: None,
        fixture: work.clone(),
        is_profiler: false,
    }];
    let mut skipped = Vec::new();
    let mode: &[&str] = &["--call-graph", "dwarf"];
    for hz in [99, 999] {
        let hz_s = hz.to_string();
        let mut flags = vec!["--profiles", "cpu", "-F", &hz_s];
        flags.extend_from_slice(mode);
        configs.push(Config {
            who: "profiler".into(),
            setting: format!("{hz} Hz"),
            observer: Some(profiler_bg(ctx, &dir, &flags)),
            fixture: work.clone(),
            is_profiler: true,
        });
        if ctx.peers.perf.ready() {
            // Frame-pointer stacks, and perf's own stack copies (8 KiB per sample).
            for (who, stacks, file) in [
                ("perf record", &["-g"][..], "perf.data"),
                (
                    "perf record --call-graph dwarf",
                    &["--call-graph", "dwarf"][..],
                    "perf-dwarf.data",
                ),
            ] {
                let mut argv: Vec<std::ffi::OsString> = vec!["perf".into(), "record".into()];
                argv.extend(stacks.iter().map(Into::into));
                argv.extend(["-a", "-F", &hz_s, "-e", "cpu-clock", "-o"].map(Into::into));
                argv.push(dir.out.join(file).into_os_string());
                configs.push(Config {
                    who: who.into(),
                    setting: format!("{hz} Hz"),
                    observer: Some(Observer::Background {
                        argv,
                        ready: Ready::After(ctx.plan.settle),
                    }),
                    fixture: work.clone(),
                    is_profiler: false,
                });
            }
        } else {
            skipped.push(format!(
                "perf record at {hz} Hz skipped: perf {}",
                ctx.peers.perf.describe()
            ));
        }
        if ctx.peers.bpftrace.ready() {
            configs.push(Config {
                who: "bpftrace".into(),
                setting: format!("{hz} Hz"),
                observer: Some(bpftrace_bg(&format!(
                    "profile:hz:{hz} {{ @[kstack, ustack] = count(); }}"
                ))),
                fixture: work.clone(),
                is_profiler: false,
            });
        } else {
            skipped.push(format!(
                "bpftrace at {hz} Hz skipped: bpftrace {}",
                ctx.peers.bpftrace.describe()
            ));
        }
    }

    let elapsed = |out: &str| {
        Ok((
            need_field(out, "elapsed_ns", "bench_cpu")? / 1e9,
            Some(need_field(out, "cpu_ns", "bench_cpu")? / 1e9),
        ))
    };
    let mut section = Section::new(
        title("cpu"),
        format!(
            "`bench_cpu work {chunks}` (single thread, a fixed amount of CPU work, about \
             {:.1} s unprofiled; it prints its own elapsed time) timed unprofiled (A) and \
             while observed (B). Observers sample the whole host: `profiler --profiles cpu \
             -F HZ --call-graph dwarf` (16 KiB of user stack copied per sample), `perf record -g -a -F HZ -e cpu-clock -o FILE` (frame pointers), \
             `perf record --call-graph dwarf -a -F HZ -e cpu-clock -o FILE` (8 KiB of user \
             stack copied per sample), and `bpftrace -e \
             'profile:hz:HZ {{ @[kstack, ustack] = count(); }}'`; each is started, given \
             {:.1} s to attach (bpftrace: until it prints `Attaching`, then 1 s), and \
             stopped with SIGINT after the fixture. The A/A control runs the fixture \
             unobserved in both halves: its spread is the machine's noise floor.",
            ctx.plan.cpu_work_secs,
            ctx.plan.settle.as_secs_f64()
        ),
    );
    let mut table = Table::new(&[
        "Observer",
        "Rate",
        "A: unprofiled, s",
        "B: observed, s",
        "Overhead: median of pair ratios (min … max)",
        "Overhead by the fixture's CPU time (min … max)",
    ]);
    // (who, setting) -> median overhead %, for the goals.
    let mut medians = Vec::new();
    let mut noise_floor = None;
    for config in &configs {
        match run_pairs(ctx, &dir, config, &elapsed, "s")? {
            Outcome::Pairs { wall, cpu } => {
                let m = measured(&wall).expect("at least one pair");
                let by_cpu = ratio_of_pairs(&cpu);
                table.row(vec![
                    config.who.clone(),
                    config.setting.clone(),
                    report::spread(m.a, 3),
                    report::spread(m.b, 3),
                    report::overhead(m.ratio),
                    by_cpu.map_or("-".to_string(), report::overhead),
                ]);
                medians.push((
                    config.who.clone(),
                    config.setting.clone(),
                    (m.ratio.median - 1.0) * 100.0,
                    by_cpu.map(|r| (r.median - 1.0) * 100.0),
                ));
                if config.observer.is_none() {
                    noise_floor = Some(m.ratio);
                }
            }
            Outcome::Skipped(why) => skipped.push(why),
        }
    }
    section.tables.push(table);
    let entry = |who: &str, setting: &str| {
        medians
            .iter()
            .find(|(w, s, _, _)| w == who && s == setting)
            .map(|(_, _, wall, cpu)| (*wall, *cpu))
    };
    let find = |who: &str, setting: &str| entry(who, setting).map(|(wall, _)| wall);
    // "+0.50% (+0.20% by CPU time)"
    let both = |(wall, cpu): (f64, Option<f64>)| match cpu {
        Some(cpu) => format!(
            "{} ({} by CPU time)",
            report::signed_pct(wall),
            report::signed_pct(cpu)
        ),
        None => report::signed_pct(wall),
    };
    for (hz, limit) in [(99, 1.0), (999, 3.0)] {
        let setting = format!("{hz} Hz");
        let goal = format!("profiler at {hz} Hz: overhead under {limit}%");
        section.goals.push(match entry("profiler", &setting) {
            Some(e) => Goal::new(goal, both(e), Status::from_bool(e.0 < limit)),
            None => Goal::new(goal, "-", Status::NotMeasured),
        });
    }
    // The A/A control's widest pair: differences smaller than that are not resolved.
    let noise = noise_floor.map(|r| (r.max - 1.0).max(1.0 - r.min) * 100.0);
    for (hz, perf_who) in [
        (99, "perf record"),
        (999, "perf record"),
        (99, "perf record --call-graph dwarf"),
        (999, "perf record --call-graph dwarf"),
    ] {
        let setting = format!("{hz} Hz");
        let goal = if perf_who == "perf record" {
            format!("profiler at {hz} Hz: never above perf")
        } else {
            format!("profiler at {hz} Hz: never above {perf_who}")
        };
        section.goals.push(
            match (find("profiler", &setting), find(perf_who, &setting)) {
                (Some(ours), Some(perf)) => {
                    let mut measured = format!(
                        "profiler {} vs perf {}",
                        both(entry("profiler", &setting).expect("found above")),
                        both(entry(perf_who, &setting).expect("found above"))
                    );
                    if let Some(noise) = noise.filter(|n| (ours - perf).abs() < *n) {
                        measured.push_str(&format!(
                            " (a difference within the A/A noise of ±{noise:.2}%)"
                        ));
                    }
                    Goal::new(goal, measured, Status::from_bool(ours <= perf))
                }
                _ => Goal::new(goal, "perf not measured", Status::NotMeasured),
            },
        );
    }
    if let Some(floor) = noise_floor {
        section.notes.push(format!(
            "The A/A control (no observer in either half) gives {}: differences of that \
             order between rows are the machine's noise, not overhead.",
            report::overhead(floor)
        ));
    }
    section.notes.extend(skipped);
    Ok(section)
}

/// Row 2: syscall-tracing overhead.
pub fn syscalls(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "syscalls")?;
    let fixture = &ctx.fixtures.pread;
    let probe = 200_000;
    let out = runner::unobserved(&argv(fixture, &[probe.to_string()]), &dir)?;
    let probe_secs = need_field(&out, "elapsed_ns", "bench_pread")? / 1e9;
    let calls = scaled(probe, probe_secs, ctx.plan.pread_secs, 10_000);
    // The issue measured bpftrace at about 3x and perf trace / strace at 50-70x: fewer
    // calls keep their runs near the same length. The figure is per call either way.
    let pread = |calls: u64| argv(fixture, &[calls.to_string()]);
    let (bpftrace_calls, slow_calls) = ((calls / 2).max(10_000), (calls / 40).max(10_000));

    let enter = "tracepoint:raw_syscalls:sys_enter /comm == \"bench_pread\"/ \
                 { @s[tid] = nsecs; }";
    let mut configs = vec![Config {
        who: "profiler".into(),
        setting: "--profiles io".into(),
        observer: Some(profiler_bg(ctx, &dir, &["--profiles", "io"])),
        fixture: pread(calls),
        is_profiler: true,
    }];
    let mut skipped = Vec::new();
    let mut baseline_note = None;
    // The baseline runs the same flags and workload right after, so the two builds' I/O
    // costs are compared under the same load; its failure is noted, not fatal.
    if let Some(baseline) = &ctx.baseline_profiler {
        configs.push(Config {
            who: "profiler (baseline)".into(),
            setting: "--profiles io".into(),
            observer: Some(profiler_bin_bg(ctx, baseline, &dir, &["--profiles", "io"])),
            fixture: pread(calls),
            is_profiler: false,
        });
        baseline_note = Some(format!(
            "profiler (baseline) is `{}` (--baseline-profiler), benched with the same flags \
             and calls as this build, each pair with its own unprofiled run.",
            baseline.display()
        ));
    }
    if ctx.peers.bpftrace.ready() {
        for (setting, count) in [
            ("count by user stack", "@c[ustack] = count();"),
            ("count, no stacks", "@c = count();"),
        ] {
            configs.push(Config {
                who: "bpftrace".into(),
                setting: setting.into(),
                observer: Some(bpftrace_bg(&format!(
                    "{enter} tracepoint:raw_syscalls:sys_exit /@s[tid]/ \
                     {{ {count} delete(@s[tid]); }}"
                ))),
                fixture: pread(bpftrace_calls),
                is_profiler: false,
            });
        }
    } else {
        skipped.push(format!(
            "bpftrace rows skipped: bpftrace {}",
            ctx.peers.bpftrace.describe()
        ));
    }
    if ctx.peers.perf_trace.ready() {
        configs.push(Config {
            who: "perf trace".into(),
            setting: "-s".into(),
            observer: Some(Observer::Wrap {
                argv: vec![
                    "perf".into(),
                    "trace".into(),
                    "-s".into(),
                    "-o".into(),
                    dir.out.join("perf-trace.txt").into_os_string(),
                    "--".into(),
                ],
            }),
            fixture: pread(slow_calls),
            is_profiler: false,
        });
    } else {
        skipped.push(format!(
            "perf trace skipped: {}",
            ctx.peers.perf_trace.describe()
        ));
    }
    if ctx.peers.strace.ready() {
        configs.push(Config {
            who: "strace".into(),
            setting: "-c -f".into(),
            observer: Some(Observer::Wrap {
                argv: vec![
                    "strace".into(),
                    "-c".into(),
                    "-f".into(),
                    "-o".into(),
                    dir.out.join("strace.txt").into_os_string(),
                    "--".into(),
                ],
            }),
            fixture: pread(slow_calls),
            is_profiler: false,
        });
    } else {
        skipped.push(format!(
            "strace skipped: strace {}",
            ctx.peers.strace.describe()
        ));
    }

    let per_call = |out: &str| {
        Ok((
            need_field(out, "ns_per_call", "bench_pread")?,
            Some(need_field(out, "cpu_ns_per_call", "bench_pread")?),
        ))
    };
    let mut section = Section::new(
        title("syscalls"),
        format!(
            "`bench_pread CALLS`: a loop of 1-byte `pread` calls (through libc) on a 4 KiB \
             file in the page cache, timing itself per call; {calls} calls (about {:.1} s) \
             unprofiled. B runs under `profiler --profiles io` (whole host, in the \
             background), bpftrace counting the fixture's syscalls by user stack or without \
             stacks (`tracepoint:raw_syscalls:sys_enter /comm == \"bench_pread\"/ {{ \
             @s[tid] = nsecs; }} tracepoint:raw_syscalls:sys_exit /@s[tid]/ {{ \
             @c[ustack] = count(); delete(@s[tid]); }}`, or `@c = count()`), `perf trace -s \
             -- CMD` and `strace -c -f -- CMD`. The slow tracers run fewer calls \
             (bpftrace {bpftrace_calls}, perf trace and strace {slow_calls}), each paired \
             with an unprofiled run of the same size.",
            ctx.plan.pread_secs
        ),
    );
    let mut table = Table::new(&[
        "Tracer",
        "Mode",
        "Calls per run",
        "A: unprofiled, ns/call",
        "B: traced, ns/call",
        "B/A: median of pair ratios (min–max)",
        "B/A by the fixture's CPU time (min–max)",
    ]);
    let mut ours = None;
    for config in &configs {
        match run_pairs(ctx, &dir, config, &per_call, "ns/call")? {
            Outcome::Pairs { wall, cpu } => {
                let m = measured(&wall).expect("at least one pair");
                let by_cpu = ratio_of_pairs(&cpu);
                let n = config
                    .fixture
                    .last()
                    .expect("a call count")
                    .to_string_lossy();
                table.row(vec![
                    config.who.clone(),
                    format!("`{}`", config.setting),
                    n.into_owned(),
                    report::spread(m.a, 1),
                    report::spread(m.b, 1),
                    report::times(m.ratio),
                    by_cpu.map_or("-".to_string(), report::times),
                ]);
                if config.is_profiler {
                    ours = Some((m.ratio.median, by_cpu.map(|r| r.median)));
                }
            }
            Outcome::Skipped(why) => skipped.push(why),
        }
    }
    section.tables.push(table);
    let goal = "profiler --profiles io: at most 1.5x the unprofiled time per call";
    section.goals.push(match ours {
        Some((r, cpu)) => Goal::new(
            goal,
            match cpu {
                Some(c) => format!("{r:.2}x ({c:.2}x by CPU time)"),
                None => format!("{r:.2}x"),
            },
            Status::from_bool(r <= 1.5),
        ),
        None => Goal::new(goal, "-", Status::NotMeasured),
    });
    section.notes.push(
        "The issue's reference figures for the peers on this machine were bpftrace 3.3x, \
         perf trace 55x, strace 67x."
            .to_string(),
    );
    section.notes.extend(baseline_note);
    section.notes.extend(skipped);
    Ok(section)
}

/// Row 3: blocking-profile overhead.
pub fn blocking(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "block")?;
    let goal = "profiler --profiles block: overhead under 5%";
    let mut section = Section::new(
        title("block"),
        "`bench_contention ITERATIONS 4`: 4 threads lock one pthread mutex around a tiny \
         critical section ITERATIONS times each (so they wait in futex all the time), timing \
         themselves from a start barrier; unprofiled (A) vs under `profiler --profiles \
         block` over the whole host (B).",
    );

    // A build without the blocking profile rejects the flag value through clap (exit 2).
    dir.fresh_out()?;
    let mut probe_cmd = runner::command(&[
        ctx.profiler.clone().into_os_string(),
        "--profiles".into(),
        "block".into(),
        "--duration".into(),
        "100ms".into(),
        "-o".into(),
        dir.out.clone().into_os_string(),
    ]);
    let probe = runner::run(&mut probe_cmd, &dir.logs, "probe", runner::RUN_TIMEOUT)?;
    if probe.status.code() == Some(2) {
        println!("xtask: bench: blocking profile not available in this build; row skipped");
        section.notes.push(format!(
            "Blocking profile not available in this build: `{}` exited with code 2 ({}).",
            probe.shown,
            runner::tail(&probe.stderr, 3)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        ));
        section.goals.push(Goal::new(
            goal,
            "blocking profile not available in this build",
            Status::NotMeasured,
        ));
        return Ok(section);
    }
    probe.ok()?;

    let fixture = &ctx.fixtures.contention;
    let probe_iters = 100_000;
    let out = runner::unobserved(&argv(fixture, &[probe_iters.to_string(), "4".into()]), &dir)?;
    let probe_secs = need_field(&out, "elapsed_ns", "bench_contention")? / 1e9;
    let iters = scaled(probe_iters, probe_secs, ctx.plan.contention_secs, 1000);
    let config = Config {
        who: "profiler".into(),
        setting: "--profiles block".into(),
        observer: Some(profiler_bg(ctx, &dir, &["--profiles", "block"])),
        fixture: argv(fixture, &[iters.to_string(), "4".into()]),
        is_profiler: true,
    };
    // Wall time only: blocked threads use no CPU, so CPU time would hide the very waits
    // this profile adds to.
    let elapsed = |out: &str| {
        Ok((
            need_field(out, "elapsed_ns", "bench_contention")? / 1e9,
            None,
        ))
    };
    let Outcome::Pairs { wall, .. } = run_pairs(ctx, &dir, &config, &elapsed, "s")? else {
        unreachable!("the profiler's failures are errors, not skips");
    };
    let m = measured(&wall).expect("at least one pair");
    let mut table = Table::new(&[
        "Observer",
        "Iterations per thread",
        "A: unprofiled, s",
        "B: profiled, s",
        "Overhead: median of pair ratios (min … max)",
    ]);
    table.row(vec![
        "profiler `--profiles block`".into(),
        iters.to_string(),
        report::spread(m.a, 3),
        report::spread(m.b, 3),
        report::overhead(m.ratio),
    ]);
    section.tables.push(table);
    let p = (m.ratio.median - 1.0) * 100.0;
    section.goals.push(Goal::new(
        goal,
        report::signed_pct(p),
        Status::from_bool(p < 5.0),
    ));
    Ok(section)
}
