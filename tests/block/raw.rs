//! `go tool pprof -raw` read back: every sample of a blocking profile with its exact
//! values, labels and functions, for the blocking-profile tests.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use integration_tests::pprof;

/// One sample of a profile as `go tool pprof -raw` prints it.
#[derive(Debug, Clone)]
pub struct RawSample {
    /// contentions, delay (the profile's sample types, in order).
    values: Vec<i64>,
    labels: HashMap<String, String>,
    /// Function names, leaf first (inlined frames included).
    functions: Vec<String>,
}

impl RawSample {
    /// Whether `function` is on the sample's stack.
    pub fn has(&self, function: &str) -> bool {
        self.functions.iter().any(|f| f == function)
    }

    /// The functions of its stack, leaf first (inlined frames included).
    // Only some of the test files that include this module describe stacks with it.
    #[allow(dead_code)]
    pub fn functions(&self) -> &[String] {
        &self.functions
    }

    /// The value of label `key`, empty when the sample has none.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }

    /// How many waits the sample counts.
    pub fn contentions(&self) -> i64 {
        self.values[0]
    }

    /// Nanoseconds waited.
    pub fn delay(&self) -> i64 {
        self.values[1]
    }
}

/// Every sample of `pb`, read through `go tool pprof -raw`.
pub fn raw_samples(pb: &Path) -> Vec<RawSample> {
    let raw = pprof(&["-raw".as_ref(), pb.as_os_str()]);
    raw.assert_success();
    let parsed = parse_raw(&raw.stdout);
    let header = raw
        .stdout
        .lines()
        .skip_while(|l| l.trim() != "Samples:")
        .nth(1)
        .unwrap_or("");
    assert!(
        header.starts_with("contentions/count delay/nanoseconds"),
        "block.pb.gz sample types are not contentions/count, delay/nanoseconds: {header:?}"
    );
    parsed
}

/// Parses the `Samples:` and `Locations` sections of `go tool pprof -raw` output.
fn parse_raw(text: &str) -> Vec<RawSample> {
    enum Section {
        Preamble,
        Samples,
        Locations,
        Done,
    }
    let mut section = Section::Preamble;
    // The samples, with their functions still to fill in from the location ids.
    let mut samples: Vec<(RawSample, Vec<u64>)> = Vec::new();
    let mut locations: HashMap<u64, Vec<String>> = HashMap::new();
    let mut current_location = None;
    for line in text.lines() {
        let trimmed = line.trim();
        match trimmed {
            "Samples:" => {
                section = Section::Samples;
                continue;
            }
            "Locations" => {
                section = Section::Locations;
                continue;
            }
            "Mappings" => section = Section::Done,
            _ => {}
        }
        match section {
            Section::Preamble | Section::Done => {}
            Section::Samples if trimmed.contains(":[") => {
                let (RawSample { labels, .. }, _) = samples
                    .last_mut()
                    .unwrap_or_else(|| panic!("pprof -raw label line before a sample: {line:?}"));
                let mut rest = trimmed;
                while let Some(open) = rest.find(":[") {
                    let key = rest[..open].split_whitespace().last().unwrap_or("");
                    let after = &rest[open + 2..];
                    let close = after.find(']').unwrap_or(after.len());
                    labels.insert(key.to_owned(), after[..close].to_owned());
                    rest = &after[(close + 1).min(after.len())..];
                }
            }
            Section::Samples => {
                let Some((values, ids)) = trimmed.split_once(':') else {
                    continue; // the sample-type header
                };
                let Ok(values) = values
                    .split_whitespace()
                    .map(str::parse::<i64>)
                    .collect::<Result<Vec<_>, _>>()
                else {
                    continue;
                };
                let ids = ids
                    .split_whitespace()
                    .map(|id| {
                        id.parse()
                            .unwrap_or_else(|e| panic!("bad location {id:?}: {e}"))
                    })
                    .collect();
                let sample = RawSample {
                    values,
                    labels: HashMap::new(),
                    functions: Vec::new(),
                };
                samples.push((sample, ids));
            }
            Section::Locations => {
                let mut words = trimmed.split_whitespace();
                let first = words.next().unwrap_or("");
                if let Some(Ok(id)) = first.strip_suffix(':').map(str::parse::<u64>) {
                    // `ID: 0xADDR M=N function file:line s=0`
                    let function = words.nth(2).unwrap_or("").to_owned();
                    locations.insert(id, vec![function]);
                    current_location = Some(id);
                } else if let Some(id) = current_location {
                    // An inlined caller: `function file:line s=0`
                    if !first.is_empty() {
                        locations.entry(id).or_default().push(first.to_owned());
                    }
                }
            }
        }
    }
    samples
        .into_iter()
        .map(|(sample, ids)| RawSample {
            functions: ids
                .iter()
                .flat_map(|id| locations.get(id).cloned().unwrap_or_default())
                .collect(),
            ..sample
        })
        .collect()
}

/// The samples as text, for assertion messages.
pub fn describe(samples: &[RawSample]) -> String {
    let mut out = format!("{} samples:\n", samples.len());
    for s in samples {
        let labels: BTreeMap<_, _> = s.labels.iter().collect();
        let mut stack = s.functions.clone();
        stack.reverse();
        let _ = writeln!(
            out,
            "  waits={} delay={}ns {labels:?}\n    {}",
            s.contentions(),
            s.delay(),
            stack.join(";")
        );
    }
    out
}

/// Delay per tid of the samples for which `pred` holds, for assertion messages.
pub fn delay_by_tid(
    samples: &[RawSample],
    pred: impl Fn(&RawSample) -> bool,
) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for s in samples.iter().filter(|s| pred(s)) {
        *m.entry(s.label("tid").to_owned()).or_default() += s.delay();
    }
    m
}
