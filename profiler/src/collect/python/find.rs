//! Finds CPython in a process: the interpreter among its mappings, where the symbols the
//! kernel and the names need from the interpreter's file ([`super::symbols`]) lie in it,
//! and 3.13's and 3.14's own offsets.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use super::symbols::SymbolsCache;
use super::{PythonCode, read_bytes};
use crate::collect::python_layout::{
    DEBUG_OFFSETS_WORDS, Layout, from_debug_offsets, layout, minor_of_file,
};
use crate::process::procmaps::ProcessInfo;

/// The CPython interpreter mapped into process `pid`, if its version's frames are read;
/// its file's symbols are read through `files`, once per file.
pub(super) fn find(
    pid: u32,
    process: &ProcessInfo,
    files: &mut SymbolsCache,
    unsupported: &mut u64,
) -> Option<PythonCode> {
    for entry in &process.maps {
        let Some(minor) = minor_of_file(&entry.path) else {
            continue;
        };
        let Some(file) = &entry.file else { continue };
        let Some(layout) = layout(minor) else {
            *unsupported |= 1u64.checked_shl(minor).unwrap_or(0);
            continue;
        };
        let Some(symbols) = files.get(&file.file, Path::new(&file.open_path())) else {
            continue;
        };
        let Some(linked) = symbols.linked_at(entry.offset) else {
            continue;
        };
        let bias = entry.start.wrapping_sub(linked);
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
