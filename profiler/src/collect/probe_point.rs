//! Where on a function to put a uprobe so that a hit costs one trap, not two.
//!
//! A uprobe replaces an instruction with a breakpoint. When it is hit, the kernel runs
//! the programs and then either emulates the replaced instruction or executes it out of
//! line with the trap flag set, which costs a second trap. x86-64 kernels emulate direct
//! branches (`jmp`, `jcc`, `call`) and `push` of a register (whether the running kernel
//! does is asked once, [`crate::collect::uprobe_check`]); in this VM a
//! probe on glibc's `free` (which starts with `test`) cost 4.5 µs a call, one on `malloc`
//! (which starts with `push`) 1 µs. So the probe goes on the first such instruction of
//! the function's straight-line start, provided nothing before it changes what the
//! programs read there: the registers they take arguments from, the stack pointer (the
//! return address at its top, the uretprobe's hijack, the stack sample), the frame
//! pointer, or memory. Nothing before it branches (a branch is itself the point), so every
//! call reaches it exactly once.
//!
//! Go functions start by comparing the stack pointer with the goroutine's stack bound and
//! branching to `morestack` when it is low; `morestack` then grows the stack (or serves a
//! preemption request) and jumps back to the function's first instruction. A probe on the
//! check or its branch fires again on each such return; the point is taken after the
//! branch, where a call arrives once. Before Go 1.21, though, a Go prologue has no `push`
//! (it moves the stack pointer with `sub` and stores the frame pointer), so nothing after
//! the check is emulated: programs that can tell a taken branch from the flags the check
//! left (`morestack_aware`) are put on the branch itself, the `jbe`, and return at once
//! when it is about to be taken; the call then counts once, on its way back from
//! `morestack`. A single step costs far more than an emulated hit: on a Go 1.19 net/http
//! service in this VM, stepped goroutine probes took half its CPU time.

use crate::collect::uprobe_check::{self, PushAtProbe};
use crate::process::elf_data::bytes_at;
use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic,
    OpAccess, OpKind, Register,
};

/// Instructions looked at from a function's start: its prologue, no further.
const MAX_INSTRUCTIONS: usize = 16;

/// How many bytes of a function's start [`point`] wants.
pub const CODE_BYTES: usize = 96;

/// Where a function is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Bytes from the function's start.
    pub offset: u64,
    /// Whether the kernel emulates the instruction there (one trap a hit, not two).
    pub emulated: bool,
    /// Whether it is the branch of Go's stack check: the programs must skip a hit whose
    /// branch is taken (see [`Reads::morestack_aware`]).
    pub at_stack_check: bool,
}

impl Point {
    const fn stepped(offset: u64) -> Self {
        Self {
            offset,
            emulated: false,
            at_stack_check: false,
        }
    }
}

/// What the programs probing a function read where they fire.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// The argument registers (full 64-bit names); RSP and RBP are always read.
    pub registers: &'static [Register],
    /// Whether the function is Go's: its stack-bound check is stepped over.
    pub go: bool,
    /// Whether the programs return at once when the stack check's `jbe` to `morestack` is
    /// about to be taken (carry or zero flag set): then that branch may be the point.
    pub morestack_aware: bool,
}

/// What the running kernel emulates at a probe besides direct branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emulates {
    /// `push` of a register.
    pub push: bool,
}

impl Emulates {
    /// What the running kernel was seen to emulate ([`uprobe_check::running_kernel`]);
    /// `push` when it could not be asked, as x86-64 kernels have emulated it since 4.18.
    pub fn running_kernel() -> Self {
        Self {
            push: uprobe_check::running_kernel().push != PushAtProbe::Stepped,
        }
    }
}

/// The instruction of `code` (a function's first bytes, at virtual address `ip`) to
/// probe: the first one the kernel emulates that every call reaches with `reads`
/// unchanged, else the first instruction (after Go's stack check).
pub fn point(code: &[u8], ip: u64, reads: Reads, kernel: Emulates) -> Point {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    let instructions: Vec<Instruction> = decoder.iter().take(MAX_INSTRUCTIONS).collect();
    let offset = |instr: &Instruction| instr.ip() - ip;
    let mut start = 0;
    if reads.go {
        match go_stack_check(&instructions) {
            Some(after) => start = after,
            None => return Point::stepped(0),
        }
    }
    let mut fallback = Point::stepped(instructions.get(start).map_or(0, offset));
    if let Some(branch) = start.checked_sub(1).map(|i| &instructions[i])
        && reads.morestack_aware
        && branch.mnemonic() == Mnemonic::Jbe
        && is_emulated(
            branch,
            &code[offset(branch) as usize..][..branch.len()],
            kernel,
        )
    {
        fallback = Point {
            offset: offset(branch),
            emulated: true,
            at_stack_check: true,
        };
    }
    for instr in &instructions[start.min(instructions.len())..] {
        if instr.code() == Code::INVALID {
            break;
        }
        let bytes = &code[offset(instr) as usize..][..instr.len()];
        if is_emulated(instr, bytes, kernel) && !branches_back(instr, ip) {
            return Point {
                offset: offset(instr),
                emulated: true,
                at_stack_check: false,
            };
        }
        if !leaves_reads_alone(instr, &mut info, reads) {
            break;
        }
    }
    fallback
}

/// Whether `instr` branches back into the function's start, up to itself: probed, it
/// would fire on every turn of that loop.
fn branches_back(instr: &Instruction, start: u64) -> bool {
    instr.op0_kind() == OpKind::NearBranch64
        && (start..=instr.ip()).contains(&instr.near_branch_target())
}

/// The index of the first instruction after Go's stack-bound check (`CMP SP, 16(R14)`,
/// `LEA -n(SP), R12; CMP R12, 16(R14)`, or for the largest frames `MOV SP, R12;
/// SUB $n, R12; JCS; CMP R12, 16(R14)`, then `JBE`), or `None` when the function does
/// not start with one: 0 when it has no check at all (a `NOSPLIT` function).
fn go_stack_check(instructions: &[Instruction]) -> Option<usize> {
    let is_guard_compare = |instr: &Instruction| {
        instr.mnemonic() == Mnemonic::Cmp
            && instr.memory_base() == Register::R14
            && instr.memory_displacement64() == 16
            && (0..instr.op_count()).any(|i| {
                instr.op_kind(i) == OpKind::Register
                    && matches!(instr.op_register(i), Register::RSP | Register::R12)
            })
    };
    let compare = instructions.iter().take(5).position(is_guard_compare);
    let Some(compare) = compare else {
        return Some(0);
    };
    let branch = instructions.get(compare + 1)?;
    (branch.is_jcc_short_or_near()).then_some(compare + 2)
}

/// Whether the kernel emulates `instr` when it is probed: a direct branch of 64-bit
/// operand size, or, where `kernel` does, `push` of a register (one byte, or two with
/// REX.B, as the kernel decodes it).
fn is_emulated(instr: &Instruction, bytes: &[u8], kernel: Emulates) -> bool {
    if instr.is_jcc_short_or_near() || instr.is_jmp_short_or_near() || instr.is_call_near() {
        // The kernel refuses a branch with an operand-size prefix (which Intel ignores
        // and AMD does not): such a probe would not attach at all.
        return instr.op0_kind() == OpKind::NearBranch64 && !has_operand_size_prefix(bytes);
    }
    kernel.push
        && instr.code() == Code::Push_r64
        && match bytes {
            [op] => (0x50..=0x57).contains(op),
            [0x41, op] => (0x50..=0x57).contains(op),
            _ => false,
        }
}

/// Whether an instruction's prefixes (legacy, then REX) include the operand-size one.
fn has_operand_size_prefix(bytes: &[u8]) -> bool {
    const LEGACY: [u8; 11] = [
        0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65,
    ];
    bytes
        .iter()
        .take_while(|b| LEGACY.contains(b) || (0x40..=0x4f).contains(*b))
        .any(|&b| b == 0x66)
}

/// Whether `instr` runs straight on and writes neither memory nor a register the
/// programs read.
fn leaves_reads_alone(
    instr: &Instruction,
    info: &mut InstructionInfoFactory,
    reads: Reads,
) -> bool {
    if instr.flow_control() != FlowControl::Next {
        return false;
    }
    let info = info.info(instr);
    let writes = |access: OpAccess| {
        matches!(
            access,
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        )
    };
    if info.used_memory().iter().any(|m| writes(m.access())) {
        return false;
    }
    !info.used_registers().iter().any(|used| {
        let register = used.register().full_register();
        writes(used.access())
            && (register == Register::RSP
                || register == Register::RBP
                || reads.registers.contains(&register))
    })
}

/// The virtual address to probe the function at `address` (of `size` bytes, 0 when
/// unknown) at, from its code in the ELF file's sections (see [`point`]), and whether the
/// kernel emulates it; the entry itself when its code cannot be read.
pub fn probe_point<'data, R: object::ReadRef<'data>>(
    file: &object::File<'data, R>,
    address: u64,
    size: u64,
    reads: Reads,
) -> (u64, Point) {
    let wanted = if size == 0 {
        CODE_BYTES as u64
    } else {
        size.min(CODE_BYTES as u64)
    };
    let code = bytes_at(file, address, wanted);
    code.map_or((address, Point::stepped(0)), |code| {
        let at = point(code, address, reads, Emulates::running_kernel());
        (address + at.offset, at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const C_ARGS: Reads = Reads {
        registers: &[Register::RDI, Register::RSI, Register::RDX],
        go: false,
        morestack_aware: false,
    };
    const GO_ARGS: Reads = Reads {
        registers: &[Register::RAX, Register::RBX, Register::RCX],
        go: true,
        morestack_aware: false,
    };
    const GO_PARK_ARGS: Reads = Reads {
        registers: &[Register::R14, Register::RCX],
        go: true,
        morestack_aware: true,
    };

    /// Go 1.19 runtime.gopark: cmp 0x10(%r14),%rsp; jbe +0xe9; sub $0x18,%rsp;
    /// mov %rbp,0x10(%rsp); lea 0x10(%rsp),%rbp
    const GO_119_GOPARK: [u8; 25] = [
        0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xe9, 0x00, 0x00, 0x00, 0x48, 0x83, 0xec, 0x18, 0x48,
        0x89, 0x6c, 0x24, 0x10, 0x48, 0x8d, 0x6c, 0x24, 0x10, 0x90,
    ];

    #[test]
    fn a_go_prologue_without_push_is_probed_on_its_stack_check_branch_when_the_programs_can_tell() {
        assert_eq!(
            point(&GO_119_GOPARK, 0x1000, GO_PARK_ARGS, PUSH),
            Point {
                offset: 4,
                emulated: true,
                at_stack_check: true,
            }
        );
        // Programs that cannot tell a taken branch get the first instruction after it,
        // single-stepped: every call still counts once.
        assert_eq!(
            point(&GO_119_GOPARK, 0x1000, GO_ARGS, PUSH),
            Point {
                offset: 10,
                emulated: false,
                at_stack_check: false,
            }
        );
    }
    const PUSH: Emulates = Emulates { push: true };
    const NO_PUSH: Emulates = Emulates { push: false };

    #[test]
    fn a_push_at_the_start_is_the_point() {
        // glibc 2.36 malloc: push %r12; push %rbp; push %rbx; mov %rdi,%rbx
        let code = [0x41, 0x54, 0x55, 0x53, 0x48, 0x89, 0xfb];
        assert_eq!(
            point(&code, 0x1000, C_ARGS, PUSH),
            Point {
                offset: 0,
                emulated: true,
                at_stack_check: false,
            }
        );
    }

    #[test]
    fn a_compare_is_stepped_over_to_its_branch() {
        // glibc 2.36 free: test %rdi,%rdi; je +0xbf; push %rbp
        let code = [0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0, 0, 0, 0x55];
        assert_eq!(point(&code, 0x1000, C_ARGS, PUSH).offset, 3);
    }

    #[test]
    fn an_argument_overwritten_first_keeps_the_start() {
        // mov %rsi,%rdi; push %rbp: the program would read the wrong size at the push.
        let code = [0x48, 0x89, 0xf7, 0x55];
        assert_eq!(point(&code, 0x1000, C_ARGS, PUSH).offset, 0);
        // sub $0x10,%rsp; push %rbp: the return address is no longer at the stack's top.
        let code = [0x48, 0x83, 0xec, 0x10, 0x55];
        assert_eq!(point(&code, 0x1000, C_ARGS, PUSH).offset, 0);
        // mov %rdi,(%rax); push %rbp: a store may change what the program reads.
        let code = [0x48, 0x89, 0x38, 0x55];
        assert_eq!(point(&code, 0x1000, C_ARGS, PUSH).offset, 0);
    }

    #[test]
    fn a_register_the_programs_do_not_read_may_change() {
        // jemalloc free: mov %rdi,%rax; mov 0x10(%rip),%rdx; jmp: a free reads only RDI.
        let free = Reads {
            registers: &[Register::RDI],
            go: false,
            morestack_aware: false,
        };
        let code = [
            0x48, 0x89, 0xf8, 0x48, 0x8b, 0x15, 0x10, 0, 0, 0, 0xeb, 0x00,
        ];
        assert_eq!(point(&code, 0x1000, free, PUSH).offset, 10);
        // An allocation's program reads RDX too: the start stays.
        assert_eq!(point(&code, 0x1000, C_ARGS, PUSH).offset, 0);
    }

    #[test]
    fn go_s_stack_check_is_passed_to_the_push_after_it() {
        // Go 1.24 runtime.mProf_Malloc: cmp 0x10(%r14),%rsp; jbe +0x1a5; push %rbp
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xa5, 0x01, 0, 0, 0x55, 0x48, 0x89, 0xe5,
        ];
        assert_eq!(point(&code, 0x1000, GO_ARGS, PUSH).offset, 10);
        // A large frame: lea -0x100(%rsp),%r12; cmp 0x10(%r14),%r12; jbe; push %rbp
        let code = [
            0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x10,
            0x55,
        ];
        assert_eq!(point(&code, 0x1000, GO_ARGS, PUSH).offset, 14);
    }

    #[test]
    fn a_go_function_without_a_push_after_its_check_is_probed_after_the_check() {
        // cmp 0x10(%r14),%rsp; jbe; sub $0x18,%rsp: never on the check itself.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x10, 0x48, 0x83, 0xec, 0x18];
        assert_eq!(point(&code, 0x1000, GO_ARGS, PUSH), Point::stepped(6));
    }

    #[test]
    fn go_s_check_for_the_largest_frames_is_passed_too() {
        // mov %rsp,%r12; sub $0x2000,%r12; jb; cmp 0x10(%r14),%r12; jbe; push %rbp
        let code = [
            0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, 0x00, 0x20, 0, 0, 0x72, 0x10, 0x4d, 0x3b, 0x66,
            0x10, 0x76, 0x10, 0x55,
        ];
        assert_eq!(
            point(&code, 0x1000, GO_ARGS, PUSH),
            Point {
                offset: 18,
                emulated: true,
                at_stack_check: false,
            }
        );
    }

    #[test]
    fn a_loop_at_the_start_is_not_probed_on_its_branch() {
        // L: mov (%rax),%ecx; test %ecx,%ecx; jne L: the jne runs once a turn.
        let code = [0x8b, 0x08, 0x85, 0xc9, 0x75, 0xfa, 0x55];
        assert_eq!(point(&code, 0x1000, C_ARGS, PUSH), Point::stepped(0));
    }

    #[test]
    fn undecodable_code_keeps_the_start() {
        assert_eq!(point(&[0x0f, 0xff], 0x1000, C_ARGS, PUSH).offset, 0);
        assert_eq!(point(&[], 0x1000, C_ARGS, PUSH).offset, 0);
    }
    #[test]
    fn a_kernel_that_steps_push_gets_the_branch_after_it_or_the_start() {
        // glibc 2.36 malloc: push %r12; ...: stepped either way, so the start.
        let code = [0x41, 0x54, 0x55, 0x53, 0x48, 0x89, 0xfb];
        assert_eq!(point(&code, 0x1000, C_ARGS, NO_PUSH), Point::stepped(0));
        // Go after its check: cmp; jbe; push %rbp: the push is no point of one trap.
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xa5, 0x01, 0, 0, 0x55, 0x48, 0x89, 0xe5,
        ];
        assert_eq!(point(&code, 0x1000, GO_ARGS, NO_PUSH), Point::stepped(10));
        // glibc free: test; je: the branch is emulated on every kernel.
        let code = [0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0, 0, 0, 0x55];
        assert_eq!(
            point(&code, 0x1000, C_ARGS, NO_PUSH),
            Point {
                offset: 3,
                emulated: true,
                at_stack_check: false,
            }
        );
    }
}
