//! Where CPython 3.8 to 3.14 keep what the profiler reads: the thread list, each thread's
//! frame chain and each code object's names and line table, per minor version.
//!
//! Every offset was measured with `offsetof` compiled against each build's own headers
//! (`Py_BUILD_CORE`, internal headers included): pyenv's 3.8.18, 3.9.18, 3.10.13, 3.11.7,
//! 3.12.1, 3.13.0 and Debian's 3.11.2, whose offsets equal 3.11.7's; 3.14's are what the
//! `_Py_DebugOffsets` of Debian's 3.14.10 state (the frames read with them by hand from a
//! running interpreter's memory: code objects, and the C-stack shim frames of owner 3
//! with `None` as their executable). Within a minor
//! version these structures do not change (the same layouts py-spy and the OpenTelemetry
//! profiler table per minor). The probe's source is in the Python status notes.

use profiler_common::{PYTHON_NO_FIELD, PythonProcess};

/// The oldest and newest minor versions of CPython 3 whose frames are read.
pub const MINORS: std::ops::RangeInclusive<u32> = 8..=14;

/// Which frames of the chain one `_PyEval_EvalFrameDefault` activation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// 3.8 to 3.10: every frame is evaluated by a call of its own.
    EachFrame,
    /// 3.11: the frames up to and including the one whose `is_entry` is set.
    UpToEntry,
    /// 3.12 on: the frames up to the shim frame the call pushed first, owned by the C
    /// stack (`FRAME_OWNED_BY_CSTACK`), which is the activation's marker and no code.
    UpToShim,
}

/// `owner` of a frame the evaluation loop pushes as its activation's first (3.12 on).
pub const FRAME_OWNED_BY_CSTACK: u8 = 3;

/// What a frame's instruction word is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    /// `f_lasti`, a byte offset into the bytecode (3.8, 3.9); -1 before the first.
    LastiBytes,
    /// `f_lasti`, an offset in 2-byte code units (3.10).
    LastiUnits,
    /// A pointer into the code object's own bytecode (`co_code_adaptive`, 3.11 on).
    Pointer,
}

/// How a code object maps bytecode offsets to lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTable {
    /// `co_lnotab`: (bytes, line delta) pairs (3.8, 3.9).
    Lnotab,
    /// `co_linetable` of 3.10: (bytes, line delta or -128) pairs.
    Pairs,
    /// `co_linetable` of 3.11 on: the location table of variable-length entries.
    Locations,
}

/// One minor version's offsets, for the kernel and for reading memory from userspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// CPython 3's minor version.
    pub minor: u32,
    /// What the kernel walks the frame chain with.
    pub kernel: PythonProcess,
    /// `_PyRuntime.interpreters.head`.
    pub interpreters_head: u64,
    /// The interpreter's first thread state (`tstate_head`, `threads.head`).
    pub threads_head: u64,
    /// `PyThreadState.next`.
    pub tstate_next: u64,
    /// `PyThreadState.thread_id` (the thread's `pthread_t`).
    pub tstate_thread_id: u64,
    /// `PyThreadState.native_thread_id` (the kernel's tid), 3.11 on.
    pub tstate_native_id: Option<u64>,
    /// `PyCodeObject.co_name`, `co_qualname` (3.11 on), `co_filename`,
    /// `co_firstlineno` and the line table.
    pub code_name: u64,
    pub code_qualname: Option<u64>,
    pub code_filename: u64,
    pub code_firstlineno: u64,
    pub code_linetable: u64,
    /// Where the bytecode starts in the code object (`co_code_adaptive`), 3.11 on.
    pub code_bytecode: Option<u64>,
    /// `sizeof(PyASCIIObject)` and `sizeof(PyCompactUnicodeObject)`: where a compact
    /// string's characters start.
    pub ascii_header: u64,
    pub compact_header: u64,
    pub activation: Activation,
    pub instruction: Instruction,
    pub lines: LineTable,
}

impl Layout {
    /// What the kernel is given for a process whose `_PyRuntime` is at `runtime`: the
    /// frame offsets, and the thread list's, to find a thread its map does not hold.
    pub fn kernel_for(&self, runtime: u64) -> PythonProcess {
        let small = |offset: u64| u16::try_from(offset).unwrap_or(PYTHON_NO_FIELD);
        let (tstate_tid, pthread_tid) = match self.tstate_native_id {
            Some(offset) => (small(offset), 0),
            None => (small(self.tstate_thread_id), small(GLIBC_PTHREAD_TID)),
        };
        PythonProcess {
            tstate_tid,
            pthread_tid,
            tstate_next: small(self.tstate_next),
            threads_head: small(self.threads_head),
            code_name: small(self.code_name),
            code_firstlineno: small(self.code_firstlineno),
            interpreters_head: runtime.wrapping_add(self.interpreters_head),
            ..self.kernel
        }
    }
}

/// Offset of `tid` in glibc's `struct pthread` on x86-64 (720), for the versions whose
/// thread state has no `native_thread_id`: `thread_id` is the thread's `pthread_self()`.
/// Measured with glibc 2.36 here (a `pthread_self()` word equal to `gettid()`); the same
/// value the OpenTelemetry profiler and py-spy use.
pub const GLIBC_PTHREAD_TID: u64 = 0x2d0;

/// The layout of CPython 3.`minor`, if it is one whose frames are read.
pub fn layout(minor: u32) -> Option<Layout> {
    // The thread-list fields are set by `Layout::kernel_for`, from the fields below.
    let kernel = |tstate_frame, cframe_frame, code, previous, instr, marker| PythonProcess {
        tstate_frame,
        cframe_frame,
        frame_code: code,
        frame_previous: previous,
        frame_instr: instr,
        frame_marker: marker,
        ..PythonProcess::default()
    };
    let old = |lasti, lines, instruction| Layout {
        minor,
        // `PyFrameObject`: f_back 24, f_code 32.
        kernel: kernel(24, PYTHON_NO_FIELD, 32, 24, lasti, PYTHON_NO_FIELD),
        interpreters_head: 32,
        threads_head: 8,
        tstate_next: 8,
        tstate_thread_id: 176,
        tstate_native_id: None,
        code_name: 112,
        code_qualname: None,
        code_filename: 104,
        code_firstlineno: 40,
        code_linetable: 120,
        code_bytecode: None,
        ascii_header: 48,
        compact_header: 72,
        activation: Activation::EachFrame,
        instruction,
        lines,
    };
    Some(match minor {
        8 | 9 => old(104, LineTable::Lnotab, Instruction::LastiBytes),
        10 => old(96, LineTable::Pairs, Instruction::LastiUnits),
        11 => Layout {
            minor,
            // cframe 56 -> current_frame 8; _PyInterpreterFrame: f_code 32, previous 48,
            // prev_instr 56, is_entry 68.
            kernel: kernel(56, 8, 32, 48, 56, 68),
            interpreters_head: 40,
            threads_head: 16,
            tstate_next: 8,
            tstate_thread_id: 152,
            tstate_native_id: Some(160),
            code_name: 120,
            code_qualname: Some(128),
            code_filename: 112,
            code_firstlineno: 72,
            code_linetable: 136,
            code_bytecode: Some(184),
            ascii_header: 48,
            compact_header: 72,
            activation: Activation::UpToEntry,
            instruction: Instruction::Pointer,
            lines: LineTable::Locations,
        },
        12 => Layout {
            minor,
            // cframe 56 -> current_frame 0; f_code 0, previous 8, prev_instr 56, owner 70.
            kernel: kernel(56, 0, 0, 8, 56, 70),
            interpreters_head: 40,
            threads_head: 72,
            tstate_next: 8,
            tstate_thread_id: 136,
            tstate_native_id: Some(144),
            code_name: 120,
            code_qualname: Some(128),
            code_filename: 112,
            code_firstlineno: 68,
            code_linetable: 136,
            code_bytecode: Some(192),
            ascii_header: 40,
            compact_header: 56,
            activation: Activation::UpToShim,
            instruction: Instruction::Pointer,
            lines: LineTable::Locations,
        },
        13 => Layout {
            minor,
            // current_frame 72; f_executable 0, previous 8, instr_ptr 56, owner 70.
            kernel: kernel(72, PYTHON_NO_FIELD, 0, 8, 56, 70),
            interpreters_head: 632,
            threads_head: 7344,
            tstate_next: 8,
            tstate_thread_id: 152,
            tstate_native_id: Some(160),
            code_name: 120,
            code_qualname: Some(128),
            code_filename: 112,
            code_firstlineno: 68,
            code_linetable: 136,
            code_bytecode: Some(200),
            ascii_header: 40,
            compact_header: 56,
            activation: Activation::UpToShim,
            instruction: Instruction::Pointer,
            lines: LineTable::Locations,
        },
        // 3.13's but for these.
        14 => Layout {
            minor,
            // f_executable 0 (a tagged reference), owner 74.
            kernel: kernel(72, PYTHON_NO_FIELD, 0, 8, 56, 74),
            interpreters_head: 808,
            code_bytecode: Some(208),
            ..layout(13)?
        },
        _ => return None,
    })
}

/// Words of `_Py_DebugOffsets` read: up to the string header sizes of 3.14's.
pub const DEBUG_OFFSETS_WORDS: usize = 81;

/// Where `_Py_DebugOffsets` keeps each offset the profiler reads, as word indices: the
/// struct grows from one minor version to the next (3.14 added fields to the interpreter
/// state, the frame and the code object, and a set object before the dict).
struct DebugWords {
    interpreters_head: usize,
    threads_head: usize,
    tstate_next: usize,
    tstate_frame: usize,
    tstate_thread_id: usize,
    tstate_native_id: usize,
    frame_previous: usize,
    frame_code: usize,
    frame_instr: usize,
    frame_marker: usize,
    code_filename: usize,
    code_name: usize,
    code_qualname: usize,
    code_linetable: usize,
    code_firstlineno: usize,
    code_bytecode: usize,
    /// `PyBytesObject.ob_sval`, and `sizeof(PyASCIIObject)`: checked, not used.
    bytes_data: usize,
    ascii_size: usize,
}

/// The word indices of 3.`minor`'s `_Py_DebugOffsets`: 3.13's from `pycore_runtime.h` of
/// 3.13.0; 3.14's found in the words of Debian's 3.14.10, where each section starts with
/// its struct's size (the frame's 88, its fields `previous` 8, `executable` 0, `instr_ptr`
/// 56, `owner` 74) and the offsets read were then checked on a running interpreter.
fn debug_words(minor: u32) -> Option<DebugWords> {
    Some(match minor {
        13 => DebugWords {
            interpreters_head: 5,
            threads_head: 9,
            tstate_next: 21,
            tstate_frame: 23,
            tstate_thread_id: 24,
            tstate_native_id: 25,
            frame_previous: 29,
            frame_code: 30,
            frame_instr: 31,
            frame_marker: 33,
            code_filename: 35,
            code_name: 36,
            code_qualname: 37,
            code_linetable: 38,
            code_firstlineno: 39,
            code_bytecode: 43,
            bytes_data: 66,
            ascii_size: 70,
        },
        14 => DebugWords {
            interpreters_head: 5,
            threads_head: 9,
            tstate_next: 24,
            tstate_frame: 26,
            tstate_thread_id: 27,
            tstate_native_id: 28,
            frame_previous: 32,
            frame_code: 33,
            frame_instr: 34,
            frame_marker: 36,
            code_filename: 40,
            code_name: 41,
            code_qualname: 42,
            code_linetable: 43,
            code_firstlineno: 44,
            code_bytecode: 48,
            bytes_data: 76,
            ascii_size: 80,
        },
        _ => return None,
    })
}

/// The layout of a CPython 3.13 or 3.14 process from the `_Py_DebugOffsets` at the start
/// of its `_PyRuntime` (`words`, read from its memory): the interpreter's own statement of
/// its offsets, which a build with other options (a debug build) keeps true where the
/// table would not. `table` gives what it does not state (the string header sizes are
/// checked against it). An error says why the words are refused: not the cookie, another
/// version, or a free-threaded build (whose objects are laid out otherwise).
pub fn from_debug_offsets(
    words: &[u64; DEBUG_OFFSETS_WORDS],
    table: Layout,
) -> Result<Layout, String> {
    if words[0].to_le_bytes() != *b"xdebugpy" {
        return Err("no _Py_DebugOffsets cookie at _PyRuntime".to_owned());
    }
    let version = words[1];
    if version >> 24 != 3 || (version >> 16) & 0xff != u64::from(table.minor) {
        return Err(format!("_Py_DebugOffsets states version {version:#x}"));
    }
    if words[2] != 0 {
        return Err("a free-threaded build".to_owned());
    }
    let at = debug_words(table.minor)
        .ok_or_else(|| format!("no _Py_DebugOffsets of 3.{} known", table.minor))?;
    let u16_at = |i: usize| u16::try_from(words[i]).map_err(|_| format!("offset {i} too large"));
    let mut layout = table;
    layout.interpreters_head = words[at.interpreters_head];
    layout.threads_head = words[at.threads_head];
    layout.tstate_next = words[at.tstate_next];
    layout.kernel.tstate_frame = u16_at(at.tstate_frame)?;
    layout.tstate_thread_id = words[at.tstate_thread_id];
    layout.tstate_native_id = Some(words[at.tstate_native_id]);
    layout.kernel.frame_previous = u16_at(at.frame_previous)?;
    layout.kernel.frame_code = u16_at(at.frame_code)?;
    layout.kernel.frame_instr = u16_at(at.frame_instr)?;
    layout.kernel.frame_marker = u16_at(at.frame_marker)?;
    layout.code_filename = words[at.code_filename];
    layout.code_name = words[at.code_name];
    layout.code_qualname = Some(words[at.code_qualname]);
    layout.code_linetable = words[at.code_linetable];
    layout.code_firstlineno = words[at.code_firstlineno];
    layout.code_bytecode = Some(words[at.code_bytecode]);
    if words[at.bytes_data] != 32 || words[at.ascii_size] != table.ascii_header {
        return Err(format!(
            "bytes data at {}, ASCII strings' at {}: not this version's objects",
            words[at.bytes_data], words[at.ascii_size]
        ));
    }
    Ok(layout)
}

/// CPython 3's minor version from the name of a file it is mapped from: `python3.11`,
/// `libpython3.12.so.1.0`, `libpython3.13d.so` and the like; `None` for any other file.
pub fn minor_of_file(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    let rest = name
        .strip_prefix("libpython3.")
        .or_else(|| name.strip_prefix("python3."))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = &rest[digits.len()..];
    // `python3.11`, `python3.11d`, `libpython3.7m.so…`, `libpython3.13t.so…`; not
    // `python3.11-config`.
    let tail_ok = after.is_empty()
        || after.starts_with(".so")
        || ["d", "m", "t"].iter().any(|flag| after.starts_with(flag));
    if !tail_ok {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_versions_come_from_interpreter_and_library_names() {
        assert_eq!(minor_of_file("/usr/bin/python3.11"), Some(11));
        assert_eq!(
            minor_of_file("/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"),
            Some(12)
        );
        assert_eq!(minor_of_file("/usr/lib/libpython3.8.so"), Some(8));
        assert_eq!(minor_of_file("/x/lib/libpython3.7m.so.1.0"), Some(7));
        assert_eq!(minor_of_file("/usr/bin/python3.11-config"), None);
        assert_eq!(minor_of_file("/usr/bin/python3"), None);
        assert_eq!(minor_of_file("/usr/lib/libc.so.6"), None);
    }

    #[test]
    fn debug_offsets_give_the_tabled_layout_of_3_13() {
        let table = layout(13).unwrap();
        let mut words = [0u64; DEBUG_OFFSETS_WORDS];
        words[0] = u64::from_le_bytes(*b"xdebugpy");
        words[1] = 0x030d_00f0;
        for (i, v) in [
            (5, 632),
            (9, 7344),
            (21, 8),
            (23, 72),
            (24, 152),
            (25, 160),
            (29, 8),
            (30, 0),
            (31, 56),
            (33, 70),
            (35, 112),
            (36, 120),
            (37, 128),
            (38, 136),
            (39, 68),
            (43, 200),
            (66, 32),
            (70, 40),
        ] {
            words[i] = v;
        }
        assert_eq!(from_debug_offsets(&words, table), Ok(table));
        words[1] = 0x030e_00f0;
        assert!(from_debug_offsets(&words, table).is_err());
        words[1] = 0x030d_00f0;
        words[2] = 1;
        assert!(from_debug_offsets(&words, table).is_err());
    }

    /// The first words of `_PyRuntime` in Debian's python3.14 (3.14.10-1), as its file
    /// holds them, up to the string header sizes.
    const DEBIAN_3_14_WORDS: [u64; DEBUG_OFFSETS_WORDS] = [
        u64::from_le_bytes(*b"xdebugpy"),
        0x030e_0af0,
        0,
        316616,
        784,
        808,
        225864,
        7280,
        7272,
        7344,
        7360,
        7408,
        7688,
        7672,
        7680,
        16,
        7784,
        0,
        7800,
        7792,
        7992,
        0,
        832,
        0,
        8,
        16,
        72,
        152,
        160,
        232,
        32,
        88,
        8,
        0,
        56,
        80,
        74,
        64,
        0,
        216,
        112,
        120,
        128,
        136,
        68,
        52,
        96,
        104,
        208,
        0,
        16,
        8,
        416,
        24,
        88,
        168,
        40,
        32,
        16,
        40,
        24,
        16,
        200,
        24,
        40,
        32,
        48,
        32,
        40,
        24,
        16,
        32,
        16,
        24,
        40,
        16,
        32,
        64,
        32,
        16,
        40,
    ];

    #[test]
    fn debug_offsets_of_debian_s_3_14_give_its_table() {
        let table = layout(14).unwrap();
        assert_eq!(from_debug_offsets(&DEBIAN_3_14_WORDS, table), Ok(table));
        // 3.13's word indices would read 3.14's struct wrongly: the version decides.
        let mut words = DEBIAN_3_14_WORDS;
        words[1] = 0x030d_00f0;
        assert!(from_debug_offsets(&words, layout(13).unwrap()).is_err());
        let mut moved = DEBIAN_3_14_WORDS;
        moved[36] = 70;
        let read = from_debug_offsets(&moved, table).unwrap();
        assert_eq!(read.kernel.frame_marker, 70);
    }

    #[test]
    fn every_supported_minor_has_a_layout_and_no_other() {
        for minor in MINORS {
            assert_eq!(layout(minor).map(|l| l.minor), Some(minor));
        }
        assert!(layout(7).is_none());
        assert!(layout(15).is_none());
    }
}
