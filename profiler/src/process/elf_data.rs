//! Section contents of ELF files, decompressed when the toolchain compressed them (Go
//! compresses its DWARF, `.debug_frame` included, with zlib).

use std::borrow::Cow;
use std::io::Read;

use object::{CompressionFormat, ObjectSection};

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
