//! The perf maps of JIT compilers (`/tmp/perf-PID.map`, written by Node.js with
//! `--perf-basic-prof`, a JVM perf-map agent, Python 3.12+ with `-X perf`): one
//! `START SIZE name` line (hex) per generated function, read while the process lives, since
//! a JIT removes its map (or the process its `/tmp`) when it exits.
//!
//! The file is written by the profiled process into a world-writable directory, so it is
//! read as perf reads it: not through a symlink, only a regular file owned by the process's
//! user (or root), and only so much of it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::SystemTime;

/// The most of a perf map read (a busy JVM writes tens of MiB).
const MAX_BYTES: u64 = 256 << 20;

/// A JIT's perf map: generated functions by address range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerfMap {
    /// By start address: (end, name). Ranges do not overlap: a later line replaces the
    /// earlier ones it overlaps (a JIT reuses memory of code it threw away).
    ranges: BTreeMap<u64, (u64, Box<str>)>,
    /// The file's size and modification time when read, to skip reading it unchanged.
    stamp: Option<(u64, SystemTime)>,
}

impl PerfMap {
    /// Parses perf map text; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Self {
        let mut map = Self::default();
        for line in text.lines() {
            let mut fields = line.splitn(3, ' ');
            let (Some(start), Some(size), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            let (Some(start), Some(size)) = (hex(start), hex(size)) else {
                continue;
            };
            let name = name.trim();
            if size == 0 || name.is_empty() {
                continue;
            }
            map.insert(start, start.saturating_add(size), name);
        }
        map
    }

    fn insert(&mut self, start: u64, end: u64, name: &str) {
        let overlapping: Vec<u64> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|&(_, &(e, _))| e > start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            self.ranges.remove(&s);
        }
        // An earlier range that starts before this one and ends inside it was caught by
        // `take_while` only if it ends past `start`: it did, and is gone.
        self.ranges.insert(start, (end, name.into()));
    }

    /// The function holding `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let (_, (end, name)) = self.ranges.range(..=addr).next_back()?;
        (addr < *end).then_some(&**name)
    }

    /// How many functions it names.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether it names none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Reads the perf map of live process `pid`; `Ok(None)` when it has none, or it is
    /// unchanged since `previous` was read.
    pub fn read(pid: u32, previous: Option<&PerfMap>) -> Option<PerfMap> {
        let uid = process_uid(pid)?;
        // Through the process's own root, so a process in a container is read too.
        let paths = [
            format!("/proc/{pid}/root/tmp/perf-{pid}.map"),
            format!("/tmp/perf-{pid}.map"),
        ];
        let file = paths.iter().find_map(|path| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
                .ok()
        })?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || (meta.uid() != uid && meta.uid() != 0) {
            log::debug!("perf map of {pid} ignored: not a regular file of its user");
            return None;
        }
        let stamp = (meta.len(), meta.modified().ok()?);
        if previous.is_some_and(|p| p.stamp == Some(stamp)) {
            return None;
        }
        let mut map = Self::parse(&read_capped(file)?);
        map.stamp = Some(stamp);
        Some(map)
    }
}

/// The real uid of a live process.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read_capped(file: File) -> Option<String> {
    let mut bytes = Vec::new();
    file.take(MAX_BYTES).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_ranges_and_later_lines_win() {
        let map = PerfMap::parse(
            "7f0000001000 40 LazyCompile:*spin /app/loop.js:3\n\
             0x7f0000002000 0x10 Builtin:Add\n\
             garbage line\n\
             7f0000003000 0 empty\n\
             7f0000001020 40 LazyCompile:*again /app/loop.js:9\n",
        );
        assert_eq!(map.lookup(0x7f000000200f), Some("Builtin:Add"));
        assert_eq!(map.lookup(0x7f0000002010), None);
        // The later function took over the memory of the first.
        assert_eq!(map.lookup(0x7f0000001000), None);
        assert_eq!(
            map.lookup(0x7f0000001030),
            Some("LazyCompile:*again /app/loop.js:9")
        );
        assert_eq!(map.len(), 2);
        assert_eq!(map.lookup(0x7f0000003000), None);
    }

    #[test]
    fn reads_the_map_of_a_live_process_not_through_a_symlink() {
        let me = std::process::id();
        let path = format!("/tmp/perf-{me}.map");
        std::fs::write(&path, "1000 10 jitted_function\n").unwrap();
        let map = PerfMap::read(me, None);
        let again = map.as_ref().and_then(|m| PerfMap::read(me, Some(m)));
        std::fs::remove_file(&path).unwrap();
        let map = map.expect("a map owned by this process's user is read");
        assert_eq!(map.lookup(0x1008), Some("jitted_function"));
        assert_eq!(again, None);
        assert_eq!(PerfMap::read(u32::MAX, None), None);
        // The same name as a symlink to another file is not followed (one test, so that
        // the two never race for the name).
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        std::fs::write(&target, "1000 10 secret\n").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let map = PerfMap::read(me, None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(map, None);
    }
}
