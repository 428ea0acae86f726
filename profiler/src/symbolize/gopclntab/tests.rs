//! Unit tests of `gopclntab.rs`, kept apart to keep the module under the line budget.

use super::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[test]
fn varints_and_reads_are_bounds_checked() {
    assert_eq!(varint(&[0x96, 0x01, 7]), Some((150, &[7u8][..])));
    assert_eq!(varint(&[0x80]), None);
    assert_eq!(read_u32(&[1, 0, 0], 0), None);
    assert_eq!(read_uint(&[1; 8], usize::MAX - 2, 8), None);
}

fn open(path: &Path) -> BoundedFile {
    GoPclnTab::open(File::open(path).unwrap())
}

#[test]
fn a_file_without_a_go_table_is_not_one() {
    let me = open(&std::env::current_exe().unwrap());
    assert!(GoPclnTab::parse(&me).is_none());
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"\x7fELF junk").unwrap();
    assert!(GoPclnTab::parse(&open(&junk)).is_none());
}

/// A small Go program built with the first `go` found, without DWARF (as the table is
/// then what names it); `None` (and the test says it skips) without one.
fn go_program(dir: &Path) -> Option<PathBuf> {
    go_program_with(dir, "-w", "prog")
}

/// A small Go program built into `dir/out` with the first `go` found and linker flags
/// `ldflags`; `None` (and the test says it skips) without a `go`.
pub(crate) fn go_program_with(dir: &Path, ldflags: &str, out: &str) -> Option<PathBuf> {
    let go = ["/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let Some(go) = go else {
        eprintln!("skipping: no go toolchain");
        return None;
    };
    std::fs::write(
        dir.join("main.go"),
        "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hi\") }\n",
    )
    .unwrap();
    std::fs::write(dir.join("go.mod"), "module p\ngo 1.16\n").unwrap();
    let build = std::process::Command::new(go)
        .arg("build")
        .arg(format!("-ldflags={ldflags}"))
        .args(["-o", out, "."])
        .current_dir(dir)
        .env("GOCACHE", dir.join("cache"))
        .env("HOME", dir)
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    Some(dir.join(out))
}

/// The entry address of every function of the table's ELF file, from its symbols.
fn function_entries(path: &Path) -> Vec<(String, u64)> {
    use object::ObjectSymbol;
    let data = std::fs::read(path).unwrap();
    let elf = object::File::parse(&*data).unwrap();
    elf.symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
        .map(|s| (s.name().unwrap().to_owned(), s.address()))
        .collect()
}

#[test]
fn a_real_table_names_every_function_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prog) = go_program(dir.path()) else {
        return;
    };
    let file = open(&prog);
    let table = GoPclnTab::parse(&file).expect("a Go table");
    let entries = function_entries(&prog);
    assert!(entries.len() > 500, "{} functions", entries.len());
    let mut named = 0;
    for (name, entry) in &entries {
        // One instruction in: a call site's return address, as samples give them.
        let Some(lines) = table.frames(entry + 1) else {
            continue;
        };
        named += usize::from(lines.last().is_some_and(|l| &l.function == name));
    }
    assert!(!table.refused());
    assert!(
        named * 10 >= entries.len() * 9,
        "{named} of {}",
        entries.len()
    );
    assert!(!file.over_budget());
}

#[test]
fn the_top_frames_are_found_by_name_and_only_some_carry_go_s_flag() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prog) = go_program(dir.path()) else {
        return;
    };
    let file = open(&prog);
    let table = GoPclnTab::parse(&file).expect("a Go table");
    let symbols: HashMap<String, u64> = function_entries(&prog).into_iter().collect();
    for (name, top_frame_flag) in [
        ("runtime.goexit", true),
        ("runtime.mstart", true),
        ("runtime.rt0_go", true),
        ("runtime.mcall", false),
    ] {
        let ranges = table.functions_named(&[name]);
        assert_eq!(ranges.len(), 1, "{name}: {ranges:x?}");
        // The symbol table names the assembly functions with `.abi0` on some releases, the
        // table never.
        let entry = symbols
            .get(&format!("{name}.abi0"))
            .or_else(|| symbols.get(name))
            .copied()
            .unwrap_or_else(|| panic!("{name} in the symbol table"));
        assert_eq!(ranges[0].start, entry, "{name}");
        // Go's `funcFlag_TOPFRAME`, the byte after the function ID.
        let func = table.find_func(entry).unwrap();
        let flag = table.functab[table.pcdata_start(func) - 3];
        assert_eq!(flag & 1 != 0, top_frame_flag, "{name}: flag {flag:#x}");
    }
    assert!(
        table
            .functions_named(&["runtime.goexi", "untime.goexit"])
            .is_empty()
    );
}

#[test]
fn a_crafted_table_is_refused_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prog) = go_program(dir.path()) else {
        return;
    };
    // Every pc-value table made one endless run of "value + 1, pc + 0": a naive walk
    // goes to the end of the tables for every lookup.
    let mut data = std::fs::read(&prog).unwrap();
    let (start, end) = {
        let elf = object::File::parse(&*data).unwrap();
        let section = elf.section_by_name(".gopclntab").unwrap();
        let (offset, _) = section.file_range().unwrap();
        let tab = section.data().unwrap();
        let word = |i: usize| u64::from_le_bytes(tab[8 + i * 8..16 + i * 8].try_into().unwrap());
        // Go 1.18+: pctab and the function table are the 7th and 8th words.
        (offset + word(6), offset + word(7))
    };
    for pair in data[start as usize..end as usize].chunks_mut(2) {
        pair[0] = 2;
        if pair.len() == 2 {
            pair[1] = 0;
        }
    }
    let crafted = dir.path().join("crafted");
    std::fs::write(&crafted, &data).unwrap();
    let file = open(&crafted);
    let table = GoPclnTab::parse(&file).expect("still a Go table");
    let started = Instant::now();
    for (_, entry) in function_entries(&crafted) {
        for pc in [entry + 1, entry + 17] {
            table.frames(pc);
        }
    }
    assert!(table.refused());
    assert!(table.frames(start).is_none());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_section_over_the_cap_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prog) = go_program(dir.path()) else {
        return;
    };
    // The section header made to claim 1 GiB at the end of a sparse 2 GiB file.
    let mut data = std::fs::read(&prog).unwrap();
    let header = {
        let elf = object::File::parse(&*data).unwrap();
        let index = elf.section_by_name(".gopclntab").unwrap().index().0;
        let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap());
        shoff as usize + index * 64
    };
    data[header + 0x18..header + 0x20].copy_from_slice(&(1u64 << 30).to_le_bytes());
    data[header + 0x20..header + 0x28].copy_from_slice(&(1u64 << 30).to_le_bytes());
    let crafted = dir.path().join("huge");
    std::fs::write(&crafted, &data).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&crafted)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let file = open(&crafted);
    assert!(GoPclnTab::parse(&file).is_none());
    assert!(file.over_budget(), "refused for its size, not read");
}
