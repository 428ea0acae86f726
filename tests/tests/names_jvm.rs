//! Names of a JVM's JIT-compiled Java methods: OpenJDK 17 runs `names_jvm.java`, whose
//! three methods time themselves with their thread's CPU clock. With `--jit-maps` the
//! profiler asks the JVM for its perf map (as `jcmd PID Compiler.perfmap` does), and each
//! method's share of the samples must be its own measured share, within 5 points. Without
//! the flag the methods have no names, and the summary says what names them. A JVM that
//! cannot be asked (attach disabled; a process mapping libjvm.so that does not catch
//! SIGQUIT) is left alone, in one line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::*;

/// The most a method's share of the samples may differ from its own measured share, in
/// percentage points.
const MAX_SHARE_GAP: f64 = 5.0;

/// The fixture's methods: the name in its perf map, and its key in the result file.
const METHODS: [(&str, &str); 3] = [
    ("NamesJvm.stringHash(", "string_hash_ns"),
    ("NamesJvm.sieve(", "sieve_ns"),
    ("NamesJvm.matMul(", "mat_mul_ns"),
];

/// A JDK tool, which `cargo xtask setup --for-tests` installs.
fn jdk_tool(name: &str) -> &str {
    let found = Command::new(name).arg("-version").output().is_ok();
    assert!(
        found,
        "{name} not found: `cargo xtask setup --for-tests` installs Debian's \
         openjdk-17-jdk-headless"
    );
    name
}

/// Compiles the fixture into `dir`; returns the command line that runs it with
/// `jvm_flags` for `seconds`, writing its result to `result`.
fn jvm_command(dir: &Path, jvm_flags: &[&str], seconds: &str, result: &Path) -> Vec<OsString> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/names_jvm.java");
    let mut javac = Command::new(jdk_tool("javac"));
    javac.arg("-d").arg(dir).arg(source);
    run_command(javac).assert_success();
    let mut command: Vec<OsString> = vec![jdk_tool("java").into()];
    command.extend(jvm_flags.iter().map(OsString::from));
    command.extend([
        "-cp".into(),
        dir.into(),
        "NamesJvm".into(),
        seconds.into(),
        result.into(),
    ]);
    command
}

/// Runs the profiler on the fixture for `seconds`, with `flags` before the command and
/// `jvm_flags` given to the JVM; returns the run, the folded stacks of the JVM and the
/// fixture's own figures.
fn profile_jvm(flags: &[&str], jvm_flags: &[&str], seconds: &str) -> (Run, Folded, FixtureResult) {
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
    ];
    args.extend(flags.iter().map(OsString::from));
    args.push("--".into());
    args.extend(jvm_command(tmp.path(), jvm_flags, seconds, &result));
    let mut cmd = profiler_command(&args);
    // The JVM's working directory, where the attach trigger goes.
    cmd.current_dir(tmp.path());
    let run = run_command(cmd);
    run.assert_success();
    let measured = FixtureResult::read(&result);
    // The map the JVM wrote on request stays in /tmp, as jcmd's does.
    let map = PathBuf::from(format!("/tmp/perf-{}.map", measured.u64("pid")));
    let _ = std::fs::remove_file(map);
    let folded = Folded::load(&out).with_comm("java");
    (run, folded, measured)
}

#[test]
fn java_methods_are_named_with_jit_maps_in_their_own_proportions() {
    if !prerequisites() {
        return;
    }
    let (run, folded, measured) = profile_jvm(&["--jit-maps"], &[], "6");
    let own: Vec<f64> = METHODS
        .iter()
        .map(|(_, key)| measured.u64(key) as f64)
        .collect();
    let sampled: Vec<f64> = METHODS
        .iter()
        .map(|(name, _)| folded.samples_where(|s| s.frames.iter().any(|f| f.contains(name))) as f64)
        .collect();
    let own_total: f64 = own.iter().sum();
    let sampled_total: f64 = sampled.iter().sum();
    let report = METHODS
        .iter()
        .zip(own.iter().zip(&sampled))
        .map(|((name, _), (o, s))| {
            format!(
                "{name}: {:.1}% of the samples ({s}), {:.1}% by its own clock",
                100.0 * s / sampled_total.max(1.0),
                100.0 * o / own_total
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Named at all: most of the JVM's samples are in the three methods once named.
    assert!(
        sampled_total >= 300.0 && sampled_total * 2.0 >= folded.total() as f64,
        "{sampled_total} of {} samples of java named after the methods\n{report}\n{}\n{}",
        folded.total(),
        folded.summary(10),
        run.transcript()
    );
    for ((name, _), (o, s)) in METHODS.iter().zip(own.iter().zip(&sampled)) {
        let gap = (100.0 * s / sampled_total - 100.0 * o / own_total).abs();
        assert!(
            gap <= MAX_SHARE_GAP,
            "{name} is {gap:.1} points off its own share\n{report}\n{}",
            run.transcript()
        );
    }
    assert!(
        run.stdout
            .contains("perf maps written on request by the JVMs of pid"),
        "the summary says the JVM was asked\n{}",
        run.transcript()
    );
    eprintln!("{report}");
}

#[test]
fn without_jit_maps_the_summary_says_what_names_the_java_methods() {
    if !prerequisites() {
        return;
    }
    let (run, folded, measured) = profile_jvm(&[], &[], "3");
    // The hint is true: the methods ran, and the profile does not name them.
    let named = folded.samples_where(|s| s.frames.iter().any(|f| f.contains("NamesJvm.")));
    assert!(
        measured.u64("rounds") > 0 && named == 0,
        "{named} samples name the fixture's methods without --jit-maps\n{}",
        run.transcript()
    );
    let pid = measured.u64("pid");
    let hint = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("JIT code without names:"))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        hint.contains(&format!("java (pid {pid}, a JVM)"))
            && hint.contains("--jit-maps")
            && hint.contains("-XX:+PreserveFramePointer"),
        "the summary names --jit-maps and -XX:+PreserveFramePointer for the JVM (pid \
         {pid})\n{}",
        run.transcript()
    );
}

/// The `jit maps:` lines of the summary that say a JVM gave no map.
fn refusals(run: &Run) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|l| l.contains("jit maps: the JVM of pid") && l.contains("gave no perf map"))
        .collect()
}

#[test]
fn a_jvm_that_refuses_attach_gets_one_line_and_no_wait() {
    if !prerequisites() {
        return;
    }
    let (run, _, measured) = profile_jvm(&["--jit-maps"], &["-XX:+DisableAttachMechanism"], "3");
    let lines = refusals(&run);
    assert!(
        lines.len() == 1
            && lines[0].contains(&format!("pid {}", measured.u64("pid")))
            && lines[0].contains("-XX:+DisableAttachMechanism"),
        "one line says why the JVM gave no map: {lines:?}\n{}",
        run.transcript()
    );
    // The hint no longer advises the flag given, but points at that line.
    assert!(
        run.stdout
            .contains("--jit-maps was given, but the JVM's perf map did not name"),
        "{}",
        run.transcript()
    );
    // Nothing waited for an answer that could not come: the run ends with the command.
    assert!(
        run.elapsed.as_secs_f64() < 3.0 + 10.0,
        "the run took {:?}\n{}",
        run.elapsed,
        run.transcript()
    );
}

#[test]
fn a_process_with_libjvm_that_does_not_catch_sigquit_is_not_signalled() {
    if !prerequisites() {
        return;
    }
    // HotSpot's library beside the java found, as Debian lays the JDK out.
    let java = std::fs::canonicalize(which(jdk_tool("java"))).expect("java resolves");
    let libjvm = java
        .parent()
        .and_then(Path::parent)
        .expect("java in a JDK's bin")
        .join("lib/server/libjvm.so");
    assert!(libjvm.is_file(), "no {}", libjvm.display());
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/libjvm_loader.py");
    let args: Vec<OsString> = vec![
        "-o".into(),
        out.into(),
        "--profiles".into(),
        "cpu".into(),
        "--format".into(),
        "folded".into(),
        "--jit-maps".into(),
        "--".into(),
        "python3".into(),
        script.into(),
        libjvm.into(),
        // Past the profiler's periodic re-read of mappings (every 4 s): nothing runs in
        // libjvm.so after it is loaded, so no sample makes the profiler read them sooner.
        "6".into(),
        result.clone().into(),
    ];
    let run = run_command(profiler_command(&args));
    run.assert_success();
    // The result is written at the end: a SIGQUIT would have ended it with a core dump.
    let measured = FixtureResult::read(&result);
    let lines = refusals(&run);
    assert!(
        lines.len() == 1
            && lines[0].contains(&format!("pid {}", measured.u64("pid")))
            && lines[0].contains("does not catch SIGQUIT"),
        "one line says why the process gave no map: {lines:?}\n{}",
        run.transcript()
    );
}

/// Where `program` is on the PATH.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on the PATH"))
}
