//! The one profile model that every collector fills and every output reads.
//!
//! Collectors record samples against raw addresses (unwound stacks, see
//! `crate::collect::samples`); the builders symbolize them into a [`Profile`] once, at the
//! end of the run. Outputs (pprof, folded stacks,
//! flame graphs, the summary) only ever see the symbolized [`Profile`].

mod address;
mod builder;
mod facts;
mod frame;
mod kind;
pub mod labels;
mod model;

pub use address::{AddressSpace, FrameAddress};
pub use builder::{ProfileBuilder, RawFrame};
pub use facts::RunFacts;
pub use frame::{FrameKind, LostStack, Unnamed, module_offset};
pub use kind::{BlockValue, CpuValue, HeapValue, IoValue, ProfileKind};
pub use model::{
    ELIDED_INLINE_PREFIX, INLINE_KEPT_INNER, INLINE_KEPT_OUTER, KERNEL_MAPPING, Label, LabelValue,
    Line, Location, MAX_INLINE_LINES, Mapping, Profile, Sample, ValueType, elided_inline_line,
};
