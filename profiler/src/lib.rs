//! The parsers of the profiler that read bytes others control, as a library: the fuzz
//! targets in `fuzz/` drive the very code the binary runs through it.
//!
//! The binary declares these modules itself (`main.rs`), so this library only gathers the
//! files each parser needs, at the same paths as in the binary: the profile model and the
//! pprof reader (`profiler report`), a Go binary's `.gopclntab`, JIT perf maps, and the
//! unwind sections of ELF files as the unwinder loads them.

pub mod profile;

/// The pprof reader and what it builds on.
pub mod output {
    pub mod pprof_read;
    pub mod proto;
    pub mod wire;
}

/// Readers of what profiled processes map and write.
pub mod process {
    pub mod elf_data;
    pub mod perfmap;
}

/// Names from a Go binary's own table.
pub mod symbolize {
    pub mod gopclntab;
}

/// The unwind sections of an ELF file, as the unwinder loads them.
pub mod unwind {
    pub mod sections;
}
