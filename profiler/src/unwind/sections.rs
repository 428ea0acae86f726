//! The unwind information of one ELF file, read once and shared by every process that maps
//! it: `.eh_frame` with its `.eh_frame_hdr` index, or `.debug_frame`, and where they are
//! meant to be loaded.
//!
//! The file may belong to any user, so each section is read within a budget decided from
//! its stated size before anything is allocated: a section stated larger than
//! [`MAX_SECTION_BYTES`] (compressed or not) is refused, a compressed one is inflated
//! through a reader that stops at its stated size, and one that inflates to anything else
//! is refused too. A refused section leaves the file to be unwound by frame pointers.

use std::fs::File;
use std::ops::{Deref, Range};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use framehop::ExplicitModuleSectionInfo;
use object::{CompressionFormat, Object, ObjectSection, ObjectSegment};

/// The most bytes of one unwind section read, after decompression: libxul's `.eh_frame`,
/// among the largest there are, is under 10 MiB.
pub const MAX_SECTION_BYTES: u64 = 64 << 20;

/// The page size mappings are aligned to.
const PAGE: u64 = 4096;

/// Section bytes shared between the processes that map a file.
#[derive(Debug, Clone, Default)]
pub struct Bytes(Arc<[u8]>);

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// One section's stated address range and bytes.
#[derive(Debug, Clone)]
struct Section {
    svma: Range<u64>,
    data: Bytes,
}

/// Why a file's unwind sections were not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not an ELF file the unwinder reads.
    NotElf,
    /// A section stated over [`MAX_SECTION_BYTES`], or over what the run has left.
    OverBudget,
    /// A compressed section that does not inflate to its stated size, or in a compression
    /// the profiler does not read.
    BadCompression,
}

/// What framehop needs of a file to unwind through its code.
#[derive(Debug)]
pub struct UnwindSections {
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    eh_frame: Option<Section>,
    eh_frame_hdr: Option<Section>,
    debug_frame: Option<Section>,
    /// Each loadable segment.
    segments: Vec<Segment>,
    /// For a Go executable, the stated ranges of the runtime's top frames, where its
    /// stacks end.
    pub go_top_frames: Option<Vec<Range<u64>>>,
}

/// Where a loadable segment lies in the file and in memory.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    size: u64,
    vaddr: u64,
    executable: bool,
}

impl UnwindSections {
    /// Reads the unwind sections of an ELF file, at most `budget` bytes of them in all
    /// (each at most [`MAX_SECTION_BYTES`]); only its headers and those sections are read,
    /// never the whole file (a large library would stay resident for the run).
    ///
    /// # Errors
    /// Why the file's sections are not used: it unwinds by frame pointers.
    pub fn read(file: &File, budget: u64) -> Result<Self, Refused> {
        // Parsing reads the symbol tables too (the `object` crate reads them eagerly): a
        // table stated past the section cap is refused like a section, not read.
        let cache = crate::process::elf_data::BoundedFile::new(
            file.try_clone().map_err(|_| Refused::NotElf)?,
            MAX_SECTION_BYTES,
            4 * MAX_SECTION_BYTES,
        );
        let elf = object::File::parse(&cache).map_err(|_| {
            if cache.over_budget() {
                Refused::OverBudget
            } else {
                Refused::NotElf
            }
        })?;
        let range = |name: &str| {
            let section = elf.section_by_name(name)?;
            Some(section.address()..section.address().saturating_add(section.size()))
        };
        let mut left = budget;
        let mut section = |name: &str| -> Result<Option<Section>, Refused> {
            let Some(section) = elf.section_by_name(name) else {
                return Ok(None);
            };
            let data = read_bounded(file, &section, left.min(MAX_SECTION_BYTES))?;
            left -= data.len() as u64;
            Ok(Some(Section {
                svma: section.address()..section.address().saturating_add(section.size()),
                data: Bytes(Arc::from(data)),
            }))
        };
        let eh_frame = section(".eh_frame")?;
        let eh_frame_hdr = section(".eh_frame_hdr")?;
        // Go compresses its `.debug_frame`.
        let debug_frame = section(".debug_frame")?;
        Ok(Self {
            go_top_frames: super::go_stacks::top_frames(&elf, &cache),
            text: range(".text"),
            got: range(".got"),
            eh_frame,
            eh_frame_hdr,
            debug_frame,
            segments: elf
                .segments()
                .map(|s| {
                    let (offset, size) = s.file_range();
                    let executable = matches!(
                        s.flags(),
                        object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0
                    );
                    Segment {
                        offset,
                        size,
                        vaddr: s.address(),
                        executable,
                    }
                })
                .collect(),
        })
    }

    /// Bytes of section data held.
    pub fn bytes(&self) -> u64 {
        [&self.eh_frame, &self.eh_frame_hdr, &self.debug_frame]
            .into_iter()
            .flatten()
            .map(|s| s.data.len() as u64)
            .sum()
    }

    /// The load bias of a mapping of this file at `start` from file offset `offset`: what is
    /// added to a stated address to get the address in the process.
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        // A mapping starts at a page boundary, usually before its segment's first byte,
        // which can share its page with the segment before (lld and mold put the code in
        // the first page's tail): the executable segment whose first page the mapping
        // starts at is the one (the profiler keeps only executable mappings), else any
        // segment starting there, else the one that holds the offset.
        let page = |o: u64| o & !(PAGE - 1);
        let starts_here = |s: &&Segment| page(s.offset) == offset;
        let segment = self
            .segments
            .iter()
            .filter(starts_here)
            .find(|s| s.executable)
            .or_else(|| self.segments.iter().find(starts_here))
            .or_else(|| {
                self.segments
                    .iter()
                    .find(|s| (s.offset..s.offset + s.size.max(1)).contains(&offset))
            })?;
        Some(
            start
                .wrapping_add(segment.offset)
                .wrapping_sub(offset)
                .wrapping_sub(segment.vaddr),
        )
    }

    /// The sections as framehop takes them for one module.
    pub fn module_info(&self) -> ExplicitModuleSectionInfo<Bytes> {
        let part = |s: &Option<Section>| s.as_ref().map(|s| (s.svma.clone(), s.data.clone()));
        let eh_frame = part(&self.eh_frame);
        let eh_frame_hdr = part(&self.eh_frame_hdr);
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: eh_frame.map(|(_, d)| d),
            eh_frame_hdr_svma: eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: eh_frame_hdr.map(|(_, d)| d),
            debug_frame: self.debug_frame.as_ref().map(|s| s.data.clone()),
            ..ExplicitModuleSectionInfo::default()
        }
    }
}

/// The bytes of `section`, at most `cap` of them after decompression: its stated sizes are
/// checked against `cap` before anything is allocated, and only its own file range is read.
fn read_bounded<'data>(
    file: &File,
    section: &impl ObjectSection<'data>,
    cap: u64,
) -> Result<Vec<u8>, Refused> {
    let range = section
        .compressed_file_range()
        .map_err(|_| Refused::BadCompression)?;
    match range.format {
        CompressionFormat::None | CompressionFormat::Zlib => {}
        _ => return Err(Refused::BadCompression),
    }
    // zlib never grows data by more than a few bytes per 16 KiB block.
    let compressed_cap = cap + cap / 256 + 64;
    if range.uncompressed_size > cap || range.compressed_size > compressed_cap {
        return Err(Refused::OverBudget);
    }
    let mut raw =
        vec![0u8; usize::try_from(range.compressed_size).map_err(|_| Refused::OverBudget)?];
    file.read_exact_at(&mut raw, range.offset)
        .map_err(|_| Refused::BadCompression)?;
    if range.format == CompressionFormat::None {
        return Ok(raw);
    }
    crate::process::elf_data::inflate_exactly(&raw, range.uncompressed_size)
        .ok_or(Refused::BadCompression)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_executable_s_call_frame_information() {
        let file = File::open("/proc/self/exe").unwrap();
        let sections = UnwindSections::read(&file, u64::MAX).expect("an ELF file");
        assert!(sections.bytes() > 0);
        // A budget smaller than its sections refuses the file.
        assert_eq!(
            UnwindSections::read(&file, 16).err(),
            Some(Refused::OverBudget)
        );
        assert!(sections.eh_frame.is_some() && sections.eh_frame_hdr.is_some());
        assert!(sections.text.is_some());
        // A mapping of the executable segment's first page, loaded with a bias of
        // 0x5000_0000.
        let code = sections.segments.iter().find(|s| s.executable).unwrap();
        let start = 0x5000_0000 + (code.vaddr & !(PAGE - 1));
        assert_eq!(
            sections.bias(start, code.offset & !(PAGE - 1)),
            Some(0x5000_0000)
        );
    }

    #[test]
    fn the_code_segment_wins_a_shared_first_page() {
        // lld's layout: a read-only segment at offset 0, the code at 0x5e0 in the same
        // file page, loaded one page higher; the code mapping starts at file offset 0.
        let segment = |offset, vaddr, executable| Segment {
            offset,
            size: 0x100,
            vaddr,
            executable,
        };
        let sections = UnwindSections {
            text: None,
            got: None,
            eh_frame: None,
            eh_frame_hdr: None,
            debug_frame: None,
            segments: vec![segment(0, 0, false), segment(0x5e0, 0x15e0, true)],
            go_top_frames: None,
        };
        let base = 0x5641_52ff_8000;
        assert_eq!(sections.bias(base + 0x1000, 0), Some(base));
    }
}
