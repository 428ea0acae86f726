//! `cargo xtask test`: install test dependencies if missing, build in release, and
//! run the whole workspace's tests as root, one test at a time.

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::build_cmd;
use crate::setup;
use crate::util::{self, workspace_root};

/// Environment variables that locate the toolchain; they are passed explicitly through
/// sudo, which would otherwise reset PATH and may reset HOME.
const TOOLCHAIN_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
];

pub fn test() -> Result<()> {
    // Decide before installing and building so a missing sudo fails fast.
    let sudo = util::need_sudo("`cargo xtask test` (the integration tests load eBPF programs)")?;
    let route = setup::ensure(true)?;
    let binary = build_cmd::build_with(route, true)?;

    let vars = test_vars(binary);
    // The integration tests compare CPU splits between busy processes on a 2-CPU
    // machine, so concurrent tests would skew each other. Every test binary runs even
    // when one fails: cargo's default stop at the first hid the rest of the suite in CI
    // (and left the Go fixtures unbuilt for the kernel guests, which then compiled Go's
    // standard library under TCG until their time ran out).
    let test_args = [
        "test",
        "--workspace",
        "--release",
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ];

    let result = if !sudo {
        let mut cmd = util::cargo();
        cmd.current_dir(workspace_root())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .args(test_args);
        util::run(&mut cmd)
    } else {
        println!(
            "xtask: the integration tests load eBPF programs and need root; compiling them \
             as you, then running them through sudo"
        );
        // Compiling as the user keeps target/ owned by the user; the root run then only
        // executes the already-built tests.
        let mut compile = util::cargo();
        compile
            .current_dir(workspace_root())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .args(["test", "--workspace", "--release", "--no-run"]);
        util::run(&mut compile)?;

        // sudo resets PATH and may reset HOME, which rustup and cargo need, so pass them
        // (and the tests' variables, later ones winning) explicitly through `env`.
        let mut cmd = Command::new("sudo");
        cmd.current_dir(workspace_root()).args(["-E", "env"]);
        for var in TOOLCHAIN_VARS {
            if let Some(value) = env::var_os(var) {
                cmd.arg(assignment(var, &value));
            }
        }
        for (var, value) in &vars {
            cmd.arg(assignment(var, value));
        }
        cmd.arg(util::cargo().get_program()).args(test_args);
        util::run(&mut cmd)
    };
    result.context("tests failed")?;
    println!("xtask: all tests passed");
    Ok(())
}

/// Variables the tests read: the embedded object (so cargo does not rebuild the
/// profiler with another one), the binary the integration tests launch, and a PATH with
/// Go when only Debian's /usr/lib/go*/bin has it.
pub fn test_vars(binary: PathBuf) -> Vec<(&'static str, OsString)> {
    let mut vars: Vec<(&str, OsString)> = vec![
        ("PROFILER_EBPF_OBJECT", build_cmd::ebpf_object().into()),
        ("PROFILER_BIN", binary.into()),
    ];
    if let Some(path) = path_with_go() {
        vars.push(("PATH", path));
    }
    vars
}

fn assignment(var: &str, value: &OsStr) -> OsString {
    let mut arg = OsString::from(var);
    arg.push("=");
    arg.push(value);
    arg
}

/// When `go` is only found under /usr/lib/go*/bin, put that directory on the tests'
/// PATH so they can run `go tool pprof`.
fn path_with_go() -> Option<OsString> {
    if util::which("go").is_some() {
        return None;
    }
    let go_bin = setup::find_go()?.parent()?.to_path_buf();
    let mut dirs = vec![go_bin];
    dirs.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    env::join_paths(dirs).ok()
}
