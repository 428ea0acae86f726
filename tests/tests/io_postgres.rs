//! Small-I/O findings on Debian's PostgreSQL (tests/src/postgres.rs) under a bounded
//! select-only `pgbench`, profiled by the postmaster's pid as a user would.
//!
//! Each pgbench transaction is one query: the backend reads it (`secure_read`, a `recv`
//! that is tried until `EAGAIN`, then `epoll_wait`) and answers it with one flushed `send`
//! (`secure_write`). The backends' sends on sockets are the transactions pgbench counted
//! (plus a few per connection for its start-up), nearly all turns, and both sites are
//! round trips with no saving: not "empty polls" for the one `EAGAIN` per query, and not
//! "gather with writev" for replies a client waits on.

use integration_tests::{Postgres, prerequisites, run_command, spawn_profiler, temp_dir};

// The I/O tests' helpers.
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
use findings::{round_trip_finding, small_io_findings};
use raw::RawProfile;

const CLIENTS: i64 = 2;
const TRANSACTIONS_PER_CLIENT: i64 = 3_000;
/// Sends of a connection that are not a query's answer: authentication, parameter
/// status, pgbench's own set-up queries.
const SENDS_PER_CONNECTION: i64 = 12;

#[test]
fn postgres_queries_and_answers_are_round_trips_without_savings() {
    if !prerequisites() {
        return;
    }
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    pg.pgbench_init(1);
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let postmaster = pg.pid().to_string();
    let profiler = spawn_profiler(
        &[
            "--pid",
            &postmaster,
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
    let clients = CLIENTS.to_string();
    let transactions = TRANSACTIONS_PER_CLIENT.to_string();
    let bench = run_command(pg.pgbench(&["-S", "-n", "-c", &clients, "-t", &transactions]));
    assert!(
        bench.status.success(),
        "pgbench failed\n{}\nserver log:\n{}",
        bench.transcript(),
        pg.log()
    );
    let processed: i64 = bench
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("pgbench printed no transaction count\n{}", bench.stdout));
    assert_eq!(
        processed,
        CLIENTS * TRANSACTIONS_PER_CLIENT,
        "{}",
        bench.stdout
    );
    // SAFETY: kill(2) on our own child, still running (its window is 120 s).
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT) };
    let run = profiler.wait();
    run.assert_success();

    let profile = RawProfile::load(&out.join("io.pb.gz"));
    let sends = |value: &str| {
        profile.sum(value, |s| {
            s.label("syscall") == Some("sendto")
                && s.label("descriptor") == Some("socket")
                && s.has("secure_write")
        })
    };
    let (calls, turns) = (sends("calls"), sends("turns"));
    assert!(
        calls >= processed && calls <= processed + CLIENTS * SENDS_PER_CONNECTION,
        "pgbench counted {processed} transactions, one answer each, where the profile has \
         {calls} sends under secure_write\n{}",
        run.transcript()
    );
    assert!(
        turns * 10 >= calls * 9,
        "only {turns} of {calls} sends turned the direction around\n{}",
        run.transcript()
    );
    let found = small_io_findings(&run.stdout);
    for syscall in ["recvfrom", "sendto"] {
        round_trip_finding(&found, "postgres", syscall, &run.stdout)
            .unwrap_or_else(|why| panic!("{why}"));
    }
}
