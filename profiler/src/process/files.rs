//! The files mapped by profiled processes, opened once, from first sight, through the
//! process's own view of them (`/proc/PID/map_files`): a binary that exists only inside a
//! container's mount namespace, or whose process exits before the end of the run, can then
//! still be unwound and symbolized. The vdso, which has no file, gets one: its image is the
//! same in every process, so the profiler's own is copied into a memory file.
//!
//! A file is shared between processes only when it is the same file (device and inode):
//! two files with the same build ID may still differ (a user's copy of a library with the
//! same build ID and size but renamed symbols), and each process's frames are named from
//! its own.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use crate::process::elf_data::BoundedFile;
use crate::sys::safe_open::{open_regular, open_regular_following};

/// The identity of a mapped file: its device and inode, as `/proc/PID/maps` gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Inode number.
    pub inode: u64,
}

/// One mapped ELF file, held open for the rest of the run.
#[derive(Debug)]
pub struct ObjectFile {
    /// The file's path as the process named it (in its own mount namespace), or `[vdso]`.
    pub path: String,
    /// The open file: reading it needs neither the process nor the path.
    pub file: File,
    /// The file's GNU build ID, when it has one.
    pub build_id: Option<Vec<u8>>,
}

impl ObjectFile {
    /// A path through which this process can open the file again (for libraries that take
    /// paths), valid while the file is held.
    pub fn open_path(&self) -> String {
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }

    /// The build ID in hex, as pprof and debuginfod spell it.
    pub fn build_id_hex(&self) -> Option<String> {
        let id = self.build_id.as_ref()?;
        Some(id.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn new(path: String, file: File) -> Self {
        let build_id = read_build_id(&file);
        Self {
            path,
            file,
            build_id,
        }
    }
}

/// The GNU build ID of an ELF file, reading only its headers and notes, within a budget
/// no real header table comes near.
fn read_build_id(file: &File) -> Option<Vec<u8>> {
    use object::Object;
    let cache = BoundedFile::headers(file.try_clone().ok()?);
    let elf = object::File::parse(&cache).ok()?;
    elf.build_id().ok().flatten().map(<[u8]>::to_vec)
}

/// Every mapped file seen so far, by device and inode: a file is opened and parsed once
/// whatever number of processes map it. Containers sharing an image layer map the same
/// inode (overlayfs maps the lower file), so they share it too; never by build ID alone.
#[derive(Debug, Default)]
pub struct FileTable {
    files: HashMap<FileKey, Arc<ObjectFile>>,
    vdso: Option<Option<Arc<ObjectFile>>>,
    /// Files not held because the open-file limit was near.
    pub not_held: u64,
}

/// Descriptors left free for everything else the run opens (symbolizing through
/// `/proc/self/fd`, the output files) when mapped files are held.
const FD_RESERVE: u64 = 256;

impl FileTable {
    /// The file mapped at `start..end` of process `pid` (named `path` in its maps), opened
    /// the first time it is seen; `None` when it cannot be opened (the process is gone
    /// before it was seen, or the file is not readable). A file is opened once whatever
    /// number of processes map it.
    pub fn open(
        &mut self,
        pid: u32,
        key: FileKey,
        start: u64,
        end: u64,
        path: &str,
    ) -> Option<Arc<ObjectFile>> {
        if path == "[vdso]" {
            return self.vdso.get_or_insert_with(copy_own_vdso).clone();
        }
        if !path.starts_with('/') {
            return None;
        }
        if let Some(known) = self.files.get(&key) {
            return Some(known.clone());
        }
        if self.files.len() as u64 + FD_RESERVE >= crate::sys::fdlimit::soft_limit().unwrap_or(1024)
        {
            self.not_held += 1;
            return None;
        }
        // A failure is not remembered: another process mapping the same file (one that has
        // not exited yet) may still share it.
        let Some(file) = open_mapped(pid, key, start, end, path) else {
            log::debug!("cannot open {path} mapped by pid {pid}: unwound by frame pointers");
            return None;
        };
        let file = Arc::new(file);
        self.files.insert(key, file.clone());
        Some(file)
    }
}

/// Opens a mapped file through the process's `map_files` entry (its own mount namespace),
/// else by path when the host's file there is the very same (device and inode as mapped); a
/// regular file only (a mapped device is never opened), never blocking.
fn open_mapped(pid: u32, key: FileKey, start: u64, end: u64, path: &str) -> Option<ObjectFile> {
    let name = path.trim_end_matches(" (deleted)").to_owned();
    let link = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
    match open_regular_following(Path::new(&link)) {
        Ok(file) => return Some(ObjectFile::new(name, file)),
        Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
            log::debug!("{name} mapped by pid {pid}: {err}");
            return None;
        }
        Err(_) => {}
    }
    // Whatever is at that path on the host is checked to be the mapped file: by `stat`, or,
    // where that differs from what mappings show (overlayfs), by mapping it here.
    let file = open_regular(Path::new(&name)).ok()?;
    let meta = file.metadata().ok()?;
    let same = (libc::major(meta.dev()) == key.major
        && libc::minor(meta.dev()) == key.minor
        && meta.ino() == key.inode)
        || key_as_mapped(&file) == Some(key);
    same.then(|| ObjectFile::new(name, file))
}

/// The vdso's image, copied from this process into a memory file: the kernel maps the same
/// image into every 64-bit process.
fn copy_own_vdso() -> Option<Arc<ObjectFile>> {
    // SAFETY: getauxval has no preconditions; AT_SYSINFO_EHDR is the vdso's ELF header.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    if base == 0 {
        return None;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let size = maps.lines().find_map(|line| {
        let (range, rest) = line.split_once(' ')?;
        if !rest.ends_with("[vdso]") {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        (start == base).then(|| end - start)
    })?;
    // SAFETY: the vdso is mapped readable at `base` for `size` bytes for the life of the
    // process.
    let image = unsafe { std::slice::from_raw_parts(base as *const u8, size as usize) };
    // SAFETY: a valid NUL-terminated name and flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"vdso".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor just created and owned by nothing else.
    let mut file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.write_all(image).ok()?;
    Some(Arc::new(ObjectFile::new("[vdso]".to_owned(), file)))
}

/// The identity `file` has once mapped: the device and inode `/proc/PID/maps` will show
/// for it, which is also the file the kernel keys uprobes by. It can differ from what
/// `stat` says: on overlayfs (containers, and the test kernels' root) a mapping shows
/// the layer's real file, `stat` the overlay's. A file probed by path before a process
/// maps it is known again among its mappings only under this identity. The file is
/// mapped one page, read-only and never touched, in the profiler itself, and its line
/// read back from `/proc/self/maps`; `None` when it cannot be mapped.
pub fn key_as_mapped(file: &File) -> Option<FileKey> {
    const PAGE: usize = 4096;
    // SAFETY: a fresh private read-only mapping at an address the kernel picks; it is
    // never read (a truncated file cannot fault us) and unmapped below.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return None;
    }
    let key = std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| key_of_mapping_at(&maps, address as u64));
    // SAFETY: the mapping made above, of that length, referenced nowhere else.
    unsafe { libc::munmap(address, PAGE) };
    key
}

/// The device and inode of the mapping that starts at `start` in a `/proc/PID/maps` text.
fn key_of_mapping_at(maps: &str, start: u64) -> Option<FileKey> {
    let prefix = format!("{start:x}-");
    let line = maps.lines().find(|line| line.starts_with(&prefix))?;
    // address perms offset dev inode path
    let mut fields = line.split_ascii_whitespace().skip(3);
    let (major, minor) = fields.next()?.split_once(':')?;
    Some(FileKey {
        major: u32::from_str_radix(major, 16).ok()?,
        minor: u32::from_str_radix(minor, 16).ok()?,
        inode: fields.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_vdso_with_its_build_id() {
        let mut table = FileTable::default();
        let key = FileKey::default();
        let vdso = table.open(1, key, 0, 0, "[vdso]").expect("a vdso");
        assert_eq!(vdso.path, "[vdso]");
        assert!(vdso.file.metadata().unwrap().len() >= 4096);
        // The same copy serves every process.
        let again = table.open(2, key, 0, 0, "[vdso]").unwrap();
        assert!(Arc::ptr_eq(&vdso, &again));
    }

    #[test]
    fn opens_this_process_s_executable_once() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let entries = crate::process::procmaps::parse_maps(&maps);
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy();
        let entry = entries.iter().find(|e| e.path == exe).expect("own mapping");
        let mut table = FileTable::default();
        let pid = std::process::id();
        let file = table
            .open(pid, entry.key, entry.start, entry.end, &entry.path)
            .expect("opened");
        assert_eq!(file.path, exe);
        let again = table
            .open(pid, entry.key, entry.start, entry.end, &entry.path)
            .unwrap();
        assert!(Arc::ptr_eq(&file, &again));
        // Another inode with the same build ID (a copy, the same or not) is another file.
        let copy = FileKey {
            inode: entry.key.inode + 1,
            ..entry.key
        };
        let other = table.open(pid, copy, entry.start, entry.end, &entry.path);
        assert!(other.is_none_or(|other| !Arc::ptr_eq(&file, &other)));
    }

    #[test]
    fn a_file_mapped_here_has_the_identity_its_mappings_show() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let entries = crate::process::procmaps::parse_maps(&maps);
        let mapped = entries
            .iter()
            .find(|e| Path::new(&e.path) == exe)
            .expect("own mapping");
        let file = open_regular(&exe).unwrap();
        assert_eq!(key_as_mapped(&file), Some(mapped.key));
    }

    #[test]
    fn a_maps_line_gives_its_device_and_inode() {
        let maps = "7f00-7f10 r--p 00000000 00:2f 367   /tmp/a b\n\
                    55ae94140000-55ae94141000 r--p 00000000 fe:01 10682441 /x\n";
        assert_eq!(
            key_of_mapping_at(maps, 0x55ae_9414_0000),
            Some(FileKey {
                major: 0xfe,
                minor: 1,
                inode: 10_682_441
            })
        );
        assert_eq!(key_of_mapping_at(maps, 0x7f0), None);
    }
}
