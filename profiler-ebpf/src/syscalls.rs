//! The `sys_enter`/`sys_exit` tracepoints shared by the I/O and blocking profiles: one pair
//! of programs, since every program on these tracepoints runs on every syscall of the host.
//!
//! The BTF-enabled tracepoints need no tracefs. (fentry/fexit on the `__x64_sys_*` functions
//! would cost only the traced syscalls, but kernels that restrict ftrace refuse them.)

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{btf_tracepoint, map},
    maps::Array,
    programs::BtfTracePointContext,
};
use profiler_common::{IN_FLIGHT_SLOTS, InFlight, counter, futex_syscall, io_syscall, thread_fact};

use crate::shared::{GO_PROCESSES, count, current_ids, is_target};
use crate::site::site_registers;
use crate::{block, io, python, regs};

/// Non-zero when the I/O profile is collected; set by userspace at load time.
#[unsafe(no_mangle)]
static TRACE_IO: u8 = 0;

/// Non-zero when the blocking profile is collected; set by userspace at load time.
#[unsafe(no_mangle)]
static TRACE_BLOCK: u8 = 0;

/// x86-64 syscall numbers of the traced I/O syscalls, in the order of `io_syscall::NAMES`
/// (`sendfile64` of the C library is `sendfile`, 40, on x86-64).
const IO_NUMBERS: [i64; io_syscall::COUNT] = [
    0, 1, 17, 18, 19, 20, 295, 296, 327, 328, 45, 44, 47, 46, 299, 307, 40, 275, 276, 278, 326,
];
const NR_FUTEX: i64 = 202;
const NR_FUTEX_WAITV: i64 = 449;
const NR_FUTEX_WAIT: i64 = 455;

/// `futex` operations that wait: WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2.
const FUTEX_WAIT_OPS: [u64; 5] = [0, 6, 9, 11, 13];
/// Masks off FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME.
const FUTEX_CMD_MASK: u64 = !(128 | 256);

/// Syscalls in progress, by thread id modulo the table size.
#[map]
pub static IN_FLIGHT: Array<InFlight> = Array::with_max_entries(IN_FLIGHT_SLOTS, 0);

#[inline(always)]
fn enabled(flag: &u8) -> bool {
    // SAFETY: a read of a global that userspace sets before load.
    unsafe { core::ptr::read_volatile(flag) != 0 }
}

/// Notes the entry of a traced syscall of a target thread.
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> u32 {
    let id: i64 = ctx.arg(1);
    let syscall = traced(id);
    if syscall == u32::MAX {
        return 0;
    }
    let (tgid, tid) = current_ids();
    let Some(slot) = IN_FLIGHT.get_ptr_mut(tid & (IN_FLIGHT_SLOTS - 1)) else {
        return 0;
    };
    // SAFETY: a slot of a global array, read by this thread's programs only (another
    // thread sharing the slot is told by its tid).
    let Some((facts, facts_left)) = facts_of(unsafe { &*slot }, tgid, tid) else {
        return 0;
    };
    let regs: *const u64 = ctx.arg(0);
    let mut entry = InFlight {
        tid,
        syscall,
        pid: tgid,
        nr: id as u32,
        facts,
        facts_left,
        ..InFlight::default()
    };
    if syscall >= futex_syscall::FUTEX {
        // SAFETY: the tracepoint's BTF-typed pt_regs argument: the verifier checks these
        // loads against the struct's layout.
        unsafe {
            if syscall == futex_syscall::FUTEX
                && !FUTEX_WAIT_OPS.contains(&(*regs.add(regs::SI / 8) & FUTEX_CMD_MASK))
            {
                return 0; // Wakes and requeues are not waits.
            }
            entry.uaddr = *regs.add(regs::DI / 8);
            if syscall == futex_syscall::FUTEX_WAITV {
                // struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved; }[]
                entry.uaddr = bpf_probe_read_user((entry.uaddr + 8) as *const u64).unwrap_or(0);
            }
        }
        let site = site_registers(regs);
        (entry.ip, entry.sp, entry.bp, entry.ret) = (site.ip, site.sp, site.bp, site.ret);
        // Waits at two Python lines of one thread on one lock have equal registers.
        entry.python = python::wait_hash(tgid, tid);
        block::on_enter(&ctx, &entry);
    } else {
        entry.requested = io::requested(syscall, regs);
    }
    // SAFETY: as above; a thread is in one syscall at a time. The clock is read last so
    // the profiler's own work is not counted in the call's time.
    unsafe {
        if (*slot).start_ns != 0 && (*slot).tid != tid {
            count(counter::LOST_SLOT);
        }
        entry.start_ns = bpf_ktime_get_ns();
        *slot = entry;
    }
    0
}

/// The index of syscall `id` among the traced ones ([`io_syscall::NAMES`], then
/// [`futex_syscall`]), or `u32::MAX` when its profile is not collected.
#[inline(always)]
fn traced(id: i64) -> u32 {
    let mut syscall = u32::MAX;
    if enabled(&TRACE_IO) {
        for (index, &number) in IO_NUMBERS.iter().enumerate() {
            if id == number {
                syscall = index as u32;
            }
        }
    }
    if enabled(&TRACE_BLOCK) {
        match id {
            NR_FUTEX => syscall = futex_syscall::FUTEX,
            NR_FUTEX_WAITV => syscall = futex_syscall::FUTEX_WAITV,
            NR_FUTEX_WAIT => syscall = futex_syscall::FUTEX_WAIT,
            _ => {}
        }
    }
    syscall
}

/// The facts of thread `tid` of process `tgid` for its call now, and how many calls more may
/// use them, from its slot (`slot`, as its previous traced call left it) while they last;
/// else looked up. None when the process is not a target. Only a target's facts are kept:
/// a process is added to the targets, and a thread that was not one is looked up again.
#[inline(always)]
fn facts_of(slot: &InFlight, tgid: u32, tid: u32) -> Option<(u32, u32)> {
    if slot.tid == tid
        && slot.pid == tgid
        && slot.facts & thread_fact::TARGET != 0
        && slot.facts_left > 0
    {
        return Some((slot.facts, slot.facts_left - 1));
    }
    if !is_target(tgid) {
        return None;
    }
    // SAFETY: the value is only checked for presence.
    let go = unsafe { GO_PROCESSES.get(&tgid) }.is_some();
    let facts = thread_fact::TARGET | if go { thread_fact::GO } else { 0 };
    Some((facts, thread_fact::CALLS))
}

/// Pairs a traced syscall's return with its entry and hands it to its profile.
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> u32 {
    let (_, tid) = current_ids();
    let Some(slot) = IN_FLIGHT.get_ptr_mut(tid & (IN_FLIGHT_SLOTS - 1)) else {
        return 0;
    };
    let regs: *const u64 = ctx.arg(0);
    // SAFETY: as in `sys_enter`; `orig_ax` of the BTF-typed pt_regs is the call's number.
    let entry = unsafe {
        if (*slot).tid != tid || (*slot).start_ns == 0 {
            return 0; // Not a traced call of a target, or entered before tracing began.
        }
        let entry = *slot;
        (*slot).start_ns = 0;
        // A traced call entered before this program was attached left its entry here
        // unpaired; the thread's next exit is another call's (an epoll_wait's, which came
        // out as a 15 ms read of the epoll descriptor at the window's start).
        if *regs.add(regs::ORIG_AX / 8) as u32 != entry.nr {
            return 0;
        }
        entry
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let nanos = now.saturating_sub(entry.start_ns);
    let result: i64 = ctx.arg(1);
    if entry.syscall >= futex_syscall::FUTEX {
        block::on_exit(&entry, result, now);
    } else {
        io::on_exit(&ctx, &entry, result, nanos);
    }
    0
}
