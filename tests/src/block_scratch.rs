//! A scratch directory on a block-backed filesystem, for fixtures that must wait for a
//! disk (fdatasync, major page faults): the temporary directory itself when it is on
//! one, else (tmpfs or a shared folder, as in the kernel-test guests) a 64 MiB ext4
//! image mounted through a loop device, taken apart again on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::temp_dir;

/// Size of the ext4 image made when the temporary directory is not block-backed.
const IMAGE_BYTES: u64 = 64 << 20;

/// `statfs` magic numbers of the disk filesystems whose files are written to a block
/// device (ext2/3/4, XFS, Btrfs, F2FS); anything else (tmpfs, 9p, virtiofs, overlayfs
/// on any of those) gets the loop device.
const BLOCK_BACKED: &[(i64, &str)] = &[
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0xF2F5_2010, "f2fs"),
];

/// A directory whose files live on a block device; see the module comment.
pub struct BlockScratch {
    dir: PathBuf,
    /// The loop device and its mount, when one had to be made.
    mounted: Option<LoopMount>,
    _tmp: tempfile::TempDir,
}

struct LoopMount {
    device: String,
    mount: PathBuf,
}

impl BlockScratch {
    /// Makes one, or says why it cannot (the caller skips its test with that line).
    pub fn new() -> Result<BlockScratch, String> {
        let tmp = temp_dir();
        if block_filesystem(tmp.path())?.is_some() {
            return Ok(BlockScratch {
                dir: tmp.path().to_path_buf(),
                mounted: None,
                _tmp: tmp,
            });
        }
        let image = tmp.path().join("scratch.ext4");
        let file = std::fs::File::create(&image)
            .map_err(|e| format!("cannot create {}: {e}", image.display()))?;
        file.set_len(IMAGE_BYTES)
            .map_err(|e| format!("cannot size {}: {e}", image.display()))?;
        drop(file);
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "nodiscard"])
            .arg(&image))?;
        // A guest without udev has no /dev/loop-control until the module is loaded (losetup
        // then fails with "cannot find an unused loop device"); where loop is built in or
        // already loaded, modprobe does nothing, and where it fails, losetup says why.
        let _ = Command::new("modprobe").arg("loop").output();
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image))?
        .trim()
        .to_owned();
        let mount = tmp.path().join("mnt");
        std::fs::create_dir(&mount)
            .map_err(|e| format!("cannot create {}: {e}", mount.display()))?;
        // From here on, drop undoes what was done.
        let mut scratch = BlockScratch {
            dir: mount.clone(),
            mounted: Some(LoopMount {
                device: device.clone(),
                mount: PathBuf::new(),
            }),
            _tmp: tmp,
        };
        run(Command::new("mount")
            .args(["-t", "ext4", &device])
            .arg(&mount))?;
        scratch.mounted = Some(LoopMount { device, mount });
        Ok(scratch)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where it is, for messages: the directory, or the image's loop device.
    pub fn describe(&self) -> String {
        match &self.mounted {
            None => format!(
                "{} ({})",
                self.dir.display(),
                block_filesystem(&self.dir).ok().flatten().unwrap_or("?")
            ),
            Some(m) => format!("{} (ext4 image on {})", self.dir.display(), m.device),
        }
    }
}

impl Drop for BlockScratch {
    fn drop(&mut self) {
        let Some(m) = self.mounted.take() else { return };
        if !m.mount.as_os_str().is_empty() {
            // A fixture still holding a file open would make a plain umount fail; the
            // lazy one detaches the mount anyway and frees it when the last file closes.
            if run(Command::new("umount").arg(&m.mount)).is_err() {
                let _ = run(Command::new("umount").arg("-l").arg(&m.mount));
            }
        }
        if let Err(e) = run(Command::new("losetup").args(["-d", &m.device])) {
            eprintln!("warning: the scratch loop device was not detached: {e}");
        }
    }
}

/// The name of `dir`'s filesystem if it is block-backed, `None` if it is not.
fn block_filesystem(dir: &Path) -> Result<Option<&'static str>, String> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} has a NUL byte", dir.display()))?;
    // SAFETY: statfs is plain old data, for which all zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes only the struct it is given; the path is NUL-terminated.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let magic = st.f_type as i64;
    Ok(BLOCK_BACKED
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name))
}

/// Runs `cmd`; its stdout, or a line saying what failed.
fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
