//! Names of JIT-compiled code: Debian's Node.js runs the `names_js.js` loop with
//! `--perf-basic-prof`, which writes `/tmp/perf-PID.map` as it compiles; the profiler
//! reads it while the process lives, so the samples in the compiled loop are named after
//! the JavaScript function; with `--perf-prof` it writes a jitdump file instead, which is
//! read too. Without either the loop has no name, and the summary says which flag names
//! it.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use integration_tests::*;

/// Runs the profiler on `names_js.js` for 2 seconds, with `node_flags` given to Node;
/// returns the run, the folded stacks of node and the script's own figures.
fn profile_node(node_flags: &[&str]) -> (Run, Folded, FixtureResult) {
    let node = ["node", "nodejs"]
        .into_iter()
        .find(|n| Command::new(n).arg("--version").output().is_ok())
        .expect("Node.js (cargo xtask setup --for-tests installs Debian's nodejs)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/names_js.js");
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mut args: Vec<OsString> = vec![
        "-o".into(),
        out.clone().into(),
        "-F".into(),
        "499".into(),
        "--profiles".into(),
        "cpu".into(),
        "--format".into(),
        "folded".into(),
        "--".into(),
        node.into(),
    ];
    args.extend(node_flags.iter().map(OsString::from));
    args.extend([script.into(), "2".into(), result.clone().into()]);
    let mut cmd = profiler_command(&args);
    // Node leaves its V8 log (isolate-*.log) in its working directory.
    cmd.current_dir(tmp.path());
    let run = run_command(cmd);
    run.assert_success();
    let measured = FixtureResult::read(&result);
    // Node leaves its perf map in /tmp (its jitdump goes with the test's directory).
    let _ = std::fs::remove_file(format!("/tmp/perf-{}.map", measured.u64("pid")));
    let folded = Folded::load(&out).with_comm("node");
    (run, folded, measured)
}

/// Samples whose leaf is the script's `spinJs`, named with its file.
fn spinning(folded: &Folded) -> u64 {
    // Each perf map line names the function with its kind and place: `JS:*spinJs
    // /path/names_js.js:8:16` for the optimized code.
    folded.samples_where(|s| {
        s.frames
            .last()
            .is_some_and(|leaf| leaf.contains("spinJs") && leaf.contains("names_js.js"))
    })
}

#[test]
fn a_js_function_is_named_from_the_perf_map() {
    if !prerequisites() {
        return;
    }
    let (run, folded, measured) = profile_node(&["--perf-basic-prof"]);
    let total = folded.total();
    let spinning = spinning(&folded);
    // The script spins for all but Node's start (its measured time starts after it).
    assert!(
        total >= 100 && spinning * 10 >= total * 5,
        "{spinning} of {total} samples of node have spinJs as the leaf (it spun {} ms, {} rounds)\n{}\n{}",
        measured.u64("spin_ns") / 1_000_000,
        measured.u64("rounds"),
        folded.summary(10),
        run.transcript()
    );
    assert!(
        !run.stdout.contains("JIT code without names:"),
        "named code gets no hint\n{}",
        run.transcript()
    );
}

#[test]
fn a_js_function_is_named_from_the_jitdump() {
    if !prerequisites() {
        return;
    }
    // Node writes jit-PID.dump into its working directory (the test's) and maps it; its
    // last records only as it exits, which the profiler reads through the file it held.
    let (run, folded, measured) = profile_node(&["--perf-prof"]);
    let total = folded.total();
    let spinning = spinning(&folded);
    assert!(
        total >= 100 && spinning * 10 >= total * 5,
        "{spinning} of {total} samples of node have spinJs as the leaf (it spun {} ms, {} rounds)\n{}\n{}",
        measured.u64("spin_ns") / 1_000_000,
        measured.u64("rounds"),
        folded.summary(10),
        run.transcript()
    );
}

#[test]
fn without_perf_basic_prof_the_summary_names_the_flag() {
    if !prerequisites() {
        return;
    }
    let (run, folded, measured) = profile_node(&[]);
    // The hint is true: the script spun, and the profile does not name its loop.
    assert!(
        measured.u64("rounds") > 0 && spinning(&folded) == 0 && folded.total() >= 100,
        "{} samples of node name spinJs without --perf-basic-prof\n{}",
        spinning(&folded),
        run.transcript()
    );
    let hint = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("JIT code without names:"))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        hint.contains(&format!("node (pid {}, Node.js)", measured.u64("pid")))
            && hint.contains("--perf-basic-prof")
            && hint.contains("--perf-prof (jitdump"),
        "the summary names --perf-basic-prof for node\n{}",
        run.transcript()
    );
}
