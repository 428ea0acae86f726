//! True stacks on native code (issue 10): user stacks unwound in userspace from
//! a copy of the user stack and the call frame information (`.eh_frame`), the
//! way `perf record --call-graph dwarf` does, instead of the kernel's
//! frame-pointer walk.
//!
//! The fixtures here (`stacks_deep`, `stacks_libc`, `stacks_rust`, see
//! `tests/build.rs`) are built WITHOUT frame pointers, as distributions build
//! software, so a frame-pointer walk loses their callers; Debian's own
//! `python3` is the real-world case. Every assertion is about what an unwinder
//! must recover (the callers, in order, up to the root function; a CPU split
//! that matches the fixture's own clock when the split is only visible through
//! the callers), and every count is compared with the CPU time the fixture
//! measured itself. Helpers: `tests/stacks_common/mod.rs`.

#[path = "../stacks_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{
    SPLIT_CPU_SECONDS, SPLIT_HZ, UNWOUND_SHARE, assert_received, assert_share, assert_split,
    in_order, in_order_names, named, plain, profile_budgeted, profile_command,
};
use integration_tests::{FixtureResult, Folded, Stack, prerequisites, run_command, temp_dir};

// ---------------------------------------------------------------------------
// 1. Deep chains without frame pointers

#[test]
fn deep_chains_without_frame_pointers_unwind_to_their_roots() {
    if !prerequisites() {
        return;
    }
    let (measured, folded) = profile_budgeted("stacks_deep", SPLIT_HZ, &[], SPLIT_CPU_SECONDS);
    let (a_ns, b_ns) = (measured.u64("a_ns"), measured.u64("b_ns"));
    assert_received(
        "stacks_deep (its chains, timed by its own thread CPU clock)",
        folded.total(),
        SPLIT_HZ,
        a_ns + b_ns,
        &folded,
    );

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
        a_ns,
        b_ns,
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
    let (measured, folded) = profile_budgeted("stacks_libc", SPLIT_HZ, &[], SPLIT_CPU_SECONDS);
    let (one_ns, two_ns) = (measured.u64("one_ns"), measured.u64("two_ns"));
    assert_received(
        "stacks_libc (its callers, timed by its own thread CPU clock)",
        folded.total(),
        SPLIT_HZ,
        one_ns + two_ns,
        &folded,
    );

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
        one_ns,
        two_ns,
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
    const HZ: u64 = 499;
    let (measured, folded) = profile_budgeted("stacks_rust", HZ, &["--profiles", "cpu"], "3");
    assert_received(
        "stacks_rust (its work loop, timed by its own thread CPU clock)",
        folded.total(),
        HZ,
        measured.u64("work_ns"),
        &folded,
    );

    let hot = |f: &str| f.ends_with("stk_hot_closure_work");
    let run_work = |f: &str| f.ends_with("stk_run_work");
    // The program's own `fn main` (the C-level `main` that calls into std's
    // runtime sits further up).
    let rust_main = |f: &str| f == "stacks_rust::main";
    let in_hot = folded.samples_where(|s| s.frames.iter().any(|f| hot(plain(f))));
    // The fixture spends nearly all its time in stk_hot_closure_work.
    assert_share(
        in_hot,
        folded.total(),
        0.8,
        "stacks_rust samples in stk_hot_closure_work",
        &folded,
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
// 6. Debian's python3, compared with perf

/// Debian's python3 (built without frame pointers), not a pyenv shim on PATH.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// A pure-Python busy loop until the process has used 3 s of CPU (at most
/// 40 s of wall time); then writes `cpu_ns=N`, the process's own CPU time, to
/// the file named by its first argument, if any.
const PY_BUSY: &str = "\
import sys, time
def stk_spin(cpu_s, until):
    x = 0
    while time.process_time() < cpu_s and time.monotonic() < until:
        for i in range(1000):
            x += i * i
    return x
stk_spin(3, time.monotonic() + 40)
if len(sys.argv) > 1:
    with open(sys.argv[1], 'w') as f:
        f.write('cpu_ns=%d\\n' % time.process_time_ns())
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
    const HZ: u64 = 499;
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    profile_command(
        HZ,
        &["--profiles", "cpu"],
        &[
            DEBIAN_PYTHON.as_ref(),
            "-c".as_ref(),
            PY_BUSY.as_ref(),
            result.as_os_str(),
        ],
        &out,
    );
    let measured = FixtureResult::read(&result);
    let folded = Folded::load(&out).with_comm("python3");
    let total = folded.total();
    assert_received(
        "python3 (its process CPU time)",
        total,
        HZ,
        measured.u64("cpu_ns"),
        &folded,
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
    fn perf_script_blocks() {
        let text = "python3 \n\t  1 foo\n\t  2 Py_BytesMain\n\npython3 \n\t  3 bar\n\n\
                    other \n\t 4 main\n";
        assert_eq!(perf_script_reach_main(text), (2, 1));
    }
}
