//! Feeds arbitrary bytes, as an ELF file a profiled process maps, to what the unwinder does
//! with it: its unwind sections read (`.eh_frame`, `.eh_frame_hdr`, `.debug_frame`,
//! compressed or not) and framehop walking a stack through the code they describe.
//!
//! Any panic, stack overflow, endless loop or allocation beyond libFuzzer's RSS limit is a
//! bug: the file is the profiled program's, not trusted.

#![no_main]

mod memfd;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{Module, Unwinder};
use libfuzzer_sys::fuzz_target;
use profiler::parsers::{MAX_SECTION_BYTES, UnwindSections};

/// Where the fuzzed module is loaded.
const BASE: u64 = 0x5555_0000_0000;

fuzz_target!(|data: &[u8]| {
    // The unwinder reads from a held file descriptor; a memory file is one.
    let Some(file) = memfd::with(data) else {
        return;
    };
    // One file's worth of the run's budget, as the unwinder gives the first file it reads.
    let Ok(sections) = UnwindSections::read(&file, 3 * MAX_SECTION_BYTES) else {
        return;
    };
    let Some(bias) = sections.bias(BASE, 0) else {
        return;
    };
    let mut unwinder = UnwinderX86_64::new();
    unwinder.add_module(Module::new(
        "fuzzed".to_owned(),
        BASE..BASE + (1 << 32),
        bias,
        sections.module_info(),
    ));
    let mut cache = CacheX86_64::new();
    // A stack of the input's own words, so return addresses and saved registers vary.
    let word = |addr: u64| -> Result<u64, ()> {
        let offset = addr.checked_sub(0x7ff0_0000).ok_or(())?;
        let at = usize::try_from(offset % 4096).map_err(|_| ())?;
        let bytes = data.get(at..at + 8).ok_or(())?;
        Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
    };
    let pcs = data
        .chunks_exact(4)
        .take(16)
        .map(|c| BASE + u64::from(u32::from_le_bytes(c.try_into().unwrap()) & 0xf_ffff));
    for pc in pcs {
        let mut read = |addr| word(addr);
        let mut frames = unwinder.iter_frames(
            pc,
            UnwindRegsX86_64::new(pc, 0x7ff0_0100, 0x7ff0_0200),
            &mut cache,
            &mut read,
        );
        // As deep as the profiler goes.
        for _ in 0..512 {
            match frames.next() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
});
