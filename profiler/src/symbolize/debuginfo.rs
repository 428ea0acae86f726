//! Finds the debug information of an ELF file where gdb and perf look for it: the file
//! itself, a build-ID directory (`<root>/.build-id/xx/rest.debug`), its `.gnu_debuglink`
//! (next to it, in `.debug/` beside it, under a root plus its directory, the CRC checked),
//! and a debuginfod server. MiniDebugInfo (`.gnu_debugdata`) is read by blazesym from the
//! file itself when nothing here is found.
//!
//! Every candidate may be a path other users control (a debug link names a file beside
//! their binary): a debug-link candidate is opened with [`open_regular`] (no symlink, no
//! FIFO or device, no blocking), a build-ID entry with [`open_regular_following`] (a
//! symlink to a regular file only), each read within a budget, and the very descriptor
//! that was checked is the one the debug information is later read from.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object::{Object, ObjectSection, ObjectSegment};

use crate::process::elf_data::BoundedFile;
use crate::symbolize::debuginfod::Debuginfod;
use crate::sys::safe_open::{open_regular, open_regular_following};

/// The largest separate debug file taken (and CRC-checked): bigger than any real one (the
/// 32-bit DWARF distributions use cannot address a section past 4 GiB, and their biggest
/// packages are built with `-g1` to stay far below), so a larger file, such as a sparse
/// file of 100 GiB, is refused before a byte of it is read.
pub const MAX_DEBUG_FILE_BYTES: u64 = 4 << 30;

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
    /// Whether its DWARF names other files by path (`.gnu_debuglink`,
    /// `.gnu_debugaltlink`, `.debug_sup`): blazesym opens those itself, by path, following
    /// links and blocking, so such DWARF is read only where root owns what they name.
    pub links_elsewhere: bool,
    /// The loaded segments: (file offset, virtual address, size in the file).
    pub loads: Vec<(u64, u64, u64)>,
}

impl ElfFacts {
    /// Reads the facts of the ELF file at `path` (opened with [`open_regular`]); `None`
    /// when it is not a readable regular ELF file.
    pub fn read(path: &Path) -> Option<Self> {
        match open_regular(path) {
            Ok(file) => Self::of_file(&file),
            Err(err) => {
                log::debug!("{}: {err}", path.display());
                None
            }
        }
    }

    /// Reads the facts of the open ELF file `file`, reading its headers only, within a
    /// budget; `None` when it is not a readable ELF file.
    pub fn of_file(file: &File) -> Option<Self> {
        let cache = BoundedFile::headers(file.try_clone().ok()?);
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
            links_elsewhere: [".gnu_debuglink", ".gnu_debugaltlink", ".debug_sup"]
                .iter()
                .any(|name| section(name).is_some()),
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

/// A separate file holding debug information of an ELF file, held open: it is read from
/// the descriptor that was checked, whatever becomes of its path.
#[derive(Debug, Clone)]
pub struct DebugFile {
    /// Where it was found.
    pub path: PathBuf,
    /// How it was found.
    pub origin: DebugOrigin,
    file: Arc<File>,
}

impl PartialEq for DebugFile {
    fn eq(&self, other: &Self) -> bool {
        (&self.path, self.origin) == (&other.path, other.origin)
    }
}

impl DebugFile {
    /// The path to give libraries that open files by path: the held descriptor, valid
    /// while this value lives.
    pub fn open_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

/// What was refused while looking for names, for the summary: nothing refused is lost
/// silently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusals {
    /// Debug-file candidates that are not regular files (a FIFO, a device, a symlink
    /// where none is taken), refused without being opened.
    pub not_regular: u64,
    /// Debug files over [`MAX_DEBUG_FILE_BYTES`].
    pub too_big: u64,
    /// Go line tables (`.gopclntab`) that broke a bound of their reading or walks.
    pub gopclntab: u64,
    /// Files (or their debug files) whose DWARF names other files by path in a place a
    /// user controls: their DWARF is not read.
    pub linked_dwarf: u64,
}

/// Adds what another finder (a worker's) refused: `finder.refuse(|r| *r += &theirs)`.
impl std::ops::AddAssign<&Refusals> for Refusals {
    fn add_assign(&mut self, other: &Refusals) {
        self.not_regular += other.not_regular;
        self.too_big += other.too_big;
        self.gopclntab += other.gopclntab;
        self.linked_dwarf += other.linked_dwarf;
    }
}

impl Refusals {
    /// What was refused since `before`, an earlier reading of the same finder: what a
    /// worker reports with each answer.
    pub fn since(&self, before: &Refusals) -> Refusals {
        Refusals {
            not_regular: self.not_regular.saturating_sub(before.not_regular),
            too_big: self.too_big.saturating_sub(before.too_big),
            gopclntab: self.gopclntab.saturating_sub(before.gopclntab),
            linked_dwarf: self.linked_dwarf.saturating_sub(before.linked_dwarf),
        }
    }

    /// The summary's line, when anything was refused.
    pub fn summary(&self) -> Option<String> {
        let count =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = Vec::new();
        if self.not_regular > 0 {
            parts.push(
                count(
                    self.not_regular,
                    "debug-file candidate that is not a regular file",
                    "debug-file candidates that are not regular files",
                ) + " (FIFO, device, symlink)",
            );
        }
        if self.too_big > 0 {
            let cap = format!(" over {} GiB", MAX_DEBUG_FILE_BYTES >> 30);
            parts.push(count(self.too_big, "debug file", "debug files") + &cap);
        }
        if self.gopclntab > 0 {
            parts.push(
                count(
                    self.gopclntab,
                    "Go line table (.gopclntab) that broke its bounds",
                    "Go line tables (.gopclntab) that broke their bounds",
                ) + ", named from symbol tables instead",
            );
        }
        if self.linked_dwarf > 0 {
            parts.push(
                count(
                    self.linked_dwarf,
                    "file whose DWARF links to files a user controls",
                    "files whose DWARF links to files a user controls",
                ) + " (debug link, altlink, supplementary file), named from symbol tables",
            );
        }
        (!parts.is_empty()).then(|| format!("refused: {}", parts.join(", ")))
    }
}

/// Looks for separate debug files under a list of roots, then on debuginfod servers.
#[derive(Debug)]
pub struct DebugInfoFinder {
    /// Debug roots, searched in order: the user's (`--debuginfo-dir`), then the system's.
    roots: Vec<PathBuf>,
    /// The debuginfod client, when `DEBUGINFOD_URLS` names servers.
    debuginfod: Option<Debuginfod>,
    /// What was refused so far.
    refusals: Mutex<Refusals>,
}

impl Default for DebugInfoFinder {
    /// The system's directory only.
    fn default() -> Self {
        Self::new(&[], None)
    }
}

impl DebugInfoFinder {
    /// Whether `path` lies under one of the debug roots, which root owns (the system's,
    /// and those given with `--debuginfo-dir`): the files a debug file there links to are
    /// looked for beside it, in root's tree.
    pub fn in_a_root(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }

    /// A finder searching `extra_roots` before [`SYSTEM_DEBUG_ROOT`], then `debuginfod`.
    pub fn new(extra_roots: &[PathBuf], debuginfod: Option<Debuginfod>) -> Self {
        let mut roots = extra_roots.to_vec();
        roots.push(PathBuf::from(SYSTEM_DEBUG_ROOT));
        Self {
            roots,
            debuginfod,
            refusals: Mutex::default(),
        }
    }

    /// What was refused so far.
    pub fn refusals(&self) -> Refusals {
        *self
            .refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a refusal.
    pub fn refuse(&self, count: impl FnOnce(&mut Refusals)) {
        count(
            &mut self
                .refusals
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
    }

    /// The candidate at `path`, open, when it is a regular file within
    /// [`MAX_DEBUG_FILE_BYTES`] (symlinks followed when `follow`); refusals counted.
    fn open_candidate(&self, path: &Path, follow: bool) -> Option<File> {
        let opened = if follow {
            open_regular_following(path)
        } else {
            open_regular(path)
        };
        let file = match opened {
            Ok(file) => file,
            Err(err) => {
                if err.kind() == std::io::ErrorKind::InvalidInput {
                    log::debug!("{err}: refused");
                    self.refuse(|r| r.not_regular += 1);
                }
                return None;
            }
        };
        let len = file.metadata().ok()?.len();
        if len > MAX_DEBUG_FILE_BYTES {
            log::debug!(
                "{}: {len} bytes, over the {MAX_DEBUG_FILE_BYTES}-byte cap of a debug file: \
                 refused",
                path.display()
            );
            self.refuse(|r| r.too_big += 1);
            return None;
        }
        Some(file)
    }

    /// The ELF file at `path`, open, when it is a debug file with build ID `id`. A symlink
    /// is followed (distributions link build-ID entries to their debug files) to a
    /// regular file only: the build ID is what makes it the file, wherever it is.
    fn with_build_id(&self, path: &Path, id: &[u8]) -> Option<File> {
        let file = self.open_candidate(path, true)?;
        let facts = ElfFacts::of_file(&file)?;
        (facts.build_id.as_deref() == Some(id)).then_some(file)
    }

    /// The debuginfod client, to report what it fetched.
    pub fn debuginfod(&self) -> Option<&Debuginfod> {
        self.debuginfod.as_ref()
    }

    /// The separate debug file of the ELF file `binary` (its path as the process named
    /// it) with `facts`, in gdb's order: build-ID directories, the debug link, debuginfod.
    pub fn find(&self, binary: &str, facts: &ElfFacts) -> Option<DebugFile> {
        let found = |path: PathBuf, origin, file| {
            Some(DebugFile {
                path,
                origin,
                file: Arc::new(file),
            })
        };
        if let Some(id) = &facts.build_id {
            for path in build_id_candidates(&self.roots, id) {
                if let Some(file) = self.with_build_id(&path, id) {
                    return found(path, DebugOrigin::BuildIdDir, file);
                }
            }
        }
        if let Some((name, crc)) = &facts.debuglink {
            for path in debuglink_candidates(&self.roots, Path::new(binary), name) {
                if path.as_path() == Path::new(binary) {
                    continue;
                }
                // A debug file is one whose CRC matches: another build's would name
                // the wrong functions.
                let Some(file) = self.open_candidate(&path, false) else {
                    continue;
                };
                if crc32_of_file(&file) == Some(*crc) {
                    return found(path, DebugOrigin::DebugLink, file);
                }
            }
        }
        let id = facts.build_id.as_ref()?;
        let path = self.debuginfod.as_ref()?.fetch(id)?;
        let file = self.with_build_id(&path, id)?;
        found(path, DebugOrigin::Debuginfod, file)
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
    // The link is a file name; a path in it would lead anywhere. A mapped file is never
    // in /proc on the host, and a directory there (the profiler's own descriptors among
    // them) is no place to look.
    if name.is_empty() || name.contains('/') || binary.starts_with("/proc") {
        return Vec::new();
    }
    let dir = binary.parent().unwrap_or(Path::new("/"));
    let mut out = vec![dir.join(name), dir.join(".debug").join(name)];
    let relative = dir.strip_prefix("/").unwrap_or(dir);
    out.extend(roots.iter().map(|root| root.join(relative).join(name)));
    out
}

/// The CRC32 of the whole of `file`, as `.gnu_debuglink` records it, reading at most
/// [`MAX_DEBUG_FILE_BYTES`]; `None` when it cannot be read or is larger.
fn crc32_of_file(file: &File) -> Option<u32> {
    if file.metadata().ok()?.len() > MAX_DEBUG_FILE_BYTES {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    // The cap bounds the read too, should the file grow while it is read.
    let mut reader = file.take(MAX_DEBUG_FILE_BYTES);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(hasher.finalize())
}

#[cfg(test)]
mod tests;
