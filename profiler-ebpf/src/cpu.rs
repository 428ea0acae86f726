//! The CPU profile: at every `cpu-clock` tick, the running thread's stacks are sent to
//! userspace, which unwinds and counts them.

use aya_ebpf::{macros::perf_event, programs::PerfEventContext};
use profiler_common::counter;

use crate::shared::{Context, Site, count, current_ids, is_target, send_sample};

/// Samples the stacks of whatever runs on this CPU at each `cpu-clock` tick.
#[perf_event]
pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
    count(counter::TICKS);
    let (tgid, tid) = current_ids();
    if tid == 0 {
        count(counter::IDLE);
        return 0;
    }
    if !is_target(tgid) {
        count(counter::FILTERED);
        return 0;
    }
    if send_sample(&ctx, Context::Sampler, Site::Cpu) {
        count(counter::RECORDED);
    } else {
        count(counter::LOST_CPU_SAMPLES);
    }
    0
}
