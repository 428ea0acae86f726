//! The heap profile of a real Go net/http service (`fixtures/go_service.go`), by its pid,
//! under a bounded keep-alive `ab` load, for every Go toolchain the tests cover, against
//! Go's own heap profile of the same load (/debug/pprof/heap?gc=1 just before and just
//! after it, the difference read with `go tool pprof -base`): the flat `alloc_space` of
//! each function Go's own profile puts on top (5% of its total or more) must be within 15%
//! of Go's. Both read the same sampled allocations (`runtime.MemProfileRate`'s default,
//! one per 512 KiB), so a gap is a stack started elsewhere than Go starts it, or a missed
//! or doubled event. What the service allocates to write Go's profiles
//! (net/http/pprof's handler) is left out of both.

#[allow(dead_code)]
#[path = "io/attach.rs"]
mod attach;
#[allow(dead_code)]
#[path = "../go/mod.rs"]
mod go;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use integration_tests::{GoToolchain, prerequisites, run_command, spawn_profiler, temp_dir};

const REQUESTS: u64 = 20_000;
/// The largest relative gap allowed between a function's flat `alloc_space` and Go's.
const TOLERANCE: f64 = 0.15;
/// The share of Go's total a function must have to be compared.
const TOP_SHARE: f64 = 0.05;

/// Go's own heap profile after a garbage collection (which publishes every allocation
/// made so far), saved to `path`.
fn go_heap_profile(port: u16, path: &Path) {
    std::fs::write(path, go::http_get(port, "/debug/pprof/heap?gc=1"))
        .expect("write Go's heap profile");
}

/// Flat `alloc_space` in bytes by function, as `go tool pprof -top` prints it, of
/// `profile` (less `base`, when given), the profile-writing handler's stacks left out.
fn flat_alloc_space(profile: &Path, base: Option<&Path>) -> BTreeMap<String, i64> {
    let mut args = vec![
        "-sample_index=alloc_space".to_owned(),
        "-unit=B".to_owned(),
        "-ignore=net/http/pprof".to_owned(),
    ];
    if let Some(base) = base {
        args.push(format!("-base={}", base.display()));
    }
    args.push(profile.display().to_string());
    go::pprof_top(&args)
        .into_iter()
        .filter_map(|row| Some((row.function, row.flat.strip_suffix('B')?.parse().ok()?)))
        .collect()
}

fn check(toolchain: &GoToolchain) -> Result<String, String> {
    let binary = go::build(toolchain, "go_service");
    let tmp = temp_dir();
    let (server, port) = go::start_server(&binary, tmp.path(), &[]);
    let pid = server.pid().to_string();
    let out = tmp.path().join("out");
    let profiler = spawn_profiler(
        &["--pid", &pid, "--profiles", "heap", "--duration", "120s"],
        &out,
    );
    attach::wait_until_attached(profiler.pid());
    // The window opens a moment after the last program is attached (150 ms here on a quiet
    // machine, over 500 ms with builds beside it): the load, under a second, must be in it
    // whole, since Go's own profile is of all of it.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = tmp.path().join("before.pb.gz");
    let after = tmp.path().join("after.pb.gz");
    go_heap_profile(port, &before);
    let mut ab = Command::new(go::AB);
    ab.args(["-q", "-k", "-s", "30", "-c", "8", "-n"])
        .arg(REQUESTS.to_string())
        .arg(format!("http://127.0.0.1:{port}/kv?key=k1"));
    run_command(ab).assert_success();
    go_heap_profile(port, &after);
    // SAFETY: kill(2) on our own child, still running (its window is 120 s).
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGINT) };
    let run = profiler.wait();
    run.assert_success();
    drop(server);

    let ours = flat_alloc_space(&out.join("heap.pb.gz"), None);
    let theirs = flat_alloc_space(&after, Some(&before));
    let total: i64 = theirs.values().filter(|v| **v > 0).sum();
    let context = format!(
        "--- the profile's flat alloc_space ---\n{ours:#?}\n--- Go's own over the load ---\n\
         {theirs:#?}\n{}",
        run.transcript()
    );
    let top: Vec<(&String, i64)> = theirs
        .iter()
        .filter(|&(_, &flat)| flat as f64 >= TOP_SHARE * total as f64)
        .map(|(f, &flat)| (f, flat))
        .collect();
    if top.is_empty() {
        return Err(format!(
            "Go's own heap profile has no function with 5% of the load's {total} B\n{context}"
        ));
    }
    let mut compared = Vec::new();
    for (function, want) in top {
        let got = ours.get(function).copied().unwrap_or(0);
        let gap = (got - want) as f64 / want as f64;
        if gap.abs() > TOLERANCE {
            return Err(format!(
                "flat alloc_space of {function}: {got} B in the profile, {want} B in Go's own \
                 ({:+.0}%, more than {:.0}% off)\n{context}",
                100.0 * gap,
                100.0 * TOLERANCE
            ));
        }
        compared.push(format!("{function} {got} vs {want} B"));
    }
    Ok(compared.join(", "))
}

#[test]
fn a_go_service_s_allocations_match_go_s_own_heap_profile() {
    if !prerequisites() {
        return;
    }
    if go::ab_missing() {
        return;
    }
    go::for_each_toolchain("go service heap", check);
}
