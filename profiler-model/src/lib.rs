//! The one profile model that every collector fills and every output reads, and its pprof
//! codec: the binary, the fuzz targets and the tests all use this crate.
//!
//! Collectors record samples against raw addresses (unwound stacks, see the profiler's
//! `collect::samples`); its converters symbolize them into a [`Profile`] once, at the
//! end of the run, through [`ProfileBuilder`]. Outputs (pprof, folded stacks,
//! flame graphs, the summary) only ever see the symbolized [`Profile`].
//!
//! [`pprof`] encodes a profile as a gzipped pprof file; [`pprof_read`] is the way back
//! (`profiler report`), every allocation its input drives bounded.

mod address;
mod builder;
mod comment;
mod facts;
mod frame;
mod kind;
pub mod labels;
mod model;
pub mod pprof;
mod pprof_mappings;
pub mod pprof_read;
pub mod proto;
mod string_table;
pub mod wire;

/// A small profile for tests (the `fixture` feature).
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;

pub use address::{AddressSpace, FrameAddress};
pub use builder::{ProfileBuilder, RawFrame};
pub use comment::Comment;
pub use facts::RunFacts;
pub use frame::{FrameKind, LostStack, Unnamed, module_offset};
pub use kind::{BlockValue, CpuValue, HeapValue, IoValue, ProfileKind};
pub use labels::LabelKey;
pub use model::{
    ELIDED_INLINE_PREFIX, INLINE_KEPT_INNER, INLINE_KEPT_OUTER, KERNEL_MAPPING, Label, LabelValue,
    Line, Location, LocationId, MAX_INLINE_LINES, Mapping, MappingId, Profile, Sample, StackId,
    ValueType, elided_inline_line,
};
pub use string_table::{StringIndex, StringTable};
