//! The report's header: the run's facts (the model's [`RunFacts`], read back from the `run:`
//! comment every profile starts with) and where the report's data came from, as the page
//! shows them.

use serde::{Serialize, Serializer};

use profiler_model::{Comment, Profile, RunFacts};

/// The run's facts and the report's source, for the header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    /// Where and how the profiles were taken.
    pub facts: RunFacts,
    /// Where the report's data came from: a live run, or the files of an earlier one.
    pub source: String,
}

impl Header {
    /// The facts of the first `run:` comment of `profiles`, with what it lacks taken from
    /// `fallback` (the live host's facts for a run that just ended).
    pub fn of(profiles: &[Profile], fallback: RunFacts, source: &str) -> Self {
        let facts = profiles
            .iter()
            .flat_map(|p| &p.comments)
            .find_map(|c| match c {
                Comment::Run { facts, .. } => Some(facts.clone()),
                _ => None,
            })
            .unwrap_or_default()
            .or(fallback);
        Self {
            facts,
            source: source.to_owned(),
        }
    }
}

/// The header as the page's script reads it: the window in seconds to the hundredth and
/// its start in RFC 3339, in words.
#[derive(Serialize)]
struct Shown<'a> {
    host: &'a Option<String>,
    kernel: &'a Option<String>,
    cpus: Option<u64>,
    target: &'a Option<String>,
    window: Option<String>,
    started: Option<String>,
    ended: &'a Option<String>,
    source: &'a str,
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let f = &self.facts;
        Shown {
            host: &f.host,
            kernel: &f.kernel,
            cpus: f.cpus,
            target: &f.target,
            window: f.window.map(|w| format!("{:.2}s", w.as_secs_f64())),
            started: f
                .started
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            ended: &f.ended,
            source: &self.source,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_comes_from_the_first_run_comment() {
        let mut p = profiler_model::fixture::profile();
        p.comments = vec![
            Comment::read("lost: 0".to_owned()),
            Comment::read(
                "run: host vm, kernel 6.18.44, 2 CPUs; target: command `sh -c a; b` and its \
             children; window: 3.00s from 2026-11-27T22:53:58Z; the duration elapsed"
                    .to_owned(),
            ),
        ];
        let live = RunFacts {
            host: Some("h".into()),
            cpus: Some(8),
            ..RunFacts::default()
        };
        let header = Header::of(&[p], live.clone(), "live");
        let json = serde_json::to_value(&header).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "host": "vm", "kernel": "6.18.44", "cpus": 2,
                "target": "command `sh -c a; b` and its children",
                "window": "3.00s", "started": "2026-11-27T22:53:58Z",
                "ended": "the duration elapsed", "source": "live"
            })
        );
        // Without a run comment, the fallback's facts and nothing more.
        let bare = Header::of(&[profiler_model::fixture::profile()], live, "live");
        let json = serde_json::to_value(&bare).unwrap();
        assert_eq!(
            (json["host"].as_str(), json["cpus"].as_u64()),
            (Some("h"), Some(8))
        );
        assert!(json["window"].is_null() && json["kernel"].is_null());
    }
}
