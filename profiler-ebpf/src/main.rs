//! The profiler's kernel programs.
//!
//! They stay small on purpose: sample, filter, count, and announce. Everything that can
//! happen in userspace (symbolization, merging, output) happens there.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        bpf_probe_read_user_buf,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{map, perf_event, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{PerfEventContext, TracePointContext, tracing::StackIdContext},
};
use aya_log_ebpf::{debug, warn};
use profiler_common::{
    COMM_LEN, CpuKey, CpuValue, MAX_CPU_KEYS, MAX_SEEN_PIDS, MAX_STACKS, MAX_TARGETS,
    PROC_EVENTS_BYTES, ProcEvent, STACK_TOP_WORDS, StackTopRaw, counter, proc_event,
};

const EEXIST: i32 = 17;
/// Offset of `sp` in x86-64's `struct pt_regs` (r15 ... orig_ax, ip, cs, flags, sp, ss).
const PT_REGS_SP: usize = 19 * 8;
const ENOMEM: i32 = 12;

/// Non-zero when only the pids in [`TARGETS`] are profiled; set by userspace at load time.
#[unsafe(no_mangle)]
static FILTER_PIDS: u8 = 0;

/// Offset of `child_pid` in the `sched_process_fork` tracepoint record; it moved between
/// kernel versions, so userspace reads it from the event's format file.
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 20;

/// The processes to profile (tgid -> 1), filled by userspace and by the fork tracepoint.
#[map]
static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Sample counts by (pid, tid, user stack, kernel stack).
#[map]
static CPU_SAMPLES: HashMap<CpuKey, CpuValue> = HashMap::with_max_entries(MAX_CPU_KEYS, 0);

/// User and kernel stacks, referenced by id from [`CPU_SAMPLES`].
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// The top of the user stack when each user stack id was first recorded.
#[map]
static STACK_TOPS: HashMap<i32, StackTopRaw> = HashMap::with_max_entries(MAX_STACKS, 0);

/// Scratch space for a [`StackTopRaw`], too large for the 512-byte BPF stack.
#[map]
static STACK_TOP_SCRATCH: PerCpuArray<StackTopRaw> = PerCpuArray::with_max_entries(1, 0);

/// What was seen and what was lost, per CPU; indices are in [`counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Processes already announced to userspace; LRU so it never fills up.
#[map]
static SEEN_PIDS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(MAX_SEEN_PIDS, 0);

/// Announcements to userspace: a process to snapshot while it lives.
#[map]
static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(PROC_EVENTS_BYTES, 0);

#[inline(always)]
fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and this program cannot be preempted by itself on one CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn is_target(tgid: u32) -> bool {
    // SAFETY: a read of a global that userspace sets before load.
    let filter = unsafe { core::ptr::read_volatile(&FILTER_PIDS) };
    // SAFETY: the value is only checked for presence.
    filter == 0 || unsafe { TARGETS.get(&tgid) }.is_some()
}

/// Samples the stacks of whatever runs on this CPU at each `cpu-clock` tick.
#[perf_event]
pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
    count(counter::TICKS);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    if tid == 0 {
        count(counter::IDLE);
        return 0;
    }
    if !is_target(tgid) {
        count(counter::FILTERED);
        return 0;
    }
    let user_stack_id = stack_id(&ctx, BPF_F_USER_STACK as u64, counter::LOST_USER_STACK);
    let kernel_stack_id = stack_id(&ctx, 0, counter::LOST_KERNEL_STACK);
    let key = CpuKey {
        pid: tgid,
        tid,
        user_stack_id,
        kernel_stack_id,
    };
    record(&ctx, &key);
    announce(tgid);
    0
}

#[inline(always)]
fn stack_id(ctx: &PerfEventContext, flags: u64, lost: u32) -> i32 {
    match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => id as i32,
        Err(err) => {
            // -EFAULT (no user stack, as for kernel threads) is not a loss.
            if err == -EEXIST || err == -ENOMEM {
                count(lost);
            }
            err
        }
    }
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
    match CPU_SAMPLES.insert(key, &value, BPF_NOEXIST as u64) {
        Ok(()) => {
            count(counter::RECORDED);
            save_stack_top(key.user_stack_id);
        }
        Err(_) => {
            count(counter::LOST_AGG_FULL);
            warn!(ctx, "cpu sample map full: sample of pid {} lost", key.pid);
        }
    }
}

/// Copies the top of the current thread's user stack the first time a user stack id is
/// recorded: it lets userspace find the caller of a leaf function that keeps no frame pointer.
#[inline(always)]
fn save_stack_top(user_stack_id: i32) {
    // SAFETY: presence check only.
    if user_stack_id < 0 || unsafe { STACK_TOPS.get(&user_stack_id) }.is_some() {
        return;
    }
    let Some(top) = STACK_TOP_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the scratch slot is this CPU's; the task and its saved user registers are
    // valid while it runs, and every read goes through a probe-read helper.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as usize;
        let Ok(sp) = bpf_probe_read_kernel((regs + PT_REGS_SP) as *const u64) else {
            return;
        };
        (*top).sp = sp;
        let words = &mut (*top).words;
        let bytes = core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), STACK_TOP_WORDS * 8);
        if bpf_probe_read_user_buf(sp as *const u8, bytes).is_err() {
            return;
        }
        let _ = STACK_TOPS.insert(&user_stack_id, &*top, BPF_NOEXIST as u64);
    }
}

/// Tells userspace about a process the first time it is sampled, so that its mappings are
/// read while it still exists.
#[inline(always)]
fn announce(tgid: u32) {
    // SAFETY: presence check only.
    if unsafe { SEEN_PIDS.get(&tgid) }.is_some() {
        return;
    }
    if SEEN_PIDS.insert(&tgid, &1, BPF_NOEXIST as u64).is_err() {
        return; // Another CPU announced it.
    }
    let event = ProcEvent {
        kind: proc_event::FIRST_SAMPLE,
        pid: tgid,
    };
    if PROC_EVENTS.output::<ProcEvent>(&event, 0).is_err() {
        count(counter::LOST_PROC_EVENTS);
    }
}

/// Follows forks: a child of a target becomes a target.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    // SAFETY: a read of a global that userspace sets before load.
    if unsafe { core::ptr::read_volatile(&FILTER_PIDS) } == 0 {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: presence check only.
    if unsafe { TARGETS.get(&parent) }.is_none() {
        return 0;
    }
    // SAFETY: a read of a global that userspace sets before load.
    let offset = unsafe { core::ptr::read_volatile(&FORK_CHILD_PID_OFFSET) } as usize;
    // SAFETY: the offset comes from this tracepoint's format file.
    let Ok(child) = (unsafe { ctx.read_at::<i32>(offset) }) else {
        return 0;
    };
    // A new thread also passes here with its tid as `child`; the entry is unused (the filter
    // matches on tgid) and is removed when the thread exits.
    if TARGETS.insert(&(child as u32), &1, 0).is_ok() {
        count(counter::FORKS_FOLLOWED);
        debug!(&ctx, "following fork {} -> {}", parent, child);
    } else {
        count(counter::LOST_FORKS);
        warn!(&ctx, "target map full: child {} of {} not followed", child, parent);
    }
    0
}

/// Forgets a process's announced mappings when it execs, so its next sample re-announces it.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = SEEN_PIDS.remove(&tgid);
    0
}

/// Drops thread entries the fork tracepoint added, so the target map does not fill up.
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // A process entry (tid == tgid) stays: other threads may outlive the main thread.
    if tid != tgid {
        let _ = TARGETS.remove(&tid);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
