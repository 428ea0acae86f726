//! Go's profiler labels (`pprof.Do`, `SetGoroutineLabels`) on samples: where the kernel
//! programs find them in a Go process ([`process_of`]), and the label sets the samples
//! carry, read back ([`LabelReader`]), with what could not be kept counted.

use std::path::Path;

use profiler_common::{GO_LABEL_TEXT, GO_LABELS_MAX, GoLabels, GoProcess, go_label_format};
use profiler_model::ProgramLabels;

use crate::collect::go_layout::{self, RuntimeLayout};
use crate::collect::golang::{MIN_MINOR, build_version, minor_version};
use crate::collect::target_elf::{self, Links};

/// A length the kernel marks as not read (see `profiler-ebpf/src/go_labels.rs`).
const UNREAD: u32 = u32::MAX;

/// First Go release whose label set is a sorted slice, not a map.
const SLICE_FROM: u32 = 24;

/// What the kernel needs of the Go executable at `path` (`/proc/PID/exe`) to read its
/// goroutines' labels; [`go_label_format::NONE`] when it cannot (not readable, a release
/// without `g` in r14, or no layout: no DWARF and a release not in the table), and the
/// process's samples then carry no labels.
pub fn process_of(path: &Path) -> GoProcess {
    let none = GoProcess::default();
    let Ok(data) = target_elf::open(path, Links::Followed) else {
        return none;
    };
    let Ok(elf) = target_elf::parse(&data) else {
        return none;
    };
    let Some(minor) = build_version(&elf, &data).and_then(|v| minor_version(&v)) else {
        return none;
    };
    if minor < MIN_MINOR {
        return none;
    }
    let Some((layout, _)) = go_layout::read(&elf, Some(minor)) else {
        return none;
    };
    let format = if minor >= SLICE_FROM {
        go_label_format::SLICE
    } else {
        go_label_format::MAP
    };
    with_layout(&layout, format).unwrap_or(none)
}

fn with_layout(layout: &RuntimeLayout, format: u8) -> Option<GoProcess> {
    let small = |offset: u32| u16::try_from(offset).ok();
    Some(GoProcess {
        g_m: small(layout.g_m)?,
        g_labels: small(layout.g_labels)?,
        m_g0: small(layout.m_g0)?,
        m_curg: small(layout.m_curg)?,
        format,
        _pad: [0; 7],
    })
}

/// What became of the label sets the samples carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelStats {
    /// Samples that carried a label set.
    pub samples: u64,
    /// Labels left out: sets of more than [`GO_LABELS_MAX`] labels (or, before Go 1.24,
    /// more than one map bucket's eight).
    pub left_out: u64,
    /// Keys or values cut at [`GO_LABEL_TEXT`] bytes.
    pub cut: u64,
    /// Labels whose key or value the kernel could not read (left out).
    pub unread: u64,
}

/// Turns the label sets samples carry into [`ProgramLabels`], counting what was lost.
#[derive(Debug, Default)]
pub struct LabelReader {
    /// What became of them.
    pub stats: LabelStats,
}

impl LabelReader {
    /// The label set `labels` as the program set it, but for what the kernel could not
    /// carry (counted).
    pub fn read(&mut self, labels: &GoLabels) -> ProgramLabels {
        let stats = &mut self.stats;
        stats.samples += 1;
        let kept = (labels.kept as usize).min(GO_LABELS_MAX);
        stats.left_out += u64::from(labels.count).saturating_sub(kept as u64);
        let mut pairs = Vec::with_capacity(kept);
        for (lens, text) in labels.lens.iter().zip(&labels.text).take(kept) {
            if lens.contains(&UNREAD) {
                stats.unread += 1;
                continue;
            }
            let mut part = |i: usize| {
                let len = lens[i] as usize;
                if len > GO_LABEL_TEXT {
                    stats.cut += 1;
                }
                String::from_utf8_lossy(&text[i][..len.min(GO_LABEL_TEXT)]).into_owned()
            };
            pairs.push((part(0), part(1)));
        }
        ProgramLabels::new(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)], count: u32) -> GoLabels {
        // SAFETY: all-zero bytes are a valid GoLabels (integers and arrays).
        let mut labels: GoLabels = unsafe { std::mem::zeroed() };
        labels.count = count;
        labels.kept = pairs.len() as u32;
        for (i, (k, v)) in pairs.iter().enumerate() {
            for (part, s) in [k, v].into_iter().enumerate() {
                let n = s.len().min(GO_LABEL_TEXT);
                labels.text[i][part][..n].copy_from_slice(&s.as_bytes()[..n]);
                labels.lens[i][part] = s.len() as u32;
            }
        }
        labels
    }

    #[test]
    fn a_set_reads_back_sorted_with_losses_counted() {
        let mut reader = LabelReader::default();
        let long = "x".repeat(GO_LABEL_TEXT + 5);
        let read = reader.read(&set(&[("endpoint", "/kv"), ("trace", &long)], 10));
        assert_eq!(read.get("endpoint"), Some("/kv"));
        assert_eq!(read.get("trace").map(str::len), Some(GO_LABEL_TEXT));
        assert_eq!(
            reader.stats,
            LabelStats {
                samples: 1,
                left_out: 8,
                cut: 1,
                unread: 0
            }
        );
    }

    #[test]
    fn an_unread_label_is_left_out_and_counted() {
        let mut labels = set(&[("a", "1"), ("b", "2")], 2);
        labels.lens[0][1] = UNREAD;
        let mut reader = LabelReader::default();
        let read = reader.read(&labels);
        assert_eq!(read.iter().collect::<Vec<_>>(), [("b", "2")]);
        assert_eq!(reader.stats.unread, 1);
    }

    #[test]
    fn a_layout_past_the_kernel_s_offsets_is_no_layout() {
        let layout = RuntimeLayout {
            g_goid: 152,
            g_status: 144,
            g_m: 48,
            g_labels: 70_000,
            m_g0: 0,
            m_curg: 192,
        };
        assert_eq!(with_layout(&layout, go_label_format::SLICE), None);
    }
}
