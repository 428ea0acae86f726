//! Rows 1–3: how much slower the same work runs while observed, as paired A/B runs.
//!
//! 1. CPU sampling: a CPU-bound fixture under the profiler's CPU profile (whole host) at
//!    99 and 999 Hz (in `--call-graph dwarf` mode: a copy of the user stack per sample),
//!    perf record with frame-pointer stacks (`-g`) and with
//!    `--call-graph dwarf`, and bpftrace at the same rates, plus an A/A control (no
//!    observer in either half) that shows the noise floor of the machine.
//! 2. Syscall tracing: a pread loop under the profiler's I/O profile, bpftrace (with and
//!    without user stacks), perf trace and strace.
//! 3. Blocking: threads contending on a mutex under the profiler's blocking profile.
//!
//! Each fixture is calibrated first (one unprofiled run, which also warms caches), so a
//! run lasts about as long on any machine.

mod blocking;
mod cpu;
mod observers;
mod pairs;
mod syscalls;

pub use blocking::blocking;
pub use cpu::cpu_sampling;
pub use syscalls::syscalls;
