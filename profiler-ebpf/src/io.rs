//! The I/O profile: every read/write-family syscall of a target, and every call that moves
//! data between two descriptors in the kernel (`sendfile`, `splice`, `tee`, `vmsplice`,
//! `copy_file_range`), paired entry to exit per thread, counted with its bytes, time and
//! errors by call site.
//!
//! Copying the user stack costs several times a 1-byte `pread`, so a call site is keyed by
//! registers alone (ip, sp, bp), every call is counted exactly there, and one call in
//! `IO_STACK_SAMPLE_EVERY` per site sends its stack to userspace, which attributes each
//! site's exact totals to the stacks sampled at it.
//! `syscalls.rs` pairs entry and exit; what a call asked for is read at its entry
//! ([`requested`]) and added at its exit beside what it moved.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_probe_read_user},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use profiler_common::{
    COMM_LEN, EAGAIN_RESULT, IO_STACK_SAMPLE_EVERY, InFlight, IoFdKey, IoKey, IoValue,
    MAX_IO_DESCRIPTORS, MAX_IO_KEYS, MAX_IOVECS, counter, io_direction, io_syscall, thread_fact,
};

use crate::regs;
use crate::shared::{
    Context, Site, count, notify_new_fd, notify_new_key, room_for_repeat, send_sample,
};
use crate::site::{go_site_registers, site_registers};

/// What the calls did, by call site.
#[map]
static IO_CALLS: HashMap<IoKey, IoValue> =
    HashMap::with_max_entries(MAX_IO_KEYS, BPF_F_NO_PREALLOC);

/// Which way data last moved on each descriptor of a target process.
#[map]
static IO_DIRECTIONS: LruHashMap<IoFdKey, u8> = LruHashMap::with_max_entries(MAX_IO_DESCRIPTORS, 0);

/// Scratch space for a new [`IoValue`], too large for the BPF stack.
#[map]
static IO_SCRATCH: PerCpuArray<IoValue> = PerCpuArray::with_max_entries(1, 0);

/// Adds a finished I/O syscall to its call site; one call in [`IO_STACK_SAMPLE_EVERY`] of
/// each site also records its full user stack.
#[inline(always)]
pub fn on_exit(ctx: &BtfTracePointContext, entry: &InFlight, result: i64, nanos: u64) {
    let (tgid, tid, syscall) = (entry.pid, entry.tid, entry.syscall);
    let regs: *const u64 = ctx.arg(0);
    let site = if entry.facts & thread_fact::GO != 0 {
        go_site_registers(regs)
    } else {
        site_registers(regs)
    };
    let fd = descriptor(syscall, regs);
    let key = IoKey {
        pid: tgid,
        tid,
        syscall,
        _pad: 0,
        ip: site.ip,
        sp: site.sp,
        bp: site.bp,
        ret: site.ret,
    };
    count(counter::IO_CALLS);
    let turn = result > 0 && turns(tgid, fd, syscall);
    if let Some(value) = IO_CALLS.get_ptr_mut(&key) {
        // SAFETY: the key holds the thread id, so only this CPU updates the entry now.
        let calls = unsafe {
            add_call(&mut *value, result, entry.requested, nanos, turn);
            (*value).calls
        };
        if calls % IO_STACK_SAMPLE_EVERY == 0 {
            sample_stack(ctx, &key, true);
        }
        return;
    }
    let Some(value) = IO_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot.
    unsafe {
        let value = &mut *value;
        *value = core::mem::zeroed();
        value.fd = fd as i64;
        value.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        add_call(value, result, entry.requested, nanos, turn);
        if IO_CALLS.insert(&key, &*value, BPF_NOEXIST as u64).is_err() {
            count(counter::LOST_IO_FULL);
            return;
        }
    }
    sample_stack(ctx, &key, false);
    notify_new_key(tgid, site.ip, fd as i64);
}

/// Whether a call that moved data on `fd` moved it the other way than the process's last
/// such call on it (a reply after a request): notes the new direction. Kept per process,
/// not per thread, since an event loop reads several connections before it answers them.
#[inline(always)]
fn turns(pid: u32, fd: u64, syscall: u32) -> bool {
    let key = IoFdKey {
        pid,
        _pad: 0,
        fd: fd as i64,
    };
    let direction = io_direction::of(syscall);
    if let Some(last) = IO_DIRECTIONS.get_ptr_mut(&key) {
        // The direction is written in place: an update of an LRU map takes a free node and
        // returns the old one under locks, and a request/response server turns on nearly
        // every call (it was a quarter of the exit program's time on a Go HTTP service).
        // SAFETY: a map value; a racing thread of the process writes a direction too,
        // which only moves one call's count between turned and not.
        unsafe {
            if *last == direction {
                return false;
            }
            *last = direction;
        }
        return true;
    }
    // A full map drops its least recently used descriptor: insert cannot fail for room.
    let _ = IO_DIRECTIONS.insert(&key, &direction, 0);
    notify_new_fd(pid, fd as i64);
    false
}

/// The descriptor a call's kind is told by: its only one, or, for the calls between two
/// descriptors, the one the data goes out to. That is the one their bytes are written to,
/// so a site's descriptor says where the bytes went as `write`'s does (nginx's `sendfile`
/// shows as a socket, not as the file it reads); one descriptor fits in [`IoValue`].
/// The argument registers still hold the call's arguments at its exit.
#[inline(always)]
fn descriptor(syscall: u32, regs: *const u64) -> u64 {
    let register = match syscall {
        // splice(fd_in, off_in, fd_out, ...), copy_file_range(fd_in, off_in, fd_out, ...)
        io_syscall::SPLICE | io_syscall::COPY_FILE_RANGE => regs::DX,
        // tee(fd_in, fd_out, len, flags)
        io_syscall::TEE => regs::SI,
        // sendfile(out_fd, ...), vmsplice(pipe_fd, ...), and the read/write family.
        _ => regs::DI,
    };
    // SAFETY: the tracepoint's BTF-typed pt_regs argument, checked by the verifier.
    unsafe { *regs.add(register / 8) }
}

/// Sends the current stack to userspace as one sample of the call site `site`.
/// A `repeat` (a known site's one in [`IO_STACK_SAMPLE_EVERY`]) yields when the ring is half
/// full.
#[inline(always)]
fn sample_stack(ctx: &BtfTracePointContext, site: &IoKey, repeat: bool) {
    if repeat && !room_for_repeat() {
        count(counter::LOST_IO_STACK);
        return;
    }
    if send_sample(ctx, Context::Syscall, Site::Io(site)) {
        count(counter::IO_STACKS);
    } else {
        count(counter::LOST_IO_STACK);
    }
}

/// What an I/O syscall asks for, from its arguments at entry: the count (or buffer length)
/// in `rdx` for most calls (`tee`'s len among them), `count` in `r10` for `sendfile`, `len`
/// in `r8` for `splice` and `copy_file_range`, which costs nothing; the iovecs' total for
/// the vector calls, `vmsplice` and `recvmsg`/`sendmsg`, which costs a user read per iovec;
/// `vlen`, the messages asked for, for the `*mmsg` calls, whose results (and bytes) count
/// messages too.
#[inline(always)]
pub fn requested(syscall: u32, regs: *const u64) -> u64 {
    // SAFETY: the tracepoint's BTF-typed pt_regs argument, checked by the verifier; user
    // memory is read through a probe-read helper.
    unsafe {
        let (si, dx) = (*regs.add(regs::SI / 8), *regs.add(regs::DX / 8));
        match syscall {
            io_syscall::READV..=io_syscall::PWRITEV2 | io_syscall::VMSPLICE => iovec_total(si, dx),
            // sendfile(out_fd, in_fd, offset, count)
            io_syscall::SENDFILE => *regs.add(regs::R10 / 8),
            // splice and copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)
            io_syscall::SPLICE | io_syscall::COPY_FILE_RANGE => *regs.add(regs::R8 / 8),
            io_syscall::RECVMSG | io_syscall::SENDMSG => {
                // struct user_msghdr { void *msg_name; int msg_namelen;
                //                      struct iovec *msg_iov; size_t msg_iovlen; ... }
                let iov = bpf_probe_read_user((si + 16) as *const u64).unwrap_or(0);
                let len = bpf_probe_read_user((si + 24) as *const u64).unwrap_or(0);
                iovec_total(iov, len)
            }
            _ => dx,
        }
    }
}

/// The total length of the first [`MAX_IOVECS`] of `iovecs` iovecs at `iov`; a call with
/// more is counted in `IO_REQUESTED_PARTIAL`.
#[inline(always)]
fn iovec_total(iov: u64, iovecs: u64) -> u64 {
    if iovecs > MAX_IOVECS {
        count(counter::IO_REQUESTED_PARTIAL);
    }
    let mut total = 0u64;
    // A constant bound the verifier sees; `iovecs` only ends the loop early.
    for i in 0..MAX_IOVECS {
        if i >= iovecs {
            break;
        }
        // struct iovec { void *iov_base; size_t iov_len; }
        let at = iov.wrapping_add(i * 16 + 8) as *const u64;
        // SAFETY: a probe read of user memory, which fails cleanly on a bad address.
        total = total.wrapping_add(unsafe { bpf_probe_read_user(at) }.unwrap_or(0));
    }
    total
}

#[inline(always)]
fn add_call(value: &mut IoValue, result: i64, requested: u64, nanos: u64, turn: bool) {
    value.calls += 1;
    value.turns += turn as u64;
    value.nanos += nanos;
    value.requested += requested;
    if result < 0 {
        value.errors += 1;
        if result == EAGAIN_RESULT {
            value.eagain += 1;
        }
        return;
    }
    let bytes = result as u64;
    if bytes < requested {
        value.short += 1;
    }
    value.bytes += bytes;
}
