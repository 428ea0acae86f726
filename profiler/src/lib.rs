//! The part of the profiler that reads pprof files, as a library: the fuzz target in
//! `fuzz/` drives the very decoder `profiler report` uses through it.
//!
//! The binary declares these modules itself (`main.rs`), so this library only gathers the
//! files that reading a profile needs: the profile model, pprof's messages, the wire-format
//! pre-scan and the decoder, none of which depend on the rest of the profiler.

pub mod profile;

/// The pprof reader and what it builds on, at the same paths as in the binary.
pub mod output {
    pub mod pprof_read;
    pub mod proto;
    pub mod wire;
}
