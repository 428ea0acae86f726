//! Compiles the bench fixtures (`tests/fixtures/bench_*.c`) into `target/bench/bin/`.
//!
//! Frame pointers everywhere (leaf functions too) so that the profiler, perf and
//! bpftrace, which all walk frame pointers, see the fixtures' own functions; -O2 because
//! a benchmark should time optimized code. The bench compiles them itself rather than
//! borrowing the tests' build, so it needs no test build and always runs current sources.
//!
//! The exception is `stacks_deep` (shared with tests/tests/stacks_native.rs), built WITHOUT
//! frame pointers with the tests' flags: the unwinding row measures who still finds its
//! callers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{self, workspace_root};

/// The compiled fixtures.
pub struct Fixtures {
    /// `bench_cpu work CHUNKS` / `bench_cpu time SECONDS`.
    pub cpu: PathBuf,
    /// `bench_pread CALLS`.
    pub pread: PathBuf,
    /// `bench_contention ITERATIONS [THREADS]`.
    pub contention: PathBuf,
    /// `cpu_split SECONDS`: the tests' self-timing two-function fixture.
    pub split: PathBuf,
    /// `bench_stacks STACKS SECONDS THREADS`.
    pub stacks: PathBuf,
    /// `stacks_deep SECONDS`: two 12-deep call chains without frame pointers.
    pub deep: PathBuf,
    /// `bench_malloc ITERATIONS`: malloc(32)+free rounds.
    pub malloc: PathBuf,
    /// `bench_pingpong ROUNDS [wait]`: two processes passing a byte through pipes.
    pub pingpong: PathBuf,
}

/// The fixtures built without frame pointers, and their flags (as tests/build.rs).
const NO_FRAME_POINTER_NAMES: [&str; 1] = ["stacks_deep"];
const NO_FRAME_POINTER_FLAGS: [&str; 8] = [
    "-O2",
    "-g",
    "-fomit-frame-pointer",
    "-fno-inline",
    "-fno-optimize-sibling-calls",
    "-fno-ipa-icf",
    "-pthread",
    "-Wall",
];

/// The bench's fixtures; `cpu_split` is shared with the integration tests.
const NAMES: [&str; 7] = [
    "bench_cpu",
    "bench_pread",
    "bench_contention",
    "cpu_split",
    "bench_stacks",
    "bench_malloc",
    "bench_pingpong",
];

impl Fixtures {
    /// Compiles every fixture with `cc` into `bin_dir`.
    pub fn build(bin_dir: &Path) -> Result<Fixtures> {
        let src = workspace_root().join("tests/fixtures");
        std::fs::create_dir_all(bin_dir)
            .with_context(|| format!("cannot create {}", bin_dir.display()))?;
        const FRAME_POINTER_FLAGS: [&str; 6] = [
            "-O2",
            "-g",
            "-fno-omit-frame-pointer",
            "-mno-omit-leaf-frame-pointer",
            "-pthread",
            "-Wall",
        ];
        let builds = NAMES
            .iter()
            .map(|name| (name, &FRAME_POINTER_FLAGS[..]))
            .chain(
                NO_FRAME_POINTER_NAMES
                    .iter()
                    .map(|name| (name, &NO_FRAME_POINTER_FLAGS[..])),
            );
        for (name, flags) in builds {
            let mut cmd = Command::new("cc");
            cmd.args(flags)
                // fixture.h, shared with the tests' fixtures, sits next to the sources.
                .arg("-I")
                .arg(&src)
                .arg("-o")
                .arg(bin_dir.join(name))
                .arg(src.join(format!("{name}.c")));
            util::run(&mut cmd).with_context(|| format!("compiling the bench fixture {name}"))?;
        }
        let bin = |name: &str| bin_dir.join(name);
        Ok(Fixtures {
            cpu: bin("bench_cpu"),
            pread: bin("bench_pread"),
            contention: bin("bench_contention"),
            split: bin("cpu_split"),
            stacks: bin("bench_stacks"),
            deep: bin("stacks_deep"),
            malloc: bin("bench_malloc"),
            pingpong: bin("bench_pingpong"),
        })
    }
}

/// A command line: `program` then `args`, as owned strings for [`super::runner`].
pub fn argv(program: &Path, args: &[String]) -> Vec<OsString> {
    std::iter::once(program.as_os_str().to_owned())
        .chain(args.iter().map(OsString::from))
        .collect()
}
