//! The blocking profile: futex waits by call site and futex address, with their time and how
//! they ended. `syscalls.rs` pairs entry and exit.
//!
//! The site is recorded at entry (so a wait still in progress when the run ends is known),
//! keyed by registers like an I/O call site, with one wait in `BLOCK_STACK_SAMPLE_EVERY`
//! taking the full stack; the time and outcome are added at exit, and so is who woke the
//! wait (noted by `futex_waking`), which tells contention from idle threads in userspace.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_get_current_task},
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap},
    programs::BtfTracePointContext,
};
use profiler_common::{
    BLOCK_STACK_SAMPLE_EVERY, BlockKey, BlockValue, BlockWake, BlockWakeKey, COMM_LEN, InFlight,
    MAX_BLOCK_KEYS, MAX_BLOCK_WAKERS, MAX_FUTEX_SLEEPERS, counter, wait_outcome,
};

use crate::shared::{
    Context, Site, count, current_ids, notify_new_key, room_for_repeat, send_sample,
};

const EAGAIN: i64 = 11;
const EINTR: i64 = 4;
const ETIMEDOUT: i64 = 110;
/// The kernel-internal "restart the syscall" codes a signal leaves behind.
const ERESTARTSYS: i64 = 512;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// Waits by site and futex.
#[map]
static BLOCK_WAITS: HashMap<BlockKey, BlockValue> =
    HashMap::with_max_entries(MAX_BLOCK_KEYS, BPF_F_NO_PREALLOC);

/// Who woke futex waits, by site and waker.
#[map]
static BLOCK_WAKERS: HashMap<BlockWakeKey, BlockWake> =
    HashMap::with_max_entries(MAX_BLOCK_WAKERS, BPF_F_NO_PREALLOC);

/// The window: `[start, end]` on the monotonic clock, 0 until userspace opens or closes it.
/// Only the part of a wait inside it counts, so blocked time never exceeds threads times
/// the window (waits that ended after it, before the maps were read, came out longer).
#[map]
static BLOCK_WINDOW: Array<u64> = Array::with_max_entries(2, 0);

/// Target threads in a futex wait, by `task_struct` address (what `sched_waking` is given):
/// their waker as `pid << 32 | tid`, or 0 until one wakes them. Preallocated, since every
/// wait adds and removes its entry.
#[map]
static FUTEX_SLEEPERS: HashMap<u64, u64> = HashMap::with_max_entries(MAX_FUTEX_SLEEPERS, 0);

/// Notes who wakes a target thread that sleeps in a futex wait: the thread that released
/// the lock, signalled the condition variable or posted the semaphore.
#[btf_tracepoint(function = "sched_waking")]
pub fn futex_waking(ctx: BtfTracePointContext) -> u32 {
    let wakee: u64 = ctx.arg(0);
    if let Some(waker) = FUTEX_SLEEPERS.get_ptr_mut(&wakee) {
        let (pid, tid) = current_ids();
        // SAFETY: a map value; the first waker wins, and a second one racing it writes a
        // value of the same kind.
        unsafe {
            if *waker == 0 {
                *waker = (u64::from(pid) << 32) | u64::from(tid);
            }
        }
    }
    0
}

/// Records the site of a wait that is starting, sampling its stack.
#[inline(always)]
pub fn on_enter(ctx: &BtfTracePointContext, entry: &InFlight) {
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    if FUTEX_SLEEPERS.insert(&task, &0, BPF_ANY as u64).is_err() {
        count(counter::LOST_BLOCK_WAKERS);
    }
    let key = BlockKey::of(entry);
    if let Some(value) = BLOCK_WAITS.get_ptr(&key) {
        // SAFETY: the key holds the thread id, so only this CPU updates the entry now.
        let waits: u64 = unsafe { (*value).waits.iter().sum() };
        if waits % BLOCK_STACK_SAMPLE_EVERY == 0 {
            sample_stack(ctx, &key, true);
        }
        return;
    }
    let value = BlockValue {
        waits: [0; wait_outcome::COUNT],
        nanos: [0; wait_outcome::COUNT],
        first_ns: 0,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    if BLOCK_WAITS
        .insert(&key, &value, BPF_NOEXIST as u64)
        .is_err()
    {
        count(counter::LOST_BLOCK_FULL);
        return;
    }
    sample_stack(ctx, &key, false);
    notify_new_key(entry.pid, entry.ip, -1);
}

/// Adds a finished wait's time in the window to its site, by how it ended, at `now`.
#[inline(always)]
pub fn on_exit(entry: &InFlight, result: i64, now: u64) {
    let outcome = match -result {
        0 => wait_outcome::WOKEN,
        _ if result >= 0 => wait_outcome::WOKEN,
        ETIMEDOUT => wait_outcome::TIMED_OUT,
        EINTR | ERESTARTSYS | ERESTART_RESTARTBLOCK => wait_outcome::INTERRUPTED,
        EAGAIN => wait_outcome::NO_WAIT,
        _ => wait_outcome::NO_WAIT,
    };
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: a map value of this thread's own entry.
    let waker = FUTEX_SLEEPERS.get_ptr(&task).map_or(0, |w| unsafe { *w });
    let _ = FUTEX_SLEEPERS.remove(&task);
    let open = BLOCK_WINDOW.get(0).copied().unwrap_or(0);
    let close = BLOCK_WINDOW.get(1).copied().unwrap_or(0);
    let start = entry.start_ns.max(open);
    let end = if close == 0 { now } else { now.min(close) };
    if open == 0 || end <= start {
        return; // Before the window opened, or after it closed.
    }
    let nanos = end - start;
    let site = BlockKey::of(entry);
    let Some(value) = BLOCK_WAITS.get_ptr_mut(&site) else {
        return; // The site was lost at entry (map full), and counted there.
    };
    count(counter::BLOCK_WAITS);
    // SAFETY: the key holds the thread id, so only this CPU updates the entry now.
    unsafe {
        (*value).waits[outcome] += 1;
        (*value).nanos[outcome] += nanos;
        if (*value).first_ns == 0 && outcome != wait_outcome::NO_WAIT {
            (*value).first_ns = entry.start_ns;
        }
    }
    // A wake from an interrupt (tid 0) names no thread; a wait that timed out or was
    // interrupted was not handed anything.
    if outcome != wait_outcome::WOKEN || waker as u32 == 0 {
        return;
    }
    let key = BlockWakeKey {
        site,
        waker_pid: (waker >> 32) as u32,
        waker_tid: waker as u32,
    };
    if let Some(wake) = BLOCK_WAKERS.get_ptr_mut(&key) {
        // SAFETY: the key holds the waiting thread's id, so only this CPU updates it now.
        unsafe {
            (*wake).waits += 1;
            (*wake).nanos += nanos;
            (*wake).last_ns = now;
        }
    } else if BLOCK_WAKERS
        .insert(
            &key,
            &BlockWake {
                waits: 1,
                nanos,
                last_ns: now,
            },
            BPF_NOEXIST as u64,
        )
        .is_err()
    {
        count(counter::LOST_BLOCK_WAKERS);
    }
}

/// Sends the current stack to userspace as one sample of the wait site `site`.
/// A `repeat` (a known site's one in 64) yields when the ring is half full.
#[inline(always)]
fn sample_stack(ctx: &BtfTracePointContext, site: &BlockKey, repeat: bool) {
    if repeat && !room_for_repeat() {
        count(counter::LOST_BLOCK_STACK);
        return;
    }
    if send_sample(ctx, Context::Syscall, Site::Block(site)) {
        count(counter::BLOCK_STACKS);
    } else {
        count(counter::LOST_BLOCK_STACK);
    }
}
