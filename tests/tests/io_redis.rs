//! Small-I/O findings on a real request/response server: Debian's redis-server
//! (tests/src/redis.rs) under a bounded `redis-benchmark` run, profiled by its pid. The
//! profiler attaches before the load and is stopped after it, so the window holds the
//! whole run, and redis's own `INFO stats` taken around the load say how many reads and
//! writes it made and how many commands it ran.
//!
//! Each GET is read from its connection and answered with one write to the client that
//! waits for it: the reads and writes of the client sockets are round trips, which no
//! buffering inside redis can merge, so their findings are the round-trip case, with no
//! saving claimed. Pipelining (`-P`) is what changes the calls: each read then carries
//! several commands, as redis's own count says.

use std::collections::HashMap;

use integration_tests::{Redis, Run, prerequisites, spawn_profiler, temp_dir};

// The I/O tests' helpers: waiting for the profiler to attach, the pprof reader, and the
// summary's findings.
#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
#[allow(dead_code)]
#[path = "io/findings.rs"]
mod findings;
#[allow(dead_code)]
#[path = "io/raw.rs"]
mod raw;

use attach::wait_until_attached;
use findings::{Finding, small_io_findings};
use raw::{RawProfile, RawSample};

/// GETs per run, and the clients sending them.
const REQUESTS: u64 = 20_000;
const CLIENTS: u32 = 4;
/// Calls the profile and redis may count apart: the connections of the `INFO` queries
/// around the load (their reads, writes and closes fall on either side of a count).
const SLACK: i64 = 16;

const READS: [&str; 4] = ["read", "readv", "recvfrom", "recvmsg"];
const WRITES: [&str; 4] = ["write", "writev", "sendto", "sendmsg"];

struct RedisRun {
    run: Run,
    profile: RawProfile,
    /// `INFO stats` after the load minus before it.
    counted: HashMap<String, u64>,
    pid: String,
}

impl RedisRun {
    fn counted(&self, key: &str) -> i64 {
        *self
            .counted
            .get(key)
            .unwrap_or_else(|| panic!("redis's INFO stats has no {key}: {:?}", self.counted))
            as i64
    }

    /// The profile's sum of `value` over redis's calls on sockets of the `syscalls`.
    fn on_sockets(&self, syscalls: &[&str], value: &str) -> i64 {
        self.profile.sum(value, |s: &RawSample| {
            s.label("pid") == Some(self.pid.as_str())
                && s.label("descriptor") == Some("socket")
                && s.label("syscall").is_some_and(|c| syscalls.contains(&c))
        })
    }

    fn findings(&self, syscalls: &[&str]) -> Vec<Finding> {
        small_io_findings(&self.run.stdout)
            .into_iter()
            .filter(|f| syscalls.contains(&f.syscall.as_str()))
            .collect()
    }
}

fn profile_redis(pipeline: u32) -> Option<RedisRun> {
    if !prerequisites() {
        return None;
    }
    let redis = match Redis::start() {
        Ok(redis) => redis,
        Err(why) => {
            eprintln!("skipping: {why}");
            return None;
        }
    };
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let pid = redis.pid().to_string();
    // Any site making 100 calls a second is hot: the pipelined run makes few calls.
    let profiler = spawn_profiler(
        &[
            "--pid",
            &pid,
            "--profiles",
            "io",
            "--duration",
            "120s",
            "--small-io-rate",
            "100",
        ],
        &out,
    );
    wait_until_attached(profiler.pid());
    let before = redis.stats();
    let bench = redis.benchmark(REQUESTS, CLIENTS, pipeline);
    let after = redis.stats();
    // SAFETY: kill(2) on our own child, still running (its window is 120 s).
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT) };
    let run = profiler.wait();
    run.assert_success();
    let counted = after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .collect();
    let r = RedisRun {
        profile: RawProfile::load(&out.join("io.pb.gz")),
        run,
        counted,
        pid,
    };
    assert!(
        r.counted("total_commands_processed") as u64 >= REQUESTS,
        "redis ran fewer commands than the benchmark's {REQUESTS} GETs: {:?}\n{bench}\n{}",
        r.counted,
        redis.log()
    );
    // The profile's calls on client sockets are the calls redis counted itself.
    for (syscalls, key) in [
        (&READS, "total_reads_processed"),
        (&WRITES, "total_writes_processed"),
    ] {
        let profiled = r.on_sockets(syscalls, "calls");
        let counted = r.counted(key);
        assert!(
            (profiled - counted).abs() <= SLACK + counted / 100,
            "redis counted {counted} ({key}) where the profile has {profiled} calls of \
             {syscalls:?} on sockets\n{}",
            r.run.transcript()
        );
    }
    Some(r)
}

/// Asserts that `syscalls`' small-I/O findings are all the round-trip case, with a fix
/// that asks for fewer round trips and no saving, and returns them.
fn assert_round_trips(r: &RedisRun, syscalls: &[&str]) -> Vec<Finding> {
    let found = r.findings(syscalls);
    assert!(
        !found.is_empty(),
        "no small-I/O finding for redis's {syscalls:?}\n{}",
        r.run.stdout
    );
    for f in &found {
        f.check_round_trip("redis")
            .unwrap_or_else(|why| panic!("{why}"));
        let fix = f.fix().unwrap_or_default();
        assert!(
            fix.contains("pipelines") && fix.contains("batches"),
            "the fix for redis's {} site does not ask for fewer round trips: {fix}",
            f.syscall
        );
    }
    found
}

/// Without pipelining, every GET is one read and one write: both are round trips, nearly
/// every call turns the direction around, and no saving is claimed.
#[test]
fn redis_replies_are_round_trips_without_savings() {
    let Some(r) = profile_redis(1) else { return };
    for syscalls in [&READS, &WRITES] {
        assert_round_trips(&r, syscalls);
        let calls = r.on_sockets(syscalls, "calls");
        let turns = r.on_sockets(syscalls, "turns");
        assert!(
            turns * 10 >= calls * 9,
            "of redis's {calls} {syscalls:?} calls on sockets only {turns} turned the \
             direction around, where each answers or follows a GET\n{}",
            r.run.transcript()
        );
    }
}

/// With `-P 16`, each read carries several commands: the commands per round trip the
/// profile gives (redis's commands over the reads that turned) are what redis counted
/// per read, and the sites are still round trips.
#[test]
fn pipelined_redis_carries_its_commands_per_round_trip() {
    let Some(r) = profile_redis(16) else { return };
    assert_round_trips(&r, &WRITES);
    let commands = r.counted("total_commands_processed");
    let reads = r.counted("total_reads_processed").max(1);
    let turns = r.on_sockets(&READS, "turns").max(1);
    let per_read = commands as f64 / reads as f64;
    let per_turn = commands as f64 / turns as f64;
    assert!(
        per_read >= 4.0,
        "redis ran {per_read:.1} commands per read: the run does not test pipelining\n{:?}",
        r.counted
    );
    assert!(
        (per_turn - per_read).abs() <= 0.1 * per_read,
        "{per_turn:.1} commands per round trip by the profile ({commands} commands over \
         {turns} reads that turned), {per_read:.1} per read by redis's own count\n{}",
        r.run.transcript()
    );
}
