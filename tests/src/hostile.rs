//! What the hostile-input tests share: a directory an unprivileged user owns, programs run
//! as that user, and the bounds a root run must keep whatever that user does.

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{NOBODY, Run, set_mode, setpriv_nobody};

/// A fresh directory owned by user nobody, where the attacker builds and plants files;
/// its parent is the returned guard's root-owned temporary directory.
pub fn attacker_dir() -> (tempfile::TempDir, std::path::PathBuf) {
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
