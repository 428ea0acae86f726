//! Snapshots of processes taken while they live: executable mappings with their files held
//! open (see [`crate::process::files`]), so that samples of a process that exits before the
//! end of the run can still be unwound and symbolized, and what kind of file each open
//! descriptor is, to label I/O call sites.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use crate::process::descriptors::{MAX_SITE_FDS, read_fd_kind, read_fd_kinds};
pub use crate::process::files::FileKey;
use crate::process::files::{FileTable, ObjectFile};
use crate::process::jitdump::HeldJitdumps;
use crate::process::perfmap::PerfMap;

mod perf_maps;
pub use perf_maps::{MAX_PERF_MAP_BYTES, PerfMapStats};

/// One executable mapping of a process, from `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Offset in the file of `start`.
    pub offset: u64,
    /// The mapped file, or a pseudo name (`[vdso]`), or empty for anonymous memory.
    pub path: String,
    /// The mapped file's device and inode.
    pub key: FileKey,
    /// The mapped file, held open; `None` for anonymous memory and files that could not be
    /// opened.
    pub file: Option<Arc<ObjectFile>>,
}

impl PartialEq for MapEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.start, self.end, self.offset, &self.path, self.key)
            == (other.start, other.end, other.offset, &other.path, other.key)
    }
}

/// What is known of one process: its executable mappings and open descriptors.
#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    /// Executable mappings, sorted by address.
    pub maps: Vec<MapEntry>,
    /// The kind of each open descriptor (`file`, `socket`, `pipe`, `tty`, ...), as last seen.
    pub fds: HashMap<i64, &'static str>,
    /// The kind of a call site's descriptor when the site was new, by the site's user
    /// address and the descriptor: a number reused by another kind since keeps the kind
    /// the site's calls had (nginx's sendfile socket, later a file's number).
    pub site_fds: HashMap<(u64, i64), &'static str>,
    /// Changes whenever `maps` does, so that what is built from them knows to rebuild.
    pub generation: u64,
}

impl ProcessInfo {
    /// The kind of the descriptor `fd` of the call site at user address `ip`: as it was
    /// when the site was new, else as last seen.
    pub fn descriptor(&self, ip: u64, fd: i64) -> Option<&'static str> {
        self.site_fds
            .get(&(ip, fd))
            .or_else(|| self.fds.get(&fd))
            .copied()
    }

    /// The mapping that holds `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<&MapEntry> {
        let i = self.maps.partition_point(|m| m.start <= addr);
        self.maps[..i].last().filter(|m| addr < m.end)
    }
}

/// Executable mappings kept per process, old ones included: past it, only the current
/// ones are kept.
const MAX_MAPPINGS: usize = 1 << 16;

/// Frozen address spaces kept per process: a process that executes itself again and
/// again (one generation each time) must not grow the profiler without bound. The oldest
/// are emptied first; their samples' frames stay unnamed (no mapping).
pub const MAX_SPACES_PER_PROCESS: usize = 4096;

/// Mappings kept over a process's frozen address spaces, for the same reason.
pub const MAX_SPACE_MAPPINGS_PER_PROCESS: usize = 1 << 16;

/// The latest snapshot of every process seen during the run.
#[derive(Debug, Default)]
pub struct ProcessTable {
    processes: HashMap<u32, ProcessInfo>,
    files: FileTable,
    /// The process each forked process (or thread) came from.
    parents: HashMap<u32, u32>,
    /// Frozen snapshots of address spaces, referenced by samples (see [`Self::space`]).
    spaces: Vec<ProcessInfo>,
    /// The snapshot of each process's current mappings: (generation, space).
    current_space: HashMap<u32, (u64, SpaceId)>,
    /// The process of each frozen address space, by [`SpaceId`].
    space_pids: Vec<u32>,
    /// Each process's frozen spaces still holding their mappings, oldest first, and how
    /// many mappings they hold together.
    kept_spaces: HashMap<u32, (VecDeque<SpaceId>, usize)>,
    /// Frozen spaces emptied to keep within the per-process budgets.
    spaces_dropped: u64,
    /// The latest perf map of each process that has JIT code (anonymous executable
    /// memory): a JIT only adds to it, so the latest names the code of every snapshot.
    perf_maps: HashMap<u32, Arc<PerfMap>>,
    /// Processes seen with anonymous executable memory, whose perf maps are read again on
    /// every [`Self::refresh_perf_maps`].
    jit_pids: std::collections::HashSet<u32>,
    /// Processes that executed a new program since their mappings were last read.
    execd: std::collections::HashSet<u32>,
    /// When each process's perf map may be read again.
    perf_map_due: HashMap<u32, Instant>,
    /// What the perf maps read cost and dropped.
    perf_map_stats: PerfMapStats,
    /// The jitdump files of the processes with one, held open.
    jitdumps: HeldJitdumps,
}

/// An address space as it was when samples were unwound in it: a process's mappings at
/// one generation. Samples are symbolized in it, not in the process's last snapshot,
/// which an exec, or another process reusing the pid, may have replaced by the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpaceId(u32);

impl SpaceId {
    /// Its number, unique in the run.
    pub fn index(self) -> u32 {
        self.0
    }
}

impl ProcessTable {
    /// Reads the process's mappings and the kinds of all its descriptors now, merged into
    /// any older snapshot. A process that is gone keeps its last snapshot; returns whether
    /// the read succeeded.
    pub fn snapshot(&mut self, pid: u32) -> bool {
        if !self.snapshot_maps(pid) {
            return false;
        }
        let fds = read_fd_kinds(pid);
        if let Some(info) = self.processes.get_mut(&pid) {
            info.fds.extend(fds);
        }
        true
    }

    /// Reads the process's mappings now, merged into any older snapshot; returns whether
    /// the read succeeded.
    pub fn snapshot_maps(&mut self, pid: u32) -> bool {
        let Some(mut maps) = read_maps(pid) else {
            return self.inherit(pid);
        };
        let info = self.processes.entry(pid).or_default();
        for entry in &mut maps {
            // A mapping already known keeps its file; a new one opens it (once per file).
            entry.file = match info.maps.iter().find(|old| old == &entry) {
                Some(old) => old.file.clone(),
                None => self
                    .files
                    .open(pid, entry.key, entry.start, entry.end, &entry.path),
            };
        }
        // Mappings gone since keep their place where nothing new took it: a read that races
        // the process's exit can come back cut short, and code unmapped since (dlclose) was
        // still sampled.
        let old = std::mem::take(&mut info.maps);
        let merged = if self.execd.remove(&pid) {
            maps.sort_by_key(|m| m.start);
            let changed = maps != old;
            (maps, changed)
        } else {
            merge_maps(maps, old)
        };
        info.maps = merged.0;
        if merged.1 {
            info.generation += 1;
        }
        if info
            .maps
            .iter()
            .any(|m| m.file.is_none() && is_anonymous(&m.path))
        {
            // Read again on every tick while it lives: a JIT adds to its map as it compiles.
            self.jit_pids.insert(pid);
            self.read_perf_map(pid);
        }
        true
    }

    /// Handles a process's new stack at user address `ip` (0 if unknown) with descriptor
    /// `fd` (negative if none): re-reads the mappings only when they do not cover `ip`, and
    /// the descriptors' kinds only when this one is not known yet, so a process that keeps finding
    /// new stacks in code already seen costs nothing.
    pub fn note_new_key(&mut self, pid: u32, ip: u64, fd: i64) {
        let covered = self
            .processes
            .get(&pid)
            .is_some_and(|info| ip != 0 && info.find(ip).is_some());
        if !covered {
            self.snapshot_maps(pid);
        }
        // This one descriptor at once, while the site's first call may still hold it.
        if fd >= 0
            && let Some(kind) = read_fd_kind(pid, fd)
            && let Some(info) = self.processes.get_mut(&pid)
            && info.site_fds.len() < MAX_SITE_FDS
        {
            info.site_fds.insert((ip, fd), kind);
            info.fds.insert(fd, kind);
        }
        self.note_new_fd(pid, fd);
    }

    /// Handles a process's call on descriptor `fd` (negative if none): reads the kinds of
    /// its descriptors when this one's is not known yet.
    pub fn note_new_fd(&mut self, pid: u32, fd: i64) {
        if fd >= 0
            && !self
                .processes
                .get(&pid)
                .is_some_and(|info| info.fds.contains_key(&fd))
        {
            // All of them, not just this one: a process opens its files together and may
            // exit before the events of its other new call sites are read. Descriptors
            // closed since keep the kind they had: calls on them were counted.
            let fds = read_fd_kinds(pid);
            // A process gone already gets no entry without mappings, which would keep it
            // from inheriting its parent's (see `inherit`).
            if !fds.is_empty() {
                self.processes.entry(pid).or_default().fds.extend(fds);
            }
        }
    }

    /// The processes (and threads) seen forked from `root`, directly or not.
    pub fn descendants(&self, root: u32) -> Vec<u32> {
        self.parents
            .keys()
            .copied()
            .filter(|&child| {
                // A bounded walk up: reused pids could make a loop.
                let mut at = child;
                for _ in 0..64 {
                    match self.parents.get(&at) {
                        Some(&parent) if parent == root => return true,
                        Some(&parent) => at = parent,
                        None => return false,
                    }
                }
                false
            })
            .collect()
    }

    /// Notes that `pid` executed a new program: its next mappings replace the old ones
    /// rather than merge with them (the same program executed again may share none of
    /// its old addresses, and must not pile them up).
    pub fn note_exec(&mut self, pid: u32) {
        self.execd.insert(pid);
    }

    /// Reads again the mappings of the processes that executed a new program since they
    /// were last read, while they live: a short program's samples are often unwound only
    /// after it exited, when its new mappings can no longer be read, and its old ones (a
    /// launched command's are the profiler's own, from before its exec) name nothing. One
    /// that is gone is forgotten here.
    pub fn refresh_execd(&mut self) {
        let pids: Vec<u32> = self.execd.iter().copied().collect();
        for pid in pids {
            if !self.snapshot_maps(pid) {
                self.execd.remove(&pid);
            }
        }
    }

    /// Notes that `parent` forked `child` (a process or a thread).
    pub fn note_fork(&mut self, parent: u32, child: u32) {
        self.parents.insert(child, parent);
    }

    /// Gives a process whose mappings cannot be read (it exited already) those of the
    /// process it was forked from, which it shared until it mapped anything of its own;
    /// returns whether it has any now.
    fn inherit(&mut self, pid: u32) -> bool {
        if self.processes.contains_key(&pid) {
            return false;
        }
        // The nearest ancestor known or still readable (a shell's subshell of a subshell);
        // a bounded walk, since reused pids could make a loop.
        let mut parent = pid;
        let mut found = None;
        for _ in 0..16 {
            let Some(&next) = self.parents.get(&parent) else {
                break;
            };
            parent = next;
            if !self.processes.contains_key(&parent) && read_maps(parent).is_some() {
                self.snapshot_maps(parent);
            }
            if self.processes.contains_key(&parent) {
                found = Some(parent);
                break;
            }
        }
        let Some(info) = found.and_then(|p| self.processes.get(&p)) else {
            return false;
        };
        let inherited = ProcessInfo {
            maps: info.maps.clone(),
            fds: info.fds.clone(),
            site_fds: HashMap::new(),
            generation: 0,
        };
        self.processes.insert(pid, inherited);
        true
    }

    /// Re-reads the mappings of every known process that still lives (a `dlopen` may have
    /// mapped code that only deeper frames use).
    pub fn refresh(&mut self) {
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        for pid in pids {
            self.snapshot_maps(pid);
        }
    }

    /// What is known of `pid`.
    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.processes.get(&pid)
    }

    /// The address space of `pid` as its mappings are now, frozen for the samples unwound
    /// in it; `None` when its mappings were never read.
    pub fn space(&mut self, pid: u32) -> Option<SpaceId> {
        let info = self.processes.get(&pid)?;
        if let Some(&(generation, space)) = self.current_space.get(&pid)
            && generation == info.generation
        {
            return Some(space);
        }
        let space = SpaceId(u32::try_from(self.spaces.len()).ok()?);
        // Only the mappings are frozen: descriptor kinds label call sites by the latest.
        let maps = info.maps.clone();
        let generation = info.generation;
        let (kept, mappings) = self.kept_spaces.entry(pid).or_default();
        while let Some(&oldest) = kept.front()
            && (kept.len() >= MAX_SPACES_PER_PROCESS
                || *mappings + maps.len() > MAX_SPACE_MAPPINGS_PER_PROCESS)
        {
            kept.pop_front();
            let dropped = std::mem::take(&mut self.spaces[oldest.0 as usize].maps);
            *mappings -= dropped.len();
            self.spaces_dropped += 1;
        }
        kept.push_back(space);
        *mappings += maps.len();
        self.spaces.push(ProcessInfo {
            maps,
            fds: HashMap::new(),
            site_fds: HashMap::new(),
            generation,
        });
        self.current_space.insert(pid, (generation, space));
        self.space_pids.push(pid);
        Some(space)
    }

    /// Frozen address spaces emptied to keep within [`MAX_SPACES_PER_PROCESS`] and
    /// [`MAX_SPACE_MAPPINGS_PER_PROCESS`].
    pub fn spaces_dropped(&self) -> u64 {
        self.spaces_dropped
    }

    /// A frozen address space.
    pub fn space_info(&self, space: SpaceId) -> Option<&ProcessInfo> {
        self.spaces.get(space.0 as usize)
    }

    /// Files that were not held open because the open-file limit was near.
    pub fn files_not_held(&self) -> u64 {
        self.files.not_held
    }
}

/// The executable mappings of a live process; `None` for a process that is gone, or a
/// zombie or kernel thread (whose maps file is empty: an older snapshot then stands).
fn read_maps(pid: u32) -> Option<Vec<MapEntry>> {
    let maps = parse_maps(&read_whole(&format!("/proc/{pid}/maps"))?);
    (!maps.is_empty()).then_some(maps)
}

/// Reads a proc file in large reads: the kernel builds `maps` a page at a time, and a file
/// read in many small pieces while the process exits ends early.
fn read_whole(path: &str) -> Option<String> {
    let mut file = fs::File::open(path).ok()?;
    let mut text = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(text).ok()
}

/// `new` plus the entries of `old` that overlap none of `new`, sorted by address, and
/// whether that differs from `old`. When `new` shares no mapping with `old` (but
/// `[vsyscall]`, at the same address in every process), the process has exec'd another
/// program and `old` is dropped; so it is when the two would hold more than
/// [`MAX_MAPPINGS`].
fn merge_maps(mut new: Vec<MapEntry>, old: Vec<MapEntry>) -> (Vec<MapEntry>, bool) {
    let shared = new
        .iter()
        .any(|n| n.path != "[vsyscall]" && old.contains(n));
    if !shared || new.len() + old.len() > MAX_MAPPINGS {
        new.sort_by_key(|m| m.start);
        return (new, true);
    }
    let kept: Vec<MapEntry> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.start < o.end && o.start < n.end))
        .cloned()
        .collect();
    new.extend(kept);
    new.sort_by_key(|m| m.start);
    let changed = new != old;
    (new, changed)
}

/// Whether a mapping's path names anonymous memory (`""`, `[anon:name]`), where JIT
/// compilers put their code.
fn is_anonymous(path: &str) -> bool {
    path.is_empty() || path.starts_with("[anon")
}

/// Parses the executable mappings of a `/proc/PID/maps` text, sorted by address.
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    let mut maps: Vec<MapEntry> = text.lines().filter_map(parse_line).collect();
    maps.sort_by_key(|m| m.start);
    maps
}

fn parse_line(line: &str) -> Option<MapEntry> {
    // address perms offset dev inode [path], the path may contain spaces.
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode = fields.next()?.parse().ok()?;
    let path = fields.next().unwrap_or("").trim_start().to_owned();
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        path,
        key: FileKey {
            major: u32::from_str_radix(major, 16).ok()?,
            minor: u32::from_str_radix(minor, 16).ok()?,
            inode,
        },
        file: None,
    })
}

#[cfg(test)]
mod tests;
