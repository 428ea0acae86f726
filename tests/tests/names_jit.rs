//! Names of JIT-compiled code: Debian's Node.js runs the `names_js.js` loop with
//! `--perf-basic-prof`, which writes `/tmp/perf-PID.map` as it compiles; the profiler
//! reads it while the process lives, so the samples in the compiled loop are named after
//! the JavaScript function.

use std::path::Path;
use std::process::Command;

use integration_tests::*;

#[test]
fn a_js_function_is_named_from_the_perf_map() {
    if !prerequisites() {
        return;
    }
    let node = ["node", "nodejs"]
        .into_iter()
        .find(|n| Command::new(n).arg("--version").output().is_ok())
        .expect("Node.js (cargo xtask setup --for-tests installs Debian's nodejs)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/names_js.js");
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mut cmd = profiler_command(&[
        "-o".as_ref(),
        out.as_os_str(),
        "-F".as_ref(),
        "499".as_ref(),
        "--profiles".as_ref(),
        "cpu".as_ref(),
        "--format".as_ref(),
        "folded".as_ref(),
        "--".as_ref(),
        node.as_ref(),
        "--perf-basic-prof".as_ref(),
        script.as_os_str(),
        "2".as_ref(),
        result.as_os_str(),
    ]);
    // Node leaves its V8 log (isolate-*.log) in its working directory.
    cmd.current_dir(tmp.path());
    let run = run_command(cmd);
    run.assert_success();
    let measured = FixtureResult::read(&result);
    let folded = Folded::load(&out).with_comm("node");
    let total = folded.total();
    // Each perf map line names the function with its kind and place: `JS:*spinJs
    // /path/names_js.js:8:16` for the optimized code.
    let spinning = folded.samples_where(|s| {
        s.frames
            .last()
            .is_some_and(|leaf| leaf.contains("spinJs") && leaf.contains("names_js.js"))
    });
    // The script spins for all but Node's start (its measured time starts after it).
    assert!(
        total >= 100 && spinning * 10 >= total * 5,
        "{spinning} of {total} samples of node have spinJs as the leaf (it spun {} ms, {} rounds)\n{}\n{}",
        measured.u64("spin_ns") / 1_000_000,
        measured.u64("rounds"),
        folded.summary(10),
        run.transcript()
    );
}
