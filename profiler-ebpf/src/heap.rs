//! The heap profile: uprobes on the allocator's entry points of target processes.
//!
//! Native allocators (the malloc family of the C library, jemalloc, mimalloc, tcmalloc)
//! trap on every call, so each call does as little as it can: at entry, one per-CPU hash
//! update counts the call at its site (the caller's return address, read from the stack)
//! and one slot write remembers it for the return; at return, one insert records the block
//! as live (pointer -> size, site); a free is one lookup, one per-CPU update and one delete.
//! One allocation in `HEAP_STACK_SAMPLE_EVERY` per site and CPU sends its full stack
//! through the same path as every other profile.
//!
//! Go is not traced per allocation: its runtime samples allocations for its own heap
//! profile (one per `MemProfileRate` bytes) and calls `mProf_Malloc` for each; that call,
//! and the freeing of a sampled object (`freeSpecial` of a profile special), are the
//! events taken here. Go code is never given a uretprobe (its stacks move).

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_comm, bpf_probe_read_user, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
};
use profiler_common::{
    COMM_LEN, HEAP_PENDING_SLOTS, HEAP_STACK_SAMPLE_EVERY, HeapEvent, HeapLive, HeapLiveKey,
    HeapPending, HeapSiteKey, HeapSiteValue, MAX_HEAP_LIVE, MAX_HEAP_SITES, counter, heap_fn,
    sample_kind,
};

use crate::regs;
use crate::shared::{
    Context, Site, count, current_ids, is_target, notify_new_key, send_heap_event, send_sample,
};

/// Allocations and frees by site, per CPU (no atomics on the hot path).
#[map]
static HEAP_SITES: PerCpuHashMap<HeapSiteKey, HeapSiteValue> =
    PerCpuHashMap::with_max_entries(MAX_HEAP_SITES, 0);

/// Blocks allocated in the window and not yet freed; userspace sizes it at load time (to
/// one entry when the heap profile is off). Preallocated: an insert then costs no
/// allocation in the kernel.
#[map]
static HEAP_LIVE: HashMap<HeapLiveKey, HeapLive> = HashMap::with_max_entries(MAX_HEAP_LIVE, 0);

/// Allocations in progress, by thread id modulo the table size.
#[map]
static HEAP_PENDING: Array<HeapPending> = Array::with_max_entries(HEAP_PENDING_SLOTS, 0);

/// The user register at byte offset `offset` of `pt_regs` (see `regs.rs`).
#[inline(always)]
fn reg(ctx: &impl EbpfContext, offset: usize) -> u64 {
    // SAFETY: uprobe programs get the user registers as their context; the verifier
    // checks every load against the context's size. Volatile, so that the compiler does
    // not turn a choice between registers into a load at a variable offset, which the
    // verifier refuses for a context.
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset).cast::<u64>()) }
}

/// Entry of an allocating function (which one, in the attach cookie): counts the call at
/// its site and remembers it until it returns.
#[uprobe]
pub fn heap_alloc(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: the helper reads the cookie userspace gave this attachment.
    let func = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let sp = reg(&ctx, regs::SP);
    let Some(slot) = HEAP_PENDING.get_ptr_mut(tid & (HEAP_PENDING_SLOTS - 1)) else {
        return 0;
    };
    // SAFETY: a slot of a global array; another thread sharing it is told by its tid.
    unsafe {
        if (*slot).tid == tid && (*slot).sp > sp {
            // Called from inside another entry point (realloc(NULL, n) -> malloc): the
            // outer call is the one the program made.
            return 0;
        }
        if (*slot).tid != 0 && (*slot).tid != tid {
            count(counter::LOST_HEAP_SLOT);
        }
    }
    let (a0, a1, a2) = (
        reg(&ctx, regs::DI),
        reg(&ctx, regs::SI),
        reg(&ctx, regs::DX),
    );
    let (size, old) = match func {
        heap_fn::CALLOC => (a0.wrapping_mul(a1), 0),
        heap_fn::REALLOC => (a1, a0),
        heap_fn::REALLOCARRAY => (a1.wrapping_mul(a2), a0),
        heap_fn::ALIGNED => (a1, 0),
        heap_fn::POSIX_MEMALIGN => (a2, a0),
        _ => (a0, 0),
    };
    // SAFETY: a probe read of the return address the call pushed; never faults.
    let ret = unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0);
    let key = HeapSiteKey {
        pid: tgid,
        _pad: 0,
        ret,
    };
    count(counter::HEAP_ALLOCS);
    let sample = if let Some(value) = HEAP_SITES.get_ptr_mut(&key) {
        // SAFETY: this CPU's value of the entry; a program is not preempted by itself.
        unsafe {
            (*value).allocs += 1;
            (*value).bytes += size;
            (*value).allocs % HEAP_STACK_SAMPLE_EVERY == 1
        }
    } else {
        let value = HeapSiteValue {
            allocs: 1,
            bytes: size,
            frees: 0,
            freed_bytes: 0,
            comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        };
        if HEAP_SITES.insert(&key, &value, BPF_NOEXIST as u64).is_err() {
            // Another CPU may have inserted it first; else the map is full.
            match HEAP_SITES.get_ptr_mut(&key) {
                // SAFETY: as above.
                Some(value) => unsafe {
                    (*value).allocs += 1;
                    (*value).bytes += size;
                },
                None => {
                    count(counter::LOST_HEAP_SITES);
                    return 0;
                }
            }
        } else {
            notify_new_key(tgid, ret, -1);
        }
        true
    };
    if sample {
        let event = HeapEvent {
            site: key,
            ptr: 0,
            size: 0,
            rate: 0,
        };
        if send_sample(&ctx, Context::Uprobe, Site::Heap(sample_kind::HEAP, &event)) {
            count(counter::HEAP_STACKS);
        } else {
            count(counter::LOST_HEAP_STACK);
        }
    }
    // SAFETY: as above.
    unsafe {
        *slot = HeapPending {
            tid,
            _pad: 0,
            sp,
            size,
            ret,
            old,
            func,
        };
    }
    0
}

/// Return of an allocating function: records the block as live; a `realloc` also frees
/// the block it resized.
#[uretprobe]
pub fn heap_alloc_return(ctx: RetProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let Some(slot) = HEAP_PENDING.get_ptr_mut(tid & (HEAP_PENDING_SLOTS - 1)) else {
        return 0;
    };
    // SAFETY: as in `heap_alloc`.
    let pending = unsafe {
        if (*slot).tid != tid || (*slot).sp >= reg(&ctx, regs::SP) {
            return 0; // Another thread's, or a nested call returning inside ours.
        }
        let pending = *slot;
        (*slot).tid = 0;
        pending
    };
    let returned = reg(&ctx, regs::AX);
    let ptr = match pending.func {
        heap_fn::POSIX_MEMALIGN if returned == 0 => {
            // SAFETY: a probe read of the pointer the call wrote; never faults.
            unsafe { bpf_probe_read_user(pending.old as *const u64) }.unwrap_or(0)
        }
        heap_fn::POSIX_MEMALIGN => 0,
        _ => returned,
    };
    let resized = matches!(pending.func, heap_fn::REALLOC | heap_fn::REALLOCARRAY);
    if resized && pending.old != 0 && (ptr != 0 || pending.size == 0) {
        // Resized (in place or moved) or freed by a zero size: the old block is gone.
        free_block(tgid, pending.old);
    }
    if ptr == 0 {
        return 0;
    }
    let key = HeapLiveKey {
        pid: tgid,
        _pad: 0,
        ptr,
    };
    let live = HeapLive {
        size: pending.size,
        ret: pending.ret,
    };
    if HEAP_LIVE.insert(&key, &live, 0).is_err() {
        count(counter::LOST_HEAP_LIVE);
    }
    0
}

/// `free(ptr)` and the like: a block allocated in the window is no longer live.
#[uprobe]
pub fn heap_free(ctx: ProbeContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    let ptr = reg(&ctx, regs::DI);
    if ptr != 0 {
        free_block(tgid, ptr);
    }
    0
}

#[inline(always)]
fn free_block(tgid: u32, ptr: u64) {
    let key = HeapLiveKey {
        pid: tgid,
        _pad: 0,
        ptr,
    };
    // SAFETY: the value is copied out before the entry is deleted.
    let Some(live) = (unsafe { HEAP_LIVE.get(&key) }).copied() else {
        count(counter::HEAP_FREES_UNKNOWN);
        return;
    };
    let _ = HEAP_LIVE.remove(&key);
    count(counter::HEAP_FREES);
    let site = HeapSiteKey {
        pid: tgid,
        _pad: 0,
        ret: live.ret,
    };
    if let Some(value) = HEAP_SITES.get_ptr_mut(&site) {
        // SAFETY: this CPU's value of the entry.
        unsafe {
            (*value).frees += 1;
            (*value).freed_bytes += live.size;
        }
    }
}

/// `profiler_heap_preload_stack(ret, size, first)` in the `-- COMMAND` interposer: it
/// counted the allocation itself and asks for its stack (the first of a site, then one
/// in `sample_every`), keyed as `heap_alloc` keys it. A site's first has userspace read
/// the process's mappings, as `heap_alloc` does, while the process still runs.
#[uprobe]
pub fn heap_preload_stack(ctx: ProbeContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    let event = HeapEvent {
        site: HeapSiteKey {
            pid: tgid,
            _pad: 0,
            ret: reg(&ctx, regs::DI),
        },
        ptr: 0,
        size: reg(&ctx, regs::SI),
        rate: 0,
    };
    if reg(&ctx, regs::DX) != 0 {
        notify_new_key(tgid, event.site.ret, -1);
    }
    if send_sample(
        &ctx,
        Context::Uprobe,
        Site::Heap(sample_kind::HEAP_PRELOAD, &event),
    ) {
        count(counter::HEAP_STACKS);
    } else {
        count(counter::LOST_HEAP_STACK);
    }
    0
}

/// `runtime.mProf_Malloc`: the Go runtime sampled an allocation for its heap profile.
/// The cookie's top bit says where its arguments are: clear for `(p, size)` (up to Go
/// 1.22), set for `(mp, p, size)`; the other bits are the address of
/// `runtime.MemProfileRate` in the process (0 when unknown), read with each event.
#[uprobe]
pub fn go_malloc(ctx: ProbeContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: the helper reads the cookie userspace gave this attachment.
    let layout = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let (rax, rbx, rcx) = (
        reg(&ctx, regs::AX),
        reg(&ctx, regs::BX),
        reg(&ctx, regs::CX),
    );
    let (ptr, size) = if layout >> 63 == 0 {
        (rax, rbx)
    } else {
        (rbx, rcx)
    };
    let rate_address = layout & !(1 << 63);
    let rate = if rate_address == 0 {
        0
    } else {
        // SAFETY: a probe read of the runtime's variable; never faults.
        unsafe { bpf_probe_read_user(rate_address as *const u64) }.unwrap_or(0)
    };
    let event = HeapEvent {
        site: HeapSiteKey {
            pid: tgid,
            _pad: 0,
            ret: 0,
        },
        ptr,
        size,
        rate,
    };
    count(counter::GO_ALLOCS);
    if !send_sample(
        &ctx,
        Context::Uprobe,
        Site::Heap(sample_kind::GO_ALLOC, &event),
    ) {
        count(counter::LOST_GO_EVENTS);
    }
    0
}

/// `runtime.freeSpecial(s, p, size)`: the collector freed an object with a special
/// record; one of kind `_KindSpecialProfile` is a sampled object. The attach cookie holds
/// that kind's value in its low byte and the offset of `special.kind` above it (both
/// changed across Go versions).
#[uprobe]
pub fn go_free(ctx: ProbeContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: the helper reads the cookie userspace gave this attachment.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let (profile_kind, kind_offset) = (cookie & 0xff, (cookie >> 8) & 0xff);
    // type special struct { next *special; offset uint16 (uintptr from Go 1.22); kind byte }
    let special = reg(&ctx, regs::AX);
    // SAFETY: a probe read of the runtime's record; never faults.
    let kind = unsafe { bpf_probe_read_user((special + kind_offset) as *const u8) }.unwrap_or(0);
    if u64::from(kind) != profile_kind {
        return 0;
    }
    let event = HeapEvent {
        site: HeapSiteKey {
            pid: tgid,
            _pad: 0,
            ret: 0,
        },
        ptr: reg(&ctx, regs::BX),
        size: reg(&ctx, regs::CX),
        rate: 0,
    };
    if !send_heap_event(sample_kind::GO_FREE, &event) {
        count(counter::LOST_GO_EVENTS);
    }
    0
}
