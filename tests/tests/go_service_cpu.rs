//! The CPU profile of a real Go net/http service (`fixtures/go_service.go`), by its pid,
//! under a keep-alive `ab` load, for every Go toolchain the tests cover, against Go's own
//! CPU profile of the same window: the cumulative shares of the handler and of net/http's
//! connection loop must be within 3 points of Go's, at least 98% of the samples must be
//! rooted where Go roots its stacks (`runtime.goexit` under a goroutine, `runtime.mcall`
//! or `runtime.mstart` under the scheduler), and under 2% at an unnamed frame.
//!
//! Go runs its runtime on the system stack, and the worker's `time.Since` calls the vDSO
//! there: Go's traceback goes on from there into the goroutine, and the profile must too
//! (before, half the worker's samples ended at `runtime.nanotime1`, and a third of all
//! were rooted at `[unknown]` above `runtime.goexit`).
//!
//! The worker's own share is printed, not compared: Go's per-thread CPU timers fire at
//! most once per kernel tick (250 Hz on Debian's kernels), which undercounts a thread that
//! never sleeps against threads that run in bursts, and Go's own traceback leaves some of
//! its vDSO samples rooted at `runtime.nanotime1` (2-4% here), outside the worker.

#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
#[allow(dead_code)]
#[path = "../go/mod.rs"]
mod go;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use integration_tests::{
    Folded, GoToolchain, Running, pprof, prerequisites, spawn_profiler, temp_dir,
};

const AB: &str = "/usr/bin/ab";
/// The window both profiles cover, in seconds.
const WINDOW_S: u64 = 8;
/// Go's own CPU profile's rate: 100 (net/http/pprof's) would give too few samples; the
/// kernel's tick caps it at 250 a second per thread.
const GO_HZ: u32 = 500;
/// The largest gap allowed between a cumulative share here and in Go's profile, in points.
const POINTS: f64 = 3.0;
/// The largest share of samples rooted at an unnamed frame.
const UNNAMED_ROOTS: f64 = 0.02;
/// The smallest share of samples rooted where Go's traceback roots stacks.
const GO_ROOTED: f64 = 0.98;
/// Where Go's traceback roots stacks: under a goroutine, and under the scheduler.
const GO_ROOTS: [&str; 3] = ["runtime.goexit", "runtime.mcall", "runtime.mstart"];
/// The functions whose cumulative shares are compared: the handler and net/http's
/// connection loop (the handler's caller).
const FUNCTIONS: [&str; 2] = ["main.kv", "net/http.(*conn).serve"];
/// The worker goroutine, spinning on `time.Since`: its share is printed.
const WORKER: &str = "main.worker";

/// Go's own CPU profile of the next `WINDOW_S` seconds at `GO_HZ`, saved to `path`.
fn go_cpu_profile(port: u16, path: &Path) {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the Go service");
    write!(
        stream,
        "GET /cpuprofile?seconds={WINDOW_S}&hz={GO_HZ} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .expect("send a request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    std::fs::write(path, &response[at + 4..]).expect("write Go's CPU profile");
}

/// Every function's cumulative share of `pb`'s samples (0 to 100), as `go tool pprof -top
/// -cum` prints it.
fn cum_shares(pb: &Path) -> HashMap<String, f64> {
    let run = pprof(&[
        "-top".as_ref(),
        "-cum".as_ref(),
        "-nodecount=100000".as_ref(),
        pb.as_os_str(),
    ]);
    run.assert_success();
    run.stdout
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let cum = words.get(4)?.strip_suffix('%')?.parse().ok()?;
            words.get(1)?.strip_suffix('%')?;
            Some((words[5..].join(" "), cum))
        })
        .collect()
}

fn check(toolchain: &GoToolchain) -> Result<String, String> {
    let binary = go::build(toolchain, "go_service");
    let tmp = temp_dir();
    let (server, port) = go::start_server(&binary, tmp.path(), &[]);
    let mut ab = Command::new(AB);
    // `-t` caps the requests at 50000 unless `-n` follows it.
    ab.args(["-q", "-k", "-c", "8", "-t"])
        .arg((WINDOW_S + 10).to_string())
        .args(["-n", "100000000"])
        .arg(format!("http://127.0.0.1:{port}/kv?key=k1&work=50"));
    let load = Running::spawn(ab);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = tmp.path().join("out");
    let pid = server.pid().to_string();
    let window = format!("{WINDOW_S}s");
    let profiler = spawn_profiler(
        &[
            "--pid",
            &pid,
            "--profiles",
            "cpu",
            "-F",
            "999",
            "--duration",
            &window,
        ],
        &out,
    );
    attach::wait_until_attached(profiler.pid());
    let theirs_pb = tmp.path().join("go-cpu.pb.gz");
    go_cpu_profile(port, &theirs_pb);
    let run = profiler.wait();
    drop(load);
    drop(server);
    run.assert_success();

    let ours = cum_shares(&out.join("cpu.pb.gz"));
    let theirs = cum_shares(&theirs_pb);
    let folded = Folded::load(&out);
    let total = folded.total();
    let unnamed = folded.samples_where(|s| s.frames.first().is_none_or(|f| f.starts_with('[')));
    let context = format!("{}\n{}", folded.summary(15), run.transcript());
    let mut compared = Vec::new();
    for function in FUNCTIONS {
        let share = |shares: &HashMap<String, f64>| shares.get(function).copied().unwrap_or(0.0);
        let (o, t) = (share(&ours), share(&theirs));
        if t < 2.0 {
            return Err(format!(
                "Go's own profile gives {function} only {t:.1}%: the load did not run\n{context}"
            ));
        }
        if (o - t).abs() > POINTS {
            return Err(format!(
                "{function}: {o:.1}% of the profile's samples, {t:.1}% of Go's own CPU \
                 profile's (more than {POINTS} points apart)\n{context}"
            ));
        }
        compared.push(format!("{function} {o:.1}% vs {t:.1}%"));
    }
    let go_rooted = folded.samples_where(|s| {
        s.frames
            .first()
            .is_some_and(|f| GO_ROOTS.contains(&f.as_str()))
    });
    if (go_rooted as f64) < GO_ROOTED * total as f64 {
        return Err(format!(
            "{go_rooted} of {total} samples are rooted at {GO_ROOTS:?} (at least {:.0}%)\n\
             {context}",
            100.0 * GO_ROOTED
        ));
    }
    if unnamed as f64 > UNNAMED_ROOTS * total as f64 {
        return Err(format!(
            "{unnamed} of {total} samples are rooted at an unnamed frame (at most {:.0}%)\n\
             {context}",
            100.0 * UNNAMED_ROOTS
        ));
    }
    let worker = |shares: &HashMap<String, f64>| shares.get(WORKER).copied().unwrap_or(0.0);
    Ok(format!(
        "{}; {WORKER} {:.1}% vs {:.1}% (not compared); {go_rooted} of {total} samples rooted \
         where Go roots them, {unnamed} at an unnamed frame",
        compared.join(", "),
        worker(&ours),
        worker(&theirs)
    ))
}

#[test]
fn a_go_service_s_cpu_shares_match_go_s_own_cpu_profile() {
    if !prerequisites() {
        return;
    }
    if !Path::new(AB).is_file() {
        eprintln!("skipping: {AB} is not installed (`cargo xtask setup --for-tests`)");
        return;
    }
    go::for_each_toolchain("go service cpu", check);
}
