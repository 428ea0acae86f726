//! `cargo xtask fuzz`: run the pprof decoder's fuzz target for a bounded time.
//!
//! Never part of `test` or CI: a run takes minutes and finds nothing new most days, but
//! it should be run after changing the decoder. Installs cargo-fuzz when missing; cargo
//! fuzz needs nightly, so it uses a nightly toolchain when rustup has one and otherwise
//! lets the stable compiler accept nightly flags (RUSTC_BOOTSTRAP=1).

use std::fs;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build_cmd;
use crate::util::{self, workspace_root};

/// The fuzz target's name in fuzz/Cargo.toml.
const TARGET: &str = "pprof_decode";

/// Builds and runs the fuzz target for `seconds`; fails when it found a crash (its input
/// is saved under fuzz/artifacts/).
pub fn fuzz(seconds: u64) -> Result<()> {
    // The profiler crate's build script embeds the eBPF object, so it must exist.
    let object = build_cmd::ebpf_object();
    if !object.exists() {
        bail!(
            "the eBPF object {} is missing: run `cargo xtask build` first",
            object.display()
        );
    }
    if util::output_of(util::cargo().args(["fuzz", "--version"])).is_none() {
        println!("xtask: cargo-fuzz is missing; installing it from crates.io");
        util::run(util::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let root = workspace_root();
    let corpus = root.join("fuzz/corpus").join(TARGET);
    fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;

    let mut cmd = match nightly() {
        Some(toolchain) => {
            let mut cmd = Command::new("rustup");
            cmd.args(["run", &toolchain, "cargo"]);
            cmd
        }
        None => {
            println!("xtask: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1");
            let mut cmd = util::cargo();
            cmd.env("RUSTC_BOOTSTRAP", "1");
            cmd
        }
    };
    cmd.current_dir(&root)
        .env("PROFILER_EBPF_OBJECT", &object)
        .args(["fuzz", "run", "--release", TARGET])
        .arg(&corpus)
        .arg(root.join("fuzz/seeds"))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // Well above the decoder's documented 512 MiB cap: going past it is a finding.
        .arg("-rss_limit_mb=1024")
        // Larger inputs only test the size limit, which the integration tests cover.
        .arg("-max_len=65536");
    util::run(&mut cmd).context("the fuzz target failed: its input is under fuzz/artifacts/")?;
    println!("xtask: fuzzed {TARGET} for {seconds} s without a failure");
    Ok(())
}

/// A nightly toolchain rustup has installed, if any.
fn nightly() -> Option<String> {
    let list = util::output_of(Command::new("rustup").args(["toolchain", "list"]))?;
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|name| name.starts_with("nightly"))
        .map(str::to_owned)
}
