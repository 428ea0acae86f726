//! Row 11: what the heap profile costs. A malloc(32)+free loop (the cheapest allocation
//! there is, so the cost per call stands out) and one real allocation-heavy program from
//! Debian (perl building a hash of arrays), each unprofiled and under the profiler's
//! `--profiles heap`, bpftrace uprobes (counting, and tracking live pointers with a
//! uretprobe as the profiler does) and heaptrack (LD_PRELOAD), in one run.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::fixtures::argv;
use super::parse::need_field;
use super::report::{self, Goal, Section, Status, Table};
use super::runner::{self, RUN_TIMEOUT, Workdir};
use super::stats::Spread;
use super::{Ctx, title};
use crate::util::which;

/// Iterations of the unprofiled malloc loop (about 11 ns each).
const FAST_ITERATIONS: u64 = 20_000_000;
/// Iterations of the malloc loop under a tracer (microseconds each under uprobes).
const TRACED_ITERATIONS: u64 = 100_000;
/// Hash entries perl builds (several mallocs each).
const PERL_ENTRIES: u64 = 200_000;

/// The perl program: builds a hash of small arrays, drops it, and times itself.
const PERL_PROGRAM: &str = "use Time::HiRes qw(time); my $n = shift; my $t = time;\n\
    my %h; for my $i (1..$n) { $h{\"key$i\"} = [$i, \"value$i\"]; } undef %h;\n\
    printf \"elapsed_ns=%d\\n\", (time - $t) * 1e9;\n";

/// One way of running a workload.
struct Observer {
    name: &'static str,
    /// The words before the workload's command line; `None` for unprofiled.
    wrap: Option<Vec<OsString>>,
    /// Whether it takes the command as one string (bpftrace's `-c`).
    one_string: bool,
}

fn libc_path() -> Result<&'static str> {
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib64/libc.so.6",
        "/lib64/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .context("no C library found to put bpftrace's uprobes on")
}

fn observers(ctx: &Ctx, dir: &Workdir) -> Result<(Vec<Observer>, Vec<String>)> {
    let libc = libc_path()?;
    let mut notes = Vec::new();
    let profiler = |name, via: &str| Observer {
        name,
        wrap: Some(vec![
            ctx.profiler.clone().into_os_string(),
            "--profiles".into(),
            "heap".into(),
            "--heap-via".into(),
            via.into(),
            "-o".into(),
            dir.out.clone().into_os_string(),
            "--".into(),
        ]),
        one_string: false,
    };
    let mut list = vec![
        profiler(
            "profiler `--profiles heap` (LD_PRELOAD interposer, the default for a command)",
            "preload",
        ),
        profiler(
            "profiler `--profiles heap --heap-via uprobes` (as with --pid)",
            "uprobes",
        ),
    ];
    if ctx.peers.bpftrace.ready() {
        let count = format!("uprobe:{libc}:malloc,uprobe:{libc}:free {{ @[probe] = count(); }}");
        let live = format!(
            "uprobe:{libc}:malloc {{ @size[tid] = arg0; }} \
             uretprobe:{libc}:malloc /@size[tid]/ {{ @live[retval] = @size[tid]; \
             delete(@size[tid]); }} uprobe:{libc}:free {{ delete(@live[arg0]); }}"
        );
        for (name, program) in [
            ("bpftrace uprobes, counting malloc and free", count),
            ("bpftrace uprobes + uretprobe, tracking live pointers", live),
        ] {
            list.push(Observer {
                name,
                wrap: Some(vec![
                    "bpftrace".into(),
                    "-e".into(),
                    program.into(),
                    "-c".into(),
                ]),
                one_string: true,
            });
        }
    } else {
        notes.push(format!(
            "bpftrace skipped: {}",
            ctx.peers.bpftrace.describe()
        ));
    }
    if which("heaptrack").is_some() {
        list.push(Observer {
            name: "heaptrack (LD_PRELOAD, every allocation with its stack)",
            wrap: Some(vec![
                "heaptrack".into(),
                "-o".into(),
                dir.out.join("heaptrack").into_os_string(),
            ]),
            one_string: false,
        });
    } else {
        notes.push("heaptrack skipped: not installed (apt-get install heaptrack)".into());
    }
    Ok((list, notes))
}

/// Runs `workload` under `observer` and returns what it printed.
fn run_under(observer: &Observer, workload: &[OsString], dir: &Workdir) -> Result<String> {
    dir.fresh_out()?;
    let mut full: Vec<OsString> = observer.wrap.clone().unwrap_or_default();
    if observer.one_string {
        let shown: Vec<String> = workload
            .iter()
            .map(|w| shell_quote(&w.to_string_lossy()))
            .collect();
        full.push(shown.join(" ").into());
    } else {
        full.extend(workload.iter().cloned());
    }
    let finished = runner::run(&mut runner::command(&full), &dir.logs, "heap", RUN_TIMEOUT)?;
    if !finished.status.success() {
        bail!(
            "{} failed ({}): {}",
            finished.shown,
            runner::describe(finished.status),
            runner::tail(&finished.stderr, 5)
        );
    }
    Ok(finished.stdout)
}

fn shell_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-=".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The median (min–max) of `key` over `reps` runs of `workload` under `observer`, and the
/// last run's output.
fn measure(
    ctx: &Ctx,
    observer: &Observer,
    workload: &[OsString],
    key: &str,
    dir: &Workdir,
) -> Result<(Spread, String)> {
    let mut values = Vec::new();
    let mut last = String::new();
    for _ in 0..ctx.plan.reps.min(3) {
        last = run_under(observer, workload, dir)?;
        values.push(need_field(&last, key, observer.name)?);
    }
    let spread = Spread::of(&values).context("no figures")?;
    Ok((spread, last))
}

/// The profiler's count of native allocations, from its summary: the uprobes' and the
/// interposer's.
fn counted(stdout: &str) -> Option<u64> {
    let number_before = |words: &str| -> Option<u64> {
        let line = stdout.lines().find(|l| l.contains(words))?;
        line.split(words)
            .next()?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    let uprobes = number_before(" native counted by uprobes")?;
    Some(uprobes + number_before(" allocations and ").unwrap_or(0))
}

/// Row 11.
pub fn heap(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "heap")?;
    let mut section = Section::new(
        title("heap"),
        format!(
            "`bench_malloc N`: N rounds of malloc(32)+free in one function, timing itself \
             around the loop (N = {FAST_ITERATIONS} unprofiled, {TRACED_ITERATIONS} traced); \
             and perl (Debian's) building and dropping a hash of {PERL_ENTRIES} small arrays, \
             timing itself. Each unprofiled and under each tool in turn, launched by it; \
             {} runs each, medians (min–max).",
            ctx.plan.reps.min(3)
        ),
    );
    let (observers, notes) = observers(ctx, &dir)?;
    section.notes.extend(notes);
    let unprofiled = Observer {
        name: "unprofiled",
        wrap: None,
        one_string: false,
    };
    let fixture = &ctx.fixtures.malloc;
    let fast = argv(fixture, &[FAST_ITERATIONS.to_string()]);
    let traced = argv(fixture, &[TRACED_ITERATIONS.to_string()]);
    let (base, _) = measure(ctx, &unprofiled, &fast, "ns_per_iter", &dir)?;
    // A script file and absolute paths: bpftrace's -c takes one string and wants the
    // program's full path.
    let script = dir.logs.join("hash_build.pl");
    std::fs::write(&script, PERL_PROGRAM)
        .with_context(|| format!("cannot write {}", script.display()))?;
    let perl_exe = which("perl").context("perl is not installed")?;
    let perl: Vec<OsString> = vec![
        perl_exe.into_os_string(),
        script.into_os_string(),
        PERL_ENTRIES.to_string().into(),
    ];
    let (perl_base, _) = measure(ctx, &unprofiled, &perl, "elapsed_ns", &dir)?;

    let mut table = Table::new(&[
        "Observer",
        "malloc+free loop, ns per iteration",
        "Slowdown",
        "perl hash build, s",
        "Slowdown",
    ]);
    table.row(vec![
        "unprofiled".into(),
        report::spread(base, 1),
        "1x".into(),
        report::spread(perl_base.map(|ns| ns / 1e9), 2),
        "1x".into(),
    ]);
    let mut per_iteration = Vec::new();
    for observer in &observers {
        println!("xtask: bench: heap: {}", observer.name);
        let (loop_ns, stdout) = measure(ctx, observer, &traced, "ns_per_iter", &dir)?;
        if observer.name.starts_with("profiler") {
            // Exact counts are the point: every call of the loop must be in the profile.
            let n = counted(&stdout).context("the profiler printed no allocation count")?;
            section.notes.push(format!(
                "{}: counted {n} native allocations in the traced loop's run \
                 ({TRACED_ITERATIONS} in the loop, 1000 warming up, the rest the C \
                 library's own).",
                observer.name
            ));
        }
        let (perl_ns, _) = measure(ctx, observer, &perl, "elapsed_ns", &dir)?;
        table.row(vec![
            observer.name.into(),
            report::spread(loop_ns, 0),
            format!("{:.0}x", loop_ns.median / base.median),
            report::spread(perl_ns.map(|ns| ns / 1e9), 2),
            format!("{:.1}x", perl_ns.median / perl_base.median),
        ]);
        per_iteration.push((observer.name, loop_ns.median));
    }
    section.tables.push(table);
    let find = |prefix: &str| {
        per_iteration
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|&(_, ns)| ns)
    };
    let goal = "profiler --heap-via uprobes (the --pid path): below bpftrace's uprobe cost, \
                with exact counts";
    match (
        find("profiler `--profiles heap --heap-via uprobes`"),
        find("bpftrace uprobes, counting"),
    ) {
        (Some(ours), Some(theirs)) => section.goals.push(Goal::new(
            goal,
            format!("{ours:.0} ns vs {theirs:.0} ns per malloc+free"),
            Status::from_bool(ours < theirs),
        )),
        _ => section.goals.push(Goal::new(
            goal,
            "bpftrace not available",
            Status::NotMeasured,
        )),
    }
    if let (Some(ours), Some(heaptrack)) = (find("profiler `--profiles heap` ("), find("heaptrack"))
    {
        section.goals.push(Goal::new(
            "-- COMMAND mode (the interposer): below heaptrack",
            format!("{ours:.0} ns vs {heaptrack:.0} ns per malloc+free"),
            Status::from_bool(ours < heaptrack),
        ));
    }
    section.notes.push(
        "Every uprobe hit traps into the kernel (a few microseconds in a VM), twice when the \
         kernel must single-step the probed instruction out of line: the profiler probes \
         the first instruction of each entry point that the kernel emulates (a push or a \
         direct branch; glibc's free starts with `test; je`, so its probe sits on the `je`), \
         and takes one trap at malloc's entry, one at its return (the uretprobe, to learn the \
         pointer) and one at free, which is what exact counts and exact in-use figures need. \
         bpftrace probes the first instruction (free's `test`, single-stepped) and its \
         counting program knows nothing of sizes or live blocks. The interposer takes no \
         trap per call: it counts in memory shared with the profiler, and the first \
         allocation of each site, then one in 256, calls a marker function whose uprobe \
         takes the stack."
            .into(),
    );
    Ok(section)
}
