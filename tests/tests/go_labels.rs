//! Go's profiler labels (`pprof.Do`) on the profiles of a real Go net/http service
//! (`fixtures/go_service.go` with `GO_SERVICE_LABELS=1`: every /kv request runs under
//! `endpoint=/kv` and `key=K`), by its pid, for every Go toolchain the tests cover, read
//! with `go tool pprof -tagfocus` as a Go user reads Go's own:
//!
//! - CPU, against Go's own CPU profile of the same window: two loads run at once, on
//!   `key=a` (six clients) and `key=b` (two), and each key's share of the requests'
//!   samples must be within 3 points of Go's.
//! - Heap (Go's sampled allocations) and goroutine waits, in a second run: every
//!   allocation and wait of the handler carries its request's labels (the two keys' sums
//!   are the handler's whole), and none of the work outside it does (net/http reading the
//!   request before the handler runs, the unlabelled worker goroutine): a label read from
//!   the wrong goroutine, or kept past `pprof.Do`, would show there.

#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
#[allow(dead_code)]
#[path = "../go/mod.rs"]
mod go;

use std::path::Path;
use std::process::Command;

use integration_tests::{GoToolchain, Running, prerequisites, spawn_profiler, temp_dir};

/// The CPU window both profiles cover, in seconds. Go's tick-capped profile holds about
/// 230 of the requests' samples a second here: at 12 s, one standard error on key=a's
/// ~40% was 0.9 points, and with this profile's own error 3 points were under three of
/// them (a 4.7-point gap once on a loaded machine); at 20 s they are 3.7.
const WINDOW_S: u64 = 20;
/// Go's own CPU profile's rate (see `go_service_cpu.rs`).
const GO_HZ: u32 = 500;
/// The largest gap allowed between a key's share here and in Go's profile, in points.
const POINTS: f64 = 3.0;
/// The samples the CPU shares are compared without: the worker goroutine's, and the vDSO
/// clock reads Go's traceback cannot place (see `go_service_cpu.rs`).
const NOT_COMPARED: &str = r"main\.worker|runtime\.nanotime1";
/// The least share of the handler's allocations and waits that must carry its labels; a
/// label set the kernel could not read is counted, not kept, so a few may lack them.
const LABELLED: f64 = 0.97;

/// The total of `pb`'s samples of type `index` that `filters` (pprof's `-focus`,
/// `-ignore`, `-tagfocus` ...) keep, as `go tool pprof -top` sums them.
fn kept(pb: &Path, index: &str, filters: &[String]) -> f64 {
    let mut args = vec![
        "-top".to_owned(),
        "-nodecount=100000".to_owned(),
        "-nodefraction=0".to_owned(),
        "-edgefraction=0".to_owned(),
        format!("-sample_index={index}"),
    ];
    args.extend_from_slice(filters);
    args.push(pb.display().to_string());
    let run = integration_tests::pprof(&args);
    run.assert_success();
    // "Showing nodes accounting for 366, 43.62% of 839 total", in the type's unit.
    run.stdout
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("Showing nodes accounting for ")?;
            parse_amount(rest.split(',').next()?)
        })
        .unwrap_or(0.0)
}

/// A value as `pprof -top` prints it: `366`, `1.50MB`, `2.31s`, `120ms`, in the unit's
/// base (bytes, seconds), so that two amounts of one type compare.
fn parse_amount(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "" | "B" | "s" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "ms" => 1e-3,
        "us" => 1e-6,
        "ns" => 1e-9,
        "mins" => 60.0,
        "hrs" => 3600.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|&s| s.to_owned()).collect()
}

/// Each key's share of the requests' CPU samples (0 to 100) in `pb`.
fn key_shares(pb: &Path) -> [f64; 2] {
    let ignore = format!("-ignore={NOT_COMPARED}");
    let all = kept(pb, "samples", std::slice::from_ref(&ignore));
    ["a", "b"].map(|key| {
        let focus = format!("-tagfocus=key={key}");
        100.0 * kept(pb, "samples", &[ignore.clone(), focus]) / all.max(1.0)
    })
}

/// The query of every request besides its key: CPU burnt in the handler, under the
/// labels, and a 5 µs spin of the unlabelled worker. With a 20 µs spin (the first load)
/// the worker held most of the CPU, Go's tick-capped profile had few of the requests'
/// samples, and its samples put less in the scheduler (unlabelled) than an hrtimer
/// sampler's do (see `go_service_cpu.rs`): key=b came out 0.9-3.1 points under Go's on all
/// four releases in CI, once past 3.
const QUERY: &str = "work=5&burn=30";

/// Starts `key=a` and `key=b` loads of the service on `port`, for `seconds`.
fn loads(port: u16, seconds: u64) -> [Running; 2] {
    [("a", "6"), ("b", "2")].map(|(key, clients)| {
        let mut ab = Command::new(go::AB);
        // `-t` caps the requests at 50000 unless `-n` follows it.
        ab.args(["-q", "-k", "-c", clients, "-t"])
            .arg(seconds.to_string())
            .args(["-n", "100000000"])
            .arg(format!("http://127.0.0.1:{port}/kv?key={key}&{QUERY}"));
        Running::spawn(ab)
    })
}

fn check(toolchain: &GoToolchain) -> Result<String, String> {
    let binary = go::build(toolchain, "go_service");
    let tmp = temp_dir();
    let (server, port) = go::start_server(&binary, tmp.path(), &[("GO_SERVICE_LABELS", "1")]);
    let pid = server.pid().to_string();

    // CPU, beside Go's own CPU profile of the same window.
    let load = loads(port, WINDOW_S + 10);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = tmp.path().join("cpu");
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
    let path = format!("/cpuprofile?seconds={WINDOW_S}&hz={GO_HZ}");
    std::fs::write(&theirs_pb, go::http_get(port, &path)).expect("write Go's CPU profile");
    let run = profiler.wait();
    drop(load);
    run.assert_success();
    let ours = key_shares(&out.join("cpu.pb.gz"));
    let theirs = key_shares(&theirs_pb);
    let mut said = Vec::new();
    for (i, key) in ["a", "b"].iter().enumerate() {
        if theirs[i] < 5.0 {
            return Err(format!(
                "Go's own profile gives key={key} only {:.1}% of the requests' samples (ours \
                 {:.1}%): the load did not run\n{}",
                theirs[i],
                ours[i],
                run.transcript()
            ));
        }
        if (ours[i] - theirs[i]).abs() > POINTS {
            return Err(format!(
                "key={key}: {:.1}% of the requests' CPU samples, {:.1}% in Go's own CPU \
                 profile (more than {POINTS} points apart)\n{}",
                ours[i],
                theirs[i],
                run.transcript()
            ));
        }
        said.push(format!(
            "cpu key={key} {:.1}% vs {:.1}%",
            ours[i], theirs[i]
        ));
    }

    // Sampled allocations and goroutine waits.
    let load = loads(port, 14);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = tmp.path().join("heap");
    let run = spawn_profiler(
        &[
            "--pid",
            &pid,
            "--profiles",
            "heap,goroutines",
            "--duration",
            "5s",
        ],
        &out,
    )
    .wait();
    drop(load);
    drop(server);
    run.assert_success();
    let checks = [
        (
            "heap",
            "alloc_space",
            r"main\.kv",
            r"net/http\.\(\*conn\)\.readRequest",
        ),
        ("block", "delay", r"main\.kv", r"main\.worker"),
    ];
    for (file, index, handler, outside) in checks {
        let pb = out.join(format!("{file}.pb.gz"));
        let focus = |f: &str| format!("-focus={f}");
        let all = kept(&pb, index, &[focus(handler)]);
        let a = kept(&pb, index, &[focus(handler), "-tagfocus=key=a".into()]);
        let b = kept(&pb, index, &[focus(handler), "-tagfocus=key=b".into()]);
        let context = || format!("{}\n{}", pb.display(), run.transcript());
        if all <= 0.0 || a <= 0.0 || b <= 0.0 {
            return Err(format!(
                "{file}: {handler} {all} {index}, key=a {a}, key=b {b}: each key should have \
                 some\n{}",
                context()
            ));
        }
        // pprof prints amounts to three or four digits: the sum may pass the whole by that.
        if a + b < LABELLED * all || a + b > all * 1.01 {
            return Err(format!(
                "{file}: {handler}'s {index} is {all}, but key=a {a} + key=b {b} (every one \
                 runs under pprof.Do)\n{}",
                context()
            ));
        }
        let not_handler = kept(&pb, index, &[focus(outside)]);
        let labelled = kept(
            &pb,
            index,
            &args(&[&focus(outside), "-tagfocus=endpoint=/kv"]),
        );
        if not_handler <= 0.0 || labelled > 0.0 {
            return Err(format!(
                "{file}: {outside} ({not_handler} {index}) runs outside pprof.Do, but \
                 {labelled} of it carries endpoint=/kv\n{}",
                context()
            ));
        }
        said.push(format!(
            "{file} {handler}: key=a {a:.3} + key=b {b:.3} of {all:.3} {index}, {outside}: \
             {not_handler:.3} unlabelled"
        ));
    }
    Ok(said.join("; "))
}

#[test]
fn go_profiler_labels_are_carried_as_go_s_own_profile_carries_them() {
    if !prerequisites() {
        return;
    }
    if go::ab_missing() {
        return;
    }
    go::for_each_toolchain("go labels", check);
}
