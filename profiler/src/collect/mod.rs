//! Collection: load the kernel programs, find or launch the targets, and gather what they
//! report until the window closes.
//!
//! In: the run's [`crate::config::Config`]. Out: a [`session::RunOutcome`] with one raw
//! profile per collector ([`collector`]: CPU, I/O, futex waits, goroutine waits, heap),
//! their stacks unwound as the samples arrived ([`samples`]) and interned, and the
//! processes' mappings with their files held open ([`crate::process`]). Nothing here
//! symbolizes: that happens once, afterwards.

pub mod allocators;
pub mod budgets;
pub mod collector;
pub mod cpu;
pub mod cpustat;
pub mod futex;
pub mod gate;
pub mod go_heap;
pub mod go_labels;
pub mod go_layout;
pub mod golang;
pub mod goroutine_waits;
pub mod goroutines;
pub mod heap;
pub mod heap_probes;
pub mod heap_profile;
pub mod io;
pub mod kernel_features;
pub mod kernel_probe;
pub mod launch;
pub mod offcpu;
pub mod offcpu_budget;
pub mod offcpu_idle;
pub mod offcpu_reason;
pub mod offcpu_split;
pub mod preload;
pub mod probe_point;
pub mod probes;
pub mod python;
pub mod python_code;
pub mod python_layout;
pub mod raw_profile;
pub mod records;
pub mod ring_size;
pub mod samples;
pub mod selfcost;
pub mod session;
pub mod stacks;
pub mod start_command;
pub mod status_line;
pub mod stop_reason;
pub mod target_elf;
pub mod tracefs;
pub mod trap_cost;
pub mod uprobe_check;
