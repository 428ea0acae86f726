//! Names the code of Go binaries that have no symbol table or DWARF (built with
//! `-ldflags='-s -w'`, as releases usually are) from `.gopclntab`, the table the Go runtime
//! itself symbolizes tracebacks with: function names, file:line, and inlined functions
//! from each function's inline tree (`FUNCDATA_InlTree`, indexed by the
//! `PCDATA_InlTreeIndex` table). The unwinder finds Go's top frames in it by name too
//! ([`GoPclnTab::functions_named`]), where such a binary's stacks end.
//!
//! Layouts of Go 1.16 and later (header magics `0xfffffffa`, `0xfffffff0` for 1.18,
//! `0xfffffff1` for 1.20), as `runtime/symtab.go` and `debug/gosym` read them. No crate
//! reads the line tables and inline trees for symbolization (`gimli` and `object` do not
//! know the format; the crates that do recover names for reverse engineering), hence this
//! parser. The file is the profiled program's, not trusted: every read is bounds-checked,
//! only the sections the table needs are read, each within [`MAX_GO_SECTION_BYTES`], and
//! every walk is bounded by the table's own sizes and a budget of steps
//! ([`STEP_BUDGET`], [`STEPS_PER_LOOKUP`]); a table that breaks a bound is [refused](GoPclnTab::refused) as a
//! whole.

use std::cell::{Cell, OnceCell};
use std::fs::File;
use std::ops::Range;

use object::{Object, ObjectSection, ReadRef};
use profiler_model::Line;

use crate::process::elf_data::BoundedFile;

/// `PCDATA_InlTreeIndex`: the pcdata table giving the inline tree index at a PC.
const PCDATA_INL_TREE_INDEX: usize = 2;
/// `FUNCDATA_InlTree`: the funcdata slot of the inline tree.
const FUNCDATA_INL_TREE: usize = 3;
/// Deepest inlining followed (the tree is the file's: a loop in it must end). Go's
/// inliner stays far below it; a table that goes deeper is refused.
const MAX_INLINE_DEPTH: usize = 64;
/// The largest section read (`.gopclntab`, `.rodata`, the module data's): a few times the
/// largest real ones (a 200 MB Go binary has a `.gopclntab` of some 60 MB).
pub const MAX_GO_SECTION_BYTES: u64 = 256 << 20;
/// What reading one Go binary's tables may read in all.
const MAX_GO_BYTES: u64 = 512 << 20;
/// Steps of all the walks of one table together (a pc-value pair decoded, 64 bytes of a
/// name scanned), to start with: a lookup in a real table takes tens to thousands, so
/// this alone names some hundred thousand addresses of a real binary, in under a second.
const STEP_BUDGET: u64 = 1 << 26;
/// Steps each lookup adds to the budget, so that a long profile of a big binary is never
/// refused for its number of addresses, while a crafted table's cost stays linear in
/// them.
const STEPS_PER_LOOKUP: u64 = 1 << 11;
/// The longest function or file name read (Go's longest generic names are a few KiB).
const MAX_NAME_BYTES: usize = 64 << 10;

/// The pclntab layouts, by the Go release that introduced them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layout {
    Go116,
    Go118,
    Go120,
}

/// A Go binary's PC-line table, over the sections of its file that hold it.
pub struct GoPclnTab<'a> {
    data: &'a BoundedFile,
    elf: object::File<'a, &'a BoundedFile>,
    tab: &'a [u8],
    layout: Layout,
    ptr: usize,
    quantum: u64,
    nfunc: usize,
    text_start: u64,
    funcnames: &'a [u8],
    cutab: &'a [u8],
    filetab: &'a [u8],
    pctab: &'a [u8],
    /// The function table and the `_func` records it points into (`pclntable`).
    functab: &'a [u8],
    /// The address of the table's header, which the module data points at.
    header: u64,
    /// The address funcdata offsets are relative to (`moduledata.gofunc`, Go 1.18+), where
    /// the module data was found; without it there are no inline trees. Looked for at the
    /// first inline tree asked for: finding it scans the data sections.
    gofunc: OnceCell<Option<u64>>,
    /// Steps left of [`STEP_BUDGET`] and the [`STEPS_PER_LOOKUP`] of the lookups so far.
    steps: Cell<u64>,
    /// Whether a walk broke a bound: the table is not to be believed.
    refused: Cell<bool>,
}

impl<'a> GoPclnTab<'a> {
    /// The open Go binary `file`, to be read within the budget of its tables.
    pub fn open(file: File) -> BoundedFile {
        BoundedFile::new(file, MAX_GO_SECTION_BYTES, MAX_GO_BYTES)
    }

    /// The table of the ELF file `data` (from [`Self::open`]), if it has a `.gopclntab` of
    /// a known layout within [`MAX_GO_SECTION_BYTES`].
    pub fn parse(data: &'a BoundedFile) -> Option<Self> {
        let elf = object::File::parse(data).ok()?;
        let section = elf.section_by_name(".gopclntab")?;
        if section.size() > MAX_GO_SECTION_BYTES {
            log::debug!(
                ".gopclntab of {} bytes, over the {MAX_GO_SECTION_BYTES}-byte cap: not read",
                section.size()
            );
        }
        // The file refuses a read over the cap, and remembers it (`over_budget`).
        let tab = section.data().ok()?;
        let header = section.address();
        let magic = u32::from_le_bytes(tab.get(..4)?.try_into().ok()?);
        let layout = match magic {
            0xffff_fffa => Layout::Go116,
            0xffff_fff0 => Layout::Go118,
            0xffff_fff1 => Layout::Go120,
            _ => {
                log::debug!("unknown .gopclntab magic {magic:#x}");
                return None;
            }
        };
        let quantum = u64::from(*tab.get(6)?);
        let ptr = usize::from(*tab.get(7)?);
        if ptr != 8 || quantum == 0 {
            return None;
        }
        let word = |i: usize| read_uint(tab, 8 + i * ptr, ptr);
        let nfunc = usize::try_from(word(0)?).ok()?;
        // Go 1.18 added textStart after nfiles; the offsets follow.
        let (text_start, first) = match layout {
            Layout::Go116 => (0, 2),
            _ => (word(2)?, 3),
        };
        let slice_from =
            |i: usize| -> Option<&'a [u8]> { tab.get(usize::try_from(word(first + i)?).ok()?..) };
        let text_start = match text_start {
            // A position-independent binary has it relocated at load time.
            0 => elf.section_by_name(".text").map_or(0, |s| s.address()),
            t => t,
        };
        let functab = slice_from(4)?;
        // The function table holds nfunc + 1 entries: a count beyond it is a lie.
        let entry_size = if layout == Layout::Go116 { 16 } else { 8 };
        if nfunc == 0 || nfunc >= functab.len() / entry_size {
            log::debug!(".gopclntab: {nfunc} functions do not fit its function table");
            return None;
        }
        Some(Self {
            data,
            funcnames: slice_from(0)?,
            cutab: slice_from(1)?,
            filetab: slice_from(2)?,
            pctab: slice_from(3)?,
            functab,
            elf,
            tab,
            layout,
            ptr,
            quantum,
            nfunc,
            text_start,
            header,
            gofunc: OnceCell::new(),
            steps: Cell::new(STEP_BUDGET),
            refused: Cell::new(false),
        })
    }

    /// Whether a walk broke a bound ([`STEP_BUDGET`], [`MAX_INLINE_DEPTH`]): the table is
    /// crafted or corrupt, and nothing it named is to be believed.
    pub fn refused(&self) -> bool {
        self.refused.get()
    }

    /// Takes `n` steps of the budget; `None` (and the table refused) when it is spent.
    fn step(&self, n: u64) -> Option<()> {
        match self.steps.get().checked_sub(n) {
            Some(left) if !self.refused.get() => {
                self.steps.set(left);
                Some(())
            }
            _ => {
                self.refused.set(true);
                None
            }
        }
    }

    /// The frames of the code at virtual address `pc`, innermost (inlined) first; `None`
    /// when no function holds it, or the table is refused.
    pub fn frames(&self, pc: u64) -> Option<Vec<Line>> {
        if self.refused() {
            return None;
        }
        self.steps
            .set(self.steps.get().saturating_add(STEPS_PER_LOOKUP));
        let func = self.find_func(pc)?;
        let entry = self.func_entry(func)?;
        let name = self.func_name(func)?;
        let inline = self.inline_tree(func);
        let mut lines = Vec::new();
        let mut at = pc;
        for _ in 0..MAX_INLINE_DEPTH {
            let (file, line) = self.position(func, entry, at);
            let index = inline
                .and_then(|_| self.pcdata(func, entry, PCDATA_INL_TREE_INDEX, at))
                .filter(|&i| i >= 0);
            let Some((tree, index)) = inline.zip(index) else {
                lines.push(Line {
                    function: name.to_owned(),
                    file,
                    line,
                });
                return Some(lines);
            };
            let Some((callee, parent_pc)) = self.inlined_call(tree, index as u64) else {
                lines.push(Line {
                    function: name.to_owned(),
                    file,
                    line,
                });
                return Some(lines);
            };
            lines.push(Line {
                function: callee.to_owned(),
                file,
                line,
            });
            at = entry.checked_add(parent_pc)?;
        }
        // Deeper than any inlining Go does: a loop in the tree.
        self.refused.set(true);
        None
    }

    /// The offset in `functab` of the `_func` record of the function holding `pc`.
    fn find_func(&self, pc: u64) -> Option<usize> {
        // nfunc entries and one more giving the end of the last function.
        let entry_of = |i: usize| self.functab_entry(i);
        let (first, end) = (entry_of(0)?, entry_of(self.nfunc)?);
        if pc < first || pc >= end {
            return None;
        }
        let (mut lo, mut hi) = (0, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if entry_of(mid)? <= pc {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.functab_func(lo)
    }

    /// The offset in `functab` of the `_func` record of function table row `i`.
    fn functab_func(&self, i: usize) -> Option<usize> {
        let funcoff = match self.layout {
            Layout::Go116 => read_uint(self.functab, i * 16 + 8, 8)?,
            _ => u64::from(read_u32(self.functab, i * 8 + 4)?),
        };
        usize::try_from(funcoff).ok()
    }

    /// The address ranges of the functions named one of `names` (as the table names them:
    /// assembly functions without the symbol table's `.abi0`), each from its entry to the
    /// next function's. One pass over the function table, each name compared where it
    /// lies, never scanned: linear in the table's size, whatever the table holds.
    pub fn functions_named(&self, names: &[&str]) -> Vec<Range<u64>> {
        let named = |at: u32| {
            let Some(name) = self.funcnames.get(at as usize..) else {
                return false;
            };
            names.iter().any(|n| {
                name.strip_prefix(n.as_bytes())
                    .is_some_and(|rest| rest.first() == Some(&0))
            })
        };
        (0..self.nfunc)
            .filter(|&i| {
                self.functab_func(i)
                    .and_then(|func| self.func_field(func, 0))
                    .is_some_and(named)
            })
            .filter_map(|i| Some(self.functab_entry(i)?..self.functab_entry(i + 1)?))
            .filter(|range| !range.is_empty())
            .collect()
    }

    /// The entry address of function table row `i`.
    fn functab_entry(&self, i: usize) -> Option<u64> {
        match self.layout {
            Layout::Go116 => read_uint(self.functab, i * 16, 8),
            _ => Some(self.text_start + u64::from(read_u32(self.functab, i * 8)?)),
        }
    }

    /// The entry address of a `_func` record.
    fn func_entry(&self, func: usize) -> Option<u64> {
        match self.layout {
            Layout::Go116 => read_uint(self.functab, func, 8),
            _ => Some(self.text_start + u64::from(read_u32(self.functab, func)?)),
        }
    }

    /// A `uint32` field of a `_func` record, counted after its entry field.
    fn func_field(&self, func: usize, index: usize) -> Option<u32> {
        let entry_size = if self.layout == Layout::Go116 { 8 } else { 4 };
        read_u32(self.functab, func + entry_size + index * 4)
    }

    fn func_name(&self, func: usize) -> Option<&'a str> {
        self.name_at(self.funcnames, self.func_field(func, 0)? as usize)
    }

    /// The name at `at` of a string table, its scan paid for from the budget.
    fn name_at(&self, table: &'a [u8], at: usize) -> Option<&'a str> {
        let bytes = table.get(at..)?;
        let scanned = bytes.len().min(MAX_NAME_BYTES);
        let end = bytes[..scanned].iter().position(|&b| b == 0);
        self.step(end.unwrap_or(scanned) as u64 / 64 + 1)?;
        std::str::from_utf8(&bytes[..end?]).ok()
    }

    /// The fields after `nameOff`: args, deferreturn, pcsp, pcfile, pcln, npcdata,
    /// cuOffset, (startLine), then funcID, flag, a byte and nfuncdata.
    fn npcdata(&self, func: usize) -> Option<usize> {
        Some(self.func_field(func, 6)? as usize)
    }

    /// Where the pcdata offsets of a `_func` start.
    fn pcdata_start(&self, func: usize) -> usize {
        let entry_size = if self.layout == Layout::Go116 { 8 } else { 4 };
        // nameOff..cuOffset are 8 uint32s; Go 1.20 added startLine; then 4 bytes.
        let fields = if self.layout == Layout::Go120 { 9 } else { 8 };
        func + entry_size + fields * 4 + 4
    }

    fn nfuncdata(&self, func: usize) -> Option<usize> {
        Some(usize::from(*self.functab.get(self.pcdata_start(func) - 1)?))
    }

    /// The file and line of `pc` in function `func`.
    fn position(&self, func: usize, entry: u64, pc: u64) -> (Option<String>, u32) {
        let line = self
            .func_field(func, 5)
            .and_then(|off| self.pcvalue(off, entry, pc))
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(0);
        let file = self
            .func_field(func, 4)
            .and_then(|off| self.pcvalue(off, entry, pc))
            .and_then(|index| self.file_name(func, index));
        (file, line)
    }

    fn file_name(&self, func: usize, index: i64) -> Option<String> {
        let cu = u64::from(self.func_field(func, 7)?);
        let slot = cu.checked_add(u64::try_from(index).ok()?)?;
        let off = read_u32(self.cutab, usize::try_from(slot).ok()?.checked_mul(4)?)?;
        if off == u32::MAX {
            return None;
        }
        self.name_at(self.filetab, off as usize).map(str::to_owned)
    }

    /// The value of pcdata table `table` of `func` at `pc`.
    fn pcdata(&self, func: usize, entry: u64, table: usize, pc: u64) -> Option<i64> {
        if table >= self.npcdata(func)? {
            return None;
        }
        let off = read_u32(self.functab, self.pcdata_start(func) + table * 4)?;
        self.pcvalue(off, entry, pc)
    }

    /// Where the inline tree of `func` is in the file, if it has one.
    fn inline_tree(&self, func: usize) -> Option<u64> {
        if FUNCDATA_INL_TREE >= self.nfuncdata(func)? {
            return None;
        }
        let npcdata = self.npcdata(func)?;
        let start = self.pcdata_start(func) + npcdata * 4;
        match self.layout {
            Layout::Go116 => {
                // uintptr addresses, aligned to the pointer size from the table's start.
                let aligned = start.next_multiple_of(self.ptr);
                let addr = read_uint(self.functab, aligned + FUNCDATA_INL_TREE * 8, 8)?;
                (addr != 0).then_some(addr)
            }
            _ => {
                let off = read_u32(self.functab, start + FUNCDATA_INL_TREE * 4)?;
                let gofunc = *self.gofunc.get_or_init(|| self.find_gofunc());
                (off != u32::MAX).then(|| gofunc.map(|g| g + u64::from(off)))?
            }
        }
    }

    /// The name of the function inlined at `index` of the tree at `tree`, and the offset
    /// from the outer function's entry of the call it was inlined into.
    fn inlined_call(&self, tree: u64, index: u64) -> Option<(&'a str, u64)> {
        let size = if self.layout == Layout::Go120 { 16 } else { 20 };
        let record = self.read_vaddr(tree.checked_add(index.checked_mul(size)?)?, size)?;
        let (name_off, parent_pc) = match self.layout {
            // funcID, 3 bytes, nameOff, parentPc, startLine.
            Layout::Go120 => (read_u32(record, 4)?, read_u32(record, 8)?),
            // parent, funcID, a byte, file, line, func, parentPc.
            _ => (read_u32(record, 12)?, read_u32(record, 16)?),
        };
        Some((
            self.name_at(self.funcnames, name_off as usize)?,
            u64::from(parent_pc),
        ))
    }

    /// Runs the pcvalue table at `off` of `pctab` from `entry` to the value at `pc`. Each
    /// step decodes at least two bytes of the table, so a walk ends within the table, and
    /// every step is paid from the budget, so all the walks together end too.
    fn pcvalue(&self, off: u32, entry: u64, pc: u64) -> Option<i64> {
        if off == 0 {
            return None;
        }
        let mut p = self.pctab.get(off as usize..)?;
        let (mut value, mut at) = (-1i64, entry);
        let mut first = true;
        loop {
            self.step(1)?;
            let (uvdelta, rest) = varint(p)?;
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            let (pcdelta, rest) = varint(rest)?;
            p = rest;
            // Zig-zag: the low bit is the sign.
            let vdelta = if uvdelta & 1 != 0 {
                !((uvdelta >> 1) as i64)
            } else {
                (uvdelta >> 1) as i64
            };
            value = value.wrapping_add(vdelta);
            at = at.checked_add(pcdelta.checked_mul(self.quantum)?)?;
            if pc < at {
                return Some(value);
            }
        }
    }

    /// `moduledata.gofunc`: the module data is the word in the data sections that points at
    /// the pclntab header, followed by a pointer to its function names; `gofunc` follows
    /// `rodata`, the start of `.rodata`, some 40 words on (Go 1.20 added two words before
    /// them, Go 1.27 three more), and points into the file's data (`.rodata`, or
    /// `.gopclntab` since Go 1.27).
    fn find_gofunc(&self) -> Option<u64> {
        let header = self.header;
        if self.layout == Layout::Go116 {
            return None;
        }
        let rodata = self.elf.section_by_name(".rodata")?;
        let start = rodata.address();
        let funcnames = header.checked_add(self.funcnames_offset()?)?;
        for name in [".go.module", ".noptrdata", ".data"] {
            let Some(data) = self
                .elf
                .section_by_name(name)
                .filter(|s| s.size() <= MAX_GO_SECTION_BYTES)
                .and_then(|s| s.data().ok())
            else {
                continue;
            };
            for at in (0..data.len().saturating_sub(16)).step_by(8) {
                if read_uint(data, at, 8) != Some(header)
                    || read_uint(data, at + 8, 8) != Some(funcnames)
                {
                    continue;
                }
                // After the pcHeader and six slices, and before the tables that follow.
                // `types` may start `.rodata` too (it comes two words before `rodata`):
                // the last match is `rodata`.
                let field = |w: usize| read_uint(data, at + w * 8, 8);
                let gofunc = (30..50)
                    .filter(|&w| field(w) == Some(start))
                    .filter_map(|w| field(w + 1))
                    .rfind(|&g| self.read_vaddr(g, 1).is_some());
                if gofunc.is_some() {
                    return gofunc;
                }
            }
        }
        log::debug!("Go module data not found: no inline frames");
        None
    }

    fn funcnames_offset(&self) -> Option<u64> {
        let first = if self.layout == Layout::Go116 { 2 } else { 3 };
        read_uint(self.tab, 8 + first * self.ptr, self.ptr)
    }

    /// `len` bytes of the file at virtual address `addr`, from the section holding them
    /// (only those bytes are read).
    fn read_vaddr(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let end = addr.checked_add(len)?;
        self.elf.sections().find_map(|section| {
            let start = section.address();
            let (offset, size) = section.file_range()?;
            if addr < start || end > start.checked_add(size)? {
                return None;
            }
            self.data.read_bytes_at(offset + (addr - start), len).ok()
        })
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_uint(data: &[u8], at: usize, size: usize) -> Option<u64> {
    match size {
        4 => read_u32(data, at).map(u64::from),
        8 => Some(u64::from_le_bytes(
            data.get(at..at.checked_add(8)?)?.try_into().ok()?,
        )),
        _ => None,
    }
}

/// An unsigned LEB128 varint and what follows it.
fn varint(data: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &data[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests;
