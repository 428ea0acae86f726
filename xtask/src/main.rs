//! `cargo xtask`: developer tasks for the profiler workspace.
//!
//! The profiler needs an eBPF object built for `bpfel-unknown-none`, which stable
//! rustup cannot build on its own. These tasks install what is missing, build the
//! eBPF crate with a toolchain that can, embed the object into the `profiler`
//! binary, and run or test it as root. Everything here uses only std, clap, anyhow
//! and libc so that `cargo xtask --help` works with nothing but rustup stable.

mod bench;
mod build_cmd;
mod fuzz_cmd;
mod go_bin;
mod kernel_image;
mod kernel_subset;
mod kernel_test;
mod libtest_output;
mod python_3_14;
mod setup;
mod test_cmd;
mod util;
mod vm;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use kernel_image::KernelName;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Set up, build, run and test the profiler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build needs and is missing: apt packages (LLVM 22, the
    /// Debian rustc with its BPF core library) and bpf-linker 0.13.
    Setup {
        /// Also install what the tests need: Go (for `go tool pprof`) and a C compiler.
        #[arg(long)]
        for_tests: bool,
        /// Also install what `test --kernel` needs: qemu, busybox, virtme-ng (into
        /// target/virtme-ng) and Debian's 6.1 and 6.12 kernel images.
        #[arg(long)]
        for_kernels: bool,
    },
    /// Build the eBPF object (always release) and the `profiler` binary that embeds it.
    Build {
        /// Build the userspace binary in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Build in release mode and run the profiler as root (through `sudo -E` if needed).
    ///
    /// Example: cargo xtask run -- --pid 1234 --duration 30s
    Run {
        /// Accepted for symmetry with `build`; `run` always builds in release mode.
        #[arg(long)]
        release: bool,
        /// Arguments passed to the profiler, after `--`.
        #[arg(last = true, value_name = "PROFILER_ARGS")]
        args: Vec<String>,
    },
    /// Build and run the whole test suite as root, one test at a time; with `--kernel`,
    /// run the integration tests inside that Debian kernel, booted in a VM.
    ///
    /// Example: cargo xtask test --kernel 6.1 --subset ci
    Test(TestArgs),
    /// Measure the profiler against unprofiled runs and peers (perf, bpftrace, strace)
    /// and write BENCHMARKS.md. Needs root; never run by `test`.
    Bench(bench::BenchArgs),
    /// Fuzz every parser of bytes others control (pprof files, ELF unwind sections, Go's
    /// pclntab, perf maps), each for a bounded time (installs cargo-fuzz if missing; needs
    /// nightly or falls back to RUSTC_BOOTSTRAP=1). Not run by `test`.
    Fuzz {
        /// How long to fuzz each target.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Only this target (pprof_decode, elf_unwind, gopclntab, perf_map).
        #[arg(long)]
        target: Option<String>,
    },
}

#[derive(Args)]
struct TestArgs {
    /// Run the integration tests inside this Debian kernel (installed if missing), booted
    /// under qemu by virtme-ng: 6.1, 6.12, 6.1-rt, 6.12-rt, 6.1-cloud, 6.12-cloud.
    #[arg(long, value_name = "VERSION")]
    kernel: Option<KernelName>,
    /// With --kernel, only this named subset of tests (`ci`: every kernel program and
    /// probe type in about 30 minutes; see xtask/src/kernel_subset.rs).
    #[arg(long, requires = "kernel")]
    subset: Option<String>,
    /// With --kernel, only this test binary (tests/tests/NAME.rs); repeatable.
    #[arg(long = "test", value_name = "NAME", requires = "kernel")]
    binaries: Vec<String>,
    /// With --kernel, kill the VM after this many minutes (default 32 with --subset,
    /// else 240).
    #[arg(long, requires = "kernel")]
    timeout_minutes: Option<u64>,
    /// With --kernel, the guest's CPUs (the default is 2, as many as a small CI machine).
    #[arg(long, requires = "kernel", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: u32,
    /// With --kernel, run every vCPU on one host thread (qemu's `-accel tcg,thread=single`)
    /// instead of one thread each.
    #[arg(long, requires = "kernel")]
    tcg_single_thread: bool,
    /// With --kernel, libtest filters for every test binary, after `--`.
    #[arg(last = true, value_name = "FILTERS", requires = "kernel")]
    filters: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup {
            for_tests,
            for_kernels,
        } => setup::setup(for_tests).and_then(|_| {
            if for_kernels {
                kernel_test::setup_kernels()?;
            }
            Ok(0)
        }),
        Command::Build { release } => build_cmd::build(release).map(|_| 0),
        Command::Run { release: _, args } => build_cmd::run(&args),
        Command::Test(TestArgs {
            kernel: Some(kernel),
            subset,
            binaries,
            timeout_minutes,
            filters,
            cpus,
            tcg_single_thread,
        }) => kernel_test::test_kernel(kernel_test::KernelTestArgs {
            kernel,
            subset,
            binaries,
            filters,
            timeout_minutes,
            cpus,
            tcg_single_thread,
        }),
        Command::Test(_) => test_cmd::test().map(|_| 0),
        Command::Bench(args) => bench::bench(&args).map(|_| 0),
        Command::Fuzz { seconds, target } => fuzz_cmd::fuzz(seconds, target.as_deref()).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            // Keep a failing child's exit code (e.g. cargo test's 101) visible to CI.
            let code = err
                .downcast_ref::<util::CommandFailed>()
                .and_then(|failed| failed.code)
                .filter(|&code| code != 0)
                .unwrap_or(1);
            ExitCode::from(code)
        }
    }
}
