use std::arch::asm;

use profiler_model::FrameAddress;

use super::*;
use crate::process::procmaps::ProcessTable;
use crate::symbolize::Symbolizer;

/// Registers and a copy of the stack of this thread, as the kernel takes them.
struct Captured {
    regs: (u64, u64, u64),
    bytes: Vec<u8>,
}

/// Copies this thread's stack from `sp` as far as it is readable, up to `len` bytes, as
/// the kernel programs do.
fn copy_own_stack(sp: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let local = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: len,
    };
    // One remote piece per page: the kernel stops at the first one that faults, and a
    // single piece would fail whole.
    let mut remote = Vec::new();
    let mut addr = sp;
    while addr < sp + len as u64 {
        let next = ((addr / 4096) + 1) * 4096;
        let end = next.min(sp + len as u64);
        remote.push(libc::iovec {
            iov_base: addr as *mut _,
            iov_len: (end - addr) as usize,
        });
        addr = end;
    }
    // SAFETY: valid iovecs over a buffer of `len` bytes; the kernel stops at a fault.
    let got = unsafe {
        libc::process_vm_readv(
            libc::getpid(),
            &local,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    bytes.truncate(usize::try_from(got).unwrap_or(0));
    bytes
}

#[inline(never)]
fn capture_here() -> Captured {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers, writes nothing else.
    unsafe {
        asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
             ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp);
    }
    Captured {
        regs: (ip, sp, bp),
        bytes: copy_own_stack(sp, 32 * 1024),
    }
}

#[inline(never)]
fn unwind_level_two() -> Captured {
    std::hint::black_box(capture_here())
}

#[inline(never)]
fn unwind_level_one() -> Captured {
    std::hint::black_box(unwind_level_two())
}

fn names(process: &ProcessInfo, frames: &[u64]) -> Vec<String> {
    let mut symbolizer = Symbolizer::new();
    FrameAddress::stack(frames.iter().copied())
        .into_iter()
        .flat_map(|frame| symbolizer.user(Some(process), None, frame).frame.lines)
        .map(|line| line.function)
        .collect()
}

/// This process's id and a snapshot of its mappings.
fn this_process() -> (u32, ProcessTable) {
    let pid = std::process::id();
    let mut table = ProcessTable::default();
    assert!(table.snapshot(pid));
    (pid, table)
}

#[test]
fn unwinds_this_thread_through_its_callers() {
    let captured = unwind_level_one();
    let (pid, table) = this_process();
    let process = table.get(pid).unwrap();
    let mut unwinder = StackUnwinder::default();
    let stack = StackCopy {
        sp: captured.regs.1,
        bytes: &captured.bytes,
        ends: true,
    };
    let unwound = unwinder.unwind(pid, process, captured.regs, stack);
    let names = names(process, &unwound.frames);
    let position = |name: &str| {
        names
            .iter()
            .position(|n| n.contains(name))
            .unwrap_or_else(|| panic!("{name} not in {names:?}"))
    };
    assert!(position("capture_here") < position("unwind_level_two"));
    assert!(position("unwind_level_two") < position("unwind_level_one"));
    assert!(position("unwind_level_one") < position("unwinds_this_thread_through_its_callers"));
}

#[test]
fn a_short_copy_ends_at_the_copy_limit() {
    let captured = unwind_level_one();
    let (pid, table) = this_process();
    let process = table.get(pid).unwrap();
    let mut unwinder = StackUnwinder::default();
    let short = StackCopy {
        sp: captured.regs.1,
        bytes: &captured.bytes[..64],
        ends: false,
    };
    let unwound = unwinder.unwind(pid, process, captured.regs, short);
    assert_eq!(unwound.end, StackEnd::CopyLimit);
    assert!(!unwound.frames.is_empty());
    // The same walk where the thread's stack really ends there is not a copy limit.
    let ended = StackCopy {
        ends: true,
        ..short
    };
    assert_eq!(
        unwinder.unwind(pid, process, captured.regs, ended).end,
        StackEnd::Stopped
    );
}
