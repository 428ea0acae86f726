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

use crate::process::elf_data::BoundedFile;
use crate::symbolize::gopclntab::GoPclnTab;

/// The runtime's functions below which a Go stack has no frames (Go marks them
/// `TOPFRAME`), and `runtime.mcall`, where Go's traceback ends the scheduler's stack: what
/// it runs on the system stack after a goroutine parks or yields (`park_m`, `schedule`,
/// finding the next goroutine) is not the parked goroutine's work, though frame pointers
/// lead into it on some releases. The symbol table names the assembly ones with `.abi0`.
///
/// Found by name in `.gopclntab` too, not by the flag and function ID Go's traceback reads
/// there: `mcall` has no `TOPFRAME` flag (the traceback stops at it for writing `SP`, as it
/// does at `gogo`, `morestack` and others it goes past), its function ID is 11 in Go 1.19
/// and 1.21 and 12 in 1.24 and 1.27 (IDs are numbered by name, and `corostart` came
/// before it; the table's header does not tell those releases apart), and the flag marks
/// `runtime.sigtramp` too, where stacks with a symbol table do not end.
const TOP_FRAMES: [&str; 4] = [
    "runtime.goexit",
    "runtime.mstart",
    "runtime.rt0_go",
    "runtime.mcall",
];

/// The stated address ranges of a Go executable's top frames, from its symbol table, or
/// from `.gopclntab` when it has none (built with `-ldflags=-s`, as releases often are);
/// `None` for a file Go did not build.
pub fn top_frames<'a>(
    elf: &object::File<'a, &'a BoundedFile>,
    data: &'a BoundedFile,
) -> Option<Vec<Range<u64>>> {
    elf.section_by_name(".gopclntab")
        .or_else(|| elf.section_by_name(".note.go.buildid"))?;
    let is_top = |name: &str| TOP_FRAMES.contains(&name.strip_suffix(".abi0").unwrap_or(name));
    let tops: Vec<Range<u64>> = elf
        .symbols()
        .filter(|symbol| symbol.name().is_ok_and(is_top))
        .map(|symbol| symbol.address()..symbol.address().saturating_add(symbol.size().max(1)))
        .collect();
    if !tops.is_empty() {
        return Some(tops);
    }
    let table = GoPclnTab::parse(data);
    Some(table.map_or_else(Vec::new, |t| t.functions_named(&TOP_FRAMES)))
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
    fn a_stripped_binary_s_top_frames_are_where_its_symbols_put_them() {
        use crate::symbolize::gopclntab::tests::go_program_with;
        let dir = tempfile::tempdir().unwrap();
        let Some(full) = go_program_with(dir.path(), "-w", "full") else {
            return;
        };
        let stripped = go_program_with(dir.path(), "-s -w", "stripped").unwrap();
        let tops = |path: &std::path::Path| {
            let data = GoPclnTab::open(std::fs::File::open(path).unwrap());
            let elf = object::File::parse(&data).unwrap();
            let has_symbols = elf.symbols().next().is_some();
            let mut tops = top_frames(&elf, &data).expect("a Go binary");
            tops.sort_by_key(|r| r.start);
            (has_symbols, tops)
        };
        let (full_has_symbols, from_symbols) = tops(&full);
        let (stripped_has_symbols, from_table) = tops(&stripped);
        assert!(full_has_symbols && !stripped_has_symbols);
        assert_eq!(from_symbols.len(), TOP_FRAMES.len(), "{from_symbols:x?}");
        assert_eq!(from_table.len(), TOP_FRAMES.len(), "{from_table:x?}");
        for (symbol, table) in from_symbols.iter().zip(&from_table) {
            // The table's range runs on to the next function, past the symbol's padding.
            assert!(
                table.start == symbol.start && table.end >= symbol.end,
                "{symbol:x?} in the symbol table, {table:x?} in .gopclntab"
            );
        }
    }

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
