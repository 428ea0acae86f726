//! Why a thread was off CPU, from what the kernel program recorded at its switch-out: the
//! kernel's class of the wait, the syscall it was in (x86-64 numbers) and the kind of the
//! descriptor that syscall was given.

use profiler_common::{NO_SYSCALL, offcpu_class};
use profiler_model::labels::OffCpuReason;

/// Syscalls that wait for data to reach the disk.
const SYNCS: [i32; 6] = [
    74,  // fsync
    75,  // fdatasync
    162, // sync
    306, // syncfs
    277, // sync_file_range
    26,  // msync
];

/// Syscalls that move data through a descriptor, whose kind says what they waited for:
/// the read/write family, sendfile, copy_file_range, io_submit.
const TRANSFERS: [i32; 13] = [0, 1, 17, 18, 19, 20, 295, 296, 327, 328, 40, 326, 209];

/// Socket syscalls.
const SOCKETS: [i32; 9] = [
    45,  // recvfrom
    47,  // recvmsg
    299, // recvmmsg
    44,  // sendto
    46,  // sendmsg
    307, // sendmmsg
    43,  // accept
    288, // accept4
    42,  // connect
];

/// Syscalls that wait for any of several events.
const POLLS: [i32; 10] = [
    7,   // poll
    23,  // select
    270, // pselect6
    271, // ppoll
    232, // epoll_wait
    281, // epoll_pwait
    441, // epoll_pwait2
    426, // io_uring_enter
    208, // io_getevents
    333, // io_pgetevents
];

/// Syscalls that sleep for a time.
const SLEEPS: [i32; 2] = [
    35,  // nanosleep
    230, // clock_nanosleep
];

/// Syscalls that wait for a lock.
const LOCKS: [i32; 6] = [
    202, // futex
    449, // futex_waitv
    455, // futex_wait
    65,  // semop
    220, // semtimedop
    73,  // flock
];

/// Syscalls that move data between pipes.
const PIPES: [i32; 3] = [
    275, // splice
    276, // tee
    278, // vmsplice: into a pipe, waiting for room in it
];

/// The reason of a wait of kernel class `class` in syscall `syscall` (or [`NO_SYSCALL`]) on
/// a descriptor of kind `descriptor` (as [`crate::process::descriptors::fd_kind`] names it),
/// when one was seen.
pub fn reason(class: u32, syscall: i32, descriptor: Option<&str>) -> OffCpuReason {
    match class {
        offcpu_class::RUNQUEUE => return OffCpuReason::Runqueue,
        offcpu_class::FAULT => return OffCpuReason::Pagefault,
        offcpu_class::SYSCALL_D | offcpu_class::SYSCALL_S => {}
        _ => return OffCpuReason::Other,
    }
    if syscall == NO_SYSCALL {
        return OffCpuReason::Other;
    }
    let uninterruptible = class == offcpu_class::SYSCALL_D;
    if SYNCS.contains(&syscall) {
        OffCpuReason::Disk
    } else if SOCKETS.contains(&syscall) {
        OffCpuReason::Net
    } else if POLLS.contains(&syscall) {
        OffCpuReason::Poll
    } else if SLEEPS.contains(&syscall) {
        OffCpuReason::Sleep
    } else if LOCKS.contains(&syscall) {
        OffCpuReason::Lock
    } else if PIPES.contains(&syscall) {
        OffCpuReason::Pipe
    } else if TRANSFERS.contains(&syscall) {
        match descriptor {
            Some("socket") => OffCpuReason::Net,
            Some("pipe") => OffCpuReason::Pipe,
            Some("file" | "device") => OffCpuReason::Disk,
            // A transfer that waited uninterruptibly waited for storage; an interruptible
            // one on an unknown descriptor could be anything.
            None if uninterruptible => OffCpuReason::Disk,
            _ => OffCpuReason::Other,
        }
    } else {
        OffCpuReason::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u32 = offcpu_class::SYSCALL_S;
    const D: u32 = offcpu_class::SYSCALL_D;

    #[test]
    fn the_class_decides_before_the_syscall() {
        assert_eq!(
            reason(offcpu_class::RUNQUEUE, 0, Some("pipe")),
            OffCpuReason::Runqueue
        );
        assert_eq!(
            reason(offcpu_class::FAULT, NO_SYSCALL, None),
            OffCpuReason::Pagefault
        );
        assert_eq!(reason(offcpu_class::STOPPED, 0, None), OffCpuReason::Other);
        assert_eq!(reason(offcpu_class::NO_USER, 0, None), OffCpuReason::Other);
    }

    #[test]
    fn syscalls_name_their_reason() {
        assert_eq!(reason(D, 75, Some("file")), OffCpuReason::Disk);
        assert_eq!(reason(D, 74, None), OffCpuReason::Disk);
        assert_eq!(reason(S, 35, None), OffCpuReason::Sleep);
        assert_eq!(reason(S, 230, None), OffCpuReason::Sleep);
        assert_eq!(reason(S, 7, None), OffCpuReason::Poll);
        assert_eq!(reason(S, 232, Some("anon_inode")), OffCpuReason::Poll);
        assert_eq!(reason(S, 202, None), OffCpuReason::Lock);
        assert_eq!(reason(S, 45, Some("socket")), OffCpuReason::Net);
        assert_eq!(reason(S, 43, Some("socket")), OffCpuReason::Net);
        assert_eq!(reason(S, 61, None), OffCpuReason::Other); // wait4
    }

    #[test]
    fn a_transfer_waits_for_what_its_descriptor_is() {
        assert_eq!(reason(S, 0, Some("pipe")), OffCpuReason::Pipe);
        assert_eq!(reason(S, 0, Some("socket")), OffCpuReason::Net);
        assert_eq!(reason(D, 17, Some("file")), OffCpuReason::Disk);
        assert_eq!(reason(S, 0, Some("tty")), OffCpuReason::Other);
        assert_eq!(reason(D, 1, None), OffCpuReason::Disk);
        assert_eq!(reason(S, 1, None), OffCpuReason::Other);
    }
}
