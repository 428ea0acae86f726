//! Turns raw addresses into source frames with blazesym, once, at the end of the run.
//!
//! User addresses are resolved against the mapping snapshots taken while each process lived
//! (see [`crate::procmaps`]): the address becomes a file offset in the mapped ELF file, which
//! works just as well after the process has exited. An address that cannot be symbolized is
//! data, not an error: it becomes a `module+0xoffset` or `[unknown]` frame.

use std::collections::HashMap;
use std::path::Path;

use blazesym::MaybeDefault;
use blazesym::symbolize::source::{Elf, Kernel, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized, Symbolizer as Blazesym};

use crate::procmaps::ProcessInfo;
use crate::profile::{Line, Mapping};

/// The pseudo file name of kernel code, as perf calls it.
pub const KERNEL_MAPPING: &str = "[kernel.kallsyms]";

/// A symbolized user address: the mapping it fell in and its frames, innermost first.
#[derive(Debug, Clone)]
pub struct UserFrame {
    /// The mapping of the address, if the process's snapshot had one.
    pub mapping: Option<Mapping>,
    /// Source frames, innermost (inlined callee) first, never empty.
    pub lines: Vec<Line>,
}

/// Symbolizes user and kernel addresses, caching per file and offset.
pub struct Symbolizer {
    blazesym: Blazesym,
    kernel_source: Source<'static>,
    user_cache: HashMap<(String, u64), Vec<Line>>,
    kernel_cache: HashMap<u64, Vec<Line>>,
    build_ids: HashMap<String, Option<String>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// A symbolizer using DWARF where present, ELF symbols otherwise, and kallsyms for the kernel.
    pub fn new() -> Self {
        let kernel = Kernel {
            kallsyms: MaybeDefault::Default,
            // A vmlinux with debug info is rarely installed; kallsyms gives function names.
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..Default::default()
        };
        Self {
            blazesym: Blazesym::new(),
            kernel_source: Source::Kernel(kernel),
            user_cache: HashMap::new(),
            kernel_cache: HashMap::new(),
            build_ids: HashMap::new(),
        }
    }

    /// Symbolizes the user address `addr` of a process.
    ///
    /// `call_site` is true for return addresses (every frame but the leaf): the address
    /// after a call may already belong to the next line or function, so one byte before
    /// it is looked up, as perf and pprof do.
    pub fn user(&mut self, process: Option<&ProcessInfo>, addr: u64, call_site: bool) -> UserFrame {
        let lookup = if call_site {
            addr.saturating_sub(1)
        } else {
            addr
        };
        let Some(entry) = process.and_then(|p| p.find(lookup)) else {
            return UserFrame {
                mapping: None,
                lines: vec![unknown_line("[unknown]")],
            };
        };
        let file_offset = lookup - entry.start + entry.offset;
        let mapping = Mapping {
            start: entry.start,
            limit: entry.end,
            file_offset: entry.offset,
            path: entry.path.clone(),
            build_id: if entry.is_file() {
                self.build_id(&entry.path)
            } else {
                None
            },
        };
        let lines = if entry.is_file() {
            self.file_lines(&entry.path, file_offset)
        } else {
            vec![unknown_line(&module_offset(&entry.path, file_offset))]
        };
        UserFrame {
            mapping: Some(mapping),
            lines,
        }
    }

    /// Symbolizes the kernel address `addr`; `call_site` as for [`Self::user`].
    pub fn kernel(&mut self, addr: u64, call_site: bool) -> Vec<Line> {
        let lookup = if call_site {
            addr.saturating_sub(1)
        } else {
            addr
        };
        if let Some(lines) = self.kernel_cache.get(&lookup) {
            return lines.clone();
        }
        let lines = match self
            .blazesym
            .symbolize_single(&self.kernel_source, Input::AbsAddr(lookup))
        {
            Ok(Symbolized::Sym(sym)) => sym_lines(&sym),
            Ok(Symbolized::Unknown(reason)) => {
                log::debug!("kernel address {lookup:#x} not symbolized: {reason}");
                vec![unknown_line(&format!("{KERNEL_MAPPING}+{lookup:#x}"))]
            }
            Err(err) => {
                log::debug!("kernel address {lookup:#x} not symbolized: {err}");
                vec![unknown_line(&format!("{KERNEL_MAPPING}+{lookup:#x}"))]
            }
        };
        self.kernel_cache.insert(lookup, lines.clone());
        lines
    }

    fn file_lines(&mut self, path: &str, file_offset: u64) -> Vec<Line> {
        let key = (path.to_owned(), file_offset);
        if let Some(lines) = self.user_cache.get(&key) {
            return lines.clone();
        }
        let source = Source::Elf(Elf::new(path));
        let lines = match self
            .blazesym
            .symbolize_single(&source, Input::FileOffset(file_offset))
        {
            Ok(Symbolized::Sym(sym)) => sym_lines(&sym),
            Ok(Symbolized::Unknown(reason)) => {
                log::debug!("{path}+{file_offset:#x} not symbolized: {reason}");
                vec![unknown_line(&module_offset(path, file_offset))]
            }
            Err(err) => {
                log::debug!("{path}+{file_offset:#x} not symbolized: {err}");
                vec![unknown_line(&module_offset(path, file_offset))]
            }
        };
        self.user_cache.insert(key, lines.clone());
        lines
    }

    fn build_id(&mut self, path: &str) -> Option<String> {
        self.build_ids
            .entry(path.to_owned())
            .or_insert_with(|| {
                let id = blazesym::helper::read_elf_build_id(&Path::new(path)).ok()??;
                Some(id.iter().map(|b| format!("{b:02x}")).collect())
            })
            .clone()
    }
}

/// The lines of a symbol, innermost inlined function first.
fn sym_lines(sym: &blazesym::symbolize::Sym<'_>) -> Vec<Line> {
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

fn unknown_line(name: &str) -> Line {
    Line {
        function: name.to_owned(),
        file: None,
        line: 0,
    }
}

/// `libc.so.6+0x1234`: the file's base name and the offset in it, as perf prints them.
fn module_offset(path: &str, offset: u64) -> String {
    let name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("[anon]");
    format!("{name}+{offset:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procmaps::ProcessTable;

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn symbolizes_an_address_of_this_process() {
        let mut table = ProcessTable::default();
        assert!(table.snapshot(std::process::id()));
        let mut symbolizer = Symbolizer::new();
        let addr = a_function_to_find as fn() -> _ as usize as u64;
        let frame = symbolizer.user(table.get(std::process::id()), addr, false);
        assert!(
            frame
                .mapping
                .as_ref()
                .is_some_and(|m| m.path.starts_with('/'))
        );
        assert!(
            frame
                .lines
                .iter()
                .any(|l| l.function.contains("a_function_to_find")),
            "{:?}",
            frame.lines
        );
    }

    #[test]
    fn unknown_addresses_become_frames() {
        let mut symbolizer = Symbolizer::new();
        let frame = symbolizer.user(None, 0x1234, true);
        assert_eq!(frame.lines[0].function, "[unknown]");
        assert_eq!(module_offset("/usr/lib/libc.so.6", 0x10), "libc.so.6+0x10");
        assert_eq!(module_offset("", 0x10), "[anon]+0x10");
    }
}
