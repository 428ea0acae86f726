//! Goroutine waits: how long goroutines of traced Go processes stay parked, by park site
//! and wait reason, from uprobes on the Go runtime (userspace attaches them to each Go
//! binary it finds; see `collect/goroutines.rs`).
//!
//! `runtime.gopark` is probed at entry (or on the branch of its stack check, which the
//! kernel emulates rather than single-steps), where the parking goroutine is in R14 (Go's
//! register ABI, Go 1.17+ on x86-64) and its wait reason in CL (the third argument);
//! `runtime.ready` at entry, with the goroutine being made runnable in RAX. Never a
//! uretprobe: goroutine stacks move, and a return probe would corrupt them.
//!
//! Each probe is attached to a binary with a cookie: the offset of `goid` in that binary's
//! `g`, so a process is traced from its first instruction (a launched command too) without
//! userspace having to name it first; the target filter keeps the profiled ones.
//!
//! A park records its start in [`PARKED`], keyed by the goroutine's `g`, and samples the
//! stack (the first park of a site and one in [`GO_STACK_SAMPLE_EVERY`]); `ready` adds
//! the park's time to its site. A goroutine the runtime readies elsewhere (the network
//! poller puts goroutines on run queues directly) is found at its next park and counted
//! as an unseen end; one parked at the end of the run is read by userspace from
//! [`PARKED`] and counted up to the end.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_get_attach_cookie,
    },
    macros::{map, uprobe},
    maps::HashMap,
    programs::ProbeContext,
};
use profiler_common::{
    COMM_LEN, GO_STACK_SAMPLE_EVERY, GoWaitKey, GoWaitValue, MAX_GO_WAIT_KEYS,
    MAX_PARKED_GOROUTINES, Parked, ParkedKey, counter,
};

use crate::shared::{Context, Site, count, room_for_repeat, current_ids, is_target, notify_new_key, send_sample};

/// Goroutines parked and not yet made ready.
#[map]
static PARKED: HashMap<ParkedKey, Parked> = HashMap::with_max_entries(MAX_PARKED_GOROUTINES, 0);

/// Finished goroutine waits by site.
#[map]
static GO_WAITS: HashMap<GoWaitKey, GoWaitValue> =
    HashMap::with_max_entries(MAX_GO_WAIT_KEYS, BPF_F_NO_PREALLOC);

/// `runtime.gopark` entry: a goroutine of a traced process parks.
#[uprobe]
pub fn go_park(ctx: ProbeContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: the helper reads the cookie of the attachment that ran this program.
    let goid_offset = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    // SAFETY: the context of a uprobe is the task's saved user registers.
    let (g, reason, sp, bp) = unsafe {
        let regs = &*ctx.regs;
        (regs.r14, regs.rcx as u8, regs.rsp, regs.rbp)
    };
    let read = |addr: u64| -> u64 {
        // SAFETY: a probe read of user memory, which never faults.
        unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
    };
    let site = GoWaitKey {
        pid: tgid,
        reason: u32::from(reason),
        goid: read(g + goid_offset),
        sp,
        caller: read(sp),
        bp,
        ret: if bp == 0 { 0 } else { read(bp + 8) },
    };
    let key = ParkedKey { pid: tgid, _pad: 0, g };
    // SAFETY: presence check only.
    if unsafe { PARKED.get(&key) }.is_some() {
        count(counter::GO_END_UNSEEN);
    }
    let parked = Parked {
        // SAFETY: a helper without arguments.
        start_ns: unsafe { bpf_ktime_get_ns() },
        site,
    };
    if PARKED.insert(&key, &parked, u64::from(BPF_ANY)).is_err() {
        count(counter::LOST_GO_PARKED_FULL);
        return 0;
    }
    if let Some(value) = GO_WAITS.get_ptr(&site) {
        // SAFETY: the key holds the goroutine id, and a goroutine parks once at a time.
        if unsafe { (*value).waits } % GO_STACK_SAMPLE_EVERY == 0 {
            sample_stack(&ctx, &site, true);
        }
        return 0;
    }
    let value = GoWaitValue {
        waits: 0,
        nanos: 0,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    if GO_WAITS
        .insert(&site, &value, u64::from(BPF_NOEXIST))
        .is_err()
    {
        // Counted when the wait ends (or at the end of the run, if it does not).
        return 0;
    }
    sample_stack(&ctx, &site, false);
    // SAFETY: the context of a uprobe is the task's saved user registers.
    notify_new_key(tgid, unsafe { (*ctx.regs).rip }, -1);
    0
}

/// `runtime.ready` entry: a goroutine is made runnable; its park, if traced, ends.
#[uprobe]
pub fn go_ready(ctx: ProbeContext) -> u32 {
    // Only goroutines a traced park recorded are looked up: no target check needed.
    let (tgid, _) = current_ids();
    // SAFETY: the context of a uprobe is the task's saved user registers.
    let g = unsafe { (*ctx.regs).rax };
    let key = ParkedKey { pid: tgid, _pad: 0, g };
    // SAFETY: the entry is copied out before it is removed.
    let Some(parked) = (unsafe { PARKED.get(&key) }).copied() else {
        return 0;
    };
    let _ = PARKED.remove(&key);
    // SAFETY: a helper without arguments.
    let nanos = unsafe { bpf_ktime_get_ns() }.saturating_sub(parked.start_ns);
    let Some(value) = GO_WAITS.get_ptr_mut(&parked.site) else {
        count(counter::LOST_GO_WAIT_FULL);
        return 0;
    };
    count(counter::GO_WAITS);
    // SAFETY: the key holds the goroutine id, and a goroutine is readied once per park.
    unsafe {
        (*value).waits += 1;
        (*value).nanos += nanos;
    }
    0
}

/// Sends the parking goroutine's stack to userspace as one sample of `site`.
/// A `repeat` (a known site's one in 64) yields when the ring is half full.
#[inline(always)]
fn sample_stack(ctx: &ProbeContext, site: &GoWaitKey, repeat: bool) {
    if repeat && !room_for_repeat() {
        count(counter::LOST_GO_STACK);
        return;
    }
    if send_sample(ctx, Context::Uprobe, Site::Go(site)) {
        count(counter::GO_STACKS);
    } else {
        count(counter::LOST_GO_STACK);
    }
}
