//! Maps and helpers every program uses: the target filter, the stack map, counters, and
//! process announcements.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user_buf,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf, StackTrace},
    programs::tracing::StackIdContext,
};
use profiler_common::{
    MAX_STACKS, MAX_TARGETS, PROC_EVENTS_BYTES, ProcEvent, STACK_TOP_WORDS, StackTopRaw, counter,
    proc_event,
};

pub const EEXIST: i32 = 17;
const ENOMEM: i32 = 12;
/// Offsets of `bp` and `sp` in x86-64's `struct pt_regs` (r15, r14, r13, r12, bp, ...,
/// orig_ax, ip, cs, flags, sp, ss).
const PT_REGS_BP: usize = 4 * 8;
const PT_REGS_IP: usize = 16 * 8;
const PT_REGS_SP: usize = 19 * 8;

/// Non-zero when only the pids in [`TARGETS`] are profiled; set by userspace at load time.
#[unsafe(no_mangle)]
static FILTER_PIDS: u8 = 0;

/// The processes to profile (tgid -> 1), filled by userspace and by the fork tracepoint.
#[map]
pub static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// User and kernel stacks of every profile, referenced by id from the aggregation maps.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// Scratch space for a [`StackTopRaw`], too large for the 512-byte BPF stack.
#[map]
static STACK_TOP_SCRATCH: PerCpuArray<StackTopRaw> = PerCpuArray::with_max_entries(1, 0);

/// What was seen and what was lost, per CPU; indices are in [`counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Announcements to userspace: a process to snapshot while it lives.
#[map]
static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(PROC_EVENTS_BYTES, 0);

/// Adds one to a counter of this CPU.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and a program cannot be preempted by itself on one CPU.
        unsafe { *slot += 1 };
    }
}

/// Whether only targets are profiled.
#[inline(always)]
pub fn filtering() -> bool {
    // SAFETY: a read of a global that userspace sets before load.
    unsafe { core::ptr::read_volatile(&FILTER_PIDS) != 0 }
}

/// Whether process `tgid` is profiled.
#[inline(always)]
pub fn is_target(tgid: u32) -> bool {
    // SAFETY: the value is only checked for presence.
    !filtering() || unsafe { TARGETS.get(&tgid) }.is_some()
}

/// The current (process id, thread id).
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// The id of the current stack in the shared stack map, or the negative error, counting
/// collisions and a full map in counter `lost`. `-EFAULT` (no user stack, as for kernel
/// threads) is not a loss.
#[inline(always)]
pub fn stack_id<C: StackIdContext>(ctx: &C, flags: u64, lost: u32) -> i32 {
    match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => id as i32,
        Err(err) => {
            if err == -EEXIST || err == -ENOMEM {
                count(lost);
            }
            err
        }
    }
}

/// Copies the top of the current thread's user stack into `tops` under `key`, the first
/// time an aggregation key is recorded: it lets userspace find the callers a frame-pointer
/// walk skipped or lost (a leaf without a frame pointer, or one that uses `rbp` for data).
/// Kept per key, not per stack id: a walk cut short at the leaf gives many real stacks one id.
#[inline(always)]
pub fn save_stack_top<K>(tops: &HashMap<K, StackTopRaw>, key: &K) {
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
        (*top).bp = bpf_probe_read_kernel((regs + PT_REGS_BP) as *const u64).unwrap_or(0);
        let words = &mut (*top).words;
        let bytes =
            core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), STACK_TOP_WORDS * 8);
        if bpf_probe_read_user_buf(sp as *const u8, bytes).is_err() {
            return;
        }
        let _ = tops.insert(key, &*top, BPF_NOEXIST as u64);
    }
}

/// Tells userspace that process `tgid` recorded a new key at user address `ip` (with
/// descriptor `fd`, or -1), so it can read what it needs while the process lives; counted
/// when the ring buffer is full.
#[inline(always)]
pub fn notify_new_key(tgid: u32, ip: u64, fd: i64) {
    let event = ProcEvent {
        kind: proc_event::NEW_KEY,
        pid: tgid,
        ip,
        fd,
    };
    if PROC_EVENTS.output::<ProcEvent>(&event, 0).is_err() {
        count(counter::LOST_PROC_EVENTS);
    }
}

/// The current task's user instruction pointer, from its saved user registers.
#[inline(always)]
pub fn user_ip() -> u64 {
    // SAFETY: the task's saved user registers are valid while it runs; a probe read.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as usize;
        bpf_probe_read_kernel((regs + PT_REGS_IP) as *const u64).unwrap_or(0)
    }
}

/// Counts one more sighting of the stack in `key` (a call site and a user stack id) in the
/// sample map `samples`; the first sighting also keeps the stack's top in `tops`.
#[inline(always)]
pub fn count_stack_sample<K>(
    samples: &HashMap<K, u64>,
    tops: &HashMap<K, StackTopRaw>,
    key: &K,
    lost: u32,
) {
    if let Some(seen) = samples.get_ptr_mut(key) {
        // SAFETY: the key holds the thread id, so only this CPU updates the entry now.
        unsafe { *seen += 1 };
        return;
    }
    if samples.insert(key, &1, BPF_NOEXIST as u64).is_err() {
        count(lost);
        return;
    }
    save_stack_top(tops, key);
}
