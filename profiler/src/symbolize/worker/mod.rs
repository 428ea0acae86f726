//! Names files in worker processes, each under a memory limit and a time budget, so that a
//! file a user crafted can neither take the profiler's memory nor its time.
//!
//! A worker is the profiler binary run again (`/proc/self/exe`) with [`WORKER_ARG`]. Before
//! it executes, its data (heap and anonymous memory) is limited with `RLIMIT_DATA` (not
//! `RLIMIT_AS`, which would count the read-only mappings of large legitimate debug files),
//! it dumps no core, and the kernel kills it when its parent dies. It reads one [`Setup`]
//! line on standard input, then one [`Job`] line per file, and answers each on descriptor 3
//! with one [`Answer`] line (standard output stays free for whatever a library prints).
//!
//! The parent runs [`WORKERS`] at a time and gives each file [`Budgets::per_file`] and the
//! whole run [`Budgets::per_run`]: a worker over either is killed (and a new one started
//! for the files left), and a worker that dies on a file (its allocation failed at its
//! limit) is replaced the same way. Those files keep their frames unnamed, the reason
//! carried as [`Unnamed`].

mod pool;
mod serve;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use profiler_model::{Line, Unnamed};

use crate::symbolize::debuginfo::{DebugOrigin, Refusals};
use crate::symbolize::debuginfod::{Activity, DebuginfodSettings};
use crate::symbolize::file_names::{self, NoName};
use crate::symbolize::inflation::Refusal;

pub use pool::name_files;
pub use serve::{NotingAllocator, serve};

/// The hidden first argument that makes the profiler binary a symbolization worker.
pub const WORKER_ARG: &str = "__symbolize-worker";
/// Workers run at once: one a CPU of a small machine, and each may take its memory limit.
pub const WORKERS: usize = 2;
/// How long one file may take to be named.
pub const FILE_BUDGET: Duration = Duration::from_secs(10);
/// How long naming all the files of a run may take.
pub const RUN_BUDGET: Duration = Duration::from_secs(30);
/// The data (heap and anonymous memory) a worker may take: `RLIMIT_DATA`.
pub const MEMORY_BUDGET: u64 = 1 << 30;
/// The largest answer read from a worker: a file's frames, a few lines an offset.
const MAX_ANSWER: usize = 128 << 20;

/// What every worker of a run is told once: where separate debug files are looked for.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    /// Debug roots from `--debuginfo-dir` (the system's is added by the worker).
    pub roots: Vec<PathBuf>,
    /// The debuginfod client to make, when servers are named and not given up on.
    pub debuginfod: Option<DebuginfodSettings>,
    /// Whether the worker logs its debug detail on the parent's standard error.
    pub verbose: bool,
}

/// One file to name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The path the worker opens it by (`/proc/<parent>/fd/N`: the parent's held file).
    pub open: String,
    /// The path its process named it by.
    pub name: String,
    /// The file offsets to name.
    pub offsets: Vec<u64>,
}

/// A line of a frame, as it crosses the pipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct WireLine {
    function: String,
    file: Option<String>,
    line: u32,
}

/// Why an offset has no name, as it crosses the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum WireWhy {
    NoSymbol,
    Unreadable,
    NoDebugInfo,
    OverBudget,
}

/// Where separate debug information came from, as it crosses the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum WireOrigin {
    BuildIdDir,
    DebugLink,
    Debuginfod,
}

/// A worker's answer for one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Answer {
    frames: Vec<Result<Vec<WireLine>, WireWhy>>,
    debug_origin: Option<WireOrigin>,
    refused: Vec<Refusal>,
    /// What the worker's finder did for this file besides naming it.
    accounting: Accounting,
}

/// What a worker's finder did for one file besides naming it, which the parent adds to its
/// own for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accounting {
    /// What its debuginfod client did, when it has one.
    pub debuginfod: Option<Activity>,
    /// What it refused while looking for debug information.
    pub refusals: Refusals,
}

/// The names of one file's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Per offset, in order: its frames (innermost first), or why it has none.
    pub frames: Vec<Result<Vec<Line>, Unnamed>>,
    /// Where separate debug information came from, if it did.
    pub debug_origin: Option<DebugOrigin>,
    /// Debug information that was not read, and why.
    pub refused: Vec<Refusal>,
}

/// How naming one file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The worker answered.
    Named(Named),
    /// The file was not named, and why: over its time budget, its worker died on it, or the
    /// run's budget was spent; with a few words for the summary.
    Stopped(Unnamed, String),
    /// No worker could be started: the caller names the file itself.
    NoWorker,
}

/// The time and memory a run's workers get.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Per file.
    pub per_file: Duration,
    /// For all the files of the run, from the first.
    pub per_run: Duration,
    /// `RLIMIT_DATA` of each worker.
    pub memory: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            per_file: FILE_BUDGET,
            per_run: RUN_BUDGET,
            memory: MEMORY_BUDGET,
        }
    }
}

/// How a worker is started: the profiler binary with [`WORKER_ARG`], or, in unit tests,
/// the test binary running the worker's entry test.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Default for WorkerCommand {
    #[cfg(not(test))]
    fn default() -> Self {
        Self {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![WORKER_ARG.to_owned()],
            env: Vec::new(),
        }
    }

    #[cfg(test)]
    fn default() -> Self {
        tests::harness_command()
    }
}

/// The names [`file_names::name_offsets`] gave, as they cross the pipe.
fn answer_of(names: file_names::FileNames, accounting: Accounting) -> Answer {
    let frames = names
        .frames
        .into_iter()
        .map(|frame| match frame {
            Ok(lines) => Ok(lines
                .into_iter()
                .map(|l| WireLine {
                    function: l.function,
                    file: l.file,
                    line: l.line,
                })
                .collect()),
            Err(NoName::Blazesym(_)) => Err(WireWhy::NoSymbol),
            Err(NoName::Unreadable) => Err(WireWhy::Unreadable),
            Err(NoName::NoDebugInfo) => Err(WireWhy::NoDebugInfo),
            Err(NoName::OverBudget) => Err(WireWhy::OverBudget),
        })
        .collect();
    Answer {
        frames,
        debug_origin: names.debug_origin.map(|o| match o {
            DebugOrigin::BuildIdDir => WireOrigin::BuildIdDir,
            DebugOrigin::DebugLink => WireOrigin::DebugLink,
            DebugOrigin::Debuginfod => WireOrigin::Debuginfod,
        }),
        refused: names.refused,
        accounting,
    }
}

/// Why an offset has no name, as a frame says it.
pub fn unnamed_of(why: NoName) -> Unnamed {
    match why {
        NoName::Blazesym(_) => Unnamed::NoSymbol,
        NoName::Unreadable => Unnamed::FileUnreadable,
        NoName::NoDebugInfo => Unnamed::NoDebugInfo,
        NoName::OverBudget => Unnamed::OverMemoryBudget,
    }
}

/// The names of a worker's answer, `offsets` long whatever the worker sent.
fn named_of(answer: Answer, offsets: usize) -> Named {
    let mut frames: Vec<Result<Vec<Line>, Unnamed>> = answer
        .frames
        .into_iter()
        .take(offsets)
        .map(|frame| match frame {
            Ok(lines) if !lines.is_empty() => Ok(lines
                .into_iter()
                .map(|l| Line {
                    function: l.function,
                    file: l.file,
                    line: l.line,
                })
                .collect()),
            Ok(_) => Err(Unnamed::NoSymbol),
            Err(WireWhy::NoSymbol) => Err(Unnamed::NoSymbol),
            Err(WireWhy::Unreadable) => Err(Unnamed::FileUnreadable),
            Err(WireWhy::NoDebugInfo) => Err(Unnamed::NoDebugInfo),
            Err(WireWhy::OverBudget) => Err(Unnamed::OverMemoryBudget),
        })
        .collect();
    frames.resize(offsets, Err(Unnamed::FileUnreadable));
    Named {
        frames,
        debug_origin: answer.debug_origin.map(|o| match o {
            WireOrigin::BuildIdDir => DebugOrigin::BuildIdDir,
            WireOrigin::DebugLink => DebugOrigin::DebugLink,
            WireOrigin::Debuginfod => DebugOrigin::Debuginfod,
        }),
        refused: answer.refused,
    }
}
