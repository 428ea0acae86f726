//! Types of the I/O profile shared with its kernel programs: the syscalls it traces and
//! their names, the descriptors' last direction, and the call-site aggregation map.

use crate::COMM_LEN;

/// Entries of the I/O aggregation map: distinct (pid, tid, user stack, syscall) keys.
pub const MAX_IO_KEYS: u32 = 32768;

/// Descriptors whose last direction is kept; the least recently used goes first.
pub const MAX_IO_DESCRIPTORS: u32 = 65536;

/// A descriptor of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IoFdKey {
    /// Process id.
    pub pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// The descriptor.
    pub fd: i64,
}

/// Which way data moved in an I/O call, as `IO_DIRECTIONS` keeps it.
pub mod io_direction {
    /// Into the process (the read family).
    pub const IN: u8 = 1;
    /// Out of it (the write family, and the calls between descriptors, whose descriptor
    /// is the one written to).
    pub const OUT: u8 = 2;

    /// The direction of the syscall with index `syscall` (see [`super::io_syscall`]): the
    /// read/write family alternates in, out; from `sendfile` on they write.
    pub const fn of(syscall: u32) -> u8 {
        if syscall < super::io_syscall::SENDFILE && syscall & 1 == 0 {
            IN
        } else {
            OUT
        }
    }

    const _: () = {
        assert!(of(0) == IN && of(1) == OUT); // read, write
        assert!(of(super::io_syscall::RECVMMSG) == IN);
        assert!(of(super::io_syscall::SENDMMSG) == OUT);
        assert!(of(super::io_syscall::COPY_FILE_RANGE) == OUT);
    };
}

/// The syscalls the I/O profile traces, in the order of their indices: the read/write
/// family, then the calls that move data between two descriptors inside the kernel
/// (`sendfile` to `copy_file_range`).
pub mod io_syscall {
    /// The syscalls' names, indexed by the syscall index stored in [`super::IoKey`].
    pub const NAMES: [&str; 21] = [
        "read",
        "write",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "preadv",
        "pwritev",
        "preadv2",
        "pwritev2",
        "recvfrom",
        "sendto",
        "recvmsg",
        "sendmsg",
        "recvmmsg",
        "sendmmsg",
        "sendfile",
        "splice",
        "tee",
        "vmsplice",
        "copy_file_range",
    ];
    /// Number of traced syscalls.
    pub const COUNT: usize = NAMES.len();
    /// Index of `recvmmsg`, whose result counts messages, not bytes.
    pub const RECVMMSG: u32 = 14;
    /// Index of `sendmmsg`, whose result counts messages, not bytes.
    pub const SENDMMSG: u32 = 15;
    /// Index of `readv`, the first of the six vector calls (`readv` to `pwritev2`).
    pub const READV: u32 = 4;
    /// Index of `pwritev2`, the last of the six vector calls.
    pub const PWRITEV2: u32 = 9;
    /// Index of `recvmsg`, whose request is the total of its `msghdr`'s iovecs.
    pub const RECVMSG: u32 = 12;
    /// Index of `sendmsg`, whose request is the total of its `msghdr`'s iovecs.
    pub const SENDMSG: u32 = 13;
    /// Index of `sendfile(out_fd, in_fd, offset, count)`.
    pub const SENDFILE: u32 = 16;
    /// Index of `splice(fd_in, off_in, fd_out, off_out, len, flags)`.
    pub const SPLICE: u32 = 17;
    /// Index of `tee(fd_in, fd_out, len, flags)`.
    pub const TEE: u32 = 18;
    /// Index of `vmsplice(fd, iov, nr_segs, flags)`, whose request is its iovecs' total.
    pub const VMSPLICE: u32 = 19;
    /// Index of `copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)`.
    pub const COPY_FILE_RANGE: u32 = 20;

    // Each index names the syscall its name says, so that reordering `NAMES` cannot
    // silently move a special case (messages, vectors) onto another call.
    const _: () = {
        assert!(crate::str_eq(NAMES[RECVMMSG as usize], "recvmmsg"));
        assert!(crate::str_eq(NAMES[SENDMMSG as usize], "sendmmsg"));
        assert!(crate::str_eq(NAMES[READV as usize], "readv"));
        assert!(crate::str_eq(NAMES[PWRITEV2 as usize], "pwritev2"));
        assert!(crate::str_eq(NAMES[RECVMSG as usize], "recvmsg"));
        assert!(crate::str_eq(NAMES[SENDMSG as usize], "sendmsg"));
        assert!(crate::str_eq(NAMES[SENDFILE as usize], "sendfile"));
        assert!(crate::str_eq(NAMES[SPLICE as usize], "splice"));
        assert!(crate::str_eq(NAMES[TEE as usize], "tee"));
        assert!(crate::str_eq(NAMES[VMSPLICE as usize], "vmsplice"));
        assert!(crate::str_eq(
            NAMES[COPY_FILE_RANGE as usize],
            "copy_file_range"
        ));
    };
}

/// Iovecs of a vector call (or of a `msghdr`) whose lengths the kernel program reads to
/// total the bytes requested; a call with more counts only these, and is counted in
/// [`counter::IO_REQUESTED_PARTIAL`](crate::counter::IO_REQUESTED_PARTIAL). Each is one user-memory read, paid by vector calls
/// only; 8 covers the scatter/gather of nearly every program.
pub const MAX_IOVECS: u64 = 8;

/// The result of a call that would have blocked on a non-blocking descriptor
/// (`-EAGAIN`, which is also `-EWOULDBLOCK` on Linux).
pub const EAGAIN_RESULT: i64 = -11;

/// One in this many calls of an I/O call site has its full user stack taken (the first
/// call always does); every call is counted. The repeats only split a site's exact totals
/// over its stacks, and a site nearly always has one (go_service: 821 sites, each with one
/// stack in 7,386 samples); at 1 in 64 they were a tenth of the I/O programs' time there.
pub const IO_STACK_SAMPLE_EVERY: u64 = 256;

/// Key of the I/O aggregation map: a call site, told apart by the registers that locate
/// the call (no user memory is read to build it, which keeps each call cheap).
///
/// Equal registers almost always mean an equal stack; the stacks sampled for a key (see
/// [`SampleHeader::io_site`](crate::SampleHeader::io_site)) show where they do not.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoKey {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Index into [`io_syscall::NAMES`].
    pub syscall: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// User instruction pointer at the syscall.
    pub ip: u64,
    /// User stack pointer at the syscall.
    pub sp: u64,
    /// User frame pointer at the syscall, or 0 when `rbp` held data, not a frame pointer.
    pub bp: u64,
    /// The return address above that frame (`[bp + 8]`): tells apart sibling functions
    /// called from one parent with equal frames. 0 when `bp` is, and in a Go process, whose
    /// calls all pass through the `syscall` package: there it is one of that package's own
    /// wrappers' (one address for every read and write of go_service), which tells nothing
    /// apart, and reading it was a third of a call's time.
    pub ret: u64,
}

/// Value of the I/O aggregation map: what the calls with one key did.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoValue {
    /// Calls made.
    pub calls: u64,
    /// Bytes transferred by the calls that succeeded (messages for `*mmsg`).
    pub bytes: u64,
    /// Nanoseconds spent inside the syscalls.
    pub nanos: u64,
    /// Calls that failed (negative result).
    pub errors: u64,
    /// What the calls asked for, failed ones included: the count or buffer length, the
    /// iovecs' total for the vector calls and `*msg` (up to [`MAX_IOVECS`] of them), the
    /// number of messages for `*mmsg`.
    pub requested: u64,
    /// Calls that moved less than they asked for (`0 <= result < requested`).
    pub short: u64,
    /// Calls that failed with `EAGAIN`/`EWOULDBLOCK`: nothing was there yet.
    pub eagain: u64,
    /// Calls that moved data the other way than the process's last call that moved data
    /// on the same descriptor: a reply after a request, a request after a reply.
    pub turns: u64,
    /// The descriptor of the first call, to tell what it was (file, socket, pipe...). For
    /// the calls between two descriptors, the one the data goes out to (see
    /// `profiler-ebpf`'s `io::descriptor`); the input descriptor is not kept.
    pub fd: i64,
    /// The thread's command name at the first call.
    pub comm: [u8; COMM_LEN],
}
