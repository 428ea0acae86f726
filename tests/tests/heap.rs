//! Heap-profile tests: the fixtures count their own allocations, so the profile's
//! `alloc_objects` and `alloc_space` per function must equal what they counted (native
//! code: every call is traced) or what Go's own allocs profile of the same run says (Go:
//! the runtime samples, here every allocation with `MemProfileRate = 1`); the blocks a
//! fixture keeps must be in `inuse_space`, and the ones it freed not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{
    FixtureResult, Run, fixture, go_binary, go_toolchains, pprof, prerequisites, run_profiler,
    temp_dir, workspace_dir,
};

/// Allocations the native fixtures make in their churn loop: enough that a miscount shows,
/// few enough that every call trapping (a few microseconds each) stays quick.
const N: u64 = 60_000;

// ---------------------------------------------------------------------------
// Reading a heap profile back, with `go tool pprof`

/// One sample of `go tool pprof -traces`: its value and its functions, leaf first.
#[derive(Debug)]
struct Trace {
    value: u64,
    functions: Vec<String>,
}

/// The samples of `profile` for sample type `index` (values in the type's base unit).
fn traces(profile: &Path, index: &str) -> Vec<Trace> {
    let run = pprof(&[
        &format!("-sample_index={index}"),
        "-unit=B",
        "-traces",
        &profile.to_string_lossy(),
    ]);
    assert!(
        run.status.success(),
        "go tool pprof cannot read {index} of {}\n{}",
        profile.display(),
        run.transcript()
    );
    let mut out = Vec::new();
    for block in run.stdout.split("-----------+") {
        let mut trace: Option<Trace> = None;
        for line in block.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('-') {
                continue;
            }
            match &mut trace {
                None => {
                    // Labels ("pid:  123") come before the value line.
                    let Some((value, function)) = line.split_once(char::is_whitespace) else {
                        continue;
                    };
                    if value.ends_with(':') {
                        continue;
                    }
                    let Ok(value) = value.trim_end_matches('B').parse::<f64>() else {
                        continue;
                    };
                    trace = Some(Trace {
                        value: value as u64,
                        functions: vec![function.trim().to_owned()],
                    });
                }
                Some(trace) => trace.functions.push(line.to_owned()),
            }
        }
        out.extend(trace);
    }
    out
}

/// Per leaf function (the sample's first, `(inline)` mark dropped), the total of its
/// samples: pprof's flat.
fn flat_by_leaf(traces: &[Trace]) -> BTreeMap<&str, u64> {
    let mut flat = BTreeMap::new();
    for trace in traces {
        let leaf = trace.functions[0].trim_end_matches(" (inline)");
        *flat.entry(leaf).or_default() += trace.value;
    }
    flat
}

/// Per sample type, the total of the samples whose stack has a function containing `name`.
fn by_function(traces: &[Trace], name: &str) -> u64 {
    traces
        .iter()
        .filter(|t| t.functions.iter().any(|f| f.contains(name)))
        .map(|t| t.value)
        .sum()
}

fn assert_near(what: &str, got: u64, want: u64, tolerance: f64, context: &str) {
    let off = (got as f64 - want as f64).abs();
    assert!(
        off <= want as f64 * tolerance,
        "{what}: the profile says {got}, the fixture {want} (more than {:.0}% apart)\n{context}",
        tolerance * 100.0
    );
}

/// Runs `profiler --profiles heap -- COMMAND` and returns its run and output directory.
fn profile_command(tmp: &Path, command: &[&str]) -> (Run, PathBuf) {
    profile_command_via(tmp, "preload", command)
}

/// [`profile_command`] with `--heap-via VIA` (`preload`, the default, or `uprobes`).
fn profile_command_via(tmp: &Path, via: &str, command: &[&str]) -> (Run, PathBuf) {
    let out = tmp.join("out");
    let mut args = vec!["--profiles", "heap", "--heap-via", via, "--"];
    args.extend_from_slice(command);
    let run = run_profiler(&args, &out);
    run.assert_success();
    (run, out)
}

// ---------------------------------------------------------------------------
// Native code

#[test]
fn native_allocations_are_counted_exactly_by_function() {
    if !prerequisites() {
        return;
    }
    let run = native_counts("uprobes");
    assert!(
        run.stdout.contains("uprobe traps on every"),
        "the summary must say what the uprobes cost\n{}",
        run.transcript()
    );
}

/// The same counts through the `LD_PRELOAD` interposer (the default for a command): no
/// trap per call, and its own frames (the marker its stacks are taken in) not in them.
#[test]
fn native_allocations_through_the_interposer_are_counted_exactly() {
    if !prerequisites() {
        return;
    }
    let run = native_counts("preload");
    let context = run.transcript();
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("interposed: an LD_PRELOAD library"))
        .unwrap_or_else(|| panic!("the summary must say the interposer counted\n{context}"));
    assert!(line.contains("without trapping"), "{line}");
    assert!(
        run.stdout
            .contains("allocations: 0 native counted by uprobes"),
        "the uprobes on the C library must be spared when the interposer counts\n{context}"
    );
}

/// Profiles `heap_native` with `--heap-via VIA` and checks every count against the
/// fixture's own; returns the run. The fixture pauses a second before its counted calls,
/// so the profiler has looked at the running process (every 250 ms) and probed what it
/// maps by then: a library probed twice (before the exec and again after it, as once on
/// overlayfs) is then counted twice instead of racing the fixture's end.
fn native_counts(via: &str) -> Run {
    let tmp = temp_dir();
    let result = tmp.path().join("result.txt");
    let exe = fixture("heap_native");
    let (run, out) = profile_command_via(
        tmp.path(),
        via,
        &[
            &exe.to_string_lossy(),
            &N.to_string(),
            &result.to_string_lossy(),
            "1000",
        ],
    );
    let m = FixtureResult::read(&result);
    let profile = out.join("heap.pb.gz");
    let context = run.transcript();
    assert_allocs_and_kept_blocks(&profile, &m, &context);
    let space = traces(&profile, "alloc_space");
    let inuse = traces(&profile, "inuse_space");
    let inuse_objects = traces(&profile, "inuse_objects");
    let churn_bytes = m.u64("churn_small_bytes");
    let got = by_function(&space, "churn_small");
    assert_near(
        "alloc_space of churn_small",
        got,
        churn_bytes,
        0.01,
        &context,
    );
    let kept = m.u64("keep_blocks_bytes");
    let got = by_function(&inuse_objects, "keep_blocks");
    let kept_objects = m.u64("keep_blocks_allocs");
    assert_near(
        "inuse_objects of keep_blocks",
        got,
        kept_objects,
        0.02,
        &context,
    );
    // Everything churn_small and grow_buffer allocated was freed again.
    for function in ["churn_small", "grow_buffer"] {
        let left = by_function(&inuse, function);
        assert!(
            left <= kept / 1000,
            "{function} freed everything, yet {left} bytes are in use\n{context}"
        );
    }
    // The other views of the same profile.
    let folded = std::fs::read_to_string(out.join("heap.folded")).expect("heap.folded");
    assert!(folded.contains("keep_blocks"), "{folded}");
    let svg = std::fs::read_to_string(out.join("heap.svg")).expect("heap.svg");
    assert!(svg.contains("<svg") && svg.contains("keep_blocks"));
    let page = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(page.contains("heap"), "report.html has no heap profile");
    assert!(
        !folded.contains("profiler_heap_preload_stack"),
        "the interposer's marker is not the program's frame\n{folded}"
    );
    run
}

#[test]
fn go_tool_pprof_reads_all_four_sample_types() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let result = tmp.path().join("result.txt");
    let exe = fixture("heap_native");
    let (_, out) = profile_command(
        tmp.path(),
        &[&exe.to_string_lossy(), "2000", &result.to_string_lossy()],
    );
    let profile = out.join("heap.pb.gz");
    for index in [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ] {
        let run = pprof(&[
            &format!("-sample_index={index}"),
            "-top",
            &profile.to_string_lossy(),
        ]);
        assert!(run.status.success(), "{index}\n{}", run.transcript());
        assert!(
            run.stdout.contains(&format!("Type: {index}")),
            "{index}\n{}",
            run.transcript()
        );
    }
    // Without -sample_index, pprof shows the default: inuse_space, as for Go.
    let run = pprof(&["-top", &profile.to_string_lossy()]);
    assert!(
        run.stdout.contains("Type: inuse_space"),
        "{}",
        run.transcript()
    );
}

#[test]
fn rust_with_the_system_allocator_is_counted_by_function() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let result = tmp.path().join("result.txt");
    let exe = fixture("heap_rust");
    let (run, out) = profile_command(
        tmp.path(),
        &[
            &exe.to_string_lossy(),
            &N.to_string(),
            &result.to_string_lossy(),
            "1000",
        ],
    );
    let m = FixtureResult::read(&result);
    let profile = out.join("heap.pb.gz");
    let objects = traces(&profile, "alloc_objects");
    let space = traces(&profile, "alloc_space");
    let inuse = traces(&profile, "inuse_space");
    let context = run.transcript();
    for function in ["churn_vecs", "keep_boxes"] {
        let want = m.u64(&format!("{function}_allocs"));
        let got = by_function(&objects, function);
        assert_near(
            &format!("alloc_objects of {function}"),
            got,
            want,
            0.01,
            &context,
        );
    }
    let got = by_function(&space, "churn_vecs");
    assert_near(
        "alloc_space of churn_vecs",
        got,
        m.u64("churn_vecs_bytes"),
        0.01,
        &context,
    );
    let kept = m.u64("keep_boxes_bytes");
    assert_near(
        "inuse_space of keep_boxes",
        by_function(&inuse, "keep_boxes"),
        kept,
        0.02,
        &context,
    );
    let left = by_function(&inuse, "churn_vecs");
    assert!(
        left <= kept / 1000,
        "churn_vecs freed everything, yet {left} bytes are in use"
    );
}

/// Allocators from Debian that the heap tests preload into a program (which
/// `cargo xtask setup --for-tests` installs): jemalloc, mimalloc and tcmalloc, each
/// exporting the C names.
const PRELOADED: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
];

/// A program given another allocator with LD_PRELOAD: under uprobes its entry points are
/// found by symbol in that library and probed; through the interposer, which comes first
/// in the search order, its calls are counted and passed on to that allocator.
#[test]
fn preloaded_allocators_are_counted_by_function() {
    if !prerequisites() {
        return;
    }
    for library in PRELOADED {
        assert!(
            Path::new(library).is_file(),
            "{library} is missing: run `cargo xtask setup --for-tests`"
        );
        for via in ["uprobes", "preload"] {
            preloaded_allocator_counts(library, via);
        }
    }
}

fn preloaded_allocator_counts(library: &str, via: &str) {
    let tmp = temp_dir();
    let result = tmp.path().join("result.txt");
    let exe = fixture("heap_native");
    let out = tmp.path().join("out");
    let mut cmd = integration_tests::profiler_command(&[
        "-o".as_ref(),
        out.as_os_str(),
        "--profiles".as_ref(),
        "heap".as_ref(),
        "--heap-via".as_ref(),
        via.as_ref(),
        "--".as_ref(),
        exe.as_os_str(),
        N.to_string().as_ref(),
        result.as_os_str(),
    ]);
    // The command inherits LD_PRELOAD, so its allocations go to that library's malloc.
    cmd.env("LD_PRELOAD", library);
    let run = integration_tests::run_command(cmd);
    run.assert_success();
    let context = format!("{library} via {via}\n{}", run.transcript());
    let profile = out.join("heap.pb.gz");
    let name = Path::new(library)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if via == "uprobes" {
        // The profile's comments name the files probed.
        let top = pprof(&["-top", &profile.to_string_lossy()]);
        assert!(
            top.stdout.contains(&name),
            "{name} was not probed\n{}\n{context}",
            top.transcript()
        );
    }
    let m = FixtureResult::read(&result);
    assert_allocs_and_kept_blocks(&profile, &m, &context);
}

/// `heap_native`'s profile against its own counts: `alloc_objects` of each function
/// within 1%, and the kept blocks' `inuse_space` within 2%.
fn assert_allocs_and_kept_blocks(profile: &Path, m: &FixtureResult, context: &str) {
    let objects = traces(profile, "alloc_objects");
    for function in ["churn_small", "keep_blocks", "grow_buffer"] {
        let want = m.u64(&format!("{function}_allocs"));
        let got = by_function(&objects, function);
        assert_near(
            &format!("alloc_objects of {function}"),
            got,
            want,
            0.01,
            context,
        );
    }
    let inuse = traces(profile, "inuse_space");
    assert_near(
        "inuse_space of keep_blocks",
        by_function(&inuse, "keep_blocks"),
        m.u64("keep_blocks_bytes"),
        0.02,
        context,
    );
}

// ---------------------------------------------------------------------------
// Go

/// Builds the Go fixture `name` (a directory under tests/fixtures) with `go`.
fn go_build(go: &Path, name: &str, version: &str, dir: &Path) -> PathBuf {
    let exe = dir.join(format!("{name}-{version}"));
    let source = workspace_dir()
        .join("tests/fixtures")
        .join(name)
        .join("main.go");
    let cache = workspace_dir().join("target/go-cache").join(version);
    let status = Command::new(go)
        .args(["build", "-o"])
        .arg(&exe)
        .arg(&source)
        .env("GOCACHE", &cache)
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "off")
        .env("HOME", dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", go.display()));
    assert!(
        status.success(),
        "go {version} cannot build {}",
        source.display()
    );
    exe
}

/// The `N events lost (ring buffer full)` of the summary's `go:` line.
fn go_events_lost(stdout: &str) -> u64 {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with("go: pid"))
        .and_then(|l| l.split(" events lost (ring buffer full)").next())
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no go: line with the events lost\n{stdout}"))
}

/// With `MemProfileRate = 1` both profiles see every allocation, from the same runtime
/// events, with the same stacks: they agree exactly (the issue asks for 5%) when no event
/// was lost, and within the events the summary says were lost when some were. A probe that
/// fires twice for one call (it once sat on the branch of Go's stack check, which
/// `morestack` and preemption requests return to) or a stack not cut where Go cuts it
/// (at `runtime.systemstack`) shows as a difference of a few allocations.
#[test]
fn go_allocations_match_go_s_own_allocs_profile() {
    if !prerequisites() {
        return;
    }
    for toolchain in go_toolchains() {
        let tmp = temp_dir();
        let exe = go_build(&toolchain.go, "heap_go", &toolchain.version, tmp.path());
        let allocs = tmp.path().join("allocs.pb.gz");
        let result = tmp.path().join("result.txt");
        let (run, out) = profile_command(
            tmp.path(),
            &[
                &exe.to_string_lossy(),
                &N.to_string(),
                &allocs.to_string_lossy(),
                &result.to_string_lossy(),
            ],
        );
        let context = format!("Go {}\n{}", toolchain.version, run.transcript());
        let m = FixtureResult::read(&result);
        assert_eq!(m.u64("small_pieces"), N);
        let ours = out.join("heap.pb.gz");
        // Every allocation sends its stack through the sample ring buffer (60,000 in a
        // fraction of a second), which can fill on a busy machine: the events it drops
        // are counted on the summary's `go:` line, and then the counts may fall short of
        // Go's by at most that many, never exceed them.
        let lost = go_events_lost(&run.stdout);
        for index in ["alloc_objects", "alloc_space"] {
            let (mine, go) = (traces(&ours, index), traces(&allocs, index));
            for function in ["main.smallPieces", "main.keptBlocks"] {
                let want = by_function(&go, function);
                assert!(want > 0, "Go's own profile has no {function}\n{context}");
                let got = by_function(&mine, function);
                if lost == 0 {
                    assert_eq!(got, want, "{index} of {function}\n{context}");
                } else if index == "alloc_objects" {
                    assert!(
                        got <= want && got + lost >= want,
                        "{index} of {function}: {got}, Go's {want}, {lost} events lost\n{context}"
                    );
                } else {
                    assert!(
                        got <= want,
                        "{index} of {function}: {got} over Go's {want}\n{context}"
                    );
                }
            }
        }
        go_leaves_match(&ours, &allocs, lost, &context);
    }
}

/// Largest allowed relative gap between the profile's flat `alloc_space` of a function and
/// Go's own.
const FLAT_TOLERANCE: f64 = 0.15;

/// Stacks start where Go's start theirs: the flat `alloc_space` of each function Go's own
/// profile puts on top (5% of its total or more) is within [`FLAT_TOLERANCE`] of Go's, and
/// no stack that reaches the program's code has the runtime's `mProf_Malloc` as its leaf.
/// (The profile also has what the fixture allocated writing Go's profile, after Go took it:
/// only Go's top functions are compared.) When the summary counted `lost` events, a
/// function may also fall short by that many of its objects (at its average size in Go's
/// profile): in CI the ring buffer dropped the last of `keptBlocks`' allocations, said so,
/// and this check, which did not allow for it, failed.
fn go_leaves_match(ours: &Path, allocs: &Path, lost: u64, context: &str) {
    let (mine, go) = (traces(ours, "alloc_space"), traces(allocs, "alloc_space"));
    let (mine_flat, go_flat) = (flat_by_leaf(&mine), flat_by_leaf(&go));
    let go_object_traces = traces(allocs, "alloc_objects");
    let go_objects = flat_by_leaf(&go_object_traces);
    let go_total: u64 = go_flat.values().sum();
    let top: Vec<(&str, u64)> = go_flat
        .iter()
        .filter(|&(_, &flat)| flat * 20 >= go_total)
        .map(|(&f, &flat)| (f, flat))
        .collect();
    assert!(
        !top.is_empty(),
        "Go's own profile has no top function\n{context}"
    );
    let version = context.lines().next().unwrap_or_default();
    for (function, want) in top {
        let got = mine_flat.get(function).copied().unwrap_or(0);
        let gap = (got as f64 - want as f64) / want as f64;
        let objects = go_objects.get(function).copied().unwrap_or(0).max(1);
        let lost_share = (lost as f64 * want as f64 / objects as f64) / want as f64;
        eprintln!(
            "{version}: flat alloc_space of {function}: {got} B, Go's own {want} B ({lost} \
             events lost)"
        );
        assert!(
            gap <= FLAT_TOLERANCE && -gap <= FLAT_TOLERANCE + lost_share,
            "flat alloc_space of {function}: {got} B, Go's own {want} B ({:+.1}%, {lost} \
             events lost); flat by function: {mine_flat:?}, Go's: {go_flat:?}\n{context}",
            100.0 * gap
        );
    }
    let runtime_leaf = mine.iter().find(|t| {
        t.functions[0] == "runtime.mProf_Malloc"
            && t.functions.iter().any(|f| f.starts_with("main."))
    });
    assert!(
        runtime_leaf.is_none(),
        "a stack of the program's code starts in the runtime: {runtime_leaf:?}\n{context}"
    );
}

#[test]
fn a_go_binary_without_memory_profiling_gets_one_note() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let exe = go_build(&go_binary(), "heap_go_off", "debian", tmp.path());
    let (run, _) = profile_command(tmp.path(), &[&exe.to_string_lossy(), "50000"]);
    let notes: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("Go memory profiling is disabled"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", run.transcript());
    assert!(notes[0].contains("runtime.MemProfile"), "{}", notes[0]);
}

// ---------------------------------------------------------------------------
// What is refused

#[test]
fn the_heap_profile_of_the_whole_host_is_refused_in_one_line() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let run = run_profiler(&["--profiles", "heap", "-d", "1s"], &tmp.path().join("out"));
    assert!(!run.status.success(), "{}", run.transcript());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.transcript());
    assert!(
        lines[0].contains("heap profile needs a target"),
        "{}",
        lines[0]
    );
}
