//! Feeds arbitrary bytes, as a JIT perf map (`/tmp/perf-PID.map`, written by the profiled
//! process), to the reader the profiler uses: a stream parsed up to a cap (here a point
//! inside the input, so the lines past it are counted as the cap makes them), then looks
//! up addresses in the result.
//!
//! Any panic, stack overflow or memory beyond a small multiple of the input is a bug.

#![no_main]

mod memfd;

use std::io::Seek;

use libfuzzer_sys::fuzz_target;
use profiler::parsers::read_capped;

fuzz_target!(|data: &[u8]| {
    let Some(mut file) = memfd::with(data) else {
        return;
    };
    if file.rewind().is_err() {
        return;
    }
    // The first byte places the cap: anywhere from nothing to past the end.
    let cap = data
        .first()
        .map_or(0, |&b| data.len() as u64 * u64::from(b) / 128);
    let Some(map) = read_capped(file, cap) else {
        return;
    };
    assert!(map.read_bytes() <= cap, "read past the cap");
    for addr in data
        .chunks_exact(8)
        .take(32)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
    {
        let _ = map.lookup(addr);
    }
});
