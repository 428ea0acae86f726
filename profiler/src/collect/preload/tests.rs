//! Unit tests of `preload.rs`, kept apart to keep the module under the line budget.

use super::*;

/// Writes a site record into slot `slot` as a command could.
fn forge(preload: &Preload, slot: usize, pid: u32, allocs: u64, frees: u64) {
    let at = HEADER_BYTES + slot * SITE_BYTES;
    // SAFETY: within the mapping, aligned; the test is the only writer.
    unsafe {
        let put = |offset: usize, value: u64| {
            (*preload.base.add(at + offset).cast::<AtomicU64>()).store(value, Ordering::Release);
        };
        put(8, 0x1000 + slot as u64);
        put(16, allocs);
        put(24, allocs * 16);
        put(32, frees);
        put(40, frees * 16);
        (*preload.base.add(at + 4).cast::<AtomicU32>()).store(pid, Ordering::Release);
        (*preload.base.add(at).cast::<AtomicU32>()).store(SITE_READY, Ordering::Release);
    }
}

#[test]
fn only_the_command_s_possible_records_are_believed() {
    let preload = Preload::create().unwrap();
    let command = 4_000_000;
    preload.note_pids([command, std::process::id()]);
    forge(&preload, 0, command, 10, 4);
    forge(&preload, 1, 1, 10, 4);
    forge(&preload, 2, std::process::id(), 10, 4);
    forge(&preload, 3, command, u64::MAX, 4);
    forge(&preload, 4, command, 10, 1 << 40);
    let sites = preload.sites();
    assert_eq!(sites.len(), 1);
    assert_eq!((sites[0].0.pid, sites[0].1.allocs), (command, 10));
    let refused = preload.refused();
    assert_eq!((refused.foreign_pids, refused.impossible), (2, 2));
    // A forged total is shown as nothing, and counted.
    // SAFETY: within the mapping, aligned.
    unsafe {
        (*preload.base.add(at::LOST_SITES).cast::<AtomicU64>()).store(u64::MAX, Ordering::Release)
    };
    assert_eq!(preload.counts().lost_sites, 0);
    assert_eq!(preload.refused().header, 1);
}

#[test]
fn a_killed_run_s_directory_is_swept_and_nothing_else() {
    let parent = tempfile::tempdir().unwrap();
    let dead = 4_194_000
        + (0..1000)
            .find(|i| !Path::new(&format!("/proc/{}", 4_194_000 + i)).exists())
            .unwrap();
    let stale = parent.path().join(format!("{TEMP_PREFIX}{dead}-abcdef"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join(LIBRARY_NAME), b"library").unwrap();
    let live = parent
        .path()
        .join(format!("{TEMP_PREFIX}{}-abcdef", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let other = parent.path().join(format!("{TEMP_PREFIX}{dead}-link"));
    std::os::unix::fs::symlink(&live, &other).unwrap();
    sweep_stale(parent.path());
    assert!(!stale.exists());
    assert!(live.exists() && other.symlink_metadata().is_ok());
}
