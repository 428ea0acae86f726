//! CPython processes: found from their mappings, their thread states handed to the kernel,
//! and the Python frames their CPU samples carry named and spliced into the native stack
//! in place of each `_PyEval_EvalFrameDefault` activation.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use profiler_common::{
    PYTHON_FRAMES_MAX, PYTHON_NOT_A_THREAD, PythonFrames, PythonProcess, python_code_key,
};

use crate::collect::python_code::{decode_string, line_of, string_shape};
use crate::collect::python_layout::{
    Activation, FRAME_OWNED_BY_CSTACK, GLIBC_PTHREAD_TID, Instruction, Layout,
};
use crate::process::procmaps::ProcessInfo;

mod cold;
mod find;
mod symbols;
use find::find;
use symbols::SymbolsCache;

/// A Python frame as the profile names it: qualified name, file and line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PythonFrameName {
    /// `co_qualname` (3.11 on) or `co_name`.
    pub function: String,
    /// `co_filename`.
    pub file: String,
    /// The line the frame was at.
    pub line: u32,
}

/// Longest string read from a code object (names and file names).
const MAX_STRING: u64 = 4096;
/// Longest line table read.
const MAX_LINE_TABLE: u64 = 256 << 10;
/// Threads read from one interpreter's list, at most.
const MAX_THREADS: usize = 4096;
/// The most code objects kept read over the run, and the most bytes their names and line
/// tables may hold: a program that makes code objects without end (generated code, `exec`
/// in a loop) must not grow the profiler without bound. Past either, a new code object's
/// frames are left out and counted ([`PythonStats::over_budget`]).
const MAX_CODES: usize = 1 << 18;
const MAX_CODE_BYTES: u64 = 128 << 20;
/// How often a process's thread list may be read again for a thread not yet known: a
/// new thread's samples stay native until then (250 ms cost a 2-thread program 130 of
/// its 920 samples at 499 Hz). A read is a few words per thread.
const RESCAN_EVERY: Duration = Duration::from_millis(20);
/// How long a sampled thread may be missing from its interpreter's list before the kernel
/// is told it is no Python thread ([`PYTHON_NOT_A_THREAD`]): a new Python thread's state
/// names its thread id only once the thread runs, so a young thread may be missing for a
/// moment; a native thread stays missing.
const NATIVE_AFTER: Duration = Duration::from_millis(200);
/// How often the list is read again for a thread taken for a native one, in case it
/// became a Python thread (`PyGILState_Ensure`) or its id went to a new Python thread.
const NATIVE_RESCAN_EVERY: Duration = Duration::from_secs(1);

/// What was found of CPython in one process.
struct PythonCode {
    layout: Layout,
    /// The interpreter's mapping: its start and file.
    mapped: (u64, String),
    /// Where `_PyEval_EvalFrameDefault` lies.
    eval: Vec<Range<u64>>,
    /// `_PyRuntime`'s address.
    runtime: u64,
    /// `PyCode_Type`'s address: a code object's `ob_type`.
    code_type: u64,
    mem: File,
    /// Threads whose state the kernel was given.
    threads: HashSet<u32>,
    /// Sampled threads missing from the list, since when (at most [`MAX_THREADS`]).
    missing: HashMap<u32, Instant>,
    /// Threads the kernel was told are no Python threads (at most [`MAX_THREADS`]).
    natives: HashSet<u32>,
    scanned: Option<Instant>,
}

/// A code object's names and line table, read once.
struct Code {
    /// [`python_code_key`] of what was read: a read that raced with the object's reuse
    /// does not match the frame's.
    key: u64,
    function: String,
    file: String,
    first_line: u32,
    lines: Vec<u8>,
}

/// How many CPU samples of Python processes had their frames named, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PythonStats {
    /// Samples that carried Python frames.
    pub samples: u64,
    /// Of those, samples whose frames all went in place of an evaluation loop frame.
    pub spliced: u64,
    /// Frames whose code object could not be read.
    pub unreadable: u64,
    /// Frames whose code object was not read: the code cache's budget
    /// ([`MAX_CODES`], [`MAX_CODE_BYTES`]) was spent.
    pub over_budget: u64,
    /// Bit `n` set: a process ran CPython 3.`n`, whose frames are not read.
    pub unsupported_minors: u64,
}

impl PythonStats {
    /// The CPython 3 minor versions met whose frames are not read.
    pub fn unsupported(&self) -> Vec<u32> {
        (0..64)
            .filter(|m| self.unsupported_minors & (1 << m) != 0)
            .collect()
    }
}

/// Finds CPython processes and names their samples' Python frames.
#[derive(Default)]
pub struct PythonTracker {
    /// Per process, by mapping generation: what was found, `None` for no CPython whose
    /// frames are read.
    processes: HashMap<u32, (u64, Option<PythonCode>)>,
    /// Code objects by (pid, address, key): the key the kernel read with the frame
    /// ([`python_code_key`]) tells a code object from a later one at the same address.
    codes: HashMap<(u32, u64, u64), Option<Code>>,
    /// Bytes the code objects in `codes` hold (names, files, line tables).
    code_bytes: u64,
    /// The symbols of the interpreter files read, by file.
    files: SymbolsCache,
    /// Processes and threads to hand to the kernel.
    new_processes: Vec<(u32, PythonProcess)>,
    new_threads: Vec<(u32, u64)>,
    /// What became of the samples' frames.
    pub stats: PythonStats,
    /// No process is looked at (`--no-python-frames`): the kernel never walks a frame.
    off: bool,
}

impl PythonTracker {
    /// A tracker that looks at no process: CPython's samples keep their native frames.
    pub fn off() -> Self {
        Self {
            off: true,
            ..Self::default()
        }
    }

    /// Looks at process `pid`'s mappings when they are new or changed: a CPython
    /// interpreter among them is handed to the kernel with its threads.
    pub fn check(&mut self, pid: u32, process: &ProcessInfo) {
        if self.off
            || self
                .processes
                .get(&pid)
                .is_some_and(|(generation, _)| *generation == process.generation)
        {
            return;
        }
        // A library loaded since (an extension module) leaves the interpreter where it
        // was: its code objects and threads stay known.
        if let Some((generation, Some(code))) = self.processes.get_mut(&pid)
            && process
                .maps
                .iter()
                .any(|m| m.start == code.mapped.0 && m.path == code.mapped.1)
        {
            *generation = process.generation;
            return;
        }
        // A new program (exec) or none: its addresses mean other objects now.
        self.forget(pid);
        let found = find(
            pid,
            process,
            &mut self.files,
            &mut self.stats.unsupported_minors,
        );
        if let Some(code) = &found {
            log::debug!(
                "pid {pid}: CPython 3.{} (runtime {:#x}, {} eval ranges)",
                code.layout.minor,
                code.runtime,
                code.eval.len()
            );
            self.new_processes
                .push((pid, code.layout.kernel_for(code.runtime)));
        }
        self.processes.insert(pid, (process.generation, found));
        self.scan_threads(pid);
    }

    /// Forgets process `pid`, which executed a new program or exited: its memory, threads
    /// and code objects are another program's or none, and its code objects' bytes go back
    /// to the budget.
    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
        let mut freed = 0u64;
        self.codes.retain(|(p, _, _), code| {
            let kept = *p != pid;
            if !kept {
                freed += code.as_ref().map_or(0, Code::bytes);
            }
            kept
        });
        self.code_bytes = self.code_bytes.saturating_sub(freed);
    }

    /// Forgets the processes that exited (their samples are drained before a tick asks).
    pub fn forget_exited(&mut self) {
        let gone: Vec<u32> = self
            .processes
            .keys()
            .copied()
            .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        for pid in gone {
            self.forget(pid);
        }
    }

    /// Reads the thread list of process `pid` again when its thread `tid` is not known
    /// yet (at most every [`RESCAN_EVERY`], or [`NATIVE_RESCAN_EVERY`] for a thread taken
    /// for a native one); a thread still missing from it after [`NATIVE_AFTER`] is handed
    /// to the kernel as no Python thread.
    pub fn note_thread(&mut self, pid: u32, tid: u32) {
        let Some((_, Some(code))) = self.processes.get_mut(&pid) else {
            return;
        };
        if code.threads.contains(&tid) {
            return;
        }
        let every = if code.natives.contains(&tid) {
            NATIVE_RESCAN_EVERY
        } else {
            RESCAN_EVERY
        };
        if code.scanned.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.scan_threads(pid);
        let Some((_, Some(code))) = self.processes.get_mut(&pid) else {
            return;
        };
        if code.threads.contains(&tid) {
            code.missing.remove(&tid);
            code.natives.remove(&tid);
            return;
        }
        if code.natives.contains(&tid) || code.missing.len() >= MAX_THREADS {
            return;
        }
        let since = *code.missing.entry(tid).or_insert_with(Instant::now);
        if since.elapsed() >= NATIVE_AFTER && code.natives.len() < MAX_THREADS {
            code.missing.remove(&tid);
            code.natives.insert(tid);
            self.new_threads.push((tid, PYTHON_NOT_A_THREAD));
        }
    }

    /// The processes and threads found since the last call, for the kernel's maps.
    pub fn take_new(&mut self) -> NewPython {
        NewPython {
            processes: std::mem::take(&mut self.new_processes),
            threads: std::mem::take(&mut self.new_threads),
        }
    }

    fn scan_threads(&mut self, pid: u32) {
        let Some((_, Some(code))) = self.processes.get_mut(&pid) else {
            return;
        };
        code.scanned = Some(Instant::now());
        let layout = &code.layout;
        let read = |addr: u64| read_u64(&code.mem, addr);
        let Some(interp) =
            read(code.runtime.wrapping_add(layout.interpreters_head)).filter(|&a| a != 0)
        else {
            return;
        };
        let mut tstate = read(interp.wrapping_add(layout.threads_head)).unwrap_or(0);
        let mut found = Vec::new();
        while tstate != 0 && found.len() < MAX_THREADS {
            let tid = match layout.tstate_native_id {
                Some(offset) => read(tstate.wrapping_add(offset)).map(|w| w as u32),
                None => read(tstate.wrapping_add(layout.tstate_thread_id))
                    .and_then(|pthread| read(pthread.wrapping_add(GLIBC_PTHREAD_TID)))
                    .map(|w| w as u32),
            };
            if let Some(tid) = tid.filter(|&t| t != 0) {
                found.push((tid, tstate));
            }
            tstate = read(tstate.wrapping_add(layout.tstate_next)).unwrap_or(0);
        }
        for (tid, tstate) in found {
            if code.threads.insert(tid) {
                code.natives.remove(&tid);
                self.new_threads.push((tid, tstate));
            }
        }
    }

    /// `native` (leaf first) with the Python frames of `frames` in place of the
    /// evaluation loop's frames they ran in, each interned by `intern`.
    pub fn splice(
        &mut self,
        pid: u32,
        native: &[u64],
        frames: &PythonFrames,
        mut intern: impl FnMut(PythonFrameName) -> u32,
    ) -> Option<Vec<Splice>> {
        let Some((_, Some(code))) = self.processes.get(&pid) else {
            return None;
        };
        let (layout, eval) = (code.layout, code.eval.clone());
        self.stats.samples += 1;
        let count = (frames.count as usize).min(PYTHON_FRAMES_MAX);
        let mut next = 0usize;
        let mut out = Vec::with_capacity(native.len() + count);
        for (i, &address) in native.iter().enumerate() {
            let lookup = if i == 0 {
                address
            } else {
                address.saturating_sub(1)
            };
            if next >= count || !eval.iter().any(|r| r.contains(&lookup)) {
                out.push(Splice::Native(i));
                continue;
            }
            let before = out.len();
            while next < count {
                let frame = frames.frames[next];
                let marker = frames.markers[next];
                next += 1;
                if layout.activation == Activation::UpToShim && marker == FRAME_OWNED_BY_CSTACK {
                    break;
                }
                match self.name(pid, frame.code, frame.key, frame.instr) {
                    Named::Frame(name) => out.push(Splice::Python(intern(name))),
                    Named::Unreadable => self.stats.unreadable += 1,
                    Named::OverBudget => self.stats.over_budget += 1,
                }
                let ends = match layout.activation {
                    Activation::EachFrame => true,
                    Activation::UpToEntry => marker != 0,
                    Activation::UpToShim => false,
                };
                if ends {
                    break;
                }
            }
            if out.len() == before {
                out.push(Splice::Native(i));
            }
        }
        if next >= count {
            self.stats.spliced += 1;
        }
        Some(out)
    }

    /// The name and line of the frame running code object `code` at instruction word
    /// `instr`, or why there is none.
    fn name(&mut self, pid: u32, code_addr: u64, key: u64, instr: u64) -> Named {
        let Some((_, Some(python))) = self.processes.get(&pid) else {
            return Named::Unreadable;
        };
        let entry = (pid, code_addr, key);
        if !self.codes.contains_key(&entry) {
            if self.codes.len() >= MAX_CODES || self.code_bytes >= MAX_CODE_BYTES {
                return Named::OverBudget;
            }
            let code = read_code(python, code_addr).filter(|c| c.key == key);
            self.code_bytes += code.as_ref().map_or(0, Code::bytes);
            self.codes.insert(entry, code);
        }
        let Some(Some(code)) = self.codes.get(&entry) else {
            return Named::Unreadable;
        };
        let layout = python.layout;
        let offset = match layout.instruction {
            Instruction::LastiBytes => u64::try_from(instr as u32 as i32).ok(),
            Instruction::LastiUnits => u64::try_from(instr as u32 as i32).ok().map(|u| u * 2),
            Instruction::Pointer => {
                let start = code_addr.wrapping_add(layout.code_bytecode.unwrap_or(0));
                instr.checked_sub(start)
            }
        };
        let line = offset.map_or(code.first_line, |offset| {
            line_of(layout.lines, &code.lines, code.first_line, offset)
        });
        Named::Frame(PythonFrameName {
            function: code.function.clone(),
            file: code.file.clone(),
            line,
        })
    }
}

/// A Python frame's name, or why it has none.
enum Named {
    Frame(PythonFrameName),
    /// Its code object could not be read, or was not one.
    Unreadable,
    /// Its code object was not read: the code cache's budget was spent.
    OverBudget,
}

impl Code {
    /// The bytes it holds, for the cache's budget.
    fn bytes(&self) -> u64 {
        (self.function.len() + self.file.len() + self.lines.len()) as u64
    }
}

/// What the kernel is to be told of CPython processes found since it was last told.
#[derive(Debug, Default)]
pub struct NewPython {
    /// Processes (pid) and where their frames are.
    pub processes: Vec<(u32, PythonProcess)>,
    /// Threads (tid) and their `PyThreadState` addresses, or [`PYTHON_NOT_A_THREAD`].
    pub threads: Vec<(u32, u64)>,
}

/// One frame of a spliced stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Splice {
    /// The native frame at this index of the unwound stack.
    Native(usize),
    /// A Python frame, by the number `intern` gave it.
    Python(u32),
}

fn read_bytes(mem: &File, addr: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    mem.read_exact_at(&mut buf, addr).ok()?;
    Some(buf)
}

fn read_u64(mem: &File, addr: u64) -> Option<u64> {
    let mut buf = [0u8; 8];
    mem.read_exact_at(&mut buf, addr).ok()?;
    Some(u64::from_le_bytes(buf))
}

/// Reads the code object at `addr`: `None` unless its type is the process's code type.
fn read_code(python: &PythonCode, addr: u64) -> Option<Code> {
    let layout = &python.layout;
    let mem = &python.mem;
    if read_u64(mem, addr.wrapping_add(8))? != python.code_type {
        return None;
    }
    let word = |offset: u64| read_u64(mem, addr.wrapping_add(offset));
    let name_at = layout.code_qualname.unwrap_or(layout.code_name);
    let function = read_string(python, word(name_at)?)?;
    let file = read_string(python, word(layout.code_filename)?)?;
    let first_line = word(layout.code_firstlineno)? as u32;
    let key = python_code_key(word(layout.code_name)?, first_line);
    let table = word(layout.code_linetable)?;
    let lines = read_bytes_object(mem, table).unwrap_or_default();
    Some(Code {
        key,
        function,
        file,
        first_line,
        lines,
    })
}

/// A `str` object's text: compact strings only (what code objects hold).
fn read_string(python: &PythonCode, addr: u64) -> Option<String> {
    let mem = &python.mem;
    let length = read_u64(mem, addr.wrapping_add(16))?;
    let state = read_u64(mem, addr.wrapping_add(32))? as u32;
    let (kind, compact, ascii) = string_shape(state);
    if !compact || length > MAX_STRING {
        return None;
    }
    let (data, kind) = if ascii {
        (addr.wrapping_add(python.layout.ascii_header), 1)
    } else {
        (addr.wrapping_add(python.layout.compact_header), kind)
    };
    let bytes = read_bytes(mem, data, length * u64::from(kind.max(1)))?;
    decode_string(&bytes, kind)
}

/// A `bytes` object's contents (`ob_size` at 16, `ob_sval` at 32 in every version).
fn read_bytes_object(mem: &File, addr: u64) -> Option<Vec<u8>> {
    let length = read_u64(mem, addr.wrapping_add(16))?;
    if length > MAX_LINE_TABLE {
        return None;
    }
    read_bytes(mem, addr.wrapping_add(32), length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::python_layout::layout;

    /// A tracker that knows process 1 as CPython 3.11 whose memory reads nothing.
    fn tracker() -> PythonTracker {
        let code = PythonCode {
            layout: layout(11).expect("3.11 is read"),
            mapped: (0, String::new()),
            eval: Vec::new(),
            runtime: 0,
            code_type: 0,
            mem: File::open("/dev/null").expect("/dev/null"),
            threads: HashSet::new(),
            missing: HashMap::new(),
            natives: HashSet::new(),
            scanned: None,
        };
        let mut tracker = PythonTracker::default();
        tracker.processes.insert(1, (0, Some(code)));
        tracker
    }

    #[test]
    fn a_thread_missing_from_the_list_for_a_while_is_handed_on_as_native() {
        let mut t = tracker();
        // Missing at the first read: a young Python thread may be, so nothing yet.
        t.note_thread(1, 42);
        assert!(t.take_new().threads.is_empty());
        std::thread::sleep(NATIVE_AFTER + Duration::from_millis(10));
        t.note_thread(1, 42);
        assert_eq!(t.take_new().threads, [(42, PYTHON_NOT_A_THREAD)]);
        // Read again for it only every NATIVE_RESCAN_EVERY, and not handed on twice.
        t.note_thread(1, 42);
        assert!(t.take_new().threads.is_empty());
        let scanned = t.processes[&1].1.as_ref().and_then(|c| c.scanned);
        t.note_thread(1, 42);
        assert_eq!(t.processes[&1].1.as_ref().and_then(|c| c.scanned), scanned);
    }

    #[test]
    fn code_objects_are_read_within_the_cache_s_budget() {
        let mut t = tracker();
        // Unreadable memory: counted as such, and remembered, so not read again.
        assert!(matches!(t.name(1, 0x1000, 7, 0), Named::Unreadable));
        assert_eq!(t.codes.len(), 1);
        assert!(matches!(t.name(1, 0x1000, 7, 0), Named::Unreadable));
        assert_eq!(t.codes.len(), 1);
        // Past the bytes held, a new code object is not read at all.
        t.code_bytes = MAX_CODE_BYTES;
        assert!(matches!(t.name(1, 0x2000, 7, 0), Named::OverBudget));
        assert_eq!(t.codes.len(), 1);
        // A process forgotten (exec, exit) leaves none of its code objects behind.
        t.forget(1);
        assert!(t.codes.is_empty() && t.processes.is_empty());
    }
}
