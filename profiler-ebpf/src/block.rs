//! The blocking profile: futex waits by call site and futex address, with their time and how
//! they ended. `syscalls.rs` pairs entry and exit.
//!
//! The site is recorded at entry (so a wait still in progress when the run ends is known),
//! keyed by registers like an I/O call site, with one wait in `BLOCK_STACK_SAMPLE_EVERY`
//! taking the full stack; the time and outcome are added at exit.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_get_current_comm,
    macros::map,
    maps::HashMap,
    programs::BtfTracePointContext,
};
use profiler_common::{
    BLOCK_STACK_SAMPLE_EVERY, BlockKey, BlockValue, COMM_LEN, InFlight, MAX_BLOCK_KEYS, counter,
    wait_outcome,
};

use crate::shared::{Context, Site, count, notify_new_key, send_sample};

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

/// Records the site of a wait that is starting, sampling its stack.
#[inline(always)]
pub fn on_enter(ctx: &BtfTracePointContext, entry: &InFlight) {
    let key = BlockKey::of(entry);
    if let Some(value) = BLOCK_WAITS.get_ptr(&key) {
        // SAFETY: the key holds the thread id, so only this CPU updates the entry now.
        let waits: u64 = unsafe { (*value).waits.iter().sum() };
        if waits % BLOCK_STACK_SAMPLE_EVERY == 0 {
            sample_stack(ctx, &key);
        }
        return;
    }
    let value = BlockValue {
        waits: [0; wait_outcome::COUNT],
        nanos: [0; wait_outcome::COUNT],
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    if BLOCK_WAITS
        .insert(&key, &value, BPF_NOEXIST as u64)
        .is_err()
    {
        count(counter::LOST_BLOCK_FULL);
        return;
    }
    sample_stack(ctx, &key);
    notify_new_key(entry.pid, entry.ip, -1);
}

/// Adds a finished wait's time to its site, by how it ended.
#[inline(always)]
pub fn on_exit(entry: &InFlight, result: i64, nanos: u64) {
    let outcome = match -result {
        0 => wait_outcome::WOKEN,
        _ if result >= 0 => wait_outcome::WOKEN,
        ETIMEDOUT => wait_outcome::TIMED_OUT,
        EINTR | ERESTARTSYS | ERESTART_RESTARTBLOCK => wait_outcome::INTERRUPTED,
        EAGAIN => wait_outcome::NO_WAIT,
        _ => wait_outcome::NO_WAIT,
    };
    let Some(value) = BLOCK_WAITS.get_ptr_mut(&BlockKey::of(entry)) else {
        return; // The site was lost at entry (map full), and counted there.
    };
    count(counter::BLOCK_WAITS);
    // SAFETY: the key holds the thread id, so only this CPU updates the entry now.
    unsafe {
        (*value).waits[outcome] += 1;
        (*value).nanos[outcome] += nanos;
    }
}

/// Sends the current stack to userspace as one sample of the wait site `site`.
#[inline(always)]
fn sample_stack(ctx: &BtfTracePointContext, site: &BlockKey) {
    if send_sample(ctx, Context::Syscall, Site::Block(site)) {
        count(counter::BLOCK_STACKS);
    } else {
        count(counter::LOST_BLOCK_STACK);
    }
}
