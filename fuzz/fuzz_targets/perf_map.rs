//! Feeds arbitrary text, as a JIT perf map (`/tmp/perf-PID.map`, written by the profiled
//! process), to the parser, and looks up addresses in the result.
//!
//! Any panic, stack overflow or memory beyond a small multiple of the input is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::process::perfmap::PerfMap;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let map = PerfMap::parse(&text);
    for addr in data
        .chunks_exact(8)
        .take(32)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
    {
        let _ = map.lookup(addr);
    }
});
