//! What the profiles mean: findings with hints, read from the profile model.

pub mod block;
pub mod cpu;
pub mod findings;
pub mod functions;
pub mod io;
pub mod language;
pub mod units;
