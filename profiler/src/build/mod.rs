//! Building: turn a run's counts and stacks into symbolized profiles.
//!
//! In: a [`crate::collect::session::RunOutcome`]. Out: one [`crate::profile::Profile`] per
//! profile kind ([`cpu`], [`io`], [`block`]); [`stacks`] interns their stacks, symbolizing
//! every address once.

pub mod block;
pub mod cpu;
pub mod io;
pub mod stacks;
