//! Feeds arbitrary bytes, as a Go binary, to the `.gopclntab` reader that names frames of
//! Go programs built without symbols, finds the functions the unwinder ends Go's stacks at
//! by name, and looks up PCs across its code. The bytes are read as the profiler reads a
//! binary: from a file (here a memory file), within the reader's budget.
//!
//! Any panic, stack overflow, endless loop or allocation beyond libFuzzer's RSS limit is a
//! bug: the binary is the profiled program's, not trusted.

#![no_main]

mod memfd;

use libfuzzer_sys::fuzz_target;
use profiler::parsers::GoPclnTab;

fuzz_target!(|data: &[u8]| {
    let Some(file) = memfd::with(data) else {
        return;
    };
    let file = GoPclnTab::open(file);
    let Some(table) = GoPclnTab::parse(&file) else {
        return;
    };
    let _ = table.functions_named(&["runtime.goexit", "runtime.mcall"]);
    // PCs from the input's own bytes, and a sweep across the usual text addresses.
    let from_input = data
        .chunks_exact(8)
        .take(32)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()));
    let sweep = (0..64u64).map(|i| 0x40_1000 + i * 0x1_0000);
    for pc in from_input.chain(sweep) {
        let _ = table.frames(pc);
    }
});
