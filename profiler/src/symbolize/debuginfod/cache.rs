//! The debuginfod cache on disk, kept safe for a root process among files other users
//! control: which directory it is, and every read and write in it.
//!
//! Under `sudo -E` the environment (`HOME`, `XDG_CACHE_HOME`, `DEBUGINFOD_CACHE_PATH`) is
//! the invoking user's, so a root run never takes its cache from there unless the directory
//! is root's alone. Every path below the cache's root is opened relative to an opened
//! directory, without following links; a file is written under a fresh name that did not
//! exist (`O_EXCL`), checked, and renamed into place, so nothing planted in the cache can
//! redirect a write or stand in for a debug file.

use std::ffi::{CStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use object::read::elf::{FileHeader, NoteIterator, SectionHeader};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// The cache directory's name under `XDG_CACHE_HOME` or `~/.cache`, as elfutils names it.
const CACHE_NAME: &str = "debuginfod_client";
/// The most bytes of ELF notes read to find a build ID: a real file has a few dozen.
const MAX_NOTE_BYTES: u64 = 1 << 20;
/// The longest build ID asked for (SHA-512 is 64 bytes; GNU ld makes 20).
pub const MAX_BUILD_ID: usize = 64;

/// Where the cache is, and why a directory the environment named was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The cache directory.
    pub path: PathBuf,
    /// Set when the environment named a directory that was refused, with why.
    pub refused: Option<String>,
}

/// The cache directory for a process with effective user `euid` and environment `var`.
///
/// Not root: elfutils' own order, `$DEBUGINFOD_CACHE_PATH`, else
/// `$XDG_CACHE_HOME/debuginfod_client`, else `$HOME/.cache/debuginfod_client`. Root: its own
/// `<home from passwd>/.cache/debuginfod_client`, or `$DEBUGINFOD_CACHE_PATH` when that
/// directory and every directory above it belong to root and no one else may write there
/// (`trusted`); `HOME` and `XDG_CACHE_HOME` are never read, as sudo leaves them the user's.
pub fn choose(
    euid: u32,
    var: impl Fn(&str) -> Option<OsString>,
    root_home: impl FnOnce() -> PathBuf,
    trusted: impl FnOnce(&Path) -> Result<(), String>,
) -> Option<Choice> {
    let var = |name| var(name).filter(|v| !v.is_empty());
    if euid != 0 {
        let path = var("DEBUGINFOD_CACHE_PATH")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join(CACHE_NAME)))
            .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache").join(CACHE_NAME)))?;
        return Some(Choice {
            path,
            refused: None,
        });
    }
    let own = root_home().join(".cache").join(CACHE_NAME);
    let Some(named) = var("DEBUGINFOD_CACHE_PATH").map(PathBuf::from) else {
        return Some(Choice {
            path: own,
            refused: None,
        });
    };
    match trusted(&named) {
        Ok(()) => Some(Choice {
            path: named,
            refused: None,
        }),
        Err(why) => Some(Choice {
            refused: Some(format!(
                "DEBUGINFOD_CACHE_PATH {} refused ({why}), root's own cache {} used instead",
                named.display(),
                own.display()
            )),
            path: own,
        }),
    }
}

/// Root's home directory from the password database (not `$HOME`, which sudo may leave
/// the user's), `/root` when it has no entry.
pub fn root_home() -> PathBuf {
    // SAFETY: passwd is plain data (integers and pointers): all zeros is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: every pointer is to a live buffer of the stated size; the entry's strings
    // point into `buf`, which outlives their use below.
    let rc = unsafe { libc::getpwuid_r(0, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return PathBuf::from("/root");
    }
    // SAFETY: getpwuid_r succeeded, so pw_dir is a NUL-terminated string in `buf`.
    let dir = unsafe { CStr::from_ptr(entry.pw_dir) }.to_bytes().to_vec();
    let dir = PathBuf::from(OsString::from_vec(dir));
    if dir.is_absolute() {
        dir
    } else {
        PathBuf::from("/root")
    }
}

/// Whether a root process may keep its cache in `path`: `Ok` when every existing directory
/// on the way, followed without links, is root's and writable by no one else (a sticky
/// directory such as `/tmp` may be on the way, not be the cache).
pub fn trusted_for_root(path: &Path) -> Result<(), String> {
    walk(path, false, true).map(drop)
}

/// Opens the directory `path`, each component relative to the last without following
/// links, creating missing ones (mode 0700) when `create`; when `trust`, refuses a
/// directory that is not root's or that others may write. `Ok(None)` when a component is
/// missing and not created.
fn walk(path: &Path, create: bool, trust: bool) -> Result<Option<OwnedFd>, String> {
    if !path.is_absolute() {
        return Err("not an absolute path".to_owned());
    }
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open("/", dir_flags, Mode::empty()).map_err(|e| format!("/: {e}"))?;
    let components: Vec<Component<'_>> = path.components().collect();
    let last = components.len() - 1;
    for (i, component) in components.into_iter().enumerate() {
        let name = match component {
            Component::RootDir | Component::CurDir => {
                if trust && i == last {
                    check_owner(&dir, true).map_err(|why| format!("{}: {why}", path.display()))?;
                }
                continue;
            }
            Component::Normal(name) => name,
            Component::ParentDir | Component::Prefix(_) => {
                return Err("a path with `..` in it".to_owned());
            }
        };
        let mut next = rustix::fs::openat(&dir, name, dir_flags, Mode::empty());
        if matches!(next, Err(Errno::NOENT)) {
            if !create {
                return Ok(None);
            }
            match rustix::fs::mkdirat(&dir, name, Mode::RWXU) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
            next = rustix::fs::openat(&dir, name, dir_flags, Mode::empty());
        }
        let here: PathBuf = path.components().take(i + 1).collect();
        dir = next.map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => {
                format!("{} is a symbolic link or not a directory", here.display())
            }
            e => format!("{}: {e}", here.display()),
        })?;
        if trust {
            check_owner(&dir, i == last).map_err(|why| format!("{}: {why}", here.display()))?;
        }
    }
    Ok(Some(dir))
}

/// Refuses a directory root does not own or others may write (a sticky one is fine on the
/// way, where others cannot move root's entries, not as the cache itself).
fn check_owner(dir: &OwnedFd, is_cache: bool) -> Result<(), String> {
    let stat = rustix::fs::fstat(dir).map_err(|e| e.to_string())?;
    if stat.st_uid != 0 {
        return Err(format!("owned by uid {}, not root", stat.st_uid));
    }
    let writable_by_others = stat.st_mode & 0o022 != 0;
    let sticky = stat.st_mode & 0o1000 != 0;
    if writable_by_others && (is_cache || !sticky) {
        return Err(format!(
            "writable by others (mode {:o})",
            stat.st_mode & 0o7777
        ));
    }
    Ok(())
}

/// What became of a download.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Kept, with its size.
    Kept(u64),
    /// Longer than the cap: deleted.
    TooLarge,
    /// Another file's build ID, or none: deleted.
    WrongBuildId,
}

/// An opened cache directory.
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    dir: OwnedFd,
}

/// Makes the temporary names of one process distinct.
static NEXT_TEMPORARY: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Opens (creating what is missing of it) the cache directory `path`; when `trust`, it
    /// and the directories above it must be root's alone.
    pub fn open(path: &Path, trust: bool) -> Result<Self, String> {
        let dir = walk(path, true, trust)?.ok_or_else(|| "not created".to_owned())?;
        Ok(Self {
            path: path.to_owned(),
            dir,
        })
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the debug file of `hex` (not checked).
    pub fn file_path(&self, hex: &str) -> PathBuf {
        self.path.join(hex).join("debuginfo")
    }

    /// The directory of `hex`, opened without following a link, created when `create`
    /// (replacing a link or file of that name, which is not a cache entry).
    fn entry_dir(&self, hex: &str, create: bool) -> io::Result<Option<OwnedFd>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.dir, hex, flags, Mode::empty()) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::NOENT) if create => {}
            Err(Errno::LOOP | Errno::NOTDIR) if create => {
                rustix::fs::unlinkat(&self.dir, hex, AtFlags::empty())?;
            }
            Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        match rustix::fs::mkdirat(&self.dir, hex, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Some(rustix::fs::openat(
            &self.dir,
            hex,
            flags,
            Mode::empty(),
        )?))
    }

    /// Looks up the cached debug file of `build_id` (`hex` in hex): `Ok(true)` when it is
    /// there, a regular file with that build ID. An entry that is anything else (a link, a
    /// FIFO, another build ID) is removed and `Ok(false)` returned, with `true` in the
    /// second place when it was another build ID. An empty file (elfutils' mark of a build
    /// ID no server had) is left alone and not taken.
    pub fn lookup(&self, hex: &str, build_id: &[u8]) -> io::Result<(bool, bool)> {
        let Some(dir) = self.entry_dir(hex, false)? else {
            return Ok((false, false));
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, "debuginfo", flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok((false, false)),
            Err(_) => {
                // A link or a file that cannot be opened as one: not a cache entry.
                let _ = rustix::fs::unlinkat(&dir, "debuginfo", AtFlags::empty());
                return Ok((false, false));
            }
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            let _ = rustix::fs::unlinkat(&dir, "debuginfo", AtFlags::empty());
            return Ok((false, false));
        }
        if stat.st_size == 0 {
            return Ok((false, false));
        }
        if build_id_of(&File::from(fd)).as_deref() == Some(build_id) {
            return Ok((true, false));
        }
        let _ = rustix::fs::unlinkat(&dir, "debuginfo", AtFlags::empty());
        Ok((false, true))
    }

    /// Writes `body` as the debug file of `build_id` (`hex` in hex): under a fresh name
    /// beside its place, at most `max_bytes` of it, then checked to carry `build_id` and
    /// renamed into place. A body over the cap or of another build ID is deleted.
    pub fn store(
        &self,
        hex: &str,
        build_id: &[u8],
        body: &mut dyn Read,
        max_bytes: u64,
    ) -> io::Result<Stored> {
        let dir = self
            .entry_dir(hex, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let (name, file) = create_temporary(&dir)?;
        let kept = (|| {
            let mut file = File::from(file);
            let written = copy_capped(body, &mut file, max_bytes)?;
            let Some(written) = written else {
                return Ok(Stored::TooLarge);
            };
            file.flush()?;
            if build_id_of(&file).as_deref() != Some(build_id) {
                return Ok(Stored::WrongBuildId);
            }
            rustix::fs::renameat(&dir, name.as_str(), &dir, "debuginfo")?;
            Ok(Stored::Kept(written))
        })();
        if !matches!(kept, Ok(Stored::Kept(_))) {
            let _ = rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty());
            // The entry's directory too, when nothing else is in it.
            let _ = rustix::fs::unlinkat(&self.dir, hex, AtFlags::REMOVEDIR);
        }
        kept
    }
}

/// Creates a file no one else has named, beside the cache entry, for writing.
fn create_temporary(dir: &OwnedFd) -> io::Result<(String, OwnedFd)> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut last = Errno::EXIST;
    // O_EXCL makes any name safe; a fresh one only avoids leftovers of a killed run.
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            ".debuginfo.{}.{}.{nanos:08x}.part",
            std::process::id(),
            NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed)
        );
        match rustix::fs::openat(dir.as_fd(), name.as_str(), flags, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => return Ok((name, fd)),
            Err(e) => last = e,
        }
        if last != Errno::EXIST {
            break;
        }
    }
    Err(last.into())
}

/// Copies `from` into `to`; the bytes copied, or `None` as soon as there are more than
/// `max_bytes` (what was written is left to the caller to delete).
fn copy_capped(from: &mut dyn Read, to: &mut File, max_bytes: u64) -> io::Result<Option<u64>> {
    let copied = io::copy(&mut from.take(max_bytes.saturating_add(1)), to)?;
    Ok((copied <= max_bytes).then_some(copied))
}

/// The GNU build ID in the note sections of the ELF file `file`, reading only its headers
/// and at most [`MAX_NOTE_BYTES`] of notes, whatever the file claims.
pub fn build_id_of(file: &File) -> Option<Vec<u8>> {
    let data = object::ReadCache::new(file);
    match object::FileKind::parse(&data).ok()? {
        object::FileKind::Elf64 => {
            build_id_in::<object::elf::FileHeader64<object::Endianness>>(&data)
        }
        object::FileKind::Elf32 => {
            build_id_in::<object::elf::FileHeader32<object::Endianness>>(&data)
        }
        _ => None,
    }
}

fn build_id_in<Elf: FileHeader<Endian = object::Endianness>>(
    data: &object::ReadCache<&File>,
) -> Option<Vec<u8>> {
    let header = Elf::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let mut budget = MAX_NOTE_BYTES;
    for section in sections.iter() {
        if section.sh_type(endian) != object::elf::SHT_NOTE {
            continue;
        }
        let size: u64 = section.sh_size(endian).into();
        if size > budget {
            continue;
        }
        budget -= size;
        let Ok(Some(mut notes)) = section.notes(endian, data) else {
            continue;
        };
        if let Some(id) = gnu_build_id(&mut notes, endian) {
            return Some(id);
        }
    }
    None
}

fn gnu_build_id<Elf: FileHeader>(
    notes: &mut NoteIterator<'_, Elf>,
    endian: Elf::Endian,
) -> Option<Vec<u8>> {
    while let Ok(Some(note)) = notes.next() {
        if note.name() == object::elf::ELF_NOTE_GNU
            && note.n_type(endian) == object::elf::NT_GNU_BUILD_ID
        {
            let id = note.desc();
            return (!id.is_empty() && id.len() <= MAX_BUILD_ID).then(|| id.to_vec());
        }
    }
    None
}
