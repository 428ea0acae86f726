//! Creating output files as root without being tricked into writing somewhere else.
//!
//! The profiler runs as root but writes into a directory its user chose, which anyone
//! with write access to it could have prepared: a symlink or hardlink planted at
//! `cpu.svg` must not make root overwrite (or hand to the user) the file it points to.
//! So the directory is opened once, and every file is written under a fresh name created
//! with `O_EXCL|O_NOFOLLOW` relative to that descriptor, handed to the sudo user through
//! its own descriptor, synced, and only then renamed over the final name: whatever was
//! planted there is replaced, never followed.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;

/// Distinguishes the temporary names of one process's files.
static NEXT_TEMP: AtomicU32 = AtomicU32::new(0);

/// An output directory, held open so that every file lands in the same directory even if
/// its path is changed meanwhile.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutputDir {
    /// Opens `path`, creating it (and its parents) if missing; a directory created here is
    /// handed to the sudo user, one that existed keeps its owner.
    ///
    /// # Errors
    /// When the directory cannot be created or opened, or its last component is a
    /// symbolic link.
    pub fn create(path: &Path) -> io::Result<Self> {
        let c_path = c_string(path.as_os_str())?;
        let mut created = false;
        if !path.is_dir() {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            // SAFETY: c_path is a valid NUL-terminated string.
            if unsafe { libc::mkdir(c_path.as_ptr(), 0o755) } == 0 {
                created = true;
            } else {
                let err = io::Error::last_os_error();
                // Someone else made it in between: it is theirs, so it is not handed over.
                if err.raw_os_error() != Some(libc::EEXIST) {
                    return Err(err);
                }
            }
        }
        let dir = Self::open(path)?;
        if created {
            // Only a directory this process owns can be the one it just made; anything
            // else swapped in meanwhile is left alone.
            let owner = dir.owner()?;
            // SAFETY: geteuid has no preconditions and cannot fail.
            if owner == unsafe { libc::geteuid() } {
                give_fd(&dir.fd)?;
            }
        }
        Ok(dir)
    }

    /// Opens the existing directory `path`, not following a symbolic link at its last
    /// component.
    ///
    /// # Errors
    /// When `path` is not a directory, cannot be opened, or is a symbolic link.
    pub fn open(path: &Path) -> io::Result<Self> {
        let c_path = c_string(path.as_os_str())?;
        // SAFETY: c_path is a valid NUL-terminated string; the flags are plain constants.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // O_NOFOLLOW with O_DIRECTORY fails on a link with ENOTDIR, not ELOOP.
            let is_link = path
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink());
            if is_link {
                return Err(io::Error::other(
                    "it is a symbolic link: give the directory it points to",
                ));
            }
            return Err(err);
        }
        // SAFETY: open returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// Writes the file `name` in this directory with what `fill` writes, replacing any
    /// file or link at that name only once the whole file is written; returns its path.
    ///
    /// # Errors
    /// `cannot write DIR/NAME: reason`; nothing is left at the temporary name, and what
    /// was at `name` is unchanged.
    pub fn write<F>(&self, name: &str, fill: F) -> anyhow::Result<PathBuf>
    where
        F: FnOnce(&mut dyn Write) -> anyhow::Result<()>,
    {
        let path = self.path.join(name);
        self.write_inner(name, fill)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Removes the file `name` from this directory (not what a link there points to).
    ///
    /// # Errors
    /// When there is no such file or it cannot be removed.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let c_name = c_string(OsStr::new(name))?;
        // SAFETY: c_name is a valid NUL-terminated string relative to our descriptor.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_name.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn write_inner<F>(&self, name: &str, fill: F) -> anyhow::Result<()>
    where
        F: FnOnce(&mut dyn Write) -> anyhow::Result<()>,
    {
        let temp = format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        );
        let c_temp = c_string(OsStr::new(&temp))?;
        let c_name = c_string(OsStr::new(name))?;
        let file = self.create_temp(&c_temp)?;
        let result = finish(file, fill).and_then(|()| {
            // SAFETY: both names are valid NUL-terminated strings relative to our open
            // directory descriptor.
            let renamed = unsafe {
                libc::renameat(
                    self.fd.as_raw_fd(),
                    c_temp.as_ptr(),
                    self.fd.as_raw_fd(),
                    c_name.as_ptr(),
                )
            };
            if renamed != 0 {
                return Err(io::Error::last_os_error().into());
            }
            Ok(())
        });
        if result.is_err() {
            // SAFETY: as above; failing to unlink leaves nothing worse than the error.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_temp.as_ptr(), 0) };
        }
        result
    }

    fn create_temp(&self, name: &CString) -> io::Result<File> {
        let flags =
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC;
        // SAFETY: name is a valid NUL-terminated string relative to our descriptor.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), flags, 0o644) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn owner(&self) -> io::Result<u32> {
        use std::os::unix::fs::MetadataExt;
        File::from(self.fd.try_clone()?).metadata().map(|m| m.uid())
    }
}

/// Fills the temporary file, hands it to the sudo user and syncs it, all through its
/// descriptor.
fn finish<F>(file: File, fill: F) -> anyhow::Result<()>
where
    F: FnOnce(&mut dyn Write) -> anyhow::Result<()>,
{
    let mut out = BufWriter::new(file);
    fill(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    give_fd(&file)?;
    file.sync_all()?;
    Ok(())
}

/// Under sudo as root, gives the open file or directory to the user who ran sudo.
fn give_fd(fd: &impl AsRawFd) -> io::Result<()> {
    let Some((uid, gid)) = crate::sys::sudo::invoking_user() else {
        return Ok(());
    };
    // SAFETY: fchown on a descriptor we hold has no memory-safety preconditions.
    if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the name contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_a_planted_symlink_and_hardlink() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let out = tmp.path().join("out");
        let dir = OutputDir::create(&out).unwrap();
        std::os::unix::fs::symlink(&target, out.join("a.svg")).unwrap();
        std::fs::hard_link(&target, out.join("b.svg")).unwrap();
        for name in ["a.svg", "b.svg"] {
            dir.write(name, |w| Ok(w.write_all(b"new")?)).unwrap();
            assert_eq!(std::fs::read(out.join(name)).unwrap(), b"new");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(std::fs::metadata(&target).unwrap().nlink(), 1);
        assert_eq!(names(&out), ["a.svg", "b.svg"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::create(tmp.path()).unwrap();
        let err = dir
            .write("cpu.svg", |w| {
                w.write_all(b"half")?;
                anyhow::bail!("drawing failed")
            })
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("cpu.svg: drawing failed"),
            "{err:#}"
        );
        // A directory at the final name cannot be replaced by a file.
        std::fs::create_dir(tmp.path().join("cpu.folded")).unwrap();
        let err = dir
            .write("cpu.folded", |w| Ok(w.write_all(b"x")?))
            .unwrap_err();
        assert!(format!("{err:#}").contains("cannot write"), "{err:#}");
        assert_eq!(names(tmp.path()), ["cpu.folded"]);
    }

    #[test]
    fn refuses_a_symlinked_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let err = OutputDir::create(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
