//! Reads the profiler labels (`pprof.Do`, `SetGoroutineLabels`) of the goroutine a Go
//! process's thread runs, into the sample being built: Go's own CPU profile reads them from
//! the goroutine at each sample, and a set can be freed and its memory reused soon after
//! its goroutine moves on, so they are read here, at sample time, not later by userspace.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_probe_read_user as read_into,
};
use profiler_common::{GO_LABEL_TEXT, GO_LABELS_MAX, GoLabels, GoProcess, go_label_format};

use crate::regs;

/// Size of a Go string header (pointer, length) and of a label (key and value strings).
const STRING: u64 = 16;
const LABEL: u64 = 2 * STRING;

/// Go 1.17–1.23 maps: entries per bucket, and the least `tophash` of a live entry (below
/// it, a slot is empty or was moved to a new bucket array).
const BUCKET_ENTRIES: usize = 8;
const MIN_TOP_HASH: u8 = 5;
/// Where a `map[string]string` bucket's keys and values start.
const BUCKET_KEYS: u64 = 8;
const BUCKET_VALUES: u64 = BUCKET_KEYS + BUCKET_ENTRIES as u64 * STRING;
/// Offsets in a map header (`hmap`): log2 of its bucket count, and its bucket array.
const HMAP_B: u64 = 9;
const HMAP_BUCKETS: u64 = 16;

/// A length the kernel marks as not read (its string's memory could not be read).
const UNREAD: u32 = u32::MAX;

#[inline(always)]
fn user_u64(addr: u64) -> u64 {
    // SAFETY: a probe read, which never faults.
    unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
}

/// The label set (`g.labels`) of the goroutine the thread whose user registers are at
/// `regs` runs, or 0. Go code keeps `g` in r14. On the system stack that is the thread's
/// `g0`, and the goroutine it runs for is its `m`'s `curg` (none when the thread is idle).
/// C code (cgo, the vDSO's callers) may hold anything there, so a value counts only when
/// its `m` names it as its `g0` or its `curg`.
///
/// # Safety
/// `regs` is the address of the task's saved user registers.
#[inline(always)]
pub unsafe fn labels_of(regs: usize, go: &GoProcess) -> u64 {
    // SAFETY: a probe read of the task's saved registers.
    let g = unsafe { bpf_probe_read_kernel((regs + regs::R14) as *const u64) }.unwrap_or(0);
    if g == 0 {
        return 0;
    }
    let m = user_u64(g + u64::from(go.g_m));
    if m == 0 {
        return 0;
    }
    let g0 = user_u64(m + u64::from(go.m_g0));
    let curg = user_u64(m + u64::from(go.m_curg));
    let g = if g == g0 || g == curg { curg } else { 0 };
    if g == 0 {
        return 0;
    }
    user_u64(g + u64::from(go.g_labels))
}

/// Reads the label set at `labels` (a `g.labels`, non-zero) into `out`; false when the set
/// is empty or cannot be read.
///
/// # Safety
/// `out` points to writable room for a [`GoLabels`].
#[inline(always)]
pub unsafe fn read(labels: u64, format: u8, out: *mut GoLabels) -> bool {
    // SAFETY: the caller's room; `slot` stays below GO_LABELS_MAX (checked again where
    // written).
    unsafe {
        (*out).kept = 0;
        let count = each_label(labels, format, |slot, key, value| {
            read_string(key, out, slot, 0);
            read_string(value, out, slot, 1);
            (*out).kept = slot as u32 + 1;
        });
        (*out).count = count.min(u64::from(u32::MAX)) as u32;
        count != 0
    }
}

/// A hash of the contents of the label set at `labels` (a `g.labels`), 0 for none: two
/// goroutines with equal labels have equal hashes, whichever memory holds them. Each key
/// and value counts by its length and first [`GO_LABEL_TEXT`] bytes.
#[inline(always)]
pub fn hash(labels: u64, format: u8) -> u64 {
    if labels == 0 {
        return 0;
    }
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let count = each_label(labels, format, |_, key, value| {
        hash = mix_string(hash, key);
        hash = mix_string(hash, value);
    });
    if count == 0 { 0 } else { hash | 1 }
}

/// Calls `visit(slot, key, value)` with the addresses of the string headers of each label
/// of the set at `labels` that a sample keeps (at most [`GO_LABELS_MAX`]); returns how
/// many labels the set has, 0 when it is empty or cannot be read.
#[inline(always)]
fn each_label(labels: u64, format: u8, visit: impl FnMut(usize, u64, u64)) -> u64 {
    match format {
        go_label_format::SLICE => each_in_slice(labels, visit),
        go_label_format::MAP => each_in_map(labels, visit),
        _ => 0,
    }
}

/// Go 1.24 on: `labels` points to a struct whose first field is the `[]label` slice.
#[inline(always)]
fn each_in_slice(labels: u64, mut visit: impl FnMut(usize, u64, u64)) -> u64 {
    let list = user_u64(labels);
    let len = user_u64(labels + 8);
    if list == 0 {
        return 0;
    }
    for slot in 0..GO_LABELS_MAX {
        if slot as u64 >= len {
            break;
        }
        let at = list + slot as u64 * LABEL;
        visit(slot, at, at + STRING);
    }
    len
}

/// Go 1.17 to 1.23: `labels` points to a `map[string]string`, a pointer to its header. A
/// set of at most eight labels has one bucket (Go grows a map only past eight entries);
/// a larger set is counted, not read.
#[inline(always)]
fn each_in_map(labels: u64, mut visit: impl FnMut(usize, u64, u64)) -> u64 {
    let map = user_u64(labels);
    if map == 0 {
        return 0;
    }
    let count = user_u64(map);
    if count == 0 {
        return 0;
    }
    // SAFETY: probe reads, which never fault (also the one below).
    let log2_buckets = unsafe { bpf_probe_read_user((map + HMAP_B) as *const u8) }.unwrap_or(1);
    if log2_buckets != 0 {
        return count;
    }
    let bucket = user_u64(map + HMAP_BUCKETS);
    // The eight `tophash` bytes as one word, taken apart by shifts: a loop over a stack
    // array read through a moving pointer lost its bound in 6.1's verifier.
    // SAFETY: as above.
    let Ok(tophash) = (unsafe { bpf_probe_read_user(bucket as *const u64) }) else {
        return count;
    };
    let mut slot = 0usize;
    for entry in 0..BUCKET_ENTRIES {
        let top = (tophash >> (entry * 8)) as u8;
        if top < MIN_TOP_HASH {
            continue;
        }
        if slot >= GO_LABELS_MAX {
            break;
        }
        let offset = entry as u64 * STRING;
        visit(
            slot,
            bucket + BUCKET_KEYS + offset,
            bucket + BUCKET_VALUES + offset,
        );
        slot += 1;
    }
    count
}

/// Reads the Go string whose header is at `header` into label `slot`'s key (`part` 0) or
/// value (1), cut at [`GO_LABEL_TEXT`] bytes; its length is [`UNREAD`] when it cannot be
/// read.
#[inline(always)]
unsafe fn read_string(header: u64, out: *mut GoLabels, slot: usize, part: usize) {
    if slot >= GO_LABELS_MAX || part > 1 {
        return;
    }
    let data = user_u64(header);
    let len = user_u64(header + 8);
    let take = len.min(GO_LABEL_TEXT as u64) as u32;
    // SAFETY: `slot` and `part` are in bounds; the helper writes at most `take` bytes, no
    // more than the field holds, and never faults.
    unsafe {
        let lens = (*out).lens.as_mut_ptr().add(slot).cast::<u32>().add(part);
        let text = (*out)
            .text
            .as_mut_ptr()
            .add(slot)
            .cast::<[u8; GO_LABEL_TEXT]>()
            .add(part);
        let read = take == 0 || read_into(text.cast(), take, data as *const _) == 0;
        *lens = if read {
            len.min(u64::from(UNREAD - 1)) as u32
        } else {
            UNREAD
        };
    }
}

/// Mixes the Go string whose header is at `header` into `hash`: its length and its first
/// [`GO_LABEL_TEXT`] bytes, a word at a time (the bytes past its end read as zero).
#[inline(always)]
fn mix_string(hash: u64, header: u64) -> u64 {
    const WORDS: usize = GO_LABEL_TEXT / 8;
    let data = user_u64(header);
    let len = user_u64(header + 8);
    let mut words = [0u64; WORDS];
    let take = len.min(GO_LABEL_TEXT as u64) as u32;
    if take > 0 {
        // SAFETY: the buffer holds GO_LABEL_TEXT bytes; the helper never faults (on
        // failure it zeroes them).
        unsafe { read_into(words.as_mut_ptr().cast(), take, data as *const _) };
    }
    let mut hash = mix(hash, len);
    for word in words {
        hash = mix(hash, word);
    }
    hash
}

#[inline(always)]
fn mix(hash: u64, word: u64) -> u64 {
    let h = (hash ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}
