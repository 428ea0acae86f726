//! Row 1: CPU sampling overhead, against perf record and bpftrace at the same rates and an
//! A/A control.

use anyhow::Result;

use super::observers::{bpftrace_bg, profiler_bg};
use super::pairs::{Config, Outcome, measured, run_pairs, scaled};
use crate::bench::fixtures::argv;
use crate::bench::parse::need_field;
use crate::bench::report::{self, Goal, Section, Status, Table};
use crate::bench::runner::{self, Observer, Ready, Workdir};
use crate::bench::stats::ratio_of_pairs;
use crate::bench::{Ctx, title};

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
