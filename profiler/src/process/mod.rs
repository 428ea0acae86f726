//! The targets' processes as the later stages need them: each process's executable
//! mappings, snapshotted while it lived, with the mapped files held open, and the perf maps
//! of JIT compilers among them, which HotSpot JVMs write on request ([`jit_maps`]); the kernel's BPF programs as kallsyms listed them while
//! they were loaded ([`bpf_symbols`]); reading ELF sections ([`elf_data`]); the processes'
//! names, which name their records rather than their threads' ([`names`]); the processes
//! already below the `--pid` targets when the run starts ([`descendants`]); the kinds of
//! their descriptors ([`descriptors`]); a process's start time, which tells it from a later
//! one with its pid ([`start_time`]).
//!
//! In: pids (from the collection's fork and exec events). Out: a [`procmaps::ProcessTable`]
//! that unwinding reads per sample and symbolization reads at the end, after the processes
//! may have exited. It imports no stage.

pub mod bpf_symbols;
pub mod descendants;
pub mod descriptors;
pub mod elf_data;
pub mod files;
pub mod jit_maps;
pub mod jitdump;
pub mod jvm_attach;
pub mod names;
pub mod perfmap;
pub mod procmaps;
pub mod start_time;
pub mod status;
