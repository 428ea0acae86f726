//! Feeds arbitrary bytes to the decoder `profiler report` runs on each pprof file.
//!
//! Any panic, stack overflow, or allocation beyond libFuzzer's RSS limit is a bug: the
//! decoder must turn every input into a profile or an error within its documented limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler_model::ProfileKind as Kind;
use profiler_model::pprof_read::decode_bytes;

fuzz_target!(|data: &[u8]| {
    // Every kind: an input can only get past the sample-type check for the kind it is.
    for kind in Kind::ALL {
        let _ = decode_bytes(data, kind);
    }
});
