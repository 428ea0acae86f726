//! Finds CPython in a process: the interpreter among its mappings, the symbols the kernel
//! and the names need from the interpreter's file, and 3.13's and 3.14's own offsets.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol};

use super::{PythonCode, cold, read_bytes};
use crate::collect::python_layout::{
    DEBUG_OFFSETS_WORDS, Layout, from_debug_offsets, layout, minor_of_file,
};
use crate::collect::target_elf::{self, Links};
use crate::process::procmaps::ProcessInfo;

/// The CPython interpreter mapped into process `pid`, if its version's frames are read.
pub(super) fn find(pid: u32, process: &ProcessInfo, unsupported: &mut u64) -> Option<PythonCode> {
    for entry in &process.maps {
        let Some(minor) = minor_of_file(&entry.path) else {
            continue;
        };
        let Some(file) = &entry.file else { continue };
        let Some(layout) = layout(minor) else {
            *unsupported |= 1u64.checked_shl(minor).unwrap_or(0);
            continue;
        };
        let Some(symbols) = symbols_of(Path::new(&file.open_path()), entry.offset) else {
            continue;
        };
        let bias = entry.start.wrapping_sub(symbols.segment_address);
        let mem = File::open(format!("/proc/{pid}/mem")).ok()?;
        let runtime = symbols.runtime.wrapping_add(bias);
        let layout = if minor >= 13 {
            match debug_offsets(&mem, runtime, layout) {
                Ok(read) => {
                    if read != layout {
                        log::debug!("pid {pid}: _Py_DebugOffsets differ from 3.{minor}'s table");
                    }
                    read
                }
                Err(why) => {
                    log::debug!("pid {pid}: {}: {why}", entry.path);
                    *unsupported |= 1u64.checked_shl(minor).unwrap_or(0);
                    continue;
                }
            }
        } else {
            layout
        };
        return Some(PythonCode {
            layout,
            mapped: (entry.start, entry.path.clone()),
            eval: symbols
                .eval
                .iter()
                .map(|r| r.start.wrapping_add(bias)..r.end.wrapping_add(bias))
                .collect(),
            runtime,
            code_type: symbols.code_type.wrapping_add(bias),
            mem,
            threads: HashSet::new(),
            missing: HashMap::new(),
            natives: HashSet::new(),
            scanned: None,
        });
    }
    None
}

/// What the profiler needs of an interpreter's file.
struct Symbols {
    eval: Vec<Range<u64>>,
    runtime: u64,
    code_type: u64,
    /// The address the file's bytes at the mapping's offset are linked at.
    segment_address: u64,
}

/// `_PyEval_EvalFrameDefault` (and its `.cold` part), `_PyRuntime` and `PyCode_Type` in
/// the file at `path`, and where its mapping at file offset `offset` is linked.
fn symbols_of(path: &Path, offset: u64) -> Option<Symbols> {
    let data = target_elf::open(path, Links::Followed).ok()?;
    let file = target_elf::parse(&data).ok()?;
    let segment_address = file.segments().find_map(|segment| {
        let (start, size) = segment.file_range();
        (start..start.saturating_add(size))
            .contains(&offset)
            .then(|| segment.address().wrapping_add(offset - start))
    })?;
    let mut eval = Vec::new();
    let (mut runtime, mut code_type) = (None, None);
    for symbol in file.symbols().chain(file.dynamic_symbols()) {
        let Ok(name) = symbol.name() else { continue };
        match name {
            "_PyEval_EvalFrameDefault" | "_PyEval_EvalFrameDefault.cold" => {
                eval.push(symbol.address()..symbol.address().saturating_add(symbol.size().max(1)));
            }
            "_PyRuntime" => runtime = Some(symbol.address()),
            "PyCode_Type" => code_type = Some(symbol.address()),
            _ => {}
        }
    }
    if eval.is_empty() {
        return None;
    }
    // A stripped binary names no `.cold` part: find it from the code.
    if let [hot] = &eval[..] {
        let parts = cold::cold_parts(&file, hot.clone());
        eval.extend(parts);
    }
    Some(Symbols {
        eval,
        runtime: runtime?,
        code_type: code_type?,
        segment_address,
    })
}

/// The layout CPython 3.13's or 3.14's `_Py_DebugOffsets` at `runtime` states (see
/// [`from_debug_offsets`]).
fn debug_offsets(mem: &File, runtime: u64, table: Layout) -> Result<Layout, String> {
    let bytes = read_bytes(mem, runtime, (DEBUG_OFFSETS_WORDS * 8) as u64)
        .ok_or("_PyRuntime unreadable")?;
    let mut words = [0u64; DEBUG_OFFSETS_WORDS];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    from_debug_offsets(&words, table)
}
