//! Running the profiler on the fixtures: one `--profiles io` run in command mode and the
//! checks of the files it wrote.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use integration_tests::{FixtureResult, Folded, Run, fixture, run_profiler, temp_dir};

/// One finished I/O profile of a fixture.
pub(crate) struct IoRun {
    _tmp: tempfile::TempDir,
    pub(crate) out: PathBuf,
    pub(crate) run: Run,
    pub(crate) measured: FixtureResult,
}

/// Profiles `fixture_args` (a fixture and its arguments; its result file is appended) in
/// command mode with `--profiles io` and `extra` options.
pub(crate) fn profile_command(name: &str, fixture_args: &[&str], extra: &[&str]) -> IoRun {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture(name);
    let mut args: Vec<&OsStr> = ["--profiles", "io"].map(OsStr::new).to_vec();
    args.extend(extra.iter().map(OsStr::new));
    args.extend(["--duration", "60s", "--"].map(OsStr::new));
    args.push(exe.as_os_str());
    args.extend(fixture_args.iter().map(OsStr::new));
    args.push(result.as_os_str());

    let run = run_profiler(&args, &out);
    run.assert_success();
    let measured = FixtureResult::read(&result);
    assert_io_outputs(&out);
    IoRun {
        _tmp: tmp,
        out,
        run,
        measured,
    }
}

/// `io_mix run` profiled in command mode.
pub(crate) fn profile_io_mix(extra: &[&str]) -> IoRun {
    profile_command("io_mix", &["run"], extra)
}

/// Asserts that `dir` holds `io.folded`, `io.pb.gz` (gzip) and `io.svg`, none empty, and
/// no CPU profile (only `--profiles io` was asked for).
pub(crate) fn assert_io_outputs(dir: &Path) {
    for name in ["io.folded", "io.pb.gz", "io.svg"] {
        let p = dir.join(name);
        let meta =
            std::fs::metadata(&p).unwrap_or_else(|e| panic!("output {} missing: {e}", p.display()));
        assert!(meta.len() > 0, "output {} is empty", p.display());
    }
    let pb = std::fs::read(dir.join("io.pb.gz")).unwrap();
    assert_eq!(&pb[..2], &[0x1f, 0x8b], "io.pb.gz is not gzip-compressed");
    let svg = std::fs::read_to_string(dir.join("io.svg")).expect("io.svg is UTF-8");
    assert!(svg.contains("<svg"), "io.svg is not an SVG document");
    for name in ["cpu.folded", "cpu.pb.gz", "cpu.svg"] {
        assert!(
            !dir.join(name).exists(),
            "{name} was written although only --profiles io was asked for"
        );
    }
}

pub(crate) fn load_io_folded(dir: &Path) -> Folded {
    let p = dir.join("io.folded");
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    Folded::parse(&text)
}
