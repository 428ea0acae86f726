//! Where the Go runtime keeps what the kernel programs read of a goroutine and its thread:
//! the offsets of fields of `runtime.g` and `runtime.m`, from the binary's DWARF, else from
//! the profiler's table for its Go release (the layout moves between releases).

use std::borrow::Cow;

use object::{Object, ObjectSection, ReadRef};

use crate::collect::target_elf::MAX_SECTION_BYTES;
use crate::process::elf_data;

/// Most DWARF decompressed to find the runtime's layout, over the few sections read.
const MAX_DWARF_BYTES: u64 = 256 << 20;

/// Byte offsets of the runtime's fields the kernel programs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// `goid` in `runtime.g`.
    pub g_goid: u32,
    /// `atomicstatus` in `runtime.g`.
    pub g_status: u32,
    /// `m` in `runtime.g`: the thread running it.
    pub g_m: u32,
    /// `labels` in `runtime.g`: its profiler labels.
    pub g_labels: u32,
    /// `g0` in `runtime.m`: the thread's system-stack goroutine.
    pub m_g0: u32,
    /// `curg` in `runtime.m`: the goroutine the thread runs.
    pub m_curg: u32,
}

/// Where a [`RuntimeLayout`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's DWARF.
    Dwarf,
    /// The profiler's table for the binary's Go version (the binary has no DWARF).
    VersionTable,
}

/// The layout of the Go binary `elf` built by Go `minor` (1.`minor`), from its DWARF, else
/// from the table; `None` when neither has it.
pub fn read<'data, R: ReadRef<'data>>(
    elf: &object::File<'data, R>,
    minor: Option<u32>,
) -> Option<(RuntimeLayout, LayoutSource)> {
    if let Some(layout) = from_dwarf(elf) {
        return Some((layout, LayoutSource::Dwarf));
    }
    by_version(minor?).map(|layout| (layout, LayoutSource::VersionTable))
}

/// The layout by Go release, for binaries without DWARF: only the releases whose layout was
/// read from the DWARF of binaries they built (it moves back and forth: 1.24 has `goid` at
/// 160, 1.27 at 152 again), checked by `tests/tests/go_block.rs` and
/// `tests/tests/go_labels.rs` on binaries built with `-w`.
fn by_version(minor: u32) -> Option<RuntimeLayout> {
    let (g_goid, g_status, g_labels, m_curg) = match minor {
        19 => (152, 144, 360, 192),
        21 => (152, 144, 344, 192),
        24 => (160, 152, 352, 192),
        27 => (152, 144, 352, 184),
        _ => return None,
    };
    Some(RuntimeLayout {
        g_goid,
        g_status,
        g_m: 48,
        g_labels,
        m_g0: 0,
        m_curg,
    })
}

/// The DWARF sections the runtime's structs are found with: entries, their abbreviations
/// and names. The others (lines, ranges, locations) are not read.
const DWARF_NEEDED: [gimli::SectionId; 5] = [
    gimli::SectionId::DebugInfo,
    gimli::SectionId::DebugAbbrev,
    gimli::SectionId::DebugStr,
    gimli::SectionId::DebugStrOffsets,
    gimli::SectionId::DebugLineStr,
];

/// The members read, by struct: (struct, member) pairs.
const MEMBERS: [(&[u8], &[u8]); 6] = [
    (b"runtime.g", b"goid"),
    (b"runtime.g", b"atomicstatus"),
    (b"runtime.g", b"m"),
    (b"runtime.g", b"labels"),
    (b"runtime.m", b"g0"),
    (b"runtime.m", b"curg"),
];

/// The layout from the binary's DWARF: only the sections needed, each decompressed only
/// when its stated size fits what is left of [`MAX_DWARF_BYTES`]; the runtime's compile
/// unit holds both structs.
fn from_dwarf<'data, R: ReadRef<'data>>(elf: &object::File<'data, R>) -> Option<RuntimeLayout> {
    let left = std::cell::Cell::new(MAX_DWARF_BYTES);
    let load = |id: gimli::SectionId| -> Result<Cow<'data, [u8]>, gimli::Error> {
        let empty = Cow::Borrowed(&[][..]);
        if !DWARF_NEEDED.contains(&id) {
            return Ok(empty);
        }
        let Some(section) = elf.section_by_name(id.name()) else {
            return Ok(empty);
        };
        let stated = section
            .compressed_data()
            .map_or(u64::MAX, |c| c.uncompressed_size);
        let Some(rest) = left
            .get()
            .checked_sub(stated)
            .filter(|_| stated <= MAX_SECTION_BYTES)
        else {
            return Ok(empty);
        };
        left.set(rest);
        Ok(elf_data::section_bytes(&section).unwrap_or(empty))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut found: [Option<u32>; MEMBERS.len()] = [None; MEMBERS.len()];
        let mut structs_seen = 0;
        // The struct whose members are being read, and its depth.
        let mut inside: Option<(&[u8], isize)> = None;
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            let depth = entry.depth();
            if inside.is_some_and(|(_, at)| depth <= at) {
                inside = None;
                if structs_seen == 2 {
                    break;
                }
            }
            let name = entry
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(&unit, v).ok())
                .map(|s| s.slice());
            let Some((wanted, at)) = inside else {
                if entry.tag() == gimli::DW_TAG_structure_type
                    && let Some(name) = name
                    && MEMBERS.iter().any(|(s, _)| *s == name)
                {
                    inside = Some((name, depth));
                    structs_seen += 1;
                }
                continue;
            };
            if entry.tag() != gimli::DW_TAG_member || depth != at + 1 {
                continue;
            }
            let offset = entry
                .attr_value(gimli::DW_AT_data_member_location)
                .and_then(|v| v.udata_value())
                .and_then(|v| u32::try_from(v).ok());
            if let Some(i) = MEMBERS
                .iter()
                .position(|&(s, m)| s == wanted && Some(m) == name)
            {
                found[i] = offset;
            }
        }
        if structs_seen > 0 {
            let [g_goid, g_status, g_m, g_labels, m_g0, m_curg] = found;
            return Some(RuntimeLayout {
                g_goid: g_goid?,
                g_status: g_status?,
                g_m: g_m?,
                g_labels: g_labels?,
                m_g0: m_g0?,
                m_curg: m_curg?,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_the_releases_it_was_read_from() {
        assert_eq!(by_version(24).map(|l| l.g_labels), Some(352));
        assert_eq!(by_version(27).map(|l| l.m_curg), Some(184));
        assert_eq!(by_version(22), None);
    }
}
