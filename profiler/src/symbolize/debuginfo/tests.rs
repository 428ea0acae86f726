//! Unit tests of `debuginfo.rs`, kept apart to keep the module under the line budget.

use super::*;

fn crc32_of(path: &Path) -> Option<u32> {
    crc32_of_file(&open_regular(path).ok()?)
}

#[test]
fn build_id_paths_split_the_first_byte() {
    let roots = [PathBuf::from("/mine"), PathBuf::from(SYSTEM_DEBUG_ROOT)];
    let paths = build_id_candidates(&roots, &[0xab, 0xcd, 0xef, 0x01]);
    assert_eq!(
        paths,
        [
            PathBuf::from("/mine/.build-id/ab/cdef01.debug"),
            PathBuf::from("/usr/lib/debug/.build-id/ab/cdef01.debug"),
        ]
    );
    assert!(build_id_candidates(&roots, &[1, 2]).is_empty());
}

#[test]
fn debuglink_paths_follow_gdb() {
    let roots = [PathBuf::from("/mine"), PathBuf::from(SYSTEM_DEBUG_ROOT)];
    let paths = debuglink_candidates(&roots, Path::new("/usr/bin/app"), "app.debug");
    assert_eq!(
        paths,
        [
            PathBuf::from("/usr/bin/app.debug"),
            PathBuf::from("/usr/bin/.debug/app.debug"),
            PathBuf::from("/mine/usr/bin/app.debug"),
            PathBuf::from("/usr/lib/debug/usr/bin/app.debug"),
        ]
    );
    assert!(debuglink_candidates(&roots, Path::new("/usr/bin/app"), "../x").is_empty());
}

#[test]
fn the_crc_of_a_file_is_the_debuglink_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"123456789").unwrap();
    // The CRC-32 check value of "123456789".
    assert_eq!(crc32_of(&path), Some(0xcbf4_3926));
    assert_eq!(crc32_of(dir.path()), None);
    assert_eq!(crc32_of(&dir.path().join("missing")), None);
}

#[test]
fn facts_of_this_test_binary() {
    let me = std::env::current_exe().unwrap();
    let facts = ElfFacts::read(&me).unwrap();
    assert!(facts.has_symtab);
    assert!(!facts.has_gopclntab);
    // The address of a function maps back to the file offset it is loaded from.
    let load = facts.loads.iter().find(|l| l.2 > 0).unwrap();
    assert_eq!(facts.vaddr(load.0), Some(load.1));
    assert_eq!(facts.vaddr(u64::MAX), None);
    assert!(ElfFacts::read(Path::new("/proc/self/status")).is_none());
}

#[test]
fn a_debug_file_is_found_by_build_id_only_when_its_id_matches() {
    let me = std::env::current_exe().unwrap();
    let facts = ElfFacts::read(&me).unwrap();
    let Some(id) = facts.build_id.clone() else {
        eprintln!("skipping: this test binary has no build ID");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let finder = DebugInfoFinder::new(&[root.path().to_path_buf()], None);
    let candidate = &build_id_candidates(&[root.path().to_path_buf()], &id)[0];
    std::fs::create_dir_all(candidate.parent().unwrap()).unwrap();
    // Another file at the right path is not taken for the debug file.
    std::fs::write(candidate, b"not the debug file").unwrap();
    assert_eq!(finder.find("/nowhere/app", &facts), None);
    std::fs::copy(&me, candidate).unwrap();
    let found = finder.find("/nowhere/app", &facts).unwrap();
    assert_eq!(
        (&found.path, found.origin),
        (candidate, DebugOrigin::BuildIdDir)
    );
    // What is read is the file that was checked, whatever is at the path now.
    std::fs::remove_file(candidate).unwrap();
    let held = ElfFacts::read(&found.open_path()).unwrap();
    assert_eq!(held.build_id.as_deref(), Some(&id[..]));
}

#[test]
fn a_build_id_entry_may_link_to_its_debug_file_but_not_to_a_fifo() {
    let me = std::env::current_exe().unwrap();
    let facts = ElfFacts::read(&me).unwrap();
    let Some(id) = facts.build_id.clone() else {
        eprintln!("skipping: this test binary has no build ID");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let finder = DebugInfoFinder::new(&[root.path().to_path_buf()], None);
    let candidate = &build_id_candidates(&[root.path().to_path_buf()], &id)[0];
    std::fs::create_dir_all(candidate.parent().unwrap()).unwrap();
    let fifo = root.path().join("fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(&fifo, candidate).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(finder.find("/nowhere/app", &facts), None);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // As Fedora lays them out: the entry links to the debug file.
    std::fs::remove_file(candidate).unwrap();
    std::os::unix::fs::symlink(&me, candidate).unwrap();
    let found = finder.find("/nowhere/app", &facts).unwrap();
    assert_eq!(found.origin, DebugOrigin::BuildIdDir);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn a_debuglink_to_a_fifo_a_device_or_a_huge_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("app");
    let fifo = dir.path().join("fifo.debug");
    mkfifo(&fifo);
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.debug")).unwrap();
    let sparse = dir.path().join("sparse.debug");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
    let finder = DebugInfoFinder::new(&[], None);
    for name in ["fifo.debug", "zero.debug", "sparse.debug"] {
        let facts = ElfFacts {
            debuglink: Some((name.to_owned(), 0)),
            ..ElfFacts::default()
        };
        let started = std::time::Instant::now();
        assert_eq!(finder.find(binary.to_str().unwrap(), &facts), None);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{name}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(crc32_of(&fifo), None);
    assert_eq!(crc32_of(&sparse), None);
    // Each refusal is counted for the summary.
    let refused = finder.refusals();
    assert_eq!((refused.not_regular, refused.too_big), (2, 1));
    assert!(
        refused
            .summary()
            .unwrap()
            .contains("2 debug-file candidates")
    );
    assert_eq!(Refusals::default().summary(), None);
    let mut total = Refusals::default();
    total += &refused;
    total += &refused;
    assert_eq!(total.too_big, 2);
    // Nothing is looked for in /proc.
    assert!(debuglink_candidates(&[], Path::new("/proc/self/fd/3"), "4").is_empty());
}

#[test]
fn a_debuglink_is_followed_only_when_the_crc_matches() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("app");
    let debug = dir.path().join(".debug").join("app.debug");
    std::fs::create_dir_all(debug.parent().unwrap()).unwrap();
    std::fs::write(&debug, b"debug contents").unwrap();
    let crc = crc32_of(&debug).unwrap();
    let facts = |crc| ElfFacts {
        debuglink: Some(("app.debug".to_owned(), crc)),
        ..ElfFacts::default()
    };
    let finder = DebugInfoFinder::new(&[], None);
    let binary = binary.to_str().unwrap();
    assert_eq!(
        finder.find(binary, &facts(crc)).map(|f| (f.path, f.origin)),
        Some((debug, DebugOrigin::DebugLink))
    );
    assert_eq!(finder.find(binary, &facts(crc ^ 1)), None);
}
