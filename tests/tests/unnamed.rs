//! Unnamed code in the function tables: the hot functions of a stripped library have no
//! symbol, so the pprof file names each sampled address (`libunnamed_hot.so+0x1156`); the
//! terminal's top functions put them all on one row for the library, whose share is the
//! sum of those samples.

// The crate root is this file, so the module names its path.
#[path = "io/raw.rs"]
#[allow(dead_code)]
mod raw;

use integration_tests::{FixtureResult, fixture, prerequisites, run_profiler, temp_dir};
use raw::{RawProfile, RawSample};

const LIBRARY: &str = "libunnamed_hot.so";

/// The rows of the terminal's CPU top-functions table: (self, self %, function).
fn top_functions(stdout: &str) -> Vec<(i64, String, String)> {
    let cpu = stdout
        .split("cpu profile:")
        .nth(1)
        .unwrap_or_else(|| panic!("no cpu profile in the summary:\n{stdout}"));
    let table = cpu
        .split_once("(and their total):\n")
        .unwrap_or_else(|| panic!("no top-functions table:\n{stdout}"))
        .1;
    table
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            // `self  %  total  %  function`, the function's name possibly with spaces.
            let cells: Vec<&str> = l.split_whitespace().collect();
            let value = cells[0].replace(',', "").parse().expect("a self value");
            let name = cells[4..].join(" ");
            (value, cells[1].to_owned(), name)
        })
        .collect()
}

/// Whether the sample's leaf is an address of the library that no symbol names.
fn unnamed_leaf(sample: &RawSample) -> bool {
    sample
        .frames
        .first()
        .is_some_and(|f| f.starts_with(&format!("{LIBRARY}+0x")))
}

#[test]
fn a_stripped_librarys_addresses_are_one_row() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let program = fixture("unnamed_hot");
    // 1.5 CPU-seconds in the library, however loaded the machine; 30 s at most.
    let run = run_profiler(
        &[
            "-F".as_ref(),
            "499".as_ref(),
            "--profiles".as_ref(),
            "cpu".as_ref(),
            "--".as_ref(),
            program.as_os_str(),
            "30".as_ref(),
            result.as_os_str(),
            "1.5".as_ref(),
        ],
        &out,
    );
    run.assert_success();
    let measured = FixtureResult::read(&result);

    let profile = RawProfile::load(&out.join("cpu.pb.gz"));
    let in_library = profile.sum("samples", unnamed_leaf);
    let total = profile.sum("samples", |_| true);
    // The fixture measured its CPU time in the library: at 499 Hz the profile must have
    // seen a good part of it, or the row below says nothing.
    let expected = 499.0 * measured.u64("library_ns") as f64 / 1e9;
    assert!(
        in_library as f64 >= 0.5 * expected,
        "{in_library} samples in {LIBRARY}'s unnamed code for {:.2} CPU-seconds measured \
         there (expected ~{expected:.0})\n{}",
        expected / 499.0,
        run.transcript()
    );
    // The pprof file keeps every address: the three hot functions are several.
    let addresses: std::collections::HashSet<&str> = profile
        .samples
        .iter()
        .filter(|s| unnamed_leaf(s))
        .map(|s| s.frames[0].as_str())
        .collect();
    assert!(
        addresses.len() >= 2,
        "the profile's samples in {LIBRARY} have {} address(es): {addresses:?}",
        addresses.len()
    );

    let rows = top_functions(&run.stdout);
    let library_rows: Vec<&(i64, String, String)> =
        rows.iter().filter(|r| r.2.starts_with(LIBRARY)).collect();
    let label = format!("{LIBRARY} (no symbols)");
    assert_eq!(
        library_rows.len(),
        1,
        "want one row for {LIBRARY}, the {} addresses together\n{}",
        addresses.len(),
        run.stdout
    );
    let (value, share, name) = library_rows[0];
    assert_eq!(name, &label, "{}", run.stdout);
    assert_eq!(
        *value, in_library,
        "the row's self samples are not the sum of the profile's samples at {LIBRARY}'s \
         unnamed addresses\n{}",
        run.stdout
    );
    assert_eq!(
        share,
        &format!("{:.1}%", in_library as f64 * 100.0 / total as f64),
        "{}",
        run.stdout
    );
}
