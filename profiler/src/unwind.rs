//! Recovers the frames a frame-pointer walk skips, from `.eh_frame` and a copy of the top of
//! the user stack.
//!
//! `bpf_get_stackid` follows frame pointers. A function built without them (all of Debian's
//! libc) leaves `rbp` pointing at its caller's caller, so a stack taken inside `pread64`
//! reads `main -> pread64` when the truth is `main -> read_bytewise -> pread64`. The kernel
//! programs copy the top of the user stack with the first sample of each stack; here the
//! call frame information of the leaf's ELF file says where on that copy the return address
//! lies, frame after frame, until a function that keeps a frame pointer takes over again.
//! x86-64 only.

use std::collections::HashMap;
use std::fs;

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, RegisterRule, UnwindContext,
    UnwindSection, X86_64,
};
use object::{Object, ObjectSection, ObjectSegment};

use crate::procmaps::ProcessInfo;

/// How many frames without frame pointers are unwound at most above a leaf.
const MAX_SKIPPED: usize = 8;
/// How many frames are restored at most when the frame-pointer walk found none.
const MAX_RESTORED: usize = 32;

/// The top of a thread's user stack as the kernel copied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTop {
    /// The user stack pointer when the copy was taken.
    pub sp: u64,
    /// The user `rbp` then (a frame pointer, or data in code built without them).
    pub bp: u64,
    /// Words from `sp` upwards.
    pub words: Vec<u64>,
}

impl StackTop {
    fn word_at(&self, addr: u64) -> Option<u64> {
        let index = addr.checked_sub(self.sp)? / 8;
        if addr % 8 != self.sp % 8 {
            return None;
        }
        self.words.get(usize::try_from(index).ok()?).copied()
    }
}

/// How to find the canonical frame address (CFA) at an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cfa {
    /// `rsp + offset`: the function keeps no frame pointer here.
    StackPointer(i64),
    /// `rbp + offset`: the function keeps a frame pointer.
    FramePointer(i64),
}

/// How to unwind one frame at an instruction: where its CFA is, and where it saved its
/// caller's `rbp` (an offset from the CFA), if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    cfa: Cfa,
    saved_rbp: Option<i64>,
}

/// An ELF file's call frame information, loaded once.
struct CallFrameInfo {
    eh_frame: (u64, Vec<u8>),
    eh_frame_hdr: (u64, Vec<u8>),
    /// (file offset, size, virtual address) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
}

impl CallFrameInfo {
    fn load(path: &str) -> Option<Self> {
        // Only the headers and the two sections are read: the whole file of a large
        // library (libLLVM, 200 MB) would be resident for the rest of the run.
        let file = fs::File::open(path).ok()?;
        let cache = object::ReadCache::new(file);
        let elf = object::File::parse(&cache).ok()?;
        let section = |name: &str| {
            let section = elf.section_by_name(name)?;
            Some((section.address(), section.data().ok()?.to_vec()))
        };
        let eh_frame = section(".eh_frame")?;
        let eh_frame_hdr = section(".eh_frame_hdr")?;
        let segments = elf
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        Some(Self {
            eh_frame,
            eh_frame_hdr,
            segments,
        })
    }

    fn virtual_address(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|&&(offset, size, _)| (offset..offset + size).contains(&file_offset))
            .map(|&(offset, _, vaddr)| file_offset - offset + vaddr)
    }

    fn rule(&self, vaddr: u64) -> Option<Rule> {
        let eh_frame = EhFrame::new(&self.eh_frame.1, LittleEndian);
        let hdr = EhFrameHdr::new(&self.eh_frame_hdr.1, LittleEndian);
        let bases = BaseAddresses::default()
            .set_eh_frame(self.eh_frame.0)
            .set_eh_frame_hdr(self.eh_frame_hdr.0);
        let parsed = hdr.parse(&bases, 8).ok()?;
        let table = parsed.table()?;
        let mut ctx = UnwindContext::new();
        let row = table
            .unwind_info_for_address(&eh_frame, &bases, &mut ctx, vaddr, EhFrame::cie_from_offset)
            .ok()?;
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RSP => {
                Cfa::StackPointer(*offset)
            }
            CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RBP => {
                Cfa::FramePointer(*offset)
            }
            _ => return None,
        };
        let saved_rbp = match row.register(X86_64::RBP) {
            Some(RegisterRule::Offset(offset)) => Some(offset),
            _ => None,
        };
        Some(Rule { cfa, saved_rbp })
    }
}

/// Finds skipped frames, caching each file's call frame information.
#[derive(Default)]
pub struct LeafUnwinder {
    files: HashMap<String, Option<CallFrameInfo>>,
}

impl LeafUnwinder {
    /// The return addresses of the frames between the leaf at `ip` and the first frame of
    /// the frame-pointer walk (`callers`), innermost first; empty when nothing was skipped
    /// or the unwind information is missing.
    ///
    /// When the walk found no callers at all (the leaf used `rbp` for data, so the walk
    /// stopped at once), the unwind goes on through frame-pointer functions too, as far as
    /// the copied stack reaches.
    pub fn skipped_frames(
        &mut self,
        process: &ProcessInfo,
        ip: u64,
        top: &StackTop,
        callers: &[u64],
    ) -> Vec<u64> {
        let walk_cut_short = callers.is_empty();
        let limit = if walk_cut_short {
            MAX_RESTORED
        } else {
            MAX_SKIPPED
        };
        let mut frames = Vec::new();
        let (mut pc, mut sp, mut bp) = (ip, top.sp, top.bp);
        let mut reached_frame_pointer = false;
        for depth in 0..limit {
            // A return address points after the call; the call itself is one byte before.
            let lookup = if depth == 0 { pc } else { pc - 1 };
            let Some(rule) = self.rule_at(process, lookup) else {
                break;
            };
            let cfa = match rule.cfa {
                Cfa::StackPointer(offset) => sp.wrapping_add_signed(offset),
                // The frame-pointer walk covers this frame and those above it.
                Cfa::FramePointer(_) if !walk_cut_short => {
                    reached_frame_pointer = true;
                    break;
                }
                Cfa::FramePointer(offset) => bp.wrapping_add_signed(offset),
            };
            let Some(ret) = top.word_at(cfa.wrapping_sub(8)) else {
                break; // Past the copied stack.
            };
            if process.find(ret).is_none() {
                break; // Not code: the unwind went wrong, keep what was sure.
            }
            if let Some(offset) = rule.saved_rbp {
                bp = top.word_at(cfa.wrapping_add_signed(offset)).unwrap_or(0);
            }
            frames.push(ret);
            (pc, sp) = (ret, cfa);
        }
        if !walk_cut_short && !reached_frame_pointer {
            // The chain ended without reaching a frame-pointer function: the walk's own
            // frames are as good a guess as ours past the first.
            frames.truncate(1);
        }
        frames
    }

    fn rule_at(&mut self, process: &ProcessInfo, addr: u64) -> Option<Rule> {
        let entry = process.find(addr)?;
        if !entry.is_file() {
            return None;
        }
        let info = self
            .files
            .entry(entry.path.clone())
            .or_insert_with(|| CallFrameInfo::load(&entry.path))
            .as_ref()?;
        let vaddr = info.virtual_address(addr - entry.start + entry.offset)?;
        info.rule(vaddr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procmaps::ProcessTable;

    #[test]
    fn word_lookup_respects_bounds_and_alignment() {
        let top = StackTop {
            sp: 0x1000,
            bp: 0,
            words: vec![1, 2, 3],
        };
        assert_eq!(top.word_at(0x1000), Some(1));
        assert_eq!(top.word_at(0x1010), Some(3));
        assert_eq!(top.word_at(0x1018), None);
        assert_eq!(top.word_at(0xff8), None);
        assert_eq!(top.word_at(0x1004), None);
    }

    #[test]
    fn finds_the_caller_of_a_libc_function_at_its_entry() {
        // At the first instruction of any function the return address is at [rsp]: the
        // frame-pointer walk would skip the caller there.
        let mut table = ProcessTable::default();
        assert!(table.snapshot(std::process::id()));
        let me = table.get(std::process::id()).unwrap();
        let entry = libc::getppid as unsafe extern "C" fn() -> libc::pid_t as usize as u64;
        let caller = finds_the_caller_of_a_libc_function_at_its_entry as fn() as usize as u64 + 4;
        let top = StackTop {
            sp: 0x7ff0_0000,
            bp: 0,
            words: vec![caller, 0, 0, 0],
        };
        let mut unwinder = LeafUnwinder::default();
        let skipped = unwinder.skipped_frames(me, entry, &top, &[0x1234]);
        assert_eq!(skipped.first(), Some(&caller), "{skipped:x?}");
    }
}
