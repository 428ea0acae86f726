//! The report's embedded data: each profile as a tree of frames (root first, identical paths
//! merged, values per sample type) and per-function self/total tables, the run's facts, and
//! the findings, all built from the same [`Profile`] the pprof and folded files are
//! written from, so every view shows the same numbers.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::analysis::block::{CONTENTION_HINT, FutexWaits};
use crate::analysis::cpu::{Kind, MemoryHotSpot};
use crate::analysis::findings::Analysis;
use crate::analysis::io::SmallIoFinding;
use crate::output::io_summary::human_bytes;
use crate::output::process_frame;
use crate::output::summary::{group, human_time};
use crate::profile::{Profile, ProfileKind};

/// A frame is pruned from the tree when, for every sample type, it holds less than this
/// share of the profile's total: narrower than a pixel at full width, and it keeps a
/// whole-host report small. Its value stays in its caller's self.
pub const PRUNE_SHARE: f64 = 0.001;

/// At most this many functions are listed in a profile's table, the largest first.
pub const MAX_FUNCTIONS: usize = 2000;

/// At most this many findings of one kind are listed, the most costly first; a whole-host
/// run can have a hundred contended futexes, and the flame graphs show the rest.
pub const MAX_FINDINGS_PER_KIND: usize = 20;

/// Node flag: a kernel frame.
pub const KERNEL: u8 = 1;
/// Node flag: the process level (a command name or pid, not a function).
pub const PROCESS: u8 = 2;

/// Everything the report page shows.
#[derive(Debug, Serialize)]
pub struct ReportData {
    /// Facts about the run, for the header.
    pub run: RunFacts,
    /// The profiles, in the order of the tabs.
    pub profiles: Vec<ProfileData>,
    /// The findings, in the order of the findings panel.
    pub findings: Vec<FindingData>,
    /// What was left out of `findings` beyond [`MAX_FINDINGS_PER_KIND`], in words.
    pub findings_omitted: Vec<String>,
    /// The findings' thresholds, in words, to say what "no findings" means.
    pub thresholds: Vec<String>,
}

/// Where and how the profiles were taken.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct RunFacts {
    /// The host name.
    pub host: Option<String>,
    /// The kernel release.
    pub kernel: Option<String>,
    /// Online CPUs.
    pub cpus: Option<u64>,
    /// What was profiled, in words.
    pub target: Option<String>,
    /// How long the window was, in words ("3.00s").
    pub window: Option<String>,
    /// When the window opened (RFC 3339).
    pub started: Option<String>,
    /// Why the window closed.
    pub ended: Option<String>,
    /// Where the report's data came from: a live run, or the files of an earlier one.
    pub source: String,
}

impl RunFacts {
    /// The header's facts from a profile's comment that [`crate::profile::RunFacts`]
    /// encoded; fields it cannot find stay `None`, and any other comment gives none.
    pub fn from_comment(comment: &str) -> Self {
        let Some(facts) = crate::profile::RunFacts::decode(comment) else {
            return Self::default();
        };
        Self {
            host: facts.host,
            kernel: facts.kernel,
            cpus: facts.cpus,
            target: facts.target,
            window: facts.window.map(|w| format!("{:.2}s", w.as_secs_f64())),
            started: facts
                .started
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            ended: facts.ended,
            source: String::new(),
        }
    }

    /// `self`, with what it lacks taken from `other`.
    pub fn or(self, other: RunFacts) -> Self {
        Self {
            host: self.host.or(other.host),
            kernel: self.kernel.or(other.kernel),
            cpus: self.cpus.or(other.cpus),
            target: self.target.or(other.target),
            window: self.window.or(other.window),
            started: self.started.or(other.started),
            ended: self.ended.or(other.ended),
            source: if self.source.is_empty() {
                other.source
            } else {
                self.source
            },
        }
    }
}

/// A sample type: what it counts, in which unit.
#[derive(Debug, Serialize)]
pub struct TypeData {
    /// `samples`, `cpu`, `calls`, `bytes`, `delay`, ...
    pub kind: String,
    /// `count`, `nanoseconds` or `bytes`.
    pub unit: String,
}

/// One profile, ready to draw.
#[derive(Debug, Serialize)]
pub struct ProfileData {
    /// `cpu`, `io`, `block`: the tab's id.
    pub name: String,
    /// The tab's label: `CPU`, `I/O`, `Blocking`.
    pub title: String,
    /// Sample types, as in the profile.
    pub types: Vec<TypeData>,
    /// The sample type shown first.
    pub default: usize,
    /// The profile's comments (run facts, received/expected, lost).
    pub comments: Vec<String>,
    /// Sampling frequency in Hz, for periodic profiles.
    pub frequency: Option<u64>,
    /// The collection window in nanoseconds.
    pub duration_ns: u64,
    /// Totals per sample type.
    pub totals: Vec<i64>,
    /// Function names, file names and process names, referenced by index.
    pub strings: Vec<String>,
    /// The root of the frame tree.
    pub tree: Node,
    /// Frames in `tree`.
    pub nodes: usize,
    /// Frames left out of `tree` for being under [`PRUNE_SHARE`] of every sample type.
    pub pruned: usize,
    /// Per function: self and total values per sample type, largest total first.
    pub functions: Vec<FunctionRow>,
    /// Functions left out of `functions` for being beyond [`MAX_FUNCTIONS`].
    pub functions_omitted: usize,
}

/// A frame of the tree, serialized as a compact array:
/// `[name, file, line, flags, [value per type], [children], why]`, where `name`, `file`
/// and `why` index [`ProfileData::strings`] (`file` 0 when unknown, `why` 0 for a named
/// frame, else why it has no name: [`crate::profile::FrameKind::reason`]), `line` is 0
/// when unknown, `flags` holds [`KERNEL`] and [`PROCESS`], and values are totals (self is
/// total minus the children's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node(
    pub u32,
    pub u32,
    pub u32,
    pub u8,
    pub Vec<i64>,
    pub Vec<Node>,
    pub u32,
);

/// A row of a function table: `[name, [self per type], [total per type]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionRow(pub u32, pub Vec<i64>, pub Vec<i64>);

/// A finding of the summary, with what to show in the flame graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingData {
    /// `small-io` (its case is the first detail), `contention`, `allocation` or `gc`.
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

/// Builds the page's data from the profiles and the findings computed from them.
pub fn build(profiles: &[Profile], analysis: &Analysis, run: RunFacts) -> ReportData {
    let (findings, findings_omitted) = findings(analysis);
    ReportData {
        run,
        profiles: profiles.iter().map(profile_data).collect(),
        findings,
        findings_omitted,
        thresholds: analysis.thresholds(),
    }
}

/// The tab label of a profile: its kind's title, capitalized.
fn title(kind: ProfileKind) -> String {
    let title = kind.title();
    let mut chars = title.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Interned strings; index 0 is "" so that 0 can mean "none".
struct Strings {
    table: Vec<String>,
    index: HashMap<String, u32>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Self {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.intern("");
        s
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        let i = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        self.table.push(text.to_owned());
        self.index.insert(text.to_owned(), i);
        i
    }
}

/// A tree node while the tree is built: children by name, and which line of the function
/// carried the most weight (the one hover shows).
struct Building {
    name: u32,
    file: u32,
    line: u32,
    line_weight: i64,
    flags: u8,
    why: u32,
    values: Vec<i64>,
    children: HashMap<u32, usize>,
}

/// The page data of one profile.
pub fn profile_data(profile: &Profile) -> ProfileData {
    let types = profile.sample_types.len();
    let index = profile.default_sample_type;
    let mut strings = Strings::new();
    let root_name = strings.intern("all");
    let mut arena = vec![Building {
        name: root_name,
        file: 0,
        line: 0,
        line_weight: 0,
        flags: 0,
        why: 0,
        values: vec![0; types],
        children: HashMap::new(),
    }];
    for sample in &profile.samples {
        let values: Vec<i64> = (0..types)
            .map(|t| sample.values.get(t).copied().unwrap_or(0))
            .collect();
        let weight = values.get(index).copied().unwrap_or(0);
        let process = strings.intern(&process_frame(sample));
        let frames = std::iter::once((process, 0, 0, PROCESS, 0)).chain(
            profile.stacks[sample.stack]
                .iter()
                .rev()
                .map(|&l| &profile.locations[l])
                .flat_map(|loc| loc.lines.iter().rev().map(move |line| (loc, line)))
                .map(|(loc, line)| {
                    let flags = if loc.kind.is_kernel() { KERNEL } else { 0 };
                    (
                        strings.intern(&line.function),
                        line.file.as_deref().map_or(0, |f| strings.intern(f)),
                        line.line,
                        flags,
                        loc.kind.reason().map_or(0, |why| strings.intern(why)),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let mut at = 0;
        add(&mut arena[at].values, &values);
        for (name, file, line, flags, why) in frames {
            let next = match arena[at].children.get(&name) {
                Some(&child) => child,
                None => {
                    arena.push(Building {
                        name,
                        file,
                        line,
                        line_weight: i64::MIN,
                        flags,
                        why,
                        values: vec![0; types],
                        children: HashMap::new(),
                    });
                    let child = arena.len() - 1;
                    arena[at].children.insert(name, child);
                    child
                }
            };
            at = next;
            let node = &mut arena[at];
            add(&mut node.values, &values);
            if weight > node.line_weight {
                (node.file, node.line, node.line_weight) = (file, line, weight);
            }
        }
    }

    let totals = arena[0].values.clone();
    // The smallest value per type that keeps a frame; a type with no total keeps nothing
    // on its own.
    let floors: Vec<Option<f64>> = totals
        .iter()
        .map(|&t| (t > 0).then_some(t as f64 * PRUNE_SHARE))
        .collect();
    let mut pruned = 0;
    let mut nodes = 0;
    let tree = finish(&arena, 0, &floors, &mut pruned, &mut nodes);
    let (functions, functions_omitted) = function_rows(profile, &mut strings);
    ProfileData {
        name: profile.kind.name().to_owned(),
        title: title(profile.kind),
        types: profile
            .sample_types
            .iter()
            .map(|t| TypeData {
                kind: t.kind.clone(),
                unit: t.unit.clone(),
            })
            .collect(),
        default: index,
        comments: profile.comments.clone(),
        frequency: frequency(profile),
        duration_ns: u64::try_from(profile.duration.as_nanos()).unwrap_or(u64::MAX),
        totals,
        strings: strings.table,
        tree,
        nodes,
        pruned,
        functions,
        functions_omitted,
    }
}

fn add(acc: &mut [i64], values: &[i64]) {
    for (a, v) in acc.iter_mut().zip(values) {
        *a = a.saturating_add(*v);
    }
}

/// Turns the arena under node `at` into a [`Node`] tree, pruning children under every
/// floor; counts the frames kept and pruned (a pruned frame's whole subtree counts).
///
/// Without recursion: a tree is as deep as the deepest stack, which a file can make
/// deeper than the thread's stack allows.
fn finish(
    arena: &[Building],
    at: usize,
    floors: &[Option<f64>],
    pruned: &mut usize,
    nodes: &mut usize,
) -> Node {
    // The kept nodes in pre-order, each with its kept children sorted by name (so the
    // output does not depend on hash order).
    let mut order: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut pending = vec![at];
    while let Some(n) = pending.pop() {
        *nodes += 1;
        let mut children: Vec<usize> = arena[n].children.values().copied().collect();
        children.sort_by_key(|&c| arena[c].name);
        let mut kept = Vec::new();
        for c in children {
            let visible = arena[c]
                .values
                .iter()
                .zip(floors)
                .any(|(&v, floor)| floor.is_some_and(|f| v as f64 >= f));
            if visible {
                kept.push(c);
            } else {
                *pruned += subtree_size(arena, c);
            }
        }
        pending.extend(kept.iter().copied());
        order.push((n, kept));
    }
    // In reverse pre-order every child is built before its parent.
    let mut built: HashMap<usize, Node> = HashMap::new();
    for (n, kept) in order.into_iter().rev() {
        let children = kept
            .iter()
            .filter_map(|c| built.remove(c))
            .collect::<Vec<_>>();
        let b = &arena[n];
        let node = Node(
            b.name,
            b.file,
            b.line,
            b.flags,
            b.values.clone(),
            children,
            b.why,
        );
        built.insert(n, node);
    }
    built
        .remove(&at)
        .unwrap_or_else(|| Node(0, 0, 0, 0, Vec::new(), Vec::new(), 0))
}

/// The frames under and including node `at`, counted without recursion.
fn subtree_size(arena: &[Building], at: usize) -> usize {
    let mut count = 0;
    let mut pending = vec![at];
    while let Some(n) = pending.pop() {
        count += 1;
        pending.extend(arena[n].children.values().copied());
    }
    count
}

/// Per function, self (stacks it is the innermost frame of) and total (stacks it appears in,
/// once per stack even when recursive) for every sample type, as the terminal summary
/// counts them; the largest total (by the default type, then the others) first.
fn function_rows(profile: &Profile, strings: &mut Strings) -> (Vec<FunctionRow>, usize) {
    let types = profile.sample_types.len();
    let mut rows: HashMap<&str, (Vec<i64>, Vec<i64>)> = HashMap::new();
    for sample in &profile.samples {
        let leaf = profile.stacks[sample.stack]
            .first()
            .and_then(|&l| profile.locations[l].lines.first())
            .map_or("[unknown]", |l| l.function.as_str());
        let functions: BTreeSet<&str> = profile.stack_functions(sample.stack).into_iter().collect();
        let value = |t: usize| sample.values.get(t).copied().unwrap_or(0);
        let row = rows
            .entry(leaf)
            .or_insert_with(|| (vec![0; types], vec![0; types]));
        for t in 0..types {
            row.0[t] = row.0[t].saturating_add(value(t));
        }
        for f in functions {
            let row = rows
                .entry(f)
                .or_insert_with(|| (vec![0; types], vec![0; types]));
            for t in 0..types {
                row.1[t] = row.1[t].saturating_add(value(t));
            }
        }
    }
    let index = profile.default_sample_type;
    let mut all: Vec<(&str, Vec<i64>, Vec<i64>)> = rows
        .into_iter()
        .filter(|(_, (s, t))| s.iter().chain(t).any(|&v| v != 0))
        .map(|(name, (s, t))| (name, s, t))
        .collect();
    all.sort_by(|a, b| {
        let key = |r: &(&str, Vec<i64>, Vec<i64>)| r.2.get(index).copied().unwrap_or(0);
        key(b)
            .cmp(&key(a))
            .then_with(|| b.2.cmp(&a.2))
            .then(a.0.cmp(b.0))
    });
    let omitted = all.len().saturating_sub(MAX_FUNCTIONS);
    all.truncate(MAX_FUNCTIONS);
    let rows = all
        .into_iter()
        .map(|(name, s, t)| FunctionRow(strings.intern(name), s, t))
        .collect();
    (rows, omitted)
}

/// Samples per second, for profiles sampled every `period` nanoseconds of CPU time.
fn frequency(profile: &Profile) -> Option<u64> {
    let t = profile.period_type.as_ref()?;
    (t.unit == "nanoseconds" && profile.period > 0)
        .then(|| (1e9 / profile.period as f64).round() as u64)
}

/// The findings, in the order of the panel: small I/O, contention, then CPU memory hot
/// spots, each kind cut at [`MAX_FINDINGS_PER_KIND`]; and what was cut, in words.
fn findings(analysis: &Analysis) -> (Vec<FindingData>, Vec<String>) {
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
        analysis.memory.iter().map(memory).collect(),
        "memory hot spots",
    );
    (out, omitted)
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

fn contention(futex: &FutexWaits) -> FindingData {
    let waiters: Vec<String> = futex.waiters.iter().map(|(f, _)| f.clone()).collect();
    FindingData {
        kind: "contention",
        profile: ProfileKind::Block.name(),
        title: format!(
            "futex {} in {} (pid {}): {} threads waited {} times, {} in all",
            futex.futex,
            futex.comm,
            futex.pid,
            futex.threads,
            group(futex.waits as i64),
            human_time(futex.delay as i64)
        ),
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::output::fixture::{self, PERIOD, line, location};
    use crate::profile::{Label, ProfileBuilder, ValueType};

    /// The child of `node` named `name`.
    fn child<'a>(data: &ProfileData, node: &'a Node, name: &str) -> &'a Node {
        node.5
            .iter()
            .find(|c| data.strings[c.0 as usize] == name)
            .unwrap_or_else(|| panic!("no child {name}"))
    }

    #[test]
    fn tree_merges_paths_root_first_with_process_level() {
        let d = profile_data(&fixture::profile());
        assert_eq!(d.totals, [10, 10 * PERIOD]);
        let root = &d.tree;
        assert_eq!(d.strings[root.0 as usize], "all");
        assert_eq!(root.4, [10, 10 * PERIOD]);
        assert_eq!(root.5.len(), 2, "two processes: app and pid 200");
        let app = child(&d, root, "app");
        assert_eq!(app.3, PROCESS);
        assert_eq!(app.4, [4, 4 * PERIOD]);
        let main = child(&d, app, "main");
        // main -> a (3) and main -> run -> b -> a (1): run/b expanded from one location.
        assert_eq!(child(&d, main, "a").4, [3, 3 * PERIOD]);
        let run = child(&d, main, "run");
        let b = child(&d, run, "b");
        assert_eq!(b.4, [1, PERIOD]);
        assert_eq!(child(&d, b, "a").4, [1, PERIOD]);
        // Hover shows file:line.
        assert_eq!(d.strings[main.1 as usize], "main.c");
        assert_eq!(main.2, 10);
        let pid200 = child(&d, root, "200");
        assert_eq!(
            child(&d, child(&d, pid200, "main"), "run").4,
            [6, 6 * PERIOD]
        );
        // all, app, main, a, run, b, a, 200, main, run, b.
        assert_eq!((d.nodes, d.pruned), (11, 0));
        assert_eq!(d.frequency, Some(100));
        assert_eq!((d.title.as_str(), d.default), ("CPU", 1));
    }

    #[test]
    fn function_table_matches_the_summary() {
        let d = profile_data(&fixture::profile());
        let rows: Vec<(&str, i64, i64)> = d
            .functions
            .iter()
            .map(|r| (d.strings[r.0 as usize].as_str(), r.1[0], r.2[0]))
            .collect();
        assert_eq!(
            rows,
            [("main", 0, 10), ("b", 6, 7), ("run", 0, 7), ("a", 4, 4)]
        );
        assert_eq!(d.functions_omitted, 0);
    }

    #[test]
    fn frames_under_the_threshold_are_pruned_and_counted() {
        let mut b = ProfileBuilder::with_sample_types(
            crate::profile::ProfileKind::Cpu,
            vec![
                ValueType::new("samples", "count"),
                ValueType::new("bytes", "bytes"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let main = b.location(location(1, None, vec![line("main")]));
        let hot = b.location(location(2, None, vec![line("hot")]));
        let rare = b.location(location(3, None, vec![line("rare")]));
        let deeper = b.location(location(4, None, vec![line("deeper")]));
        let big = b.location(location(5, None, vec![line("big_bytes")]));
        let s_hot = b.stack(vec![hot, main]);
        let s_rare = b.stack(vec![deeper, rare, main]);
        let s_big = b.stack(vec![big, main]);
        let app = || vec![Label::str("comm", "app")];
        b.add_sample(s_hot, &[100_000, 0], app());
        // 5 of 100,006 samples: under 0.1% of both types, so rare and deeper go.
        b.add_sample(s_rare, &[5, 0], app());
        // One sample but all the bytes: kept for the bytes.
        b.add_sample(s_big, &[1, 4096], app());
        let d = profile_data(&b.build());
        let app_node = child(&d, &d.tree, "app");
        let main_node = child(&d, app_node, "main");
        let names: Vec<&str> = main_node
            .5
            .iter()
            .map(|c| d.strings[c.0 as usize].as_str())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(
            names.contains(&"hot") && names.contains(&"big_bytes"),
            "{names:?}"
        );
        assert_eq!(d.pruned, 2, "rare and deeper");
        assert_eq!(d.nodes, 5, "all, app, main, hot, big_bytes");
        // The pruned value stays in main's total, so it shows as main's self.
        assert_eq!(main_node.4[0], 100_006);
        // The table is computed before pruning.
        assert!(
            d.functions
                .iter()
                .any(|r| d.strings[r.0 as usize] == "deeper" && r.1[0] == 5)
        );
    }

    #[test]
    fn kernel_frames_are_flagged() {
        let mut b = ProfileBuilder::with_sample_types(
            crate::profile::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let user = b.location(location(1, None, vec![line("main")]));
        let kernel = b.location(crate::profile::Location {
            kind: crate::profile::FrameKind::Kernel,
            ..location(2, None, vec![line("do_syscall_64")])
        });
        let s = b.stack(vec![kernel, user]);
        b.add_sample(s, &[1], vec![Label::num("pid", 9)]);
        let d = profile_data(&b.build());
        let pid = child(&d, &d.tree, "9");
        let main = child(&d, pid, "main");
        assert_eq!(main.3, 0);
        assert_eq!(child(&d, main, "do_syscall_64").3, KERNEL);
    }

    #[test]
    fn unnamed_frames_say_why() {
        use crate::profile::{FrameKind, Unnamed};
        let mut b = ProfileBuilder::with_sample_types(
            crate::profile::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let user = b.location(location(1, None, vec![line("main")]));
        let kind = FrameKind::Unnamed(Unnamed::NoSymbol);
        let unnamed = b.location(crate::profile::Location {
            kind,
            ..location(2, None, vec![line("app+0x10")])
        });
        let s = b.stack(vec![unnamed, user]);
        b.add_sample(s, &[1], vec![Label::num("pid", 9)]);
        let d = profile_data(&b.build());
        let main = child(&d, child(&d, &d.tree, "9"), "main");
        assert_eq!(main.6, 0);
        let why = child(&d, main, "app+0x10").6;
        assert_eq!(Some(d.strings[why as usize].as_str()), kind.reason());
    }

    #[test]
    fn empty_profile_is_just_a_root() {
        let d = profile_data(&fixture::empty());
        assert_eq!(d.tree.4, [0, 0]);
        assert!(d.tree.5.is_empty() && d.functions.is_empty());
        assert_eq!((d.nodes, d.pruned), (1, 0));
    }

    #[test]
    fn findings_link_to_their_frames_and_are_capped() {
        let futex = |i: usize| FutexWaits {
            pid: 7,
            comm: "app".to_owned(),
            futex: format!("{i:#x}"),
            threads: 4,
            waits: 10,
            delay: 1_000_000 - i as u64,
            waiters: vec![("contend_lock".to_owned(), 900), ("main".to_owned(), 100)],
        };
        let analysis = Analysis {
            futexes: (0..MAX_FINDINGS_PER_KIND + 5).map(futex).collect(),
            ..Analysis::default()
        };
        let data = build(&[], &analysis, RunFacts::default());
        assert_eq!(data.findings.len(), MAX_FINDINGS_PER_KIND);
        assert_eq!(
            data.findings_omitted,
            ["5 more contended locks, smaller than those listed"]
        );
        let f = &data.findings[0];
        assert_eq!((f.kind, f.profile), ("contention", "block"));
        assert_eq!(f.focus, "contend_lock");
        assert_eq!(f.functions, ["contend_lock", "main"]);
        assert_eq!(f.path, ["app"]);
        assert!(f.title.contains("4 threads waited 10 times"), "{}", f.title);
        assert_eq!(f.hint, CONTENTION_HINT);
    }

    #[test]
    fn run_facts_come_from_the_first_comment() {
        let f = RunFacts::from_comment(
            "run: host vm, kernel 6.18.44, 2 CPUs; target: command `sh -c a; b` and its \
             children; window: 3.00s from 2026-11-27T22:53:58Z; the duration elapsed",
        );
        assert_eq!(f.host.as_deref(), Some("vm"));
        assert_eq!(f.kernel.as_deref(), Some("6.18.44"));
        assert_eq!(f.cpus, Some(2));
        assert_eq!(
            f.target.as_deref(),
            Some("command `sh -c a; b` and its children")
        );
        assert_eq!(f.window.as_deref(), Some("3.00s"));
        assert_eq!(f.started.as_deref(), Some("2026-11-27T22:53:58Z"));
        assert_eq!(f.ended.as_deref(), Some("the duration elapsed"));
        assert_eq!(RunFacts::from_comment("lost: 0"), RunFacts::default());
        let live = RunFacts {
            host: Some("h".into()),
            cpus: Some(8),
            source: "live".into(),
            ..Default::default()
        };
        let merged = RunFacts::from_comment("run: host vm, kernel k, 2 CPUs").or(live);
        assert_eq!(
            (merged.host.as_deref(), merged.cpus, merged.source.as_str()),
            (Some("vm"), Some(2), "live")
        );
    }
}
