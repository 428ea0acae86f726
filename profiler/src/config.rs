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

/// Which profiles a run collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileSet {
    /// Stacks sampled at a fixed frequency on every CPU.
    pub cpu: bool,
    /// Read/write-family syscalls by call stack.
    pub io: bool,
    /// Futex waits by call stack.
    pub block: bool,
}

impl Default for ProfileSet {
    fn default() -> Self {
        Self {
            cpu: true,
            io: true,
            block: true,
        }
    }
}

/// When an I/O call site counts as a small-I/O hot path worth buffering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmallIo {
    /// Largest average bytes per call that is still small.
    pub max_avg_bytes: u64,
    /// Fewest calls per second that make a site hot.
    pub min_calls_per_sec: f64,
}

impl Default for SmallIo {
    fn default() -> Self {
        Self {
            max_avg_bytes: 4096,
            min_calls_per_sec: 1000.0,
        }
    }
}

/// How user stacks are taken, in perf's words (`--call-graph`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallGraph {
    /// Copy this many bytes of user stack with each sample and unwind it in userspace from
    /// the files' call frame information: needs no frame pointers.
    Dwarf {
        /// Bytes of stack copied per sample (a multiple of 8).
        stack_bytes: u32,
    },
    /// Walk frame pointers in the kernel: no copy, but code built without frame pointers
    /// hides its callers.
    Fp,
}

impl CallGraph {
    /// Bytes of stack copied per sample in DWARF mode unless `--call-graph dwarf,SIZE`
    /// says otherwise (see BENCHMARKS.md for how it was chosen).
    pub const DEFAULT_STACK_BYTES: u32 = 16384;
    /// The largest `SIZE` accepted (what the kernel programs can copy).
    pub const MAX_STACK_BYTES: u32 = profiler_common::MAX_USER_STACK_BYTES as u32;

    /// Bytes of ring buffer one sample takes at most.
    pub fn record_bytes(self) -> u64 {
        let user = match self {
            Self::Dwarf { stack_bytes } => u64::from(stack_bytes),
            Self::Fp => (profiler_common::MAX_USER_FRAMES * 8) as u64,
        };
        profiler_common::SAMPLE_FIXED_BYTES as u64 + user
    }
}

impl Default for CallGraph {
    fn default() -> Self {
        Self::Dwarf {
            stack_bytes: Self::DEFAULT_STACK_BYTES,
        }
    }
}

impl std::fmt::Display for CallGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dwarf { stack_bytes } => {
                write!(f, "dwarf, {stack_bytes} bytes of stack per sample")
            }
            Self::Fp => write!(f, "fp (frame pointers)"),
        }
    }
}

/// Which files are written for each profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// `{name}.pb.gz`, for `go tool pprof` and `profiler report`.
    pub pprof: bool,
    /// `{name}.folded`, folded stacks.
    pub folded: bool,
    /// `{name}.svg`, a static flame graph.
    pub svg: bool,
    /// `report.html`, one interactive page with every profile and the findings.
    pub html: bool,
    /// `{name}.speedscope.json`, for speedscope.app.
    pub speedscope: bool,
}

impl Formats {
    /// The names `--format` accepts.
    pub const NAMES: [&'static str; 5] = ["pprof", "folded", "svg", "html", "speedscope"];

    /// The set named by `names` (each one of [`Self::NAMES`]; others are ignored).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let has = |n: &str| names.iter().any(|s| s.as_ref() == n);
        Self {
            pprof: has("pprof"),
            folded: has("folded"),
            svg: has("svg"),
            html: has("html"),
            speedscope: has("speedscope"),
        }
    }
}

impl Default for Formats {
    /// Everything but speedscope, whose files duplicate what the report shows.
    fn default() -> Self {
        Self {
            pprof: true,
            folded: true,
            svg: true,
            html: true,
            speedscope: false,
        }
    }
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
    /// How user stacks are taken.
    pub call_graph: CallGraph,
    /// The profiles to collect.
    pub profiles: ProfileSet,
    /// Thresholds of the small-I/O findings.
    pub small_io: SmallIo,
    /// Where the results go.
    pub output_dir: PathBuf,
    /// The files to write.
    pub formats: Formats,
    /// Rows in each table of the terminal summary.
    pub top: usize,
    /// Show kernel-side logs and debug detail.
    pub verbose: bool,
}

/// What `profiler report DIR` needs: where an earlier run's pprof files are, and how to
/// summarize them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    /// The directory holding `cpu.pb.gz`, `io.pb.gz` and `block.pb.gz` (any of them).
    pub dir: PathBuf,
    /// Thresholds of the small-I/O findings.
    pub small_io: SmallIo,
    /// Rows in each table of the terminal summary.
    pub top: usize,
}

impl Config {
    /// Whether records of process `pid` are the profiler's own and not wanted: in a
    /// targeted run the profiler is a target for the instant it forks the command, and its
    /// own work is never the target's. A whole-host run shows the profiler like any process.
    pub fn is_own_process(&self, pid: u32) -> bool {
        !matches!(self.target, Target::Host) && pid == std::process::id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        let f = Formats::from_names(&["html", "speedscope"]);
        assert!(f.html && f.speedscope && !f.pprof && !f.folded && !f.svg);
        let all = Formats::from_names(&Formats::NAMES);
        assert!(all.pprof && all.folded && all.svg && all.html && all.speedscope);
        assert!(!Formats::default().speedscope && Formats::default().html);
    }
}
