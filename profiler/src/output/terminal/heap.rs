//! The heap part of the terminal summary: the functions that allocated most and hold most,
//! then the sites making many small allocations and the leak suspects, with their fixes.

use std::fmt::Write;

use profiler_model::Profile;

use super::brief_whole;
use super::summary::{group, shorten, shown_in_terminal};
use crate::analysis::heap::{HeapSite, SmallAllocations};
use crate::analysis::units::human_bytes;
use crate::analysis::words;
use crate::output::strings::escape_terminal;

/// Renders the heap profile's comments, its top `top` sites by bytes allocated and by
/// bytes in use, and its findings.
pub fn render(
    profile: &Profile,
    sites: &[HeapSite],
    small: &[SmallAllocations],
    leaks: &[HeapSite],
    top: usize,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    let _ = writeln!(out, "heap profile: inuse_space (bytes)");
    for comment in profile.comments.iter().filter(|c| shown_in_terminal(c)) {
        let _ = writeln!(out, "  {}", escape_terminal(&comment.text()));
    }
    if sites.is_empty() {
        let _ = writeln!(out, "No allocations were recorded.");
        return out;
    }
    let _ = writeln!(out, "Top {top} allocating functions by bytes allocated:");
    let _ = writeln!(
        out,
        "  {:>12} {:>10} {:>12} {:>10}  function",
        "allocated", "objects", "in use", "objects"
    );
    let row = |out: &mut String, s: &HeapSite| {
        let _ = writeln!(
            out,
            "  {:>12} {:>10} {:>12} {:>10}  {} ({})",
            human_bytes(s.alloc_space as f64),
            group(s.alloc_objects as i64),
            human_bytes(s.inuse_space as f64),
            group(s.inuse_objects as i64),
            shorten(&s.caller),
            escape_terminal(&s.comm)
        );
    };
    for site in sites.iter().take(top) {
        row(&mut out, site);
    }
    let mut holding: Vec<&HeapSite> = sites.iter().filter(|s| s.inuse_space > 0).collect();
    holding.sort_by_key(|s| std::cmp::Reverse(s.inuse_space));
    if !holding.is_empty() {
        let _ = writeln!(out, "Top {top} functions by bytes in use at the end:");
        for site in holding.into_iter().take(top) {
            row(&mut out, site);
        }
    }
    let small = small.iter().take(top).map(words::small_allocations);
    let leaks = leaks.iter().take(top).map(words::leak_suspect);
    for (heading, finding) in small
        .map(|f| ("Many small allocations", f))
        .chain(leaks.map(|f| ("Leak suspect", f)))
    {
        let _ = writeln!(
            out,
            "{heading}: {}.\n  Fix: {}",
            brief_whole(&finding.title),
            finding.hint
        );
    }
    out
}
