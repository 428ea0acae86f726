//! True stacks, tens of thousands of them (issue 10): `stacks_tree` runs in
//! 32768 distinct call stacks, 18 frames deep, built without frame pointers;
//! every sample must keep its full path, no stack may be lost or mixed up with
//! another, and the samples must be what `-F` gives for the CPU time the
//! fixture's workers measured themselves. Helpers: `tests/stacks_common/mod.rs`.

#[path = "../stacks_common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};

use common::{assert_received, assert_share, in_order, named, profile_command};
use integration_tests::{FixtureResult, Folded, Run, Stack, fixture, prerequisites, temp_dir};

/// Frames that mark a lost stack (`[user stack lost: ...]`, `[kernel stack
/// lost: ...]` and the like), with their sample counts.
fn lost_stack_markers(folded: &Folded) -> BTreeMap<String, u64> {
    let mut markers = BTreeMap::new();
    for s in &folded.stacks {
        for f in &s.frames {
            let lower = f.to_lowercase();
            if f.starts_with('[') && lower.contains("lost") {
                *markers.entry(f.clone()).or_default() += s.count;
            }
        }
    }
    markers
}

/// Samples lost because the ring buffer was full, from the summary: the `K` of a
/// `ring buffer: N records, M bytes (X MB/s), K lost` line, else the `N` of a
/// `lost: N samples (ring buffer full); ...` line. `None` when neither is printed.
fn ring_buffer_lost(stdout: &str) -> Option<u64> {
    let number_before = |line: &str, word: &str| -> Option<u64> {
        let at = line.find(word)?;
        line[..at]
            .split_whitespace()
            .next_back()?
            .trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()
    };
    let lines = || stdout.lines().map(str::trim);
    lines()
        .filter(|l| l.to_lowercase().contains("ring buffer:"))
        .find_map(|l| number_before(l, " lost"))
        .or_else(|| {
            lines()
                .filter(|l| l.starts_with("lost:") && l.contains("ring buffer full"))
                .find_map(|l| number_before(l, " samples"))
        })
}

/// What a profile of `stacks_tree` shows.
struct TreeProfile {
    hz: u64,
    run: Run,
    folded: Folded,
    /// The workers' own CPU time, summed (their thread CPU clocks).
    cpu_ns: u64,
}

fn profile_tree(hz: u64, seconds: &str) -> TreeProfile {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("stacks_tree");
    let run = profile_command(
        hz,
        &["--profiles", "cpu"],
        &[
            exe.as_os_str(),
            seconds.as_ref(),
            "2".as_ref(),
            result.as_os_str(),
        ],
        &out,
    );
    let measured = FixtureResult::read(&result);
    assert_eq!(measured.u64("paths"), 32768, "stacks_tree's tree changed");
    let all = Folded::load(&out);
    let folded = Folded {
        stacks: all
            .stacks
            .into_iter()
            // The workers' samples: the main thread only waits for them.
            .filter(|s| s.comm == "stacks_tree")
            .collect(),
    };
    TreeProfile {
        hz,
        run,
        folded,
        cpu_ns: measured.u64("cpu_ns"),
    }
}

/// The tree path (the 15 tree_zero / tree_one frames) of a sample in
/// tree_leaf, when its stack is complete: tree_worker, tree_root, exactly 15
/// steps, tree_leaf.
fn tree_path(s: &Stack) -> Option<Vec<bool>> {
    let leaf = s.frames.iter().position(|f| f == "tree_leaf")?;
    let root = s.frames[..leaf].iter().rposition(|f| f == "tree_root")?;
    if root == 0 || s.frames[root - 1] != "tree_worker" {
        return None;
    }
    let steps = &s.frames[root + 1..leaf];
    if steps.len() != 15 {
        return None;
    }
    steps
        .iter()
        .map(|f| match f.as_str() {
            "tree_zero" => Some(false),
            "tree_one" => Some(true),
            _ => None,
        })
        .collect()
}

/// The assertions both rates share: the samples the workers' CPU time gives
/// (counting those the summary reports `lost` to a full ring buffer, which the
/// profiler did take), no lost-stack marker, every leaf sample with its full
/// path, and the paths as distinct as random draws from 32768.
fn assert_full_tree_paths(tree: &TreeProfile, ring_lost: u64, min_distinct_share: f64) {
    let folded = &tree.folded;
    let total = folded.total();
    assert_received(
        &format!(
            "stacks_tree's stree-* workers (their own thread CPU clocks; {total} samples in the profile \
             + {ring_lost} lost to a full ring buffer)"
        ),
        total + ring_lost,
        tree.hz,
        tree.cpu_ns,
        folded,
    );
    let markers = lost_stack_markers(folded);
    assert!(
        markers.is_empty(),
        "samples carry lost-stack markers: {markers:?}\n{}",
        folded.summary(20)
    );
    // The workers spend all their time in the tree: a sample of theirs without
    // tree_worker;tree_root is a stack the unwinder could not read or lost.
    let rooted_anywhere =
        folded.samples_where(|s| in_order(s, &[&named("tree_worker"), &named("tree_root")]));
    assert_share(
        rooted_anywhere,
        total,
        0.97,
        "samples of stacks_tree's workers with tree_worker;tree_root in their stack",
        folded,
    );
    let marked = |s: &Stack| s.frames.iter().any(|f| f.starts_with('['));
    let bracketed = folded.samples_where(marked);
    let examples: Vec<String> = folded
        .stacks
        .iter()
        .filter(|s| marked(s))
        .take(10)
        .map(|s| format!("  {} {}", s.frames.join(";"), s.count))
        .collect();
    assert!(
        bracketed * 100 <= total,
        "{bracketed} of {total} samples carry a [marker] frame ([unknown], lost stack...), \
         such as:\n{}\n{}",
        examples.join("\n"),
        folded.summary(20)
    );
    let in_leaf = folded.samples_containing("tree_leaf");
    let complete = folded.samples_where(|s| tree_path(s).is_some());
    assert_share(
        complete,
        in_leaf,
        0.99,
        "tree_leaf samples with the full path tree_worker;tree_root;(tree_zero|tree_one)x15",
        folded,
    );
    // Samples in the steps themselves must reach the root too.
    let in_tree = folded.samples_where(|s| s.has("tree_zero") || s.has("tree_one"));
    let rooted = folded.samples_where(|s| {
        (s.has("tree_zero") || s.has("tree_one"))
            && in_order(s, &[&named("tree_worker"), &named("tree_root")])
    });
    assert_share(
        rooted,
        in_tree,
        0.99,
        "samples in tree_zero/tree_one with tree_worker;tree_root above them",
        folded,
    );
    // Every index is equally likely, so n samples of 32768 paths hold about
    // 32768 (1 - e^(-n/32768)) distinct ones; a collapsed or mixed-up unwind
    // (one stack for many paths) shows as far fewer.
    let paths: HashSet<Vec<bool>> = folded.stacks.iter().filter_map(tree_path).collect();
    let lines = folded
        .stacks
        .iter()
        .filter(|s| tree_path(s).is_some())
        .count();
    assert!(
        paths.len() as f64 >= min_distinct_share * complete as f64,
        "{} distinct tree paths among {complete} complete leaf samples ({lines} folded lines); \
         want >= {:.0}%",
        paths.len(),
        100.0 * min_distinct_share
    );
    println!(
        "{} distinct tree paths in {complete} complete leaf samples; ring buffer lost: \
         {ring_lost}; workers' CPU {:.2} s",
        paths.len(),
        tree.cpu_ns as f64 / 1e9
    );
}

#[test]
fn many_distinct_stacks_keep_full_paths_and_lose_nothing_at_99_hz() {
    if !prerequisites() {
        return;
    }
    // 2 threads x 8 s x 99 Hz: about 1600 samples in 32768 possible stacks.
    let tree = profile_tree(99, "8");
    match ring_buffer_lost(&tree.run.stdout) {
        Some(0) => {}
        Some(n) => panic!(
            "{n} samples lost to a full ring buffer at 99 Hz\n{}",
            tree.run.transcript()
        ),
        None => panic!(
            "the summary reports no ring-buffer losses (`lost: N samples (ring buffer \
             full)` or `ring buffer: ... N lost`)\n{}",
            tree.run.transcript()
        ),
    }
    assert_full_tree_paths(&tree, 0, 0.9);
}

#[test]
fn many_distinct_stacks_keep_full_paths_at_999_hz() {
    if !prerequisites() {
        return;
    }
    // About 8000 samples: thousands of distinct stacks, more than a stack map
    // keyed by stack hash keeps without collisions. Samples may be dropped
    // when the ring buffer fills at this rate (they are counted), but none may
    // carry a wrong or truncated stack.
    let tree = profile_tree(999, "4");
    let Some(ring_lost) = ring_buffer_lost(&tree.run.stdout) else {
        panic!(
            "the summary reports no ring-buffer losses (`lost: N samples (ring buffer full)` \
             or `ring buffer: ... N lost`)\n{}",
            tree.run.transcript()
        )
    };
    assert_full_tree_paths(&tree, ring_lost, 0.8);
}

/// The helpers' own checks (no profiler run).
mod helpers {
    use super::*;

    #[test]
    fn ring_buffer_line_parses_loosely() {
        let s = "cpu profile\n  ring buffer: 1200 records, 19660800 bytes (4.9 MB/s), 3 lost\n";
        assert_eq!(ring_buffer_lost(s), Some(3));
        let also = "  also lost: 0 process announcements (ring buffer full: ...)\n";
        assert_eq!(ring_buffer_lost(also), None);
        assert_eq!(
            ring_buffer_lost("ring buffer: 0 records, 0 bytes, 0 lost"),
            Some(0)
        );
        let lead = "  lost: 5 samples (ring buffer full); 0 user stacks unreadable, 0 kernel \
                    stacks not taken\n";
        assert_eq!(ring_buffer_lost(lead), Some(5));
        let old = "  lost: 1 samples (aggregation map full), 22 user and 3 kernel stacks\n";
        assert_eq!(ring_buffer_lost(old), None);
    }

    #[test]
    fn order_and_tree_paths() {
        let f = Folded::parse(&format!(
            "stree-0;start_thread;tree_worker;tree_root;{}tree_leaf 2\n\
             stree-1;tree_root;tree_zero;tree_leaf 1\n",
            "tree_one;".repeat(15)
        ));
        assert_eq!(tree_path(&f.stacks[0]), Some(vec![true; 15]));
        assert_eq!(tree_path(&f.stacks[1]), None);
        assert!(in_order(
            &f.stacks[0],
            &[&named("tree_worker"), &named("tree_leaf")]
        ));
        assert!(!in_order(
            &f.stacks[0],
            &[&named("tree_leaf"), &named("tree_worker")]
        ));
    }
}
