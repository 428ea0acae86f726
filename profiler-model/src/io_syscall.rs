//! The I/O profile's syscalls as a type: the value of its [`crate::LabelKey::Syscall`]
//! label, with what each call does, so analyses ask the call instead of matching its name.

/// A syscall the I/O profile traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IoSyscall {
    /// `read(fd, buf, count)`.
    Read,
    /// `write(fd, buf, count)`.
    Write,
    /// `pread64(fd, buf, count, offset)`.
    Pread64,
    /// `pwrite64(fd, buf, count, offset)`.
    Pwrite64,
    /// `readv(fd, iov, iovcnt)`.
    Readv,
    /// `writev(fd, iov, iovcnt)`.
    Writev,
    /// `preadv(fd, iov, iovcnt, offset)`.
    Preadv,
    /// `pwritev(fd, iov, iovcnt, offset)`.
    Pwritev,
    /// `preadv2(fd, iov, iovcnt, offset, flags)`.
    Preadv2,
    /// `pwritev2(fd, iov, iovcnt, offset, flags)`.
    Pwritev2,
    /// `recvfrom(fd, buf, len, flags, addr, addrlen)`.
    Recvfrom,
    /// `sendto(fd, buf, len, flags, addr, addrlen)`.
    Sendto,
    /// `recvmsg(fd, msg, flags)`.
    Recvmsg,
    /// `sendmsg(fd, msg, flags)`.
    Sendmsg,
    /// `recvmmsg(fd, msgvec, vlen, flags, timeout)`: counts messages, not bytes.
    Recvmmsg,
    /// `sendmmsg(fd, msgvec, vlen, flags)`: counts messages, not bytes.
    Sendmmsg,
    /// `sendfile(out_fd, in_fd, offset, count)`: from a file (or any descriptor) to
    /// another, in the kernel.
    Sendfile,
    /// `splice(fd_in, off_in, fd_out, off_out, len, flags)`: to or from a pipe.
    Splice,
    /// `tee(fd_in, fd_out, len, flags)`: duplicates a pipe's data into another pipe.
    Tee,
    /// `vmsplice(fd, iov, nr_segs, flags)`: maps user memory into a pipe.
    Vmsplice,
    /// `copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)`: between two files.
    CopyFileRange,
}

/// Which way a call moves data, seen from the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDirection {
    /// Into the program's memory: it reads.
    In,
    /// Out to a descriptor: it writes (for the calls between two descriptors, to their
    /// output descriptor, which is the one the profile keeps).
    Out,
}

/// How a call names the data it moves, which decides what could make it take fewer calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoShape {
    /// One buffer.
    Buffer,
    /// Several buffers at once: an iovec array or a `msghdr`.
    Vector,
    /// Several messages at once (`*mmsg`): its bytes and requests count messages.
    Messages,
    /// From one descriptor to another inside the kernel (or user pages into a pipe):
    /// the program's buffers are not in the way, so buffering them changes nothing.
    BetweenDescriptors,
}

impl IoSyscall {
    /// Every traced syscall, in the order of `profiler_common::io_syscall::NAMES`.
    pub const ALL: [IoSyscall; 21] = [
        Self::Read,
        Self::Write,
        Self::Pread64,
        Self::Pwrite64,
        Self::Readv,
        Self::Writev,
        Self::Preadv,
        Self::Pwritev,
        Self::Preadv2,
        Self::Pwritev2,
        Self::Recvfrom,
        Self::Sendto,
        Self::Recvmsg,
        Self::Sendmsg,
        Self::Recvmmsg,
        Self::Sendmmsg,
        Self::Sendfile,
        Self::Splice,
        Self::Tee,
        Self::Vmsplice,
        Self::CopyFileRange,
    ];

    /// Its name, the value of the [`crate::LabelKey::Syscall`] label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Pread64 => "pread64",
            Self::Pwrite64 => "pwrite64",
            Self::Readv => "readv",
            Self::Writev => "writev",
            Self::Preadv => "preadv",
            Self::Pwritev => "pwritev",
            Self::Preadv2 => "preadv2",
            Self::Pwritev2 => "pwritev2",
            Self::Recvfrom => "recvfrom",
            Self::Sendto => "sendto",
            Self::Recvmsg => "recvmsg",
            Self::Sendmsg => "sendmsg",
            Self::Recvmmsg => "recvmmsg",
            Self::Sendmmsg => "sendmmsg",
            Self::Sendfile => "sendfile",
            Self::Splice => "splice",
            Self::Tee => "tee",
            Self::Vmsplice => "vmsplice",
            Self::CopyFileRange => "copy_file_range",
        }
    }

    /// The syscall a [`crate::LabelKey::Syscall`] label names, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Which way it moves data.
    pub fn direction(self) -> IoDirection {
        match self {
            Self::Read
            | Self::Pread64
            | Self::Readv
            | Self::Preadv
            | Self::Preadv2
            | Self::Recvfrom
            | Self::Recvmsg
            | Self::Recvmmsg => IoDirection::In,
            Self::Write
            | Self::Pwrite64
            | Self::Writev
            | Self::Pwritev
            | Self::Pwritev2
            | Self::Sendto
            | Self::Sendmsg
            | Self::Sendmmsg
            | Self::Sendfile
            | Self::Splice
            | Self::Tee
            | Self::Vmsplice
            | Self::CopyFileRange => IoDirection::Out,
        }
    }

    /// How it names the data it moves.
    pub fn shape(self) -> IoShape {
        match self {
            Self::Read
            | Self::Write
            | Self::Pread64
            | Self::Pwrite64
            | Self::Recvfrom
            | Self::Sendto => IoShape::Buffer,
            Self::Readv
            | Self::Writev
            | Self::Preadv
            | Self::Pwritev
            | Self::Preadv2
            | Self::Pwritev2
            | Self::Recvmsg
            | Self::Sendmsg => IoShape::Vector,
            Self::Recvmmsg | Self::Sendmmsg => IoShape::Messages,
            Self::Sendfile | Self::Splice | Self::Tee | Self::Vmsplice | Self::CopyFileRange => {
                IoShape::BetweenDescriptors
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for syscall in IoSyscall::ALL {
            assert_eq!(IoSyscall::from_name(syscall.name()), Some(syscall));
        }
        assert_eq!(IoSyscall::from_name("sendfile64"), None);
        assert_eq!(IoSyscall::from_name("unknown"), None);
    }

    #[test]
    fn zero_copy_calls_write_to_their_output() {
        for syscall in [
            IoSyscall::Sendfile,
            IoSyscall::Splice,
            IoSyscall::Tee,
            IoSyscall::Vmsplice,
            IoSyscall::CopyFileRange,
        ] {
            assert_eq!(syscall.direction(), IoDirection::Out, "{syscall:?}");
            assert_eq!(syscall.shape(), IoShape::BetweenDescriptors, "{syscall:?}");
        }
        assert_eq!(IoSyscall::Recvmsg.direction(), IoDirection::In);
        assert_eq!(IoSyscall::Pwritev2.shape(), IoShape::Vector);
    }
}
