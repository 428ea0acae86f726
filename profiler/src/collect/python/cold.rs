//! The cold part of a stripped interpreter's evaluation loop. GCC moves a function's
//! unlikely blocks to a separate range (`_PyEval_EvalFrameDefault.cold`), which only the
//! symbol table names, and a stripped binary has none. Debian's python3.14 runs most of
//! its loop there (its exported `_PyEval_EvalFrameDefault` is 1,184 bytes, the rest 84 KB
//! away), so without that range no sample's loop frames are found and no Python frame is
//! placed.
//!
//! The part is found from the hot part's code and the unwind tables: a target of one of
//! its direct jumps that starts an `.eh_frame` entry whose first row does not have the
//! return address at the stack pointer. A function's entry does; a cold part continues a
//! frame its hot part set up, so it starts with the frame's own rule.

use std::collections::HashSet;
use std::ops::Range;

use gimli::{BaseAddresses, CfaRule, EhFrame, LittleEndian, UnwindContext, UnwindSection, X86_64};
use object::{Object, ObjectSection};

/// The most bytes of the hot part scanned for jumps (the loops in CPython's builds are
/// under 200 KB).
const MAX_HOT_BYTES: u64 = 1 << 20;

/// The most jump targets kept, and `.eh_frame` entries read.
const MAX_TARGETS: usize = 1 << 16;
const MAX_ENTRIES: usize = 1 << 20;

/// The ranges of the cold parts of the function at `hot` in `file`; none when it has none
/// or the file cannot say.
pub fn cold_parts<'data, R: object::ReadRef<'data>>(
    file: &object::File<'data, R>,
    hot: Range<u64>,
) -> Vec<Range<u64>> {
    let targets = jump_targets(file, &hot);
    if targets.is_empty() {
        return Vec::new();
    }
    let Some(section) = file.section_by_name(".eh_frame") else {
        return Vec::new();
    };
    let Ok(data) = section.data() else {
        return Vec::new();
    };
    let eh_frame = EhFrame::new(data, LittleEndian);
    let mut bases = BaseAddresses::default().set_eh_frame(section.address());
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    let mut context = Box::new(UnwindContext::new());
    let mut entries = eh_frame.entries(&bases);
    let mut parts = Vec::new();
    for _ in 0..MAX_ENTRIES {
        let Ok(Some(entry)) = entries.next() else {
            break;
        };
        let gimli::CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let Ok(fde) =
            partial.parse(|section, bases, offset| section.cie_from_offset(bases, offset))
        else {
            continue;
        };
        let start = fde.initial_address();
        if !targets.contains(&start) {
            continue;
        }
        let Ok(row) = fde.unwind_info_for_address(&eh_frame, &bases, &mut context, start) else {
            continue;
        };
        let entry_rule = matches!(
            row.cfa(),
            CfaRule::RegisterAndOffset { register, offset: 8 } if *register == X86_64::RSP
        );
        if !entry_rule {
            parts.push(start..start.saturating_add(fde.len()));
        }
    }
    parts
}

/// The targets outside `hot` of the direct `jcc rel32` and `jmp rel32` instructions in
/// its bytes. The bytes are scanned at every offset, not decoded: a false target must
/// also start an unwind entry that is no function's entry to count, which no byte pattern
/// inside an instruction makes likely.
fn jump_targets<'data, R: object::ReadRef<'data>>(
    file: &object::File<'data, R>,
    hot: &Range<u64>,
) -> HashSet<u64> {
    let len = hot.end.saturating_sub(hot.start).min(MAX_HOT_BYTES);
    let bytes = file
        .sections()
        .find(|s| (s.address()..s.address().saturating_add(s.size())).contains(&hot.start))
        .and_then(|s| s.data_range(hot.start, len).ok().flatten());
    let Some(bytes) = bytes else {
        return HashSet::new();
    };
    let rel32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let mut targets = HashSet::new();
    for i in 0..bytes.len() {
        let (length, rel) = match (bytes[i], bytes.get(i + 1)) {
            (0x0f, Some(0x80..=0x8f)) => (6, rel32(i + 2)),
            (0xe9, _) => (5, rel32(i + 1)),
            _ => continue,
        };
        let Some(rel) = rel else { continue };
        // A crafted file's addresses may be anything: wrap, never overflow.
        let target = hot
            .start
            .wrapping_add(i as u64 + length)
            .wrapping_add_signed(rel);
        if !hot.contains(&target) && targets.len() < MAX_TARGETS {
            targets.insert(target);
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's python3.14, when `cargo xtask setup --for-tests` has installed it.
    fn debian_python_3_14() -> Option<std::path::PathBuf> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/python-3.14/root/usr/bin/python3.14");
        path.is_file().then_some(path)
    }

    #[test]
    fn the_cold_part_of_debian_s_3_14_loop_is_found() {
        let path = debian_python_3_14().expect(
            "MISSING PYTHON: no Debian python3.14 under target/python-3.14: run `cargo xtask \
             setup --for-tests`",
        );
        let data = std::fs::read(path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let eval = object::ObjectSymbolTable::symbols(&file.dynamic_symbol_table().unwrap())
            .find(|s| object::ObjectSymbol::name(s) == Ok("_PyEval_EvalFrameDefault"))
            .unwrap();
        let start = object::ObjectSymbol::address(&eval);
        let hot = start..start + object::ObjectSymbol::size(&eval);
        let parts = cold_parts(&file, hot.clone());
        assert_eq!(parts.len(), 1, "{parts:x?}");
        // The part is larger than the hot function, and its own code.
        assert!(
            parts[0].end - parts[0].start > hot.end - hot.start,
            "{parts:x?}"
        );
        assert!(parts[0].end <= hot.start || parts[0].start >= hot.end);
    }
}
