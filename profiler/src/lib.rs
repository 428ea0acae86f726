//! The parsers of the profiler that read bytes others control, as a library: the fuzz
//! targets in `fuzz/` drive the very code the binary runs through it.
//!
//! The binary declares these modules itself (`main.rs`), so this library only gathers the
//! files each parser needs, at the same paths as in the binary: a Go binary's
//! `.gopclntab`, JIT perf maps, the unwind
//! sections of ELF files as the unwinder loads them, and what the symbolizer reads of an
//! ELF file before naming anything (its facts, debug link, compressed sections).

/// Readers of what profiled processes map and write.
pub mod process {
    pub mod elf_data;
    pub mod perfmap;
}

/// What the symbolizer reads of a file: Go's own table, an ELF file's facts and debug
/// links, and the check of what its compressed sections would inflate to.
pub mod symbolize {
    pub mod debuginfo;
    pub mod debuginfod;
    pub mod gopclntab;
    pub mod inflation;
}

/// Opening files others control, and the terminal the debuginfod client reports to.
pub mod sys {
    pub mod console;
    pub mod safe_open;
}

/// The unwind sections of an ELF file, as the unwinder loads them.
pub mod unwind {
    pub mod sections;
}
