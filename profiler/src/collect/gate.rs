//! Holds a launched command between fork and exec until the heap probes are attached to
//! it, so that its allocations are seen from its first instruction: the child sends its
//! pid through one pipe and waits for a byte on another.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use anyhow::{Context, Result, bail};

/// The two pipes between the profiler and the child it forks.
pub struct Gate {
    pid_read: File,
    pid_write: Option<OwnedFd>,
    go_read: OwnedFd,
    go_write: File,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, owned here from then on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Gate {
    /// Two fresh pipes (closed in the child when it executes).
    ///
    /// # Errors
    /// When no pipe can be created.
    pub fn new() -> Result<Self> {
        let (pid_read, pid_write) = pipe()?;
        let (go_read, go_write) = pipe()?;
        Ok(Self {
            pid_read: File::from(pid_read),
            pid_write: Some(pid_write),
            go_read,
            go_write: File::from(go_write),
        })
    }

    /// The descriptors the child's pre-exec hook uses: (write its pid, read the go-ahead).
    pub fn child_ends(&self) -> (RawFd, RawFd) {
        let pid_write = self.pid_write.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        (pid_write, self.go_read.as_raw_fd())
    }

    /// The parent's copy of the pid pipe's write end, for the thread that forks to drop
    /// when the fork is done (or failed): [`Self::wait_child`] then ends even when no child
    /// will ever write.
    pub fn take_parent_end(&mut self) -> Option<OwnedFd> {
        self.pid_write.take()
    }

    /// The pid of the child waiting at the gate, or `None` if it never got there.
    pub fn wait_child(&mut self) -> Option<u32> {
        let mut pid = [0u8; 4];
        self.pid_read.read_exact(&mut pid).ok()?;
        Some(u32::from_ne_bytes(pid))
    }

    /// Lets the child go on to execute.
    pub fn open(&mut self) {
        // A child that died meanwhile has nobody reading: nothing to do.
        let _ = self.go_write.write_all(&[1]);
    }
}

/// The pre-exec hook of a gated child: announce, then wait. Only async-signal-safe calls.
pub fn in_child(pid_write: RawFd, go_read: RawFd) -> std::io::Result<()> {
    // SAFETY: plain system calls on descriptors inherited from the parent.
    unsafe {
        let pid = (libc::getpid() as u32).to_ne_bytes();
        if libc::write(pid_write, pid.as_ptr().cast(), 4) != 4 {
            return Err(std::io::Error::last_os_error());
        }
        let mut byte = 0u8;
        loop {
            let got = libc::read(go_read, (&raw mut byte).cast(), 1);
            if got >= 0 || *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
    }
    Ok(())
}

/// The files a command will map when it starts, as far as they can be known before it
/// runs: its executable (or a script's interpreter) and the libraries the dynamic loader
/// lists for it (`ld.so --list`, which loads them without running the program).
pub fn command_files(program: &OsString) -> Vec<PathBuf> {
    let Some(exe) = executable(program) else {
        return Vec::new();
    };
    let mut files = vec![exe.clone()];
    if let Some(loader) = interpreter_of(&exe) {
        files.extend(loader_list(&loader, &exe).unwrap_or_default());
    }
    files.sort();
    files.dedup();
    files
}

/// Whether the dynamic loader will load an `LD_PRELOAD` library into the command without
/// harm: it is (or its script's interpreter is) dynamically linked, not set-user- or
/// set-group-ID (the loader ignores such paths then), and has no sanitizer runtime.
pub fn takes_preload(program: &OsString) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(exe) = executable(program) else {
        return false;
    };
    let setid = std::fs::metadata(&exe).map_or(true, |m| m.permissions().mode() & 0o6000 != 0);
    if setid || interpreter_of(&exe).is_none() {
        return false;
    }
    // A sanitizer's runtime must come first among the libraries, or the program aborts.
    let sanitized = command_files(program).iter().any(|f| {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        [
            "libasan",
            "libtsan",
            "libmsan",
            "liblsan",
            "libhwasan",
            "libubsan",
        ]
        .iter()
        .any(|runtime| name.starts_with(runtime))
    });
    !sanitized
}

/// The file the kernel will execute for `program`: found on PATH, and a script's
/// interpreter in place of the script.
pub fn executable(program: &OsString) -> Option<PathBuf> {
    let mut exe = resolve(Path::new(program))?;
    // A script runs its interpreter; only its first line is read.
    if let Some(head) = head_of(&exe)
        && let Some(line) = head.strip_prefix(b"#!")
    {
        let line = String::from_utf8_lossy(line);
        let interpreter = line
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().next())?;
        exe = resolve(Path::new(interpreter))?;
    }
    Some(exe)
}

/// The bytes a script's `#!` line may take (the kernel reads no more of it).
const HEAD_BYTES: u64 = 256;

/// Most of an executable read to find its `PT_INTERP`: its program headers and the
/// interpreter's path.
const PROGRAM_HEADER_BYTES: u64 = 64 << 10;

/// The first [`HEAD_BYTES`] of the regular file at `path` (already resolved: its links
/// followed, to a regular file only).
fn head_of(path: &Path) -> Option<Vec<u8>> {
    let file = crate::sys::safe_open::open_regular_following(path).ok()?;
    let mut head = Vec::new();
    file.take(HEAD_BYTES).read_to_end(&mut head).ok()?;
    Some(head)
}

fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return std::fs::canonicalize(program).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

/// The `PT_INTERP` of an ELF executable, from its file header and program headers alone
/// (at most [`PROGRAM_HEADER_BYTES`] read, never its symbols or the rest of the file).
fn interpreter_of(exe: &Path) -> Option<PathBuf> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let file = crate::sys::safe_open::open_regular_following(exe).ok()?;
    let bounded = crate::process::elf_data::BoundedFile::new(
        file,
        PROGRAM_HEADER_BYTES,
        PROGRAM_HEADER_BYTES,
    );
    let data = &bounded;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    header
        .program_headers(endian, data)
        .ok()?
        .iter()
        .find_map(|header| {
            if header.p_type(endian) != object::elf::PT_INTERP {
                return None;
            }
            let bytes = header.data(endian, data).ok()?;
            let text = std::str::from_utf8(bytes).ok()?.trim_end_matches('\0');
            Some(PathBuf::from(text))
        })
}

fn loader_list(loader: &Path, exe: &Path) -> Result<Vec<PathBuf>> {
    let output = StdCommand::new(loader)
        .arg("--list")
        .arg(exe)
        .output()
        .with_context(|| format!("cannot run {}", loader.display()))?;
    if !output.status.success() {
        bail!("{} --list failed", loader.display());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_command_maps_its_c_library() {
        let files = command_files(&OsString::from("sleep"));
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains("libc.so")),
            "{files:?}"
        );
        assert!(command_files(&OsString::from("/no/such/program")).is_empty());
    }

    #[test]
    fn dynamic_programs_take_a_preload_and_set_id_ones_do_not() {
        assert!(takes_preload(&OsString::from("sleep")));
        assert!(!takes_preload(&OsString::from("/no/such/program")));
        use std::os::unix::fs::PermissionsExt;
        let setuid =
            std::fs::metadata("/usr/bin/su").is_ok_and(|m| m.permissions().mode() & 0o4000 != 0);
        if setuid {
            assert!(!takes_preload(&OsString::from("/usr/bin/su")));
        }
    }
}
