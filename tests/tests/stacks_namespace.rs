//! True stacks for a binary in another mount namespace (issue 10): the
//! fixture `stacks_ns_app` (built without frame pointers) is copied into a
//! tmpfs mounted in a private mount namespace and run from there, so its file
//! cannot be opened by path from the profiler's namespace; its frames must be
//! named all the same, also after it exited and took its namespace with it.
//! Sample counts are compared with the CPU time the app measured itself.
//! Helpers: `tests/stacks_common/mod.rs`.

#[path = "../stacks_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use common::{
    UNWOUND_SHARE, WALL_CAP_SECONDS, assert_received, assert_share, in_order_names, profile_command,
};
use integration_tests::{FixtureResult, Folded, fixture, prerequisites, temp_dir};

/// The sampling rate of these tests.
const HZ: u64 = 199;

/// `sh` script run in a new mount namespace: mounts a tmpfs on $1, copies the
/// fixture $2 there as `app`, and runs it for $3 seconds of wall time at most
/// and $5 seconds of its own CPU time, with result file $4.
const IN_NAMESPACE: &str =
    r#"mount -t tmpfs none "$1" && cp "$2" "$1/app" && exec "$1/app" "$3" "$4" "$5""#;

/// The command line `unshare -m --propagation private sh -c IN_NAMESPACE ...`.
fn unshare_argv(mnt: &Path, cpu_seconds: &str, result: &Path) -> Vec<OsString> {
    let mut argv: Vec<OsString> = ["unshare", "-m", "--propagation", "private", "sh", "-c"]
        .iter()
        .map(OsString::from)
        .collect();
    argv.push(IN_NAMESPACE.into());
    argv.push("sh".into());
    argv.push(mnt.into());
    argv.push(fixture("stacks_ns_app").into());
    argv.push(WALL_CAP_SECONDS.into());
    argv.push(result.into());
    argv.push(cpu_seconds.into());
    argv
}

/// Asserts that the `app` samples are what `-F HZ` gives for the CPU time the
/// app measured (`burn_ns`), and that they are symbolized: ns_leaf under the
/// named chain up to main, no `app+0x...` address frames.
fn assert_app_symbolized(folded: &Folded, measured: &FixtureResult) {
    let app = folded.with_comm("app");
    let total = app.total();
    let comms = folded.comms().into_iter().take(10).collect::<Vec<_>>();
    assert_received(
        &format!("`app` (its own thread CPU clock; comms in the profile: {comms:?})"),
        total,
        HZ,
        measured.u64("burn_ns"),
        folded,
    );
    let unnamed: BTreeMap<String, u64> = app
        .stacks
        .iter()
        .flat_map(|s| s.frames.iter().map(move |f| (f, s.count)))
        .filter(|(f, _)| f.starts_with("app+") || f.contains("/app+"))
        .fold(BTreeMap::new(), |mut m, (f, n)| {
            *m.entry(f.clone()).or_default() += n;
            m
        });
    assert!(
        unnamed.is_empty(),
        "frames of the namespaced binary are not symbolized: {unnamed:?}\n{}",
        app.summary(20)
    );
    let in_leaf = app.samples_containing("ns_leaf");
    assert!(
        in_leaf * 10 >= total * 8,
        "only {in_leaf} of {total} `app` samples are in ns_leaf\n{}",
        app.summary(20)
    );
    let chain = app.samples_where(|s| {
        in_order_names(s, &["main", "ns_outer", "ns_middle", "ns_inner", "ns_leaf"])
    });
    assert_share(
        chain,
        in_leaf,
        UNWOUND_SHARE,
        "ns_leaf samples with main;ns_outer;ns_middle;ns_inner above",
        &app,
    );
}

/// A directory to mount on, inside a fresh temporary directory.
fn mount_point(tmp: &Path) -> PathBuf {
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).expect("create the mount point");
    mnt
}

#[test]
fn binary_in_private_mount_namespace_is_symbolized() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mnt = mount_point(tmp.path());
    let argv = unshare_argv(&mnt, "3", &result);
    let argv: Vec<&OsStr> = argv.iter().map(OsString::as_os_str).collect();
    profile_command(HZ, &["--profiles", "cpu"], &argv, &out);
    let measured = FixtureResult::read(&result);
    assert!(
        !mnt.join("app").exists(),
        "the tmpfs leaked into the test's mount namespace: {} exists",
        mnt.join("app").display()
    );
    assert_app_symbolized(&Folded::load(&out), &measured);
}

#[test]
fn binary_in_private_mount_namespace_is_symbolized_after_it_exited() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mnt = mount_point(tmp.path());
    // The app runs until it has had 1.5 s of CPU and exits, taking its mount
    // namespace (and the only path to its file) with it; the shell keeps the
    // profile going 2.5 s more.
    let inner = unshare_argv(&mnt, "1.5", &result);
    let script = r#""$@"; sleep 2.5"#;
    let mut argv: Vec<&OsStr> = vec!["sh".as_ref(), "-c".as_ref(), script.as_ref(), "sh".as_ref()];
    argv.extend(inner.iter().map(OsString::as_os_str));
    let run = profile_command(HZ, &["--profiles", "cpu"], &argv, &out);
    let measured = FixtureResult::read(&result);
    // The app ran at least as long as its CPU time.
    let app_s = measured.u64("burn_ns") as f64 / 1e9;
    assert!(
        run.elapsed.as_secs_f64() >= app_s + 2.0,
        "the profile ended {:.2?} after the start, the app ran {app_s:.2} s of CPU: it did not \
         outlive the app by seconds",
        run.elapsed
    );
    let pid = measured.get("pid");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the app (pid {pid}) is still running"
    );
    assert_app_symbolized(&Folded::load(&out), &measured);
}
