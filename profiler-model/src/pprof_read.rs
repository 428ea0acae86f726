//! Reading pprof files back into the profile model, for `profiler report DIR`.
//!
//! The files may come from anywhere, so every allocation their content drives is bounded:
//! at most [`MAX_FILE_BYTES`] are read and [`MAX_DECOMPRESSED_BYTES`] decompressed, a file
//! whose decoded tables would take over [`MAX_DECODED_BYTES`] is refused before decoding,
//! and the model built from it is held to [`MAX_MODEL_STRING_BYTES`] of copied strings,
//! [`MAX_INLINE_LINES`] lines per location (as the profile builder keeps them: the excess
//! is one elision frame, counted in a comment), [`MAX_STACK_LOCATIONS`] locations per
//! stack, [`MAX_DISTINCT_FRAMES`] frames over all its distinct stacks and
//! [`MAX_SAMPLE_FRAMES`] over all samples. Together with the report's own budgets
//! (its flame-graph tree holds at most `MAX_TREE_NODES` frames) these keep `profiler
//! report` of one file under 512 MiB of memory, the cap its tests hold it to.
//!
//! Every limit is at least what the profiler itself writes, so `report` reads back any run:
//! a stack has at most `unwind::MAX_FRAMES` user and 127 kernel locations, each of at most
//! [`MAX_INLINE_LINES`] lines.

use crate::account::Account;
use crate::comment::Comment;
use crate::labels::LabelKey;
use crate::program_labels::ProgramLabels;
use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use flate2::read::GzDecoder;
use prost::Message;

use crate::proto;
use crate::wire;
use crate::{
    FrameKind, INLINE_KEPT_INNER, INLINE_KEPT_OUTER, KERNEL_MAPPING, Label, LabelValue, Line,
    Location, LocationId, MAX_INLINE_LINES, Mapping, MappingId, Profile, ProfileKind, Sample,
    StackId, Unnamed, ValueType, elided_inline_line,
};

const MIB: u64 = 1024 * 1024;
/// The most bytes read from one pprof file.
pub const MAX_FILE_BYTES: u64 = 64 * MIB;
/// The most bytes one gzipped pprof file may decompress to.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 * MIB;
/// The most heap the decoded protobuf of one file may take, as [`wire::decoded_size`]
/// counts it.
pub const MAX_DECODED_BYTES: u64 = 128 * MIB;
/// The most string bytes the model of one file may copy out of its string table.
pub const MAX_MODEL_STRING_BYTES: u64 = 64 * MIB;
/// The most locations of one stack (the profiler writes at most 512 user and 127 kernel
/// ones, and a stand-in).
pub const MAX_STACK_LOCATIONS: usize = 2048;
/// The most frames over all distinct stacks of one profile (inlined ones included).
pub const MAX_DISTINCT_FRAMES: usize = 32_000_000;
/// The most frames over all samples (inlined ones included), which bounds the time the
/// summaries take.
pub const MAX_SAMPLE_FRAMES: usize = 256_000_000;

/// Reads `path` (such as `DIR/io.pb.gz`) as a profile of `kind`, refusing one whose sample
/// types are another's.
///
/// # Errors
/// One message naming the file and what is wrong with it.
pub fn load(path: &Path, kind: ProfileKind) -> anyhow::Result<Profile> {
    let shown = path.display();
    let raw = read_file(path).with_context(|| format!("cannot read {shown}"))?;
    if raw.is_empty() {
        bail!("{shown} is empty: it was not written completely; profile again to replace it");
    }
    match decode_bytes(&raw, kind) {
        Ok(profile) => Ok(profile),
        Err(err) if err.is::<WrongKind>() => bail!("{shown} is {err}"),
        Err(err) => Err(err.context(format!("{shown} is not a usable profile"))),
    }
}

/// A profile whose sample types are not those of the kind its file is named after.
#[derive(Debug)]
pub struct WrongKind(String);

impl std::fmt::Display for WrongKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongKind {}

/// Up to [`MAX_FILE_BYTES`] of `path`, failing when there is more or when it is not a
/// regular file.
///
/// Opened without following a symlink and without blocking (a FIFO at the name would
/// hang a blocking open until a writer came), then checked to be a regular file before a
/// byte is read.
fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => anyhow::anyhow!(
                "it is a symbolic link, which `profiler report` does not follow: give the \
                 directory the file is in"
            ),
            _ => err.into(),
        })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        bail!("it is {what}, not a regular file: remove it or replace it with a run's file");
    }
    read_capped(file, MAX_FILE_BYTES, "the file")
}

/// All of `r`, failing when it holds more than `limit` bytes.
fn read_capped(r: impl Read, limit: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        bail!(
            "{what} is larger than {} MiB, the most `profiler report` reads: profile a \
             shorter window",
            limit / MIB
        );
    }
    Ok(out)
}

/// Decodes the contents of a pprof file, gzipped or not, as a profile of `kind`: what
/// `profiler report` does with each file, bounded as the module describes.
///
/// # Errors
/// When the bytes are not a pprof profile of `kind` or exceed a limit.
pub fn decode_bytes(raw: &[u8], kind: ProfileKind) -> anyhow::Result<Profile> {
    // pprof itself accepts plain protobuf too, so only gunzip what has the gzip magic.
    let decompressed;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        decompressed = read_capped(GzDecoder::new(raw), MAX_DECOMPRESSED_BYTES, "it")
            .context("cannot decompress it")?;
        decompressed.as_slice()
    } else {
        raw
    };
    let size = wire::decoded_size(bytes).map_err(|e| anyhow::anyhow!("not protobuf: {e}"))?;
    if size > MAX_DECODED_BYTES {
        bail!(
            "decoding it would take {} MiB, over the {} MiB `profiler report` allows: \
             profile a shorter window",
            size / MIB,
            MAX_DECODED_BYTES / MIB
        );
    }
    let message = proto::Profile::decode(bytes).context("not a pprof profile")?;
    decode(&message, kind)
}

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
    let mut copied = 0u64;
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
    // Every copy out of the string table is counted: a few bytes of input can name one
    // long string many times.
    let mut owned = |s: &str| -> anyhow::Result<String> {
        copied = copied.saturating_add(s.len() as u64);
        if copied > MAX_MODEL_STRING_BYTES {
            bail!(
                "its strings take over {} MiB once decoded",
                MAX_MODEL_STRING_BYTES / MIB
            );
        }
        Ok(s.to_owned())
    };
    let value_type = |t: &proto::ValueType| -> anyhow::Result<ValueType> {
        Ok(ValueType::new(string(t.r#type)?, string(t.unit)?))
    };

    let sample_types = p
        .sample_type
        .iter()
        .map(value_type)
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_kind(&sample_types, kind)?;
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
        .map(|&c| Ok(Comment::read(owned(string(c)?)?)))
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
            path: owned(string(m.filename)?)?,
            build_id: (!build_id.is_empty())
                .then(|| owned(build_id))
                .transpose()?,
        });
    }

    let mut functions = HashMap::new();
    for f in &p.function {
        let file = string(f.filename)?;
        // A frame that is not a named function carries its kind's tag as system name.
        let kind = FrameKind::from_tag(string(f.system_name)?);
        let entry = (string(f.name)?, (!file.is_empty()).then_some(file), kind);
        if f.id == 0 || functions.insert(f.id, entry).is_some() {
            bail!("function id {} is zero or used twice", f.id);
        }
    }

    let mut location_index = HashMap::new();
    let mut locations = Vec::with_capacity(p.location.len());
    // Locations whose inline chain was cut here, and the lines cut.
    let mut elided_at = (0usize, 0usize);
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
                    owned(&line.function)?;
                    lines.push(line);
                }
                continue;
            }
            lines.push(Line {
                function: owned(function)?,
                file: file.map(&mut owned).transpose()?,
                line: u32::try_from(l.line).unwrap_or(0),
            });
        }
        if elided > 0 {
            elided_at.0 += 1;
            elided_at.1 += elided;
        }
        let mapping_path = mapping.map(|m: usize| mappings[m].path.as_str());
        if lines.is_empty() {
            let line = unsymbolized(loc.address, mapping.map(|m| &mappings[m]));
            owned(&line.function)?;
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
        locations.push(Location {
            address: loc.address,
            mapping: mapping.map(MappingId::new),
            lines,
            kind,
        });
    }

    // Keys that carry a string somewhere: an unset string index on them is "".
    let mut string_keys = HashSet::new();
    for l in p.sample.iter().flat_map(|s| &s.label) {
        if l.str != 0 {
            string_keys.insert(l.key);
        }
    }
    let mut stack_index: HashMap<Vec<LocationId>, StackId> = HashMap::new();
    let mut stacks = Vec::new();
    let mut samples = Vec::with_capacity(p.sample.len());
    let (mut distinct_frames, mut sample_frames) = (0usize, 0usize);
    let mut unknown_labels = 0u64;
    for (i, s) in p.sample.iter().enumerate() {
        if s.value.len() != sample_types.len() {
            bail!(
                "sample {i} has {} values for {} sample types",
                s.value.len(),
                sample_types.len()
            );
        }
        if s.location_id.len() > MAX_STACK_LOCATIONS {
            bail!(
                "sample {i} has a stack of {} frames, more than the {MAX_STACK_LOCATIONS} \
                 `profiler report` reads",
                s.location_id.len()
            );
        }
        let mut stack = Vec::with_capacity(s.location_id.len());
        let mut frames = 0usize;
        for id in &s.location_id {
            let l = *location_index
                .get(id)
                .with_context(|| format!("sample {i} names location {id}, which is missing"))?;
            frames += locations[l].lines.len();
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
                let index = StackId::new(stacks.len());
                stacks.push(stack.clone());
                stack_index.insert(stack, index);
                index
            }
        };
        let mut labels = Vec::with_capacity(s.label.len());
        let mut program = Vec::new();
        for l in &s.label {
            let is_str = l.str != 0 || (l.num == 0 && string_keys.contains(&l.key));
            let Some(key) = LabelKey::from_name(string(l.key)?) else {
                // A string label of a key not ours is the program's own (Go's profiler
                // labels). A number of no meaning to the profiler is no use to any of its
                // outputs; the profile says how many were left out.
                if is_str {
                    program.push((owned(string(l.key)?)?, owned(string(l.str)?)?));
                } else {
                    unknown_labels += 1;
                }
                continue;
            };
            let value = if is_str {
                LabelValue::Str(owned(string(l.str)?)?)
            } else {
                LabelValue::Num(l.num)
            };
            labels.push(Label { key, value });
        }
        samples.push(Sample {
            stack,
            values: s.value.clone(),
            labels,
            program: ProgramLabels::new(program),
            waker: None,
        });
    }

    let mut comments = comments;
    if unknown_labels > 0 {
        comments.push(Comment::Account(Account::LabelsLeftOut(unknown_labels)));
    }
    if elided_at.0 > 0 {
        comments.push(Comment::Account(Account::Elided {
            lines: elided_at.1 as u64,
            locations: elided_at.0 as u64,
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
        mappings,
        locations,
        stacks,
        samples,
    })
}

/// Fails unless `types` are the sample types of `kind`, saying what they are instead.
fn check_kind(types: &[ValueType], kind: ProfileKind) -> anyhow::Result<()> {
    let found = ProfileKind::of(types);
    if found == Some(kind) {
        return Ok(());
    }
    let listed: Vec<String> = types
        .iter()
        .take(8)
        .map(|t| format!("{}/{}", t.kind, t.unit))
        .collect();
    let mut listed = listed.join(", ");
    if types.len() > 8 {
        listed.push_str(", ...");
    }
    if types.is_empty() {
        listed = "none".to_owned();
    }
    let what = match found {
        Some(other) => format!("those of a {} profile", other.title()),
        None => "another program's profile, not one this profiler writes".to_owned(),
    };
    let want: Vec<String> = kind
        .sample_types()
        .iter()
        .map(|(k, u)| format!("{k}/{u}"))
        .collect();
    let article = if kind == ProfileKind::Io { "an" } else { "a" };
    Err(WrongKind(format!(
        "not {article} {title} profile of this profiler (sample types {listed}): {what}, \
         while {article} {title} profile has {}; remove the file or replace it with one a \
         run wrote",
        want.join(", "),
        title = kind.title(),
    ))
    .into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_only() {
        assert_eq!(read_capped(&[7u8; 10][..], 10, "it").unwrap().len(), 10);
        let err = read_capped(&[7u8; 11][..], 10, "it").unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn kinds_are_told_by_their_sample_types() {
        for kind in ProfileKind::ALL {
            let types: Vec<ValueType> = kind
                .sample_types()
                .iter()
                .map(|(k, u)| ValueType::new(k, u))
                .collect();
            assert_eq!(ProfileKind::of(&types), Some(kind));
            assert_eq!(ProfileKind::of(&types[1..]), None);
        }
        // An I/O profile written before requests were recorded is still one.
        let earlier: Vec<ValueType> = ProfileKind::Io.sample_types()[..4]
            .iter()
            .map(|(k, u)| ValueType::new(k, u))
            .collect();
        assert_eq!(ProfileKind::of(&earlier), Some(ProfileKind::Io));
        assert_eq!(ProfileKind::of(&earlier[..3]), None);
        // And one written before turns were counted.
        let before_turns: Vec<ValueType> = ProfileKind::Io.sample_types()[..7]
            .iter()
            .map(|(k, u)| ValueType::new(k, u))
            .collect();
        assert_eq!(ProfileKind::of(&before_turns), Some(ProfileKind::Io));
        let heap = [ValueType::new("alloc_objects", "count")];
        let err = check_kind(&heap, ProfileKind::Io).unwrap_err();
        assert!(err.is::<WrongKind>());
        assert!(
            err.to_string().starts_with(
                "not an I/O profile of this profiler (sample types alloc_objects/count)"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_empty_message_is_refused_by_kind() {
        let err = decode_bytes(&[], ProfileKind::Cpu).unwrap_err();
        assert!(format!("{err:#}").contains("sample types none"), "{err:#}");
    }
}
