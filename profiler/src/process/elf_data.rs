//! Contents of ELF files: sections, decompressed when the toolchain compressed them (Go
//! compresses its DWARF, `.debug_frame` included, with zlib), and bytes and file offsets
//! by virtual address.

use std::borrow::Cow;
use std::io::Read;

use object::{CompressionFormat, Object, ObjectSection, ObjectSegment};

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
            let mut out = Vec::with_capacity(usize::try_from(compressed.uncompressed_size).ok()?);
            flate2::read::ZlibDecoder::new(compressed.data)
                .take(compressed.uncompressed_size)
                .read_to_end(&mut out)
                .ok()?;
            (out.len() as u64 == compressed.uncompressed_size).then_some(Cow::Owned(out))
        }
        _ => None,
    }
}

/// The file offset of virtual address `address`, from the segment whose file-backed part
/// holds it (where a uprobe on that address goes).
pub fn file_offset(file: &object::File<'_>, address: u64) -> Option<u64> {
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
pub fn bytes_at<'data>(file: &object::File<'data>, address: u64, len: u64) -> Option<&'data [u8]> {
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
