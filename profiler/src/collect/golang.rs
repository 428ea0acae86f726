//! Recognises Go binaries and reads what the goroutine probes need from them: the Go
//! version (build info), the file offsets of `runtime.gopark` and `runtime.ready`, the
//! offsets of `goid` and `atomicstatus` in the runtime's `g` (from DWARF, else by
//! version), and the names of the wait reasons (`runtime.waitReasonStrings`), read from the
//! binary because their numbering shifts between releases.

use std::path::Path;

use iced_x86::Register;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadRef};

pub use crate::collect::go_layout::LayoutSource;

use crate::collect::go_layout;
use crate::collect::probe_point::{Reads, probe_point};
use crate::collect::target_elf::{self, Links, Refusal};
use crate::process::elf_data::{self, BoundedFile};

/// Oldest Go release whose register ABI the probes read (`g` in R14, arguments in
/// registers): 1.17 on x86-64.
pub(crate) const MIN_MINOR: u32 = 17;

/// Most entries of `runtime.waitReasonStrings` read (Go has about 40).
const MAX_WAIT_REASONS: u64 = 1024;

/// What the goroutine probes need of one Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBinary {
    /// The Go release that built it (`go1.21.13`), from its build info.
    pub version: String,
    /// Where to probe `runtime.gopark`: on the first instruction past its stack check
    /// that costs one trap, else on the check's branch ([`probe_point`]).
    pub gopark: ProbeAt,
    /// Where to probe `runtime.ready`, likewise.
    pub ready: ProbeAt,
    /// Byte offset of `goid` in `runtime.g`.
    pub goid_offset: u32,
    /// Byte offset of `atomicstatus` in `runtime.g`, to tell at the end of a run whether a
    /// goroutine recorded as parked still is.
    pub status_offset: u32,
    /// Where the offsets in `g` came from.
    pub layout_from: LayoutSource,
    /// Wait reason names by the runtime's `waitReason` value (empty when the table could
    /// not be read: reasons are then shown by number).
    pub reasons: Vec<String>,
}

/// Where in a Go binary a runtime function is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeAt {
    /// The file offset.
    pub offset: u64,
    /// Whether it is the branch of the function's stack check, whose programs must skip
    /// a hit that branches to `morestack` ([`crate::collect::probe_point::Point`]).
    pub at_stack_check: bool,
}

/// Why a binary's goroutines cannot be traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTraceable {
    /// Not an ELF file the profiler can read.
    Unreadable(String),
    /// Not a Go binary (no build info).
    NotGo,
    /// Built by a Go older than 1.17, whose stack-based calling convention the probes do
    /// not read.
    TooOld(String),
    /// A runtime symbol the probes need is missing (a stripped binary).
    NoSymbol(&'static str),
    /// The layout of `g` is unknown: no DWARF, and a version the profiler has no table for.
    UnknownLayout(String),
    /// Reading what the probes need would pass the collecting side's budget
    /// ([`target_elf`]); the sentence says which.
    OverBudget(String),
}

impl From<Refusal> for NotTraceable {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unreadable(why) => Self::Unreadable(why),
            Refusal::NotElf => Self::Unreadable("not an ELF file".to_owned()),
            Refusal::OverBudget(why) => Self::OverBudget(why),
        }
    }
}

impl std::fmt::Display for NotTraceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable(why) => write!(f, "cannot read it: {why}"),
            Self::NotGo => write!(f, "not a Go binary"),
            Self::TooOld(v) => write!(f, "built by {v}; goroutine waits need Go 1.17 or later"),
            Self::NoSymbol(name) => write!(
                f,
                "it has no symbol {name} (stripped with -s?); rebuild without -ldflags=-s"
            ),
            Self::UnknownLayout(v) => write!(
                f,
                "it has no DWARF (-ldflags=-w) and {v} is not in the profiler's table of \
                 goroutine layouts; rebuild without -w"
            ),
            Self::OverBudget(why) => write!(f, "refused, over budget: {why}"),
        }
    }
}

/// Whether the file at `path` looks like a Go binary, from its section headers only
/// (`path` is `/proc/PID/exe` or a held descriptor's path: followed, to a regular file).
/// Its symbol table is not read, so a Go binary refused for its size is still one.
pub fn is_go(path: &Path) -> bool {
    target_elf::open_unchecked(path, Links::Followed)
        .is_ok_and(|data| target_elf::has_section(&data, b".go.buildinfo"))
}

/// Reads what the goroutine probes need from the Go binary at `path` (followed as in
/// [`is_go`]): its headers, symbol table, build info, the code at two functions and the
/// DWARF of `runtime.g`, within [`target_elf`]'s budget; never the whole file.
///
/// # Errors
/// When it is not a Go binary the probes can trace, and why (see [`NotTraceable`]).
pub fn inspect(path: &Path) -> Result<GoBinary, NotTraceable> {
    let data = target_elf::open(path, Links::Followed)?;
    let inspected = inspect_data(&data);
    // A table the probes needed that was refused for its size is the reason, not the
    // missing symbol, build info or layout it left behind.
    match (inspected, target_elf::over_budget(&data)) {
        (Err(_), Some(refusal)) => Err(refusal.into()),
        (inspected, _) => inspected,
    }
}

fn inspect_data(data: &BoundedFile) -> Result<GoBinary, NotTraceable> {
    let elf = target_elf::parse(data)?;
    let version = build_version(&elf, data).ok_or(NotTraceable::NotGo)?;
    if minor_version(&version).is_some_and(|minor| minor < MIN_MINOR) {
        return Err(NotTraceable::TooOld(version));
    }
    let symbol = |name: &'static str| {
        elf.symbols()
            .find(|s| s.name() == Ok(name))
            .ok_or(NotTraceable::NoSymbol(name))
    };
    let probe_at =
        |name: &'static str, registers: &'static [Register]| -> Result<ProbeAt, NotTraceable> {
            let function = symbol(name)?;
            let reads = Reads {
                registers,
                go: true,
                morestack_aware: true,
            };
            let (addr, point) = probe_point(&elf, function.address(), function.size(), reads);
            let offset = elf_data::file_offset(&elf, addr).ok_or(NotTraceable::NoSymbol(name))?;
            Ok(ProbeAt {
                offset,
                at_stack_check: point.at_stack_check,
            })
        };
    // What go_park and go_ready read: the goroutine (R14, RAX) and the wait reason (CL).
    let gopark = probe_at("runtime.gopark", &[Register::R14, Register::RCX])?;
    let ready = probe_at("runtime.ready", &[Register::RAX])?;
    let reasons = symbol("runtime.waitReasonStrings")
        .ok()
        .map(|s| string_table(&elf, data, s.address(), s.size()))
        .unwrap_or_default();
    let (layout, layout_from) = go_layout::read(&elf, minor_version(&version))
        .ok_or_else(|| NotTraceable::UnknownLayout(version.clone()))?;
    Ok(GoBinary {
        version,
        gopark,
        ready,
        goid_offset: layout.g_goid,
        status_offset: layout.g_status,
        layout_from,
        reasons,
    })
}

/// The Go version in the binary's build info (`.go.buildinfo`): since Go 1.18 the version
/// string follows the 32-byte header inline, with a varint length; before, the header
/// holds a pointer to a Go string.
pub(crate) fn build_version<'data, R: ReadRef<'data>>(
    elf: &object::File<'data, R>,
    file: R,
) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let section = elf.section_by_name(".go.buildinfo")?;
    let data = section.data().ok()?;
    if !data.starts_with(MAGIC) || data.len() < 32 {
        return None;
    }
    let (ptr_size, flags) = (data[14], data[15]);
    if flags & 2 != 0 {
        let (len, used) = uvarint(&data[32..])?;
        let start = 32 + used;
        let bytes = data.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        return String::from_utf8(bytes.to_vec()).ok();
    }
    if ptr_size != 8 {
        return None;
    }
    let header = read_u64(elf, file, read_u64_at(data, 16)?)?;
    let len = read_u64(elf, file, read_u64_at(data, 16)?.checked_add(8)?)?;
    if len > 256 {
        return None;
    }
    let bytes = read_vaddr(elf, file, header, len)?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// The minor release of a version string such as `go1.21.13` (21).
pub(crate) fn minor_version(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn read_u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// `len` bytes of the file at virtual address `addr`: read alone, by its file offset in
/// the segment that holds it, not with its whole segment.
fn read_vaddr<'data, R: ReadRef<'data>>(
    elf: &object::File<'data, R>,
    data: R,
    addr: u64,
    len: u64,
) -> Option<&'data [u8]> {
    elf.segments().find_map(|seg| {
        let (offset, file_size) = seg.file_range();
        let start = seg.address();
        let end = start.checked_add(file_size.min(seg.size()))?;
        if addr < start || addr.checked_add(len)? > end {
            return None;
        }
        data.read_bytes_at(offset.checked_add(addr - start)?, len)
            .ok()
    })
}

fn read_u64<'data, R: ReadRef<'data>>(
    elf: &object::File<'data, R>,
    data: R,
    addr: u64,
) -> Option<u64> {
    let bytes = read_vaddr(elf, data, addr, 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// A Go `[N]string` array at `addr` of `size` bytes: each element is a pointer and a
/// length. An element that cannot be read is left empty; at most [`MAX_WAIT_REASONS`].
fn string_table<'data, R: ReadRef<'data>>(
    elf: &object::File<'data, R>,
    data: R,
    addr: u64,
    size: u64,
) -> Vec<String> {
    (0..(size / 16).min(MAX_WAIT_REASONS))
        .map(|i| {
            // A crafted symbol may lie at the top of the address space.
            let at = addr.wrapping_add(i * 16);
            let (Some(ptr), Some(len)) = (
                read_u64(elf, data, at),
                read_u64(elf, data, at.wrapping_add(8)),
            ) else {
                return String::new();
            };
            if len > 256 {
                return String::new();
            }
            read_vaddr(elf, data, ptr, len)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_by_minor_release() {
        assert_eq!(minor_version("go1.21.13"), Some(21));
        assert_eq!(minor_version("go1.9"), Some(9));
        assert_eq!(minor_version("devel +abc"), None);
    }

    #[test]
    fn varints_decode() {
        assert_eq!(uvarint(&[0x09, 0xff]), Some((9, 1)));
        assert_eq!(uvarint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }

    #[test]
    fn this_rust_binary_is_not_go() {
        let me = std::env::current_exe().unwrap();
        assert!(!is_go(&me));
        assert_eq!(inspect(&me), Err(NotTraceable::NotGo));
    }
}
