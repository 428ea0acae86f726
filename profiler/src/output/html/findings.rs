//! The findings panel's data: what the analysis found, each with the frames to show in the
//! flame graph, at most [`MAX_FINDINGS_PER_KIND`] of each kind.

use serde::Serialize;

use crate::analysis::block::{CONTENTION_HINT, FutexWaits};
use crate::analysis::cpu::{Kind, MemoryHotSpot};
use crate::analysis::findings::Analysis;
use crate::analysis::heap::{HeapSite, LEAK_HINT, SmallAllocations};
use crate::analysis::io::SmallIoFinding;
use crate::analysis::units::{group, human_bytes, human_time};
use crate::profile::ProfileKind;

/// At most this many findings of one kind are listed, the most costly first; a whole-host
/// run can have a hundred contended futexes, and the flame graphs show the rest.
pub const MAX_FINDINGS_PER_KIND: usize = 20;

/// A finding of the summary, with what to show in the flame graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingData {
    /// `small-io` (its case is the first detail), `contention`, `allocation`, `gc`,
    /// `small-allocations` or `leak-suspect`.
    pub kind: &'static str,
    /// The profile (tab) it is about.
    pub profile: &'static str,
    /// One line saying what was found.
    pub title: String,
    /// Further lines: the call path, what waited, the saving.
    pub details: Vec<String>,
    /// What to do.
    pub hint: String,
    /// Functions to highlight.
    pub functions: Vec<String>,
    /// Frames from the root (process first) leading to the place to zoom to; may stop short
    /// or be empty.
    pub path: Vec<String>,
    /// The function to zoom to (the heaviest frame of that name under `path`).
    pub focus: String,
}

/// The findings, in the order of the panel: small I/O, contention (futexes, then Go
/// locks and channels), CPU memory hot spots, then the heap's small allocations and leak
/// suspects, each kind cut at [`MAX_FINDINGS_PER_KIND`]; and what was cut, in words.
pub(super) fn findings(analysis: &Analysis) -> (Vec<FindingData>, Vec<String>) {
    let mut out: Vec<FindingData> = Vec::new();
    let mut omitted = Vec::new();
    let mut take = |all: Vec<FindingData>, what: &str| {
        if all.len() > MAX_FINDINGS_PER_KIND {
            omitted.push(format!(
                "{} more {what}, smaller than those listed",
                all.len() - MAX_FINDINGS_PER_KIND
            ));
        }
        out.extend(all.into_iter().take(MAX_FINDINGS_PER_KIND));
    };
    // Both analyses rank their findings, most calls and most delay first.
    take(
        analysis.small_io.iter().map(small_io).collect(),
        "small-I/O hot paths",
    );
    take(
        analysis.contended().map(contention).collect(),
        "contended locks",
    );
    take(
        analysis.go_waits.iter().map(go_wait).collect(),
        "Go lock and channel waits",
    );
    take(
        analysis.memory.iter().map(memory).collect(),
        "memory hot spots",
    );
    take(
        analysis
            .small_allocations
            .iter()
            .map(small_allocations)
            .collect(),
        "sites with many small allocations",
    );
    take(
        analysis.leak_suspects.iter().map(leak_suspect).collect(),
        "leak suspects",
    );
    (out, omitted)
}

fn small_allocations(finding: &SmallAllocations) -> FindingData {
    let site = &finding.site;
    FindingData {
        kind: "small-allocations",
        profile: ProfileKind::Heap.name(),
        title: format!(
            "{} makes {} allocations per second of {} on average",
            site.caller,
            group(finding.per_second.round() as i64),
            human_bytes(site.average())
        ),
        details: vec![
            format!("process: {} (pid {})", site.comm, site.pid),
            format!(
                "allocations: {} ({} in the window)",
                group(site.alloc_objects as i64),
                human_bytes(site.alloc_space as f64)
            ),
        ],
        hint: finding.hint().to_owned(),
        functions: vec![site.caller.clone()],
        path: Vec::new(),
        focus: site.caller.clone(),
    }
}

fn leak_suspect(site: &HeapSite) -> FindingData {
    FindingData {
        kind: "leak-suspect",
        profile: ProfileKind::Heap.name(),
        title: format!(
            "{} holds {} in {} blocks, and its memory in use only grew",
            site.caller,
            human_bytes(site.inuse_space as f64),
            group(site.inuse_objects as i64)
        ),
        details: vec![format!("process: {} (pid {})", site.comm, site.pid)],
        hint: LEAK_HINT.to_owned(),
        functions: vec![site.caller.clone()],
        path: Vec::new(),
        focus: site.caller.clone(),
    }
}

fn small_io(finding: &SmallIoFinding) -> FindingData {
    let site = &finding.site;
    // Up to the caller: the frames below it are the C library's and the kernel's.
    let upto = site
        .path
        .iter()
        .rposition(|f| *f == site.caller)
        .map_or(site.path.len(), |i| i + 1);
    let mut path = vec![crate::output::folded::frame_name(&site.comm)];
    path.extend(site.path[..upto].iter().cloned());
    let descriptors = if site.descriptors.is_empty() {
        String::new()
    } else {
        format!(", on a {}", site.descriptors.join("/"))
    };
    FindingData {
        kind: "small-io",
        profile: ProfileKind::Io.name(),
        title: format!(
            "{} in {}: {} calls ({}/s) of {} on average{descriptors}",
            site.syscall,
            site.caller,
            group(site.calls as i64),
            group(finding.calls_per_sec.round() as i64),
            human_bytes(site.avg_bytes()),
        ),
        details: [
            format!("process: {}", site.comm),
            format!("case: {}", finding.case()),
            format!("path: {}", site.path.join(" > ")),
        ]
        .into_iter()
        .chain(finding.saving().map(|s| format!("saves: {s}")))
        .collect(),
        hint: finding.hint.clone(),
        functions: vec![site.caller.clone()],
        path,
        focus: site.caller.clone(),
    }
}

fn go_wait(finding: &crate::analysis::goroutines::GoWaitFinding) -> FindingData {
    FindingData {
        kind: "contention",
        profile: "block",
        title: format!(
            "{} in {} (pid {}): {} goroutines waited {} times in {}, {} in all",
            finding.function,
            finding.comm,
            finding.pid,
            finding.goroutines,
            group(finding.waits as i64),
            finding.operation,
            human_time(finding.delay as i64)
        ),
        details: vec![format!("process: {}", finding.comm)],
        hint: finding.kind.hint().to_owned(),
        focus: finding.function.clone(),
        functions: vec![finding.function.clone()],
        path: vec![crate::output::folded::frame_name(&finding.comm)],
    }
}

fn contention(futex: &FutexWaits) -> FindingData {
    let waiters: Vec<String> = futex.waiters.iter().map(|(f, _)| f.clone()).collect();
    FindingData {
        kind: "contention",
        profile: ProfileKind::Block.name(),
        title: futex.title(),
        details: futex
            .waiters
            .iter()
            .take(3)
            .map(|(f, d)| format!("waited in {f} ({})", human_time(*d as i64)))
            .collect(),
        hint: CONTENTION_HINT.to_owned(),
        focus: waiters.first().cloned().unwrap_or_default(),
        functions: waiters,
        path: vec![crate::output::folded::frame_name(&futex.comm)],
    }
}

fn memory(spot: &MemoryHotSpot) -> FindingData {
    let list = |v: &[(String, i64)]| {
        v.iter()
            .map(|(f, n)| format!("{f} ({:.1}%)", 100.0 * *n as f64 / spot.total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut details = vec![format!("in {}", list(&spot.functions))];
    if !spot.callers.is_empty() {
        details.push(format!("called from {}", list(&spot.callers)));
    }
    FindingData {
        kind: match spot.kind {
            Kind::Allocation => "allocation",
            Kind::GarbageCollection => "gc",
        },
        profile: ProfileKind::Cpu.name(),
        title: format!(
            "{}: {:.1}% of CPU samples ({} of {}) have {} frames",
            spot.kind.describe(),
            100.0 * spot.share(),
            group(spot.value),
            group(spot.total),
            match spot.kind {
                Kind::Allocation => "allocator",
                Kind::GarbageCollection => "garbage-collector",
            }
        ),
        details,
        hint: spot.hint.clone(),
        functions: spot.functions.iter().map(|(f, _)| f.clone()).collect(),
        path: Vec::new(),
        focus: spot
            .functions
            .first()
            .map(|(f, _)| f.clone())
            .unwrap_or_default(),
    }
}
