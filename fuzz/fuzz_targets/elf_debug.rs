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

use std::io::Write;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use profiler::symbolize::debuginfo::{ElfFacts, build_id_candidates, debuglink_candidates};
use profiler::symbolize::inflation;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = memfd() else { return };
    if file.write_all(data).is_err() {
        return;
    }
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

fn memfd() -> std::io::Result<std::fs::File> {
    // SAFETY: a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"fuzzed-elf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned by nothing else.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}
