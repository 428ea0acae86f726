//! What the profiles mean: findings with hints, read from the profile model.
//!
//! In: the built [`profiler_model::Profile`]s. Out: an [`findings::Analysis`], whose
//! findings are [`finding::Finding`] values worded once in [`words`] (small-I/O
//! hot paths, contended futexes, contended Go mutexes and busy channels ([`goroutines`]),
//! allocator and GC hot spots, Go small I/O ([`go_cpu`]), JIT runtimes whose code has no
//! names ([`jit`])) that the outputs show, plus
//! the quantities-in-words helpers ([`units`]) and per-function self/total values
//! ([`functions`]) they share.

pub mod block;
pub mod cpu;
pub mod cpu_shares;
pub mod finding;
pub mod findings;
pub mod functions;
pub mod go_cpu;
pub mod go_runtime_locks;
pub mod goroutines;
pub mod heap;
pub mod io;
pub mod io_hints;
pub mod jit;
pub mod language;
pub mod offcpu;
pub mod units;
pub mod wake_evidence;
pub mod words;
