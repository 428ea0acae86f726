//! The findings panel's data: the analysis's [`Finding`]s laid out for the page, each with
//! the frames to show in the flame graph, at most [`MAX_FINDINGS_PER_KIND`] of each kind.

use serde::Serialize;

use crate::analysis::finding::Finding;
use crate::analysis::findings::Analysis;

/// At most this many findings of one kind are listed, the most costly first; a whole-host
/// run can have a hundred contended futexes, and the flame graphs show the rest.
pub const MAX_FINDINGS_PER_KIND: usize = 20;

/// A finding of the summary, with what to show in the flame graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingData {
    /// `small-io` (its case is the first detail), `contention`, `allocation`, `gc`,
    /// `small-allocations`, `leak-suspect`, `off-cpu` or `unnamed-jit`.
    pub kind: &'static str,
    /// The profile (tab) it is about.
    pub profile: &'static str,
    /// One line saying what was found.
    pub title: String,
    /// Further lines: the call path, what waited, the saving.
    pub details: Vec<String>,
    /// What to do.
    pub hint: String,
    /// Functions to highlight.
    pub functions: Vec<String>,
    /// Frames from the root (process first) leading to the place to zoom to; may stop short
    /// or be empty.
    pub path: Vec<String>,
    /// The function to zoom to (the heaviest frame of that name under `path`).
    pub focus: String,
}

/// The findings, in the order of the panel ([`Analysis::groups`]), each kind cut at
/// [`MAX_FINDINGS_PER_KIND`]; what was cut, in words; and how many there are in all, as
/// the terminal counts them.
pub(super) fn findings(analysis: &Analysis) -> (Vec<FindingData>, Vec<String>, usize) {
    let mut out: Vec<FindingData> = Vec::new();
    let mut omitted = Vec::new();
    let mut total = 0;
    for group in analysis.groups() {
        let all = group.findings;
        total += all.len();
        if all.len() > MAX_FINDINGS_PER_KIND {
            omitted.push(format!(
                "{} more {}, smaller than those listed",
                all.len() - MAX_FINDINGS_PER_KIND,
                group.what
            ));
        }
        out.extend(all.iter().take(MAX_FINDINGS_PER_KIND).map(data));
    }
    (out, omitted, total)
}

/// A finding laid out for the panel: its words in full, its frames to show.
fn data(finding: &Finding) -> FindingData {
    FindingData {
        kind: finding.kind.name(),
        profile: finding.profile.name(),
        title: finding.title.full(),
        details: finding.details.iter().map(|d| d.text.full()).collect(),
        hint: finding.hint.clone(),
        functions: finding.functions.clone(),
        path: finding
            .process
            .iter()
            .map(|comm| crate::output::folded::frame_name(comm))
            .chain(finding.path.iter().cloned())
            .collect(),
        focus: finding.focus.clone(),
    }
}
