//! pprof's protobuf message into the profile model: each table read in turn (mappings,
//! functions, locations, samples and their labels), every id and index checked and every
//! copied string counted against the limits [`crate::pprof_read`] sets, so that a hostile
//! file is an error, never a panic or unbounded memory.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::account::Account;
use crate::comment::Comment;
use crate::labels::LabelKey;
use crate::pprof_read::{
    MAX_DISTINCT_FRAMES, MAX_MODEL_STRING_BYTES, MAX_SAMPLE_FRAMES, MAX_STACK_LOCATIONS, MIB,
    check_kind,
};
use crate::program_labels::ProgramLabels;
use crate::proto;
use crate::{
    FrameKind, INLINE_KEPT_INNER, INLINE_KEPT_OUTER, KERNEL_MAPPING, Label, LabelValue, Line,
    Location, LocationId, MAX_INLINE_LINES, Mapping, MappingId, Profile, ProfileKind, Sample,
    StackId, Unnamed, ValueType, elided_inline_line,
};

/// Converts pprof's protobuf message into the profile model, the inverse of
/// [`crate::pprof::encode`], after checking its sample types are those of `kind`.
///
/// A location's kind is the one its function's system name tags (see
/// [`FrameKind::tag`]); untagged, it is kernel code when its mapping is [`KERNEL_MAPPING`],
/// unnamed when it has no lines, and a named function otherwise. A
/// label is a string when its string index is set; an unset one is the number in `num`,
/// unless the key carries strings in other samples (an empty string, such as the name of
/// a thread that was never seen, is stored as index 0). A location without lines gets one
/// `module+0xoffset` (or `[unknown]`) line, as the symbolizer names what it cannot resolve.
/// Malformed input (an index out of range, a missing id, a sample with the wrong number of
/// values) or one over a limit is an error, never a panic.
pub fn decode(p: &proto::Profile, kind: ProfileKind) -> anyhow::Result<Profile> {
    let mut reader = Reader { p, copied: 0 };
    let sample_types = p
        .sample_type
        .iter()
        .map(|t| reader.value_type(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_kind(&sample_types, kind)?;
    let default_kind = reader.string(p.default_sample_type)?;
    // pprof shows the last sample type when the profile names none.
    let default_sample_type = sample_types
        .iter()
        .position(|t| t.kind == default_kind && !default_kind.is_empty())
        .unwrap_or(sample_types.len().saturating_sub(1));
    let period_type = p
        .period_type
        .as_ref()
        .map(|t| reader.value_type(t))
        .transpose()?;
    let mut comments = p
        .comment
        .iter()
        .map(|&c| Ok(Comment::read(reader.owned(reader.string(c)?)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mappings = reader.mappings()?;
    let functions = reader.functions()?;
    let locations = reader.locations(&mappings, &functions)?;
    let samples = reader.samples(&locations, sample_types.len())?;
    if samples.unknown_labels > 0 {
        comments.push(Comment::Account(Account::LabelsLeftOut(
            samples.unknown_labels,
        )));
    }
    if locations.elided.0 > 0 {
        comments.push(Comment::Account(Account::Elided {
            lines: locations.elided.1 as u64,
            locations: locations.elided.0 as u64,
            on_read: true,
        }));
    }
    Ok(Profile {
        kind,
        sample_types,
        default_sample_type,
        period_type,
        period: p.period,
        start: from_unix_nanos(p.time_nanos),
        duration: Duration::from_nanos(p.duration_nanos.max(0).unsigned_abs()),
        comments,
        mappings: mappings.list,
        locations: locations.list,
        stacks: samples.stacks,
        samples: samples.list,
    })
}

/// The model's mappings of a message, and where each of its ids is among them.
struct Mappings {
    list: Vec<Mapping>,
    index: HashMap<u64, usize>,
}

/// A message's functions by id: name, file, and the frame kind its system name tags.
type Functions<'p> = HashMap<u64, (&'p str, Option<&'p str>, Option<FrameKind>)>;

/// The model's locations of a message, where each of its ids is among them, and how
/// many locations had lines elided, and how many lines.
struct Locations {
    list: Vec<Location>,
    index: HashMap<u64, usize>,
    elided: (usize, usize),
}

/// The model's samples of a message, their distinct stacks, and the labels left out.
struct Samples {
    list: Vec<Sample>,
    stacks: Vec<Vec<LocationId>>,
    unknown_labels: u64,
}

/// Reads one message's tables into the model, counting every string it copies.
struct Reader<'p> {
    p: &'p proto::Profile,
    /// String bytes copied out of the string table so far.
    copied: u64,
}

impl<'p> Reader<'p> {
    /// String `i` of the string table.
    fn string(&self, i: i64) -> anyhow::Result<&'p str> {
        let table = &self.p.string_table;
        usize::try_from(i)
            .ok()
            .and_then(|i| table.get(i))
            .map(String::as_str)
            .with_context(|| {
                format!(
                    "string index {i} is outside the string table of {} entries",
                    table.len()
                )
            })
    }

    /// A copy of `s`, counted: a few bytes of input can name one long string many times.
    fn owned(&mut self, s: &str) -> anyhow::Result<String> {
        self.copied = self.copied.saturating_add(s.len() as u64);
        if self.copied > MAX_MODEL_STRING_BYTES {
            bail!(
                "its strings take over {} MiB once decoded",
                MAX_MODEL_STRING_BYTES / MIB
            );
        }
        Ok(s.to_owned())
    }

    fn value_type(&self, t: &proto::ValueType) -> anyhow::Result<ValueType> {
        Ok(ValueType::new(self.string(t.r#type)?, self.string(t.unit)?))
    }

    fn mappings(&mut self) -> anyhow::Result<Mappings> {
        let p = self.p;
        let mut index = HashMap::new();
        let mut list = Vec::with_capacity(p.mapping.len());
        for m in &p.mapping {
            if m.id == 0 || index.insert(m.id, list.len()).is_some() {
                bail!("mapping id {} is zero or used twice", m.id);
            }
            let build_id = self.string(m.build_id)?;
            list.push(Mapping {
                start: m.memory_start,
                limit: m.memory_limit,
                file_offset: m.file_offset,
                path: self.owned(self.string(m.filename)?)?,
                build_id: (!build_id.is_empty())
                    .then(|| self.owned(build_id))
                    .transpose()?,
            });
        }
        Ok(Mappings { list, index })
    }

    fn functions(&self) -> anyhow::Result<Functions<'p>> {
        let mut functions = HashMap::new();
        for f in &self.p.function {
            let file = self.string(f.filename)?;
            // A frame that is not a named function carries its kind's tag as system name.
            let kind = FrameKind::from_tag(self.string(f.system_name)?);
            let entry = (
                self.string(f.name)?,
                (!file.is_empty()).then_some(file),
                kind,
            );
            if f.id == 0 || functions.insert(f.id, entry).is_some() {
                bail!("function id {} is zero or used twice", f.id);
            }
        }
        Ok(functions)
    }

    fn locations(
        &mut self,
        mappings: &Mappings,
        functions: &Functions<'p>,
    ) -> anyhow::Result<Locations> {
        let p = self.p;
        let mut index = HashMap::new();
        let mut list = Vec::with_capacity(p.location.len());
        let mut elided_at = (0usize, 0usize);
        for loc in &p.location {
            if loc.id == 0 || index.insert(loc.id, list.len()).is_some() {
                bail!("location id {} is zero or used twice", loc.id);
            }
            let (location, elided) = self.location(loc, mappings, functions)?;
            if elided > 0 {
                elided_at.0 += 1;
                elided_at.1 += elided;
            }
            list.push(location);
        }
        Ok(Locations {
            list,
            index,
            elided: elided_at,
        })
    }

    /// One location, and how many of its inlined lines were elided.
    fn location(
        &mut self,
        loc: &proto::Location,
        mappings: &Mappings,
        functions: &Functions<'p>,
    ) -> anyhow::Result<(Location, usize)> {
        let mapping = match loc.mapping_id {
            0 => None,
            id => Some(*mappings.index.get(&id).with_context(|| {
                format!("location {} names mapping {id}, which is missing", loc.id)
            })?),
        };
        // Over-long inline chains are cut as the profile builder cuts them; the strings
        // of the elided lines are never copied.
        let elided = loc.line.len().saturating_sub(MAX_INLINE_LINES);
        let elided = if elided > 0 {
            loc.line.len() - INLINE_KEPT_INNER - INLINE_KEPT_OUTER
        } else {
            0
        };
        let mut lines = Vec::with_capacity(loc.line.len().min(MAX_INLINE_LINES));
        let mut kind_tag = None;
        for (n, l) in loc.line.iter().enumerate() {
            let (function, file, kind) = functions.get(&l.function_id).with_context(|| {
                format!(
                    "location {} names function {}, which is missing",
                    loc.id, l.function_id
                )
            })?;
            kind_tag = kind_tag.or(*kind);
            if elided > 0 && (INLINE_KEPT_INNER..INLINE_KEPT_INNER + elided).contains(&n) {
                if n == INLINE_KEPT_INNER {
                    let line = elided_inline_line(elided);
                    self.owned(&line.function)?;
                    lines.push(line);
                }
                continue;
            }
            lines.push(Line {
                function: self.owned(function)?,
                file: file.map(|f| self.owned(f)).transpose()?,
                line: u32::try_from(l.line).unwrap_or(0),
            });
        }
        let mapping_path = mapping.map(|m: usize| mappings.list[m].path.as_str());
        if lines.is_empty() {
            let line = unsymbolized(loc.address, mapping.map(|m| &mappings.list[m]));
            self.owned(&line.function)?;
            lines.push(line);
        }
        let kind = match kind_tag {
            Some(kind) => kind,
            None if mapping_path == Some(KERNEL_MAPPING) => FrameKind::Kernel,
            None if loc.line.is_empty() => FrameKind::Unnamed(if mapping.is_some() {
                Unnamed::NoSymbol
            } else {
                Unnamed::NoMapping
            }),
            None => FrameKind::Function,
        };
        let location = Location {
            address: loc.address,
            mapping: mapping.map(MappingId::new),
            lines,
            kind,
        };
        Ok((location, elided))
    }

    fn samples(&mut self, locations: &Locations, types: usize) -> anyhow::Result<Samples> {
        let p = self.p;
        // Keys that carry a string somewhere: an unset string index on them is "".
        let mut string_keys = HashSet::new();
        for l in p.sample.iter().flat_map(|s| &s.label) {
            if l.str != 0 {
                string_keys.insert(l.key);
            }
        }
        let mut stack_index: HashMap<Vec<LocationId>, StackId> = HashMap::new();
        let mut out = Samples {
            list: Vec::with_capacity(p.sample.len()),
            stacks: Vec::new(),
            unknown_labels: 0,
        };
        let (mut distinct_frames, mut sample_frames) = (0usize, 0usize);
        for (i, s) in p.sample.iter().enumerate() {
            if s.value.len() != types {
                bail!(
                    "sample {i} has {} values for {types} sample types",
                    s.value.len(),
                );
            }
            if s.location_id.len() > MAX_STACK_LOCATIONS {
                bail!(
                    "sample {i} has a stack of {} frames, more than the \
                     {MAX_STACK_LOCATIONS} `profiler report` reads",
                    s.location_id.len()
                );
            }
            let mut stack = Vec::with_capacity(s.location_id.len());
            let mut frames = 0usize;
            for id in &s.location_id {
                let l = *locations
                    .index
                    .get(id)
                    .with_context(|| format!("sample {i} names location {id}, which is missing"))?;
                frames += locations.list[l].lines.len();
                stack.push(LocationId::new(l));
            }
            sample_frames += frames;
            if sample_frames > MAX_SAMPLE_FRAMES {
                bail!("its samples hold over {MAX_SAMPLE_FRAMES} frames in all");
            }
            let stack = match stack_index.get(&stack) {
                Some(&index) => index,
                None => {
                    distinct_frames += frames;
                    if distinct_frames > MAX_DISTINCT_FRAMES {
                        bail!("its distinct stacks hold over {MAX_DISTINCT_FRAMES} frames in all");
                    }
                    let index = StackId::new(out.stacks.len());
                    out.stacks.push(stack.clone());
                    stack_index.insert(stack, index);
                    index
                }
            };
            let (labels, program) = self.labels(s, &string_keys, &mut out.unknown_labels)?;
            out.list.push(Sample {
                stack,
                values: s.value.clone(),
                labels,
                program,
                waker: None,
            });
        }
        Ok(out)
    }

    /// A sample's labels: the profiler's own, and the program's (a string label of a key
    /// not ours, such as Go's profiler labels); numbers of keys not ours are counted in
    /// `unknown`, of no meaning to any of the profiler's outputs.
    fn labels(
        &mut self,
        s: &proto::Sample,
        string_keys: &HashSet<i64>,
        unknown: &mut u64,
    ) -> anyhow::Result<(Vec<Label>, ProgramLabels)> {
        let mut labels = Vec::with_capacity(s.label.len());
        let mut program = Vec::new();
        for l in &s.label {
            let is_str = l.str != 0 || (l.num == 0 && string_keys.contains(&l.key));
            let Some(key) = LabelKey::from_name(self.string(l.key)?) else {
                if is_str {
                    program.push((
                        self.owned(self.string(l.key)?)?,
                        self.owned(self.string(l.str)?)?,
                    ));
                } else {
                    *unknown += 1;
                }
                continue;
            };
            let value = if is_str {
                LabelValue::Str(self.owned(self.string(l.str)?)?)
            } else {
                LabelValue::Num(l.num)
            };
            labels.push(Label { key, value });
        }
        Ok((labels, ProgramLabels::new(program)))
    }
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
        UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}
