//! The off-CPU profile: every switch-out of a traced thread timed to its wakeup and its
//! switch-in, summed exactly per wait site in the kernel; the stacks of the first wait of a
//! site and of one wait in [`OFFCPU_STACK_SAMPLE_EVERY`] sent with their own times, and the
//! stacks of whoever woke a sampled wait.
//!
//! A thread's state is keyed by its `task_struct` address, so nothing is read out of the
//! task (its ids come from the helpers when it is current). A switch-in costs one per-CPU
//! write: the thread switched in is the next to switch out on that CPU, which reads it back.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_ktime_get_ns,
        generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use profiler_common::{
    COMM_LEN, MAX_OFFCPU_DONE, MAX_OFFCPU_SITES, MAX_OFFCPU_THREADS, NO_SYSCALL,
    OFFCPU_STACK_SAMPLE_EVERY, OFFCPU_STACKS_PER_CPU_SECOND, OffCpuKey, OffCpuRate, OffCpuSwitchIn,
    OffCpuThread, OffCpuValue, OffCpuWait, counter, offcpu_class,
};

use crate::shared::{
    Context, Site, count, current_ids, is_target, notify_new_key, send_sample, send_wait_end,
};
use crate::site::site_registers_of;
use crate::{python, regs};

/// `TASK_DEAD` in `__state`: the thread's last switch-out, never followed by a switch-in.
const TASK_DEAD: u64 = 0x80;
/// `TASK_UNINTERRUPTIBLE` in `__state`.
const TASK_UNINTERRUPTIBLE: u64 = 0x2;
/// `__TASK_STOPPED | __TASK_TRACED` in `__state`.
const TASK_STOPPED_OR_TRACED: u64 = 0x4 | 0x8;

/// x86-64 syscalls whose first argument is a descriptor: the read/write family, sockets,
/// syncs, splices, locks and the epoll and io_uring waits. Its kind (file, pipe, socket)
/// decides the wait's reason.
const FD_SYSCALLS: [i64; 30] = [
    0, 1, 17, 18, 19, 20, 295, 296, 327, 328, // read .. pwritev2
    45, 44, 47, 46, 299, 307, 43, 288, 42, // recvfrom .. connect
    74, 75, 277, 40, 275, 276, 73, // fsync .. flock
    232, 281, 441, 426, // epoll_wait, epoll_pwait, epoll_pwait2, io_uring_enter
];

/// Off-CPU waits by site.
#[map]
static OFFCPU_SITES: HashMap<OffCpuKey, OffCpuValue> =
    HashMap::with_max_entries(MAX_OFFCPU_SITES, BPF_F_NO_PREALLOC);

/// The threads followed, by `task_struct` address.
#[map]
static OFFCPU_THREADS: HashMap<u64, OffCpuThread> =
    HashMap::with_max_entries(MAX_OFFCPU_THREADS, BPF_F_NO_PREALLOC);

/// Threads that exited, by `pid << 32 | tid` (a task's address is reused after its exit).
#[map]
static OFFCPU_DONE: HashMap<u64, OffCpuThread> =
    HashMap::with_max_entries(MAX_OFFCPU_DONE, BPF_F_NO_PREALLOC);

/// Each CPU's latest switch-in.
#[map]
static OFFCPU_SWITCH_IN: PerCpuArray<OffCpuSwitchIn> = PerCpuArray::with_max_entries(1, 0);

/// The window's end, written by userspace when it closes (0 while it is open).
#[map]
static OFFCPU_WINDOW_END: Array<u64> = Array::with_max_entries(1, 0);

/// Where a new thread's state is built before it is inserted.
#[map]
static OFFCPU_NEW_THREAD: PerCpuArray<OffCpuThread> = PerCpuArray::with_max_entries(1, 0);

/// Each CPU's stack samples in the current second.
#[map]
static OFFCPU_RATE: PerCpuArray<OffCpuRate> = PerCpuArray::with_max_entries(1, 0);

/// Whether `now` is after the window: nothing is added then, so totals end with it.
#[inline(always)]
fn after_window(now: u64) -> bool {
    // SAFETY: a plain read of a slot userspace writes once.
    let end = OFFCPU_WINDOW_END.get(0).copied().unwrap_or(0);
    end != 0 && now > end
}

/// Times the switch-out of the current thread and notes the switch-in of `next`.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if after_window(now) {
        return 0;
    }
    let preempt: u64 = ctx.arg(0);
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    let Some(slot) = OFFCPU_SWITCH_IN.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; the switch runs with interrupts off.
    let last = unsafe { *slot };
    switch_out(
        &ctx,
        now,
        preempt & 0xff != 0,
        prev_state & 0xffff_ffff,
        &last,
    );
    // SAFETY: as above.
    unsafe {
        (*slot).task = next;
        (*slot).at_ns = now;
    }
    0
}

/// The current thread leaves the CPU: its previous wait (ended at its switch-in on this
/// CPU, `last`) is added to its site, and a new one begins.
#[inline(always)]
fn switch_out(
    ctx: &BtfTracePointContext,
    now: u64,
    preempt: bool,
    prev_state: u64,
    last: &OffCpuSwitchIn,
) {
    if prev_state & TASK_DEAD != 0 {
        return;
    }
    let (tgid, tid) = current_ids();
    if tid == 0 {
        return; // The idle task.
    }
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let switched_in = if last.task == task { last.at_ns } else { 0 };
    let tracked = OFFCPU_THREADS.get_ptr_mut(&task);
    if tracked.is_none() && !is_target(tgid) {
        return; // Before any register is read: most switches of a host are not targets'.
    }
    // SAFETY: helpers without arguments.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as usize;
    let user = UserRegs::read(regs);
    let user_mode = user.cs & 3 == 3;
    let state = match tracked {
        Some(state) => state,
        None => {
            // Kernel threads are followed only when they belong to a target (io_uring
            // workers), never host-wide.
            if !user_mode && !crate::shared::filtering() {
                return;
            }
            let Some(fresh) = fresh_thread() else {
                return;
            };
            // SAFETY: this CPU's scratch entry, zeroed by `fresh_thread`.
            unsafe {
                (*fresh).pid = tgid;
                (*fresh).tid = tid;
                (*fresh).first_in_ns = switched_in;
                (*fresh).first_out_ns = if switched_in == 0 { now } else { 0 };
                (*fresh).comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
            }
            // SAFETY: as above; the map copies the value.
            if OFFCPU_THREADS
                .insert(&task, unsafe { &*fresh }, BPF_NOEXIST as u64)
                .is_err()
            {
                count(counter::LOST_OFFCPU_THREADS_FULL);
                return;
            }
            match OFFCPU_THREADS.get_ptr_mut(&task) {
                Some(state) => state,
                None => return,
            }
        }
    };
    // SAFETY: the entry of the current thread: only this CPU touches it now, but for a
    // waker, which writes only the wake fields of a thread that is switched out.
    let state = unsafe { &mut *state };
    if state.exit_ns != 0 {
        return; // Past its exit: its budget was kept then.
    }
    catch_up(state, tgid, tid, now, switched_in);
    begin_wait(ctx, state, now, preempt, prev_state, &user);
}

/// Brings the current thread's state up to `now`, as it leaves the CPU or exits: its ids
/// and name if it was born in the window (`sched_wakeup_new` cannot read them), its last
/// wait settled at its switch-in (`switched_in`, 0 when it has run since before the
/// window), and its time on CPU since.
#[inline(always)]
fn catch_up(state: &mut OffCpuThread, tgid: u32, tid: u32, now: u64, switched_in: u64) {
    if state.pid == 0 {
        state.pid = tgid;
        state.tid = tid;
        state.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    }
    if state.out_ns != 0 {
        settle(state, if switched_in != 0 { switched_in } else { now });
    }
    if switched_in != 0 {
        state.oncpu_ns += now.saturating_sub(switched_in);
    }
}

/// Starts the current thread's wait: its site from the scheduler's arguments, its saved
/// user registers and, in a CPython thread, its innermost Python frames; and its stacks
/// when it is sampled.
#[inline(always)]
fn begin_wait(
    ctx: &BtfTracePointContext,
    state: &mut OffCpuThread,
    now: u64,
    preempt: bool,
    prev_state: u64,
    user: &UserRegs,
) {
    let user_mode = user.cs & 3 == 3;
    let mut key = OffCpuKey {
        pid: state.pid,
        tid: state.tid,
        class: offcpu_class::RUNQUEUE,
        syscall: NO_SYSCALL,
        fd: -1,
        ..OffCpuKey::default()
    };
    if !preempt && prev_state != 0 {
        let orig_ax = user.orig_ax as i64;
        key.class = if prev_state & TASK_STOPPED_OR_TRACED != 0 {
            offcpu_class::STOPPED
        } else if !user_mode {
            offcpu_class::NO_USER
        } else if orig_ax < 0 {
            offcpu_class::FAULT
        } else if prev_state & TASK_UNINTERRUPTIBLE != 0 {
            offcpu_class::SYSCALL_D
        } else {
            offcpu_class::SYSCALL_S
        };
        if user_mode {
            if orig_ax >= 0 {
                key.syscall = orig_ax as i32;
                if FD_SYSCALLS.contains(&orig_ax) {
                    key.fd = user.di as i64;
                }
            }
            let bp = read_reg(user.base, regs::BP);
            // Every wait of a Python program waits at one C call with the same registers
            // whatever its Python line; one map lookup (a miss) for any other thread.
            key.python = python::wait_hash(state.pid, state.tid);
            let last = &state.run_site;
            if (user.ip, user.sp, bp, key.python) == (last.ip, last.sp, last.bp, last.python) {
                // The same place as its last wait (a loop): so is the return address above.
                (key.ip, key.sp, key.bp, key.ret) = (last.ip, last.sp, last.bp, last.ret);
            } else {
                let site = site_registers_of(user.ip, user.sp, bp);
                (key.ip, key.sp, key.bp, key.ret) = (site.ip, site.sp, site.bp, site.ret);
            }
        }
    }
    state.seq = state.seq.wrapping_add(1);
    state.out_ns = now;
    // Preempted, it is runnable from the start: no wakeup will come.
    state.wake_ns = if key.class == offcpu_class::RUNQUEUE {
        now
    } else {
        0
    };
    state.waker_pid = 0;
    state.waker_tid = 0;
    state.sampled = 0;
    let mut sample = state.seq % OFFCPU_STACK_SAMPLE_EVERY == 1;
    if key.class == offcpu_class::RUNQUEUE {
        // Summed apart in `runq`: preemptions between the waits of a loop leave its site's
        // sums where they are. The first is sampled.
        sample |= state.runq.waits == 0;
    } else if key != state.run_site {
        flush(state);
        // SAFETY: presence check only.
        if unsafe { OFFCPU_SITES.get(&key) }.is_none()
            && OFFCPU_SITES
                .insert(&key, &OffCpuValue::default(), BPF_NOEXIST as u64)
                .is_ok()
        {
            sample = true;
            notify_new_key(key.pid, key.ip, key.fd);
        }
        // A new site is also where a thread that executed a new program shows its new
        // name; reading it on every switch would cost every switch.
        state.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        state.run_site = key;
    }
    state.site = key;
    if sample && within_rate(now) {
        let wait = OffCpuWait {
            site: key,
            seq: state.seq,
            tid: state.tid,
            ..OffCpuWait::default()
        };
        if send_sample(ctx, Context::Switch, Site::OffCpu(&wait)) {
            state.sampled = 1;
            count(counter::OFFCPU_STACKS);
        } else {
            count(counter::LOST_OFFCPU_STACK);
        }
    }
}

/// Adds the thread's pending wait, which ended when it was switched in at `in_ns`, to its
/// site and its budget; a sampled one also sends its own times.
#[inline(always)]
fn settle(state: &mut OffCpuThread, in_ns: u64) {
    let woke = if state.wake_ns != 0 && state.wake_ns <= in_ns {
        state.wake_ns
    } else {
        in_ns
    };
    let delay = woke.saturating_sub(state.out_ns);
    let runnable = in_ns.saturating_sub(woke);
    state.offcpu_ns += delay;
    state.runnable_ns += runnable;
    // `site` is `run_site` unless the wait was a preemption (see `begin_wait`).
    let sums = if state.site.class == offcpu_class::RUNQUEUE {
        &mut state.runq
    } else {
        &mut state.run
    };
    sums.waits += 1;
    sums.nanos += delay;
    sums.runnable_nanos += runnable;
    let mut key = state.site;
    key.pid = state.pid;
    key.tid = state.tid;
    if state.sampled != 0 {
        let wait = OffCpuWait {
            site: key,
            seq: state.seq,
            tid: state.tid,
            waker_pid: state.waker_pid,
            waker_tid: state.waker_tid,
            delay_ns: delay,
            runnable_ns: runnable,
        };
        if !send_wait_end(state.pid, &wait) {
            count(counter::LOST_OFFCPU_END);
        }
    }
    state.out_ns = 0;
    state.sampled = 0;
}

/// Adds the thread's finished waits at its last site to the aggregation map, as it moves
/// to another site.
#[inline(always)]
fn flush(state: &mut OffCpuThread) {
    if state.run.waits == 0 {
        return;
    }
    let mut key = state.run_site;
    key.pid = state.pid;
    key.tid = state.tid;
    match OFFCPU_SITES.get_ptr_mut(&key) {
        // SAFETY: the key holds the thread id, so only this thread's CPU updates it.
        Some(value) => unsafe {
            (*value).waits += state.run.waits;
            (*value).nanos += state.run.nanos;
            (*value).runnable_nanos += state.run.runnable_nanos;
        },
        None => {
            // A site first seen at its end: a new thread's wait for its first run.
            if OFFCPU_SITES
                .insert(&key, &state.run, BPF_NOEXIST as u64)
                .is_err()
            {
                count(counter::LOST_OFFCPU_SITES_FULL);
            }
        }
    }
    state.run = OffCpuValue::default();
}

/// Notes who woke a traced thread that waits, and takes the waker's stacks when the wait
/// was sampled.
#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking(ctx: BtfTracePointContext) -> u32 {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if after_window(now) {
        return 0;
    }
    let wakee: u64 = ctx.arg(0);
    let Some(state) = OFFCPU_THREADS.get_ptr_mut(&wakee) else {
        return 0;
    };
    // SAFETY: the wakee is switched out (checked), so its own CPU does not touch the entry;
    // two wakers racing write the same kind of values.
    let state = unsafe { &mut *state };
    if state.out_ns == 0 || state.wake_ns != 0 {
        return 0; // Not waiting, or already woken.
    }
    let (pid, tid) = current_ids();
    state.wake_ns = now;
    state.waker_pid = pid;
    state.waker_tid = tid;
    if state.sampled != 0 && within_rate(now) {
        let wait = OffCpuWait {
            site: state.site,
            seq: state.seq,
            tid: state.tid,
            waker_pid: pid,
            waker_tid: tid,
            ..OffCpuWait::default()
        };
        if send_sample(&ctx, Context::Waking, Site::OffCpuWaker(&wait)) {
            count(counter::OFFCPU_STACKS);
        } else {
            count(counter::LOST_OFFCPU_STACK);
        }
    }
    0
}

/// A traced process created a thread or a child: it is runnable from now, and its wait for
/// its first run is counted.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> u32 {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if after_window(now) {
        return 0;
    }
    let (tgid, _) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: helpers without arguments.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as usize;
    if read_reg(regs, regs::CS) & 3 != 3 && !crate::shared::filtering() {
        return 0; // A kernel thread's child, host-wide: not followed.
    }
    let task: u64 = ctx.arg(0);
    let Some(born) = fresh_thread() else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry, zeroed by `fresh_thread`.
    unsafe {
        (*born).born_ns = now;
        (*born).out_ns = now;
        (*born).wake_ns = now;
        (*born).site.class = offcpu_class::RUNQUEUE;
        (*born).site.syscall = NO_SYSCALL;
        (*born).site.fd = -1;
    }
    // Over the entry of an exited thread whose task's address this one reuses.
    // SAFETY: as above; the map copies the value.
    if OFFCPU_THREADS.insert(&task, unsafe { &*born }, 0).is_err() {
        count(counter::LOST_OFFCPU_THREADS_FULL);
    }
    0
}

/// The current thread exits: its last wait and time on CPU are settled and its budget is
/// kept by its ids, since its task's address will be reused.
#[inline(always)]
pub fn on_exit(tgid: u32, tid: u32) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if after_window(now) {
        return;
    }
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let Some(state) = OFFCPU_THREADS.get_ptr_mut(&task) else {
        return;
    };
    let switched_in = match OFFCPU_SWITCH_IN.get(0) {
        Some(last) if last.task == task => last.at_ns,
        _ => 0,
    };
    // SAFETY: the current thread's entry.
    let state = unsafe { &mut *state };
    // A state exists only from a switch-out or a birth in the window, so its time on CPU
    // before either is already accounted (`first_out_ns`, `born_ns`).
    catch_up(state, tgid, tid, now, switched_in);
    state.exit_ns = now;
    let key = (u64::from(tgid) << 32) | u64::from(tid);
    if OFFCPU_DONE.insert(&key, &*state, 0).is_err() {
        count(counter::LOST_OFFCPU_DONE_FULL);
    }
    // The entry stays, marked, so the switches of its last moments do not follow it
    // again; a new thread at the same address replaces it at its birth.
    state.out_ns = 0;
    state.sampled = 0;
}

/// This CPU's scratch thread state, zeroed: a state is too large to build on the BPF
/// stack beside the rest of the switch. The programs that use it run with interrupts off.
#[inline(always)]
fn fresh_thread() -> Option<*mut OffCpuThread> {
    let fresh = OFFCPU_NEW_THREAD.get_ptr_mut(0)?;
    // SAFETY: this CPU's entry; `write_bytes` zeroes a plain-data struct.
    unsafe { core::ptr::write_bytes(fresh, 0, 1) };
    Some(fresh)
}

/// The saved user registers a switch-out reads, `rdi` to `rsp` in one probe read (they
/// are adjacent in `pt_regs`); `rbp` is read apart, only when the site needs it.
struct UserRegs {
    /// Where the task's `pt_regs` are.
    base: usize,
    di: u64,
    orig_ax: u64,
    ip: u64,
    cs: u64,
    sp: u64,
}

// The one read relies on this order in `pt_regs`.
const _: () = assert!(
    regs::ORIG_AX == regs::DI + 8
        && regs::IP == regs::DI + 16
        && regs::CS == regs::DI + 24
        && regs::SP == regs::DI + 40
);

impl UserRegs {
    #[inline(always)]
    fn read(base: usize) -> Self {
        // rdi, orig_ax, rip, cs, eflags, rsp.
        let words: [u64; 6] =
            // SAFETY: a probe read never faults.
            unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((base + regs::DI) as *const [u64; 6]) }
                .unwrap_or([0; 6]);
        Self {
            base,
            di: words[0],
            orig_ax: words[1],
            ip: words[2],
            cs: words[3],
            sp: words[5],
        }
    }
}

/// Reads a saved user register of the current task.
#[inline(always)]
fn read_reg(regs: usize, offset: usize) -> u64 {
    // SAFETY: a probe read never faults.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((regs + offset) as *const u64) }.unwrap_or(0)
}

/// Whether this CPU may send one more stack sample this second; counts it when not.
#[inline(always)]
fn within_rate(now: u64) -> bool {
    let Some(rate) = OFFCPU_RATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot; the programs that use it run with interrupts off.
    unsafe {
        if now.saturating_sub((*rate).second_ns) >= 1_000_000_000 {
            (*rate).second_ns = now;
            (*rate).sent = 0;
        }
        if (*rate).sent >= OFFCPU_STACKS_PER_CPU_SECOND {
            count(counter::OFFCPU_STACKS_RATE_LIMITED);
            return false;
        }
        (*rate).sent += 1;
    }
    true
}
