//! Feeds arbitrary bytes, as an ELF file a profiled process maps, to what the symbolizer
//! reads of it before naming anything: its facts (build ID, `.gnu_debuglink`, which debug
//! sections it has, its segments, read within the header budget), the check of what its
//! compressed sections and MiniDebugInfo (`.gnu_debugdata`) would inflate to, and the
//! paths its debug link and build ID lead to.
//!
//! Any panic, stack overflow, endless loop or allocation beyond libFuzzer's RSS limit is a
//! bug: the budgets hold before anything is inflated (README, "Budgets against hostile
//! input").

#![no_main]

mod memfd;

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use profiler::parsers::{ElfFacts, build_id_candidates, debuglink_candidates, inflation};

fuzz_target!(|data: &[u8]| {
    let Some(file) = memfd::with(data) else {
        return;
    };
    let Some(facts) = ElfFacts::of_file(&file) else {
        return;
    };
    let path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ));
    let _ = inflation::check(&path);
    let roots = [PathBuf::from("/usr/lib/debug")];
    if let Some((name, _crc)) = &facts.debuglink {
        for candidate in debuglink_candidates(&roots, Path::new("/usr/bin/app"), name) {
            // A link is a file name: it never leads out of the places gdb looks.
            assert!(
                candidate.starts_with("/usr/bin") || candidate.starts_with("/usr/lib/debug"),
                "{name:?} led to {}",
                candidate.display()
            );
        }
    }
    if let Some(id) = &facts.build_id {
        let _ = build_id_candidates(&roots, id);
    }
    for offset in data
        .chunks_exact(8)
        .take(16)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
    {
        let _ = facts.vaddr(offset);
    }
});
