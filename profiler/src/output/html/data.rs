//! The report's embedded data, assembled: each profile as a tree of frames with its function
//! table ([`super::tree`]), the run's facts, the findings and the I/O call sites, all built from the same
//! [`Profile`] the pprof and folded files are written from, so every view shows the same
//! numbers.

use profiler_model::Profile;
use serde::Serialize;

use super::facts::Header;
use super::findings::{FindingData, findings};
use super::io_sites::{IoSitesData, site_rows};
use super::tree::{ProfileData, profile_data};
use crate::analysis::findings::Analysis;

/// Everything the report page shows.
#[derive(Debug, Serialize)]
pub struct ReportData {
    /// Facts about the run, for the header.
    pub run: Header,
    /// The profiles, in the order of the tabs.
    pub profiles: Vec<ProfileData>,
    /// The findings, in the order of the findings panel.
    pub findings: Vec<FindingData>,
    /// What was left out of `findings` beyond
    /// [`MAX_FINDINGS_PER_KIND`](super::findings::MAX_FINDINGS_PER_KIND), in words.
    pub findings_omitted: Vec<String>,
    /// How many findings there are, those left out included (the tab's badge, which says
    /// what the terminal's findings line says).
    pub findings_total: usize,
    /// The findings' thresholds, in words, to say what "no findings" means.
    pub thresholds: Vec<String>,
    /// The I/O profile's call sites, for the I/O tab's table.
    pub io_sites: IoSitesData,
}

/// Builds the page's data from the profiles and the findings computed from them.
pub fn build(profiles: &[Profile], analysis: &Analysis, run: Header) -> ReportData {
    let (findings, findings_omitted, findings_total) = findings(analysis);
    ReportData {
        run,
        profiles: profiles.iter().map(profile_data).collect(),
        findings,
        findings_omitted,
        findings_total,
        thresholds: analysis.thresholds(),
        io_sites: site_rows(&analysis.io_sites),
    }
}

#[cfg(test)]
mod tests {
    use super::super::findings::MAX_FINDINGS_PER_KIND;
    use super::*;
    use crate::analysis::block::{CONTENTION_HINT, LockWaits, WaitedOn};

    #[test]
    fn findings_link_to_their_frames_and_are_capped() {
        let futex = |i: usize| LockWaits {
            pid: 7,
            comm: "app".to_owned(),
            processes: 1,
            on: WaitedOn::Futex(format!("{i:#x}")),
            threads: 4,
            waits: 10,
            delay: 1_000_000 - i as u64,
            contended_waits: 10,
            contended_delay: 1_000_000 - i as u64,
            handed_off_delay: 0,
            evidence: true,
            waiters: vec![("contend_lock".to_owned(), 900), ("main".to_owned(), 100)],
            kind: crate::analysis::block::LockKind::Program,
        };
        let analysis = Analysis {
            locks: (0..MAX_FINDINGS_PER_KIND + 5).map(futex).collect(),
            ..Analysis::default()
        };
        let data = build(&[], &analysis, Header::default());
        assert_eq!(data.findings.len(), MAX_FINDINGS_PER_KIND);
        assert_eq!(data.findings_total, MAX_FINDINGS_PER_KIND + 5);
        assert_eq!(
            data.findings_omitted,
            ["5 more contended locks, smaller than those listed"]
        );
        let f = &data.findings[0];
        assert_eq!((f.kind, f.profile), ("contention", "block"));
        assert_eq!(f.focus, "contend_lock");
        assert_eq!(f.functions, ["contend_lock", "main"]);
        assert_eq!(f.path, ["app"]);
        assert!(f.title.contains("4 threads waited 10 times"), "{}", f.title);
        assert_eq!(f.hint, CONTENTION_HINT);
    }
}
