//! The heap profile's shared types: allocation sites, live blocks, allocations in
//! progress, and what a heap stack sample is about.

use crate::COMM_LEN;
#[cfg(doc)]
use crate::{counter, sample_kind};

/// Entries of the native allocation-site map: distinct (process, caller) pairs.
pub const MAX_HEAP_SITES: u32 = 16384;

/// Entries of the live-allocation table (pointer -> size, site), preallocated (about 45 MiB)
/// when the heap profile is collected; an allocation that finds it full is counted in
/// [`counter::LOST_HEAP_LIVE`].
pub const MAX_HEAP_LIVE: u32 = 1 << 19;

/// Slots of the per-thread table of allocations in progress (entry seen, return not yet),
/// indexed by thread id modulo its size.
pub const HEAP_PENDING_SLOTS: u32 = 16384;

/// One in this many allocations of a site (per CPU) has its full user stack taken (the
/// first always does); every call is counted.
pub const HEAP_STACK_SAMPLE_EVERY: u64 = 64;

/// How an allocator entry point takes its arguments: the attach cookie of its uprobe.
pub mod heap_fn {
    /// `malloc(size)`, `valloc`, `pvalloc`, `mallocx(size, flags)`, `mi_malloc`...
    pub const SIZE: u64 = 0;
    /// `calloc(count, size)`.
    pub const CALLOC: u64 = 1;
    /// `realloc(ptr, size)`, `rallocx(ptr, size, flags)`, `mi_realloc`.
    pub const REALLOC: u64 = 2;
    /// `reallocarray(ptr, count, size)`.
    pub const REALLOCARRAY: u64 = 3;
    /// `memalign(alignment, size)`, `aligned_alloc(alignment, size)`.
    pub const ALIGNED: u64 = 4;
    /// `posix_memalign(&ptr, alignment, size)`: the pointer is written through its first
    /// argument, read at return.
    pub const POSIX_MEMALIGN: u64 = 5;
    /// `mi_malloc_aligned(size, alignment)` and the like: size first, pointer returned.
    pub const SIZE_ALIGNED: u64 = 6;
}

/// Key of the native allocation-site map: a call site of the allocator, told apart by the
/// caller's return address (read from the stack at the allocator's entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct HeapSiteKey {
    /// Process id.
    pub pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// The return address into the caller of the allocator.
    pub ret: u64,
}

/// Value of the native allocation-site map (per CPU: frees of a site on another CPU make
/// this CPU's `frees` larger than its `allocs`; only the sums mean anything).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapSiteValue {
    /// Allocations made (on this CPU).
    pub allocs: u64,
    /// Bytes asked for by them.
    pub bytes: u64,
    /// Allocations of this site freed (on this CPU) during the window.
    pub frees: u64,
    /// Bytes of those.
    pub freed_bytes: u64,
    /// The thread's command name at the first allocation.
    pub comm: [u8; COMM_LEN],
}

/// Key of the live-allocation table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeapLiveKey {
    /// Process id.
    pub pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// The block's address.
    pub ptr: u64,
}

/// Value of the live-allocation table: an allocation made in the window, not yet freed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HeapLive {
    /// Bytes asked for.
    pub size: u64,
    /// Its site's return address ([`HeapSiteKey::ret`]).
    pub ret: u64,
}

/// An allocation whose return is awaited, per thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapPending {
    /// The thread; 0 when the slot is free.
    pub tid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// The stack pointer at entry: a return with a higher one is this call's (a nested
    /// call of another allocator entry point returns below it).
    pub sp: u64,
    /// Bytes asked for.
    pub size: u64,
    /// The caller's return address (the site).
    pub ret: u64,
    /// For `realloc`: the block being resized (freed when the call returns); for
    /// `posix_memalign`: where the pointer is written.
    pub old: u64,
    /// The entry point's [`heap_fn`].
    pub func: u64,
}

/// What a heap stack sample is about.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapEvent {
    /// The site ([`sample_kind::HEAP`]; for the Go kinds, `ret` is 0).
    pub site: HeapSiteKey,
    /// The block's address (Go kinds).
    pub ptr: u64,
    /// Its size in bytes (Go kinds).
    pub size: u64,
    /// `runtime.MemProfileRate` when the runtime sampled it ([`sample_kind::GO_ALLOC`];
    /// 0 when its address was not known).
    pub rate: u64,
}

// The layouts both sides rely on: no padding anywhere.
const _: () = {
    assert!(size_of::<HeapSiteKey>() == 16);
    assert!(size_of::<HeapSiteValue>() == 48);
    assert!(size_of::<HeapLiveKey>() == 16);
    assert!(size_of::<HeapLive>() == 16);
    assert!(size_of::<HeapPending>() == 48);
    assert!(size_of::<HeapEvent>() == 40);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: two u32s, then a u64: no padding (size asserted above).
    unsafe impl aya::Pod for super::HeapSiteKey {}
    // SAFETY: u64s, then 16 bytes: no padding (size asserted above).
    unsafe impl aya::Pod for super::HeapSiteValue {}
    // SAFETY: two u32s, then a u64: no padding (size asserted above).
    unsafe impl aya::Pod for super::HeapLiveKey {}
    // SAFETY: two u64s: no padding (size asserted above).
    unsafe impl aya::Pod for super::HeapLive {}
}
