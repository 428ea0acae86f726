//! Finds the debug information of an ELF file where gdb and perf look for it: the file
//! itself, a build-ID directory (`<root>/.build-id/xx/rest.debug`), its `.gnu_debuglink`
//! (next to it, in `.debug/` beside it, under a root plus its directory, the CRC checked),
//! and a debuginfod server. MiniDebugInfo (`.gnu_debugdata`) is read by blazesym from the
//! file itself when nothing here is found.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment};

use crate::symbolize::debuginfod::Debuginfod;

/// Where distributions install separate debug files (Debian's `-dbgsym`, Fedora's
/// `-debuginfo`), and where gdb and perf look by default.
pub const SYSTEM_DEBUG_ROOT: &str = "/usr/lib/debug";

/// What the profiler needs to know of an ELF file to name its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfFacts {
    /// The GNU build ID.
    pub build_id: Option<Vec<u8>>,
    /// The `.gnu_debuglink` file name and the CRC32 of that file.
    pub debuglink: Option<(String, u32)>,
    /// Whether the file has DWARF (`.debug_info`) of its own.
    pub has_dwarf: bool,
    /// Whether the file has a full symbol table (`.symtab`), not only `.dynsym`.
    pub has_symtab: bool,
    /// Whether the file carries MiniDebugInfo (`.gnu_debugdata`).
    pub has_debugdata: bool,
    /// Whether the file is a Go binary with a PC-line table (`.gopclntab`).
    pub has_gopclntab: bool,
    /// The loaded segments: (file offset, virtual address, size in the file).
    pub loads: Vec<(u64, u64, u64)>,
}

impl ElfFacts {
    /// Reads the facts of the ELF file at `path`; `None` when it is not a readable ELF file.
    pub fn read(path: &Path) -> Option<Self> {
        let file = File::open(path).ok()?;
        let cache = object::ReadCache::new(file);
        let elf = object::File::parse(&cache).ok()?;
        let section = |name: &str| elf.section_by_name(name);
        let debuglink = elf
            .gnu_debuglink()
            .ok()
            .flatten()
            .and_then(|(name, crc)| Some((std::str::from_utf8(name).ok()?.to_owned(), crc)));
        // `--only-keep-debug` leaves sections of the stripped parts as NOBITS: only a
        // section with contents counts.
        let has = |name: &str| {
            section(name).is_some_and(|s| {
                s.file_range().is_some_and(|(_, size)| size > 0)
                    && s.kind() != object::SectionKind::UninitializedData
            })
        };
        Some(Self {
            build_id: elf.build_id().ok().flatten().map(<[u8]>::to_vec),
            debuglink,
            has_dwarf: has(".debug_info"),
            has_symtab: has(".symtab"),
            has_debugdata: has(".gnu_debugdata"),
            has_gopclntab: has(".gopclntab"),
            loads: elf
                .segments()
                .map(|s| {
                    let (offset, size) = s.file_range();
                    (offset, s.address(), size)
                })
                .collect(),
        })
    }

    /// The virtual address (as symbol tables and DWARF give them) of a file offset in a
    /// loaded segment.
    pub fn vaddr(&self, file_offset: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|&&(offset, _, size)| file_offset >= offset && file_offset - offset < size)
            .map(|&(offset, vaddr, _)| vaddr + (file_offset - offset))
    }
}

/// Where a file's debug information was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DebugOrigin {
    /// In a build-ID directory of a debug root.
    BuildIdDir,
    /// Through the file's `.gnu_debuglink`, its CRC matching.
    DebugLink,
    /// Fetched from (or cached for) a debuginfod server.
    Debuginfod,
}

impl DebugOrigin {
    /// How the summary names it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BuildIdDir => "build-ID directories",
            Self::DebugLink => ".gnu_debuglink",
            Self::Debuginfod => "debuginfod",
        }
    }
}

/// A separate file holding debug information of an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugFile {
    /// Its path.
    pub path: PathBuf,
    /// How it was found.
    pub origin: DebugOrigin,
}

/// Looks for separate debug files under a list of roots, then on debuginfod servers.
#[derive(Debug)]
pub struct DebugInfoFinder {
    /// Debug roots, searched in order: the user's (`--debuginfo-dir`), then the system's.
    roots: Vec<PathBuf>,
    /// The debuginfod client, when `DEBUGINFOD_URLS` names servers.
    debuginfod: Option<Debuginfod>,
}

impl Default for DebugInfoFinder {
    /// The system's directory only.
    fn default() -> Self {
        Self::new(&[], None)
    }
}

impl DebugInfoFinder {
    /// A finder searching `extra_roots` before [`SYSTEM_DEBUG_ROOT`], then `debuginfod`.
    pub fn new(extra_roots: &[PathBuf], debuginfod: Option<Debuginfod>) -> Self {
        let mut roots = extra_roots.to_vec();
        roots.push(PathBuf::from(SYSTEM_DEBUG_ROOT));
        Self { roots, debuginfod }
    }

    /// The debuginfod client, to report what it fetched.
    pub fn debuginfod(&self) -> Option<&Debuginfod> {
        self.debuginfod.as_ref()
    }

    /// The separate debug file of the ELF file `binary` (its path as the process named
    /// it) with `facts`, in gdb's order: build-ID directories, the debug link, debuginfod.
    pub fn find(&self, binary: &str, facts: &ElfFacts) -> Option<DebugFile> {
        let found = |path: PathBuf, origin| Some(DebugFile { path, origin });
        if let Some(id) = &facts.build_id {
            for path in build_id_candidates(&self.roots, id) {
                if has_build_id(&path, id) {
                    return found(path, DebugOrigin::BuildIdDir);
                }
            }
        }
        if let Some((name, crc)) = &facts.debuglink {
            for path in debuglink_candidates(&self.roots, Path::new(binary), name) {
                // A debug file is one whose CRC matches: another build's would name
                // the wrong functions.
                if path.as_path() != Path::new(binary) && crc32_of(&path) == Some(*crc) {
                    return found(path, DebugOrigin::DebugLink);
                }
            }
        }
        let id = facts.build_id.as_ref()?;
        let path = self.debuginfod.as_ref()?.fetch(id)?;
        has_build_id(&path, id).then_some(DebugFile {
            path,
            origin: DebugOrigin::Debuginfod,
        })
    }
}

/// `<root>/.build-id/<first byte>/<the rest>.debug` for each root.
pub fn build_id_candidates(roots: &[PathBuf], build_id: &[u8]) -> Vec<PathBuf> {
    // Anything this short is not a real build ID (and would make a path of nothing).
    let Some((first, rest)) = build_id.split_first().filter(|_| build_id.len() >= 4) else {
        return Vec::new();
    };
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    roots
        .iter()
        .map(|root| {
            root.join(".build-id")
                .join(format!("{first:02x}"))
                .join(format!("{rest}.debug"))
        })
        .collect()
}

/// Where gdb looks for a debug link's `name`: beside the binary, in `.debug/` beside it,
/// and under each root followed by the binary's directory.
pub fn debuglink_candidates(roots: &[PathBuf], binary: &Path, name: &str) -> Vec<PathBuf> {
    // The link is a file name; a path in it would lead anywhere.
    if name.is_empty() || name.contains('/') {
        return Vec::new();
    }
    let dir = binary.parent().unwrap_or(Path::new("/"));
    let mut out = vec![dir.join(name), dir.join(".debug").join(name)];
    let relative = dir.strip_prefix("/").unwrap_or(dir);
    out.extend(roots.iter().map(|root| root.join(relative).join(name)));
    out
}

/// Whether the ELF file at `path` has build ID `id`.
fn has_build_id(path: &Path, id: &[u8]) -> bool {
    ElfFacts::read(path).is_some_and(|facts| facts.build_id.as_deref() == Some(id))
}

/// The CRC32 of a whole file, as `.gnu_debuglink` records it; `None` when it cannot be read.
pub fn crc32_of(path: &Path) -> Option<u32> {
    let mut file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_paths_split_the_first_byte() {
        let roots = [PathBuf::from("/mine"), PathBuf::from(SYSTEM_DEBUG_ROOT)];
        let paths = build_id_candidates(&roots, &[0xab, 0xcd, 0xef, 0x01]);
        assert_eq!(
            paths,
            [
                PathBuf::from("/mine/.build-id/ab/cdef01.debug"),
                PathBuf::from("/usr/lib/debug/.build-id/ab/cdef01.debug"),
            ]
        );
        assert!(build_id_candidates(&roots, &[1, 2]).is_empty());
    }

    #[test]
    fn debuglink_paths_follow_gdb() {
        let roots = [PathBuf::from("/mine"), PathBuf::from(SYSTEM_DEBUG_ROOT)];
        let paths = debuglink_candidates(&roots, Path::new("/usr/bin/app"), "app.debug");
        assert_eq!(
            paths,
            [
                PathBuf::from("/usr/bin/app.debug"),
                PathBuf::from("/usr/bin/.debug/app.debug"),
                PathBuf::from("/mine/usr/bin/app.debug"),
                PathBuf::from("/usr/lib/debug/usr/bin/app.debug"),
            ]
        );
        assert!(debuglink_candidates(&roots, Path::new("/usr/bin/app"), "../x").is_empty());
    }

    #[test]
    fn the_crc_of_a_file_is_the_debuglink_crc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"123456789").unwrap();
        // The CRC-32 check value of "123456789".
        assert_eq!(crc32_of(&path), Some(0xcbf4_3926));
        assert_eq!(crc32_of(dir.path()), None);
        assert_eq!(crc32_of(&dir.path().join("missing")), None);
    }

    #[test]
    fn facts_of_this_test_binary() {
        let me = std::env::current_exe().unwrap();
        let facts = ElfFacts::read(&me).unwrap();
        assert!(facts.has_symtab);
        assert!(!facts.has_gopclntab);
        // The address of a function maps back to the file offset it is loaded from.
        let load = facts.loads.iter().find(|l| l.2 > 0).unwrap();
        assert_eq!(facts.vaddr(load.0), Some(load.1));
        assert_eq!(facts.vaddr(u64::MAX), None);
        assert!(ElfFacts::read(Path::new("/proc/self/status")).is_none());
    }

    #[test]
    fn a_debug_file_is_found_by_build_id_only_when_its_id_matches() {
        let me = std::env::current_exe().unwrap();
        let facts = ElfFacts::read(&me).unwrap();
        let Some(id) = facts.build_id.clone() else {
            eprintln!("skipping: this test binary has no build ID");
            return;
        };
        let root = tempfile::tempdir().unwrap();
        let finder = DebugInfoFinder::new(&[root.path().to_path_buf()], None);
        let candidate = &build_id_candidates(&[root.path().to_path_buf()], &id)[0];
        std::fs::create_dir_all(candidate.parent().unwrap()).unwrap();
        // Another file at the right path is not taken for the debug file.
        std::fs::write(candidate, b"not the debug file").unwrap();
        assert_eq!(finder.find("/nowhere/app", &facts), None);
        std::fs::copy(&me, candidate).unwrap();
        assert_eq!(
            finder.find("/nowhere/app", &facts),
            Some(DebugFile {
                path: candidate.clone(),
                origin: DebugOrigin::BuildIdDir
            })
        );
    }

    #[test]
    fn a_debuglink_is_followed_only_when_the_crc_matches() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("app");
        let debug = dir.path().join(".debug").join("app.debug");
        std::fs::create_dir_all(debug.parent().unwrap()).unwrap();
        std::fs::write(&debug, b"debug contents").unwrap();
        let crc = crc32_of(&debug).unwrap();
        let facts = |crc| ElfFacts {
            debuglink: Some(("app.debug".to_owned(), crc)),
            ..ElfFacts::default()
        };
        let finder = DebugInfoFinder::new(&[], None);
        let binary = binary.to_str().unwrap();
        assert_eq!(
            finder.find(binary, &facts(crc)).map(|f| (f.path, f.origin)),
            Some((debug, DebugOrigin::DebugLink))
        );
        assert_eq!(finder.find(binary, &facts(crc ^ 1)), None);
    }
}
