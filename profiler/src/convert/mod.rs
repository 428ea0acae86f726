//! Converting: turn a run's raw counts and stacks into symbolized profiles.
//!
//! In: a [`crate::collect::session::RunOutcome`]. Out: one [`profiler_model::Profile`] per
//! profile kind ([`cpu`], [`io`], [`block`], with [`goroutines`] in the blocking one);
//! [`stacks`] interns their stacks, symbolizing every address once, in the one
//! preparation pass [`profiles`] makes before the builders.

pub mod block;
pub mod cpu;
pub mod facts;
pub mod goroutines;
pub mod heap;
pub mod io;
pub mod stacks;

use profiler_model::Profile;

use crate::collect::session::RunOutcome;
use crate::config::Config;
use crate::symbolize::Symbolizer;
use crate::symbolize::debuginfod::Debuginfod;

/// Builds the profiles `config` asks for from `run`: one preparation pass symbolizes every
/// address they will need, then each builder interns its stacks from the results. Also
/// returns the summary's notes on where names came from (separate debug info, debuginfod).
pub fn profiles(run: &RunOutcome, config: &Config) -> (Vec<Profile>, Vec<String>) {
    let symbolizer = Symbolizer::with_sources(
        &config.debuginfo_dirs,
        Debuginfod::from_env(),
        run.bpf_symbols.clone(),
    );
    let mut resolver =
        stacks::StackResolver::with_symbolizer(&run.samples.stacks, &run.processes, symbolizer);
    resolver.prepare_run(run, config.profiles);
    let mut profiles = Vec::new();
    if config.profiles.cpu {
        profiles.push(cpu::build(run, config, &mut resolver));
    }
    if config.profiles.io {
        profiles.push(io::build(run, config, &mut resolver));
    }
    if config.profiles.blocking() {
        profiles.push(block::build(run, config, &mut resolver));
    }
    if config.profiles.heap {
        profiles.push(heap::build(run, config, &mut resolver));
    }
    (profiles, resolver.notes())
}
