//! Checks what an ELF file's compressed contents would inflate to before anything inflates
//! them: blazesym and gimli decompress a whole section into memory at once, so a few KiB of
//! zlib or xz of zeros would become GiBs.
//!
//! A section flagged `SHF_COMPRESSED` states its inflated size in its header (`ch_size`);
//! MiniDebugInfo (`.gnu_debugdata`) is an xz stream whose index states its size, and which
//! is also inflated here once, into a small buffer that is thrown away, to learn what it
//! really holds. Whatever is over [`SECTION_CAP`] is not read at all.

use std::io::Read;
use std::path::Path;

use object::{Object, ObjectSection};

/// The most one section may inflate to: larger debug information is not read.
pub const SECTION_CAP: u64 = 256 << 20;
/// The most all the compressed sections of one file may inflate to together, as DWARF
/// loads them all at once.
pub const FILE_CAP: u64 = 2 * SECTION_CAP;
/// The memory the xz decoder may take for its dictionary while `.gnu_debugdata` is checked.
const XZ_MEMLIMIT: u64 = 64 << 20;

/// Why a file's DWARF or MiniDebugInfo is not read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    /// A compressed section states an inflated size over the cap.
    Compressed {
        /// The section's name.
        section: String,
        /// The size its header states.
        stated: u64,
    },
    /// The compressed sections of the file state more than [`FILE_CAP`] together.
    CompressedTotal {
        /// What they state together.
        stated: u64,
    },
    /// `.gnu_debugdata`'s xz index states an inflated size over the cap.
    DebugDataStated {
        /// The size its index states.
        stated: u64,
    },
    /// `.gnu_debugdata` inflates past the cap (whatever its index says), is larger than
    /// the cap itself, or cannot be decoded within [`XZ_MEMLIMIT`].
    DebugData {
        /// What was wrong, in a few words.
        why: String,
    },
    /// An allocation failed while the file was named: something inflated past what its
    /// header stated, up to the worker's memory limit.
    MemoryLimit {
        /// The worker's `RLIMIT_DATA`.
        limit: Option<u64>,
    },
}

impl Refusal {
    /// In a few words, for the summary.
    pub fn describe(&self) -> String {
        match self {
            Self::Compressed { section, stated } => format!(
                "compressed {section} states {}, over the {} cap",
                mib(*stated),
                mib(SECTION_CAP)
            ),
            Self::CompressedTotal { stated } => format!(
                "compressed sections state {} together, over the {} cap",
                mib(*stated),
                mib(FILE_CAP)
            ),
            Self::DebugDataStated { stated } => format!(
                ".gnu_debugdata states {}, over the {} cap",
                mib(*stated),
                mib(SECTION_CAP)
            ),
            Self::DebugData { why } => format!(".gnu_debugdata {why}"),
            Self::MemoryLimit { limit: Some(limit) } => {
                format!(
                    "reading it reached the symbolizer's {} memory limit",
                    mib(*limit)
                )
            }
            Self::MemoryLimit { limit: None } => {
                "reading it ran out of memory in the symbolizer".to_owned()
            }
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// What may be inflated of one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Why its DWARF must not be read, if it must not.
    pub dwarf: Option<Refusal>,
    /// Why its MiniDebugInfo must not be read, if it must not.
    pub debugdata: Option<Refusal>,
}

/// Checks the compressed sections and the MiniDebugInfo of the ELF file at `path`. A file
/// that cannot be read is not refused here: reading it fails anyway.
pub fn check(path: &Path) -> Verdict {
    let mut verdict = Verdict::default();
    let Ok(file) = crate::sys::safe_open::open_regular(path) else {
        return verdict;
    };
    let cache = crate::process::elf_data::BoundedFile::headers(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return verdict;
    };
    let mut total = 0u64;
    for section in elf.sections() {
        let Ok(range) = section.compressed_file_range() else {
            continue;
        };
        if range.format == object::CompressionFormat::None {
            continue;
        }
        let name = section.name().unwrap_or("?");
        if range.uncompressed_size > SECTION_CAP {
            verdict.dwarf.get_or_insert(Refusal::Compressed {
                section: name.to_owned(),
                stated: range.uncompressed_size,
            });
        }
        total = total.saturating_add(range.uncompressed_size);
    }
    if verdict.dwarf.is_none() && total > FILE_CAP {
        verdict.dwarf = Some(Refusal::CompressedTotal { stated: total });
    }
    if let Some(section) = elf.section_by_name(".gnu_debugdata") {
        verdict.debugdata = check_debugdata(&section);
    }
    verdict
}

/// Why the `.gnu_debugdata` section must not be inflated, if it must not.
fn check_debugdata<'a>(section: &impl ObjectSection<'a>) -> Option<Refusal> {
    let refuse = |why: &str| {
        Some(Refusal::DebugData {
            why: why.to_owned(),
        })
    };
    let (_, size) = section.file_range()?;
    if size > SECTION_CAP {
        return refuse(&format!(
            "is {} compressed, over the {} cap",
            mib(size),
            mib(SECTION_CAP)
        ));
    }
    // Read in one read of the header budget (16 MiB): a MiniDebugInfo that large is
    // already far past any real one (they hold a stripped file's symbols only), and one
    // that cannot be checked is not inflated.
    let Ok(data) = section.data() else {
        return refuse(&format!(
            "is {} compressed, more than is read to check it",
            mib(size)
        ));
    };
    check_xz(data)
}

/// Why the xz stream `data` must not be inflated, if it must not.
fn check_xz(data: &[u8]) -> Option<Refusal> {
    let refuse = |why: &str| {
        Some(Refusal::DebugData {
            why: why.to_owned(),
        })
    };
    if let Some(stated) = xz_stated_size(data).filter(|&s| s > SECTION_CAP) {
        return Some(Refusal::DebugDataStated { stated });
    }
    // The index may lie, or be missing: what the stream really inflates to is counted, a
    // buffer at a time, up to one byte past the cap.
    let Ok(stream) = xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0) else {
        return None;
    };
    let mut decoder = xz2::read::XzDecoder::new_stream(data, stream);
    let mut buf = vec![0u8; 1 << 16];
    let mut inflated = 0u64;
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                inflated += n as u64;
                if inflated > SECTION_CAP {
                    return refuse(&format!("inflates past the {} cap", mib(SECTION_CAP)));
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                // A stream that needs a larger dictionary than the limit is refused; one
                // that is merely corrupt fails in blazesym too, without harm.
                let memlimit = err
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<xz2::stream::Error>())
                    .is_some_and(|e| matches!(e, xz2::stream::Error::MemLimit));
                if memlimit {
                    return refuse(&format!("needs over {} to decode", mib(XZ_MEMLIMIT)));
                }
                return None;
            }
        }
    }
}

/// The inflated size the index of the last xz stream in `data` states (the sum of its
/// blocks'), or `None` when it cannot be read.
fn xz_stated_size(data: &[u8]) -> Option<u64> {
    // Stream padding is zero bytes in groups of four after the footer.
    let mut end = data.len();
    while end >= 4 && data[end - 4..end] == [0; 4] {
        end -= 4;
    }
    let data = &data[..end];
    let footer = data.get(data.len().checked_sub(12)?..)?;
    if &footer[10..12] != b"YZ" {
        return None;
    }
    let backward = u32::from_le_bytes(footer[4..8].try_into().ok()?);
    let index_size = (u64::from(backward) + 1) * 4;
    let index_start = (data.len() - 12).checked_sub(usize::try_from(index_size).ok()?)?;
    let index = &data[index_start..data.len() - 12];
    let (&indicator, mut rest) = index.split_first()?;
    if indicator != 0 {
        return None;
    }
    let records = varint(&mut rest)?;
    let mut total = 0u64;
    // Each record takes two bytes at least, so the index's own size bounds the loop.
    for _ in 0..records.min(index.len() as u64 / 2) {
        let _unpadded = varint(&mut rest)?;
        total = total.saturating_add(varint(&mut rest)?);
    }
    Some(total)
}

/// An xz multibyte integer: seven bits a byte, low first, at most nine bytes.
fn varint(data: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let (&byte, rest) = data.split_first()?;
        *data = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = xz2::write::XzEncoder::new(&mut out, 1);
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap();
        out
    }

    #[test]
    fn the_xz_index_states_the_inflated_size() {
        assert_eq!(xz_stated_size(&xz(&[7; 100_000])), Some(100_000));
        assert_eq!(xz_stated_size(&xz(b"")), Some(0));
        let mut padded = xz(b"abc");
        padded.extend_from_slice(&[0; 8]);
        assert_eq!(xz_stated_size(&padded), Some(3));
        assert_eq!(xz_stated_size(b"not xz at all"), None);
        assert_eq!(xz_stated_size(&[0; 3]), None);
    }

    #[test]
    fn a_stream_is_refused_for_what_it_inflates_to_whatever_its_index_says() {
        let small = xz(&[1; 1000]);
        assert_eq!(check_xz(&small), None);
        // Over the cap, and cut before its index: only inflating it tells.
        let mut big = xz(&vec![0; usize::try_from(SECTION_CAP).unwrap() + (1 << 20)]);
        assert_eq!(
            check_xz(&big),
            Some(Refusal::DebugDataStated {
                stated: SECTION_CAP + (1 << 20)
            })
        );
        big.truncate(big.len() - 64);
        assert_eq!(xz_stated_size(&big), None);
        assert_eq!(
            check_xz(&big),
            Some(Refusal::DebugData {
                why: "inflates past the 256 MiB cap".to_owned()
            })
        );
    }

    #[test]
    fn this_test_binary_is_not_refused() {
        let me = std::env::current_exe().unwrap();
        assert_eq!(check(&me), Verdict::default());
    }

    #[test]
    fn refusals_say_what_and_how_much() {
        let text = Refusal::Compressed {
            section: ".debug_info".to_owned(),
            stated: 1 << 30,
        }
        .describe();
        assert_eq!(
            text,
            "compressed .debug_info states 1024 MiB, over the 256 MiB cap"
        );
    }
}
