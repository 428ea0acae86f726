//! Reading a pprof profile through `go tool pprof -raw`: its samples with their values,
//! frames (inlined ones expanded) and labels.

use std::collections::HashMap;
use std::path::Path;

use integration_tests::pprof;

/// One sample of a pprof profile as `go tool pprof -raw` prints it.
#[derive(Debug, Clone)]
pub(crate) struct RawSample {
    /// By sample type name (`calls`, `bytes`, `time`, `errors`).
    pub(crate) values: HashMap<String, i64>,
    /// Function names, leaf first (inlined frames expanded).
    pub(crate) frames: Vec<String>,
    /// Label key to values.
    pub(crate) labels: HashMap<String, Vec<String>>,
}

impl RawSample {
    pub(crate) fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|f| f == function)
    }

    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub(crate) fn value(&self, name: &str) -> i64 {
        *self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("sample has no value {name}: {self:?}"))
    }

    pub(crate) fn describe(&self) -> String {
        let mut labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.join(",")))
            .collect();
        labels.sort();
        let mut values: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        values.sort();
        let mut frames = self.frames.clone();
        frames.reverse();
        format!(
            "[{}] {{{}}} {}",
            values.join(" "),
            labels.join(" "),
            frames.join(";")
        )
    }
}

/// The samples of a profile, parsed from `go tool pprof -raw`.
#[derive(Debug)]
pub(crate) struct RawProfile {
    pub(crate) samples: Vec<RawSample>,
    /// The `-raw` text, for assertion messages.
    pub(crate) text: String,
}

impl RawProfile {
    pub(crate) fn load(pb: &Path) -> RawProfile {
        let run = pprof(&["-raw".as_ref(), pb.as_os_str()]);
        run.assert_success();
        RawProfile::parse(&run.stdout)
    }

    pub(crate) fn parse(text: &str) -> RawProfile {
        #[derive(PartialEq)]
        enum Section {
            Head,
            SampleTypes,
            Samples,
            Locations,
            Tail,
        }
        let mut section = Section::Head;
        let mut types: Vec<String> = Vec::new();
        // Samples with their location ids, resolved once the locations are known.
        let mut pending: Vec<(RawSample, Vec<u64>)> = Vec::new();
        let mut locations: HashMap<u64, Vec<String>> = HashMap::new();
        let mut current_location: Option<u64> = None;
        for line in text.lines() {
            let trimmed = line.trim();
            match trimmed {
                "Samples:" => {
                    section = Section::SampleTypes;
                    continue;
                }
                "Locations" => {
                    section = Section::Locations;
                    continue;
                }
                "Mappings" => {
                    section = Section::Tail;
                    continue;
                }
                _ => {}
            }
            if trimmed.is_empty() {
                continue;
            }
            match section {
                Section::Head | Section::Tail => {}
                Section::SampleTypes => {
                    types = trimmed
                        .split_whitespace()
                        .map(|t| t.split('/').next().unwrap_or(t).to_owned())
                        .collect();
                    section = Section::Samples;
                }
                Section::Samples => {
                    let is_values = trimmed
                        .split(':')
                        .next()
                        .is_some_and(|v| v.split_whitespace().all(|n| n.parse::<i64>().is_ok()));
                    if is_values && trimmed.contains(':') {
                        let (values, locs) = trimmed.split_once(':').unwrap();
                        let values = types
                            .iter()
                            .cloned()
                            .zip(values.split_whitespace().map(|n| n.parse::<i64>().unwrap()))
                            .collect();
                        let locs = locs
                            .split_whitespace()
                            .map(|id| id.parse::<u64>().expect("location id"))
                            .collect();
                        pending.push((
                            RawSample {
                                values,
                                frames: Vec::new(),
                                labels: HashMap::new(),
                            },
                            locs,
                        ));
                    } else if let Some((sample, _)) = pending.last_mut() {
                        for (key, value) in parse_labels(trimmed) {
                            sample.labels.entry(key).or_default().extend(value);
                        }
                    }
                }
                Section::Locations => {
                    let mut tokens: Vec<&str> = trimmed.split_whitespace().collect();
                    let id = tokens
                        .first()
                        .and_then(|t| t.strip_suffix(':'))
                        .and_then(|t| t.parse::<u64>().ok());
                    if let Some(id) = id {
                        // `ID: 0xADDR [M=N] FUNCTION FILE:LINE s=N`
                        tokens.drain(..2);
                        if tokens.first().is_some_and(|t| t.starts_with("M=")) {
                            tokens.remove(0);
                        }
                        current_location = Some(id);
                        locations.entry(id).or_default();
                    }
                    // An inlined frame: `FUNCTION FILE:LINE s=N`.
                    let Some(id) = current_location else { continue };
                    if tokens.len() >= 3 {
                        let name = tokens[..tokens.len() - 2].join(" ");
                        locations.entry(id).or_default().push(name);
                    } else if let Some(first) = tokens.first() {
                        locations.entry(id).or_default().push((*first).to_owned());
                    }
                }
            }
        }
        let samples = pending
            .into_iter()
            .map(|(mut sample, locs)| {
                for id in locs {
                    match locations.get(&id) {
                        Some(names) if !names.is_empty() => sample.frames.extend(names.clone()),
                        _ => sample.frames.push("[unknown]".to_owned()),
                    }
                }
                sample
            })
            .collect();
        RawProfile {
            samples,
            text: text.to_owned(),
        }
    }

    /// The samples with `function` in their stack.
    pub(crate) fn containing<'a>(
        &'a self,
        function: &'a str,
    ) -> impl Iterator<Item = &'a RawSample> + 'a {
        self.samples.iter().filter(move |s| s.has(function))
    }

    /// The sum of value `name` over the samples for which `pred` holds.
    pub(crate) fn sum(&self, name: &str, pred: impl Fn(&RawSample) -> bool) -> i64 {
        self.samples
            .iter()
            .filter(|s| pred(s))
            .map(|s| s.value(name))
            .sum()
    }

    /// The samples with `function` in their stack, as text.
    pub(crate) fn describe(&self, function: &str) -> String {
        let lines: Vec<String> = self.containing(function).map(RawSample::describe).collect();
        if lines.is_empty() {
            format!("no sample has {function} in its stack")
        } else {
            lines.join("\n")
        }
    }
}

/// The `key:[value ...]` pairs of a `-raw` label line.
pub(crate) fn parse_labels(line: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find(":[") {
        let key = rest[..open]
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or("")
            .to_owned();
        let after = &rest[open + 2..];
        let Some(close) = after.find(']') else { break };
        let values = after[..close]
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        out.push((key, values));
        rest = &after[close + 1..];
    }
    out
}
