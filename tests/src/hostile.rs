//! What the hostile-input tests share: a directory an unprivileged user owns, programs run
//! as that user, and the bounds a root run must keep whatever that user does.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{NOBODY, Run, set_mode, setpriv_nobody};

/// A fresh directory owned by user nobody, where the attacker builds and plants files;
/// its parent is the returned guard's root-owned temporary directory.
pub fn attacker_dir() -> (tempfile::TempDir, PathBuf) {
    let root = crate::temp_dir();
    set_mode(root.path(), 0o755);
    let dir = root.path().join("attacker");
    std::fs::create_dir(&dir).expect("create attacker dir");
    let uid: u32 = NOBODY.parse().unwrap();
    chown(&dir, Some(uid), Some(uid)).expect("chown attacker dir");
    (root, dir)
}

/// `program args...` run as user nobody with no groups.
pub fn as_nobody(program: &Path, args: &[&str]) -> Command {
    let mut cmd = setpriv_nobody();
    cmd.arg(program).args(args);
    cmd
}

/// Asserts the run ended within `bound` of its `window` and peaked under `rss_mib`.
pub fn assert_bounded(run: &Run, window: Duration, bound: Duration, rss_mib: i64) {
    assert!(
        run.elapsed <= window + bound,
        "the run took {:.1?} for a {window:?} window (bound: {bound:?} after it)\n{}",
        run.elapsed,
        run.transcript()
    );
    assert!(
        run.peak_rss_kib > 0 && run.peak_rss_kib <= rss_mib * 1024,
        "peak RSS {} KiB, over the {rss_mib} MiB budget\n{}",
        run.peak_rss_kib,
        run.transcript()
    );
}

/// Runs `program args...` as user nobody in `dir` (with `HOME` there too), failing the test
/// if it fails: how the attacker builds and plants its files.
pub fn nobody(dir: &Path, program: &str, args: &[&str]) {
    let mut cmd = as_nobody(Path::new(program), args);
    cmd.current_dir(dir).env("HOME", dir);
    let run = crate::run_command(cmd);
    assert!(
        run.status.success(),
        "{program} {args:?} failed\n{}",
        run.transcript()
    );
}

/// Compiles `dir/SOURCE` as user nobody into `dir/NAME`, with `flags` before the source and
/// `libs` after it; the program's path.
pub fn cc_as_nobody(
    dir: &Path,
    source: &str,
    name: &str,
    flags: &[&str],
    libs: &[&str],
) -> PathBuf {
    let mut args: Vec<&str> = flags.to_vec();
    args.extend([source, "-o", name]);
    args.extend(libs);
    nobody(dir, "cc", &args);
    dir.join(name)
}

/// What [`snapshot`] saw of each path: owner, mode (with the kind), size, modification
/// time, and the contents of a regular file under 16 MiB or the target of a link.
pub type Snapshot = BTreeMap<PathBuf, (u32, u32, u64, i64, i64, Option<Vec<u8>>)>;

/// Every file, directory and link under `dir` (links not followed), to show after a root
/// run that nothing an attacker planted there was written through.
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut seen = Snapshot::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path.clone());
            }
            let contents = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                Some(target.into_os_string().into_encoded_bytes())
            } else {
                (meta.is_file() && meta.len() < (16 << 20)).then(|| std::fs::read(&path).unwrap())
            };
            let key = (
                meta.uid(),
                meta.mode(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                contents,
            );
            seen.insert(path, key);
        }
    }
    seen
}

/// A program the attacker runs as user nobody while root profiles it; killed when dropped,
/// and the perf map it may have written removed.
pub struct Attacker(Child);

impl Attacker {
    /// Starts `program args...` as nobody in `dir`, its output discarded, and waits 500 ms:
    /// past setpriv's exec and the dynamic loader, to its steady state (its perf map
    /// written).
    pub fn start(dir: &Path, program: &Path, args: &[&str]) -> Attacker {
        let mut cmd = as_nobody(program, args);
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} as nobody: {e}", program.display()));
        std::thread::sleep(Duration::from_millis(500));
        Attacker(child)
    }

    /// Its process id (setpriv executes the program in place).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(format!("/tmp/perf-{}.map", self.0.id()));
    }
}
