//! Unit tests of the symbolizer (`mod.rs`), kept apart to keep the module under the line budget.

use super::*;
use crate::process::files::ObjectFile;
use crate::process::procmaps::{FileKey, ProcessTable};
use std::sync::Arc;

#[inline(never)]
fn a_function_to_find() -> u64 {
    std::hint::black_box(42)
}

#[test]
fn symbolizes_an_address_of_this_process() {
    let mut table = ProcessTable::default();
    assert!(table.snapshot(std::process::id()));
    let mut symbolizer = Symbolizer::new();
    let addr = a_function_to_find as fn() -> _ as usize as u64;
    let frame = symbolizer.user(
        table.get(std::process::id()),
        None,
        FrameAddress::InstructionPointer(addr),
    );
    assert!(
        frame
            .mapping
            .as_ref()
            .is_some_and(|m| m.path.starts_with('/'))
    );
    assert!(
        frame
            .frame
            .lines
            .iter()
            .any(|l| l.function.contains("a_function_to_find")),
        "{:?}",
        frame.frame.lines
    );
}

#[inline(never)]
fn another_function_to_find() -> u64 {
    std::hint::black_box(a_function_to_find() + 1)
}

#[test]
fn batches_give_the_frames_of_single_lookups() {
    let mut table = ProcessTable::default();
    assert!(table.snapshot(std::process::id()));
    let me = table.get(std::process::id());
    let addrs = [
        FrameAddress::InstructionPointer(a_function_to_find as fn() -> _ as usize as u64),
        FrameAddress::ReturnAddress(another_function_to_find as fn() -> _ as usize as u64 + 8),
        FrameAddress::InstructionPointer(
            libc::getppid as unsafe extern "C" fn() -> _ as usize as u64,
        ),
        FrameAddress::ReturnAddress(0x10),
    ];
    let mut batched = Symbolizer::new();
    for &frame in &addrs {
        batched.request_user(me, frame);
    }
    // This test's binary and libc; the unmapped address needs no file.
    assert_eq!(batched.file_requests.len(), 2);
    batched.resolve_requests();
    assert!(batched.file_requests.is_empty());
    for &frame in &addrs {
        let batch = batched.user(me, None, frame);
        let single = Symbolizer::new().user(me, None, frame);
        assert_eq!(batch.frame, single.frame);
        assert_eq!(batch.mapping, single.mapping);
    }
    let frame = batched.user(me, None, addrs[1]);
    assert!(
        frame
            .frame
            .lines
            .iter()
            .any(|l| l.function.contains("another_function_to_find")),
        "{:?}",
        frame.frame.lines
    );
}

#[test]
fn a_file_that_cannot_be_read_gives_module_offsets() {
    let garbage = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut &garbage, b"not an ELF file").unwrap();
    let held = Arc::new(ObjectFile {
        path: "/container/lib/libjunk.so".to_owned(),
        file: garbage,
        build_id: None,
    });
    let entry = |path: &str, start, file: Option<Arc<ObjectFile>>| MapEntry {
        start,
        end: start + 0x1000,
        offset: 0x3000,
        path: path.to_owned(),
        key: FileKey::default(),
        file,
    };
    let process = ProcessInfo {
        maps: vec![
            entry("/nonexistent/libgone.so", 0x1000, None),
            entry("/container/lib/libjunk.so", 0x5000, Some(held)),
        ],
        ..ProcessInfo::default()
    };
    let mut symbolizer = Symbolizer::new();
    symbolizer.request_user(Some(&process), FrameAddress::InstructionPointer(0x1010));
    symbolizer.request_user(Some(&process), FrameAddress::InstructionPointer(0x5010));
    // Only the held file is symbolized: a mapping whose file was never opened has
    // nothing to read.
    assert_eq!(symbolizer.file_requests.len(), 1);
    symbolizer.resolve_requests();
    let gone = symbolizer.user(
        Some(&process),
        None,
        FrameAddress::InstructionPointer(0x1010),
    );
    assert_eq!(gone.frame.lines[0].function, "libgone.so+0x3010");
    assert_eq!(gone.frame.kind, FrameKind::Unnamed(Unnamed::FileNotHeld));
    assert_eq!(gone.mapping.map(|m| m.build_id), Some(None));
    let junk = symbolizer.user(
        Some(&process),
        None,
        FrameAddress::InstructionPointer(0x5010),
    );
    assert_eq!(junk.frame.lines[0].function, "libjunk.so+0x3010");
    assert_eq!(junk.frame.kind, FrameKind::Unnamed(Unnamed::FileUnreadable));
    assert_eq!(
        junk.mapping.map(|m| m.path),
        Some("/container/lib/libjunk.so".to_owned())
    );
}

#[test]
fn a_file_over_its_time_budget_keeps_the_reason_and_is_named_in_the_summary() {
    let me = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let held = Arc::new(ObjectFile {
        path: "[test:hang]".to_owned(),
        file: me,
        build_id: None,
    });
    let process = ProcessInfo {
        maps: vec![MapEntry {
            start: 0x5000,
            end: 0x6000,
            offset: 0,
            // A worker of the unit tests hangs on a file of this name.
            path: "[test:hang]".to_owned(),
            key: FileKey::default(),
            file: Some(held),
        }],
        ..ProcessInfo::default()
    };
    let mut symbolizer = Symbolizer::new().with_budgets(Budgets {
        per_file: std::time::Duration::from_secs(1),
        ..Budgets::default()
    });
    symbolizer.request_user(Some(&process), FrameAddress::InstructionPointer(0x5010));
    let started = Instant::now();
    symbolizer.resolve_requests();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let frame = symbolizer.user(
        Some(&process),
        None,
        FrameAddress::InstructionPointer(0x5010),
    );
    assert_eq!(
        frame.frame.kind,
        FrameKind::Unnamed(Unnamed::OverTimeBudget)
    );
    assert_eq!(frame.frame.lines[0].function, "[test:hang]+0x10");
    assert_eq!(
        symbolizer.notes(),
        [
            "symbolization budgets: 1 file not fully named, [test:hang] (over its 1s time \
          budget)"
        ]
    );
}

#[test]
fn control_characters_of_file_names_are_escaped() {
    assert_eq!(
        escape_control("/tmp/\x1b[31mlib.so"),
        "/tmp/\\x1b[31mlib.so"
    );
    assert_eq!(escape_control("/tmp/é\u{85}"), "/tmp/é\\x85");
}

#[test]
fn kernel_batches_give_the_frames_of_single_lookups() {
    let mut batched = Symbolizer::new();
    let frames = [
        FrameAddress::ReturnAddress(0x11),
        FrameAddress::InstructionPointer(0x20),
    ];
    for frame in frames {
        batched.request_kernel(frame);
    }
    batched.resolve_requests();
    // A return address is looked up one byte before.
    assert!(batched.kernel_lines.contains_key(&0x10));
    assert!(batched.kernel_requests.is_empty());
    for frame in frames {
        let single = Symbolizer::new().kernel(frame);
        assert_eq!(batched.kernel(frame), single);
    }
}

#[test]
fn unknown_addresses_become_frames() {
    let mut symbolizer = Symbolizer::new();
    let frame = symbolizer.user(None, None, FrameAddress::ReturnAddress(0x1234));
    assert_eq!(frame.frame.lines[0].function, "[unknown]");
    assert_eq!(frame.frame.kind, FrameKind::Unnamed(Unnamed::NoMapping));
    // Below the kernel's text, kallsyms names nothing.
    assert_eq!(
        symbolizer
            .kernel(FrameAddress::InstructionPointer(0x10))
            .frame
            .kind,
        FrameKind::KernelUnnamed
    );
}

#[test]
fn anonymous_code_is_named_by_the_perf_map() {
    let process = ProcessInfo {
        maps: vec![MapEntry {
            start: 0x7000,
            end: 0x9000,
            offset: 0,
            path: String::new(),
            key: FileKey::default(),
            file: None,
        }],
        ..ProcessInfo::default()
    };
    let jit = PerfMap::parse("7100 100 LazyCompile:*spin loop.js:3\n");
    let mut symbolizer = Symbolizer::new();
    // A return address is looked up one byte before: the end of the function.
    let frame = symbolizer.user(
        Some(&process),
        Some(&jit),
        FrameAddress::ReturnAddress(0x7200),
    );
    assert_eq!(frame.frame.kind, FrameKind::Jit);
    assert_eq!(frame.frame.lines[0].function, "LazyCompile:*spin loop.js:3");
    assert!(frame.mapping.is_some());
    let outside = symbolizer.user(
        Some(&process),
        Some(&jit),
        FrameAddress::InstructionPointer(0x7200),
    );
    assert_eq!(outside.frame.kind, FrameKind::Unnamed(Unnamed::Anonymous));
    // Mapped after the last snapshot of the process's mappings.
    let late = symbolizer.user(None, Some(&jit), FrameAddress::InstructionPointer(0x7150));
    assert_eq!(late.frame.kind, FrameKind::Jit);
}
