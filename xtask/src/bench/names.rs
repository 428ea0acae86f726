//! Row 10: how many samples get a name. A whole-host profile of a machine kept busy by
//! Debian's own programs, without their -dbgsym packages, as a user's would be:
//! `xz` compressing (liblzma's static functions), `python3` looping, `sha256sum` hashing
//! (coreutils), and `node --perf-basic-prof` (JIT code, named only by its perf map). The
//! share of samples whose leaf frame has a name (not `file+0xoffset`, not `[unknown]`) is
//! compared with the baseline build (`--baseline-profiler`), and the end-of-run latency,
//! which now includes looking for separate debug information of every mapped file.

use anyhow::Result;

use super::parse::{self, Folded};
use super::report::{self, Section, Table};
use super::runner::{self, RUN_TIMEOUT, Running, STOP_TIMEOUT, Workdir};
use super::stats::Spread;
use super::{Ctx, title};

/// The busy programs, by the comm their samples carry, and the shell loop that runs each.
const WORKLOAD: &[(&str, &str)] = &[
    (
        "xz",
        "while :; do xz -9 -T1 -c /usr/lib/x86_64-linux-gnu/libc.so.6 >/dev/null; done",
    ),
    (
        "python3",
        "exec python3 -c 'import time\nt=time.time()\nwhile time.time()-t<600: sum(i*i for i in range(10000))'",
    ),
    (
        "sha256sum",
        "while :; do sha256sum /usr/lib/x86_64-linux-gnu/libc.so.6 >/dev/null; done",
    ),
    (
        "node",
        "exec node --perf-basic-prof -e 'let h=0; const t=Date.now(); function spin(n){for(let i=0;i<n;i++){h=(Math.imul(h^i,16777619)+(h>>>13))|0}} while(Date.now()-t<600000) spin(100000)'",
    ),
];

/// Whether a folded frame is a name rather than a stand-in (`libc.so.6+0x1f2a`,
/// `[unknown]`, `[user stack lost: ...]`).
fn named(frame: &str) -> bool {
    !(frame.starts_with('[') || frame.contains("+0x"))
}

/// Samples of threads whose comm satisfies `comm`, and how many of them have a named leaf.
fn named_leaves(folded: &Folded, comm: impl Fn(&str) -> bool) -> (u64, u64) {
    let mut total = 0;
    let mut hits = 0;
    for (stack, n) in &folded.lines {
        let mut frames = stack.split(';');
        if !frames.next().is_some_and(&comm) {
            continue;
        }
        total += n;
        if frames.next_back().is_some_and(named) {
            hits += n;
        }
    }
    (total, hits)
}

/// One whole-host run of `profiler` while the workload runs.
struct Run {
    folded: Folded,
    latency_ms: f64,
}

fn profile_host(ctx: &Ctx, profiler: &std::path::Path, dir: &Workdir) -> Result<Run> {
    dir.fresh_out()?;
    let mut busy = Vec::new();
    for (name, script) in WORKLOAD {
        let mut cmd = runner::command(&["sh".into(), "-c".into(), (*script).into()]);
        // Node writes its V8 log into its working directory.
        cmd.current_dir(&dir.logs);
        busy.push(Running::start(&mut cmd, &dir.logs, name)?);
    }
    // Let the JIT compile and the loops settle.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let secs = ctx.plan.names_secs;
    let mut cmd = runner::command(&[
        profiler.as_os_str().to_owned(),
        "--profiles".into(),
        "cpu".into(),
        "--duration".into(),
        format!("{secs}s").into(),
        "--format".into(),
        "folded".into(),
        "-o".into(),
        dir.out.clone().into_os_string(),
    ]);
    println!("xtask: bench: running: {}", crate::util::display(&cmd));
    let done = runner::run(&mut cmd, &dir.logs, "profiler", RUN_TIMEOUT);
    for running in busy {
        running.stop(STOP_TIMEOUT)?;
    }
    let done = done?.ok()?;
    let latency_ms = parse::finished_ms(&done.stdout).unwrap_or(f64::NAN);
    Ok(Run {
        folded: Folded::read(&dir.out.join("cpu.folded"))?,
        latency_ms,
    })
}

/// Row 10: the share of samples with a named leaf, before and after, and the latency.
pub fn names(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "names")?;
    let secs = ctx.plan.names_secs;
    let mut section = Section::new(
        title("names"),
        format!(
            "`profiler --profiles cpu --duration {secs}s --format folded` of the whole host \
             while Debian's `xz -9`, `python3`, `sha256sum` and `node --perf-basic-prof` \
             loop (their -dbgsym packages not installed; {} run(s) per build). *Named leaf* is \
             the share of samples whose innermost frame has a name: not `file+0xoffset`, \
             not `[unknown]` or another stand-in in brackets. The latency is the \
             `finished: ... ms after the window closed` line, which includes looking for \
             separate debug information (build-ID directories, debug links) of every \
             mapped file.",
            ctx.plan.latency_reps
        ),
    );
    let mut builds = vec![("this build".to_string(), ctx.profiler.clone())];
    if let Some(baseline) = &ctx.baseline_profiler {
        builds.push(("baseline".to_string(), baseline.clone()));
    } else {
        section
            .notes
            .push("No --baseline-profiler given: this build only.".to_string());
    }
    let mut headers = vec!["Build", "Samples (host)", "Named leaf (host)"];
    headers.extend(WORKLOAD.iter().map(|(name, _)| *name));
    headers.push("End-of-run latency, ms");
    let mut table = Table::new(&headers);
    for (who, profiler) in &builds {
        let mut shares: Vec<Vec<f64>> = vec![Vec::new(); WORKLOAD.len() + 1];
        let (mut samples, mut latencies) = (Vec::new(), Vec::new());
        for rep in 1..=ctx.plan.latency_reps {
            println!(
                "xtask: bench: names, {who}, run {rep}/{}",
                ctx.plan.latency_reps
            );
            let run = profile_host(ctx, profiler, &dir)?;
            let (total, hits) = named_leaves(&run.folded, |_| true);
            samples.push(total as f64);
            shares[0].push(percent(hits, total));
            for (i, (name, _)) in WORKLOAD.iter().enumerate() {
                let (total, hits) = named_leaves(&run.folded, |comm| comm == *name);
                shares[i + 1].push(percent(hits, total));
            }
            latencies.push(run.latency_ms);
        }
        let cell = |values: &[f64], digits| {
            Spread::of(values).map_or("-".to_string(), |s| report::spread(s, digits))
        };
        let mut row = vec![who.clone(), cell(&samples, 0)];
        row.extend(shares.iter().map(|s| format!("{} %", cell(s, 1))));
        row.push(cell(&latencies, 0));
        table.row(row);
    }
    section.tables.push(table);
    Ok(section)
}

fn percent(hits: u64, total: u64) -> f64 {
    if total == 0 {
        f64::NAN
    } else {
        100.0 * hits as f64 / total as f64
    }
}
