//! A profile's page data: its frames as a tree (root first, identical paths merged, values
//! per sample type, narrow frames pruned) and its function table.

use std::collections::HashMap;

use profiler_model::StringTable;
use profiler_model::{Comment, Profile, ProfileKind};
use serde::Serialize;

use super::processes::{ProcessesData, process_rows};
use super::table::{FunctionRow, function_rows};
use crate::output::folded::process_frame;

/// A frame is pruned from the tree when, for every sample type, it holds less than this
/// share of the profile's total: narrower than a pixel at full width, and it keeps a
/// whole-host report small. Its value stays in its caller's self.
pub const PRUNE_SHARE: f64 = 0.001;

/// The most frames the tree is built with before pruning. A sample whose path would add
/// frames past it keeps the part already in the tree (its value shows as the last frame's
/// self) and is counted: labels that differ in every sample (a comm per sample) would
/// otherwise make a tree of samples times frames from a small file.
pub const MAX_TREE_NODES: usize = 500_000;

/// Node flag: a kernel frame.
pub const KERNEL: u8 = 1;
/// Node flag: the process level (a command name or pid, not a function).
pub const PROCESS: u8 = 2;

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
    /// The frame tree, flat in pre-order: the root first, each frame after its parent, its
    /// children in name order. Flat, so that neither writing nor reading the page recurses
    /// as deep as the deepest stack.
    pub tree: Vec<Node>,
    /// Frames in `tree`.
    pub nodes: usize,
    /// Frames left out of `tree` for being under [`PRUNE_SHARE`] of every sample type.
    pub pruned: usize,
    /// Per function: self and total values per sample type, largest total first.
    pub functions: Vec<FunctionRow>,
    /// Functions left out of `functions` for being beyond [`MAX_FUNCTIONS`].
    pub functions_omitted: usize,
    /// A CPU profile's samples by process, when several processes have samples.
    pub processes: Option<ProcessesData>,
}

/// A frame of the tree, serialized as a compact array:
/// `[name, file, line, flags, [value per type], parent, why]`, where `name`, `file`
/// and `why` index [`ProfileData::strings`] (`file` 0 when unknown, `why` 0 for a named
/// frame, else why it has no name: [`profiler_model::FrameKind::reason`]), `line` is 0
/// when unknown, `flags` holds [`KERNEL`] and [`PROCESS`], values are totals (self is
/// total minus the children's), and `parent` indexes [`ProfileData::tree`] (0 for the
/// root itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node(
    pub u32,
    pub u32,
    pub u32,
    pub u8,
    pub Vec<i64>,
    pub u32,
    pub u32,
);

/// The tab label of a profile.
fn title(kind: ProfileKind) -> String {
    let title = kind.title();
    let mut chars = title.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
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
    let mut strings = StringTable::<u32>::new();
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
    let mut cut = 0usize;
    for sample in &profile.samples {
        let values: Vec<i64> = (0..types).map(|t| sample.value(t)).collect();
        let weight = values.get(index).copied().unwrap_or(0);
        let process = strings.intern(&process_frame(sample));
        // Lazily: a sample cut at the tree's budget costs no more than the frames it keeps.
        let frames = std::iter::once((process, 0, 0, PROCESS, 0)).chain(
            profile
                .stack(sample.stack)
                .iter()
                .rev()
                .map(|&l| profile.location(l))
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
                }),
        );
        let mut at = 0;
        add(&mut arena[at].values, &values);
        for (name, file, line, flags, why) in frames {
            let next = match arena[at].children.get(&name) {
                Some(&child) => child,
                None if arena.len() >= MAX_TREE_NODES => {
                    cut += 1;
                    break;
                }
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
    let tree = finish(&arena, &floors, &mut pruned, &mut nodes);
    drop(arena);
    let (functions, functions_omitted) = function_rows(profile, &mut strings);
    let mut comments: Vec<String> = profile.comments.iter().map(Comment::text).collect();
    if cut > 0 {
        comments.push(format!(
            "report: {cut} samples' stacks are cut short in the flame graph, which holds at \
             most {MAX_TREE_NODES} frames; the table counts them in full"
        ));
    }
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
        comments,
        frequency: frequency(profile),
        duration_ns: u64::try_from(profile.duration.as_nanos()).unwrap_or(u64::MAX),
        totals,
        strings: strings.table,
        tree,
        nodes,
        pruned,
        functions,
        functions_omitted,
        processes: process_rows(profile),
    }
}

fn add(acc: &mut [i64], values: &[i64]) {
    for (a, v) in acc.iter_mut().zip(values) {
        *a = a.saturating_add(*v);
    }
}

/// Turns the arena into the flat [`Node`] list, pre-order from the root, pruning children
/// under every floor; counts the frames kept and pruned (a pruned frame's whole subtree
/// counts).
///
/// Without recursion: a tree is as deep as the deepest stack, which a file or a target
/// can make deeper than the thread's stack allows.
fn finish(
    arena: &[Building],
    floors: &[Option<f64>],
    pruned: &mut usize,
    nodes: &mut usize,
) -> Vec<Node> {
    let mut out = Vec::new();
    // (arena index, index of its parent in `out`).
    let mut pending = vec![(0usize, 0u32)];
    while let Some((n, parent)) = pending.pop() {
        let b = &arena[n];
        let index = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out.push(Node(
            b.name,
            b.file,
            b.line,
            b.flags,
            b.values.clone(),
            parent,
            b.why,
        ));
        // Sorted by name, so the output does not depend on hash order; pushed last first,
        // so they come out first to last.
        let mut children: Vec<usize> = b.children.values().copied().collect();
        children.sort_by_key(|&c| std::cmp::Reverse(arena[c].name));
        for c in children {
            let visible = arena[c]
                .values
                .iter()
                .zip(floors)
                .any(|(&v, floor)| floor.is_some_and(|f| v as f64 >= f));
            if visible {
                pending.push((c, index));
            } else {
                *pruned += subtree_size(arena, c);
            }
        }
    }
    *nodes = out.len();
    out
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

/// Samples per second, for profiles sampled every `period` nanoseconds of CPU time.
fn frequency(profile: &Profile) -> Option<u64> {
    let t = profile.period_type.as_ref()?;
    (t.unit == "nanoseconds" && profile.period > 0)
        .then(|| (1e9 / profile.period as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::{self, PERIOD, line, location};
    use profiler_model::{Label, LabelKey, ProfileBuilder, ValueType};

    use super::*;

    /// The children of `node`, a frame of `data`'s tree.
    fn kids<'a>(data: &'a ProfileData, node: &Node) -> Vec<&'a Node> {
        let at = data
            .tree
            .iter()
            .position(|n| std::ptr::eq(n, node))
            .unwrap() as u32;
        data.tree.iter().skip(1).filter(|n| n.5 == at).collect()
    }

    /// The child of `node` named `name`.
    fn child<'a>(data: &'a ProfileData, node: &Node, name: &str) -> &'a Node {
        kids(data, node)
            .into_iter()
            .find(|c| data.strings[c.0 as usize] == name)
            .unwrap_or_else(|| panic!("no child {name}"))
    }

    #[test]
    fn tree_merges_paths_root_first_with_process_level() {
        let d = profile_data(&fixture::profile());
        assert_eq!(d.totals, [10, 10 * PERIOD]);
        let root = &d.tree[0];
        assert_eq!(d.strings[root.0 as usize], "all");
        assert_eq!(root.4, [10, 10 * PERIOD]);
        assert_eq!(kids(&d, root).len(), 2, "two processes: app and pid 200");
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
            profiler_model::ProfileKind::Cpu,
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
        let app = || vec![Label::str(LabelKey::Comm, "app")];
        b.add_sample(s_hot, &[100_000, 0], app());
        // 5 of 100,006 samples: under 0.1% of both types, so rare and deeper go.
        b.add_sample(s_rare, &[5, 0], app());
        // One sample but all the bytes: kept for the bytes.
        b.add_sample(s_big, &[1, 4096], app());
        let d = profile_data(&b.build());
        let app_node = child(&d, &d.tree[0], "app");
        let main_node = child(&d, app_node, "main");
        let names: Vec<&str> = kids(&d, main_node)
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
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let user = b.location(location(1, None, vec![line("main")]));
        let kernel = b.location(profiler_model::Location {
            kind: profiler_model::FrameKind::Kernel,
            ..location(2, None, vec![line("do_syscall_64")])
        });
        let s = b.stack(vec![kernel, user]);
        b.add_sample(s, &[1], vec![Label::num(LabelKey::Pid, 9)]);
        let d = profile_data(&b.build());
        let pid = child(&d, &d.tree[0], "9");
        let main = child(&d, pid, "main");
        assert_eq!(main.3, 0);
        assert_eq!(child(&d, main, "do_syscall_64").3, KERNEL);
    }

    #[test]
    fn unnamed_frames_say_why() {
        use profiler_model::{FrameKind, Unnamed};
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let user = b.location(location(1, None, vec![line("main")]));
        let kind = FrameKind::Unnamed(Unnamed::NoSymbol);
        let unnamed = b.location(profiler_model::Location {
            kind,
            ..location(2, None, vec![line("app+0x10")])
        });
        let s = b.stack(vec![unnamed, user]);
        b.add_sample(s, &[1], vec![Label::num(LabelKey::Pid, 9)]);
        let d = profile_data(&b.build());
        let main = child(&d, child(&d, &d.tree[0], "9"), "main");
        assert_eq!(main.6, 0);
        let why = child(&d, main, "app+0x10").6;
        assert_eq!(Some(d.strings[why as usize].as_str()), kind.reason());
    }

    #[test]
    fn the_tree_stops_at_its_budget_and_says_so() {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let f = b.location(location(1, None, vec![line("f")]));
        let s = b.stack(vec![f; 1000]);
        // A process of its own per sample: 1,000 paths of 1,001 frames.
        for comm in 0..1000 {
            b.add_sample(
                s,
                &[1],
                vec![Label::str(LabelKey::Comm, format!("c{comm}"))],
            );
        }
        let d = profile_data(&b.build());
        assert!(d.nodes <= MAX_TREE_NODES, "{} nodes", d.nodes);
        assert_eq!(d.tree[0].4, [1000], "every sample still counts at the root");
        let note = d.comments.iter().find(|c| c.contains("cut short")).unwrap();
        assert!(note.starts_with("report: 501 samples'"), "{note}");
    }

    #[test]
    fn empty_profile_is_just_a_root() {
        let d = profile_data(&fixture::empty());
        assert_eq!(d.tree[0].4, [0, 0]);
        assert!(d.tree.len() == 1 && d.functions.is_empty());
        assert_eq!((d.nodes, d.pruned), (1, 0));
    }
}
