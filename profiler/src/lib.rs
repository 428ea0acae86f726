//! `profiler`: a system-wide sampling profiler for Linux on eBPF, as a library with one
//! entry point, [`main`], which the binary (`main.rs`) calls, and the parsers of bytes
//! others control ([`parsers`]), which the fuzz targets drive.
//!
//! The pipeline, one folder a stage, each importing only the stages before it and the
//! base modules (`config`; `process`; `sys`; and the model, the `profiler_model` crate):
//! `app::preflight` checks, `collect` gathers (unwinding each sample with `unwind`),
//! `convert` symbolizes once (`symbolize`) into profiles, `analysis` reads them for
//! findings, and `output` writes files and the summary. [`run`] is that sequence.

mod analysis;
mod app;
mod collect;
mod config;
mod convert;
mod output;
mod process;
mod symbolize;
mod sys;
mod unwind;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use profiler_model::{Profile, ProfileKind, RunFacts, pprof_read};

use crate::analysis::findings::Analysis;
use crate::app::preflight;
use crate::config::cli::{self, Invocation};
use crate::config::{Config, ReportConfig, Target};
use crate::output::OutputDir;
use crate::output::html;
use crate::output::strings::escape_terminal_lines;
use crate::output::terminal::{self, Style};
use crate::sys::{console, fdlimit};

pub use crate::symbolize::worker::NotingAllocator;

/// The binary's allocator in the unit tests too: the symbolization workers they start are
/// the test binary, and a test checks that a worker notes a failed allocation.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: NotingAllocator = NotingAllocator;

/// The parsers of bytes others control, for the fuzz targets in `fuzz/`: they drive the
/// very code the binary runs.
pub mod parsers {
    pub use crate::process::perfmap::read_capped;
    pub use crate::symbolize::debuginfo::{ElfFacts, build_id_candidates, debuglink_candidates};
    pub use crate::symbolize::gopclntab::GoPclnTab;
    pub use crate::symbolize::inflation;
    pub use crate::unwind::sections::{MAX_SECTION_BYTES, UnwindSections};
}

/// The whole program, as the `profiler` binary runs it (with [`NotingAllocator`] as its
/// global allocator): a symbolization worker, or a run or report as the command line says.
pub fn main() -> ExitCode {
    // A symbolization worker the profiler started (see `symbolize::worker`): not an
    // option of the command line, and never listed by `--help`.
    if std::env::args_os().nth(1).as_deref() == Some(symbolize::worker::WORKER_ARG.as_ref()) {
        return symbolize::worker::serve();
    }
    let invocation = match cli::parse() {
        Ok(invocation) => invocation,
        // A value our own parsers refused (a duration too long, ...) is one line, like
        // every other error; its first line says it all.
        Err(err) if err.kind() == clap::error::ErrorKind::ValueValidation => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or_default();
            console::eprint_line(&format!(
                "profiler: error: {}",
                first.strip_prefix("error: ").unwrap_or(first)
            ));
            return ExitCode::from(2);
        }
        Err(err) => {
            // clap prints usage, --help and --version itself, with the right exit code.
            err.exit();
        }
    };
    let result = match &invocation {
        Invocation::Profile(config) => {
            init_logging(config.verbose);
            run(config)
        }
        Invocation::Report(report) => {
            init_logging(false);
            report_again(report)
        }
    };
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(err) if console::reader_went_away(&err) => ExitCode::FAILURE,
        Err(err) => {
            let err = fdlimit::explain(err);
            console::eprint_line(&escape_terminal_lines(&format!("profiler: error: {err:#}")));
            ExitCode::FAILURE
        }
    }
}

/// How a run or report that got as far as writing its outputs ended.
struct Outcome {
    /// Files that could not be written (or, for `report`, read), each already reported
    /// on stderr.
    write_failures: usize,
    /// The exit status when every file was written: the launched command's, else 0.
    status: u8,
}

impl Outcome {
    fn exit_code(&self) -> ExitCode {
        if self.write_failures > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::from(self.status)
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
        // Log lines carry paths and names the targets chose: escaped, as every terminal
        // sink escapes them.
        .format(|buf, record| {
            use std::io::Write;
            let message = escape_terminal_lines(&record.args().to_string());
            writeln!(buf, "[{} {}] {message}", record.level(), record.target())
        })
        .parse_filters(filters)
        .parse_env("PROFILER_LOG")
        .init();
}

/// Profiles as `config` says; the exit status is the launched command's (see
/// [`collect::session::StopReason::exit_status`]) unless an output could not be written.
fn run(config: &Config) -> Result<Outcome> {
    if config.profiles.heap && config.target == Target::Host {
        bail!(
            "the heap profile needs a target (--pid PID or -- COMMAND): a uprobe on every \
             allocation of every process would stall the host"
        );
    }
    preflight::check_privileges()?;
    // A profile this kernel cannot collect is left out with its line; the rest runs.
    let (config, mut kernel) = preflight::check_kernel(config)?;
    for line in &kernel.refused {
        console::eprint_line(&format!("profiler: {line}"));
    }
    let config = &config;
    if let Target::Pids(pids) = &config.target {
        preflight::check_pids(pids)?;
    }
    let config = &config.claim_output_dir()?;
    let out_dir = preflight::prepare_output_dir(&config.output_dir)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(collect::session::run(config, kernel.btf.take()))?;

    let (profiles, name_notes) = convert::profiles(&outcome, config);
    log::debug!(
        "profiles built {:?} after the window",
        outcome.window_end.elapsed()
    );
    let mut analysis = Analysis::of(&profiles, config.small_io);
    analysis.jit_maps_asked = config.jit_maps;
    // The report is written beside the other files, on a thread of its own: it is the
    // largest of them, and the end of the run is what the user waits for.
    let mut written = Vec::new();
    let mut write_failures = 0;
    std::thread::scope(|scope| {
        let page = config.formats.html.then(|| {
            scope.spawn(|| {
                let live = html::live_facts();
                html::write(&profiles, &analysis, live, html::LIVE_SOURCE, &out_dir)
            })
        });
        for profile in &profiles {
            let results = output::write_profile(profile, &out_dir, &config.formats);
            write_failures += output::note_results(results, &mut written);
        }
        if let Some(page) = page {
            let page = page
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            write_failures += output::note_results([page], &mut written);
        }
    });
    log::debug!(
        "files written {:?} after the window",
        outcome.window_end.elapsed()
    );

    let style = Style::for_stdout();
    let mut text = terminal::render(&profiles, &analysis, config.top, &style);
    let files = match write_failures {
        0 => "all files written".to_owned(),
        1 => "one file could not be written (see above), the others written".to_owned(),
        n => format!("{n} files could not be written (see above), the others written"),
    };
    text.push_str(&format!("\n{}\n", outcome.kernel_cost.describe()));
    for line in kernel.summary_lines() {
        text.push_str(&format!("{line}\n"));
    }
    for note in &name_notes {
        text.push_str(&format!("{note}\n"));
    }
    text.push_str(&format!(
        "finished: {files} {} ms after the window closed\n",
        outcome.window_end.elapsed().as_millis()
    ));
    text.push_str(&terminal::files(&config.output_dir, &written, &style));
    console::print(&text)?;
    Ok(Outcome {
        write_failures,
        status: outcome.stop.exit_status(),
    })
}

/// `profiler report DIR`: the summary and `report.html` again, from the pprof files of an
/// earlier run. Reads and writes files only, so it needs no privileges.
///
/// Each file is read on its own: one that cannot be used gets its error line, and the
/// others are still reported.
fn report_again(report: &ReportConfig) -> Result<Outcome> {
    let dir = &report.dir;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut profiles: Vec<Profile> = Vec::new();
    let mut failures = 0;
    for kind in ProfileKind::ALL {
        let path = dir.join(format!("{}.pb.gz", kind.name()));
        if path.symlink_metadata().is_err() {
            continue;
        }
        match pprof_read::load(&path, kind) {
            Ok(profile) => profiles.push(profile),
            Err(err) => {
                eprintln!(
                    "profiler: error: {}",
                    escape_terminal_lines(&format!("{err:#}"))
                );
                failures += 1;
            }
        }
    }
    if profiles.is_empty() && failures == 0 {
        bail!(
            "{} holds none of cpu.pb.gz, io.pb.gz, block.pb.gz and heap.pb.gz: give the output directory \
             of a run that wrote pprof files",
            dir.display()
        );
    }
    if profiles.is_empty() {
        // Every file had its error line; an empty report would only hide that.
        return Ok(Outcome {
            write_failures: failures,
            status: 0,
        });
    }
    let analysis = Analysis::of(&profiles, report.small_io);
    // The host facts come from the profiles' comments: this machine may not be the one
    // that was profiled.
    let source = format!("the pprof files in {}", dir.display());
    let mut written = Vec::new();
    let page = OutputDir::open(dir)
        .with_context(|| format!("cannot open {}", dir.display()))
        .and_then(|out| html::write(&profiles, &analysis, RunFacts::default(), &source, &out));
    failures += output::note_results([page], &mut written);
    let style = Style::for_stdout();
    let mut text = terminal::render(&profiles, &analysis, report.top, &style);
    text.push('\n');
    text.push_str(&terminal::files(dir, &written, &style));
    console::print(&text)?;
    Ok(Outcome {
        write_failures: failures,
        status: 0,
    })
}
