//! `cargo xtask fuzz`: run the fuzz targets, each for a bounded time.
//!
//! One target per parser of bytes that others control: pprof files (`profiler report`),
//! ELF unwind sections as the unwinder loads them, what the symbolizer reads of an ELF file
//! before naming (its facts, debug link, what compressed sections and MiniDebugInfo would
//! inflate to), a Go binary's `.gopclntab`, and JIT perf maps. Never part of `test` or CI: a run takes minutes and finds nothing new most days,
//! but it should be run after changing a parser. Installs cargo-fuzz when missing; cargo
//! fuzz needs nightly, so it uses a nightly toolchain when rustup has one and otherwise
//! lets the stable compiler accept nightly flags (RUSTC_BOOTSTRAP=1).
//!
//! Seeds are real files made here on each run (a small C library with its unwind and
//! debug sections in each form the toolchain writes, a Go binary built with Debian's Go,
//! a perf map), so the fuzzer starts from inputs that reach deep into each parser.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build_cmd;
use crate::util::{self, workspace_root};

/// A fuzz target of fuzz/Cargo.toml and how it is run.
struct Target {
    name: &'static str,
    /// The largest input tried: a target's inputs must be able to hold a real file.
    max_len: usize,
}

/// Every target, in the order they run.
const TARGETS: &[Target] = &[
    Target {
        name: "pprof_decode",
        // Larger inputs only test the size limit, which the integration tests cover.
        max_len: 65536,
    },
    Target {
        name: "elf_unwind",
        max_len: 1 << 20,
    },
    Target {
        name: "elf_debug",
        max_len: 1 << 20,
    },
    Target {
        name: "gopclntab",
        max_len: 4 << 20,
    },
    Target {
        name: "perf_map",
        max_len: 65536,
    },
];

/// Builds and runs each target (or only `only`) for `seconds`; fails when one found a
/// crash (its input is saved under fuzz/artifacts/TARGET/).
pub fn fuzz(seconds: u64, only: Option<&str>) -> Result<()> {
    // The profiler crate's build script embeds the eBPF object, so it must exist.
    let object = build_cmd::ebpf_object();
    if !object.exists() {
        bail!(
            "the eBPF object {} is missing: run `cargo xtask build` first",
            object.display()
        );
    }
    let targets: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| only.is_none_or(|name| t.name == name))
        .collect();
    if targets.is_empty() {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        bail!(
            "no fuzz target {only:?}; the targets are {}",
            names.join(", ")
        );
    }
    if util::output_of(util::cargo().args(["fuzz", "--version"])).is_none() {
        println!("xtask: cargo-fuzz is missing; installing it from crates.io");
        util::run(util::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let root = workspace_root();
    let mut failed = Vec::new();
    for target in targets {
        let corpus = root.join("fuzz/corpus").join(target.name);
        fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let seeds = seeds(&root, target.name)?;
        let mut cmd = fuzz_command();
        cmd.current_dir(&root)
            .env("PROFILER_EBPF_OBJECT", &object)
            .args(["fuzz", "run", "--release", target.name])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // Well above every parser's documented caps (512 MiB for a pprof file, the
            // section caps for ELF files): going past it is a finding.
            .arg("-rss_limit_mb=1024")
            // An input that takes seconds is an endless loop in waiting.
            .arg("-timeout=10")
            .arg(format!("-max_len={}", target.max_len));
        match util::run(&mut cmd) {
            Ok(()) => println!(
                "xtask: fuzzed {} for {seconds} s without a failure",
                target.name
            ),
            Err(err) => {
                eprintln!("xtask: {} failed: {err:#}", target.name);
                failed.push(target.name);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {}; their inputs are under fuzz/artifacts/",
            failed.join(", ")
        );
    }
    Ok(())
}

/// `cargo` with a nightly toolchain, or stable accepting nightly flags.
fn fuzz_command() -> Command {
    match nightly() {
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
    }
}

/// The seed directory of `target`: fuzz/seeds/ for the pprof decoder (files kept in the
/// repository), else made under target/fuzz-seeds/TARGET from real files.
fn seeds(root: &Path, target: &str) -> Result<PathBuf> {
    if target == "pprof_decode" {
        return Ok(root.join("fuzz/seeds"));
    }
    let dir = util::host_target_dir().join("fuzz-seeds").join(target);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match target {
        "elf_unwind" | "elf_debug" => elf_seeds(&dir)?,
        "gopclntab" => go_seed(&dir)?,
        "perf_map" => fs::write(
            dir.join("node.map"),
            "7f3c2a001000 40 LazyCompile:*spin loop.js:3\n\
             0x7f3c2a001040 0x80 Builtin:ArgumentsAdaptorTrampoline\n\
             7f3c2a0010c0 20 Function:~<anonymous> :1\n",
        )?,
        _ => {}
    }
    Ok(dir)
}

/// A small C library built in each form whose sections the unwinder and the symbolizer
/// read: `.eh_frame` with its index, `.debug_frame` only, compressed debug sections, a
/// `.gnu_debuglink`, and MiniDebugInfo (`.gnu_debugdata`, an xz of the symbols).
fn elf_seeds(dir: &Path) -> Result<()> {
    let source = dir.join("seed.c");
    fs::write(
        &source,
        "int leaf(int x) { return x * 3 + 1; }\n\
         int middle(int x) { int a[16]; for (int i = 0; i < 16; i++) a[i] = leaf(x + i);\n\
           return a[x & 15]; }\n\
         int top(int x) { return middle(x) + middle(x + 1); }\n",
    )?;
    let forms: [(&str, &[&str]); 3] = [
        ("eh_frame.so", &["-O1", "-g"]),
        (
            "debug_frame.so",
            &[
                "-O1",
                "-g",
                "-fno-asynchronous-unwind-tables",
                "-fno-unwind-tables",
            ],
        ),
        ("compressed.so", &["-O1", "-g", "-gz=zlib"]),
    ];
    for (name, flags) in forms {
        let out = dir.join(name);
        let mut cc = Command::new("cc");
        cc.args(["-shared", "-fPIC"])
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&source);
        util::run(&mut cc).with_context(|| format!("cannot build the seed {name} with cc"))?;
    }
    let eh_frame = dir.join("eh_frame.so");
    let with_link = dir.join("debuglink.so");
    let mut link = Command::new("objcopy");
    link.current_dir(dir)
        .arg("--add-gnu-debuglink=compressed.so")
        .arg(&eh_frame)
        .arg(&with_link);
    util::run(&mut link).context("cannot add a debug link to a seed with objcopy")?;
    // MiniDebugInfo as distributions make it: the symbols, alone, xz-compressed.
    let symbols = dir.join("symbols.elf");
    let mut keep = Command::new("objcopy");
    keep.args(["--only-keep-debug"])
        .arg(&eh_frame)
        .arg(&symbols);
    util::run(&mut keep).context("cannot split a seed's symbols with objcopy")?;
    let mut xz = Command::new("xz");
    xz.args(["-f", "-k"]).arg(&symbols);
    util::run(&mut xz).context("cannot compress a seed's symbols with xz")?;
    let mut add = Command::new("objcopy");
    add.arg(format!(
        "--add-section=.gnu_debugdata={}",
        dir.join("symbols.elf.xz").display()
    ))
    .arg(&eh_frame)
    .arg(dir.join("debugdata.so"));
    util::run(&mut add).context("cannot add MiniDebugInfo to a seed with objcopy")?;
    for scratch in ["seed.c", "symbols.elf", "symbols.elf.xz"] {
        let _ = fs::remove_file(dir.join(scratch));
    }
    Ok(())
}

/// A Go binary without symbols or DWARF, as releases are built: all it has is its
/// `.gopclntab`.
fn go_seed(dir: &Path) -> Result<()> {
    let out = dir.join("hello");
    if out.exists() {
        return Ok(());
    }
    let source = dir.join("main.go");
    fs::write(
        &source,
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
    )?;
    let go = ["go", "/usr/lib/go/bin/go"]
        .into_iter()
        .find(|go| util::output_of(Command::new(go).arg("version")).is_some())
        .context("no Go toolchain for the gopclntab seed: run `cargo xtask setup --for-tests`")?;
    let mut build = Command::new(go);
    build
        .current_dir(dir)
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.join("gocache"))
        .args(["build", "-ldflags=-s -w", "-o"])
        .arg(&out)
        .arg(&source);
    util::run(&mut build).context("cannot build the Go seed")?;
    fs::remove_file(&source)?;
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
