//! The pprof format: a gzipped `perftools.profiles.Profile` protobuf, as `go tool pprof`
//! and most profile viewers read it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;

use super::proto;
use crate::profile::{LabelValue, Location, Profile, ValueType};

/// The string table under construction: each distinct string stored once, "" at index 0.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut strings = Self {
            table: Vec::new(),
            index: HashMap::new(),
        };
        // pprof requires the empty string first, so that index 0 means "unset".
        strings.intern("");
        strings
    }

    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

fn value_type(strings: &mut Strings, t: &ValueType) -> proto::ValueType {
    proto::ValueType {
        r#type: strings.intern(&t.kind),
        unit: strings.intern(&t.unit),
    }
}

/// Converts a profile to pprof's protobuf message.
pub fn encode(profile: &Profile) -> proto::Profile {
    let mut strings = Strings::new();
    let sample_type = profile
        .sample_types
        .iter()
        .map(|t| value_type(&mut strings, t))
        .collect();

    // Functions are keyed by (name, file): the same name in two files is two functions.
    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<(&str, Option<&str>), u64> = HashMap::new();
    let mut location = Vec::with_capacity(profile.locations.len());
    for (i, loc) in profile.locations.iter().enumerate() {
        let line = loc
            .lines
            .iter()
            .map(|l| {
                let key = (l.function.as_str(), l.file.as_deref());
                let function_id = *function_ids.entry(key).or_insert_with(|| {
                    let name = strings.intern(&l.function);
                    let id = functions.len() as u64 + 1;
                    functions.push(proto::Function {
                        id,
                        name,
                        // The symbolizer only keeps demangled names, so both names agree.
                        system_name: name,
                        filename: strings.intern(l.file.as_deref().unwrap_or("")),
                        start_line: 0,
                    });
                    id
                });
                proto::Line {
                    function_id,
                    line: i64::from(l.line),
                }
            })
            .collect();
        location.push(proto::Location {
            id: i as u64 + 1,
            mapping_id: loc.mapping.map_or(0, |m| m as u64 + 1),
            address: loc.address,
            line,
            is_folded: false,
        });
    }

    // What each mapping's locations carry, gathered in one pass over the locations.
    let mut flags = vec![MappingFlags::default(); profile.mappings.len()];
    for loc in &profile.locations {
        if let Some(f) = loc.mapping.and_then(|m| flags.get_mut(m)) {
            f.add(loc);
        }
    }
    let mapping = profile
        .mappings
        .iter()
        .zip(&flags)
        .enumerate()
        .map(|(i, (m, f))| proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.file_offset,
            filename: strings.intern(&m.path),
            build_id: strings.intern(m.build_id.as_deref().unwrap_or("")),
            has_functions: f.any && f.functions,
            has_filenames: f.any && f.filenames,
            has_line_numbers: f.any && f.line_numbers,
            has_inline_frames: f.inline_frames,
        })
        .collect();

    let sample = profile
        .samples
        .iter()
        .map(|s| proto::Sample {
            location_id: profile.stacks[s.stack]
                .iter()
                .map(|&l| l as u64 + 1)
                .collect(),
            value: s.values.clone(),
            label: s
                .labels
                .iter()
                .map(|l| {
                    let key = strings.intern(&l.key);
                    match &l.value {
                        LabelValue::Str(v) => proto::Label {
                            key,
                            str: strings.intern(v),
                            num: 0,
                            num_unit: 0,
                        },
                        LabelValue::Num(n) => proto::Label {
                            key,
                            str: 0,
                            num: *n,
                            num_unit: 0,
                        },
                    }
                })
                .collect(),
        })
        .collect();

    let period_type = profile
        .period_type
        .as_ref()
        .map(|t| value_type(&mut strings, t));
    let comment = profile.comments.iter().map(|c| strings.intern(c)).collect();
    let default_sample_type = profile
        .sample_types
        .get(profile.default_sample_type)
        .map_or(0, |t| strings.intern(&t.kind));

    proto::Profile {
        sample_type,
        sample,
        mapping,
        location,
        function: functions,
        string_table: strings.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: unix_nanos(profile.start),
        duration_nanos: i64::try_from(profile.duration.as_nanos()).unwrap_or(i64::MAX),
        period_type,
        period: profile.period,
        comment,
        default_sample_type,
    }
}

/// The symbolic information the locations of one mapping carry.
///
/// A "has" flag is set only when every location has it, so that pprof, which may
/// symbolize mappings lacking information, is never told a partly symbolized one is done.
#[derive(Clone, Copy)]
struct MappingFlags {
    any: bool,
    functions: bool,
    filenames: bool,
    line_numbers: bool,
    inline_frames: bool,
}

impl Default for MappingFlags {
    fn default() -> Self {
        Self {
            any: false,
            functions: true,
            filenames: true,
            line_numbers: true,
            inline_frames: false,
        }
    }
}

impl MappingFlags {
    fn add(&mut self, loc: &Location) {
        self.any = true;
        self.functions &= loc.lines.iter().all(|l| is_symbolized(&l.function));
        self.filenames &= loc.lines.iter().all(|l| l.file.is_some());
        self.line_numbers &= loc.lines.iter().all(|l| l.line != 0);
        self.inline_frames |= loc.lines.len() > 1;
    }
}

/// Whether a function name came from symbols rather than the symbolizer's fallbacks
/// (`[unknown]`, `module+0xoffset`).
fn is_symbolized(function: &str) -> bool {
    if function == "[unknown]" {
        return false;
    }
    match function.rsplit_once("+0x") {
        Some((_, hex)) => hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()),
        None => true,
    }
}

/// Nanoseconds since the Unix epoch, negative for times before it.
fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Writes `profile` to `path` as a gzipped pprof protobuf.
pub fn write(profile: &Profile, path: &Path) -> anyhow::Result<()> {
    let bytes = encode(profile).encode_to_vec();
    let write = || -> std::io::Result<()> {
        let mut gz = GzEncoder::new(BufWriter::new(File::create(path)?), Compression::default());
        gz.write_all(&bytes)?;
        gz.finish()?.flush()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a pprof profile from `path`, gzipped or not.
// Only tests read profiles back until `profiler report` does.
#[allow(dead_code)]
pub fn read(path: &Path) -> anyhow::Result<proto::Profile> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .with_context(|| format!("cannot read {}", path.display()))?;
    // pprof itself accepts plain protobuf too, so only gunzip what has the gzip magic.
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("cannot decompress {}", path.display()))?;
        out
    } else {
        raw
    };
    proto::Profile::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a pprof profile", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixture;

    fn string(p: &proto::Profile, i: i64) -> &str {
        &p.string_table[i as usize]
    }

    fn round_trip() -> proto::Profile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpu.pb.gz");
        write(&fixture::profile(), &path).unwrap();
        read(&path).unwrap()
    }

    #[test]
    fn header_fields() {
        let p = round_trip();
        assert_eq!(p.string_table[0], "");
        let types: Vec<_> = p
            .sample_type
            .iter()
            .map(|t| (string(&p, t.r#type), string(&p, t.unit)))
            .collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        assert_eq!(string(&p, p.default_sample_type), "cpu");
        let period_type = p.period_type.as_ref().unwrap();
        assert_eq!(
            (string(&p, period_type.r#type), string(&p, period_type.unit)),
            ("cpu", "nanoseconds")
        );
        assert_eq!(p.period, fixture::PERIOD);
        assert_eq!(p.time_nanos, 1_700_000_000 * 1_000_000_000);
        assert_eq!(p.duration_nanos, 2_000_000_000);
        let comments: Vec<_> = p.comment.iter().map(|&c| string(&p, c)).collect();
        assert_eq!(comments, ["window 2s", "lost 0 samples"]);
        // Interning: no string is stored twice.
        let mut sorted = p.string_table.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), p.string_table.len());
    }

    #[test]
    fn samples_and_labels() {
        let p = round_trip();
        assert_eq!(p.sample.len(), 3);
        assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 10);
        assert_eq!(
            p.sample.iter().map(|s| s.value[1]).sum::<i64>(),
            10 * fixture::PERIOD
        );
        let labels: Vec<Vec<String>> = p
            .sample
            .iter()
            .map(|s| {
                s.label
                    .iter()
                    .map(|l| match l.str {
                        0 => format!("{}={}", string(&p, l.key), l.num),
                        v => format!("{}={}", string(&p, l.key), string(&p, v)),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(labels[0], ["pid=100", "tid=101", "comm=app"]);
        assert_eq!(labels[2], ["pid=200", "tid=200"]);
    }

    #[test]
    fn locations_functions_and_mapping() {
        let p = round_trip();
        let function = |id: u64| p.function.iter().find(|f| f.id == id).unwrap();
        let names = |loc_id: u64| -> Vec<&str> {
            let loc = p.location.iter().find(|l| l.id == loc_id).unwrap();
            loc.line
                .iter()
                .map(|l| string(&p, function(l.function_id).name))
                .collect()
        };
        // The second sample is main -> run/b (inlined) -> a, leaf first.
        let stack: Vec<Vec<&str>> = p.sample[1]
            .location_id
            .iter()
            .map(|&id| names(id))
            .collect();
        assert_eq!(stack, [vec!["a"], vec!["b", "run"], vec!["main"]]);
        let main = p.location.iter().find(|l| names(l.id) == ["main"]).unwrap();
        assert_eq!(main.address, 0x1100);
        assert_eq!(main.line[0].line, 10);
        assert_eq!(
            string(&p, function(main.line[0].function_id).filename),
            "main.c"
        );
        assert_eq!(p.function.len(), 4);

        assert_eq!(p.mapping.len(), 1);
        let m = &p.mapping[0];
        assert_eq!((m.id, m.memory_start, m.memory_limit), (1, 0x1000, 0x9000));
        assert_eq!(string(&p, m.filename), "/usr/bin/app");
        assert_eq!(string(&p, m.build_id), "abcdef0123");
        assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);
        assert!(p.location.iter().all(|l| l.mapping_id == 1));
    }

    #[test]
    fn reads_plain_protobuf_and_reports_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.pb");
        std::fs::write(&path, encode(&fixture::profile()).encode_to_vec()).unwrap();
        assert_eq!(read(&path).unwrap(), encode(&fixture::profile()));
        std::fs::write(&path, b"\xff\xff\xff").unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("plain.pb"));
    }

    #[test]
    fn partly_symbolized_mapping_claims_nothing() {
        let mut p = fixture::profile();
        p.locations.push(fixture::location(
            0x1400,
            Some(0),
            vec![fixture::line("app+0x400")],
        ));
        p.mappings.push(p.mappings[0].clone());
        p.mappings[1].path = "/usr/lib/unused.so".into();
        let m = encode(&p).mapping;
        assert!(!m[0].has_functions && !m[0].has_filenames && !m[0].has_line_numbers);
        assert!(m[0].has_inline_frames);
        assert!(!m[1].has_functions && !m[1].has_inline_frames);
    }

    #[test]
    fn fallback_names_are_not_symbolized() {
        assert!(!is_symbolized("[unknown]"));
        assert!(!is_symbolized("libc.so.6+0x1f2a"));
        assert!(is_symbolized("main"));
        assert!(is_symbolized("operator+0xyz"));
    }
}
