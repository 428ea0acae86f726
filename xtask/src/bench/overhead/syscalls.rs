//! Row 2: syscall-tracing overhead of the I/O profile, against bpftrace, perf trace and strace.

use anyhow::Result;

use super::observers::{bpftrace_bg, profiler_bg, profiler_bin_bg};
use super::pairs::{Config, Outcome, measured, run_pairs, scaled};
use crate::bench::fixtures::argv;
use crate::bench::parse::need_field;
use crate::bench::report::{self, Goal, Section, Status, Table};
use crate::bench::runner::{self, Observer, Workdir};
use crate::bench::stats::ratio_of_pairs;
use crate::bench::{Ctx, title};

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
