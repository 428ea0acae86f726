//! The CPython builds the Python tests run: pyenv's, one per minor version.

use std::path::PathBuf;

/// Where pyenv keeps its builds here.
pub const PYENV: &str = "/root/.pyenv/versions";

/// pyenv's newest build of CPython 3.`minor`; panics, saying so loudly with `what` is not
/// tested, when there is none (the issue asks that a missing version be seen).
pub fn pyenv_python(minor: u32, what: &str) -> PathBuf {
    let prefix = format!("3.{minor}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(PYENV)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path().join("bin/python3"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "MISSING PYTHON: no CPython 3.{minor} under {PYENV} (pyenv install 3.{minor}): its \
             {what} not tested"
        )
    })
}
