//! Where the profiler binary and the fixtures are, and what every test needs before it runs.

use std::path::{Path, PathBuf};

/// Directory holding the compiled fixtures (set by `build.rs`).
pub const FIXTURE_DIR: &str = env!("FIXTURE_DIR");

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// Path of the profiler binary: `$PROFILER_BIN`, else
/// `<workspace>/target/release/profiler`. Panics if it does not exist.
pub fn profiler_bin() -> PathBuf {
    let (path, origin) = match std::env::var_os("PROFILER_BIN") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "$PROFILER_BIN"),
        _ => (
            workspace_dir().join("target/release/profiler"),
            "the default path (PROFILER_BIN is not set)",
        ),
    };
    assert!(
        path.is_file(),
        "profiler binary not found at {} ({origin}); build it first, e.g. with \
         `cargo xtask test`, which builds it and sets PROFILER_BIN",
        path.display()
    );
    path
}

/// Whether the tests run with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Checks what every test needs. Panics if the profiler binary is missing;
/// returns `false` (after printing the skip notice) when not root, in which
/// case the test should return at once.
pub fn prerequisites() -> bool {
    profiler_bin();
    if !is_root() {
        eprintln!("skipping: needs root to load eBPF");
        return false;
    }
    true
}

/// Path of the compiled fixture `name` (e.g. `cpu_split`).
pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(FIXTURE_DIR).join(name);
    assert!(
        p.is_file(),
        "fixture {} was not built (see tests/build.rs)",
        p.display()
    );
    p
}

/// A fresh temporary directory; the profiler's `-o` usually points at a
/// not-yet-existing `out` directory inside it, so that creating it is tested too.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("profiler-it-")
        .tempdir()
        .expect("create temp dir")
}
