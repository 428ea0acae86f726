//! Rows 6 and 7: how the profiler copes with many distinct stacks and many threads.
//!
//! Both profile `bench_stacks`, whose threads spend their time in a chosen number of
//! distinct call stacks (a random walk down a binary tree of two functions), in command
//! mode, with `--call-graph dwarf` (the default: every sample copies the user stack through
//! a ring buffer and is unwound as it arrives). Row 6 times the end of the run (`finished:
//! ... ms after the window closed`) with about 10k and 100k distinct stacks; row 7 runs 1,
//! 2, 4 and 8 threads over the same stacks to see how samples, ring-buffer traffic, map
//! memory and RSS grow, and turns the growth into a formula for a large host.

use anyhow::{Context, Result};

use super::fixtures::argv;
use super::parse::{self, Folded};
use super::report::{self, Goal, Section, Status, Table};
use super::runner::{self, Finished, RUN_TIMEOUT, Workdir};
use super::stats::{Spread, linear_fit};
use super::{Ctx, title};

/// Bytes of one sample through the ring buffer with the default `--call-graph dwarf`: the
/// fixed part (header and kernel frames, profiler-common's SAMPLE_FIXED_BYTES) and 16 KiB
/// of stack.
const SAMPLE_BYTES: f64 = 1184.0 + 16384.0;
/// bench_stacks names its threads bstk-N.
fn ours(comm: &str) -> bool {
    comm.starts_with("bstk-")
}

/// One profiled run of `bench_stacks`.
struct Run {
    done: Finished,
    folded: Folded,
}

fn profile_stacks(
    ctx: &Ctx,
    dir: &Workdir,
    hz: u64,
    stacks: u64,
    secs: f64,
    threads: usize,
) -> Result<Run> {
    dir.fresh_out()?;
    let mut profiler: Vec<std::ffi::OsString> = vec![
        ctx.profiler.clone().into_os_string(),
        "--profiles".into(),
        "cpu".into(),
        "-F".into(),
        hz.to_string().into(),
    ];
    profiler.push("--call-graph".into());
    profiler.push("dwarf".into());
    profiler.extend(["-o".into(), dir.out.clone().into_os_string(), "--".into()]);
    let mut cmd = runner::command(&profiler);
    cmd.args(argv(
        &ctx.fixtures.stacks,
        &[stacks.to_string(), format!("{secs}"), threads.to_string()],
    ));
    println!("xtask: bench: running: {}", crate::util::display(&cmd));
    let done = runner::run(&mut cmd, &dir.logs, "profiler", RUN_TIMEOUT)?.ok()?;
    let folded = Folded::read(&dir.out.join("cpu.folded"))?;
    Ok(Run { done, folded })
}

fn need<T>(value: Option<T>, what: &str, out: &str) -> Result<T> {
    value.with_context(|| format!("no `{what}` line in the profiler's output:\n{out}"))
}

/// Row 6: end-of-run latency with about 10k and 100k distinct stacks.
pub fn latency(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "latency")?;
    let hz = 4999;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sizes = [
        (10_000u64, ctx.plan.stacks_10k_secs),
        (100_000, ctx.plan.stacks_100k_secs),
    ];
    let mut section = Section::new(
        title("latency"),
        format!(
            "`profiler --profiles cpu -F {hz} --call-graph dwarf -o DIR -- bench_stacks \
             STACKS SECONDS {threads}` with 10,000 and 100,000 distinct stacks in the fixture \
             ({} run(s) each). The latency is the profiler's `finished: all files written N \
             ms after the window closed`; *distinct stacks* counts the different call stacks \
             in cpu.folded (the sampler only sees stacks it happened to sample); *ring \
             buffer* is the summary's `lost: N samples (ring buffer full)` and the \
             `unwinding:` line's throughput; *unwound* is that line's samples per second of \
             the profiler's unwinding time on one core.",
            ctx.plan.latency_reps
        ),
    );
    let mut table = Table::new(&[
        "Fixture stacks",
        "Run, s",
        "Samples recorded",
        "Distinct stacks in the profile",
        "Ring buffer: lost, MB/s",
        "Unwound, samples/s on one core",
        "End-of-run latency, ms",
    ]);
    for (stacks, secs) in sizes {
        let mut latencies = Vec::new();
        let (mut distinct, mut samples, mut rates) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ring_lost, mut ring_mb) = (Vec::new(), Vec::new());
        for rep in 1..=ctx.plan.latency_reps {
            println!(
                "xtask: bench: {stacks} stacks, run {rep}/{}",
                ctx.plan.latency_reps
            );
            let run = profile_stacks(ctx, &dir, hz, stacks, secs, threads)?;
            let out = &run.done.stdout;
            let ms = need(parse::finished_ms(out), "finished:", out)?;
            let ring = need(parse::ring_buffer(out), "unwinding:", out)?;
            ring_lost.extend(ring.lost.map(|n| n as f64));
            ring_mb.extend(ring.mb_per_s);
            rates.push(need(parse::unwinding_rate(out), "unwinding:", out)?);
            let n = run.folded.distinct_stacks(ours);
            println!(
                "xtask: bench: {stacks} stacks: {n} distinct in the profile, finished {ms:.0} \
                 ms after the window"
            );
            latencies.push(ms);
            distinct.push(n as f64);
            samples.push(need(parse::samples_recorded(out), "samples:", out)? as f64);
        }
        let of = |v: &[f64]| Spread::of(v).expect("at least one run");
        let latency = of(&latencies);
        table.row(vec![
            stacks.to_string(),
            format!("{secs}"),
            report::spread(of(&samples), 0),
            report::spread(of(&distinct), 0),
            match (Spread::of(&ring_lost), Spread::of(&ring_mb)) {
                (None, None) => "-".to_string(),
                (lost, mb) => format!(
                    "{} lost, {} MB/s",
                    lost.map_or("?".to_string(), |s| report::spread(s, 0)),
                    mb.map_or("?".to_string(), |s| report::spread(s, 1))
                ),
            },
            report::spread(of(&rates), 0),
            report::spread(latency, 0),
        ]);
        if stacks == 10_000 {
            section.goals.push(Goal::new(
                "under 1 s after the window for ~10k stacks",
                format!(
                    "{:.0} ms ({:.0} distinct stacks in the profile)",
                    latency.median,
                    of(&distinct).median
                ),
                Status::from_bool(latency.median < 1000.0),
            ));
        }
    }
    section.tables.push(table);
    section.notes.push(
        "Every sample carries its own copy of the user stack through a ring buffer and is \
         unwound in userspace as it arrives: there is no stack map to collide in, so no \
         stack is lost but to a full ring buffer, which the ring-buffer column counts."
            .to_string(),
    );
    Ok(section)
}

/// Row 7: growth with the number of threads.
pub fn scale(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "scale")?;
    let hz = 4999u64;
    let stacks = 1024u64;
    let secs = ctx.plan.scale_secs;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut section = Section::new(
        title("scale"),
        format!(
            "`profiler --profiles cpu -F {hz} --call-graph dwarf -o DIR -- bench_stacks \
             {stacks} {secs} THREADS` for 1, 2, 4 and 8 threads on this {cpus}-CPU machine. \
             Every thread walks the same {stacks} stacks under its own name, so the profile \
             holds about THREADS x {stacks} keys (thread, stack); *keys* counts the distinct \
             (thread, stack) lines of cpu.folded. The ticks the \
             profiler received on busy CPUs (the `received:` line, whole host) are compared \
             with F x busy CPUs (the host's busy CPU-seconds over the window); the \
             fixture's own samples per second fall short of that when other work shares \
             the CPUs. *Ring buffer* and *unwound* come from the `unwinding:` line. Map \
             memory is the `profiler cost:` line (the kernel's memlock figure, mostly the \
             sample ring buffer, which is sized from the rate); RSS is the profiler's peak."
        ),
    );
    let mut table = Table::new(&[
        "Threads",
        "Ticks/s received on busy CPUs (host)",
        "Busy CPUs (host)",
        "Received ÷ (F x busy CPUs)",
        "Fixture samples/s",
        "Keys (thread, stack)",
        "Distinct stacks",
        "Ring buffer, MB/s",
        "Unwound, samples/s on one core",
        "BPF map memory, MiB",
        "Profiler peak RSS, MiB",
    ]);
    let mut map_points = Vec::new();
    let mut rss_points = Vec::new();
    let mut per_run_ns = Vec::new();
    let mut unwind_rates = Vec::new();
    for threads in [1usize, 2, 4, 8] {
        let run = profile_stacks(ctx, &dir, hz, stacks, secs, threads)?;
        let out = &run.done.stdout;
        let window = need(parse::window_seconds(out), "window:", out)?;
        let received = need(parse::received(out), "received:", out)?;
        let samples = need(parse::samples_recorded(out), "samples:", out)? as f64;
        let cost = need(parse::cost(out), "profiler cost:", out)?;
        if let (Some(ms), Some(runs)) = (cost.run_ms, cost.runs)
            && runs > 0
        {
            per_run_ns.push(ms * 1e6 / runs as f64);
        }
        let keys = run.folded.keys(ours) as f64;
        let ring_mb = parse::ring_buffer(out).and_then(|r| r.mb_per_s);
        let unwound = need(parse::unwinding_rate(out), "unwinding:", out)?;
        unwind_rates.push(unwound);
        let busy = received.busy_cpu_seconds / window;
        let rate = samples / window;
        let ticks = received.ticks / window;
        let rss = run.done.max_rss_kib as f64 / 1024.0;
        println!(
            "xtask: bench: {threads} threads: {rate:.0} samples/s on {busy:.2} busy CPUs, \
             {keys} keys, maps {:.1} MiB, RSS {rss:.1} MiB",
            cost.map_mib
        );
        table.row(vec![
            threads.to_string(),
            format!("{ticks:.0}"),
            format!("{busy:.2}"),
            format!("{:.2}", ticks / (hz as f64 * busy).max(1.0)),
            format!("{rate:.0}"),
            format!("{keys:.0}"),
            run.folded.distinct_stacks(ours).to_string(),
            ring_mb.map_or("-".to_string(), |mb| format!("{mb:.1}")),
            format!("{unwound:.0}"),
            format!("{:.1}", cost.map_mib),
            format!("{rss:.1}"),
        ]);
        map_points.push((keys, cost.map_mib * 1048576.0));
        rss_points.push((keys, rss * 1048576.0));
    }
    section.tables.push(table);

    let fit = |points: &[(f64, f64)]| linear_fit(points).unwrap_or((0.0, points[0].1));
    let (map_per_key, map_base) = fit(&map_points);
    let (rss_per_key, rss_base) = fit(&rss_points);
    let ns_per_run = Spread::of(&per_run_ns).map(|s| s.median);
    let mib = |bytes: f64| bytes / 1048576.0;
    section.notes.push(format!(
        "Per-key growth (least squares over the four runs): BPF map memory {:.1} MiB + \
         {map_per_key:.0} bytes per key; profiler RSS {:.1} MiB + {rss_per_key:.0} bytes \
         per key. The map figure is printed to 0.1 MiB, so the per-key slope is coarse.",
        mib(map_base),
        mib(rss_base)
    ));
    let kernel = match ns_per_run {
        Some(ns) => {
            let at = |hz: f64| 128.0 * hz * ns / 1e9 * 100.0;
            format!(
                "kernel time ≈ samples/s x {ns:.0} ns per program run (measured here at \
                 {hz} Hz) = {:.1}% of one CPU at 99 Hz, {:.0}% of one CPU at 999 Hz, \
                 spread over the 128 CPUs",
                at(99.0),
                at(999.0)
            )
        }
        None => "kernel time per sample unknown (kernel.bpf_stats_enabled unavailable)".to_string(),
    };
    let unwind_rate = Spread::of(&unwind_rates).map_or(0.0, |s| s.median);
    let unwind_share = |hz: f64| 128.0 * hz / unwind_rate.max(1.0) * 100.0;
    let ring_mb = |hz: f64| 128.0 * hz * SAMPLE_BYTES / 1e6;
    section.notes.push(format!(
        "Formula for a 128-CPU host at 99 Hz with every CPU busy: samples/s = F x busy CPUs = \
         12,672/s (127,872/s at 999 Hz); {kernel}; ring-buffer traffic at most samples/s x \
         {SAMPLE_BYTES:.0} B (the fixed part plus the default 16 KiB stack copy; a shallower \
         stack sends less) = {:.0} MB/s at 99 Hz ({:.0} MB/s at 999 Hz), through a buffer \
         sized to a quarter of a second of it (a power of two, at most 256 MiB); unwinding in \
         userspace at the {unwind_rate:.0} samples/s measured here takes {:.0}% of one CPU \
         at 99 Hz ({:.0}% at 999 Hz). Memory: the ring buffer, plus profiler RSS ≈ {:.1} \
         MiB + {rss_per_key:.0} B x (thread, stack) keys; BPF map memory here ≈ {:.1} MiB + \
         {map_per_key:.0} B x keys.",
        ring_mb(99.0),
        ring_mb(999.0),
        unwind_share(99.0),
        unwind_share(999.0),
        mib(rss_base),
        mib(map_base),
    ));
    Ok(section)
}
