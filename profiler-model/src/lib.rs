//! The one profile model that every collector fills and every output reads, and its pprof
//! codec, used by the binary and the fuzz targets (the integration tests read profiles
//! through `go tool pprof`, as users do).
//!
//! Collectors record samples against raw addresses, as frames typed when they were
//! unwound ([`FrameAddress`]); the profiler's converter symbolizes them into a
//! [`Profile`] once, at the end of the run, through [`ProfileBuilder`]. Outputs (pprof, folded stacks,
//! flame graphs, the summary) only ever see the symbolized [`Profile`].
//!
//! [`pprof`] encodes a profile as a gzipped pprof file; [`pprof_read`] (reading a file
//! within bounds) and [`pprof_decode`] (its message into the model) are the way back
//! (`profiler report`), every allocation its input drives bounded.

mod account;
mod account_walk;
mod account_words;
mod address;
mod builder;
pub mod callers;
mod comment;
mod facts;
mod frame;
mod io_syscall;
mod kind;
pub mod labels;
mod model;
pub mod pprof;
pub mod pprof_decode;
mod pprof_mappings;
pub mod pprof_read;
pub mod program_labels;
pub mod proto;
mod string_table;
pub mod wire;

/// A small profile for tests (the `fixture` feature).
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;

pub use account::{
    Account, Cause, Count, Counted, GoHeap, GoroutineCost, Interposed, Interposer, Loss, Measured,
    Refused, RingFull, Subject, Table, Tally, Ticks, TrapCost,
};
pub use address::{AddressSpace, FrameAddress};
pub use builder::{ProfileBuilder, RawFrame};
pub use comment::Comment;
pub use facts::RunFacts;
pub use frame::{FrameKind, LostStack, Unnamed, module_offset};
pub use io_syscall::{IoDirection, IoShape, IoSyscall};
pub use kind::{BlockValue, CpuValue, HeapValue, IoValue, OffCpuValue, ProfileKind};
pub use labels::LabelKey;
pub use model::{
    ELIDED_INLINE_PREFIX, INLINE_KEPT_INNER, INLINE_KEPT_OUTER, KERNEL_MAPPING, Label, LabelValue,
    Line, Location, LocationId, MAX_INLINE_LINES, Mapping, MappingId, Profile, Sample, StackId,
    ValueType, Waker, elided_inline_line,
};
pub use program_labels::ProgramLabels;
pub use string_table::{StringIndex, StringTable};
