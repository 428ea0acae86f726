//! The heap profile's interposer for `-- COMMAND`: a library (`preload/heap_preload.c`,
//! built and embedded by `build.rs`) the command loads with `LD_PRELOAD`, counting its
//! allocations in memory shared with the profiler instead of trapping into the kernel.
//!
//! The profiler writes the library into a fresh directory of its own, creates the shared
//! memory (a memfd the command inherits, named to it in `PROFILER_HEAP_FD`) and reads the
//! interposer's per-site counts from it, in the kernel programs' shape, whenever the
//! profile needs them. The interposer's stacks come through a uprobe on its marker
//! function (`heap_preload_stack`). Everything read here was written by the target: it
//! is bounded by the table's fixed size and used as numbers only, and a record is believed
//! only when its pid is one of the command's processes as the run followed them and its
//! counts are ones an allocator could have made in the time; the others are refused and
//! counted as such, never shown as facts.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use profiler_common::{COMM_LEN, HeapSiteKey, HeapSiteValue, MAX_HEAP_SITES};

/// The interposer, as `build.rs` compiled it.
const LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libprofiler-heap-preload.so"));

/// Its file name in the run's directory.
const LIBRARY_NAME: &str = "libprofiler-heap-preload.so";

/// One allocation in this many per site has its stack taken (the first always). Fewer
/// than under uprobes (`HEAP_STACK_SAMPLE_EVERY`): with no trap per call, the sampled
/// stacks' traps and copies are most of what the interposer costs (a tenth of perl's
/// hash build at 1 in 64).
pub const STACK_SAMPLE_EVERY: u64 = 256;

/// The marker function whose entry takes a sampled allocation's stack.
pub const STACK_MARKER: &str = "profiler_heap_preload_stack";

// The shared layout, as preload/heap_preload.h declares it (its test compiles the header
// and compares).
const MAGIC: u64 = 0x3150_4145_4846_5250;
const MAX_PROCESSES: usize = RECORDED_STARTS;

/// How many starts of the interposer (in a process, or again after it executes another
/// program) are recorded by pid.
pub const RECORDED_STARTS: usize = 64;
const HEADER_BYTES: usize = 88 + 4 * MAX_PROCESSES;
const SITE_BYTES: usize = 64;

/// Live blocks the interposer's table holds in each process (its private memory, 16
/// bytes a block, touched as used): more than the kernel's table, as a program's live
/// blocks run into millions.
pub const LIVE_SLOTS: u32 = 1 << 22;
const SITE_READY: u32 = 2;

/// Header words, by byte offset.
mod at {
    pub const MAGIC: usize = 0;
    pub const SITE_SLOTS: usize = 8;
    pub const LIVE_SLOTS: usize = 16;
    pub const SAMPLE_EVERY: usize = 24;
    pub const ALLOCS: usize = 32;
    pub const FREES: usize = 40;
    pub const FREES_UNKNOWN: usize = 48;
    pub const LOST_SITES: usize = 56;
    pub const LOST_LIVE: usize = 64;
    pub const STACKS: usize = 72;
    pub const PROCESSES: usize = 80;
    pub const PIDS: usize = 84;
}

/// A site record's fields, by byte offset from the record.
mod site_at {
    pub const STATE: usize = 0;
    pub const PID: usize = 4;
    pub const RET: usize = 8;
    pub const ALLOCS: usize = 16;
    pub const BYTES: usize = 24;
    pub const FREES: usize = 32;
    pub const FREED_BYTES: usize = 40;
    pub const COMM: usize = 48;
}

/// What the interposer counted over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreloadCounts {
    /// Allocations counted.
    pub allocs: u64,
    /// Frees of blocks it counted.
    pub frees: u64,
    /// Frees of blocks it did not see allocated.
    pub frees_unknown: u64,
    /// Allocations not counted by site: the site table was full.
    pub lost_sites: u64,
    /// Allocations not tracked as live: the live table was full.
    pub lost_live: u64,
    /// Stacks it asked for.
    pub stacks: u64,
}

/// Allocations one site can make in a second, at most: a `malloc` takes more than a
/// nanosecond, on each of a host's CPUs (counted generously as 1,024).
const MAX_ALLOCS_PER_SECOND: u64 = 1_000_000_000 * 1024;

/// The largest block one allocation can give: the user address space.
const MAX_BLOCK_BYTES: u64 = 1 << 47;

/// Frees a site may show beyond its allocations: its two counters are read one after the
/// other while the command runs.
const FREES_SLACK: u64 = 1 << 16;

/// The interposer of one run: its library on disk and the memory it counts in.
#[derive(Debug)]
pub struct Preload {
    dir: PathBuf,
    library: PathBuf,
    memory: OwnedFd,
    base: *mut u8,
    len: usize,
    /// When it was set up: no count can exceed what the time since allows.
    created: Instant,
    /// The command's processes as the run followed them: the only pids believed.
    known: Mutex<HashSet<u32>>,
}

/// Records of the shared memory refused: what the command wrote there that cannot be true.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// Site records naming a process that is not one of the command's.
    pub foreign_pids: u64,
    /// Site records with counts no allocator could have made in the time, or more frees
    /// than allocations.
    pub impossible: u64,
    /// Header words (totals, starts) that were impossible; shown as refused, not as numbers.
    pub header: u64,
}

impl Refused {
    /// All records refused.
    pub fn total(&self) -> u64 {
        self.foreign_pids + self.impossible + self.header
    }
}

// SAFETY: the mapping is only read through atomics, from whichever thread holds this.
unsafe impl Send for Preload {}

impl Preload {
    /// Writes the library into a new directory under `/tmp` (readable by the command's
    /// user, writable by root only) and creates the shared memory.
    ///
    /// # Errors
    /// When the directory, the file or the memory cannot be made.
    pub fn create() -> Result<Self> {
        sweep_stale(Path::new(TEMP_PARENT));
        // The creator's pid in the name tells a later run whether the directory is stale.
        let template = format!("{TEMP_PARENT}/{TEMP_PREFIX}{}-XXXXXX", std::process::id());
        let mut template = CString::new(template)?.into_bytes_with_nul();
        // SAFETY: a NUL-terminated template, rewritten in place.
        if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
            return Err(std::io::Error::last_os_error())
                .context("cannot create a directory for the heap interposer under /tmp");
        }
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(&template[..template.len() - 1]));
        let made = Self::fill(&dir);
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        made
    }

    fn fill(dir: &Path) -> Result<Self> {
        let c_dir = CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: plain system calls on a path and descriptors made here.
        let library = unsafe {
            // mkdtemp made it 0700: the command may run as the invoking user.
            if libc::chmod(c_dir.as_ptr(), 0o755) != 0 {
                return Err(std::io::Error::last_os_error()).context("cannot chmod");
            }
            let dir_fd = libc::open(
                c_dir.as_ptr(),
                libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            );
            if dir_fd < 0 {
                return Err(std::io::Error::last_os_error()).context("cannot open it");
            }
            let dir_fd = OwnedFd::from_raw_fd(dir_fd);
            let name = CString::new(LIBRARY_NAME)?;
            let fd = libc::openat(
                dir_fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot create the interposer's file");
            }
            let file = File::from(OwnedFd::from_raw_fd(fd));
            // Readable by the command's user whatever root's umask is.
            if libc::fchmod(file.as_raw_fd(), 0o644) != 0 {
                return Err(std::io::Error::last_os_error()).context("cannot chmod it");
            }
            file
        };
        let mut library = library;
        library
            .write_all(LIBRARY)
            .context("cannot write the interposer's file")?;
        drop(library);
        let (memory, base, len) = shared_memory()?;
        Ok(Self {
            dir: dir.to_owned(),
            library: dir.join(LIBRARY_NAME),
            memory,
            base,
            len,
            created: Instant::now(),
            known: Mutex::new(HashSet::new()),
        })
    }

    /// Notes processes of the command (it, and the children the run followed): records
    /// are believed only for them. The profiler's own pid is never one.
    pub fn note_pids(&self, pids: impl IntoIterator<Item = u32>) {
        let me = std::process::id();
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.extend(pids.into_iter().filter(|&pid| pid != me && pid != 0));
    }

    fn is_known(&self, pid: u32) -> bool {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&pid)
    }

    /// The most allocations anything could have counted since the interposer was set up.
    fn max_allocs(&self) -> u64 {
        let secs = self.created.elapsed().as_secs() + 1;
        secs.saturating_mul(MAX_ALLOCS_PER_SECOND)
    }

    /// The library's path, as the command loads it.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The shared memory's descriptor, which the command must inherit.
    pub fn memory_fd(&self) -> RawFd {
        self.memory.as_raw_fd()
    }

    /// The environment the command runs with: the interposer first in `LD_PRELOAD`
    /// (before any the user gave, which it then calls), and where its memory is.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut preload = self.library.as_os_str().to_owned();
        if let Some(theirs) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
            preload.push(":");
            preload.push(theirs);
        }
        vec![
            ("LD_PRELOAD".into(), preload),
            (
                "PROFILER_HEAP_FD".into(),
                self.memory_fd().to_string().into(),
            ),
        ]
    }

    fn word(&self, offset: usize) -> u64 {
        debug_assert!(offset + 8 <= self.len && offset.is_multiple_of(8));
        // SAFETY: in bounds of the live mapping and 8-byte aligned (page-aligned base).
        unsafe { (*self.base.add(offset).cast::<AtomicU64>()).load(Ordering::Acquire) }
    }

    fn half(&self, offset: usize) -> u32 {
        debug_assert!(offset + 4 <= self.len && offset.is_multiple_of(4));
        // SAFETY: as in `word`, 4-byte aligned.
        unsafe { (*self.base.add(offset).cast::<AtomicU32>()).load(Ordering::Acquire) }
    }

    /// The processes the interposer started in, in pid order: the first 64 it started in
    /// (a process that executes another program starts it again, under the same pid), and
    /// how many starts there were in all.
    /// Pids that are not the command's are left out (counted by [`Self::refused`]).
    pub fn processes(&self) -> (Vec<u32>, u32) {
        let starts = self.half(at::PROCESSES);
        let mut pids: Vec<u32> = (0..(starts as usize).min(MAX_PROCESSES))
            .map(|i| self.half(at::PIDS + 4 * i))
            .filter(|&pid| pid != 0 && self.is_known(pid))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        (pids, starts)
    }

    /// What the command wrote into the shared memory that was refused.
    pub fn refused(&self) -> Refused {
        let mut refused = Refused::default();
        for (key, value) in self.slots() {
            match self.judge(&key, &value) {
                Ok(()) => {}
                Err(Judged::Foreign) => refused.foreign_pids += 1,
                Err(Judged::Impossible) => refused.impossible += 1,
            }
        }
        let starts = self.half(at::PROCESSES);
        refused.foreign_pids += (0..(starts as usize).min(MAX_PROCESSES))
            .map(|i| self.half(at::PIDS + 4 * i))
            .filter(|&pid| pid != 0 && !self.is_known(pid))
            .count() as u64;
        let max = self.max_allocs();
        let c = self.raw_counts();
        refused.header += [
            c.allocs,
            c.frees_unknown,
            c.lost_sites,
            c.lost_live,
            c.stacks,
        ]
        .into_iter()
        .filter(|&n| n > max)
        .count() as u64;
        refused.header += u64::from(c.frees > c.allocs.saturating_add(FREES_SLACK));
        refused
    }

    /// Whether a site record can be believed.
    fn judge(&self, key: &HeapSiteKey, value: &HeapSiteValue) -> Result<(), Judged> {
        if !self.is_known(key.pid) {
            return Err(Judged::Foreign);
        }
        let possible = value.allocs <= self.max_allocs()
            && value.frees <= value.allocs.saturating_add(FREES_SLACK)
            && value.bytes <= value.allocs.saturating_mul(MAX_BLOCK_BYTES)
            && value.freed_bytes
                <= value
                    .bytes
                    .saturating_add(FREES_SLACK.saturating_mul(MAX_BLOCK_BYTES));
        if possible {
            Ok(())
        } else {
            Err(Judged::Impossible)
        }
    }

    /// What it counted in total; a total no allocator could have reached in the time is
    /// shown as 0 (and counted by [`Self::refused`]).
    pub fn counts(&self) -> PreloadCounts {
        let max = self.max_allocs();
        let c = self.raw_counts();
        let believe = |n: u64| if n > max { 0 } else { n };
        PreloadCounts {
            allocs: believe(c.allocs),
            frees: if c.frees > c.allocs.saturating_add(FREES_SLACK) || c.allocs > max {
                0
            } else {
                c.frees
            },
            frees_unknown: believe(c.frees_unknown),
            lost_sites: believe(c.lost_sites),
            lost_live: believe(c.lost_live),
            stacks: believe(c.stacks),
        }
    }

    fn raw_counts(&self) -> PreloadCounts {
        PreloadCounts {
            allocs: self.word(at::ALLOCS),
            frees: self.word(at::FREES),
            frees_unknown: self.word(at::FREES_UNKNOWN),
            lost_sites: self.word(at::LOST_SITES),
            lost_live: self.word(at::LOST_LIVE),
            stacks: self.word(at::STACKS),
        }
    }

    /// Its counts by site, as the kernel's site map holds them. A site's blocks in use
    /// are its allocations less its frees (the interposer keeps its live blocks in each
    /// process's own memory; those it could not track are counted as lost).
    pub fn sites(&self) -> Vec<(HeapSiteKey, HeapSiteValue)> {
        // A site two threads claimed at once has two slots: one entry here.
        let mut merged: std::collections::BTreeMap<(u32, u64), HeapSiteValue> =
            std::collections::BTreeMap::new();
        for (key, value) in self.slots() {
            if self.judge(&key, &value).is_err() {
                continue;
            }
            merged
                .entry((key.pid, key.ret))
                .and_modify(|sum| {
                    // Numbers the target wrote: saturating, never a panic.
                    sum.allocs = sum.allocs.saturating_add(value.allocs);
                    sum.bytes = sum.bytes.saturating_add(value.bytes);
                    sum.frees = sum.frees.saturating_add(value.frees);
                    sum.freed_bytes = sum.freed_bytes.saturating_add(value.freed_bytes);
                })
                .or_insert(value);
        }
        merged
            .into_iter()
            .map(|((pid, ret), value)| (HeapSiteKey { pid, _pad: 0, ret }, value))
            .collect()
    }

    fn slots(&self) -> Vec<(HeapSiteKey, HeapSiteValue)> {
        (0..MAX_HEAP_SITES as usize)
            .filter_map(|i| {
                let at = HEADER_BYTES + i * SITE_BYTES;
                if self.half(at + site_at::STATE) != SITE_READY {
                    return None;
                }
                let mut comm = [0u8; COMM_LEN];
                for (j, byte) in comm.iter_mut().enumerate() {
                    // SAFETY: within the site's 16-byte name, inside the mapping.
                    *byte =
                        unsafe { std::ptr::read_volatile(self.base.add(at + site_at::COMM + j)) };
                }
                let key = HeapSiteKey {
                    pid: self.half(at + site_at::PID),
                    _pad: 0,
                    ret: self.word(at + site_at::RET),
                };
                // Frees before allocations: a free read is of a block whose allocation
                // was counted before it.
                let frees = self.word(at + site_at::FREES);
                let freed_bytes = self.word(at + site_at::FREED_BYTES);
                let value = HeapSiteValue {
                    allocs: self.word(at + site_at::ALLOCS),
                    bytes: self.word(at + site_at::BYTES),
                    frees,
                    freed_bytes,
                    comm,
                };
                Some((key, value))
            })
            .collect()
    }
}

/// Why a site record was refused.
enum Judged {
    Foreign,
    Impossible,
}

impl Drop for Preload {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `shared_memory`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
        let _ = std::fs::remove_file(&self.library);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Where the interposer's directory is made: the command (maybe another user) must be
/// able to map the library from it.
const TEMP_PARENT: &str = "/tmp";

/// The name of the interposer's directory, then the creator's pid, `-` and mkdtemp's
/// suffix.
const TEMP_PREFIX: &str = "profiler-heap-";

/// Removes the interposer directories of earlier runs that were killed before they could
/// (SIGKILL): root's own (only root can have put anything in them), named with a pid that
/// no longer runs. Anything else under the prefix is left alone.
fn sweep_stale(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    // Bounded: /tmp may hold anything.
    for entry in entries.flatten().take(1 << 16) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // Not followed: a symlink planted under the prefix is not a directory here.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let _ = std::fs::remove_file(dir.join(LIBRARY_NAME));
        if std::fs::remove_dir(&dir).is_ok() {
            log::debug!("removed {}, left by a run that was killed", dir.display());
        }
    }
}

/// The memfd the interposer counts in, sized and mapped, with its header written.
fn shared_memory() -> Result<(OwnedFd, *mut u8, usize)> {
    let len = HEADER_BYTES + MAX_HEAP_SITES as usize * SITE_BYTES;
    // SAFETY: plain system calls; the descriptor is owned from here on.
    unsafe {
        let fd = libc::memfd_create(
            c"profiler-heap".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot create the heap interposer's shared memory (memfd_create)");
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot size it (ftruncate)");
        }
        // The command may write the tables, not resize them under the profiler's reads
        // (a shrunk mapping would fault here).
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot seal it (fcntl)");
        }
        let base = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        );
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("cannot map it (mmap)");
        }
        let base = base.cast::<u8>();
        let put = |offset: usize, value: u64| {
            (*base.add(offset).cast::<AtomicU64>()).store(value, Ordering::Release);
        };
        put(at::SITE_SLOTS, u64::from(MAX_HEAP_SITES));
        put(at::LIVE_SLOTS, u64::from(LIVE_SLOTS));
        put(at::SAMPLE_EVERY, STACK_SAMPLE_EVERY);
        put(at::MAGIC, MAGIC);
        Ok((fd, base, len))
    }
}

#[cfg(test)]
mod tests;
