//! The run's facts for the report's header, read back from the `run:` comment every profile
//! starts with.

use serde::Serialize;

/// Where and how the profiles were taken.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct RunFacts {
    /// The host name.
    pub host: Option<String>,
    /// The kernel release.
    pub kernel: Option<String>,
    /// Online CPUs.
    pub cpus: Option<u64>,
    /// What was profiled, in words.
    pub target: Option<String>,
    /// How long the window was, in words ("3.00s").
    pub window: Option<String>,
    /// When the window opened (RFC 3339).
    pub started: Option<String>,
    /// Why the window closed.
    pub ended: Option<String>,
    /// Where the report's data came from: a live run, or the files of an earlier one.
    pub source: String,
}

impl RunFacts {
    /// The header's facts from a profile's comment that [`crate::profile::RunFacts`]
    /// encoded; fields it cannot find stay `None`, and any other comment gives none.
    pub fn from_comment(comment: &str) -> Self {
        let Some(facts) = crate::profile::RunFacts::decode(comment) else {
            return Self::default();
        };
        Self {
            host: facts.host,
            kernel: facts.kernel,
            cpus: facts.cpus,
            target: facts.target,
            window: facts.window.map(|w| format!("{:.2}s", w.as_secs_f64())),
            started: facts
                .started
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            ended: facts.ended,
            source: String::new(),
        }
    }

    /// `self`, with what it lacks taken from `other`.
    pub fn or(self, other: RunFacts) -> Self {
        Self {
            host: self.host.or(other.host),
            kernel: self.kernel.or(other.kernel),
            cpus: self.cpus.or(other.cpus),
            target: self.target.or(other.target),
            window: self.window.or(other.window),
            started: self.started.or(other.started),
            ended: self.ended.or(other.ended),
            source: if self.source.is_empty() {
                other.source
            } else {
                self.source
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_facts_come_from_the_first_comment() {
        let f = RunFacts::from_comment(
            "run: host vm, kernel 6.18.44, 2 CPUs; target: command `sh -c a; b` and its \
             children; window: 3.00s from 2026-11-27T22:53:58Z; the duration elapsed",
        );
        assert_eq!(f.host.as_deref(), Some("vm"));
        assert_eq!(f.kernel.as_deref(), Some("6.18.44"));
        assert_eq!(f.cpus, Some(2));
        assert_eq!(
            f.target.as_deref(),
            Some("command `sh -c a; b` and its children")
        );
        assert_eq!(f.window.as_deref(), Some("3.00s"));
        assert_eq!(f.started.as_deref(), Some("2026-11-27T22:53:58Z"));
        assert_eq!(f.ended.as_deref(), Some("the duration elapsed"));
        assert_eq!(RunFacts::from_comment("lost: 0"), RunFacts::default());
        let live = RunFacts {
            host: Some("h".into()),
            cpus: Some(8),
            source: "live".into(),
            ..Default::default()
        };
        let merged = RunFacts::from_comment("run: host vm, kernel k, 2 CPUs").or(live);
        assert_eq!(
            (merged.host.as_deref(), merged.cpus, merged.source.as_str()),
            (Some("vm"), Some(2), "live")
        );
    }
}
