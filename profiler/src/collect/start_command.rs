//! Starts the command given after `--` as a target from its first instruction: followed
//! by the fork tracepoint, and for the heap profile held at a gate before it executes
//! until its allocators have probes.

use anyhow::Result;
use tokio::process::Child;

use crate::collect::gate::{self, Gate};
use crate::collect::heap_probes::HeapProbes;
use crate::collect::launch::{self, Inherit};
use crate::collect::preload::Preload;
use crate::collect::probes::Probes;

/// Starts the command so that it is a target from its first instruction: the profiler makes
/// itself a target for the instant of the fork, so the fork tracepoint adds the child.
/// For the heap profile the child also waits before it executes until its allocators
/// have probes.
pub fn spawn_followed(
    probes: &mut Probes,
    argv: &[std::ffi::OsString],
    as_root: bool,
    heap: Option<&mut HeapProbes>,
    preload: Option<&Preload>,
) -> Result<Child> {
    let me = std::process::id();
    probes.add_target(me)?;
    let child = match heap {
        Some(heap) => spawn_gated(probes, heap, argv, as_root, preload),
        None => launch::spawn(argv, as_root, None, &Inherit::default()),
    };
    probes.remove_target(me)?;
    let child = child?;
    // Added again explicitly in case the fork was not seen (the tracepoint is best effort).
    if let Some(pid) = child.id() {
        probes.add_target(pid)?;
    }
    Ok(child)
}

/// Forks the command on a thread of its own (spawning returns only once the child has
/// executed), attaches the heap probes to the child while it waits at the gate, then lets
/// it go.
fn spawn_gated(
    probes: &mut Probes,
    heap: &mut HeapProbes,
    argv: &[std::ffi::OsString],
    as_root: bool,
    preload: Option<&Preload>,
) -> Result<Child> {
    let files = argv.first().map(gate::command_files).unwrap_or_default();
    let inherit = preload.map_or_else(Inherit::default, |preload| Inherit {
        env: preload.environment(),
        fd: Some(preload.memory_fd()),
    });
    let mut gate = Gate::new()?;
    let ends = gate.child_ends();
    let parent_end = gate.take_parent_end();
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        let spawner = scope.spawn(move || {
            let _runtime = runtime.enter();
            let child = launch::spawn(argv, as_root, Some(ends), &inherit);
            drop(parent_end);
            child
        });
        if let Some(pid) = gate.wait_child() {
            let program = argv.first().and_then(gate::executable);
            let interposed = preload.is_some();
            heap.attach_future_files(
                probes.ebpf_mut(),
                pid,
                &files,
                interposed,
                program.as_deref(),
            );
            gate.open();
        }
        spawner
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
