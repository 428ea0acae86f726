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

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use flate2::read::GzDecoder;
use prost::Message;

use crate::proto;
use crate::wire;
use crate::{Profile, ProfileKind, ValueType};

pub(crate) const MIB: u64 = 1024 * 1024;
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
    crate::pprof_decode::decode(&message, kind)
}

/// Fails unless `types` are the sample types of `kind`, saying what they are instead.
pub(crate) fn check_kind(types: &[ValueType], kind: ProfileKind) -> anyhow::Result<()> {
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
