//! The CPU profile: stacks sampled at every `cpu-clock` tick, counted by
//! (pid, tid, user stack, kernel stack).

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::bpf_get_current_comm,
    macros::{map, perf_event},
    maps::HashMap,
    programs::PerfEventContext,
};
use aya_log_ebpf::warn;
use profiler_common::{COMM_LEN, CpuKey, CpuValue, MAX_CPU_KEYS, StackTopRaw, counter};

use crate::shared::{
    count, current_ids, is_target, notify_new_key, save_stack_top, stack_id, user_ip,
};

/// Sample counts by (pid, tid, user stack, kernel stack).
#[map]
static CPU_SAMPLES: HashMap<CpuKey, CpuValue> =
    HashMap::with_max_entries(MAX_CPU_KEYS, BPF_F_NO_PREALLOC);

/// The top of the user stack with the first sample of each key.
#[map]
static CPU_STACK_TOPS: HashMap<CpuKey, StackTopRaw> =
    HashMap::with_max_entries(MAX_CPU_KEYS, BPF_F_NO_PREALLOC);

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
    let key = CpuKey {
        pid: tgid,
        tid,
        user_stack_id: stack_id(&ctx, BPF_F_USER_STACK as u64, counter::LOST_USER_STACK),
        kernel_stack_id: stack_id(&ctx, 0, counter::LOST_KERNEL_STACK),
    };
    record(&ctx, &key);
    0
}

#[inline(always)]
fn record(ctx: &PerfEventContext, key: &CpuKey) {
    if let Some(value) = CPU_SAMPLES.get_ptr_mut(key) {
        // SAFETY: the value lives while the program runs. The key holds the thread id and a
        // thread runs on one CPU at a time, so no other CPU updates this entry concurrently.
        unsafe { (*value).count += 1 };
        count(counter::RECORDED);
        return;
    }
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    let value = CpuValue { count: 1, comm };
    if CPU_SAMPLES.insert(key, &value, BPF_NOEXIST as u64).is_ok() {
        count(counter::RECORDED);
        save_stack_top(&CPU_STACK_TOPS, key);
        notify_new_key(key.pid, user_ip(), -1);
    } else {
        count(counter::LOST_AGG_FULL);
        warn!(ctx, "cpu sample map full: sample of pid {} lost", key.pid);
    }
}
