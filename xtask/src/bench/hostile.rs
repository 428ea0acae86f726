//! Row 12: a whole-host run while an unprivileged user attacks it, beside the same run on
//! a clean host. The attacks are issue 20's, made and started by `hostile_kit.py` as user
//! nobody: libraries whose MiniDebugInfo, `.debug_info` and `.debug_frame` inflate to
//! 1 GiB, debug links to a FIFO, to `/dev/zero` and to a 100 GiB sparse file, a recursion
//! through a 100-deep inline chain, a 250 MiB perf map, a perf map rewritten every 200 ms,
//! escape sequences in comms and perf-map names, and a process re-executing itself.
//! Figures: the end-of-run latency the profiler prints, the wall time from start to exit,
//! the peak RSS from `wait4` (symbolization workers included, as they are reaped
//! children), and the samples it says it lost.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::parse;
use super::report::{self, Goal, Section, Status, Table};
use super::runner::{self, RUN_TIMEOUT, Running, Workdir};
use super::stats::Spread;
use super::{Ctx, title};

/// The attack kit, run as nobody.
const KIT: &str = include_str!("hostile_kit.py");
/// User nobody's uid and gid.
const NOBODY: u32 = 65534;
/// The profiled window of each run.
const WINDOW_SECS: u64 = 10;

/// What one whole-host run cost.
struct Run {
    latency_ms: f64,
    wall_s: f64,
    rss_mib: f64,
    lost: f64,
}

/// `setpriv` running the kit as nobody with `args`.
fn kit(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "/usr/bin/python3",
    ])
    .arg(dir.join("hostile_kit.py"))
    .arg(dir)
    .args(args)
    .current_dir(dir);
    cmd
}

fn profile_host(ctx: &Ctx, dir: &Workdir) -> Result<Run> {
    dir.fresh_out()?;
    let cmd: Vec<OsString> = vec![
        ctx.profiler.clone().into_os_string(),
        "--duration".into(),
        format!("{WINDOW_SECS}s").into(),
        "-o".into(),
        dir.out.clone().into_os_string(),
    ];
    let mut cmd = runner::command(&cmd);
    println!("xtask: bench: running: {}", crate::util::display(&cmd));
    let started = Instant::now();
    let done = runner::run(&mut cmd, &dir.logs, "profiler", RUN_TIMEOUT)?.ok()?;
    let lost = parse::ring_buffer(&done.stdout)
        .and_then(|r| r.lost)
        .unwrap_or(0);
    Ok(Run {
        latency_ms: parse::finished_ms(&done.stdout).unwrap_or(f64::NAN),
        wall_s: started.elapsed().as_secs_f64(),
        rss_mib: done.max_rss_kib as f64 / 1024.0,
        lost: lost as f64,
    })
}

/// Row 12: end-of-run latency and peak RSS with and without the attacks.
pub fn hostile(ctx: &Ctx) -> Result<Section> {
    let dir = Workdir::new(&ctx.scratch, "hostile")?;
    let attack = dir.logs.join("attacker");
    let _ = fs::remove_dir_all(&attack);
    fs::create_dir_all(&attack)?;
    // The kit's directory belongs to nobody; the way to it must be open to nobody too.
    let mut up = attack.parent();
    while let Some(dir) = up {
        let _ = Command::new("chmod").arg("o+x").arg(dir).status();
        up = dir.parent();
    }
    fs::write(attack.join("hostile_kit.py"), KIT)?;
    chown(&attack, Some(NOBODY), Some(NOBODY)).context("cannot hand the attack dir to nobody")?;
    println!("xtask: bench: hostile: building the attack kit as nobody");
    let built = kit(&attack, &["build"]).status()?;
    if !built.success() {
        bail!("the attack kit did not build ({built}); see its output above");
    }
    let mut section = Section::new(
        title("hostile"),
        format!(
            "`profiler --duration {WINDOW_SECS}s` (default profiles and formats) of the whole \
             host, {} run(s) each: on a clean host, and while user nobody runs \
             xtask/src/bench/hostile_kit.py's attacks (a program linking libraries whose \
             MiniDebugInfo, compressed `.debug_info` and compressed `.debug_frame` state or \
             inflate to 1 GiB and whose debug links name a FIFO, `/dev/zero` and a 100 GiB \
             sparse file; a recursion 600 deep through a 100-deep always_inline chain; a \
             JIT with a 250 MiB perf map and one rewriting its map every 200 ms, both with \
             escape sequences in comm and names; a process re-executing itself). Latency \
             is the profiler's `finished: ... ms after the window closed`; wall time from \
             start to exit; peak RSS from wait4 (reaped symbolization workers included); \
             lost is what the summary says the ring buffer dropped.",
            ctx.plan.latency_reps
        ),
    );
    let mut table = Table::new(&[
        "Host",
        "End-of-run latency, ms",
        "Wall time, s",
        "Peak RSS, MiB",
        "Samples lost",
    ]);
    let mut attacked_worst = (0.0f64, 0.0f64);
    for attacked in [false, true] {
        let mut runs = Vec::new();
        for rep in 1..=ctx.plan.latency_reps {
            println!(
                "xtask: bench: hostile, {}, run {rep}/{}",
                if attacked { "attacked" } else { "clean" },
                ctx.plan.latency_reps
            );
            let attackers = if attacked {
                let secs = (WINDOW_SECS + 120).to_string();
                let mut running =
                    Running::start(&mut kit(&attack, &["run", &secs]), &dir.logs, "kit")?;
                wait_ready(&mut running)?;
                Some(running)
            } else {
                None
            };
            let run = profile_host(ctx, &dir);
            if let Some(attackers) = attackers {
                attackers.signal(libc::SIGKILL);
                // The kit's programs are in its process group.
                if let Some(pid) = attackers.pid() {
                    // SAFETY: signalling a process group this bench started.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
                let _ = attackers.wait(Duration::from_secs(10));
            }
            runs.push(run?);
        }
        let cell = |f: fn(&Run) -> f64, digits| {
            let values: Vec<f64> = runs.iter().map(f).collect();
            Spread::of(&values).map_or("-".to_string(), |s| report::spread(s, digits))
        };
        if attacked {
            attacked_worst = runs.iter().fold((0.0, 0.0), |(l, r), run| {
                (l.max(run.wall_s - WINDOW_SECS as f64), r.max(run.rss_mib))
            });
        }
        table.row(vec![
            if attacked { "attacked" } else { "clean" }.to_string(),
            cell(|r| r.latency_ms, 0),
            cell(|r| r.wall_s, 1),
            cell(|r| r.rss_mib, 0),
            cell(|r| r.lost, 0),
        ]);
    }
    section.tables.push(table);
    let (after, rss) = attacked_worst;
    section.goals.push(Goal::new(
        "attacked whole-host run: ends within 40 s of its window (the symbolization run budget \
         and the rest)",
        format!("{after:.1} s after the window (worst run)"),
        Status::from_bool(after <= 40.0),
    ));
    section.goals.push(Goal::new(
        "attacked whole-host run: peak RSS within the documented budgets (1 GiB per \
         symbolization worker)",
        format!("{rss:.0} MiB (worst run)"),
        Status::from_bool(rss <= 1024.0),
    ));
    Ok(section)
}

/// Waits for the kit to print `ready` (its 250 MiB perf map written).
fn wait_ready(kit: &mut Running) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !kit.stdout_so_far().contains("ready") {
        runner::check_interrupted()?;
        if !kit.poll()? {
            bail!("the attack kit ended before it was ready");
        }
        if Instant::now() > deadline {
            bail!("the attack kit was not ready within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
