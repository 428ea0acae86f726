//! Goroutine waits: how long goroutines of traced Go processes stay parked, by park site
//! and wait reason, from uprobes on the Go runtime (userspace attaches them to each Go
//! binary it finds; see `collect/goroutines.rs`).
//!
//! `runtime.gopark` is probed at entry, on an instruction the kernel emulates rather than
//! single-steps (the `push` of Go 1.21+ prologues, or for older ones the `jbe` of the stack
//! check, whose hits bound for `morestack` are skipped), where the parking goroutine is in
//! R14 (Go's register ABI, Go 1.17+ on x86-64) and its wait reason in CL (the third
//! argument); `runtime.ready` likewise, with the goroutine being made runnable in RAX.
//! Never a uretprobe: goroutine stacks move, and a return probe would corrupt them.
//!
//! Each probe is attached to a binary with a cookie: the offset of `goid` in that binary's
//! `g` and whether the probe is on the stack check ([`go_probe_cookie`]), so a process is
//! traced from its first instruction (a launched command too) without userspace having to
//! name it first; the target filter keeps the profiled ones.
//!
//! A park's site is its stack: the parking goroutine's return addresses, walked by frame
//! pointers and hashed ([`user_stack_hash`]). Sites are few however many goroutines a
//! service starts (net/http starts one per connection and one per request), each site's
//! totals are exact, and its stack is sent to userspace once (again at a later park if the
//! ring buffer was full). A park records its start in [`PARKED`], keyed by the goroutine's
//! `g`; `ready` adds the park's time to its site. A goroutine the runtime readies elsewhere
//! (the network poller puts goroutines on run queues directly) is found at its next park
//! and counted as an unseen end; one parked at the end of the run is read by userspace
//! from [`PARKED`] and counted up to the end.

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
    COMM_LEN, GoWaitKey, GoWaitValue, MAX_GO_WAIT_KEYS, MAX_PARKED_GOROUTINES, Parked, ParkedKey,
    counter, go_probe_cookie,
};

use crate::go_labels;
use crate::shared::{
    Context, GO_PROCESSES, Site, count, current_ids, is_target, notify_new_key, send_sample,
    user_stack_hash,
};

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
    count(counter::GO_PARK_HITS);
    // SAFETY: the helper reads the cookie of the attachment that ran this program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    if bound_for_morestack(&ctx, cookie) {
        return 0;
    }
    let (tgid, _) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    let goid_offset = cookie & go_probe_cookie::GOID_OFFSET;
    // SAFETY: the context of a uprobe is the task's saved user registers.
    let (g, reason, sp) = unsafe {
        let regs = &*ctx.regs;
        (regs.r14, regs.rcx as u8, regs.rsp)
    };
    let read = |addr: u64| -> u64 {
        // SAFETY: a probe read of user memory, which never faults.
        unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
    };
    let caller = read(sp);
    // SAFETY: a copy out of the map; the context of a uprobe is the task's saved user
    // registers.
    let labels = unsafe { GO_PROCESSES.get(&tgid).copied() }.map_or(0, |go| unsafe {
        go_labels::hash(go_labels::labels_of(ctx.regs as usize, &go), go.format)
    });
    let site = GoWaitKey {
        pid: tgid,
        reason: u32::from(reason),
        stack: user_stack_hash(&ctx, caller),
        labels,
    };
    let goid = read(g + goid_offset);
    let key = ParkedKey {
        pid: tgid,
        _pad: 0,
        g,
    };
    // SAFETY: presence check only.
    if unsafe { PARKED.get(&key) }.is_some() {
        count(counter::GO_END_UNSEEN);
    }
    let parked = Parked {
        // SAFETY: a helper without arguments.
        start_ns: unsafe { bpf_ktime_get_ns() },
        goid,
        site,
    };
    if PARKED.insert(&key, &parked, u64::from(BPF_ANY)).is_err() {
        count(counter::LOST_GO_PARKED_FULL);
        return 0;
    }
    if let Some(value) = GO_WAITS.get_ptr_mut(&site) {
        // SAFETY: a site's value outlives the program run; a resend races at worst with
        // another park's, which sends the same stack.
        unsafe {
            if (*value).stack_sent == 0 && sample_stack(&ctx, &site) {
                (*value).stack_sent = 1;
            }
        }
        return 0;
    }
    let value = GoWaitValue {
        waits: 0,
        nanos: 0,
        first_goid: goid,
        others: 0,
        stack_sent: 0,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    if GO_WAITS
        .insert(&site, &value, u64::from(BPF_NOEXIST))
        .is_err()
    {
        // Counted when the wait ends (or at the end of the run, if it does not).
        return 0;
    }
    if sample_stack(&ctx, &site)
        && let Some(value) = GO_WAITS.get_ptr_mut(&site)
    {
        // SAFETY: as above.
        unsafe { (*value).stack_sent = 1 };
    }
    // SAFETY: the context of a uprobe is the task's saved user registers.
    notify_new_key(tgid, unsafe { (*ctx.regs).rip }, -1);
    0
}

/// `runtime.ready` entry: a goroutine is made runnable; its park, if traced, ends.
#[uprobe]
pub fn go_ready(ctx: ProbeContext) -> u32 {
    count(counter::GO_READY_HITS);
    // SAFETY: the helper reads the cookie of the attachment that ran this program.
    if bound_for_morestack(&ctx, unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }) {
        return 0;
    }
    // Only goroutines a traced park recorded are looked up: no target check needed.
    let (tgid, _) = current_ids();
    // SAFETY: the context of a uprobe is the task's saved user registers.
    let g = unsafe { (*ctx.regs).rax };
    let key = ParkedKey {
        pid: tgid,
        _pad: 0,
        g,
    };
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
    // A site is a stack, which goroutines on every CPU share: the sums are atomic adds
    // (`lock xadd`), so two readies at once both count.
    // SAFETY: the value lives in the map for the program's run and is 8-byte aligned.
    unsafe {
        add(&raw mut (*value).waits, 1);
        add(&raw mut (*value).nanos, nanos);
        if parked.goid != (*value).first_goid {
            add(&raw mut (*value).others, 1);
        }
    }
    0
}

/// Adds `n` to `*sum` atomically with the instruction every kernel runs on map values
/// (`lock xadd`, its old value not read); Rust's atomics need compare-and-swap, which the
/// BPF target does not declare.
///
/// # Safety
/// `sum` points to a live, aligned `u64` of a map value.
#[inline(always)]
unsafe fn add(sum: *mut u64, n: u64) {
    // SAFETY: the caller's pointer is valid and aligned; the instruction only adds to it.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({sum} + 0) += {n}",
            sum = in(reg) sum,
            n = in(reg) n,
            options(nostack)
        );
    }
}

/// Whether this hit is on the `jbe` of the function's stack check and the branch is about
/// to be taken (carry or zero flag, left by the `cmp`): the goroutine goes to `morestack`,
/// which comes back to the function's start, where the probe fires again for the call.
#[inline(always)]
fn bound_for_morestack(ctx: &ProbeContext, cookie: u64) -> bool {
    const CARRY: u64 = 1;
    const ZERO: u64 = 1 << 6;
    // SAFETY: the context of a uprobe is the task's saved user registers.
    cookie & go_probe_cookie::AT_STACK_CHECK != 0
        && unsafe { (*ctx.regs).eflags } & (CARRY | ZERO) != 0
}

/// Sends the parking goroutine's stack to userspace as the sample of `site`; false when
/// the ring buffer was full (counted).
#[inline(always)]
fn sample_stack(ctx: &ProbeContext, site: &GoWaitKey) -> bool {
    if send_sample(ctx, Context::Uprobe, Site::Go(site)) {
        count(counter::GO_STACKS);
        true
    } else {
        count(counter::LOST_GO_STACK);
        false
    }
}
