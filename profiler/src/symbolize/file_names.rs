//! Names the offsets of one ELF file from the best sources it has, each offset from the
//! first that knows it: DWARF (the file's own, else a separate debug file found as gdb
//! finds it), a Go binary's `.gopclntab`, then the file's symbol tables (`.symtab`,
//! `.dynsym`, and MiniDebugInfo's, which blazesym decompresses). Compressed debug
//! information is checked first ([`inflation`]): what would inflate past its cap is not
//! read, and the file is named from what is left.

use std::path::{Path, PathBuf};

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Reason, Sym, Symbolized, Symbolizer};
use profiler_model::Line;

use crate::symbolize::debuginfo::{DebugInfoFinder, DebugOrigin, ElfFacts};
use crate::symbolize::dynsym::DynSymbols;
use crate::symbolize::gopclntab::GoPclnTab;
use crate::symbolize::inflation::{self, Refusal};

/// Why an offset of a file got no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoName {
    /// blazesym's reason, from the last source asked.
    Blazesym(Reason),
    /// The file is not ELF, or could not be read.
    Unreadable,
    /// The file is stripped and no separate debug information was found for it.
    NoDebugInfo,
    /// The debug information that could have named it was over its memory budget (see
    /// [`FileNames::refused`]) and was not read.
    OverBudget,
}

/// The names of a batch of offsets of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNames {
    /// Per offset, in order: its frames (innermost first), or why it has none.
    pub frames: Vec<Result<Vec<Line>, NoName>>,
    /// Where separate debug information came from, if it did.
    pub debug_origin: Option<DebugOrigin>,
    /// Debug information of the file (or of its separate debug file) that was not read,
    /// and why.
    pub refused: Vec<Refusal>,
}

/// Names `offsets` of the ELF file opened by path `open` and named `name` by its process.
pub fn name_offsets(
    open: &Path,
    name: &str,
    offsets: &[u64],
    finder: &DebugInfoFinder,
) -> FileNames {
    let mut names = FileNames {
        frames: vec![Err(NoName::Unreadable); offsets.len()],
        debug_origin: None,
        refused: Vec::new(),
    };
    let Some(facts) = ElfFacts::read(open) else {
        return names;
    };
    let verdict = if facts.has_dwarf || facts.has_debugdata {
        inflation::check(open)
    } else {
        inflation::Verdict::default()
    };
    names.refused.extend(verdict.dwarf.clone());
    names.refused.extend(verdict.debugdata.clone());
    // DWARF first: the file's own, else a separate file's, whose addresses are virtual
    // ones (its file offsets are not the binary's). A separate debug file is held open
    // until the end, read through the descriptor that was checked, and checked before
    // anything inflates it as the file itself is. DWARF that names other files by path is
    // read only from a debug root, which root owns: blazesym would open what it names.
    let own_dwarf = facts.has_dwarf && verdict.dwarf.is_none() && !facts.links_elsewhere;
    if facts.has_dwarf && facts.links_elsewhere {
        finder.refuse(|refused| refused.linked_dwarf += 1);
    }
    let debug = if own_dwarf {
        None
    } else {
        finder.find(name, &facts)
    };
    let dwarf = if own_dwarf {
        Some((open.to_path_buf(), None))
    } else {
        debug.as_ref().and_then(|debug| {
            let path = debug.open_path();
            let links = ElfFacts::read(&path).is_none_or(|f| f.links_elsewhere);
            if links && !finder.in_a_root(&debug.path) {
                finder.refuse(|refused| refused.linked_dwarf += 1);
                return None;
            }
            match inflation::check(&path).dwarf {
                Some(refusal) => {
                    names.refused.push(refusal);
                    None
                }
                None => Some((path, Some(debug.origin))),
            }
        })
    };
    if let Some((path, origin)) = dwarf {
        let named = match origin {
            None => fill(&mut names, offsets, &path, true),
            Some(_) => fill_virtual(&mut names, offsets, &path, &facts),
        };
        if named {
            names.debug_origin = origin;
        }
    }
    // A Go binary's own table, which has file:line and inlining too, and which blazesym
    // does not read: all a Go binary built with `-ldflags='-s -w'` has.
    if facts.has_gopclntab {
        fill_go(&mut names, offsets, open, &facts, finder);
    }
    // Then the file's own symbol tables, for what DWARF did not cover. Without `.symtab`
    // blazesym would inflate MiniDebugInfo whatever it holds: a refused one leaves the
    // dynamic symbols, read here instead.
    if verdict.debugdata.is_some() && !facts.has_symtab {
        fill_dynsym(&mut names, offsets, open, &facts);
    } else {
        fill(&mut names, offsets, open, false);
    }
    // What is left unnamed is so for want of the debug information that was refused.
    if !names.refused.is_empty() {
        for frame in &mut names.frames {
            if frame.is_err() {
                *frame = Err(NoName::OverBudget);
            }
        }
        return names;
    }
    // Nothing but `.dynsym`: what is left unnamed is so for want of debug information.
    let stripped = !(facts.has_dwarf
        || facts.has_symtab
        || facts.has_debugdata
        || facts.has_gopclntab
        || names.debug_origin.is_some());
    if stripped {
        for frame in &mut names.frames {
            if frame.is_err() {
                *frame = Err(NoName::NoDebugInfo);
            }
        }
    }
    names
}

/// Names the still unnamed offsets from the dynamic symbol table of the file at `path`.
fn fill_dynsym(names: &mut FileNames, offsets: &[u64], path: &Path, facts: &ElfFacts) {
    let Some(symbols) = DynSymbols::read(path) else {
        return;
    };
    for (frame, &offset) in names.frames.iter_mut().zip(offsets) {
        if frame.is_err()
            && let Some(lines) = facts.vaddr(offset).and_then(|a| symbols.lookup(a))
        {
            *frame = Ok(lines);
        }
    }
}

/// Names the still unnamed offsets from the file at `path` (its DWARF when `dwarf`);
/// whether any got a name.
fn fill(names: &mut FileNames, offsets: &[u64], path: &Path, dwarf: bool) -> bool {
    let todo: Vec<(usize, u64)> = offsets
        .iter()
        .enumerate()
        .filter(|(i, _)| names.frames[*i].is_err())
        .map(|(i, &o)| (i, o))
        .collect();
    fill_some(names, &todo, path, dwarf, false)
}

/// As [`fill`], with file offsets turned into the virtual addresses of the binary's
/// segments, which a separate debug file shares.
fn fill_virtual(names: &mut FileNames, offsets: &[u64], path: &Path, facts: &ElfFacts) -> bool {
    let todo: Vec<(usize, u64)> = offsets
        .iter()
        .enumerate()
        .filter(|(i, _)| names.frames[*i].is_err())
        .filter_map(|(i, &o)| Some((i, facts.vaddr(o)?)))
        .collect();
    fill_some(names, &todo, path, true, true)
}

/// Names the still unnamed offsets of a Go binary from its `.gopclntab`, read within the
/// budget of [`GoPclnTab::open`]; a table that breaks a bound names nothing, and its
/// offsets are left to the symbol tables, and the refusal is counted in `finder`.
fn fill_go(
    names: &mut FileNames,
    offsets: &[u64],
    path: &Path,
    facts: &ElfFacts,
    finder: &DebugInfoFinder,
) -> bool {
    if names.frames.iter().all(Result::is_ok) {
        return false;
    }
    let file = match crate::sys::safe_open::open_regular(path) {
        Ok(file) => GoPclnTab::open(file),
        Err(err) => {
            log::debug!("{}: {err}", path.display());
            return false;
        }
    };
    let Some(table) = GoPclnTab::parse(&file) else {
        if file.over_budget() {
            finder.refuse(|r| r.gopclntab += 1);
        }
        return false;
    };
    let mut found = Vec::new();
    for (i, &offset) in offsets.iter().enumerate() {
        if names.frames[i].is_ok() {
            continue;
        }
        if let Some(lines) = facts.vaddr(offset).and_then(|pc| table.frames(pc)) {
            found.push((i, lines));
        }
        if table.refused() || file.over_budget() {
            log::debug!(
                "{}: .gopclntab broke a bound of its walk: not used for names",
                path.display()
            );
            finder.refuse(|r| r.gopclntab += 1);
            return false;
        }
    }
    let named = !found.is_empty();
    for (i, lines) in found {
        names.frames[i] = Ok(lines);
    }
    named
}

/// Names the offsets of `todo` (index in the batch, and the file offset, or the virtual
/// address when `virtual_addrs`) from the file at `path`.
fn fill_some(
    names: &mut FileNames,
    todo: &[(usize, u64)],
    path: &Path,
    dwarf: bool,
    virtual_addrs: bool,
) -> bool {
    if todo.is_empty() {
        return false;
    }
    let addrs: Vec<u64> = todo.iter().map(|&(_, a)| a).collect();
    // No directories of blazesym's own: where debug files are looked for is decided in
    // `debuginfo`, and a debug link beside the file whose CRC does not match would make
    // blazesym fail the whole file.
    let symbolizer = Symbolizer::builder()
        .set_debug_dirs(Some(Vec::<PathBuf>::new()))
        .build();
    let source = Source::Elf(Elf {
        debug_syms: dwarf,
        ..Elf::new(path)
    });
    let input = if virtual_addrs {
        Input::VirtOffset(&addrs[..])
    } else {
        Input::FileOffset(&addrs[..])
    };
    let symbolized = match symbolizer.symbolize(&source, input) {
        Ok(symbolized) => symbolized,
        Err(err) => {
            log::debug!(
                "{}: {} addresses not symbolized: {err}",
                path.display(),
                addrs.len()
            );
            return false;
        }
    };
    let mut named = false;
    for (&(i, _), result) in todo.iter().zip(symbolized) {
        names.frames[i] = match result {
            Symbolized::Sym(sym) => {
                named = true;
                Ok(sym_lines(&sym))
            }
            Symbolized::Unknown(reason) => Err(NoName::Blazesym(reason)),
        };
    }
    named
}

/// The lines of a symbol, innermost inlined function first.
pub fn sym_lines(sym: &Sym<'_>) -> Vec<Line> {
    let mut lines: Vec<Line> = sym
        .inlined
        .iter()
        .rev()
        .map(|inlined| line(&inlined.name, inlined.code_info.as_ref()))
        .collect();
    lines.push(line(&sym.name, sym.code_info.as_deref()));
    lines
}

fn line(name: &str, code_info: Option<&CodeInfo<'_>>) -> Line {
    Line {
        function: name.to_owned(),
        file: code_info.map(|info| info.to_path().display().to_string()),
        line: code_info.and_then(|info| info.line).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn named_here() -> u64 {
        std::hint::black_box(3)
    }

    /// The file offset of a function of this test binary.
    fn offset_of(addr: u64) -> u64 {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let range = fields.next().unwrap();
            let _perms = fields.next();
            let offset = u64::from_str_radix(fields.next().unwrap(), 16).unwrap();
            let (start, end) = range.split_once('-').unwrap();
            let (start, end) = (
                u64::from_str_radix(start, 16).unwrap(),
                u64::from_str_radix(end, 16).unwrap(),
            );
            if (start..end).contains(&addr) {
                return addr - start + offset;
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    #[test]
    fn names_come_from_dwarf_then_symbols() {
        let me = std::env::current_exe().unwrap();
        let offset = offset_of(named_here as fn() -> u64 as usize as u64);
        let finder = DebugInfoFinder::new(&[], None);
        let names = name_offsets(&me, "test", &[offset, u64::MAX / 2], &finder);
        let lines = names.frames[0].as_ref().unwrap();
        assert!(
            lines.iter().any(|l| l.function.contains("named_here")),
            "{lines:?}"
        );
        assert!(names.frames[1].is_err());
        assert_eq!(names.debug_origin, None);
    }

    #[test]
    fn a_file_that_is_not_elf_names_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, b"junk").unwrap();
        let names = name_offsets(&path, "junk", &[0x10], &DebugInfoFinder::new(&[], None));
        assert_eq!(names.frames, vec![Err(NoName::Unreadable)]);
    }
}
