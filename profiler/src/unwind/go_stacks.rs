//! Go's stacks, ended and continued where Go's own traceback ends and continues them.
//!
//! - **Ended** at the runtime's top frames (`runtime.goexit` under every goroutine,
//!   `runtime.mstart` under every system stack, `runtime.rt0_go` under the first, and
//!   `runtime.mcall` under the scheduler): past them lie no frames of theirs, only
//!   whatever the stack holds, which unwound into `[unknown]` roots (a third of a busy
//!   net/http server's samples).
//! - **Continued** across the stack switches the copy from `sp` cannot follow. The runtime
//!   runs on the system stack (`systemstack`) and calls the vDSO there (`nanotime1`,
//!   `walltime`), while the goroutine's frames lie on its own stack, elsewhere. Go keeps
//!   frame pointers, and the system stack's first frame saves the goroutine's, so the
//!   kernel's frame-pointer walk, sent with a Go process's CPU samples, leads on into the
//!   goroutine: the stack unwound from the copy is continued with it, as Go's traceback
//!   continues from `g0` into `curg`.

use std::ops::Range;

use object::{Object, ObjectSymbol};

/// The runtime's functions below which a Go stack has no frames (Go marks them
/// `TOPFRAME`), and `runtime.mcall`, where Go's traceback ends the scheduler's stack: what
/// it runs on the system stack after a goroutine parks or yields (`park_m`, `schedule`,
/// finding the next goroutine) is not the parked goroutine's work, though frame pointers
/// lead into it on some releases. Assembly functions are named with `.abi0` in the symbol
/// table.
const TOP_FRAMES: [&str; 8] = [
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.mstart",
    "runtime.mstart.abi0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
    "runtime.mcall",
    "runtime.mcall.abi0",
];

/// The stated address ranges of a Go executable's top frames; `None` for a file Go did not
/// build (or one whose symbol table was stripped: its stacks end where the walk does).
pub fn top_frames<'data, R: object::ReadRef<'data>>(
    elf: &object::File<'data, R>,
) -> Option<Vec<Range<u64>>> {
    elf.section_by_name(".gopclntab")
        .or_else(|| elf.section_by_name(".note.go.buildid"))?;
    let tops: Vec<Range<u64>> = elf
        .symbols()
        .filter(|symbol| symbol.name().is_ok_and(|name| TOP_FRAMES.contains(&name)))
        .map(|symbol| symbol.address()..symbol.address().saturating_add(symbol.size().max(1)))
        .collect();
    Some(tops)
}

/// Continues `frames`, unwound from the stack copy (leaf first), with `chain`, the same
/// sample's frame-pointer walk (leaf first): past the rootmost frame of `frames` the chain
/// holds too (the same return address, as often as `frames` holds it up to there), the
/// chain's frames replace the rest, which followed the system stack into stale frames.
/// When they share no frame but the leaf, `frames` is kept up to `first_go`, its first
/// frame in Go's code (the function that called the vDSO, whose frame pointer the vDSO
/// did not keep; beyond it the copy's unwinding read the wrong stack), and the chain past
/// its leaf follows. `None` when the chain adds nothing.
pub fn continue_with_chain(frames: &[u64], chain: &[u64], first_go: usize) -> Option<Vec<u64>> {
    if chain.len() < 2 || frames.is_empty() {
        return None;
    }
    let shared = (1..frames.len()).rev().find_map(|i| {
        let address = frames[i];
        let nth = frames[..=i].iter().filter(|&&a| a == address).count();
        let j = chain
            .iter()
            .enumerate()
            .skip(1)
            .filter(|&(_, &a)| a == address)
            .nth(nth - 1)?
            .0;
        Some((i, j))
    });
    let (keep, from) = match shared {
        Some((i, j)) => (i + 1, j + 1),
        None => ((first_go + 1).min(frames.len()), 1),
    };
    if from >= chain.len() {
        return None;
    }
    let mut out = Vec::with_capacity(keep + chain.len() - from);
    out.extend_from_slice(&frames[..keep]);
    out.extend_from_slice(&chain[from..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_stack_sample_goes_on_into_the_goroutine() {
        // Unwound from the copy: gcDrain's frames on g0, systemstack's return, then stale
        // frames of the system stack. The chain: the same leaf frames, systemstack's return,
        // then the goroutine's frames down to goexit.
        let frames = [0x10, 0x20, 0x30, 0x7fff_0001];
        let chain = [0x10, 0x20, 0x30, 0x40, 0x50];
        assert_eq!(
            continue_with_chain(&frames, &chain, 0),
            Some(vec![0x10, 0x20, 0x30, 0x40, 0x50])
        );
    }

    #[test]
    fn a_vdso_leaf_without_frame_pointers_keeps_its_caller() {
        // The vDSO kept no frame pointer: the chain skips nanotime1 and goes on from its
        // caller; the copy reached nanotime1 only.
        let frames = [0xf000, 0x100];
        let chain = [0xf000, 0x200, 0x300];
        assert_eq!(
            continue_with_chain(&frames, &chain, 1),
            Some(vec![0xf000, 0x100, 0x200, 0x300])
        );
    }

    #[test]
    fn a_go_leaf_on_the_switched_stack_drops_what_the_copy_misread() {
        // The sample is in nanotime1 after it moved to the system stack: the copy's
        // unwinding read stale words there; the chain leads from nanotime1's frame on.
        let frames = [0x100, 0xdead, 0xbeef];
        let chain = [0x100, 0x200, 0x300];
        assert_eq!(
            continue_with_chain(&frames, &chain, 0),
            Some(vec![0x100, 0x200, 0x300])
        );
    }

    #[test]
    fn recursion_matches_the_same_occurrence() {
        // f calls itself: the copy ended after its second frame; the chain has four.
        let frames = [0x1, 0xf, 0xf];
        let chain = [0x1, 0xf, 0xf, 0xf, 0xf, 0x9];
        assert_eq!(
            continue_with_chain(&frames, &chain, 0),
            Some(vec![0x1, 0xf, 0xf, 0xf, 0xf, 0x9])
        );
    }

    #[test]
    fn a_chain_that_adds_nothing_is_no_continuation() {
        assert_eq!(
            continue_with_chain(&[0x1, 0x2, 0x3], &[0x1, 0x2, 0x3], 0),
            None
        );
        assert_eq!(continue_with_chain(&[0x1, 0x2], &[0x1], 0), None);
        assert_eq!(continue_with_chain(&[], &[0x1, 0x2], 0), None);
    }
}
