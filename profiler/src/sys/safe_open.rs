//! Opens files that other users control (their binaries, debug files beside them, files
//! under debug roots) for reading as root: never through a symlink, never a FIFO, device,
//! socket or directory, and never blocking.
//!
//! The path is first opened with `O_PATH|O_NOFOLLOW`, which opens nothing behind it (no
//! FIFO waits for a writer, no device driver runs), and checked with `fstat` to be a
//! regular file; only then is that very inode reopened for reading through
//! `/proc/self/fd`, `O_NONBLOCK|O_NOCTTY|O_CLOEXEC`, so swapping the path in between
//! changes nothing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Where the profiler reaches its own descriptors (the files it holds for the run).
const OWN_FDS: &str = "/proc/self/fd/";

/// Opens the regular file at `path` for reading without following a symlink at its last
/// component and without blocking; anything but a regular file is refused
/// (`ErrorKind::InvalidInput`) before it is opened for reading.
///
/// A path of a descriptor table (`/proc/self/fd/N`, or `/proc/PID/fd/N` of a process of
/// the profiler's own, how held files are passed to libraries and to other processes that
/// take paths) is followed: it is a link the kernel resolves to a file already open, and
/// it is checked the same way. Callers never build such a path from a target's input
/// (debug links are looked for nowhere under `/proc`).
pub fn open_regular(path: &Path) -> io::Result<File> {
    open_checked(path, is_descriptor(path))
}

/// As [`open_regular`], but a symlink (or a `/proc` magic link such as
/// `/proc/PID/map_files/...`) is followed, and what it leads to is checked and opened
/// the same way: never a FIFO, device or directory, never blocking. For build-ID
/// directories, where distributions keep symlinks (Fedora's `.build-id/xx/rest.debug`
/// links to the debug file), and for the files processes map.
pub fn open_regular_following(path: &Path) -> io::Result<File> {
    open_checked(path, true)
}

fn open_checked(path: &Path, follow: bool) -> io::Result<File> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | nofollow)
        .open(path)?;
    let meta = handle.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("{OWN_FDS}{}", handle.as_raw_fd()))?;
    // Reopening an `O_PATH` descriptor opens its inode; this only guards the guarantee.
    let reopened = file.metadata()?;
    if reopened.dev() != meta.dev() || reopened.ino() != meta.ino() {
        return Err(io::Error::other(format!(
            "{} changed while it was opened",
            path.display()
        )));
    }
    Ok(file)
}

/// Whether `path` is `/proc/self/fd/N` or `/proc/PID/fd/N`.
fn is_descriptor(path: &Path) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = path.to_str().and_then(|p| p.strip_prefix("/proc/")) else {
        return false;
    };
    match rest.split('/').collect::<Vec<_>>()[..] {
        [who, "fd", n] => (who == "self" || number(who)) && number(n),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn refused(path: &Path) -> io::ErrorKind {
        let started = Instant::now();
        let err = open_regular(path).expect_err("refused");
        // None of these may wait for anything.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path:?} blocked"
        );
        err.kind()
    }

    #[test]
    fn opens_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"contents").unwrap();
        let file = open_regular(&path).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 8);
        // Reading it as usual works: the descriptor is an ordinary read-only one.
        let mut text = String::new();
        io::Read::read_to_string(&mut &file, &mut text).unwrap();
        assert_eq!(text, "contents");
    }

    #[test]
    fn refuses_fifos_symlinks_devices_and_directories_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert_eq!(refused(&fifo), io::ErrorKind::InvalidInput);

        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(refused(&link), io::ErrorKind::InvalidInput);
        let to_device = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &to_device).unwrap();
        assert_eq!(refused(&to_device), io::ErrorKind::InvalidInput);
        let to_fifo = dir.path().join("to-fifo");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        assert_eq!(refused(&to_fifo), io::ErrorKind::InvalidInput);

        assert_eq!(refused(Path::new("/dev/zero")), io::ErrorKind::InvalidInput);
        assert_eq!(refused(Path::new("/dev/null")), io::ErrorKind::InvalidInput);
        assert_eq!(refused(dir.path()), io::ErrorKind::InvalidInput);
        assert_eq!(
            refused(&dir.path().join("missing")),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn follows_only_the_profiler_s_own_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        std::fs::write(&path, b"held").unwrap();
        let held = File::open(&path).unwrap();
        let own = format!("{OWN_FDS}{}", held.as_raw_fd());
        assert_eq!(
            open_regular(Path::new(&own))
                .unwrap()
                .metadata()
                .unwrap()
                .len(),
            4
        );
        // As another process (a worker) reaches it.
        let by_pid = format!("/proc/{}/fd/{}", std::process::id(), held.as_raw_fd());
        assert!(open_regular(Path::new(&by_pid)).is_ok());
        // A descriptor that is not a regular file is refused the same way.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let own_fifo = format!("{OWN_FDS}{}", reader.as_raw_fd());
        assert_eq!(refused(Path::new(&own_fifo)), io::ErrorKind::InvalidInput);
        // Anything else under /proc is not a descriptor table.
        for other in ["/proc/self/exe", "/proc/self/cwd/x", "/proc/self/fd/1/x"] {
            assert!(open_regular(Path::new(other)).is_err(), "{other}");
        }
        assert!(!is_descriptor(Path::new("/proc/self/fd/")));
        assert!(!is_descriptor(Path::new("/proc/x1/fd/3")));
    }

    #[test]
    fn links_followed_lead_to_regular_files_only() {
        assert!(open_regular_following(Path::new("/proc/self/exe")).is_ok());
        let fd = File::open("/dev/null").unwrap();
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let kind = |path: &Path| open_regular_following(path).unwrap_err().kind();
        assert_eq!(kind(Path::new(&link)), io::ErrorKind::InvalidInput);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let to_file = dir.path().join("to-file");
        std::os::unix::fs::symlink("target", &to_file).unwrap();
        assert_eq!(
            open_regular_following(&to_file)
                .unwrap()
                .metadata()
                .unwrap()
                .len(),
            1
        );
        let to_device = dir.path().join("to-device");
        std::os::unix::fs::symlink("/dev/zero", &to_device).unwrap();
        assert_eq!(kind(&to_device), io::ErrorKind::InvalidInput);
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let to_fifo = dir.path().join("to-fifo");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let started = Instant::now();
        assert_eq!(kind(&to_fifo), io::ErrorKind::InvalidInput);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
