//! Names offsets of a file from its dynamic symbol table alone, for a file blazesym must not
//! be given: with no `.symtab`, blazesym inflates the file's MiniDebugInfo whatever it
//! holds, and there is no switch to stop it.

use std::path::Path;

use object::{Object, ObjectSymbol, SymbolKind};
use profiler_model::Line;

use crate::process::elf_data::BoundedFile;
use crate::sys::safe_open::open_regular_following;

/// The most symbols taken from one table: a crafted table's count is only bounded by its
/// file's size.
const MAX_SYMBOLS: usize = 1 << 20;
/// The most read of the file at once, and in all: its headers, `.dynsym` and `.dynstr`
/// (a million symbols take about 30 MiB), never a `.symtab` a header claims is huge.
const PER_READ: u64 = 64 << 20;
const TOTAL: u64 = 128 << 20;

/// A file's function symbols, by address.
#[derive(Debug, Default)]
pub struct DynSymbols {
    /// (start, size, name), sorted by start.
    symbols: Vec<(u64, u64, String)>,
}

impl DynSymbols {
    /// The defined function symbols of `.dynsym` of the ELF file at `path`; `None` when it
    /// cannot be read.
    pub fn read(path: &Path) -> Option<Self> {
        // A `/proc/self/fd/N` path, followed to the held file, a regular one only.
        let file = open_regular_following(path).ok()?;
        let cache = BoundedFile::new(file, PER_READ, TOTAL);
        let elf = object::File::parse(&cache).ok()?;
        let mut symbols: Vec<(u64, u64, String)> = elf
            .dynamic_symbols()
            .take(MAX_SYMBOLS)
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.size() > 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        symbols.sort_unstable();
        Some(Self { symbols })
    }

    /// The frame of virtual address `addr`, when a symbol covers it.
    pub fn lookup(&self, addr: u64) -> Option<Vec<Line>> {
        let after = self.symbols.partition_point(|&(start, _, _)| start <= addr);
        let (start, size, name) = self.symbols.get(after.checked_sub(1)?)?;
        (addr - start < *size).then(|| {
            vec![Line {
                function: name.clone(),
                file: None,
                line: 0,
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_c_library_exports() {
        // The C library exports getpid; its dynamic symbols name it.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc_path = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("libc.so"))
            .unwrap()
            .to_owned();
        let symbols = DynSymbols::read(Path::new(&libc_path)).unwrap();
        let (start, size, _) = symbols
            .symbols
            .iter()
            .find(|(_, _, n)| n == "getpid")
            .cloned()
            .unwrap();
        let lines = symbols.lookup(start + size / 2).unwrap();
        assert_eq!(lines[0].function, "getpid");
        assert_eq!(symbols.lookup(0), None);
        assert!(DynSymbols::read(Path::new("/proc/self/status")).is_none());
    }
}
