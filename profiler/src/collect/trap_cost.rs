//! Measures what a uprobe trap costs on this machine, at the start of a heap-profile run:
//! the function of the profiler's own that [`uprobe_check`] asks the kernel with (it starts,
//! as the allocators' probed instructions do, with a `push` the kernel emulates) is called
//! with and without the heap programs' probes on it, so the summary can say what the run's traps cost the targets in time, not only
//! how many there were.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use aya::Ebpf;
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use profiler_common::program_name;

use crate::collect::allocators::function_offset;
use crate::collect::uprobe_check::{self, time_calls};

/// What one trap cost, measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrapCost {
    /// A uprobe on an instruction the kernel emulates (what a free costs).
    pub entry: Duration,
    /// Such a uprobe with a uretprobe (what an allocation costs).
    pub entry_and_return: Duration,
}

/// Measures the cost of the heap programs' traps on the profiler itself (which is not a
/// target, so the programs return at once, as they do for most of a target's cost is the
/// trap); `None` when the probes cannot be attached to it.
pub fn measure(ebpf: &mut Ebpf) -> Option<TrapCost> {
    let exe = Path::new("/proc/self/exe");
    let offset = function_offset(exe, uprobe_check::PROBED)?;
    let scope = UProbeScope::OneProcess(NonZeroU32::new(std::process::id())?);
    let plain = time_calls();
    let entry = with_probes(ebpf, &[program_name::HEAP_FREE], offset, exe, scope)?;
    let both = with_probes(
        ebpf,
        &[program_name::HEAP_ALLOC_RETURN, program_name::HEAP_ALLOC],
        offset,
        exe,
        scope,
    )?;
    Some(TrapCost {
        entry: entry.saturating_sub(plain),
        entry_and_return: both.saturating_sub(plain),
    })
}

/// The time per call with `programs` attached at `offset`, detached again afterwards.
fn with_probes(
    ebpf: &mut Ebpf,
    programs: &[&str],
    offset: u64,
    exe: &Path,
    scope: UProbeScope,
) -> Option<Duration> {
    let mut links = Vec::new();
    for &name in programs {
        let program: &mut UProbe = ebpf.program_mut(name)?.try_into().ok()?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(0),
        };
        match program.attach(point, exe, scope) {
            Ok(link) => links.push((name, link)),
            Err(err) => log::debug!("cannot measure the trap cost: {err}"),
        }
    }
    let measured = (links.len() == programs.len()).then(time_calls);
    for (name, link) in links {
        if let Some(Ok(program)) = ebpf.program_mut(name).map(<&mut UProbe>::try_from) {
            let _ = program.detach(link);
        }
    }
    measured
}
