//! A memory file holding a fuzz input, for the readers that take a file (as the profiler
//! reads held descriptors of the files processes map).

use std::io::Write;

/// A memory file with `data` written to it, its offset at the end; `None` when the
/// kernel gives none.
pub fn with(data: &[u8]) -> Option<std::fs::File> {
    // SAFETY: a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"fuzzed".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor just created and owned by nothing else.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.write_all(data).ok()?;
    Some(file)
}
