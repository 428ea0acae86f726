//! The off-CPU profile on real software: Debian's PostgreSQL under `pgbench` (read-write
//! TPC-B), checked against what the server measures about itself.
//!
//! The test starts its own server (tests/src/postgres.rs), profiles it as a user would,
//! by the postmaster's pid (`--pid` covers the server processes it forked before the run
//! and the backends it forks during it) with `--profiles offcpu,cpu` and, inside
//! that window, runs a bounded `pgbench -c 4 -j 2 -T 6` while a session of its own
//! samples `pg_stat_activity` every 10 ms. Two figures of the server are compared with
//! the profile:
//!
//! - WAL syncs: `pg_stat_wal.wal_sync_time` is the wall time spent in `issue_xlog_fsync`
//!   (the `fdatasync` of the WAL, by backends committing and by the WAL writer), timed by
//!   the server itself. The profile's time in `fdatasync` under `XLogFlush` (backends,
//!   checkpointer) or `XLogBackgroundFlush` (WAL writer) (off-CPU delay of every reason
//!   plus CPU samples / frequency) must match it within 15%, and `disk` must be its main
//!   reason besides waiting for a CPU. Debian's binary is stripped: its stacks name only
//!   exported functions, and the call reaches `fdatasync` through a local copy of
//!   `issue_xlog_fsync` that has no name there (`postgres+0x...`), so the test matches
//!   the exported callers and the libc call. The `fsync` of a new WAL segment
//!   (`XLogFileInit`) is left out, as the server leaves it out of `wal_sync_time`.
//! - Waiting for the client: the share of samples in which a pgbench backend waited on
//!   `ClientRead` must match the profile's time under `secure_read` -> `WaitEventSetWait`
//!   of those backends over their lifetimes within 10 points, with `poll` as its main
//!   reason besides waiting for a CPU (PostgreSQL reads the socket non-blocking and waits
//!   in `epoll_wait`).
//!
//! Window alignment: `pg_stat_wal` is read before the pgbench run and after it, both
//! inside the profiling window, and the whole run lies in that window (checked from the
//! profile's start time and duration). Point readings in the middle of a run would be
//! off by up to a second of syncs: backends publish their WAL counters at most once a
//! second (PGSTAT_MIN_INTERVAL), and all pgbench backends at about the same moments; a
//! backend publishes everything when it exits, and the WAL writer every loop (at most
//! `wal_writer_delay`, 200 ms), so the readings around a finished run are exact.
//!
//! Why not `disk` delay alone against `wal_sync_time`: the server's figure is wall time
//! in the call, which also holds the call's CPU time and its waits for a CPU (preempted
//! inside `fdatasync`, or runnable after the disk woke it). Measured without the profiler
//! on a 2-CPU VM (bpftrace on `sched_switch`/`sched_waking` during an 8 s pgbench run): of
//! 4.40 s in `fdatasync`, 3.67 s were off CPU and only 1.35 s of those waiting for the
//! device (switch-out to wake-up); the rest depends on how busy the CPUs were, which a
//! test must not assert. The server's figures themselves agree with the kernel's: over a
//! 6 s run `wal_sync_time` grew 3864.9 ms in 6628 syncs, and bpftrace summed 3843.0 ms in
//! 6628 `fdatasync` calls of the postgres processes. The sampled `ClientRead` share
//! needed its sampler at real-time priority to agree with the backends' own
//! `epoll_wait` time on the client's wait set (see `Postgres::sample_activity`).
//! Figures of passing runs on that VM (loaded by other builds): WAL sync time in the
//! profile within 0.2% to 1.9% of `wal_sync_time` (2.9 to 5.2 s), the client-wait share
//! within 0.2 to 1.9 points of the sampled one (8% to 15%).

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::{Postgres, is_tmpfs, prerequisites, spawn_profiler, temp_dir};

// The pprof reader of the I/O tests: samples with values, frames and labels.
#[allow(dead_code)]
#[path = "io/raw.rs"]
mod raw;

use raw::{RawProfile, RawSample};

/// CPU sampling frequency of the run: the CPU part of a WAL sync is ~15% of it, so a
/// few hundred samples keep its error small.
const FREQUENCY: u32 = 499;
/// Time the profiler gets to open its window before the load starts (it takes ~0.1 s
/// here; the test checks the window's start afterwards from the profile).
const SETTLE: Duration = Duration::from_secs(2);
/// The pgbench run, and the profiling window that must contain it with the readings
/// around it.
const PGBENCH_SECONDS: u32 = 6;
const WINDOW: &str = "11s";

#[test]
fn postgres_wal_syncs_and_client_waits_match_the_servers_own_figures() {
    if !prerequisites() {
        return;
    }
    let tmp_dir = std::env::temp_dir();
    if is_tmpfs(&tmp_dir) {
        eprintln!(
            "skipping: {} is on tmpfs, where fdatasync waits for no device; set TMPDIR to a \
             disk-backed directory",
            tmp_dir.display()
        );
        return;
    }
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    pg.pgbench_init(4);
    // Start from clean shared buffers so the run's own writes are what the server times.
    pg.psql("CHECKPOINT");

    let tmp = temp_dir();
    let out = tmp.path().join("out");
    // The postmaster: its processes already running (the WAL writer syncs too) and the
    // backends that connect later are all below it.
    let postmaster = pg.pid().to_string();
    let freq = FREQUENCY.to_string();
    let profiler = spawn_profiler(
        &[
            "--pid",
            &postmaster,
            "--profiles",
            "offcpu,cpu",
            "-F",
            &freq,
            "--duration",
            WINDOW,
        ],
        &out,
    );
    std::thread::sleep(SETTLE);

    let wal_before = pg.wal();
    let sampler = pg.sample_activity("pgbench", f64::from(PGBENCH_SECONDS) + 1.5);
    let seconds = PGBENCH_SECONDS.to_string();
    let started = Instant::now();
    let bench =
        integration_tests::run_command(pg.pgbench(&["-c", "4", "-j", "2", "-T", &seconds, "-n"]));
    assert!(
        bench.status.success(),
        "pgbench failed\n{}\nserver log:\n{}",
        bench.transcript(),
        pg.log()
    );
    let activity = sampler.finish(Duration::from_secs(60));
    // Backends publish their WAL counters when they exit, the WAL writer every loop.
    std::thread::sleep(Duration::from_millis(500));
    let wal_after = pg.wal();
    eprintln!(
        "pgbench ran {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        bench
            .stdout
            .lines()
            .filter(|l| l.starts_with("tps") || l.starts_with("number of transactions"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let run = profiler.wait();
    run.assert_success();

    let (window_start, window_secs) = window(&out.join("offcpu.pb.gz"));
    let window_end = window_start + window_secs;
    let lifetimes = activity.lifetimes();
    // pgbench's 4 clients, and a short first connection of its own that reads the scale.
    assert!(
        lifetimes.len() >= 4,
        "the sampler saw {} pgbench backends, not 4 or more: {lifetimes:?}",
        lifetimes.len()
    );
    let first = lifetimes.iter().map(|l| l.1).fold(wal_before.at, f64::min);
    assert!(
        window_start <= first && wal_after.at <= window_end,
        "the profiling window ({window_start:.3} + {window_secs:.3} s) does not contain the \
         run ({first:.3} to {:.3}): the profiler took longer than {SETTLE:?} to open it, \
         or closed it early",
        wal_after.at
    );

    let offcpu = RawProfile::load(&out.join("offcpu.pb.gz"));
    let cpu = RawProfile::load(&out.join("cpu.pb.gz"));

    // (a) WAL syncs.
    let sync_ms = wal_after.sync_ms - wal_before.sync_ms;
    let syncs = wal_after.syncs - wal_before.syncs;
    let in_sync = |s: &RawSample| {
        (s.has("issue_xlog_fsync") || s.has("XLogFlush") || s.has("XLogBackgroundFlush"))
            && !s.has("XLogFileInit")
            && s.frames.iter().any(|f| f.ends_with("fdatasync"))
    };
    let sync = Time::under(&offcpu, &cpu, in_sync);
    eprintln!(
        "WAL syncs: server {syncs} syncs, wal_sync_time {sync_ms:.1} ms (wal_write_time \
         {:.1} ms); profile in the WAL flush's fdatasync: {}",
        wal_after.write_ms - wal_before.write_ms,
        sync.describe()
    );
    assert!(
        syncs > 100 && sync_ms > 100.0,
        "the run synced the WAL {syncs} times for {sync_ms:.1} ms: too little to compare"
    );
    let profile_ms = sync.total_ms();
    assert!(
        (profile_ms - sync_ms).abs() <= 0.15 * sync_ms,
        "time in the WAL flush's fdatasync in the profile ({profile_ms:.1} ms: {}) is not \
         within 15% of the server's wal_sync_time ({sync_ms:.1} ms over {syncs} syncs)\n\
         off-CPU samples under XLogFlush:\n{}",
        sync.describe(),
        offcpu.describe("XLogFlush")
    );
    assert_eq!(
        sync.main_wait_reason(),
        Some("disk"),
        "the main off-CPU reason of the WAL flush's fdatasync (besides runqueue) is not \
         disk: {}",
        sync.describe()
    );

    // (b) Backends waiting for the client.
    let backends: HashSet<u32> = lifetimes.iter().map(|l| l.0).collect();
    let lived_ms: f64 = lifetimes
        .iter()
        .map(|&(_, start, last)| (last.min(window_end) - start.max(window_start)) * 1e3)
        .sum();
    let client_read = |s: &RawSample| {
        s.has("secure_read")
            && s.has("WaitEventSetWait")
            && pid_of(s).is_some_and(|p| backends.contains(&p))
    };
    let waits = Time::under(&offcpu, &cpu, client_read);
    let sampled = activity.share("ClientRead");
    let profiled = waits.total_ms() / lived_ms;
    // Off-CPU time of the backends whose user stack the profile did not take: it cannot
    // be told to be under secure_read, so it shows why the profile's share would be low.
    let no_user_stack = Time::under(&offcpu, &cpu, |s: &RawSample| {
        pid_of(s).is_some_and(|p| backends.contains(&p))
            && s.frames
                .iter()
                .any(|f| f.starts_with("[user stack not taken"))
    });
    eprintln!(
        "backends {:?}: {} samples of pg_stat_activity, ClientRead {:.1}%; profile: {:.1}% \
         of {lived_ms:.0} ms of backend lifetime under secure_read/WaitEventSetWait ({}); \
         backends' waits without a user stack: {}; all sampled wait events: {}",
        activity.pids(),
        activity.samples.len(),
        sampled * 100.0,
        profiled * 100.0,
        waits.describe(),
        no_user_stack.describe(),
        activity
            .shares()
            .iter()
            .map(|(e, s)| format!("{e} {:.1}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        activity.samples.len() >= 400,
        "only {} pg_stat_activity samples of the backends: too few to compare",
        activity.samples.len()
    );
    assert!(
        (profiled - sampled).abs() <= 0.10,
        "the backends' time waiting for the client in the profile ({:.1}%) is not within 10 \
         points of the share of ClientRead in pg_stat_activity ({:.1}%)\n{}",
        profiled * 100.0,
        sampled * 100.0,
        offcpu.describe("secure_read")
    );
    assert_eq!(
        waits.main_wait_reason(),
        Some("poll"),
        "the main off-CPU reason of the backends under secure_read (besides runqueue) is \
         not poll: {}",
        waits.describe()
    );
}

/// Time the profile puts under some stacks: off-CPU delay by reason and CPU time.
struct Time {
    /// Off-CPU delay in nanoseconds by `reason` label.
    off_cpu_ns: BTreeMap<String, i64>,
    /// CPU time in nanoseconds (the CPU profile's `cpu` value).
    cpu_ns: i64,
}

impl Time {
    fn under(offcpu: &RawProfile, cpu: &RawProfile, pred: impl Fn(&RawSample) -> bool) -> Time {
        let mut off_cpu_ns = BTreeMap::new();
        for s in offcpu.samples.iter().filter(|s| pred(s)) {
            let reason = s.label("reason").unwrap_or("(none)").to_owned();
            *off_cpu_ns.entry(reason).or_default() += s.value("delay");
        }
        Time {
            off_cpu_ns,
            cpu_ns: cpu.sum("cpu", pred),
        }
    }

    fn total_ms(&self) -> f64 {
        (self.off_cpu_ns.values().sum::<i64>() + self.cpu_ns) as f64 / 1e6
    }

    /// The reason with the most delay, leaving out waiting for a CPU.
    fn main_wait_reason(&self) -> Option<&str> {
        self.off_cpu_ns
            .iter()
            .filter(|(r, _)| r.as_str() != "runqueue")
            .max_by_key(|(_, ns)| **ns)
            .map(|(r, _)| r.as_str())
    }

    fn describe(&self) -> String {
        let reasons: Vec<String> = self
            .off_cpu_ns
            .iter()
            .map(|(r, ns)| format!("{r} {:.1} ms", *ns as f64 / 1e6))
            .collect();
        format!(
            "{:.1} ms = CPU {:.1} ms + off CPU [{}]",
            self.total_ms(),
            self.cpu_ns as f64 / 1e6,
            reasons.join(", ")
        )
    }
}

/// The process id label of a sample.
fn pid_of(s: &RawSample) -> Option<u32> {
    s.label("pid").and_then(|p| p.parse().ok())
}

/// The profile's window: its start (Unix seconds) and duration (seconds), from the
/// pprof `Profile` fields `time_nanos` (9) and `duration_nanos` (10).
fn window(pb_gz: &Path) -> (f64, f64) {
    let gz = std::fs::read(pb_gz).unwrap_or_else(|e| panic!("read {}: {e}", pb_gz.display()));
    let mut pb = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut pb)
        .unwrap_or_else(|e| panic!("{} is not gzip: {e}", pb_gz.display()));
    let (mut time, mut duration) = (None, None);
    let mut at = 0;
    while at < pb.len() {
        let key = varint(&pb, &mut at);
        match key & 7 {
            0 => {
                let v = varint(&pb, &mut at);
                match key >> 3 {
                    9 => time = Some(v),
                    10 => duration = Some(v),
                    _ => {}
                }
            }
            1 => at += 8,
            2 => at += varint(&pb, &mut at) as usize,
            5 => at += 4,
            wire => panic!("{}: unexpected wire type {wire}", pb_gz.display()),
        }
    }
    let time = time.unwrap_or_else(|| panic!("{} has no time_nanos", pb_gz.display()));
    let duration = duration.unwrap_or_else(|| panic!("{} has no duration_nanos", pb_gz.display()));
    // Sanity: the window started in the last hour, by this machine's clock.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = time as f64 / 1e9;
    assert!(
        (now - 3600.0..=now).contains(&start),
        "{}: time_nanos {time} is not a recent start",
        pb_gz.display()
    );
    (start, duration as f64 / 1e9)
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = *b.get(*at).expect("a complete varint");
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
        assert!(shift < 64, "varint longer than 10 bytes");
    }
}
