//! Contents of ELF files: sections, decompressed when the toolchain compressed them (Go
//! compresses its DWARF, `.debug_frame` included, with zlib), and bytes and file offsets
//! by virtual address; and [`BoundedFile`], which reads a file for the `object` crate
//! within a byte budget, so a crafted header cannot make it read gigabytes.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::ops::Range;

use object::{CompressionFormat, Object, ObjectSection, ObjectSegment, ReadCache, ReadRef};

/// Largest decompressed section read (a hostile header must not make the profiler
/// allocate without bound).
const MAX_SECTION_BYTES: u64 = 1 << 30;

/// The bytes of `section`, decompressed if it is zlib-compressed; `None` when it cannot be
/// read or uses a compression the profiler does not read.
pub fn section_bytes<'data>(section: &impl ObjectSection<'data>) -> Option<Cow<'data, [u8]>> {
    let compressed = section.compressed_data().ok()?;
    match compressed.format {
        CompressionFormat::None => Some(Cow::Borrowed(compressed.data)),
        CompressionFormat::Zlib if compressed.uncompressed_size <= MAX_SECTION_BYTES => {
            inflate_exactly(compressed.data, compressed.uncompressed_size).map(Cow::Owned)
        }
        _ => None,
    }
}

/// The zlib stream `compressed` inflated to exactly the `size` bytes its section header
/// states: never more, whatever the stream holds, and `None` when it holds anything else.
/// The caller has checked `size` against its budget.
pub fn inflate_exactly(compressed: &[u8], size: u64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(size).ok()?);
    flate2::read::ZlibDecoder::new(compressed)
        .take(size)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() as u64 == size).then_some(out)
}

/// The file offset of virtual address `address`, from the segment whose file-backed part
/// holds it (where a uprobe on that address goes).
pub fn file_offset<'data, R: ReadRef<'data>>(
    file: &object::File<'data, R>,
    address: u64,
) -> Option<u64> {
    file.segments().find_map(|segment| {
        let start = segment.address();
        let (offset, file_size) = segment.file_range();
        (start..start + file_size.min(segment.size()))
            .contains(&address)
            .then(|| address - start + offset)
    })
}

/// Up to `len` bytes of the section that holds virtual address `address`, from there:
/// fewer where the section ends.
pub fn bytes_at<'data, R: ReadRef<'data>>(
    file: &object::File<'data, R>,
    address: u64,
    len: u64,
) -> Option<&'data [u8]> {
    file.sections().find_map(|section| {
        let start = section.address();
        let end = start + section.size();
        if !(start..end).contains(&address) {
            return None;
        }
        let data = section.data().ok()?;
        let at = usize::try_from(address - start).ok()?;
        let len = usize::try_from(len.min(end - address)).ok()?;
        data.get(at..at + len)
    })
}

/// An ELF file read on demand for the `object` crate, as [`ReadCache`] reads it, within a
/// budget decided before anything is read: no single read over `per_read` bytes, and no
/// more than `total` bytes read in all. A read past the budget fails, as a read past the
/// end of the file would, and is remembered ([`Self::over_budget`]).
///
/// Headers, notes and the sections a caller asks for are read; never the whole file, so
/// a huge or sparse file costs what its headers state, bounded by the budget.
#[derive(Debug)]
pub struct BoundedFile {
    cache: ReadCache<File>,
    per_read: u64,
    left: Cell<u64>,
    /// The reads made so far, (offset, size) and (offset, delimiter) for strings: the
    /// cache keeps them, so a repeated one costs nothing more.
    reads: RefCell<HashSet<(u64, u64)>>,
    strings: RefCell<HashSet<(u64, u8)>>,
    over: Cell<bool>,
}

/// What keeping one string read costs besides its bytes (the cache's entry).
const STRING_OVERHEAD: u64 = 64;
/// What a read costs at least: the cache's own entry for it.
const READ_OVERHEAD: u64 = 64;

/// What reading an ELF file's headers may read: its headers, program and section header
/// tables, section names and notes, never its contents (no real header table comes near).
const HEADERS_PER_READ: u64 = 16 << 20;
const HEADERS_TOTAL: u64 = 64 << 20;

impl BoundedFile {
    /// `file`, to be read for its headers only (build ID, segments, section list), within
    /// the budget every such read keeps.
    pub fn headers(file: File) -> Self {
        Self::new(file, HEADERS_PER_READ, HEADERS_TOTAL)
    }

    /// `file`, to be read at most `per_read` bytes at a time and `total` in all.
    pub fn new(file: File, per_read: u64, total: u64) -> Self {
        Self {
            cache: ReadCache::new(file),
            per_read,
            left: Cell::new(total),
            reads: RefCell::default(),
            strings: RefCell::default(),
            over: Cell::new(false),
        }
    }

    /// Whether a read was refused for going over the budget.
    pub fn over_budget(&self) -> bool {
        self.over.get()
    }

    /// Takes `size` bytes of the budget for a new read.
    fn charge(&self, size: u64) -> Result<(), ()> {
        match self.left.get().checked_sub(size.max(READ_OVERHEAD)) {
            Some(left) if size <= self.per_read => {
                self.left.set(left);
                Ok(())
            }
            _ => {
                self.over.set(true);
                Err(())
            }
        }
    }
}

impl<'a> ReadRef<'a> for &'a BoundedFile {
    fn len(self) -> Result<u64, ()> {
        (&self.cache).len()
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        // The file's length bounds a read too; checking it first keeps a read past the
        // end (an ordinary malformed header) from counting as over budget.
        let len = (&self.cache).len()?;
        if offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(());
        }
        if size > 0 && !self.reads.borrow().contains(&(offset, size)) {
            self.charge(size)?;
            self.reads.borrow_mut().insert((offset, size));
        }
        (&self.cache).read_bytes_at(offset, size)
    }

    fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
        let bytes = (&self.cache).read_bytes_at_until(range.clone(), delimiter)?;
        // Charged by what it holds once read (`ReadCache` reads at most 4 KiB for one): a
        // large symbol table's many short names must not look like as many pages.
        if !self.strings.borrow().contains(&(range.start, delimiter)) {
            self.charge(bytes.len() as u64 + STRING_OVERHEAD)?;
            self.strings.borrow_mut().insert((range.start, delimiter));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_the_budget_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let file = BoundedFile::new(File::open(&path).unwrap(), 4096, 6000);
        assert_eq!((&file).read_bytes_at(0, 4096).unwrap().len(), 4096);
        // The same read again is the cache's: free.
        assert!((&file).read_bytes_at(0, 4096).is_ok());
        // Past the end is an ordinary failure, not the budget's.
        assert!((&file).read_bytes_at(9000, 4096).is_err());
        assert!(!file.over_budget());
        // Over the per-read cap, then over what is left of the total.
        assert!((&file).read_bytes_at(0, 4097).is_err());
        assert!(file.over_budget());
        let file = BoundedFile::new(File::open(&path).unwrap(), 4096, 6000);
        assert!((&file).read_bytes_at(0, 4000).is_ok());
        assert!((&file).read_bytes_at(4000, 4000).is_err());
        assert!(file.over_budget());
    }

    #[test]
    fn a_huge_sparse_file_is_parsed_from_its_headers() {
        let me = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        std::fs::copy(&me, &path).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(100 << 30).unwrap();
        let bounded = BoundedFile::new(File::open(&path).unwrap(), 16 << 20, 64 << 20);
        let elf = object::File::parse(&bounded).unwrap();
        assert!(elf.section_by_name(".text").is_some());
        assert!(!bounded.over_budget());
    }
}
