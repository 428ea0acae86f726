//! Asks the running kernel how it takes a uprobe, once per run, before any probe is placed:
//! whether it emulates a `push` of a register at a probe (one trap a hit) or executes it
//! out of line with a single step (two traps), and whether a probe fires exactly once a
//! call. Kernels differ here by version and by build, so the probe points are chosen by
//! this answer, not by a version number.
//!
//! The question is put with a bare uprobe perf event (no BPF program) on a function of the
//! profiler's own that starts with `push`, on this thread only: the event counts its hits,
//! and a single step shows as the kernel's out-of-line area (`[uprobes]`), which it maps
//! into a process the first time it steps an instruction there.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::collect::allocators::function_offset;

/// Calls made under the probe: enough to tell one hit a call from two, and to time a hit
/// (a few milliseconds under the probe).
const CALLS: u64 = 2000;

/// Rounds of calls timed; the fastest is kept, as the one least disturbed by other work.
const ROUNDS: usize = 3;

/// How the running kernel takes a uprobe on `push`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushAtProbe {
    /// Emulated: one trap a hit.
    Emulated,
    /// Executed out of line: a trap and a single step a hit.
    Stepped,
    /// Not known (the check could not run); probes avoid relying on it.
    Unknown,
}

/// What the running kernel answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UprobeFacts {
    /// How a probe on `push` is taken.
    pub push: PushAtProbe,
    /// Hits counted for [`CALLS`] calls of the probed function, when the check ran: a kernel
    /// that does not give one hit a call is named in the summary.
    pub hits: Option<(u64, u64)>,
    /// What a hit added to a call (a probe with no program: the trap alone), when timed.
    pub trap: Option<Duration>,
}

impl UprobeFacts {
    /// One line for the summary's cost line: what the kernel was seen to do.
    pub fn describe(self) -> String {
        let push = match self.push {
            PushAtProbe::Emulated => "emulates a probed `push` (one trap a hit)",
            PushAtProbe::Stepped => {
                "single-steps a probed `push` (two traps a hit: probes avoid it)"
            }
            PushAtProbe::Unknown => "was not asked how it takes a probed `push`",
        };
        let trap = self.trap.map_or(String::new(), |trap| {
            format!(
                "; a uprobe trap costs {:.2} µs here",
                trap.as_secs_f64() * 1e6
            )
        });
        match self.hits {
            Some((hits, calls)) if hits != calls => format!(
                "uprobes: this kernel {push}, and fired {hits} times for {calls} calls: counts \
                 from uprobes are off by that ratio here{trap}"
            ),
            Some((_, calls)) => {
                format!("uprobes: this kernel {push}, one hit a call ({calls} of {calls}){trap}")
            }
            None => format!("uprobes: this kernel {push}{trap}"),
        }
    }
}

/// The name of the probed function, for finding its offset in the profiler's own file; the
/// trap-cost measurement (`trap_cost`) probes it too, after this check.
pub const PROBED: &str = "profiler_uprobe_check_push";

// The probed function: starts with `push` as the allocators' probed instructions do.
core::arch::global_asm!(
    ".globl profiler_uprobe_check_push",
    ".type profiler_uprobe_check_push, @function",
    "profiler_uprobe_check_push:",
    "push rbx",
    "lea rax, [rdi + 1]",
    "pop rbx",
    "ret",
    ".size profiler_uprobe_check_push, . - profiler_uprobe_check_push",
);

unsafe extern "C" {
    /// Returns `x + 1`; defined above.
    fn profiler_uprobe_check_push(x: u64) -> u64;
}

fn call_probed(x: u64) -> u64 {
    // SAFETY: the function above reads one register argument and returns one.
    unsafe { profiler_uprobe_check_push(std::hint::black_box(x)) }
}

/// The running kernel's answer, asked the first time (the check must come before any
/// other uprobe is hit in the profiler, which the heap and goroutine setups ensure by
/// asking first).
pub fn running_kernel() -> UprobeFacts {
    static FACTS: OnceLock<UprobeFacts> = OnceLock::new();
    *FACTS.get_or_init(|| {
        let facts = check();
        log::debug!("{}", facts.describe());
        facts
    })
}

fn check() -> UprobeFacts {
    let unknown = UprobeFacts {
        push: PushAtProbe::Unknown,
        hits: None,
        trap: None,
    };
    let exe = Path::new("/proc/self/exe");
    let Some(offset) = function_offset(exe, PROBED) else {
        return unknown;
    };
    let stepped_before = has_out_of_line_area();
    let Some(event) = open_uprobe_event(exe, offset) else {
        return unknown;
    };
    let probed = time_calls();
    // Every round's calls hit the probe.
    let hits = read_count(&event).map(|hits| hits / ROUNDS as u64);
    drop(event);
    let plain = time_calls();
    let push = match (stepped_before, has_out_of_line_area()) {
        // An area from earlier steps hides this one's.
        (Some(false), Some(true)) => PushAtProbe::Stepped,
        (Some(false), Some(false)) => PushAtProbe::Emulated,
        _ => PushAtProbe::Unknown,
    };
    UprobeFacts {
        push,
        hits: hits.map(|hits| (hits, CALLS)),
        trap: Some(probed.saturating_sub(plain)),
    }
}

/// The time of one call of the probed function, fastest of [`ROUNDS`] rounds of [`CALLS`]
/// (under whatever probes are on it now).
pub fn time_calls() -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut x = 0;
            for _ in 0..CALLS {
                x = call_probed(x);
            }
            std::hint::black_box(x);
            started.elapsed() / CALLS as u32
        })
        .min()
        .unwrap_or_default()
}

/// Whether the kernel has mapped its out-of-line stepping area into this process.
fn has_out_of_line_area() -> Option<bool> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    Some(maps.lines().any(|line| line.ends_with("[uprobes]")))
}

/// `perf_event_open`'s flag for a close-on-exec descriptor (linux/perf_event.h).
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// A counting uprobe perf event at `offset` of `path` for the calling thread, enabled.
fn open_uprobe_event(path: &Path, offset: u64) -> Option<OwnedFd> {
    let pmu: u32 = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1, 72 bytes), which every kernel
    // with the uprobe PMU accepts: type, size, config (0: an entry probe), then zeros up
    // to config1 (the path) and config2 (the offset). Disabled is bit 0 of the flags
    // word, left clear: the event counts from its creation.
    let mut attr = [0u64; 9];
    attr[0] = u64::from(pmu) | (72u64 << 32);
    attr[7] = path.as_ptr() as u64;
    attr[8] = offset;
    // SAFETY: perf_event_open reads `attr` (72 bytes, as its size field says) and the
    // path it points to, both alive for the call; pid 0 and cpu -1 mean this thread on
    // any CPU; the returned descriptor is owned here.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        log::debug!(
            "uprobe check: perf_event_open: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The event's count of hits.
fn read_count(event: &OwnedFd) -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::from(event.try_clone().ok()?);
    let mut bytes = [0u8; 8];
    file.read_exact(&mut bytes).ok()?;
    Some(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_off_by_a_ratio_is_said() {
        let facts = UprobeFacts {
            push: PushAtProbe::Stepped,
            hits: Some((128, 64)),
            trap: Some(Duration::from_micros(3)),
        };
        let line = facts.describe();
        assert!(line.contains("single-steps"), "{line}");
        assert!(line.contains("fired 128 times for 64 calls"), "{line}");
        assert!(line.contains("a uprobe trap costs 3.00 µs"), "{line}");
        let exact = UprobeFacts {
            push: PushAtProbe::Emulated,
            hits: Some((64, 64)),
            trap: None,
        };
        assert!(exact.describe().contains("one hit a call"));
    }
}
