//! A process's `/proc/PID/status`: its ids and signal disposition, read with a bound and
//! parsed in one place for every reader (perf maps' owner check, the JVM attach).

use std::fs::File;
use std::io::{self, Read};

/// The most of a status file read: a few KiB in practice.
const MAX_STATUS_BYTES: u64 = 64 * 1024;

/// The fields of a status file the profiler reads; each `None` when absent or malformed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// The real uid (`Uid:`'s first).
    pub real_uid: Option<u32>,
    /// The effective uid (`Uid:`'s second).
    pub effective_uid: Option<u32>,
    /// The effective gid (`Gid:`'s second).
    pub effective_gid: Option<u32>,
    /// The pid in the process's own namespace (`NSpid:`'s last; kernels before 4.1 lack
    /// the line).
    pub nspid: Option<u32>,
    /// The signals it catches, a bit per signal from bit 0 for signal 1 (`SigCgt:`).
    pub caught: Option<u64>,
}

impl Status {
    /// Parses a status file's text.
    pub fn parse(text: &str) -> Self {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
        };
        let id = |key: &str, at: usize| field(key)?.get(at)?.parse().ok();
        Self {
            real_uid: id("Uid:", 0),
            effective_uid: id("Uid:", 1),
            effective_gid: id("Gid:", 1),
            nspid: field("NSpid:").and_then(|v| v.last()?.parse().ok()),
            caught: field("SigCgt:").and_then(|v| u64::from_str_radix(v.first()?, 16).ok()),
        }
    }

    /// Reads and parses `/proc/PID/status`, at most [`MAX_STATUS_BYTES`] of it.
    pub fn read(pid: u32) -> io::Result<Self> {
        let mut text = Vec::new();
        File::open(format!("/proc/{pid}/status"))?
            .take(MAX_STATUS_BYTES)
            .read_to_end(&mut text)?;
        Ok(Self::parse(&String::from_utf8_lossy(&text)))
    }

    /// Whether it catches signal `signal`; `None` when the status does not say.
    pub fn catches(&self, signal: i32) -> Option<bool> {
        let bit = u32::try_from(signal).ok()?.checked_sub(1)?;
        Some(self.caught? & 1u64.checked_shl(bit)? != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_namespace_pid_and_caught_signals_are_read() {
        let s = Status::parse(
            "Name:\tjava\nUid:\t1000\t1001\t1001\t1001\nGid:\t50\t51\t51\t51\n\
             NSpid:\t4242\t7\nSigCgt:\t0000000000000004\n",
        );
        assert_eq!(
            (s.real_uid, s.effective_uid, s.effective_gid, s.nspid),
            (Some(1000), Some(1001), Some(51), Some(7))
        );
        assert_eq!(s.catches(libc::SIGQUIT), Some(true));
        assert_eq!(s.catches(libc::SIGUSR1), Some(false));
        assert_eq!(s.catches(0), None);
        assert_eq!(s.catches(200), None);
        assert_eq!(Status::parse("Name:\tx\nUid:\tnope\n"), Status::default());
    }
}
