//! Plain data types of a symbolized profile, shaped after pprof's `profile.proto`.

use crate::comment::Comment;
use crate::labels::LabelKey;
use crate::program_labels::ProgramLabels;
use std::time::{Duration, SystemTime};

use super::frame::FrameKind;
use super::kind::ProfileKind;
pub use super::kind::ValueType;

/// The pseudo file name of kernel code, as perf calls it: the mapping of kernel locations.
pub const KERNEL_MAPPING: &str = "[kernel.kallsyms]";

/// The ids of a profile's interned tables: each its own type, so that one cannot be
/// passed for another. Only the builder and the pprof codec make them from, or read
/// them as, positions in the tables ([`Profile::location`] and its siblings look them up).
macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
        pub struct $name(usize);

        impl $name {
            /// The id of the entry at `index` of its table.
            pub(crate) const fn new(index: usize) -> Self {
                Self(index)
            }

            /// The position of the entry in its table (for the pprof codec).
            pub const fn index(self) -> usize {
                self.0
            }
        }
    };
}

id!(
    /// A [`Location`] of [`Profile::locations`].
    LocationId
);
id!(
    /// A stack of [`Profile::stacks`].
    StackId
);
id!(
    /// A [`Mapping`] of [`Profile::mappings`].
    MappingId
);

/// The most lines (inlined frames and the function they are inlined into) one location
/// keeps. Deeper chains keep their [`INLINE_KEPT_INNER`] innermost and
/// [`INLINE_KEPT_OUTER`] outermost lines around one [`elided_inline_line`] frame that says
/// how many were left out: a 100-deep `always_inline` chain in a 600-deep recursion would
/// otherwise be a 60,000-frame stack in every output.
pub const MAX_INLINE_LINES: usize = INLINE_KEPT_INNER + 1 + INLINE_KEPT_OUTER;
/// Innermost lines (the hot callee side) an over-long inline chain keeps.
pub const INLINE_KEPT_INNER: usize = 16;
/// Outermost lines (the function that holds the code, and its callers' side) an over-long
/// inline chain keeps.
pub const INLINE_KEPT_OUTER: usize = 15;
/// Prefix of the name of the frame standing for elided inlined frames.
pub const ELIDED_INLINE_PREFIX: &str = "[elided: ";

/// The line standing for `count` inlined frames left out of a location.
pub fn elided_inline_line(count: usize) -> Line {
    Line {
        function: format!("{ELIDED_INLINE_PREFIX}{count} inlined frames]"),
        file: None,
        line: 0,
    }
}

/// Caps `lines` (innermost first) at [`MAX_INLINE_LINES`]; returns how many were elided.
pub fn cap_inline_lines(lines: &mut Vec<Line>) -> usize {
    if lines.len() <= MAX_INLINE_LINES {
        return 0;
    }
    let elided = lines.len() - INLINE_KEPT_INNER - INLINE_KEPT_OUTER;
    let outer = lines.split_off(lines.len() - INLINE_KEPT_OUTER);
    lines.truncate(INLINE_KEPT_INNER);
    lines.push(elided_inline_line(elided));
    lines.extend(outer);
    elided
}

/// A file or pseudo-file mapped into a process: where its code came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// First address of the mapping in the process.
    pub start: u64,
    /// One past its last address.
    pub limit: u64,
    /// Offset in the file of `start`.
    pub file_offset: u64,
    /// Path of the file, or a pseudo name such as `[vdso]` or `[kernel.kallsyms]`.
    pub path: String,
    /// The ELF build ID in hex, where the file has one.
    pub build_id: Option<String>,
}

/// One source-level frame of a location: a function, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Line {
    /// Demangled function name; for a location that is not a named function (see
    /// [`Location::kind`]), the display name its kind gives it (`module+0xoffset`...).
    pub function: String,
    /// Source file, where debug information gave one.
    pub file: Option<String>,
    /// Source line (0 when unknown).
    pub line: u32,
}

/// An instruction address and the source frames it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The address in the sampled address space (kernel or process).
    pub address: u64,
    /// The mapping the address falls in, if known.
    pub mapping: Option<MappingId>,
    /// Frames at this address, innermost (inlined callee) first, never empty.
    pub lines: Vec<Line>,
    /// What the location stands for: a named function, or why it has none.
    pub kind: FrameKind,
}

/// The value of a sample label: pprof labels are strings or numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelValue {
    /// A string label, such as a command name.
    Str(String),
    /// A numeric label, such as a pid.
    Num(i64),
}

/// A key/value pair attached to a sample (`pid`, `tid`, `comm`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    /// The label's key.
    pub key: LabelKey,
    /// The label's value.
    pub value: LabelValue,
}

impl Label {
    /// A string label.
    pub fn str(key: LabelKey, value: impl Into<String>) -> Self {
        Self {
            key,
            value: LabelValue::Str(value.into()),
        }
    }

    /// A numeric label.
    pub fn num(key: LabelKey, value: i64) -> Self {
        Self {
            key,
            value: LabelValue::Num(value),
        }
    }
}

/// Values measured for one stack with one set of labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The call stack, an index into [`Profile::stacks`].
    pub stack: StackId,
    /// One value per [`Profile::sample_types`] entry.
    pub values: Vec<i64>,
    /// Labels such as `pid`, `tid` and `comm`.
    pub labels: Vec<Label>,
    /// Labels the program put on the work (Go's profiler labels).
    pub program: ProgramLabels,
    /// Who woke it, for an off-CPU wait whose waker's stacks were taken (pprof files keep
    /// only its `waker` label).
    pub waker: Option<Waker>,
}

/// The thread that woke an off-CPU wait.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Waker {
    /// Its stack at the wakeup, an index into [`Profile::stacks`].
    pub stack: StackId,
    /// Its process's name.
    pub comm: String,
}

impl Sample {
    /// Value `index` (see [`Profile::sample_types`]), 0 when the sample has none.
    pub fn value(&self, index: usize) -> i64 {
        self.values.get(index).copied().unwrap_or(0)
    }

    /// Value `index` as a count: 0 when missing or negative (a file can hold anything).
    pub fn count(&self, index: usize) -> u64 {
        self.value(index).max(0).unsigned_abs()
    }

    /// The value of the string label `key`, if the sample has it.
    pub fn label_str(&self, key: LabelKey) -> Option<&str> {
        self.labels.iter().find_map(|l| match &l.value {
            LabelValue::Str(s) if l.key == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// Whether the sample is a goroutine wait: it says who waited ([`LabelKey::Waiters`]),
    /// or, in files written before that label, which goroutine.
    pub fn is_goroutine_wait(&self) -> bool {
        self.label_str(LabelKey::Waiters).is_some() || self.label_num(LabelKey::Goroutine).is_some()
    }

    /// The value of the numeric label `key`, if the sample has it.
    pub fn label_num(&self, key: LabelKey) -> Option<i64> {
        self.labels.iter().find_map(|l| match l.value {
            LabelValue::Num(n) if l.key == key => Some(n),
            _ => None,
        })
    }
}

/// A symbolized profile: sample types, interned locations and stacks, and samples.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Which profile this is; its schema says what the sample values are.
    pub kind: ProfileKind,
    /// What each entry of [`Sample::values`] measures.
    pub sample_types: Vec<ValueType>,
    /// Index into `sample_types` that viewers show by default.
    pub default_sample_type: usize,
    /// The kind of events between samples (pprof's `period_type`), if sampled.
    pub period_type: Option<ValueType>,
    /// Events between two samples, in `period_type` units.
    pub period: i64,
    /// When collection started.
    pub start: SystemTime,
    /// How long collection ran.
    pub duration: Duration,
    /// What the profile says of itself: the run, how it sampled, how stacks were unwound,
    /// what was received and lost.
    pub comments: Vec<Comment>,
    /// Mappings referenced by locations.
    pub mappings: Vec<Mapping>,
    /// Interned locations.
    pub locations: Vec<Location>,
    /// Interned stacks, each a list of locations, leaf first.
    pub stacks: Vec<Vec<LocationId>>,
    /// The samples.
    pub samples: Vec<Sample>,
}

impl Profile {
    /// The location `id`.
    ///
    /// # Panics
    /// If `id` is not of this profile.
    pub fn location(&self, id: LocationId) -> &Location {
        &self.locations[id.0]
    }

    /// The locations of stack `id`, leaf first.
    ///
    /// # Panics
    /// If `id` is not of this profile.
    pub fn stack(&self, id: StackId) -> &[LocationId] {
        &self.stacks[id.0]
    }

    /// The mapping `id`.
    ///
    /// # Panics
    /// If `id` is not of this profile.
    pub fn mapping(&self, id: MappingId) -> &Mapping {
        &self.mappings[id.0]
    }

    /// The frames of a stack as function names, root first, inlined frames expanded.
    pub fn stack_functions(&self, stack: StackId) -> Vec<&str> {
        let mut out = Vec::new();
        for &loc in self.stack(stack).iter().rev() {
            // `lines` is innermost first; walking it backwards yields caller before callee.
            for line in self.location(loc).lines.iter().rev() {
                out.push(line.function.as_str());
            }
        }
        out
    }

    /// The frames of a stack as flame graphs label them, root first, inlined frames
    /// expanded: function names, and an interpreted frame's place beside its name as
    /// py-spy writes it (`fib (fib.py:12)`), since its function alone does not say which
    /// file's or which line.
    pub fn stack_frame_labels(&self, stack: StackId) -> Vec<std::borrow::Cow<'_, str>> {
        let mut out = Vec::new();
        for &loc in self.stack(stack).iter().rev() {
            let location = self.location(loc);
            for line in location.lines.iter().rev() {
                out.push(match (&location.kind, &line.file) {
                    (FrameKind::Python, Some(file)) => {
                        let base = file.rsplit('/').next().unwrap_or(file);
                        format!("{} ({base}:{})", line.function, line.line).into()
                    }
                    _ => line.function.as_str().into(),
                });
            }
        }
        out
    }

    /// Per stack, the positive sum of sample value `index` over its samples, in the order
    /// stacks are first sampled: what an analysis that reads only stacks and one value
    /// walks, so that each distinct stack costs its frames once, however many samples
    /// (threads, processes, labels) share it.
    pub fn stack_totals(&self, index: usize) -> Vec<(StackId, i64)> {
        let mut at: Vec<Option<usize>> = vec![None; self.stacks.len()];
        let mut totals: Vec<(StackId, i64)> = Vec::new();
        for sample in &self.samples {
            let Some(slot) = at.get_mut(sample.stack.0) else {
                continue;
            };
            let i = *slot.get_or_insert_with(|| {
                totals.push((sample.stack, 0));
                totals.len() - 1
            });
            // Saturating: values from a file can add up past i64::MAX.
            totals[i].1 = totals[i].1.saturating_add(sample.value(index));
        }
        totals.retain(|&(_, v)| v > 0);
        totals
    }

    /// The total of sample value `index` over all samples.
    pub fn total(&self, index: usize) -> i64 {
        // Saturating: values from a file can add up past i64::MAX.
        self.samples
            .iter()
            .filter_map(|s| s.values.get(index))
            .fold(0, |sum: i64, &v| sum.saturating_add(v))
    }
}
