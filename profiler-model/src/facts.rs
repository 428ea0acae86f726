//! The facts of a run that every profile carries as its first comment, as a typed struct
//! with its encoding, so a profile read back later (by `go tool pprof` or `profiler
//! report`) still says where and how it was taken.

use std::time::{Duration, SystemTime};

/// Where and how a run took its profiles. Decoding tolerates a comment missing parts (a
/// field it cannot find stays `None`); [`RunFacts::decode`] inverts [`RunFacts::encode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// The host name.
    pub host: Option<String>,
    /// The kernel release.
    pub kernel: Option<String>,
    /// Online CPUs.
    pub cpus: Option<u64>,
    /// What was profiled, in words (free text: a command line may hold any character).
    pub target: Option<String>,
    /// How long the window was, to the hundredth of a second.
    pub window: Option<Duration>,
    /// When the window opened, to the second.
    pub started: Option<SystemTime>,
    /// Why the window closed, in words.
    pub ended: Option<String>,
}

/// The comment's first word.
const PREFIX: &str = "run: ";

impl RunFacts {
    /// `run: host H, kernel K, N CPUs; target: T; window: Ss from TIME; why it ended`.
    pub fn encode(&self) -> String {
        let or_unknown = |s: &Option<String>| s.clone().unwrap_or_else(|| "unknown".into());
        let mut out = format!(
            "{PREFIX}host {}, kernel {}, {} CPUs; target: {}; window: {:.2}s",
            or_unknown(&self.host),
            or_unknown(&self.kernel),
            self.cpus.unwrap_or(0),
            or_unknown(&self.target),
            self.window.unwrap_or_default().as_secs_f64(),
        );
        if let Some(started) = self.started {
            out.push_str(" from ");
            out.push_str(&humantime::format_rfc3339_seconds(started).to_string());
        }
        if let Some(ended) = &self.ended {
            out.push_str("; ");
            out.push_str(ended);
        }
        out
    }

    /// `self`, with what it lacks taken from `other`: the facts a profile carries, filled in
    /// from the host a report is made on.
    pub fn or(self, other: RunFacts) -> Self {
        Self {
            host: self.host.or(other.host),
            kernel: self.kernel.or(other.kernel),
            cpus: self.cpus.or(other.cpus),
            target: self.target.or(other.target),
            window: self.window.or(other.window),
            started: self.started.or(other.started),
            ended: self.ended.or(other.ended),
        }
    }

    /// The facts of a comment [`Self::encode`] wrote; `None` for any other comment.
    pub fn decode(comment: &str) -> Option<Self> {
        let rest = comment.strip_prefix(PREFIX)?;
        let mut facts = Self::default();
        // The target is free text (a command line), so cut around the fixed labels.
        let (machine, rest) = rest.split_once("; target: ").unwrap_or((rest, ""));
        for part in machine.split(", ") {
            if let Some(host) = part.strip_prefix("host ") {
                facts.host = Some(host.to_owned());
            } else if let Some(kernel) = part.strip_prefix("kernel ") {
                facts.kernel = Some(kernel.to_owned());
            } else if let Some(n) = part.strip_suffix(" CPUs") {
                facts.cpus = n.parse().ok();
            }
        }
        let Some((target, window)) = rest.rsplit_once("; window: ") else {
            return Some(facts);
        };
        facts.target = Some(target.to_owned());
        let (window, ended) = window.split_once("; ").unwrap_or((window, ""));
        let (length, started) = window.split_once(" from ").unwrap_or((window, ""));
        facts.window = length
            .strip_suffix('s')
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e12)
            .map(Duration::from_secs_f64);
        facts.started = humantime::parse_rfc3339(started).ok();
        facts.ended = (!ended.is_empty()).then(|| ended.to_owned());
        Some(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_inverts_encode() {
        let facts = RunFacts {
            host: Some("vm".into()),
            kernel: Some("6.18.44".into()),
            cpus: Some(2),
            target: Some("command `sh -c a; b; window: x` and its children".into()),
            window: Some(Duration::from_millis(3_250)),
            started: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000)),
            ended: Some("the duration elapsed".into()),
        };
        assert_eq!(RunFacts::decode(&facts.encode()), Some(facts.clone()));
        let bare = RunFacts {
            started: None,
            ended: None,
            ..facts
        };
        assert_eq!(RunFacts::decode(&bare.encode()), Some(bare));
    }

    #[test]
    fn missing_facts_are_filled_in_and_present_ones_kept() {
        let partial = RunFacts::decode("run: host vm, kernel k, 2 CPUs").unwrap();
        let live = RunFacts {
            host: Some("h".into()),
            cpus: Some(8),
            ended: Some("stopped".into()),
            ..RunFacts::default()
        };
        let merged = partial.or(live);
        assert_eq!(
            (merged.host.as_deref(), merged.cpus, merged.ended.as_deref()),
            (Some("vm"), Some(2), Some("stopped"))
        );
    }

    #[test]
    fn other_comments_are_not_facts() {
        assert_eq!(RunFacts::decode("lost: 0"), None);
        let partial = RunFacts::decode("run: host vm, kernel k, 2 CPUs").unwrap();
        assert_eq!(partial.cpus, Some(2));
        assert_eq!(partial.target, None);
        let odd = RunFacts::decode("run: ; target: t; window: NaNs from never").unwrap();
        assert_eq!((odd.window, odd.started), (None, None));
    }
}
