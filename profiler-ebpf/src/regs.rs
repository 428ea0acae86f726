//! Byte offsets of the registers the programs read in x86-64's `struct pt_regs` (r15, r14,
//! r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss).
//! One table for every program, so an offset never means a word index somewhere else.

/// `r14`, where Go code keeps the goroutine it runs (`g`).
pub const R14: usize = 8;
/// `rbp`, the frame pointer.
pub const BP: usize = 4 * 8;
/// `rbx`, the second argument of Go's register ABI.
pub const BX: usize = 5 * 8;
/// `r10`, the fourth syscall argument.
pub const R10: usize = 7 * 8;
/// `r8`, the fifth syscall argument.
pub const R8: usize = 9 * 8;
/// `rax`, the return value (and the first argument of Go's register ABI).
pub const AX: usize = 10 * 8;
/// `rcx`, the third argument of Go's register ABI.
pub const CX: usize = 11 * 8;
/// `rdx`, the third syscall argument.
pub const DX: usize = 12 * 8;
/// `rsi`, the second syscall argument.
pub const SI: usize = 13 * 8;
/// `rdi`, the first syscall argument.
pub const DI: usize = 14 * 8;
/// The syscall number at entry, or -1 for an exception or an interrupt.
pub const ORIG_AX: usize = 15 * 8;
/// The user instruction pointer.
pub const IP: usize = 16 * 8;
/// The code segment: its low two bits are the privilege level (3 in user mode).
pub const CS: usize = 17 * 8;
/// The user stack pointer.
pub const SP: usize = 19 * 8;
