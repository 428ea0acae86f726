//! Unit tests of `procmaps.rs`, kept apart to keep the module under the line budget.

use super::*;

const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 123 /usr/bin/my prog
55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 123 /usr/bin/my prog
7f0000000000-7f0000100000 r-xp 00028000 fe:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd1000000-7ffd1002000 r-xp 00000000 00:00 0                          [vdso]
7f1000000000-7f1000001000 rwxp 00000000 00:00 0 
";

#[test]
fn keeps_executable_mappings_with_paths() {
    let maps = parse_maps(MAPS);
    assert_eq!(maps.len(), 4);
    assert_eq!(maps[0].path, "[vdso]");
    assert_eq!(maps[1].path, "/usr/bin/my prog");
    assert_eq!(maps[1].offset, 0x1000);
    assert_eq!(
        maps[1].key,
        FileKey {
            major: 0xfe,
            minor: 1,
            inode: 123
        }
    );
    assert_eq!(maps[3].path, "");
    // Files are opened by the process table, not by parsing.
    assert!(maps[1].file.is_none());
}

#[test]
fn finds_the_mapping_of_an_address() {
    let info = ProcessInfo {
        maps: parse_maps(MAPS),
        ..ProcessInfo::default()
    };
    assert_eq!(info.find(0x55d0c0a01010).unwrap().path, "/usr/bin/my prog");
    assert_eq!(info.find(0x7f0000000000).unwrap().offset, 0x28000);
    assert!(info.find(0x55d0c0a00010).is_none());
    assert!(info.find(0x7f0000100000).is_none());
}

#[test]
fn merging_keeps_old_mappings_nothing_replaced() {
    let entry = |start, end, path: &str| MapEntry {
        start,
        end,
        offset: 0,
        path: path.into(),
        key: FileKey::default(),
        file: None,
    };
    let old = vec![
        entry(0x1000, 0x2000, "/bin/a"),
        entry(0x5000, 0x6000, "/lib/libc.so.6"),
    ];
    // A cut-short read: only the binary, and a new mapping over part of the old library.
    let new = vec![
        entry(0x1000, 0x2000, "/bin/a"),
        entry(0x5800, 0x7000, "/lib/new.so"),
    ];
    let (merged, changed) = merge_maps(new, old);
    assert!(changed);
    let paths: Vec<&str> = merged.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, vec!["/bin/a", "/lib/new.so"]);
    let (cut_short, changed) = merge_maps(vec![entry(0x1000, 0x2000, "/bin/a")], merged);
    assert!(!changed);
    assert_eq!(cut_short.len(), 2);
    assert_eq!(cut_short[1].path, "/lib/new.so");
    // After an exec nothing is shared: the old program's mappings go.
    let (execd, changed) = merge_maps(vec![entry(0x9000, 0xa000, "/bin/b")], cut_short);
    assert!(changed);
    assert_eq!(execd.len(), 1);
    // `[vsyscall]` is where it was in every program: it does not make an exec a merge.
    let vsyscall = || entry(0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000, "[vsyscall]");
    let (again, _) = merge_maps(
        vec![entry(0xb000, 0xc000, "/bin/b"), vsyscall()],
        vec![entry(0x9000, 0xa000, "/bin/b"), vsyscall()],
    );
    assert_eq!(again.len(), 2);
}

#[test]
fn a_space_is_frozen_at_its_generation() {
    let mut table = ProcessTable::default();
    let pid = std::process::id();
    assert!(table.snapshot(pid));
    let first = table.space(pid).unwrap();
    assert_eq!(table.space(pid), Some(first));
    // New mappings make a new space; the old one keeps what it had.
    let before = table.space_info(first).unwrap().maps.len();
    let info = table.processes.get_mut(&pid).unwrap();
    info.maps.clear();
    info.generation += 1;
    let second = table.space(pid).unwrap();
    assert_ne!(first, second);
    assert_eq!(table.space_info(first).unwrap().maps.len(), before);
    assert!(table.space_info(second).unwrap().maps.is_empty());
    assert_eq!(table.space(u32::MAX), None);
}

#[test]
fn a_process_s_frozen_spaces_are_bounded() {
    let mut table = ProcessTable::default();
    let pid = std::process::id();
    assert!(table.snapshot(pid));
    let first = table.space(pid).unwrap();
    let mut last = first;
    // A process that executes itself again and again: a new generation each time.
    for _ in 0..MAX_SPACES_PER_PROCESS + 10 {
        table.processes.get_mut(&pid).unwrap().generation += 1;
        last = table.space(pid).unwrap();
    }
    assert_eq!(table.spaces_dropped(), 11);
    assert!(table.space_info(first).unwrap().maps.is_empty());
    assert!(!table.space_info(last).unwrap().maps.is_empty());
    let (kept, mappings) = &table.kept_spaces[&pid];
    assert_eq!(kept.len(), MAX_SPACES_PER_PROCESS);
    assert!(*mappings <= MAX_SPACE_MAPPINGS_PER_PROCESS);
}

#[test]
fn a_site_keeps_the_kind_its_descriptor_had_when_it_was_new() {
    let me = std::process::id();
    let mut table = ProcessTable::default();
    table.snapshot_maps(me);
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
    table.note_new_key(me, 0x1000, fd.into());
    // The number reused by a file, seen by a later site (dup2 puts the file on it at
    // once, whatever other tests open meanwhile).
    let file = std::fs::File::open("/proc/self/status").unwrap();
    // SAFETY: dup2 onto a descriptor this test owns (`a`'s, closed when `a` drops).
    let moved = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), fd) };
    assert_eq!(moved, fd);
    let fd = i64::from(fd);
    table.note_new_key(me, 0x2000, fd);
    let info = &table.processes[&me];
    assert_eq!(info.descriptor(0x1000, fd), Some("socket"));
    assert_eq!(info.descriptor(0x2000, fd), Some("file"));
    assert_eq!(info.descriptor(0x3000, fd), Some("file"));
}

#[test]
fn snapshots_this_process() {
    let mut table = ProcessTable::default();
    assert!(table.snapshot(std::process::id()));
    let me = table.get(std::process::id()).unwrap();
    assert_eq!(
        me.fds.contains_key(&0),
        std::path::Path::new("/proc/self/fd/0").exists()
    );
    let here = snapshots_this_process as fn() -> _ as usize as u64;
    assert!(me.find(here).is_some_and(|m| m.file.is_some()));
    assert!(!table.snapshot(u32::MAX));
}
