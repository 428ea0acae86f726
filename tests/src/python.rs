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

/// CPython 3.14, Debian unstable's, which `cargo xtask setup --for-tests` unpacks under
/// `target/python-3.14` with unstable's C library and runs through its loader; panics,
/// saying so loudly with `what` is not tested, when it is not there.
pub fn debian_python_3_14(what: &str) -> PathBuf {
    let wrapper = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/python-3.14/bin/python3.14");
    assert!(
        wrapper.is_file(),
        "MISSING PYTHON: no CPython 3.14 at {} (run `cargo xtask setup --for-tests`): its \
         {what} not tested",
        wrapper.display()
    );
    wrapper
}

/// One test per CPython the Python tests cover, each calling `$check(python, minor)`:
/// Debian's python3 (3.11), pyenv's newest 3.8 to 3.13 and Debian unstable's 3.14. A
/// missing one fails its test, saying loudly that `$what` not tested, so a run never
/// passes for having covered fewer. Used once per module (the names are fixed); a second
/// set goes in a module of its own.
#[macro_export]
macro_rules! test_every_cpython {
    ($check:ident, $what:literal) => {
        #[test]
        fn debian_python3() {
            $check(::std::path::Path::new("/usr/bin/python3"), 11);
        }
        #[test]
        fn cpython_3_8() {
            $check(&$crate::pyenv_python(8, $what), 8);
        }
        #[test]
        fn cpython_3_9() {
            $check(&$crate::pyenv_python(9, $what), 9);
        }
        #[test]
        fn cpython_3_10() {
            $check(&$crate::pyenv_python(10, $what), 10);
        }
        #[test]
        fn cpython_3_11() {
            $check(&$crate::pyenv_python(11, $what), 11);
        }
        #[test]
        fn cpython_3_12() {
            $check(&$crate::pyenv_python(12, $what), 12);
        }
        #[test]
        fn cpython_3_13() {
            $check(&$crate::pyenv_python(13, $what), 13);
        }
        #[test]
        fn cpython_3_14() {
            $check(&$crate::debian_python_3_14($what), 14);
        }
    };
}
