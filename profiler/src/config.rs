//! The run's settings as plain data: the core never sees clap.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// What to profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every process on the host.
    Host,
    /// These processes, their threads, and children they fork during the run.
    Pids(Vec<u32>),
    /// A command to launch and profile with its descendants until it exits.
    Command(Vec<OsString>),
}

/// Everything a profiling run needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to profile.
    pub target: Target,
    /// How long to profile; `None` runs until Ctrl-C or the command's exit.
    pub duration: Option<Duration>,
    /// Samples per second on each CPU.
    pub frequency: u64,
    /// Where the results go.
    pub output_dir: PathBuf,
    /// Rows in each table of the terminal summary.
    pub top: usize,
    /// Show kernel-side logs and debug detail.
    pub verbose: bool,
}
