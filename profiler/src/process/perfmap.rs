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
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// The most bytes of one perf map read (a busy JVM writes tens of MiB); the entries past
/// it are counted as dropped, not read.
pub const MAX_BYTES: u64 = 64 << 20;

/// Past the read cap, how many more bytes are scanned (not kept) to count the entries
/// dropped; beyond that the count is a lower bound.
pub(crate) const MAX_COUNTED_BYTES: u64 = 192 << 20;

/// One generated function: its address range and where its name lies in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    start: u64,
    end: u64,
    name_at: u32,
    name_len: u32,
}

/// A JIT's perf map: generated functions by address range, kept compact (one arena of
/// names, 24 bytes per function), so that its memory follows what was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerfMap {
    /// Sorted by start; ranges do not overlap: a later line replaces the earlier ones it
    /// overlaps (a JIT reuses memory of code it threw away).
    entries: Vec<Entry>,
    names: String,
    /// The file's inode, size and modification time when read, to skip reading it
    /// unchanged.
    stamp: Option<(u64, u64, SystemTime)>,
    /// Lines past the read cap, not read.
    dropped: u64,
    /// Whether the file went on past what was scanned to count them.
    dropped_more: bool,
    /// Bytes of the file read.
    read_bytes: u64,
}

/// Parses perf map lines (or a jitdump's records) into a map, as a stream: each line is
/// parsed as it is read.
pub(crate) struct Parser {
    /// By start: (end, name's place in `names`).
    ranges: BTreeMap<u64, (u64, u32, u32)>,
    names: String,
}

impl Parser {
    pub(crate) fn new() -> Self {
        Self {
            ranges: BTreeMap::new(),
            names: String::new(),
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let mut fields = line.splitn(3, ' ');
        let (Some(start), Some(size), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        let (Some(start), Some(size)) = (hex(start), hex(size)) else {
            return;
        };
        self.add(start, size, name);
    }

    /// Adds one generated function, which replaces those it overlaps.
    pub(crate) fn add(&mut self, start: u64, size: u64, name: &str) {
        let name = name.trim();
        if size == 0 || name.is_empty() {
            return;
        }
        let (Ok(at), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len())) else {
            return;
        };
        self.names.push_str(name);
        self.insert(start, start.saturating_add(size), at, len);
    }

    fn insert(&mut self, start: u64, end: u64, at: u32, len: u32) {
        let overlapping: Vec<u64> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|&(_, &(e, _, _))| e > start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            self.ranges.remove(&s);
        }
        self.ranges.insert(start, (end, at, len));
    }

    /// The map, with only the names of the functions kept.
    pub(crate) fn finish(self) -> PerfMap {
        let mut names = String::new();
        let entries = self
            .ranges
            .into_iter()
            .map(|(start, (end, at, len))| {
                let name = &self.names[at as usize..(at + len) as usize];
                let name_at = names.len() as u32;
                names.push_str(name);
                Entry {
                    start,
                    end,
                    name_at,
                    name_len: len,
                }
            })
            .collect();
        names.shrink_to_fit();
        PerfMap {
            entries,
            names,
            ..PerfMap::default()
        }
    }
}

impl PerfMap {
    /// Parses perf map text; lines that do not parse are skipped.
    #[cfg(test)]
    pub fn parse(text: &str) -> Self {
        let mut parser = Parser::new();
        for line in text.lines() {
            parser.line(line.as_bytes());
        }
        parser.finish()
    }

    /// The function holding `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.start <= addr);
        let entry = self.entries[..i].last().filter(|e| addr < e.end)?;
        let at = entry.name_at as usize;
        self.names.get(at..at + entry.name_len as usize)
    }

    /// How many functions it names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it names none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes it holds.
    pub fn held_bytes(&self) -> u64 {
        (self.entries.len() * size_of::<Entry>() + self.names.len()) as u64
    }

    /// Lines past the read cap that were not read, and whether there were more than that
    /// (the file went on past what was scanned to count them).
    pub fn dropped(&self) -> (u64, bool) {
        (self.dropped, self.dropped_more)
    }

    /// Bytes of the file that were read.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// The map with what reading its file read and dropped, for other formats' readers.
    pub(crate) fn with_read(mut self, read_bytes: u64, dropped: u64, more: bool) -> Self {
        self.read_bytes = read_bytes;
        self.dropped = dropped;
        self.dropped_more = more;
        self
    }

    /// Reads the perf map of live process `pid`, at most `cap` bytes of it (at most
    /// [`MAX_BYTES`]); `None` when it has none, or it is unchanged since `previous` was
    /// read.
    pub fn read(pid: u32, previous: Option<&PerfMap>, cap: u64) -> Option<PerfMap> {
        let (uid, nspid) = process_ids(pid)?;
        // Through the process's own root, so a process in a container is read too; there
        // it names the file by its pid in its namespace.
        let paths = [
            format!("/proc/{pid}/root/tmp/perf-{nspid}.map"),
            format!("/tmp/perf-{pid}.map"),
        ];
        // Checked to be a regular file before it is opened for reading: a device node
        // the process's user mounted at that name must not be opened by root.
        let file = paths
            .iter()
            .find_map(|path| crate::sys::safe_open::open_regular(Path::new(path)).ok())?;
        checked_read(pid, uid, file, previous, |file| {
            read_capped(file, cap.min(MAX_BYTES))
        })
    }

    /// Reads the jitdump file (`jit-PID.dump`, `node --perf-prof`) of process `pid`, held
    /// open as `held` (see [`crate::process::jitdump::HeldJitdumps`]), at most `cap` bytes
    /// of it (at most [`MAX_BYTES`]), as a perf map; `None` when it cannot be read, or it
    /// is unchanged since `previous` was read. The process may be gone.
    pub fn read_jitdump(
        pid: u32,
        held: &crate::process::jitdump::Held,
        previous: Option<&PerfMap>,
        cap: u64,
    ) -> Option<PerfMap> {
        // Opened anew through the descriptor held, for a read from the start.
        let path = format!("/proc/self/fd/{}", held.file.as_raw_fd());
        let file = crate::sys::safe_open::open_regular(Path::new(&path)).ok()?;
        checked_read(pid, held.uid, file, previous, |file| {
            crate::process::jitdump::read_capped(file, cap.min(MAX_BYTES))
        })
    }
}

/// Reads a map file of process `pid` with `parse`, if it is a regular file of the
/// process's user (or root) changed since `previous` was read.
fn checked_read(
    pid: u32,
    uid: u32,
    file: File,
    previous: Option<&PerfMap>,
    parse: impl FnOnce(File) -> Option<PerfMap>,
) -> Option<PerfMap> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || (meta.uid() != uid && meta.uid() != 0) {
        log::debug!("perf map of {pid} ignored: not a regular file of its user");
        return None;
    }
    let stamp = (meta.ino(), meta.len(), meta.modified().ok()?);
    if previous.is_some_and(|p| p.stamp == Some(stamp)) {
        return None;
    }
    let mut map = parse(file)?;
    map.stamp = Some(stamp);
    Some(map)
}

/// The real uid of a live process and its pid in its own pid namespace (its pid where
/// the kernel does not say).
pub(crate) fn process_ids(pid: u32) -> Option<(u32, u32)> {
    let status = super::status::Status::read(pid).ok()?;
    Some((status.real_uid?, status.nspid.unwrap_or(pid)))
}

/// Parses at most `cap` bytes of the map, line by line (a line cut by the cap is not
/// read), then counts the lines past it without keeping them: how every map is read.
pub fn read_capped(file: File, cap: u64) -> Option<PerfMap> {
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(cap));
    let mut parser = Parser::new();
    let mut line = Vec::new();
    let mut read = 0u64;
    let mut at_cap = false;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            break;
        }
        read += n as u64;
        at_cap = read == cap;
        if line.last() != Some(&b'\n') && at_cap {
            // Cut by the cap: it is counted with the rest.
            read -= n as u64;
            break;
        }
        parser.line(&line);
    }
    let mut rest = reader.into_inner().into_inner();
    let mut map = parser.finish();
    map.read_bytes = read;
    // Past the cap: only counted, in fixed chunks.
    if !at_cap {
        return Some(map);
    }
    // A line cut by the cap ends in what is counted here.
    let mut chunk = vec![0u8; 64 * 1024];
    let mut counted = 0u64;
    let mut dropped = 0u64;
    loop {
        if counted >= MAX_COUNTED_BYTES {
            map.dropped_more = true;
            break;
        }
        let Ok(n) = rest.read(&mut chunk) else { break };
        if n == 0 {
            break;
        }
        counted += n as u64;
        dropped += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    map.dropped = dropped;
    Some(map)
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
        let map = PerfMap::read(me, None, MAX_BYTES);
        let again = map
            .as_ref()
            .and_then(|m| PerfMap::read(me, Some(m), MAX_BYTES));
        std::fs::remove_file(&path).unwrap();
        let map = map.expect("a map owned by this process's user is read");
        assert_eq!(map.lookup(0x1008), Some("jitted_function"));
        assert_eq!(again, None);
        assert_eq!(PerfMap::read(u32::MAX, None, MAX_BYTES), None);
        // The same name as a symlink to another file is not followed (one test, so that
        // the two never race for the name).
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        std::fs::write(&target, "1000 10 secret\n").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let map = PerfMap::read(me, None, MAX_BYTES);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(map, None);
    }

    #[test]
    fn reads_up_to_the_cap_and_counts_the_lines_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        let text: String = (0..100)
            .map(|i| format!("{:x} 10 function_{i:03}\n", 0x1000 + i * 0x10))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let line = text.lines().next().unwrap().len() as u64 + 1;
        // Ten lines and half of the eleventh.
        let map = read_capped(File::open(&path).unwrap(), line * 10 + line / 2).unwrap();
        assert_eq!(map.len(), 10);
        assert_eq!(map.lookup(0x1000 + 9 * 0x10), Some("function_009"));
        assert_eq!(map.lookup(0x1000 + 10 * 0x10), None);
        assert_eq!(map.dropped(), (90, false));
        assert_eq!(map.read_bytes(), line * 10);
        let whole = read_capped(File::open(&path).unwrap(), MAX_BYTES).unwrap();
        assert_eq!((whole.len(), whole.dropped()), (100, (0, false)));
        // Names are kept once each, with nothing for lines replaced by later ones.
        assert!(whole.held_bytes() < text.len() as u64 + 100 * 24);
    }
}
