//! Types shared with the kernel programs for CPython processes: where a thread state keeps
//! its frame chain (offsets of one CPython minor version), and the frames as a CPU sample
//! carries them.

/// Python frames a sample carries, innermost first; a deeper stack keeps its innermost.
pub const PYTHON_FRAMES_MAX: usize = 64;

/// No such field in this version (an offset of [`PythonProcess`]).
pub const PYTHON_NO_FIELD: u16 = u16::MAX;

/// What the kernel needs to find a CPython thread's state and walk its frame chain; the
/// value of `PYTHON_PROCESSES`. The kernel applies the offsets and knows no version.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PythonProcess {
    /// Byte offset in `PyThreadState` of the innermost frame (3.8–3.10 `frame`, 3.13
    /// `current_frame`) or of the `_PyCFrame` pointer (3.11, 3.12 `cframe`).
    pub tstate_frame: u16,
    /// Byte offset of `current_frame` in `_PyCFrame`, or [`PYTHON_NO_FIELD`] when
    /// `tstate_frame` points at the frame itself.
    pub cframe_frame: u16,
    /// Byte offset of the code object pointer in a frame (`f_code`, `f_executable`).
    pub frame_code: u16,
    /// Byte offset of the caller's frame (`f_back`, `previous`).
    pub frame_previous: u16,
    /// Byte offset of the instruction word (`f_lasti`, `prev_instr`, `instr_ptr`).
    pub frame_instr: u16,
    /// Byte offset of the byte that marks an activation's first frame (3.11 `is_entry`,
    /// 3.12+ `owner`), or [`PYTHON_NO_FIELD`].
    pub frame_marker: u16,
    /// Byte offset in `PyThreadState` of the thread's kernel tid (`native_thread_id`,
    /// 3.11 on) or of its `pthread_t` (`thread_id`, before).
    pub tstate_tid: u16,
    /// Where the tid is in glibc's `struct pthread` when `tstate_tid` names a
    /// `pthread_t`; 0 when it names the tid itself.
    pub pthread_tid: u16,
    /// Byte offset of `next` in `PyThreadState`.
    pub tstate_next: u16,
    /// Byte offset of the first thread state in `PyInterpreterState`.
    pub threads_head: u16,
    /// Byte offset of `co_name` in a code object: read with each frame, with
    /// `code_firstlineno`, to tell a code object from another later at the same address.
    pub code_name: u16,
    /// Byte offset of `co_firstlineno` in a code object.
    pub code_firstlineno: u16,
    /// Address of `_PyRuntime.interpreters.head` in the process: where a thread the
    /// thread map does not hold (yet) is looked for.
    pub interpreters_head: u64,
}

/// Thread states the kernel walks looking for a thread the thread map does not hold.
pub const PYTHON_THREADS_WALK: usize = 16;

/// The thread map's value for a thread userspace found missing from its interpreter's
/// thread list for a while (a native thread of a CPython process: BLAS, OpenMP, an
/// extension's own): the kernel reads nothing for it, not even the
/// [`PYTHON_THREADS_WALK`] states, on each of its samples and futex waits. Userspace reads
/// the list again now and then, and gives the thread its state if it turns up there.
pub const PYTHON_NOT_A_THREAD: u64 = u64::MAX;

/// One Python frame as the kernel read it: its code object, its instruction word (an
/// offset or a pointer, by version) and its marker byte.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PythonFrame {
    /// The frame's code object (or, 3.13 on, executable) pointer, without the tag bits of
    /// 3.14's reference.
    pub code: u64,
    /// The frame's instruction word, zero-extended.
    pub instr: u64,
    /// The code object's name pointer, with its first line in bits 47 and up (see
    /// [`python_code_key`]).
    pub key: u64,
}

/// What tells a code object from another at the same address: its `co_name` pointer (a
/// user address, below 2^47) and its `co_firstlineno` above it.
#[inline(always)]
pub fn python_code_key(name: u64, first_line: u32) -> u64 {
    name ^ (u64::from(first_line) << 47)
}

/// A thread's Python frames as a sample carries them, at the start of the sample's user
/// part ([`crate::sample_flag::PYTHON_FRAMES`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PythonFrames {
    /// Frames read, at most [`PYTHON_FRAMES_MAX`].
    pub count: u32,
    /// Non-zero when the chain went on past the last frame kept.
    pub truncated: u32,
    /// The frames, innermost first.
    pub frames: [PythonFrame; PYTHON_FRAMES_MAX],
    /// Each frame's marker byte (zero where the version has none).
    pub markers: [u8; PYTHON_FRAMES_MAX],
}

/// Bytes at the start of a sample's user part that hold its [`PythonFrames`].
pub const PYTHON_FRAMES_BYTES: usize = size_of::<PythonFrames>();

const _: () = {
    assert!(size_of::<PythonProcess>() == 32);
    // The stack copy that follows stays word aligned.
    assert!(PYTHON_FRAMES_BYTES.is_multiple_of(8));
    // A Python process is not a Go one: its frames take the room of Go's labels and chain.
    assert!(PYTHON_FRAMES_BYTES <= crate::GO_LABELS_BYTES + crate::GO_FRAMES_BYTES);
};
