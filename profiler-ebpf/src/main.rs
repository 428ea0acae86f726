//! The profiler's kernel programs.
//!
//! They stay small on purpose: sample, filter, count, aggregate, copy stacks and announce. Everything that
//! can happen in userspace (symbolization, merging, output) happens there.
#![no_std]
#![no_main]
// `asm!` for the one atomic add Rust's atomics cannot express on BPF (see goroutine.rs).
#![feature(asm_experimental_arch)]

mod block;
mod cpu;
mod go_labels;
mod goroutine;
mod heap;
mod io;
mod offcpu;
mod python;
mod regs;
mod sched;
mod shared;
mod site;
mod syscalls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
