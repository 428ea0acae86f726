//! Attaching to a running process: waiting until the profiler has attached its programs
//! and until the target has installed its signal handler.

use std::thread;
use std::time::{Duration, Instant};

/// How many BPF links process `pid` holds (its attached programs).
pub(crate) fn bpf_links(pid: u32) -> Option<usize> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|t| t.to_string_lossy() == "anon_inode:bpf_link")
            .count(),
    )
}

/// Waits until the profiler `pid` has attached its programs: it holds BPF links and their
/// number has not changed for 300 ms. Returns early if the profiler exits (its run then
/// tells why).
pub(crate) fn wait_until_attached(pid: u32) {
    let start = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let Some(n) = bpf_links(pid) else { return };
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() >= Duration::from_millis(300) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the profiler (pid {pid}) attached no BPF program within 30 s ({n} bpf_link \
             descriptors)"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Attaching finishes with the links; leave the profiler a moment more.
    thread::sleep(Duration::from_millis(200));
}

/// Waits until process `pid` catches signal `sig` (per `/proc/PID/status` SigCgt).
pub(crate) fn wait_until_catches(pid: u32, sig: i32) {
    let start = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1u64 << (sig - 1)) != 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "process {pid} did not install its signal {sig} handler within 10 s"
        );
        thread::sleep(Duration::from_millis(10));
    }
}
