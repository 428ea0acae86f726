//! speedscope's JSON file format (<https://www.speedscope.app/file-format-schema.json>), which
//! speedscope.app opens by drag and drop: `{name}.speedscope.json`, one "sampled" profile per
//! sample type.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;
use profiler_model::Profile;
use serde::Serialize;

use super::folded::process_frame;

/// The schema URL speedscope checks to recognize its own format.
const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// A whole speedscope file.
#[derive(Debug, Serialize)]
pub struct File {
    #[serde(rename = "$schema")]
    schema: &'static str,
    shared: Shared,
    profiles: Vec<Sampled>,
    name: String,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    exporter: &'static str,
}

/// The frames every profile of the file refers to by index.
#[derive(Debug, Serialize)]
struct Shared {
    frames: Vec<Frame>,
}

/// One frame: a function, and where it is, when known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
struct Frame {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

/// A "sampled" profile: stacks of frame indices (root first) and their weights.
#[derive(Debug, Serialize)]
struct Sampled {
    r#type: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: i64,
    #[serde(rename = "endValue")]
    end_value: i64,
    samples: Vec<Vec<usize>>,
    weights: Vec<i64>,
}

/// The speedscope document for `profile`: one sampled profile per sample type, the default
/// type shown first.
///
/// As in the folded output, each stack starts with a frame for its process (its command
/// name, else its pid), so a whole-host profile stays split by process. Samples whose
/// weight is not positive for a type are left out of that type's profile, since speedscope
/// cannot draw them.
pub fn render(profile: &Profile) -> File {
    let mut frames: Vec<Frame> = Vec::new();
    let mut frame_ids: HashMap<Frame, usize> = HashMap::new();
    let mut intern = |frame: Frame| -> usize {
        *frame_ids.entry(frame.clone()).or_insert_with(|| {
            frames.push(frame);
            frames.len() - 1
        })
    };
    let stacks: Vec<Vec<usize>> = profile
        .samples
        .iter()
        .map(|sample| {
            let mut stack = vec![intern(Frame {
                name: process_frame(sample),
                file: None,
                line: None,
            })];
            for &loc in profile.stack(sample.stack).iter().rev() {
                // Lines are innermost first; speedscope wants callers first.
                for line in profile.location(loc).lines.iter().rev() {
                    stack.push(intern(Frame {
                        name: line.function.clone(),
                        file: line.file.clone(),
                        line: (line.line != 0).then_some(line.line),
                    }));
                }
            }
            stack
        })
        .collect();

    let profiles = profile
        .sample_types
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let mut samples = Vec::new();
            let mut weights = Vec::new();
            for (sample, stack) in profile.samples.iter().zip(&stacks) {
                let weight = sample.value(index);
                if weight > 0 {
                    samples.push(stack.clone());
                    weights.push(weight);
                }
            }
            Sampled {
                r#type: "sampled",
                name: format!("{} {} ({})", profile.kind.name(), t.kind, t.unit),
                unit: unit(&t.unit),
                start_value: 0,
                end_value: weights.iter().fold(0, |sum: i64, &w| sum.saturating_add(w)),
                samples,
                weights,
            }
        })
        .collect();

    File {
        schema: SCHEMA,
        shared: Shared { frames },
        profiles,
        name: format!("{} profile", profile.kind.name()),
        active_profile_index: profile.default_sample_type,
        exporter: "profiler",
    }
}

/// Writes the speedscope file of `profile` into `out`.
pub fn write(profile: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
    let json = serde_json::to_vec(&render(profile)).context("cannot encode JSON")?;
    Ok(out.write_all(&json)?)
}

/// speedscope's unit for a pprof unit: it knows time and bytes, and counts are "none".
fn unit(pprof_unit: &str) -> &'static str {
    match pprof_unit {
        "nanoseconds" => "nanoseconds",
        "bytes" => "bytes",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use profiler_model::fixture::{self, PERIOD};
    use serde_json::Value;

    use super::*;

    fn parsed(profile: &Profile) -> Value {
        let mut out = Vec::new();
        write(profile, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    /// The stacks of profile `i` as frame names, root first, with their weights.
    fn stacks(doc: &Value, i: usize) -> Vec<(Vec<String>, i64)> {
        let frames = doc["shared"]["frames"].as_array().unwrap();
        let p = &doc["profiles"][i];
        p["samples"]
            .as_array()
            .unwrap()
            .iter()
            .zip(p["weights"].as_array().unwrap())
            .map(|(s, w)| {
                let names = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        frames[f.as_u64().unwrap() as usize]["name"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    })
                    .collect();
                (names, w.as_i64().unwrap())
            })
            .collect()
    }

    #[test]
    fn file_has_the_documented_shape() {
        let doc = parsed(&fixture::profile());
        assert_eq!(doc["$schema"], SCHEMA);
        assert_eq!(doc["exporter"], "profiler");
        assert_eq!(doc["activeProfileIndex"], 1);
        let profiles = doc["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0]["type"], "sampled");
        assert_eq!(profiles[0]["unit"], "none");
        assert_eq!(profiles[1]["unit"], "nanoseconds");
        assert_eq!(profiles[0]["startValue"], 0);
        assert_eq!(profiles[0]["endValue"], 10);
        assert_eq!(profiles[1]["endValue"], 10 * PERIOD);
        // Frames are interned: process names and main..b, each once.
        let names: Vec<&str> = doc["shared"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["app", "main", "a", "run", "b", "200"]);
        let main = &doc["shared"]["frames"][1];
        assert_eq!(
            (&main["file"], &main["line"]),
            (&Value::from("main.c"), &Value::from(10))
        );
    }

    #[test]
    fn samples_are_root_first_with_their_weights() {
        let doc = parsed(&fixture::profile());
        let want = |w: i64| {
            vec![
                (vec!["app", "main", "a"], 3 * w),
                (vec!["app", "main", "run", "b", "a"], w),
                (vec!["200", "main", "run", "b"], 6 * w),
            ]
        };
        let as_strings = |v: Vec<(Vec<&str>, i64)>| -> Vec<(Vec<String>, i64)> {
            v.into_iter()
                .map(|(s, w)| (s.into_iter().map(str::to_owned).collect(), w))
                .collect()
        };
        assert_eq!(stacks(&doc, 0), as_strings(want(1)));
        assert_eq!(stacks(&doc, 1), as_strings(want(PERIOD)));
    }

    #[test]
    fn zero_weights_are_left_out() {
        let mut p = fixture::profile();
        p.samples[0].values = vec![0, 0];
        let doc = parsed(&p);
        assert_eq!(doc["profiles"][0]["samples"].as_array().unwrap().len(), 2);
        assert_eq!(doc["profiles"][0]["endValue"], 7);
        let doc = parsed(&fixture::empty());
        assert_eq!(doc["profiles"][0]["weights"], Value::Array(vec![]));
    }
}
