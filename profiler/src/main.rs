//! `profiler`: a system-wide sampling profiler for Linux on eBPF.

mod analysis;
mod block_profile;
mod cli;
mod config;
mod cpu_profile;
mod cpustat;
mod io_profile;
mod launch;
mod output;
mod preflight;
mod probes;
mod procmaps;
mod profile;
mod selfcost;
mod session;
mod stacks;
mod symbolize;
mod tracefs;
mod unwind;

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::{Config, Target};

fn main() -> ExitCode {
    let config = match cli::parse() {
        Ok(config) => config,
        Err(err) => {
            // clap prints usage, --help and --version itself, with the right exit code.
            err.exit();
        }
    };
    init_logging(config.verbose);
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("profiler: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Warnings by default; with `-v`, debug detail from the profiler and its kernel programs
/// (whose aya-log records carry the `profiler_ebpf` target), but not from libraries.
fn init_logging(verbose: bool) {
    let filters = if verbose {
        "warn,profiler=debug,profiler_ebpf=debug"
    } else {
        "warn"
    };
    env_logger::Builder::new()
        .format_timestamp(None)
        .parse_filters(filters)
        .parse_env("PROFILER_LOG")
        .init();
}

fn run(config: &Config) -> Result<()> {
    preflight::check_privileges()?;
    preflight::check_btf(&preflight::btf_path())?;
    if let Target::Pids(pids) = &config.target {
        preflight::check_pids(pids)?;
    }
    preflight::prepare_output_dir(&config.output_dir)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(session::run(config))?;

    let mut resolver = stacks::StackResolver::new(&outcome.stacks, &outcome.processes);
    let mut written = Vec::new();
    let seconds = outcome.duration.as_secs_f64();
    if config.profiles.cpu {
        let profile = cpu_profile::build(&outcome, config, &mut resolver);
        written.extend(output::write_profile(&profile, &config.output_dir)?);
        print!("{}", output::summary::render(&profile, config.top));
        println!();
    }
    if config.profiles.io {
        let profile = io_profile::build(&outcome, config, &mut resolver);
        written.extend(output::write_profile(&profile, &config.output_dir)?);
        let sites = analysis::io::sites(&profile);
        let findings = analysis::io::small_io(&sites, config.small_io, seconds);
        println!("io profile: calls (count)");
        for comment in &profile.comments {
            println!("  {comment}");
        }
        print!(
            "{}",
            output::io_summary::render(&sites, &findings, seconds, config.top)
        );
        println!();
    }
    if config.profiles.block {
        let profile = block_profile::build(&outcome, config, &mut resolver);
        written.extend(output::write_profile(&profile, &config.output_dir)?);
        let per_process = analysis::block::by_process(&profile);
        let futexes = analysis::block::by_futex(&profile);
        print!(
            "{}",
            output::block_summary::render(&profile, &per_process, &futexes, config.top)
        );
        println!();
    }
    println!("{}", outcome.kernel_cost.describe());
    println!(
        "finished: all files written {} ms after the window closed",
        outcome.window_end.elapsed().as_millis()
    );
    println!("wrote:");
    for path in &written {
        println!("  {}", path.display());
    }
    if let Some(pprof) = written
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "gz"))
    {
        println!("open with: go tool pprof -http=: {}", pprof.display());
    }
    Ok(())
}
