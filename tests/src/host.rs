//! Facts of the host the tests run on, and running things as an unprivileged user.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

/// Function names from `/proc/kallsyms` (module suffixes dropped).
pub fn kernel_symbols() -> HashSet<String> {
    let text = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(str::to_owned)
        .collect()
}

/// A pid that no process has (checked against `/proc`).
pub fn unused_pid() -> u32 {
    (0..1000u32)
        .map(|i| 4_194_000 - i)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("some pid near 4194000 is free")
}

/// The uid and gid of user nobody, for checks that run the profiler unprivileged.
pub const NOBODY: &str = "65534";

/// A `setpriv` command that runs what follows as user nobody with no groups.
pub fn setpriv_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ]);
    cmd
}

/// Sets a path's permission bits, failing the test if it cannot.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of the fixtures' timestamps and of the
/// profiler's window.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Asserts that `delay`, what a profile gave a wait still going on when its window closed,
/// runs from the wait's start (`wait_start_ns`) to the window's end: the window opened after
/// the profiler started (`started_ns`), lasted `window`, and closed before the profiler
/// exited (`exited_ns`); the wait began after the launch, and so inside the window. `what`
/// names the wait in the message, `context` follows it.
pub fn assert_counted_to_window_end(
    what: &str,
    delay: u64,
    wait_start_ns: u64,
    (started_ns, exited_ns): (u64, u64),
    window: std::time::Duration,
    context: &str,
) {
    let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
    let lower = (started_ns + window.as_nanos() as u64).saturating_sub(wait_start_ns);
    let upper = exited_ns - wait_start_ns;
    assert!(
        (lower.saturating_sub(5_000_000)..=upper).contains(&delay),
        "the in-progress {what} has {} of delay; it waited from {} ms after the profiler's \
         start to the window's end, which is {}..{}\n{context}",
        ms(delay),
        (wait_start_ns - started_ns) / 1_000_000,
        ms(lower),
        ms(upper)
    );
}

/// A free TCP port on 127.0.0.1 (bound and released: another program could take it
/// first, which makes a server fail to start with a clear log line).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port on 127.0.0.1")
        .port()
}
