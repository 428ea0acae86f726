//! The `profiler` binary: the library's [`profiler::main`], with the allocator the
//! symbolization workers rely on.

use std::process::ExitCode;

/// The system allocator, noting failed allocations for the symbolization workers.
#[global_allocator]
static ALLOCATOR: profiler::NotingAllocator = profiler::NotingAllocator;

fn main() -> ExitCode {
    profiler::main()
}
