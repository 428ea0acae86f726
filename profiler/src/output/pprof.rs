//! The pprof format: a gzipped `perftools.profiles.Profile` protobuf, as `go tool pprof`
//! and most profile viewers read it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;

use super::proto;
use crate::profile::{Label, LabelValue, Line, Location, Mapping, Profile, Sample, ValueType};
use crate::symbolize::KERNEL_MAPPING;

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

/// Reads `path` (such as `DIR/cpu.pb.gz`) back into the profile model, named after the file
/// (`cpu`).
pub fn load(path: &Path) -> anyhow::Result<Profile> {
    let raw = read(path)?;
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let file = file.unwrap_or_default();
    let name = file
        .strip_suffix(".pb.gz")
        .or_else(|| file.strip_suffix(".pb"))
        .unwrap_or(&file);
    decode(&raw, name).with_context(|| format!("{} is not a usable profile", path.display()))
}

/// Converts pprof's protobuf message back into the profile model, the inverse of [`encode`]:
/// `decode(&encode(p), &p.name)` equals `p`.
///
/// pprof keeps no kernel flag, so a location is a kernel one when its mapping is
/// [`KERNEL_MAPPING`] or, without a mapping, when its frame is a `[kernel ...]` marker. A
/// label is a string when its string index is set; an unset one is the number in `num`,
/// unless the key carries strings in other samples (an empty string, such as the name of
/// a thread that was never seen, is stored as index 0). A location without lines gets one
/// `module+0xoffset` (or `[unknown]`) line, as the symbolizer names what it cannot resolve.
/// Malformed input (an index out of range, a missing id, a sample with the wrong number of
/// values) is an error, never a panic.
pub fn decode(p: &proto::Profile, name: &str) -> anyhow::Result<Profile> {
    let string = |i: i64| -> anyhow::Result<&str> {
        usize::try_from(i)
            .ok()
            .and_then(|i| p.string_table.get(i))
            .map(String::as_str)
            .with_context(|| {
                format!(
                    "string index {i} is outside the string table of {} entries",
                    p.string_table.len()
                )
            })
    };
    let value_type = |t: &proto::ValueType| -> anyhow::Result<ValueType> {
        Ok(ValueType::new(string(t.r#type)?, string(t.unit)?))
    };

    let sample_types = p
        .sample_type
        .iter()
        .map(value_type)
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every summary reads the default sample type: a profile without one has nothing to say.
    if sample_types.is_empty() {
        bail!("it has no sample types");
    }
    let default_kind = string(p.default_sample_type)?;
    // pprof shows the last sample type when the profile names none.
    let default_sample_type = sample_types
        .iter()
        .position(|t| t.kind == default_kind && !default_kind.is_empty())
        .unwrap_or(sample_types.len().saturating_sub(1));
    let period_type = p.period_type.as_ref().map(value_type).transpose()?;
    let comments = p
        .comment
        .iter()
        .map(|&c| string(c).map(str::to_owned))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut mapping_index = HashMap::new();
    let mut mappings = Vec::with_capacity(p.mapping.len());
    for m in &p.mapping {
        if m.id == 0 || mapping_index.insert(m.id, mappings.len()).is_some() {
            bail!("mapping id {} is zero or used twice", m.id);
        }
        let build_id = string(m.build_id)?;
        mappings.push(Mapping {
            start: m.memory_start,
            limit: m.memory_limit,
            file_offset: m.file_offset,
            path: string(m.filename)?.to_owned(),
            build_id: (!build_id.is_empty()).then(|| build_id.to_owned()),
        });
    }

    let mut functions = HashMap::new();
    for f in &p.function {
        let file = string(f.filename)?;
        let entry = (string(f.name)?, (!file.is_empty()).then_some(file));
        if f.id == 0 || functions.insert(f.id, entry).is_some() {
            bail!("function id {} is zero or used twice", f.id);
        }
    }

    let mut location_index = HashMap::new();
    let mut locations = Vec::with_capacity(p.location.len());
    for loc in &p.location {
        if loc.id == 0 || location_index.insert(loc.id, locations.len()).is_some() {
            bail!("location id {} is zero or used twice", loc.id);
        }
        let mapping = match loc.mapping_id {
            0 => None,
            id => Some(*mapping_index.get(&id).with_context(|| {
                format!("location {} names mapping {id}, which is missing", loc.id)
            })?),
        };
        let mut lines = loc
            .line
            .iter()
            .map(|l| {
                let (function, file) = functions.get(&l.function_id).with_context(|| {
                    format!(
                        "location {} names function {}, which is missing",
                        loc.id, l.function_id
                    )
                })?;
                Ok(Line {
                    function: (*function).to_owned(),
                    file: file.map(str::to_owned),
                    line: u32::try_from(l.line).unwrap_or(0),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mapping_path = mapping.map(|m: usize| mappings[m].path.as_str());
        if lines.is_empty() {
            lines.push(unsymbolized(loc.address, mapping.map(|m| &mappings[m])));
        }
        let kernel = match mapping_path {
            Some(path) => path == KERNEL_MAPPING,
            None => lines[0].function.starts_with("[kernel"),
        };
        locations.push(Location {
            address: loc.address,
            mapping,
            lines,
            kernel,
        });
    }

    // Keys that carry a string somewhere: an unset string index on them is "".
    let mut string_keys = HashSet::new();
    for l in p.sample.iter().flat_map(|s| &s.label) {
        if l.str != 0 {
            string_keys.insert(l.key);
        }
    }
    let mut stack_index: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut stacks = Vec::new();
    let mut samples = Vec::with_capacity(p.sample.len());
    for (i, s) in p.sample.iter().enumerate() {
        if s.value.len() != sample_types.len() {
            bail!(
                "sample {i} has {} values for {} sample types",
                s.value.len(),
                sample_types.len()
            );
        }
        let stack =
            s.location_id
                .iter()
                .map(|id| {
                    location_index.get(id).copied().with_context(|| {
                        format!("sample {i} names location {id}, which is missing")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
        let next = stacks.len();
        let stack = *stack_index.entry(stack.clone()).or_insert_with(|| {
            stacks.push(stack);
            next
        });
        let labels = s
            .label
            .iter()
            .map(|l| {
                let key = string(l.key)?.to_owned();
                let value = if l.str != 0 || (l.num == 0 && string_keys.contains(&l.key)) {
                    LabelValue::Str(string(l.str)?.to_owned())
                } else {
                    LabelValue::Num(l.num)
                };
                Ok(Label { key, value })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        samples.push(Sample {
            stack,
            values: s.value.clone(),
            labels,
        });
    }

    Ok(Profile {
        name: name.to_owned(),
        sample_types,
        default_sample_type,
        period_type,
        period: p.period,
        start: from_unix_nanos(p.time_nanos),
        duration: Duration::from_nanos(p.duration_nanos.max(0).unsigned_abs()),
        comments,
        mappings,
        locations,
        stacks,
        samples,
    })
}

/// The line of a location pprof left unsymbolized: `module+0xoffset`, or `[unknown]`.
fn unsymbolized(address: u64, mapping: Option<&Mapping>) -> Line {
    let function = match mapping {
        Some(m) if !m.path.is_empty() => {
            let module = m.path.rsplit('/').next().unwrap_or(&m.path);
            let offset = address.wrapping_sub(m.start).wrapping_add(m.file_offset);
            format!("{module}+{offset:#x}")
        }
        _ => "[unknown]".to_owned(),
    };
    Line {
        function,
        file: None,
        line: 0,
    }
}

/// The time `nanos` after the Unix epoch (before it when negative).
fn from_unix_nanos(nanos: i64) -> SystemTime {
    let d = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixture;

    /// Compares two profiles field by field (Profile has no PartialEq: nothing else needs it).
    fn assert_same(a: &Profile, b: &Profile) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.sample_types, b.sample_types);
        assert_eq!(a.default_sample_type, b.default_sample_type);
        assert_eq!(a.period_type, b.period_type);
        assert_eq!(a.period, b.period);
        assert_eq!(a.start, b.start);
        assert_eq!(a.duration, b.duration);
        assert_eq!(a.comments, b.comments);
        assert_eq!(a.mappings, b.mappings);
        assert_eq!(a.locations, b.locations);
        assert_eq!(a.stacks, b.stacks);
        assert_eq!(a.samples, b.samples);
    }

    /// The fixture with a kernel frame, a lost-stack marker, an empty string label and a
    /// pid 0, which pprof's encoding makes the decoder work for.
    fn rich_profile() -> Profile {
        let mut p = fixture::profile();
        p.mappings.push(Mapping {
            start: 0,
            limit: u64::MAX,
            file_offset: 0,
            path: KERNEL_MAPPING.to_owned(),
            build_id: None,
        });
        p.locations.push(Location {
            address: 0xffff_ffff_8100_0000,
            mapping: Some(1),
            lines: vec![fixture::line("do_syscall_64")],
            kernel: true,
        });
        p.locations.push(Location {
            address: 0,
            mapping: None,
            lines: vec![fixture::line("[kernel stack lost: stack-map collision]")],
            kernel: true,
        });
        let (syscall, marker) = (p.locations.len() - 2, p.locations.len() - 1);
        p.stacks.push(vec![syscall, 0]);
        p.stacks.push(vec![marker, 0]);
        let n = p.stacks.len();
        p.samples.push(Sample {
            stack: n - 2,
            values: vec![2, 2 * fixture::PERIOD],
            labels: vec![
                Label::num("pid", 0),
                Label::num("tid", 0),
                Label::str("comm", ""),
            ],
        });
        p.samples.push(Sample {
            stack: n - 1,
            values: vec![1, fixture::PERIOD],
            labels: vec![Label::str("comm", "swapper/0")],
        });
        p
    }

    #[test]
    fn decode_inverts_encode() {
        for p in [fixture::profile(), rich_profile(), fixture::empty()] {
            let back = decode(&encode(&p), &p.name).unwrap();
            assert_same(&back, &p);
        }
    }

    #[test]
    fn load_names_the_profile_after_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io.pb.gz");
        let mut p = rich_profile();
        write(&p, &path).unwrap();
        p.name = "io".to_owned();
        assert_same(&load(&path).unwrap(), &p);
    }

    #[test]
    fn decode_rejects_what_does_not_add_up() {
        let good = encode(&fixture::profile());
        let mut p = good.clone();
        p.sample[0].value.pop();
        let err = format!("{:#}", decode(&p, "cpu").unwrap_err());
        assert!(
            err.contains("sample 0 has 1 values for 2 sample types"),
            "{err}"
        );
        let mut p = good.clone();
        p.sample[0].location_id.push(99);
        assert!(format!("{:#}", decode(&p, "cpu").unwrap_err()).contains("location 99"));
        let mut p = good.clone();
        p.location[0].line[0].function_id = 77;
        assert!(format!("{:#}", decode(&p, "cpu").unwrap_err()).contains("function 77"));
        let mut p = good.clone();
        p.comment.push(10_000);
        assert!(format!("{:#}", decode(&p, "cpu").unwrap_err()).contains("string index"));
        let mut p = good.clone();
        p.location[1].id = p.location[0].id;
        assert!(decode(&p, "cpu").is_err());
        let mut p = good;
        p.sample_type.clear();
        for s in &mut p.sample {
            s.value.clear();
        }
        assert!(format!("{:#}", decode(&p, "cpu").unwrap_err()).contains("no sample types"));
    }

    #[test]
    fn decode_fills_what_pprof_leaves_out() {
        let mut p = encode(&fixture::profile());
        p.location[0].line.clear();
        p.default_sample_type = 0;
        let back = decode(&p, "cpu").unwrap();
        // 0x1100 in a mapping starting at 0x1000 of /usr/bin/app.
        assert_eq!(back.locations[0].lines[0].function, "app+0x100");
        assert_eq!(
            back.default_sample_type, 1,
            "pprof's default is the last type"
        );
    }

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
