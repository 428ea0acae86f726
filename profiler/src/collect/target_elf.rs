//! Opens a target's ELF file for the collecting side (goroutine and heap probes) within a
//! budget decided before anything is read: safely opened ([`crate::sys::safe_open`]),
//! read on demand through [`BoundedFile`], its symbol tables' stated sizes checked from
//! the section headers before the `object` crate reads them. A user's 2 GiB sparse binary
//! costs root what its headers and the tables the probes need state, never the file.

use std::path::Path;

use object::elf::{FileHeader64, SHT_DYNSYM, SHT_SYMTAB};
use object::read::elf::{FileHeader, SectionHeader};
use object::{Endianness, FileKind, SectionIndex};

use crate::process::elf_data::BoundedFile;
use crate::sys::safe_open::{open_regular, open_regular_following};

/// Largest single read of a target's file on the collecting side: one section the probes
/// need (`.text` around a function, `.go.buildinfo`, a DWARF section).
pub const MAX_SECTION_BYTES: u64 = 256 << 20;
/// Largest symbol table (or its string table) read: a file stating more is refused.
pub const MAX_SYMBOL_TABLE_BYTES: u64 = 64 << 20;
/// Most read from one file in all (the reads stay in memory while it is inspected).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Whether the last component of the path may be a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Refused: a path a target chose (a mapped file under `/proc/PID/root`).
    Refused,
    /// Followed, to a regular file only: `/proc/PID/exe`, and the files a command the
    /// user launched will map (the loader's list names libraries by their symlinks).
    Followed,
}

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It cannot be opened, or is not a regular file.
    Unreadable(String),
    /// Not an ELF file the `object` crate reads.
    NotElf,
    /// Reading what is needed of it would pass a budget; the sentence says which.
    OverBudget(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable(why) => write!(f, "cannot read it: {why}"),
            Self::NotElf => write!(f, "not an ELF file"),
            Self::OverBudget(why) => write!(f, "over budget: {why}"),
        }
    }
}

/// The file at `path`, opened safely and to be read within the collecting side's budget.
///
/// # Errors
/// When it cannot be opened, is not a regular file, or states a symbol table over
/// [`MAX_SYMBOL_TABLE_BYTES`].
pub fn open(path: &Path, links: Links) -> Result<BoundedFile, Refusal> {
    let bounded = open_unchecked(path, links)?;
    check_symbol_tables(&bounded)?;
    Ok(bounded)
}

/// As [`open`], without looking at the symbol tables: for a look at the section headers
/// alone ([`has_section`]).
///
/// # Errors
/// When it cannot be opened or is not a regular file.
pub fn open_unchecked(path: &Path, links: Links) -> Result<BoundedFile, Refusal> {
    let file = match links {
        Links::Refused => open_regular(path),
        Links::Followed => open_regular_following(path),
    }
    .map_err(|e| Refusal::Unreadable(e.to_string()))?;
    Ok(BoundedFile::new(file, MAX_SECTION_BYTES, MAX_FILE_BYTES))
}

/// Whether a 64-bit ELF file has a section named `name`, from its section headers and
/// their names alone (neither symbols nor any section's contents are read).
pub fn has_section(data: &BoundedFile, name: &[u8]) -> bool {
    let Ok(header) = FileHeader64::<Endianness>::parse(data) else {
        return false;
    };
    let Ok(endian) = header.endian() else {
        return false;
    };
    header
        .sections(endian, data)
        .is_ok_and(|sections| sections.section_by_name(endian, name).is_some())
}

/// `data` parsed as an object file; a parse that failed for the budget says so.
///
/// # Errors
/// When it is not an ELF file, or parsing it would pass the budget.
pub fn parse(data: &BoundedFile) -> Result<object::File<'_, &BoundedFile>, Refusal> {
    object::File::parse(data).map_err(|_| over_budget(data).unwrap_or(Refusal::NotElf))
}

/// The refusal to give when a read of `data` was refused for the budget.
pub fn over_budget(data: &BoundedFile) -> Option<Refusal> {
    data.over_budget().then(|| {
        Refusal::OverBudget(format!(
            "a section it needs is over {} MiB, or reading it would take over {} MiB in all",
            MAX_SECTION_BYTES >> 20,
            MAX_FILE_BYTES >> 20
        ))
    })
}

/// Refuses a 64-bit ELF file whose symbol tables (or their strings) state more than
/// [`MAX_SYMBOL_TABLE_BYTES`], from its section headers alone; anything else is left to
/// the parse.
fn check_symbol_tables(data: &BoundedFile) -> Result<(), Refusal> {
    if FileKind::parse(data) != Ok(FileKind::Elf64) {
        return Ok(());
    }
    let header = FileHeader64::<Endianness>::parse(data).map_err(|_| Refusal::NotElf)?;
    let endian = header.endian().map_err(|_| Refusal::NotElf)?;
    let Ok(sections) = header.sections(endian, data) else {
        return Err(over_budget(data).unwrap_or(Refusal::NotElf));
    };
    for section in sections.iter() {
        if !matches!(section.sh_type(endian), SHT_SYMTAB | SHT_DYNSYM) {
            continue;
        }
        let strings = sections
            .section(SectionIndex(section.sh_link(endian) as usize))
            .map_or(0, |s| s.sh_size(endian));
        let size = section.sh_size(endian).max(strings);
        if size > MAX_SYMBOL_TABLE_BYTES {
            return Err(Refusal::OverBudget(format!(
                "its symbol table states {} MiB (at most {} MiB are read)",
                size >> 20,
                MAX_SYMBOL_TABLE_BYTES >> 20
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSection};

    /// A copy of this test binary, extended sparsely to `len` bytes.
    fn sparse_copy(dir: &Path, len: u64) -> std::path::PathBuf {
        let path = dir.join("sparse");
        std::fs::copy(std::env::current_exe().unwrap(), &path).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len).unwrap();
        path
    }

    #[test]
    fn a_100_gib_sparse_file_is_parsed_from_its_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = sparse_copy(dir.path(), 100 << 30);
        let data = open(&path, Links::Refused).unwrap();
        let elf = parse(&data).unwrap();
        assert!(elf.symbols().count() > 0);
        assert!(over_budget(&data).is_none());
    }

    #[test]
    fn a_symbol_table_stated_over_the_cap_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = sparse_copy(dir.path(), 100 << 30);
        // Point .symtab's header at 1 GiB of the sparse tail.
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = object::read::elf::ElfFile64::<Endianness>::parse(&*bytes).unwrap();
        let index = elf.section_by_name(".symtab").unwrap().index().0;
        let header = elf.elf_header();
        let at = header.e_shoff.get(Endianness::Little) as usize
            + index * usize::from(header.e_shentsize.get(Endianness::Little));
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            &(1u64 << 30).to_le_bytes(),
            at as u64 + 24,
        )
        .unwrap();
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            &(1u64 << 30).to_le_bytes(),
            at as u64 + 32,
        )
        .unwrap();
        match open(&path, Links::Refused) {
            Err(Refusal::OverBudget(why)) => assert!(why.contains("1024 MiB"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fifos_and_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            open(&link, Links::Refused),
            Err(Refusal::Unreadable(_))
        ));
        assert!(matches!(
            open(&link, Links::Followed),
            Err(Refusal::Unreadable(_))
        ));
        let exe = Path::new("/proc/self/exe");
        assert!(open(exe, Links::Followed).is_ok());
        let data = open(exe, Links::Followed).unwrap();
        assert!(has_section(&data, b".text"));
        assert!(!has_section(&data, b".go.buildinfo"));
        let text = dir.path().join("text");
        std::fs::write(&text, b"not elf").unwrap();
        assert_eq!(
            parse(&open(&text, Links::Refused).unwrap()).err(),
            Some(Refusal::NotElf)
        );
    }
}
