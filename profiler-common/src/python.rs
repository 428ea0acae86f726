//! Types shared with the kernel programs for CPython processes: where a thread state keeps
//! its frame chain (offsets of one CPython minor version), and the frames as a CPU sample
//! carries them.

/// Python frames a sample carries, innermost first; a deeper stack keeps its innermost.
pub const PYTHON_FRAMES_MAX: usize = 64;

/// No such field in this version (an offset of [`PythonProcess`]).
pub const PYTHON_NO_FIELD: u16 = u16::MAX;

/// What the kernel needs to walk a CPython process's frame chain from a thread state; the
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
    /// Reserved, zero.
    pub _pad: [u16; 2],
}

/// One Python frame as the kernel read it: its code object, its instruction word (an
/// offset or a pointer, by version) and its marker byte.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PythonFrame {
    /// The frame's code object (or, 3.13, executable) pointer.
    pub code: u64,
    /// The frame's instruction word, zero-extended.
    pub instr: u64,
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
    assert!(size_of::<PythonProcess>() == 16);
    // The stack copy that follows stays word aligned.
    assert!(PYTHON_FRAMES_BYTES.is_multiple_of(8));
    // A Python process is not a Go one: its frames take the room of Go's labels and chain.
    assert!(PYTHON_FRAMES_BYTES <= crate::GO_LABELS_BYTES + crate::GO_FRAMES_BYTES);
};
