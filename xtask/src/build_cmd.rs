//! `cargo xtask build` and `cargo xtask run`: build the eBPF object, embed it into the
//! `profiler` binary, and run that binary as root.
//!
//! (Named `build_cmd.rs` so it is not mistaken for a cargo build script.)

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::{self, DEBIAN_RUSTC, Route};
use crate::util::{self, workspace_root};

const EBPF_TARGET: &str = "bpfel-unknown-none";

/// The eBPF crate's target dir; the profiler's build.rs defaults to the same place.
fn ebpf_target_dir() -> PathBuf {
    workspace_root().join("target/ebpf")
}

/// The built eBPF object (an ELF file named after the crate).
pub fn ebpf_object() -> PathBuf {
    ebpf_target_dir()
        .join(EBPF_TARGET)
        .join("release/profiler-ebpf")
}

/// The `profiler` binary a host build produces.
pub fn profiler_binary(release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    util::host_target_dir().join(profile).join("profiler")
}

/// `cargo xtask build [--release]`: returns the path of the built `profiler` binary.
pub fn build(release: bool) -> Result<PathBuf> {
    let route = setup::ensure(false)?;
    build_with(route, release)
}

/// Builds with a route `setup` already vouched for (used by `test`, which checks more).
pub fn build_with(route: Route, release: bool) -> Result<PathBuf> {
    let object = build_ebpf(route)?;
    build_profiler(release, &object)?;
    let binary = profiler_binary(release);
    if !binary.is_file() {
        bail!(
            "cargo reported success but {} does not exist",
            binary.display()
        );
    }
    println!("xtask: built {}", binary.display());
    println!(
        "xtask: run it as root, e.g. sudo {} --duration 10s",
        binary.display()
    );
    Ok(binary)
}

/// Builds profiler-ebpf for bpfel-unknown-none, always in release: debug eBPF code does
/// not pass the kernel verifier.
fn build_ebpf(route: Route) -> Result<PathBuf> {
    let crate_dir = workspace_root().join("profiler-ebpf");
    if !crate_dir.join("Cargo.toml").is_file() {
        bail!("{} has no Cargo.toml yet", crate_dir.display());
    }
    let target_dir = ebpf_target_dir();

    let mut cmd = match route {
        Route::Debian => {
            // Any cargo works; what matters is Debian's rustc, whose sysroot has the
            // prebuilt BPF core. RUSTC_BOOTSTRAP lets that stable rustc accept the
            // unstable features BPF code needs (e.g. BPF inline asm in aya-ebpf).
            let mut cmd = util::cargo();
            cmd.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1");
            cmd
        }
        Route::RustupNightly => {
            // `rustup run` rather than `cargo +nightly`: the `+toolchain` syntax only
            // works through the rustup proxy, which may not be the `cargo` on PATH.
            let mut cmd = Command::new("rustup");
            cmd.args(["run", "nightly", "cargo"]).env_remove("RUSTC");
            cmd
        }
    };
    cmd.args(["build", "--release", "--target", EBPF_TARGET]);
    if route == Route::RustupNightly {
        cmd.args(["-Z", "build-std=core"]);
    }
    cmd.arg("--target-dir").arg(&target_dir);
    // Cargo reads .cargo/config.toml from the working directory upwards; the eBPF
    // crate's config carries its rustflags (BTF, debug info), so run from there.
    cmd.current_dir(&crate_dir);
    // Flags meant for the host would reach the BPF target, and any RUSTFLAGS from the
    // environment would replace the config's rustflags entirely.
    cmd.env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    util::run(&mut cmd).context("building the eBPF crate (profiler-ebpf) failed")?;

    let object = ebpf_object();
    if !object.is_file() {
        bail!(
            "the eBPF build succeeded but {} does not exist",
            object.display()
        );
    }
    println!("xtask: built eBPF object {}", object.display());
    Ok(object)
}

/// Builds the userspace `profiler`, whose build.rs embeds the object named by
/// PROFILER_EBPF_OBJECT.
fn build_profiler(release: bool, object: &Path) -> Result<()> {
    let mut cmd = util::cargo();
    cmd.current_dir(workspace_root())
        .env("PROFILER_EBPF_OBJECT", object)
        .args(["build", "-p", "profiler"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd).context("building the profiler failed")
}

/// `cargo xtask run [-- ARGS]`: release build, then run the profiler as root and exit
/// with its exit code.
pub fn run(args: &[String]) -> Result<u8> {
    // Decide before the build so a missing sudo fails fast.
    let sudo = util::need_sudo("the profiler (it loads eBPF programs)")?;
    let binary = build(true)?;
    let mut cmd = if sudo {
        println!("xtask: the profiler needs root; running it through sudo");
        // -E keeps the caller's environment (RUST_LOG and the like); sudo itself sets
        // SUDO_UID/SUDO_GID, which the profiler uses to give the output to the caller.
        let mut cmd = Command::new("sudo");
        cmd.arg("-E").arg(&binary);
        cmd
    } else {
        Command::new(&binary)
    };
    cmd.args(args);
    let status = util::status_surviving_ctrl_c(&mut cmd)?;
    Ok(util::exit_code(status))
}
