//! True stacks on real software (issue 10): user stacks unwound in userspace
//! from a copy of the user stack and the call frame information (`.eh_frame`),
//! the way `perf record --call-graph dwarf` does, instead of the kernel's
//! frame-pointer walk.
//!
//! The fixtures here (the `stacks_*` ones, see `tests/build.rs`) are built
//! WITHOUT frame pointers, as distributions build software, so a frame-pointer
//! walk loses their callers; Debian's own `python3` is the real-world case.
//! Every assertion is about what an unwinder must recover: the callers, in
//! order, up to the root function; a CPU split that matches the fixture's own
//! clock when the split is only visible through the callers; full paths in a
//! tree of 32768 distinct stacks with nothing lost; and names for a binary that
//! lives in another mount namespace, also after it exited.
//!
//! Also: `--call-graph fp` still works on the frame-pointer fixtures, and
//! `--call-graph` values are checked by the command line parser.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{
    FixtureResult, Folded, Run, Stack, assert_outputs, fixture, prerequisites, profiler_command,
    run_command, run_profiler, temp_dir,
};

/// Largest allowed gap, in percentage points, between a split in the profile
/// and the fixture's own CPU-clock measurement of it.
const SPLIT_TOLERANCE_PP: f64 = 3.0;

/// Share of a function's samples whose stack must reach the root of its chain.
const UNWOUND_SHARE: f64 = 0.95;

/// Runs `profiler -F HZ [extra] -- EXE ARGS...` in command mode, asserts it
/// succeeded and wrote its outputs, and returns the run.
fn profile_command(hz: u64, extra: &[&str], argv: &[&OsStr], out: &Path) -> Run {
    let hz = hz.to_string();
    let mut args: Vec<&OsStr> = vec!["-F".as_ref(), hz.as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    args.push("--".as_ref());
    args.extend_from_slice(argv);
    let run = run_profiler(&args, out);
    run.assert_success();
    assert_outputs(out);
    run
}

/// A frame's name without a Rust symbol hash (`::h0123456789abcdef`) and
/// without an ` (inlined)` note, should the symbolizer add either.
fn plain(frame: &str) -> &str {
    let frame = frame.strip_suffix(" (inlined)").unwrap_or(frame);
    match frame.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => frame,
    }
}

/// Whether the stack has, root first, a frame matching each of `wanted` in
/// this order (other frames may sit between them).
fn in_order(stack: &Stack, wanted: &[&dyn Fn(&str) -> bool]) -> bool {
    let mut frames = stack.frames.iter().map(String::as_str).map(plain);
    wanted.iter().all(|want| frames.any(want))
}

/// [`in_order`] for frames named exactly `names`.
fn in_order_names<S: AsRef<str>>(stack: &Stack, names: &[S]) -> bool {
    let mut frames = stack.frames.iter().map(String::as_str).map(plain);
    names.iter().all(|want| frames.any(|f| f == want.as_ref()))
}

/// Matches a frame named exactly `name`.
fn named(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |f: &str| f == name
}

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

/// Asserts that every frame-less unwind is visible: `share` of `of` samples
/// satisfy the property, else fails with `what` and the heaviest stacks.
fn assert_share(good: u64, of: u64, share: f64, what: &str, folded: &Folded) {
    assert!(
        of > 0 && good as f64 >= share * of as f64,
        "{what}: {good} of {of} samples ({:.1}%, want >= {:.0}%)\n{}",
        100.0 * good as f64 / of.max(1) as f64,
        100.0 * share,
        folded.summary(20)
    );
}

/// Compares the share of `a` in `a + b` samples with `a_ns / (a_ns + b_ns)`.
fn assert_split(what: &str, a: u64, b: u64, a_ns: u64, b_ns: u64, min: u64, folded: &Folded) {
    assert!(
        a + b >= min,
        "{what}: too few samples ({a}+{b}, want >= {min})\n{}",
        folded.summary(20)
    );
    let want = 100.0 * a_ns as f64 / (a_ns + b_ns) as f64;
    let got = 100.0 * a as f64 / (a + b) as f64;
    assert!(
        (got - want).abs() <= SPLIT_TOLERANCE_PP,
        "{what}: profile split {got:.1}% ({a} of {} samples) differs from the fixture's own \
         CPU-clock split {want:.1}% by more than {SPLIT_TOLERANCE_PP} pp\n{}",
        a + b,
        folded.summary(20)
    );
}

// ---------------------------------------------------------------------------
// 1. Deep chains without frame pointers

#[test]
fn deep_chains_without_frame_pointers_unwind_to_their_roots() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("stacks_deep");
    // The default call graph (dwarf).
    profile_command(
        499,
        &[],
        &[exe.as_os_str(), "5".as_ref(), result.as_os_str()],
        &out,
    );
    let measured = FixtureResult::read(&result);
    let folded = Folded::load(&out).with_comm("stacks_deep");

    let mut leaf_samples = Vec::new();
    for (chain, leaf) in [("a", "leaf_a"), ("b", "leaf_b")] {
        let root = format!("chain_{chain}_1");
        let in_leaf = folded.samples_containing(leaf);
        let rooted = folded.samples_where(|s| in_order_names(s, &[root.as_str(), leaf]));
        assert_share(
            rooted,
            in_leaf,
            UNWOUND_SHARE,
            &format!("{leaf} samples with its chain's root {root} above it"),
            &folded,
        );
        // The whole chain, in order, under main.
        let names: Vec<String> = std::iter::once("main".to_owned())
            .chain((1..=12).map(|i| format!("chain_{chain}_{i}")))
            .chain(std::iter::once(leaf.to_owned()))
            .collect();
        let full = folded.samples_where(|s| in_order_names(s, &names));
        assert_share(
            full,
            in_leaf,
            UNWOUND_SHARE,
            &format!("{leaf} samples with the full chain {}", names.join(";")),
            &folded,
        );
        leaf_samples.push(in_leaf);
    }
    assert_split(
        "leaf_a vs leaf_b",
        leaf_samples[0],
        leaf_samples[1],
        measured.u64("a_ns"),
        measured.u64("b_ns"),
        500,
        &folded,
    );
}

// ---------------------------------------------------------------------------
// 2. Two callers of a frame-pointer-less libc function through one call site

#[test]
fn libc_function_callers_through_one_call_site_split_by_their_own_clock() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("stacks_libc");
    profile_command(
        499,
        &[],
        &[exe.as_os_str(), "5".as_ref(), result.as_os_str()],
        &out,
    );
    let measured = FixtureResult::read(&result);
    let folded = Folded::load(&out).with_comm("stacks_libc");

    // Samples in memchr: those with a frame below scan (scan's only call is
    // memchr; its name depends on the symbols at hand: `__memchr_avx2` with
    // libc's debug symbols, a `libc.so.6+0x...` address without).
    let below_scan = |s: &Stack| -> Option<String> {
        let i = s.frames.iter().position(|f| f == "scan")?;
        s.frames.get(i + 1).cloned()
    };
    let mut callees: BTreeMap<String, u64> = BTreeMap::new();
    for s in &folded.stacks {
        if let Some(callee) = below_scan(s) {
            *callees.entry(callee).or_default() += s.count;
        }
    }
    let in_scan = folded.samples_containing("scan");
    let in_memchr: u64 = callees.values().sum();
    assert!(
        in_scan > 0 && in_memchr * 10 >= in_scan * 8,
        "only {in_memchr} of {in_scan} samples in scan are in a function it calls (memchr); \
         functions below scan: {callees:?}\n{}",
        folded.summary(20)
    );
    let unknown: u64 = callees
        .iter()
        .filter(|(f, _)| f.as_str() == "[unknown]")
        .map(|(_, n)| n)
        .sum();
    assert!(
        unknown * 20 <= in_memchr,
        "{unknown} of {in_memchr} samples below scan are [unknown] rather than libc's \
         memchr: {callees:?}"
    );
    let under = |caller: &'static str| {
        folded.samples_where(move |s| {
            below_scan(s).is_some()
                && in_order(s, &[&named("main"), &named(caller), &named("scan")])
        })
    };
    let (one, two) = (under("caller_one"), under("caller_two"));
    assert_share(
        one + two,
        in_memchr,
        UNWOUND_SHARE,
        "memchr samples unwound through scan to caller_one or caller_two and main",
        &folded,
    );
    assert_split(
        "caller_one's share of the memchr samples",
        one,
        two,
        measured.u64("one_ns"),
        measured.u64("two_ns"),
        500,
        &folded,
    );
}

// ---------------------------------------------------------------------------
// 3. A Rust release build

#[test]
fn rust_release_build_unwinds_through_std_iterator_adapters() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("stacks_rust");
    profile_command(
        499,
        &[],
        &[exe.as_os_str(), "3".as_ref(), result.as_os_str()],
        &out,
    );
    FixtureResult::read(&result);
    let folded = Folded::load(&out).with_comm("stacks_rust");

    let hot = |f: &str| f.ends_with("stk_hot_closure_work");
    let run_work = |f: &str| f.ends_with("stk_run_work");
    // The program's own `fn main` (the C-level `main` that calls into std's
    // runtime sits further up).
    let rust_main = |f: &str| f == "stacks_rust::main";
    let in_hot = folded.samples_where(|s| s.frames.iter().any(|f| hot(plain(f))));
    assert!(
        in_hot >= 300,
        "only {in_hot} samples in stk_hot_closure_work for 3 s of it at 499 Hz\n{}",
        folded.summary(20)
    );
    let ordered = folded.samples_where(|s| in_order(s, &[&rust_main, &run_work, &hot]));
    assert_share(
        ordered,
        in_hot,
        UNWOUND_SHARE,
        "stk_hot_closure_work samples with stacks_rust::main and stk_run_work above it, in order",
        &folded,
    );
}

// ---------------------------------------------------------------------------
// 4. Tens of thousands of distinct stacks

/// What a profile of `stacks_tree` shows.
struct TreeProfile {
    run: Run,
    folded: Folded,
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
            .filter(|s| s.comm.starts_with("stree-"))
            .collect(),
    };
    TreeProfile { run, folded }
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

/// The assertions both rates share: no lost-stack marker, every leaf sample
/// with its full path, and the paths as distinct as random draws from 32768.
fn assert_full_tree_paths(tree: &TreeProfile, min_leaf_samples: u64, min_distinct_share: f64) {
    let folded = &tree.folded;
    let markers = lost_stack_markers(folded);
    assert!(
        markers.is_empty(),
        "samples carry lost-stack markers: {markers:?}\n{}",
        folded.summary(20)
    );
    // The workers spend all their time in the tree: a sample of theirs without
    // tree_worker;tree_root is a stack the unwinder could not read or lost.
    let total = folded.total();
    let rooted_anywhere =
        folded.samples_where(|s| in_order(s, &[&named("tree_worker"), &named("tree_root")]));
    assert_share(
        rooted_anywhere,
        total,
        0.97,
        "samples of the stree-* threads with tree_worker;tree_root in their stack",
        folded,
    );
    let bracketed = folded.samples_where(|s| s.frames.iter().any(|f| f.starts_with('[')));
    assert!(
        bracketed * 100 <= total,
        "{bracketed} of {total} samples carry a [marker] frame ([unknown], lost stack...)\n{}",
        folded.summary(20)
    );
    let in_leaf = folded.samples_containing("tree_leaf");
    assert!(
        in_leaf >= min_leaf_samples,
        "only {in_leaf} samples in tree_leaf (want >= {min_leaf_samples})\n{}",
        folded.summary(20)
    );
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
        "{} distinct tree paths in {complete} complete leaf samples; ring buffer lost: {:?}",
        paths.len(),
        ring_buffer_lost(&tree.run.stdout)
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
    assert_full_tree_paths(&tree, 400, 0.9);
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
    assert!(
        ring_buffer_lost(&tree.run.stdout).is_some(),
        "the summary reports no ring-buffer losses (`lost: N samples (ring buffer full)` \
         or `ring buffer: ... N lost`)\n{}",
        tree.run.transcript()
    );
    assert_full_tree_paths(&tree, 2000, 0.8);
}

// ---------------------------------------------------------------------------
// 5. A binary in another mount namespace

/// `sh` script run in a new mount namespace: mounts a tmpfs on $1, copies the
/// fixture $2 there as `app`, and runs it for $3 seconds with result file $4.
const IN_NAMESPACE: &str =
    r#"mount -t tmpfs none "$1" && cp "$2" "$1/app" && exec "$1/app" "$3" "$4""#;

/// The command line `unshare -m --propagation private sh -c IN_NAMESPACE ...`.
fn unshare_argv(mnt: &Path, seconds: &str, result: &Path) -> Vec<OsString> {
    let mut argv: Vec<OsString> = ["unshare", "-m", "--propagation", "private", "sh", "-c"]
        .iter()
        .map(OsString::from)
        .collect();
    argv.push(IN_NAMESPACE.into());
    argv.push("sh".into());
    argv.push(mnt.into());
    argv.push(fixture("stacks_ns_app").into());
    argv.push(seconds.into());
    argv.push(result.into());
    argv
}

/// Asserts that the `app` samples are symbolized: ns_leaf under the named
/// chain up to main, no `app+0x...` address frames.
fn assert_app_symbolized(folded: &Folded, min_samples: u64) {
    let app = folded.with_comm("app");
    let total = app.total();
    assert!(
        total >= min_samples,
        "only {total} samples of `app` (want >= {min_samples}); comms: {:?}\n{}",
        folded.comms().into_iter().take(10).collect::<Vec<_>>(),
        folded.summary(20)
    );
    let unnamed: BTreeMap<String, u64> = app
        .stacks
        .iter()
        .flat_map(|s| s.frames.iter().map(move |f| (f, s.count)))
        .filter(|(f, _)| f.starts_with("app+") || f.contains("/app+"))
        .fold(BTreeMap::new(), |mut m, (f, n)| {
            *m.entry(f.clone()).or_default() += n;
            m
        });
    assert!(
        unnamed.is_empty(),
        "frames of the namespaced binary are not symbolized: {unnamed:?}\n{}",
        app.summary(20)
    );
    let in_leaf = app.samples_containing("ns_leaf");
    assert!(
        in_leaf * 10 >= total * 8,
        "only {in_leaf} of {total} `app` samples are in ns_leaf\n{}",
        app.summary(20)
    );
    let chain = app.samples_where(|s| {
        in_order_names(s, &["main", "ns_outer", "ns_middle", "ns_inner", "ns_leaf"])
    });
    assert_share(
        chain,
        in_leaf,
        UNWOUND_SHARE,
        "ns_leaf samples with main;ns_outer;ns_middle;ns_inner above",
        &app,
    );
}

/// A directory to mount on, inside a fresh temporary directory.
fn mount_point(tmp: &Path) -> PathBuf {
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).expect("create the mount point");
    mnt
}

#[test]
fn binary_in_private_mount_namespace_is_symbolized() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mnt = mount_point(tmp.path());
    let argv = unshare_argv(&mnt, "3", &result);
    let argv: Vec<&OsStr> = argv.iter().map(OsString::as_os_str).collect();
    profile_command(199, &["--profiles", "cpu"], &argv, &out);
    FixtureResult::read(&result);
    assert!(
        !mnt.join("app").exists(),
        "the tmpfs leaked into the test's mount namespace: {} exists",
        mnt.join("app").display()
    );
    assert_app_symbolized(&Folded::load(&out), 250);
}

#[test]
fn binary_in_private_mount_namespace_is_symbolized_after_it_exited() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mnt = mount_point(tmp.path());
    // The app runs 1.5 s and exits, taking its mount namespace (and the only
    // path to its file) with it; the shell keeps the profile going 2.5 s more.
    let inner = unshare_argv(&mnt, "1.5", &result);
    let script = r#""$@"; sleep 2.5"#;
    let mut argv: Vec<&OsStr> = vec!["sh".as_ref(), "-c".as_ref(), script.as_ref(), "sh".as_ref()];
    argv.extend(inner.iter().map(OsString::as_os_str));
    let run = profile_command(199, &["--profiles", "cpu"], &argv, &out);
    let measured = FixtureResult::read(&result);
    assert!(
        run.elapsed.as_secs_f64() >= 3.5,
        "the profile ended {:.2?} after the start: it did not outlive the app by seconds",
        run.elapsed
    );
    let pid = measured.get("pid");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the app (pid {pid}) is still running"
    );
    assert_app_symbolized(&Folded::load(&out), 80);
}

// ---------------------------------------------------------------------------
// 6. Debian's python3, compared with perf

/// Debian's python3 (built without frame pointers), not a pyenv shim on PATH.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// A pure-Python busy loop of about 3 s.
const PY_BUSY: &str = "\
import time
def stk_spin(until):
    x = 0
    while time.monotonic() < until:
        for i in range(1000):
            x += i * i
    return x
stk_spin(time.monotonic() + 3)
";

/// Whether a frame is python3's entry: `main` tail-calls `Py_BytesMain`, so an
/// optimized build shows `Py_BytesMain` (exported) where `main` would be, and
/// `main` itself only with debug symbols.
fn python_main(frame: &str) -> bool {
    frame == "main" || frame == "Py_BytesMain"
}

/// (samples of comm python3, of which reach main) from `perf script -F
/// comm,ip,sym` text: one block per sample, a header line then one indented
/// line per frame.
fn perf_script_reach_main(text: &str) -> (u64, u64) {
    let (mut total, mut reached) = (0, 0);
    for block in text.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else { continue };
        if header.split_whitespace().next() != Some("python3") {
            continue;
        }
        total += 1;
        let reaches = lines.any(|l| {
            let mut parts = l.trim().splitn(2, char::is_whitespace);
            let _ip = parts.next();
            let sym = parts.next().unwrap_or("").trim();
            python_main(sym.strip_suffix(" (inlined)").unwrap_or(sym))
        });
        if reaches {
            reached += 1;
        }
    }
    (total, reached)
}

/// perf's share (%) of python3 samples reaching main, or why it could not be
/// measured.
fn perf_python_share(dir: &Path) -> Result<(f64, u64), String> {
    if !Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("perf is not installed (or does not match this kernel)".into());
    }
    let data = dir.join("perf.data");
    let mut record = Command::new("perf");
    record
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf",
            "-o",
        ])
        .arg(&data)
        .args(["--", DEBIAN_PYTHON, "-c", PY_BUSY]);
    let rec = run_command(record);
    if !rec.status.success() {
        return Err(format!("perf record failed:\n{}", rec.transcript()));
    }
    let mut script = Command::new("perf");
    script
        .args(["script", "-F", "comm,ip,sym", "-i"])
        .arg(&data);
    let scr = run_command(script);
    if !scr.status.success() {
        return Err(format!("perf script failed:\n{}", scr.transcript()));
    }
    let (total, reached) = perf_script_reach_main(&scr.stdout);
    if total < 100 {
        return Err(format!("perf recorded only {total} python3 samples"));
    }
    Ok((100.0 * reached as f64 / total as f64, total))
}

#[test]
fn debian_python3_stacks_reach_main_at_least_as_often_as_perf() {
    if !prerequisites() {
        return;
    }
    assert!(
        Path::new(DEBIAN_PYTHON).is_file(),
        "{DEBIAN_PYTHON} is missing: install Debian's python3 (`cargo xtask setup --for-tests`)"
    );
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    profile_command(
        499,
        &["--profiles", "cpu"],
        &[DEBIAN_PYTHON.as_ref(), "-c".as_ref(), PY_BUSY.as_ref()],
        &out,
    );
    let folded = Folded::load(&out).with_comm("python3");
    let total = folded.total();
    assert!(
        total >= 300,
        "only {total} samples of python3 for a 3 s busy loop at 499 Hz\n{}",
        folded.summary(20)
    );
    let reached = folded.samples_where(|s| s.frames.iter().any(|f| python_main(plain(f))));
    assert_share(
        reached,
        total,
        UNWOUND_SHARE,
        "python3 samples reaching main (Py_BytesMain)",
        &folded,
    );
    let ours = 100.0 * reached as f64 / total as f64;

    match perf_python_share(tmp.path()) {
        Ok((perf, perf_samples)) => {
            println!(
                "python3 samples reaching main: profiler {ours:.1}% of {total}, perf \
                 --call-graph dwarf {perf:.1}% of {perf_samples}"
            );
            assert!(
                ours >= perf - 2.0,
                "the profiler's stacks reach main in {ours:.1}% of python3 samples, perf's \
                 --call-graph dwarf in {perf:.1}% (more than 2 points better)\n{}",
                folded.summary(20)
            );
        }
        Err(why) => println!("skipping the comparison with perf: {why}"),
    }
}

// ---------------------------------------------------------------------------
// 7. --call-graph fp and the flag's values

#[test]
fn call_graph_fp_still_profiles_frame_pointer_fixture() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("cpu_split");
    profile_command(
        499,
        &["--call-graph", "fp"],
        &[exe.as_os_str(), "4".as_ref(), result.as_os_str()],
        &out,
    );
    let measured = FixtureResult::read(&result);
    let folded = Folded::load(&out);
    let alpha = folded.samples_containing("burn_alpha");
    let beta = folded.samples_containing("burn_beta");
    // As in cpu.rs's command-mode test.
    assert_split(
        "burn_alpha vs burn_beta with --call-graph fp",
        alpha,
        beta,
        measured.u64("alpha_ns"),
        measured.u64("beta_ns"),
        200,
        &folded,
    );
    let cpu_s = (measured.u64("alpha_ns") + measured.u64("beta_ns")) as f64 / 1e9;
    let ratio = (alpha + beta) as f64 / (499.0 * cpu_s);
    assert!(
        (0.5..=1.3).contains(&ratio),
        "{} alpha+beta samples for {cpu_s:.2} CPU-seconds at -F 499\n{}",
        alpha + beta,
        folded.summary(15)
    );
    // The fixture keeps frame pointers, so the frame-pointer walk reaches main.
    let rooted = folded.samples_where(|s| {
        in_order(s, &[&named("main"), &named("burn_alpha")])
            || in_order(s, &[&named("main"), &named("burn_beta")])
    });
    assert_share(
        rooted,
        alpha + beta,
        UNWOUND_SHARE,
        "burn_alpha/burn_beta samples with main above them (--call-graph fp)",
        &folded,
    );
}

#[test]
fn call_graph_dwarf_with_size_is_accepted_and_named_in_summary() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("cpu_split");
    let run = profile_command(
        199,
        &["--profiles", "cpu", "--call-graph", "dwarf,4096"],
        &[exe.as_os_str(), "2".as_ref(), result.as_os_str()],
        &out,
    );
    FixtureResult::read(&result);
    assert!(
        run.stdout.lines().any(|l| {
            let l = l.to_lowercase();
            l.contains("dwarf") && l.contains("4096")
        }),
        "no summary line names the call graph mode (`call graph: dwarf, 4096 bytes`)\n{}",
        run.transcript()
    );
    let folded = Folded::load(&out);
    assert!(
        folded.samples_containing("burn_alpha") > 0,
        "burn_alpha missing with --call-graph dwarf,4096\n{}",
        folded.summary(15)
    );
}

#[test]
fn bad_call_graph_values_are_clear_errors() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    for value in ["bogus", "dwarf,0", "dwarf,abc"] {
        let out = tmp.path().join(format!("out-{}", value.replace(',', "_")));
        let mut cmd = profiler_command(&["--call-graph", value, "--duration", "1s", "-o"]);
        cmd.arg(&out);
        let run = run_command(cmd);
        // A bad flag is a usage error, reported by clap in its usual words before
        // anything is loaded: one `error:` line naming the flag, exit status 2.
        assert_eq!(
            run.status.code(),
            Some(2),
            "--call-graph {value}: {}",
            run.stderr
        );
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "--call-graph {value}: {}", run.stderr);
        assert!(errors[0].contains("--call-graph"), "{}", errors[0]);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(
            !out.join("cpu.folded").exists(),
            "--call-graph {value} was rejected but still wrote a profile"
        );
    }
}

/// The helpers' own checks (no profiler run).
mod helpers {
    use super::*;

    #[test]
    fn plain_drops_rust_hashes_and_inlined_notes() {
        assert_eq!(
            plain("stacks_rust::stk_run_work::h8b7e91ba4b30cd6c"),
            "stacks_rust::stk_run_work"
        );
        assert_eq!(plain("main (inlined)"), "main");
        assert_eq!(plain("a::hello"), "a::hello");
    }

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

    #[test]
    fn perf_script_blocks() {
        let text = "python3 \n\t  1 foo\n\t  2 Py_BytesMain\n\npython3 \n\t  3 bar\n\n\
                    other \n\t 4 main\n";
        assert_eq!(perf_script_reach_main(text), (2, 1));
    }
}
