//! jitdump files (`jit-PID.dump`), which `node --perf-prof` and other JITs write for
//! `perf inject`: a header, then records, among them one per generated function
//! (`JIT_CODE_LOAD`: its address, size and name, then its code). Read as a perf map: the
//! names by address range, the code skipped.
//!
//! The format is the Linux perf tools' (`tools/perf/Documentation/jitdump-specification.txt`);
//! only files in this machine's byte order are read, as perf reads them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::process::perfmap::{MAX_COUNTED_BYTES, Parser, PerfMap};
use crate::process::procmaps::MapEntry;

/// `JiTD` as a little-endian u32: the file's first word in this machine's byte order.
const MAGIC: u32 = 0x4A69_5444;

/// A record naming a generated function.
const JIT_CODE_LOAD: u32 = 0;

/// Bytes of a record's header: id, total size, timestamp.
const RECORD_HEADER: u64 = 16;

/// Bytes of a `JIT_CODE_LOAD` record's fixed fields after its header: pid, tid, vma,
/// code address, code size, code index.
const CODE_LOAD_FIELDS: usize = 40;

/// The longest function name read; a longer one is cut.
const MAX_NAME: usize = 4096;

/// The jitdump files of the processes that map one, held open: a JIT buffers its records
/// and writes the last ones as it exits, when the file can no longer be reached through
/// the process, so it is read once more through the descriptor held.
#[derive(Debug, Default)]
pub struct HeldJitdumps(HashMap<u32, Held>);

/// One process's jitdump file.
#[derive(Debug)]
pub struct Held {
    /// The process's real uid when it was opened, which the file must belong to.
    pub uid: u32,
    /// The file, opened through the process's mapping of it.
    pub file: File,
}

impl HeldJitdumps {
    /// The jitdump file of process `pid` (uid `uid`), opened through its mapping in
    /// `maps` the first time; `None` when it maps none.
    pub fn of(&mut self, pid: u32, uid: Option<u32>, maps: &[MapEntry]) -> Option<&Held> {
        match self.0.entry(pid) {
            std::collections::hash_map::Entry::Occupied(held) => Some(held.into_mut()),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                let mapping = maps.iter().find(|m| is_jitdump(&m.path))?;
                // The mapped file itself, whatever its name is now; checked as any file
                // followed.
                let path = format!(
                    "/proc/{pid}/map_files/{:x}-{:x}",
                    mapping.start, mapping.end
                );
                let file = crate::sys::safe_open::open_regular_following(Path::new(&path)).ok()?;
                Some(vacant.insert(Held { uid: uid?, file }))
            }
        }
    }

    /// The file held for process `pid`, without opening one.
    pub fn held(&self, pid: u32) -> Option<&Held> {
        self.0.get(&pid)
    }

    /// Closes the file of process `pid`.
    pub fn release(&mut self, pid: u32) {
        self.0.remove(&pid);
    }
}

/// Whether a mapping's path is a jitdump file's (`jit-PID.dump`).
fn is_jitdump(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.starts_with("jit-") && file.ends_with(".dump")
}

/// Reads the records in the first `cap` bytes of a jitdump file (a record cut by the cap
/// is not read), then counts the functions past it without reading them; `None` when it
/// is not a jitdump file in this machine's byte order.
pub fn read_capped(file: File, cap: u64) -> Option<PerfMap> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut header = [0u8; 12];
    reader.read_exact(&mut header).ok()?;
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC {
        return None;
    }
    // The header's own size, which later versions may grow.
    let mut at = u64::from(word(8)).max(12);
    reader.seek_relative(at as i64 - 12).ok()?;
    let mut parser = Parser::new();
    let mut dropped = 0;
    let mut more = false;
    while let Some((id, size)) = record_header(&mut reader) {
        if size < RECORD_HEADER {
            // A malformed record: nothing after it can be framed.
            break;
        }
        let end = at.saturating_add(size);
        if end > cap {
            if end > cap.saturating_add(MAX_COUNTED_BYTES) {
                more = true;
                break;
            }
            dropped += u64::from(id == JIT_CODE_LOAD);
        } else if id == JIT_CODE_LOAD {
            code_load(&mut reader, size - RECORD_HEADER, &mut parser)?;
            at = end;
            continue;
        }
        if reader.seek_relative((size - RECORD_HEADER) as i64).is_err() {
            break;
        }
        at = end;
    }
    let read = at.min(cap);
    Some(parser.finish().with_read(read, dropped, more))
}

/// The next record's id and total size; `None` at the end of the file.
fn record_header(reader: &mut impl Read) -> Option<(u32, u64)> {
    let mut header = [0u8; RECORD_HEADER as usize];
    reader.read_exact(&mut header).ok()?;
    let id = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let size = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    Some((id, u64::from(size)))
}

/// Reads a `JIT_CODE_LOAD` record's body of `body` bytes into the parser: its address,
/// size and name; the code after the name is skipped.
fn code_load(reader: &mut BufReader<File>, body: u64, parser: &mut Parser) -> Option<()> {
    if body < CODE_LOAD_FIELDS as u64 {
        reader.seek_relative(body as i64).ok()?;
        return Some(());
    }
    let mut fields = [0u8; CODE_LOAD_FIELDS];
    reader.read_exact(&mut fields).ok()?;
    let field = |at: usize| u64::from_le_bytes(fields[at..at + 8].try_into().expect("8 bytes"));
    let (code_addr, code_size) = (field(16), field(24));
    let rest = body - CODE_LOAD_FIELDS as u64;
    let mut name = Vec::new();
    let ended = reader
        .by_ref()
        .take(rest.min(MAX_NAME as u64))
        .read_until_nul(&mut name)
        .ok()?;
    parser.add(code_addr, code_size, &String::from_utf8_lossy(&name));
    // The NUL was read only if one was found within the name's cap.
    let consumed = (name.len() as u64 + u64::from(ended)).min(rest);
    reader.seek_relative((rest - consumed) as i64).ok()?;
    Some(())
}

/// Reads up to and including a NUL (not kept), or to the end of what may be read.
trait ReadUntilNul {
    /// Whether a NUL ended what was read.
    fn read_until_nul(&mut self, out: &mut Vec<u8>) -> io::Result<bool>;
}

impl<R: io::BufRead> ReadUntilNul for R {
    fn read_until_nul(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        self.read_until(0, out)?;
        let ended = out.last() == Some(&0);
        if ended {
            out.pop();
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A jitdump file of `functions` (address, size, name), each with 32 bytes of code,
    /// and one record of another kind between them.
    fn jitdump(functions: &[(u64, u64, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(40u32.to_le_bytes());
        out.resize(40, 0);
        for &(addr, size, name) in functions {
            let total = 16 + 40 + name.len() + 1 + 32;
            out.extend(JIT_CODE_LOAD.to_le_bytes());
            out.extend((total as u32).to_le_bytes());
            out.extend(0u64.to_le_bytes());
            out.extend([1u32, 1].iter().flat_map(|v| v.to_le_bytes()));
            for v in [addr, addr, size, 0] {
                out.extend(v.to_le_bytes());
            }
            out.extend(name.as_bytes());
            out.push(0);
            out.extend([0xcc; 32]);
            // A debug-info record, skipped.
            out.extend(2u32.to_le_bytes());
            out.extend(24u32.to_le_bytes());
            out.extend([0u8; 16]);
        }
        out
    }

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jit-1.dump");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    #[test]
    fn code_loads_name_their_ranges() {
        let bytes = jitdump(&[
            (0x1000, 0x40, "JS:*spin a.js:3"),
            (0x2000, 0x10, "Builtin:Add"),
        ]);
        let (_dir, file) = file_of(&bytes);
        let map = read_capped(file, u64::MAX).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map.lookup(0x103f), Some("JS:*spin a.js:3"));
        assert_eq!(map.lookup(0x2008), Some("Builtin:Add"));
        assert_eq!(map.lookup(0x2010), None);
        assert_eq!(map.dropped(), (0, false));
    }

    #[test]
    fn a_name_past_its_cap_leaves_the_next_record_readable() {
        let long = "x".repeat(MAX_NAME + 10);
        let bytes = jitdump(&[(0x1000, 0x40, long.as_str()), (0x2000, 0x10, "after")]);
        let (_dir, file) = file_of(&bytes);
        let map = read_capped(file, u64::MAX).unwrap();
        assert_eq!(map.lookup(0x2008), Some("after"));
        assert_eq!(map.lookup(0x1000).map(str::len), Some(MAX_NAME));
    }

    #[test]
    fn past_the_cap_functions_are_counted_not_read() {
        let functions: Vec<(u64, u64, String)> = (0..10)
            .map(|i| (0x1000 + i * 0x100, 0x10, format!("f{i}")))
            .collect();
        let refs: Vec<(u64, u64, &str)> = functions
            .iter()
            .map(|(a, s, n)| (*a, *s, n.as_str()))
            .collect();
        let bytes = jitdump(&refs);
        // The header and four functions with their debug records fit.
        let one = (16 + 40 + 3 + 32) + 24;
        let (_dir, file) = file_of(&bytes);
        let map = read_capped(file, 40 + 4 * one as u64 + 10).unwrap();
        assert_eq!(map.len(), 4);
        assert_eq!(map.dropped(), (6, false));
        let (_dir, other) = file_of(b"not a jitdump file at all");
        assert_eq!(read_capped(other, u64::MAX), None);
    }
}
