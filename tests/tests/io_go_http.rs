//! Small-I/O findings on a Go net/http service (`fixtures/go_http.go`, built by every Go
//! toolchain the tests cover) under a bounded keep-alive `ab` run, profiled by its pid.
//! The server counts the requests it answered itself.
//!
//! net/http reads each request through a bufio.Reader of 4096 bytes and writes each
//! response with one flush of its bufio.Writer: both sides are buffered already, and each
//! write answers a request its client waits on. The findings must be round trips naming
//! net/http's code (not Go's syscall plumbing), with no bufio advice and no saving; the
//! server's writes on sockets are the responses it counted, each labelled in the pprof file
//! by the net/http function that made it. The CPU profile's Go small-I/O finding, when the
//! same calls make one, gives no bufio advice either.

#[allow(dead_code)]
#[path = "../go/mod.rs"]
mod go;

use std::process::Command;

use integration_tests::{GoToolchain, prerequisites, run_command, spawn_profiler, temp_dir};

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

const REQUESTS: u64 = 10_000;
/// Requests the profile and the server may count apart: the `/stats` queries.
const SLACK: i64 = 4;

/// GETs `path` from the server and returns the body.
fn get(port: u16, path: &str) -> String {
    String::from_utf8_lossy(&go::http_get(port, path)).into_owned()
}

fn answered(port: u16) -> i64 {
    let body = get(port, "/stats");
    body.trim()
        .strip_prefix("hello=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the server's /stats is not hello=N: {body:?}"))
}

fn check(toolchain: &GoToolchain) -> Result<String, String> {
    let binary = go::build(toolchain, "go_http");
    let tmp = temp_dir();
    let (server, port) = go::start_server(&binary, tmp.path(), &[]);
    let pid = server.pid().to_string();
    let out = tmp.path().join("out");
    let profiler = spawn_profiler(
        &[
            "--pid",
            &pid,
            "--profiles",
            "cpu,io",
            "--duration",
            "120s",
            "--small-io-rate",
            "100",
        ],
        &out,
    );
    wait_until_attached(profiler.pid());
    let before = answered(port);
    let mut ab = Command::new(go::AB);
    ab.args(["-q", "-k", "-s", "30", "-c", "4", "-n"])
        .arg(REQUESTS.to_string())
        .arg(format!("http://127.0.0.1:{port}/hello"));
    run_command(ab).assert_success();
    let counted = answered(port) - before;
    // SAFETY: kill(2) on our own child, still running (its window is 120 s).
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT) };
    let run = profiler.wait();
    run.assert_success();
    drop(server);

    let profile = RawProfile::load(&out.join("io.pb.gz"));
    let on_sockets = |syscall: &str, value: &str| {
        profile.sum(value, |s| {
            s.label("pid") == Some(pid.as_str())
                && s.label("descriptor") == Some("socket")
                && s.label("syscall") == Some(syscall)
        })
    };
    let writes = on_sockets("write", "calls");
    if counted < REQUESTS as i64 || (writes - counted).abs() > SLACK {
        return Err(format!(
            "the server answered {counted} /hello requests by its own count, the profile \
             has {writes} writes on sockets\n{}",
            run.transcript()
        ));
    }
    let turns = on_sockets("write", "turns");
    if turns * 10 < writes * 9 {
        return Err(format!(
            "only {turns} of {writes} writes turned the direction around, where each \
             answers a request\n{}",
            run.transcript()
        ));
    }
    // In the pprof file each call is labelled by the function that made it, outside Go's
    // syscall plumbing (the stacks' leaf is the runtime's Syscall6): every socket write
    // by net/http's code.
    let by_net_http = profile.sum("calls", |s| {
        s.label("pid") == Some(pid.as_str())
            && s.label("descriptor") == Some("socket")
            && s.label("syscall") == Some("write")
            && s.label("call_site")
                .is_some_and(|f| f.starts_with("net/http."))
    });
    if by_net_http != writes {
        return Err(format!(
            "{by_net_http} of {writes} socket writes carry a call_site label naming              net/http's code\n{}",
            run.transcript()
        ));
    }
    // The CPU profile's view of the same calls (time in syscall.Read/Write), when it is
    // large enough to be a finding, follows what the I/O profile found them to be: no bufio
    // either.
    if let Some(go_small_io) = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Go small I/O:"))
        .nth(1)
        && go_small_io.contains("bufio")
    {
        return Err(format!(
            "the CPU profile tells the server to use bufio for round trips: {go_small_io:?}\n{}",
            run.transcript()
        ));
    }
    let found = small_io_findings(&run.stdout);
    for syscall in ["read", "write"] {
        let f = round_trip_finding(&found, "the server", syscall, &run.stdout)?;
        let text = f.text();
        let fix = f.fix().unwrap_or_default();
        if fix.contains("bufio") {
            return Err(format!(
                "the server's {syscall}s are told to use bufio:\n{text}"
            ));
        }
        if !f.function.starts_with("net/http.") {
            return Err(format!(
                "the {syscall} finding names {} as the caller, not net/http's code:\n{text}",
                f.function
            ));
        }
    }
    Ok(format!(
        "{counted} responses by the server's count, {writes} writes ({turns} turns)"
    ))
}

#[test]
fn go_http_server_io_is_round_trips_named_by_net_http() {
    if !prerequisites() {
        return;
    }
    if go::ab_missing() {
        return;
    }
    go::for_each_toolchain("go http server", check);
}
