//! Names from separate debug information: the `names_c` fixture's busy function is static,
//! so a stripped copy has no symbol for it, and its loop body is an always-inlined helper.
//! Each test splits the fixture's debug information off with objcopy, as distributions
//! do, puts it where one lookup finds it (a build-ID directory given with
//! `--debuginfo-dir`, a `.gnu_debuglink` target, MiniDebugInfo, a debuginfod server), runs
//! the stripped copy under the profiler, and checks the busy function, the inlined helper
//! and its file:line (from the fixture's source) are named.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::*;

const BUSY: &str = "names_spin_static";
const INLINED: &str = "names_mix";

/// A stripped copy of the fixture and its debug information, split off.
struct Split {
    dir: tempfile::TempDir,
    /// The stripped copy (no `.symtab`, no DWARF).
    app: PathBuf,
    /// What `objcopy --only-keep-debug` kept.
    debug: PathBuf,
    /// The build ID in hex.
    build_id: String,
}

fn split() -> Split {
    let dir = temp_dir();
    let app = dir.path().join("app");
    let debug = dir.path().join("app.debug");
    std::fs::copy(fixture("names_c"), &app).unwrap();
    tool(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            app.as_os_str(),
            debug.as_os_str(),
        ],
    );
    tool(
        "objcopy",
        &[
            "--strip-debug".as_ref(),
            "--strip-unneeded".as_ref(),
            app.as_os_str(),
        ],
    );
    let build_id = build_id(&app);
    Split {
        dir,
        app,
        debug,
        build_id,
    }
}

/// The GNU build ID of an ELF file, from readelf.
fn build_id(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .expect("readelf");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .expect("the fixture has a build ID (cc links with --build-id)")
}

/// What a profile of the stripped copy showed.
struct Profiled {
    measured: FixtureResult,
    folded: Folded,
    speedscope: serde_json::Value,
    run: Run,
    out: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Profiles `app` for 2 seconds at 499 Hz with `extra` flags and environment `envs`.
fn profile(app: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Profiled {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let mut cmd = profiler_command(&["-F", "499", "--format", "pprof,folded,speedscope"]);
    cmd.arg("-o").arg(&out).args(extra).arg("--").arg(app);
    cmd.arg("2").arg(&result);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let run = run_command(cmd);
    run.assert_success();
    let speedscope = std::fs::read_to_string(out.join("cpu.speedscope.json")).unwrap();
    Profiled {
        measured: FixtureResult::read(&result),
        folded: Folded::load(&out).with_comm("app"),
        speedscope: serde_json::from_str(&speedscope).unwrap(),
        run,
        out,
        _tmp: tmp,
    }
}

impl Profiled {
    /// Checks the busy function is named in most of the fixture's samples (it ran for all
    /// but the process's start and exit), with the inlined helper inside it.
    fn assert_named(&self, inline_expected: bool) {
        let total = self.folded.total();
        let busy = self.folded.samples_containing(BUSY);
        let spin_ms = self.measured.u64("spin_cpu_ns") / 1_000_000;
        assert!(
            total >= 50 && busy * 10 >= total * 8,
            "{busy} of {total} samples of app name {BUSY} (it spun {spin_ms} ms of CPU)\n{}\n{}",
            self.folded.summary(10),
            self.run.transcript()
        );
        let inlined = self.folded.samples_where(|s| {
            s.frames
                .iter()
                .position(|f| f == BUSY)
                .is_some_and(|i| s.frames[i..].iter().any(|f| f == INLINED))
        });
        if inline_expected {
            assert!(
                inlined * 2 >= busy,
                "{inlined} of {busy} samples show {INLINED} inlined in {BUSY}\n{}",
                self.folded.summary(10)
            );
        }
    }

    /// The file and line of each frame named `function` in the speedscope file.
    fn positions(&self, function: &str) -> Vec<(String, u64)> {
        self.speedscope["shared"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == function)
            .filter_map(|f| Some((f["file"].as_str()?.to_owned(), f["line"].as_u64()?)))
            .collect()
    }

    /// Checks the inlined helper's frames point into its body in the fixture's source.
    fn assert_file_line(&self) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/names_c.c");
        let text = std::fs::read_to_string(&source).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let first = lines
            .iter()
            .position(|l| l.contains(&format!("{INLINED}(uint64_t h")))
            .unwrap() as u64
            + 1;
        let last = first
            + lines[first as usize..]
                .iter()
                .position(|l| l.starts_with('}'))
                .unwrap() as u64
            + 1;
        let positions = self.positions(INLINED);
        assert!(
            !positions.is_empty()
                && positions.iter().all(
                    |(file, line)| file.ends_with("names_c.c") && (first..=last).contains(line)
                ),
            "{INLINED} is at lines {first}..={last} of names_c.c; the profile says {positions:?}"
        );
    }

    /// Checks nothing named the busy function: its frames are `app+0x...`.
    fn assert_unnamed(&self) {
        assert_eq!(
            self.folded.samples_containing(BUSY),
            0,
            "{}",
            self.folded.summary(10)
        );
        let unnamed = self
            .folded
            .samples_where(|s| s.frames.iter().any(|f| f.starts_with("app+0x")));
        assert!(
            unnamed * 10 >= self.folded.total() * 8,
            "{}",
            self.folded.summary(10)
        );
    }
}

/// How many files the summary says were named from build-ID directories.
fn build_id_files(run: &Run) -> u64 {
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("separate debug info: "))
        .flat_map(|l| l.split(", "))
        .find_map(|part| part.strip_suffix(" via build-ID directories")?.parse().ok())
        .unwrap_or(0)
}

fn ready() -> bool {
    prerequisites()
}

#[test]
fn a_stripped_binary_is_named_from_a_build_id_directory() {
    if !ready() {
        return;
    }
    let split = split();
    // Without the directory, nothing names its static function.
    let without = profile(&split.app, &[], &[]);
    without.assert_unnamed();
    let root = split.dir.path().join("debug-root");
    let (head, rest) = split.build_id.split_at(2);
    let target = root
        .join(".build-id")
        .join(head)
        .join(format!("{rest}.debug"));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(&split.debug, &target).unwrap();
    let named = profile(
        &split.app,
        &["--debuginfo-dir", root.to_str().unwrap()],
        &[],
    );
    named.assert_named(true);
    named.assert_file_line();
    // The summary counts it among the files named from build-ID directories (the
    // system's may hold some of the C library's).
    assert_eq!(
        build_id_files(&named.run),
        build_id_files(&without.run) + 1,
        "{}",
        named.run.transcript()
    );
    // pprof calls the profile after its first mapping: the program, not a library.
    let top = pprof(&["-top", named.out.join("cpu.pb.gz").to_str().unwrap()]);
    assert!(
        top.stdout.lines().any(|l| l.trim() == "File: app"),
        "{}",
        top.transcript()
    );
}

#[test]
fn a_stripped_binary_is_named_through_its_debuglink_with_the_crc_checked() {
    if !ready() {
        return;
    }
    let split = split();
    tool(
        "objcopy",
        &[
            format!("--add-gnu-debuglink={}", split.debug.display()).as_ref(),
            split.app.as_os_str(),
        ],
    );
    // In `.debug/` beside the binary, one of the places gdb looks.
    let dot_debug = split.dir.path().join(".debug");
    std::fs::create_dir(&dot_debug).unwrap();
    let linked = dot_debug.join("app.debug");
    std::fs::rename(&split.debug, &linked).unwrap();
    let named = profile(&split.app, &[], &[]);
    named.assert_named(true);
    named.assert_file_line();
    // Another file under that name (its CRC differs) is not taken for the debug file.
    let mut other = std::fs::read(&linked).unwrap();
    other.push(0);
    std::fs::write(&linked, other).unwrap();
    profile(&split.app, &[], &[]).assert_unnamed();
}

#[test]
fn a_stripped_binary_is_named_from_its_minidebuginfo() {
    if !ready() {
        return;
    }
    let split = split();
    // As Fedora makes it: the symbols alone (no DWARF), xz-compressed into
    // `.gnu_debugdata` of the stripped binary.
    let mini = split.dir.path().join("mini");
    tool(
        "objcopy",
        &[
            "--strip-debug".as_ref(),
            split.debug.as_os_str(),
            mini.as_os_str(),
        ],
    );
    tool("xz", &["--keep".as_ref(), mini.as_os_str()]);
    tool(
        "objcopy",
        &[
            format!("--add-section=.gnu_debugdata={}.xz", mini.display()).as_ref(),
            split.app.as_os_str(),
        ],
    );
    // No file:line and no inlined frames: symbols only.
    profile(&split.app, &[], &[]).assert_named(false);
}

#[test]
fn a_stripped_binary_is_named_from_a_debuginfod_server() {
    if !ready() {
        return;
    }
    let split = split();
    let served = split.dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    std::fs::rename(&split.debug, served.join("app.debug")).unwrap();
    let server = debuginfod(
        &served,
        &split.dir.path().join("debuginfod.sqlite"),
        &split.build_id,
    );
    let cache = split.dir.path().join("cache");
    let url = server.url.clone();
    let envs = [
        ("DEBUGINFOD_URLS", url.as_str()),
        ("DEBUGINFOD_CACHE_PATH", cache.to_str().unwrap()),
    ];
    let named = profile(&split.app, &[], &envs);
    named.assert_named(true);
    named.assert_file_line();
    let note = format!("debuginfod ({url}): fetched debug info of 1 file");
    assert!(
        named.run.stdout.contains(&note),
        "no `{note}` line\n{}",
        named.run.transcript()
    );
    assert!(cache.join(&split.build_id).join("debuginfo").is_file());
    // The second run reads the cache.
    drop(server);
    let again = profile(&split.app, &[], &envs);
    again.assert_named(true);
    assert!(
        again.run.stdout.contains("1 from the cache"),
        "{}",
        again.run.transcript()
    );
}
