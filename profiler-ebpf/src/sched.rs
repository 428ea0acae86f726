//! Scheduler tracepoints: follow the forks of targets and forget threads that exit.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use aya_log_ebpf::{debug, warn};
use profiler_common::counter;

use crate::shared::{TARGETS, count, current_ids, filtering, is_target, notify_exec, notify_fork};

/// Offset of `child_pid` in the `sched_process_fork` tracepoint record; it moved between
/// kernel versions, so userspace reads it from the event's format file.
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 20;

/// Follows forks: a child of a target becomes a target, and userspace learns whose
/// mappings it starts with.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let (parent, _) = current_ids();
    // SAFETY: presence check only.
    if filtering() && unsafe { TARGETS.get(&parent) }.is_none() {
        return 0;
    }
    // SAFETY: a read of a global that userspace sets before load.
    let offset = unsafe { core::ptr::read_volatile(&FORK_CHILD_PID_OFFSET) } as usize;
    // SAFETY: the offset comes from this tracepoint's format file.
    let Ok(child) = (unsafe { ctx.read_at::<i32>(offset) }) else {
        return 0;
    };
    notify_fork(parent, child as u32);
    if !filtering() {
        return 0;
    }
    // A new thread also passes here with its tid as `child`; the entry is unused (the filter
    // matches on tgid) and is removed when the thread exits.
    if TARGETS.insert(&(child as u32), &1, 0).is_ok() {
        count(counter::FORKS_FOLLOWED);
        debug!(&ctx, "following fork {} -> {}", parent, child);
    } else {
        count(counter::LOST_FORKS);
        warn!(
            &ctx,
            "target map full: child {} of {} not followed", child, parent
        );
    }
    0
}

/// Drops thread entries the fork tracepoint added, so the target map does not fill up, and
/// keeps an exiting thread's off-CPU budget.
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    crate::offcpu::on_exit(tgid, tid);
    // A process entry (tid == tgid) stays: other threads may outlive the main thread.
    if tid != tgid {
        let _ = TARGETS.remove(&tid);
    }
    0
}

/// Tells userspace that a target executed a new program, which may be a Go binary whose
/// goroutines to trace (attached only when goroutine waits are traced).
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    if is_target(tgid) {
        notify_exec(tgid);
    }
    0
}
