//! The unwind information of one ELF file, read once and shared by every process that maps
//! it: `.eh_frame` with its `.eh_frame_hdr` index, or `.debug_frame`, and where they are
//! meant to be loaded.

use std::fs::File;
use std::ops::{Deref, Range};
use std::sync::Arc;

use framehop::ExplicitModuleSectionInfo;
use object::{Object, ObjectSection, ObjectSegment};

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
    /// Reads the unwind sections of an ELF file; only its headers and those sections are
    /// read, never the whole file (a large library would stay resident for the run).
    pub fn read(file: &File) -> Option<Self> {
        let cache = object::ReadCache::new(file);
        let elf = object::File::parse(&cache).ok()?;
        let range = |name: &str| {
            let section = elf.section_by_name(name)?;
            Some(section.address()..section.address() + section.size())
        };
        let section = |name: &str| {
            let section = elf.section_by_name(name)?;
            // Go compresses its `.debug_frame`.
            let data = crate::process::elf_data::section_bytes(&section)?;
            Some(Section {
                svma: section.address()..section.address() + section.size(),
                data: Bytes(Arc::from(&*data)),
            })
        };
        Some(Self {
            text: range(".text"),
            got: range(".got"),
            eh_frame: section(".eh_frame"),
            eh_frame_hdr: section(".eh_frame_hdr"),
            debug_frame: section(".debug_frame"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_executable_s_call_frame_information() {
        let file = File::open("/proc/self/exe").unwrap();
        let sections = UnwindSections::read(&file).expect("an ELF file");
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
        };
        let base = 0x5641_52ff_8000;
        assert_eq!(sections.bias(base + 0x1000, 0), Some(base));
    }
}
