//! The symbols the profiler needs of a CPython interpreter's file (`python3`, or
//! `libpython3.x.so`), read once per file: a whole host's Python processes map a handful
//! of interpreter files between them, and reading one's symbol tables costs milliseconds
//! and megabytes each time. A file is known by its identity on disk (device, inode, size,
//! modification and change times), so one changed or replaced since is read again.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol};

use crate::collect::target_elf::{self, Links};

/// Interpreter files whose symbols are kept: past it, the oldest is forgotten (read again
/// if a process maps it later). A host runs a few versions, not hundreds.
const MAX_FILES: usize = 64;

/// What the profiler needs of an interpreter's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Symbols {
    /// `_PyEval_EvalFrameDefault` and its `.cold` part, as linked.
    pub eval: Vec<Range<u64>>,
    /// `_PyRuntime`, as linked.
    pub runtime: u64,
    /// `PyCode_Type`, as linked.
    pub code_type: u64,
    /// The file's loadable segments: file offset, size in the file, linked address.
    segments: Vec<(u64, u64, u64)>,
}

impl Symbols {
    /// The address the file's bytes at `offset` are linked at, if a segment holds them.
    pub fn linked_at(&self, offset: u64) -> Option<u64> {
        self.segments.iter().find_map(|&(start, size, address)| {
            (start..start.saturating_add(size))
                .contains(&offset)
                .then(|| address.wrapping_add(offset - start))
        })
    }
}

/// A file's identity on disk: the same identity, the same bytes (short of a change that
/// sets both times back, which only the kernel's clock can do to the change time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The symbols of the interpreter files read so far, by identity; a file without them
/// (stripped, or not CPython after all) is remembered too, so it is not read again.
#[derive(Debug, Default)]
pub(super) struct SymbolsCache {
    files: HashMap<Identity, Option<Symbols>>,
    /// Identities in the order they were read, oldest first, for [`MAX_FILES`].
    order: VecDeque<Identity>,
    /// Files read over the run.
    reads: u64,
}

impl SymbolsCache {
    /// The symbols of `file`, open and also reachable at `path` (`/proc/self/fd/N`): read
    /// from `path` the first time its identity is seen, else as read then.
    pub fn get(&mut self, file: &File, path: &Path) -> Option<&Symbols> {
        let meta = file.metadata().ok()?;
        let identity = Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        if !self.files.contains_key(&identity) {
            if self.order.len() >= MAX_FILES
                && let Some(oldest) = self.order.pop_front()
            {
                self.files.remove(&oldest);
            }
            self.reads += 1;
            log::debug!(
                "reading the symbols of {path:?} ({} files read)",
                self.reads
            );
            self.files.insert(identity, read(path));
            self.order.push_back(identity);
        }
        self.files.get(&identity)?.as_ref()
    }
}

/// `_PyEval_EvalFrameDefault` (and its `.cold` part), `_PyRuntime` and `PyCode_Type` in
/// the file at `path`, and its loadable segments.
fn read(path: &Path) -> Option<Symbols> {
    let data = target_elf::open(path, Links::Followed).ok()?;
    let file = target_elf::parse(&data).ok()?;
    let segments = file
        .segments()
        .map(|segment| {
            let (start, size) = segment.file_range();
            (start, size, segment.address())
        })
        .collect();
    let mut eval = Vec::new();
    let (mut runtime, mut code_type) = (None, None);
    for symbol in file.symbols().chain(file.dynamic_symbols()) {
        let Ok(name) = symbol.name() else { continue };
        match name {
            "_PyEval_EvalFrameDefault" | "_PyEval_EvalFrameDefault.cold" => {
                eval.push(symbol.address()..symbol.address().saturating_add(symbol.size().max(1)));
            }
            "_PyRuntime" => runtime = Some(symbol.address()),
            "PyCode_Type" => code_type = Some(symbol.address()),
            _ => {}
        }
    }
    if eval.is_empty() {
        return None;
    }
    // A stripped binary names no `.cold` part: find it from the code.
    if let [hot] = &eval[..] {
        let parts = super::cold::cold_parts(&file, hot.clone());
        eval.extend(parts);
    }
    Some(Symbols {
        eval,
        runtime: runtime?,
        code_type: code_type?,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `bytes` written to `name` in `dir`, opened, with the path it is read through.
    fn open(dir: &Path, name: &str, bytes: &[u8]) -> (File, std::path::PathBuf) {
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(bytes).unwrap();
        (File::open(&path).unwrap(), path)
    }

    #[test]
    fn a_file_is_read_once_until_it_is_changed_or_replaced() {
        // A real ELF file, this test's own binary: what is read of it is compared, not
        // assumed (it has no CPython symbols, which is remembered as well).
        let elf = std::fs::read("/proc/self/exe").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = open(dir.path(), "libpython3.12.so", &elf);
        let mut cache = SymbolsCache::default();
        let first = cache.get(&file, &path).cloned();
        assert_eq!(first, read(&path));
        // Another process mapping the same file: no read.
        let again = File::open(&path).unwrap();
        assert_eq!(cache.get(&again, &path).cloned(), first);
        assert_eq!(cache.reads, 1);
        // Changed in place (one byte more): read again.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\0")
            .unwrap();
        cache.get(&again, &path);
        assert_eq!(cache.reads, 2);
        // Replaced by another file under the same name: read again, and then not.
        let (_, other) = open(dir.path(), "new", &elf);
        std::fs::rename(&other, &path).unwrap();
        let replaced = File::open(&path).unwrap();
        cache.get(&replaced, &path);
        cache.get(&replaced, &path);
        assert_eq!(cache.reads, 3);
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = SymbolsCache::default();
        let files: Vec<_> = (0..=MAX_FILES)
            .map(|i| open(dir.path(), &i.to_string(), b"not ELF"))
            .collect();
        for (file, path) in &files {
            assert_eq!(cache.get(file, path), None);
        }
        assert_eq!(
            (cache.files.len(), cache.order.len()),
            (MAX_FILES, MAX_FILES)
        );
        // The oldest was forgotten, so it is read again; the newest was not.
        let reads = cache.reads;
        cache.get(&files[MAX_FILES].0, &files[MAX_FILES].1);
        assert_eq!(cache.reads, reads);
        cache.get(&files[0].0, &files[0].1);
        assert_eq!(cache.reads, reads + 1);
    }
}
