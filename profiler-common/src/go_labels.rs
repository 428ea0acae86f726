//! Types shared with the kernel programs for Go processes: where the runtime keeps the
//! goroutine a thread runs and its profiler labels (`pprof.Do`, `SetGoroutineLabels`), and
//! the labels as a sample carries them.

/// Labels of one set a sample carries; a set with more has the rest counted, not kept.
pub const GO_LABELS_MAX: usize = 8;

/// Bytes of a label's key or value a sample carries; a longer one is cut there (its full
/// length is kept, so userspace can say so).
pub const GO_LABEL_TEXT: usize = 64;

/// How a Go release keeps a goroutine's label set.
pub mod go_label_format {
    /// The process's label layout is unknown: labels are not read.
    pub const NONE: u8 = 0;
    /// `g.labels` points to a `map[string]string` (Go 1.17 to 1.23).
    pub const MAP: u8 = 1;
    /// `g.labels` points to a struct holding a sorted `[]label` of key/value strings
    /// (Go 1.24 on).
    pub const SLICE: u8 = 2;
}

/// What the kernel needs to find a Go process's goroutine labels; the value of
/// `GO_PROCESSES`, whose entries also make the process's CPU samples carry their
/// frame-pointer chain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoProcess {
    /// Byte offset of `m` in `runtime.g`.
    pub g_m: u16,
    /// Byte offset of `labels` in `runtime.g`.
    pub g_labels: u16,
    /// Byte offset of `g0` in `runtime.m`.
    pub m_g0: u16,
    /// Byte offset of `curg` in `runtime.m`.
    pub m_curg: u16,
    /// One of [`go_label_format`].
    pub format: u8,
    /// Reserved, zero.
    pub _pad: [u8; 7],
}

/// A goroutine's labels as a sample carries them, at the start of the sample's user part
/// ([`crate::sample_flag::GO_LABELS`]); keys and values are cut at [`GO_LABEL_TEXT`] bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoLabels {
    /// Labels in the goroutine's set (more than [`GO_LABELS_MAX`]: the rest are not here).
    pub count: u32,
    /// Labels kept here, at most [`GO_LABELS_MAX`].
    pub kept: u32,
    /// Each kept label's full key and value lengths.
    pub lens: [[u32; 2]; GO_LABELS_MAX],
    /// Each kept label's key and value, cut at [`GO_LABEL_TEXT`] bytes.
    pub text: [[[u8; GO_LABEL_TEXT]; 2]; GO_LABELS_MAX],
}

/// Bytes at the start of a sample's user part that hold its [`GoLabels`].
pub const GO_LABELS_BYTES: usize = size_of::<GoLabels>();

const _: () = {
    assert!(size_of::<GoProcess>() == 16);
    assert!(GO_LABELS_BYTES == 8 + 64 + 1024);
    // The stack copy that follows stays word aligned.
    assert!(GO_LABELS_BYTES.is_multiple_of(8));
};
