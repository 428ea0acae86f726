//! The pprof format: a gzipped `perftools.profiles.Profile` protobuf, as `go tool pprof`
//! and most profile viewers read it.

use std::collections::HashMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use crate::StringTable;
use crate::pprof_mappings::{MappingFlags, mapping_order};
use crate::proto;
use crate::{LabelValue, Profile, Sample, ValueType};

fn value_type(strings: &mut StringTable<i64>, t: &ValueType) -> proto::ValueType {
    proto::ValueType {
        r#type: strings.intern(&t.kind),
        unit: strings.intern(&t.unit),
    }
}

/// Converts a profile to pprof's protobuf message.
pub fn encode(profile: &Profile) -> proto::Profile {
    // The string table is filled in this order, the order the file has always had.
    let mut strings = StringTable::<i64>::new();
    let sample_type = profile
        .sample_types
        .iter()
        .map(|t| value_type(&mut strings, t))
        .collect();
    // pprof names the profile after its first mapping (`File:` in `go tool pprof`).
    let order = mapping_order(profile);
    let mut mapping_ids = vec![0; profile.mappings.len()];
    for (position, &m) in order.iter().enumerate() {
        mapping_ids[m] = position as u64 + 1;
    }
    let (location, function) = locations(profile, &mapping_ids, &mut strings);
    let mapping = mappings(profile, &order, &mapping_ids, &mut strings);
    let sample = profile
        .samples
        .iter()
        .map(|s| proto::Sample {
            location_id: profile
                .stack(s.stack)
                .iter()
                .map(|&l| l.index() as u64 + 1)
                .collect(),
            value: s.values.clone(),
            label: labels(s, &mut strings),
        })
        .collect();
    let period_type = profile
        .period_type
        .as_ref()
        .map(|t| value_type(&mut strings, t));
    let comment = profile
        .comments
        .iter()
        .map(|c| strings.intern(&c.text()))
        .collect();
    let default_sample_type = profile
        .sample_types
        .get(profile.default_sample_type)
        .map_or(0, |t| strings.intern(&t.kind));

    proto::Profile {
        sample_type,
        sample,
        mapping,
        location,
        function,
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

/// The profile's locations, and the functions their lines name.
///
/// Functions are keyed by (name, file, kind): the same name in two files is two
/// functions, and a frame that is not a plain function keeps its kind.
fn locations(
    profile: &Profile,
    mapping_ids: &[u64],
    strings: &mut StringTable<i64>,
) -> (Vec<proto::Location>, Vec<proto::Function>) {
    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<(&str, Option<&str>, &str), u64> = HashMap::new();
    let mut location = Vec::with_capacity(profile.locations.len());
    for (i, loc) in profile.locations.iter().enumerate() {
        let line = loc
            .lines
            .iter()
            .map(|l| {
                let tag = loc.kind.tag();
                let key = (l.function.as_str(), l.file.as_deref(), tag);
                let function_id = *function_ids.entry(key).or_insert_with(|| {
                    let name = strings.intern(&l.function);
                    let id = functions.len() as u64 + 1;
                    functions.push(proto::Function {
                        id,
                        name,
                        // The symbolizer only keeps demangled names, so both names agree;
                        // a frame that is not a named function carries its kind's tag
                        // instead, which `profiler report` reads back.
                        system_name: if tag.is_empty() {
                            name
                        } else {
                            strings.intern(tag)
                        },
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
            mapping_id: loc.mapping.map_or(0, |m| mapping_ids[m.index()]),
            address: loc.address,
            line,
            is_folded: false,
        });
    }
    (location, functions)
}

/// The profile's mappings in `order`, each saying what its locations carry.
fn mappings(
    profile: &Profile,
    order: &[usize],
    mapping_ids: &[u64],
    strings: &mut StringTable<i64>,
) -> Vec<proto::Mapping> {
    // What each mapping's locations carry, gathered in one pass over the locations.
    let mut flags = vec![MappingFlags::default(); profile.mappings.len()];
    for loc in &profile.locations {
        if let Some(f) = loc.mapping.and_then(|m| flags.get_mut(m.index())) {
            f.add(loc);
        }
    }
    order
        .iter()
        .map(|&i| (i, &profile.mappings[i], &flags[i]))
        .map(|(i, m, f)| proto::Mapping {
            id: mapping_ids[i],
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
        .collect()
}

/// A sample's labels: the profiler's own (a number with its key's unit), then the
/// program's, as strings.
fn labels(s: &Sample, strings: &mut StringTable<i64>) -> Vec<proto::Label> {
    let mut label: Vec<proto::Label> = s
        .labels
        .iter()
        .map(|l| {
            let key = strings.intern(l.key.name());
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
                    num_unit: l.key.unit().map_or(0, |u| strings.intern(u)),
                },
            }
        })
        .collect();
    for (key, value) in s.program.iter() {
        label.push(proto::Label {
            key: strings.intern(key),
            str: strings.intern(value),
            num: 0,
            num_unit: 0,
        });
    }
    label
}

/// Nanoseconds since the Unix epoch, negative for times before it.
fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Writes `profile` into `out` as a gzipped pprof protobuf.
pub fn write(profile: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
    let bytes = encode(profile).encode_to_vec();
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?.flush()?;
    Ok(())
}

#[cfg(test)]
#[path = "pprof_tests.rs"]
mod tests;
