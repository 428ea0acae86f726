//! Python frames named in the native stack: `python_split.py` times its own functions
//! (a JSON round trip and SHA-256 in C extensions, a 23-deep recursion, a pure Python
//! loop) with the thread's CPU clock; the profiler, given no flag in the target, names
//! each as `function (python_split.py:LINE)` in place of the interpreter's evaluation
//! loop, and each function's share of the samples under `run` matches the program's own
//! within 3 points. Run on Debian's python3, on each pyenv CPython 3.8 to 3.13 and on
//! Debian unstable's 3.14 (stripped, its evaluation loop mostly in a `.cold` part): a
//! missing one fails its test, so a run never passes for having covered fewer.

use std::path::{Path, PathBuf};

use integration_tests::*;

/// The functions the fixture times, each its own share.
const FUNCTIONS: [&str; 4] = ["json_round", "sha_blob", "fib", "spin"];

test_every_cpython!(check, "frames are");

/// pyenv's newest build of CPython 3.`minor`; fails loudly when there is none.
fn pyenv(minor: u32) -> PathBuf {
    pyenv_python(minor, "frames are")
}

/// A frame the profiler names as Python code of the fixture: `name (python_split.py:N)`.
fn fixture_line(frame: &str, function: &str) -> Option<u64> {
    let rest = frame
        .strip_prefix(function)?
        .strip_prefix(" (python_split.py:")?;
    rest.strip_suffix(')')?.parse().ok()
}

fn is_python(frame: &str) -> bool {
    frame.ends_with(')') && frame.contains(".py:")
}

/// Runs `python FIXTURE 3 RESULT` under the CPU profile at 499 Hz, folded, into the
/// returned directory's `out`; the run and the fixture's own measurements.
fn profile_fixture(python: &Path, fixture: &str) -> (tempfile::TempDir, Run, FixtureResult) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture);
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let run = run_command(profiler_command(&[
        "-o".as_ref(),
        out.as_os_str(),
        "-F".as_ref(),
        "499".as_ref(),
        "--profiles".as_ref(),
        "cpu".as_ref(),
        "--format".as_ref(),
        "folded".as_ref(),
        "--".as_ref(),
        python.as_os_str(),
        script.as_os_str(),
        "3".as_ref(),
        result.as_os_str(),
    ]));
    run.assert_success();
    let measured = FixtureResult::read(&result);
    (tmp, run, measured)
}

fn check(python: &Path, minor: u64) {
    if !prerequisites() {
        return;
    }
    let (tmp, run, measured) = profile_fixture(python, "python_split.py");
    let out = tmp.path().join("out");
    assert_eq!(
        measured.u64("minor"),
        minor,
        "{} is not CPython 3.{minor}",
        python.display()
    );
    let folded = Folded::load(&out);
    let context = || format!("{}\n{}", folded.summary(12), run.transcript());
    let under_run: Vec<&Stack> = folded
        .stacks
        .iter()
        .filter(|s| s.frames.iter().any(|f| fixture_line(f, "run").is_some()))
        .collect();
    let total: u64 = under_run.iter().map(|s| s.count).sum();
    assert!(
        total >= 300,
        "only {total} samples have the fixture's `run (python_split.py:N)` frame\n{}",
        context()
    );
    let program_total = measured.u64("total_ns") as f64;
    for function in FUNCTIONS {
        let first = measured.u64(&format!("{function}_first"));
        let last = measured.u64(&format!("{function}_last"));
        let mut samples = 0;
        for stack in &under_run {
            let lines: Vec<u64> = (stack.frames.iter())
                .filter_map(|f| fixture_line(f, function))
                .collect();
            if lines.is_empty() {
                continue;
            }
            samples += stack.count;
            assert!(
                lines.iter().all(|l| (first..=last).contains(l)),
                "{function} is at lines {lines:?}, outside its lines {first}-{last}: {:?}",
                stack.frames
            );
        }
        let share = 100.0 * samples as f64 / total as f64;
        let own = 100.0 * measured.u64(&format!("{function}_ns")) as f64 / program_total;
        assert!(
            (share - own).abs() <= 3.0,
            "CPython 3.{minor}: {function} has {share:.1}% of the samples under run \
             ({samples} of {total}), the program measured {own:.1}%\n{}",
            context()
        );
        eprintln!("CPython 3.{minor}: {function} {share:.1}% (program {own:.1}%)");
    }
    // Mixed stacks: the interpreter's native frames down to the C library's start of
    // `main` lie below the Python ones: `__libc_start_main_impl` in Debian 12's C library,
    // by its exported name `__libc_start_main` in unstable's (under 3.14), which names no
    // other of its functions there.
    let rooted: u64 = (under_run.iter())
        .filter(|s| {
            s.frames.iter().any(|f| f.starts_with("__libc_start_main")) && s.has("Py_BytesMain")
        })
        .map(|s| s.count)
        .sum();
    assert!(
        rooted * 100 >= total * 95,
        "only {rooted} of {total} samples under run reach main in their native part\n{}",
        context()
    );
    // The recursion is 23 deep: each level is a frame of its own.
    let deepest = (under_run.iter())
        .map(|s| {
            s.frames
                .iter()
                .filter(|f| fixture_line(f, "fib").is_some())
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        deepest >= 15,
        "the deepest stack has {deepest} fib frames; fib recursed 23 deep\n{}",
        context()
    );
    // The C extension's native frames lie above the Python line that called it.
    let (mut in_sha, mut native_leaf) = (0, 0);
    for stack in &under_run {
        let Some(at) = (stack.frames.iter()).position(|f| fixture_line(f, "sha_blob").is_some())
        else {
            continue;
        };
        in_sha += stack.count;
        if stack.frames[at + 1..].iter().any(|f| !is_python(f)) {
            native_leaf += stack.count;
        }
    }
    assert!(
        native_leaf * 10 >= in_sha * 8,
        "{native_leaf} of {in_sha} samples in sha_blob have native frames above it\n{}",
        context()
    );
}

/// Runs `python python_split.py 1` under the CPU profile with `flags`, folded; the run,
/// after checking that its samples kept the interpreter's native frames and no Python
/// frame.
fn run_with_native_frames_only(python: &Path, flags: &[&str]) -> Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/python_split.py");
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mut argv: Vec<&std::ffi::OsStr> = vec!["-o".as_ref(), out.as_os_str()];
    argv.extend(flags.iter().map(std::ffi::OsStr::new));
    argv.extend::<[&std::ffi::OsStr; 9]>([
        "--profiles".as_ref(),
        "cpu".as_ref(),
        "--format".as_ref(),
        "folded".as_ref(),
        "--".as_ref(),
        python.as_os_str(),
        script.as_os_str(),
        "1".as_ref(),
        result.as_os_str(),
    ]);
    let run = run_command(profiler_command(&argv));
    run.assert_success();
    let folded = Folded::load(&out);
    assert!(
        folded.samples_containing("_PyEval_EvalFrameDefault") > 0
            && folded.samples_where(|s| s.frames.iter().any(|f| is_python(f))) == 0,
        "{}",
        folded.summary(10)
    );
    run
}

/// A CPython whose frames are not read (3.7) is named in one summary line, and its
/// samples keep the interpreter's native frames.
#[test]
fn cpython_3_7_is_named_unsupported() {
    if !prerequisites() {
        return;
    }
    let run = run_with_native_frames_only(&pyenv(7), &[]);
    let said: Vec<&str> = (run.stdout.lines())
        .filter(|l| l.contains("CPython 3.7 not supported"))
        .collect();
    assert_eq!(said.len(), 1, "{}", run.transcript());
}

/// With `--no-python-frames` Debian's python3 keeps the interpreter's native frames: no
/// Python frame is walked or spliced.
#[test]
fn no_python_frames_keeps_native_frames() {
    if !prerequisites() {
        return;
    }
    run_with_native_frames_only(Path::new("/usr/bin/python3"), &["--no-python-frames"]);
}

/// Two threads, each in its own function: each sample carries its own thread's frames
/// (found by the kernel's tid), never the other's; before 3.11 the thread's id comes from
/// glibc's thread descriptor, from 3.11 from the thread state.
#[test]
fn threads_debian_python3() {
    check_threads(Path::new("/usr/bin/python3"));
}

#[test]
fn threads_cpython_3_9() {
    check_threads(&pyenv(9));
}

fn check_threads(python: &Path) {
    if !prerequisites() {
        return;
    }
    let (tmp, run, measured) = profile_fixture(python, "python_threads.py");
    let out = tmp.path().join("out");
    let folded = Folded::load(&out);
    let has = |s: &Stack, f: &str| s.frames.iter().any(|x| fixture_function(x, f));
    let mixed = folded.samples_where(|s| has(s, "alpha") && has(s, "beta"));
    assert_eq!(mixed, 0, "{}", folded.summary(10));
    let alpha = folded.samples_where(|s| has(s, "alpha"));
    let beta = folded.samples_where(|s| has(s, "beta"));
    let (own_alpha, own_beta) = (measured.u64("alpha_ns"), measured.u64("beta_ns"));
    let share = 100.0 * alpha as f64 / (alpha + beta).max(1) as f64;
    let own = 100.0 * own_alpha as f64 / (own_alpha + own_beta) as f64;
    assert!(
        alpha + beta >= 300 && (share - own).abs() <= 3.0,
        "alpha {alpha} and beta {beta} samples: alpha {share:.1}%, the threads measured \
         {own:.1}%\n{}\n{}",
        folded.summary(10),
        run.transcript()
    );
}

/// Whether `frame` is the Python function `function` of a fixture (`alpha (f.py:12)`).
fn fixture_function(frame: &str, function: &str) -> bool {
    frame
        .strip_prefix(function)
        .is_some_and(|rest| rest.starts_with(" (python_threads.py:"))
}
