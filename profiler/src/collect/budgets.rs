//! What the collecting side refused to keep within its budgets against hostile input
//! (unwind sections, JIT perf maps, address spaces of re-executing processes), in words
//! for the summary: refused input is counted and shown, never dropped silently.

use crate::collect::session::RunOutcome;
use crate::process::perfmap;
use crate::process::procmaps::{MAX_PERF_MAP_BYTES, MAX_SPACES_PER_PROCESS};
use crate::unwind::sections::MAX_SECTION_BYTES;

/// `; over budget: ...`, the clause appended to the `unwinding:` line.
pub fn describe(run: &RunOutcome) -> String {
    let sections = run.unwinding.stats.sections;
    let perf = run.processes.perf_map_stats();
    let mib = |b: u64| b >> 20;
    format!(
        "; over budget: {} files' unwind sections refused (a section over {} MiB, or the run's \
         {} MiB or {}s spent: unwound by frame pointers), {} refused as badly compressed; \
         {}{} perf-map lines not read (past {} MiB per map, {} MiB in all); {} address \
         spaces of re-executing processes emptied (over {} per process: their frames \
         unnamed)",
        sections.over_budget,
        mib(MAX_SECTION_BYTES),
        mib(crate::unwind::MAX_RUN_SECTION_BYTES),
        crate::unwind::MAX_RUN_SECTION_TIME.as_secs(),
        sections.bad_compression,
        if perf.dropped_more { "at least " } else { "" },
        perf.dropped,
        mib(perfmap::MAX_BYTES),
        mib(MAX_PERF_MAP_BYTES),
        run.processes.spaces_dropped(),
        MAX_SPACES_PER_PROCESS,
    )
}
