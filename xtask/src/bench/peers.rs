//! The peers the profiler is compared with (perf, bpftrace, strace) and the C compiler:
//! find them, install what is missing on Debian, and say which rows must be skipped.
//!
//! A missing peer never fails the bench: its rows are skipped with a note in
//! BENCHMARKS.md, since the figures for the profiler itself are still worth having.

use std::process::Command;

use anyhow::Result;

use crate::util::{self, output_of, which};

/// A peer tool: usable (with its version) or not (with the reason).
#[derive(Clone, Debug)]
pub enum Tool {
    Ready { version: String },
    Missing { why: String },
}

impl Tool {
    pub fn ready(&self) -> bool {
        matches!(self, Tool::Ready { .. })
    }

    /// The version, or why it cannot be used, for the report.
    pub fn describe(&self) -> String {
        match self {
            Tool::Ready { version } => version.clone(),
            Tool::Missing { why } => format!("not available: {why}"),
        }
    }
}

/// Every peer, probed once at the start of the bench.
#[derive(Clone, Debug)]
pub struct Peers {
    pub perf: Tool,
    /// `perf trace`, which also needs the syscall tracepoints and can fail where
    /// `perf record` works.
    pub perf_trace: Tool,
    pub bpftrace: Tool,
    pub strace: Tool,
}

/// (program, Debian package) for everything the bench runs besides the profiler.
const PACKAGES: [(&str, &str); 4] = [
    ("perf", "linux-perf"),
    ("bpftrace", "bpftrace"),
    ("strace", "strace"),
    ("cc", "gcc"),
];

/// Installs whatever is missing (Debian only; elsewhere, or if apt fails, the rows
/// needing it are skipped), then probes each tool.
pub fn prepare() -> Result<Peers> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        if which("apt-get").is_some() {
            apt_install(&missing);
        } else {
            println!(
                "xtask: bench: missing {} and no apt-get to install them; rows needing them \
                 will be skipped",
                missing.join(", ")
            );
        }
    }
    if which("cc").is_none() {
        anyhow::bail!(
            "the bench fixtures need a C compiler (`cc`); install gcc and run the bench again"
        );
    }
    let perf = probe("perf", &["--version"]);
    let perf_trace = if perf.ready() {
        // A dry run: perf trace needs the raw_syscalls tracepoints and tracefs access.
        match output_of(Command::new("perf").args(["trace", "-s", "--", "true"])) {
            Some(_) => perf.clone(),
            None => Tool::Missing {
                why: "`perf trace -s -- true` failed on this kernel".to_string(),
            },
        }
    } else {
        perf.clone()
    };
    let peers = Peers {
        perf,
        perf_trace,
        bpftrace: probe("bpftrace", &["--version"]),
        strace: probe("strace", &["-V"]),
    };
    for (name, tool) in [
        ("perf", &peers.perf),
        ("perf trace", &peers.perf_trace),
        ("bpftrace", &peers.bpftrace),
        ("strace", &peers.strace),
    ] {
        println!("xtask: bench: {name}: {}", tool.describe());
    }
    Ok(peers)
}

/// A tool is ready when its version command runs: Debian's `perf` wrapper, for one, is
/// installed but fails when no perf matches the running kernel.
fn probe(program: &str, version_args: &[&str]) -> Tool {
    if which(program).is_none() {
        return Tool::Missing {
            why: format!("`{program}` is not installed"),
        };
    }
    match output_of(Command::new(program).args(version_args)) {
        Some(out) => Tool::Ready {
            version: out.lines().next().unwrap_or("").trim().to_string(),
        },
        None => Tool::Missing {
            why: format!("`{program} {}` failed", version_args.join(" ")),
        },
    }
}

/// `apt-get update && apt-get install -y PACKAGES`, as `cargo xtask setup` does; failures
/// are reported and the bench goes on without those tools. (The bench runs as root, so
/// no sudo here.)
fn apt_install(packages: &[&str]) {
    println!(
        "xtask: bench: installing missing tools: {}",
        packages.join(" ")
    );
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        cmd
    };
    // A stale third-party source makes `update` fail while the Debian archive updated
    // fine, so only the install decides.
    if let Err(err) = util::run(&mut apt(&["update"])) {
        println!("xtask: warning: {err:#}; trying the install anyway");
    }
    let mut install = apt(&["install", "-y"]);
    install.args(packages);
    if let Err(err) = util::run(&mut install) {
        // One unavailable package fails the whole install: retry one by one so the
        // others still arrive.
        println!("xtask: warning: {err:#}; installing the packages one by one");
        for package in packages {
            if let Err(err) = util::run(apt(&["install", "-y"]).arg(package)) {
                println!("xtask: warning: {err:#}; rows needing {package} will be skipped");
            }
        }
    }
}
