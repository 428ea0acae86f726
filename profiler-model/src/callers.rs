//! Where a stack leaves the program: the frames of the C library and the dynamic loader
//! that findings and waker names look past to find the code that made the call.

use crate::{FrameKind, Location, Profile, StackId};

/// Whether a location belongs to the C library or the dynamic loader rather than to the
/// program: the frames a hint should look past to find the code that made the call.
pub fn is_system_library(profile: &Profile, location: &Location) -> bool {
    let Some(mapping) = location.mapping.map(|m| profile.mapping(m)) else {
        return false;
    };
    let file = mapping.path.rsplit('/').next().unwrap_or("");
    [
        "libc.so",
        "libc-",
        "ld-linux",
        "libpthread",
        "libstdc++",
        "libgcc_s",
    ]
    .iter()
    .any(|lib| file.starts_with(lib))
}

/// Go's own way down to a syscall: its standard library and runtime make the call, so the
/// frames that say which code asked for it are above these.
const GO_SYSCALL_PLUMBING: [&str; 11] = [
    "syscall.",
    "runtime/internal/syscall",
    "internal/runtime/syscall",
    "internal/poll.",
    "internal/syscall/",
    "net.(*netFD).",
    "net.(*conn).",
    "net.(*TCPConn).",
    "net.(*UnixConn).",
    "net.(*UDPConn).",
    "os.(*File).",
];

/// Whether `function` is part of Go's path from a read or write to the syscall
/// (`internal/poll.(*FD).Read`, `syscall.read`, ...).
pub fn is_go_syscall_plumbing(function: &str) -> bool {
    GO_SYSCALL_PLUMBING.iter().any(|p| function.starts_with(p))
}

/// The function that made a call into the system: the innermost frame of a stack outside the
/// kernel, the system libraries and Go's syscall plumbing (`read_bytewise` for
/// `read_bytewise -> pread64`; `net/http.(*connReader).Read` for a Go server's reads, not
/// `runtime/internal/syscall.Syscall6`).
pub fn user_caller(profile: &Profile, stack: StackId) -> String {
    if let Some(python) = python_caller(profile, stack) {
        return python;
    }
    let mut outside = outside_system(profile, stack).peekable();
    let innermost = outside.peek().copied();
    outside
        .find(|f| !is_go_syscall_plumbing(f))
        .or(innermost)
        .unwrap_or("[unknown]")
        .to_owned()
}

/// A Python program's call site: its innermost Python frame, as `qualname (file.py:line)`.
/// The interpreter's C code under it (`_Py_read`, `_io_FileIO_readall_impl`, the lock
/// acquire of `threading.Lock`) is how CPython makes every such call, as Go's syscall
/// plumbing is Go's: the Python line says which code asked.
fn python_caller(profile: &Profile, stack: StackId) -> Option<String> {
    let line = profile
        .stack(stack)
        .iter()
        .map(|&id| profile.location(id))
        .find(|loc| loc.kind == FrameKind::Python)?
        .lines
        .first()?;
    let file = line.file.as_deref()?;
    let base = file.rsplit('/').next().unwrap_or(file);
    Some(format!("{} ({base}:{})", line.function, line.line))
}

/// The `n` innermost functions of a stack outside the kernel and the system libraries,
/// innermost first: the call site that took a lock (`PGSemaphoreLock`,
/// `LWLockAcquireOrWait`, `XLogFlush` for a PostgreSQL backend queued on its WAL lock).
pub fn user_frames(profile: &Profile, stack: StackId, n: usize) -> Vec<&str> {
    outside_system(profile, stack).take(n).collect()
}

/// The functions of a stack outside the kernel and the system libraries, innermost first
/// (inlined frames included).
fn outside_system(profile: &Profile, stack: StackId) -> impl Iterator<Item = &str> {
    profile
        .stack(stack)
        .iter()
        .map(|&id| profile.location(id))
        .filter(|loc| !loc.kind.is_kernel() && !is_system_library(profile, loc))
        .flat_map(|loc| loc.lines.iter())
        .map(|line| line.function.as_str())
}
