//! What kind of thing a process's descriptor is (file, socket, pipe, tty, ...), read from
//! the targets of its `/proc/PID/fd` links, which say which way advice can go: a socket's
//! small reads are a peer's, a file's are the program's own.

use std::collections::HashMap;
use std::fs;

/// Call sites whose descriptor kind is kept per process, as they were when new: the I/O
/// and off-CPU maps hold at most a few tens of thousands of sites in all.
pub const MAX_SITE_FDS: usize = 1 << 16;

/// The kind of descriptor `fd` of process `pid` now, if it is open.
pub fn read_fd_kind(pid: u32, fd: i64) -> Option<&'static str> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    Some(fd_kind(&target.to_string_lossy()))
}

/// The kind of every open descriptor of a process, from the targets of `/proc/PID/fd/*`.
pub fn read_fd_kinds(pid: u32) -> HashMap<i64, &'static str> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, fd_kind(&target.to_string_lossy())))
        })
        .collect()
}

/// Classifies a descriptor by the target of its `/proc/PID/fd` link.
pub fn fd_kind(target: &str) -> &'static str {
    if target.starts_with("socket:") {
        "socket"
    } else if target.starts_with("pipe:") {
        "pipe"
    } else if target.starts_with("anon_inode:") {
        "anon_inode"
    } else if target.starts_with("/dev/pts/")
        || target.starts_with("/dev/tty")
        || target == "/dev/console"
    {
        "tty"
    } else if target.starts_with("/dev/") {
        "device"
    } else {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_descriptors() {
        assert_eq!(fd_kind("socket:[1234]"), "socket");
        assert_eq!(fd_kind("pipe:[99]"), "pipe");
        assert_eq!(fd_kind("/dev/pts/3"), "tty");
        assert_eq!(fd_kind("/dev/null"), "device");
        assert_eq!(fd_kind("anon_inode:[eventfd]"), "anon_inode");
        assert_eq!(fd_kind("/etc/passwd"), "file");
    }
}
