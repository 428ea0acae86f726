//! The run's settings as plain data: [`cli`] parses the flags with clap into a [`Config`]
//! (or a [`ReportConfig`]), and every stage reads only these structs.

pub mod cli;
pub mod ring_buffer;

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// What to profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every process on the host.
    Host,
    /// These processes, their threads, the processes below them when the run starts
    /// (unless `--pid-only`), and the children all of them fork during the run.
    Pids(Vec<u32>),
    /// A command to launch and profile with its descendants until it exits.
    Command(Vec<OsString>),
}

/// Which profiles a run collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileSet {
    /// Stacks sampled at a fixed frequency on every CPU.
    pub cpu: bool,
    /// Read/write-family syscalls and calls between descriptors (sendfile...) by call stack.
    pub io: bool,
    /// Futex waits by call stack.
    pub block: bool,
    /// Allocations and memory in use by call stack (not by default: a uprobe traps on
    /// every allocation).
    pub heap: bool,
    /// Goroutine waits of Go processes by goroutine stack and wait reason (written into
    /// the blocking profile; not by default: a uprobe traps on every goroutine park and
    /// wake, which costs a busy Go service more than it can pay in production).
    pub goroutines: bool,
    /// Every wait off CPU by call stack, reason and waker (not by default: it runs on every
    /// context switch of the host).
    pub offcpu: bool,
}

impl Default for ProfileSet {
    fn default() -> Self {
        Self {
            cpu: true,
            io: true,
            block: true,
            goroutines: false,
            heap: false,
            offcpu: false,
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
            // Below the common buffer sizes (4096 for stdio and Go's bufio, 8192), not on
            // one: a bufio.Reader filling its 4096 bytes sat on the old 4096 line and was
            // told to wrap itself in bufio.
            max_avg_bytes: 2000,
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

/// How the heap profile sees a launched command's native allocations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeapVia {
    /// An interposer loaded with `LD_PRELOAD` counts them without trapping; uprobes stay
    /// for what it cannot see (a static or setuid program, allocators called by their own
    /// names, Go).
    #[default]
    Preload,
    /// Uprobes on the allocators' entry points, as for `--pid`.
    Uprobes,
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
    /// The names `--format` accepts, for tests that name formats.
    #[cfg(test)]
    pub const NAMES: [&'static str; 5] = ["pprof", "folded", "svg", "html", "speedscope"];

    /// The set named by `names` (each one of [`Self::NAMES`]; others are ignored).
    #[cfg(test)]
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
    /// Whether `--pid` targets include the processes already below them when the run
    /// starts (not `--pid-only`); the children they fork during the run are always followed.
    pub existing_descendants: bool,
    /// How long to profile; `None` runs until Ctrl-C or the command's exit.
    pub duration: Option<Duration>,
    /// Samples per second on each CPU.
    pub frequency: u64,
    /// How user stacks are taken.
    pub call_graph: CallGraph,
    /// Bytes of stack-sample ring buffer (`--ring-buffer`), a power of two within
    /// [`ring_buffer::MIN_BYTES`] and [`ring_buffer::MAX_BYTES`]; `None` sizes it from the
    /// host's CPUs and the sampling rate.
    pub ring_buffer_bytes: Option<u32>,
    /// How the heap profile counts a launched command's native allocations.
    pub heap_via: HeapVia,
    /// The profiles to collect.
    pub profiles: ProfileSet,
    /// Thresholds of the small-I/O findings.
    pub small_io: SmallIo,
    /// Where the results go.
    pub output_dir: PathBuf,
    /// Whether `output_dir` is the timestamped default rather than a `-o` choice, so
    /// [`Config::claim_output_dir`] may move it to a free name.
    pub output_dir_is_default: bool,
    /// The files to write.
    pub formats: Formats,
    /// Rows in each table of the terminal summary.
    pub top: usize,
    /// Show kernel-side logs and debug detail.
    pub verbose: bool,
    /// Run the launched command as root even under sudo, instead of as the invoking user.
    pub run_as_root: bool,
    /// Directories of separate debug files searched before the system's (`--debuginfo-dir`).
    pub debuginfo_dirs: Vec<PathBuf>,
    /// Ask each HotSpot JVM among the targets for a perf map through its attach mechanism
    /// (`--jit-maps`): it signals the JVM, so it is asked for.
    pub jit_maps: bool,
    /// Walk CPython programs' Python frames at each sample (off with
    /// `--no-python-frames`).
    pub python_frames: bool,
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
    /// Whether records of process `pid` are the profiler's own and not wanted: its own
    /// work is never the target's (in a targeted run it is a target for the instant it
    /// forks the command), and a whole-host profile leaves it out too; what it costs has
    /// its own line. The kernel programs already skip it (`PROFILER_TGID`); this is for
    /// what reaches userspace otherwise (processes seen at start, records of a fork).
    pub fn is_own_process(&self, pid: u32) -> bool {
        pid == std::process::id()
    }

    /// This config with its default output directory created under a name no other run
    /// holds: `profile-YYYYMMDD-HHMMSS`, else the first free `-2`, `-3`, ... A directory
    /// given with `-o` is kept as it is (it may hold an earlier run on purpose).
    ///
    /// # Errors
    /// When no such directory can be created.
    pub fn claim_output_dir(&self) -> Result<Config> {
        if !self.output_dir_is_default {
            return Ok(self.clone());
        }
        let output_dir = create_unique_dir(&self.output_dir).with_context(|| {
            format!(
                "cannot create output directory {}: choose another directory with -o",
                self.output_dir.display()
            )
        })?;
        Ok(Config {
            output_dir,
            output_dir_is_default: false,
            ..self.clone()
        })
    }
}

/// Most suffixes tried before giving up: far more runs than can start in one second.
const MAX_SUFFIX: u32 = 1000;

/// Creates `base`, or `base-2`, `base-3`, ... when taken, and returns the one created.
/// Each name is claimed by `mkdir` itself, which fails when the name exists, so two runs
/// started in the same second never share a directory.
fn create_unique_dir(base: &Path) -> Result<PathBuf> {
    for n in 1..=MAX_SUFFIX {
        let candidate = if n == 1 {
            base.to_path_buf()
        } else {
            let mut name = base.as_os_str().to_owned();
            name.push(format!("-{n}"));
            PathBuf::from(name)
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => {
                give_to_invoking_user(&candidate);
                return Ok(candidate);
            }
            Err(err) if err.kind() == ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err.into()),
        }
    }
    bail!(
        "{} and {MAX_SUFFIX} suffixed names are all taken",
        base.display()
    )
}

/// Hands a directory this run just created to the user who ran sudo, as the README
/// says: through a descriptor of the directory itself, not following a link, and only if
/// it is still root's (the one made here).
fn give_to_invoking_user(dir: &Path) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Some((uid, gid)) = crate::sys::sudo::invoking_user() else {
        return;
    };
    let Ok(handle) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
    else {
        return;
    };
    if handle.metadata().is_ok_and(|m| m.uid() == 0) {
        // SAFETY: a descriptor held open above.
        unsafe { libc::fchown(handle.as_raw_fd(), uid, gid) };
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

    #[test]
    fn unique_dirs_take_the_next_free_suffix() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("profile-20260101-000000");
        assert_eq!(create_unique_dir(&base).unwrap(), base);
        let second = create_unique_dir(&base).unwrap();
        assert_eq!(second, tmp.path().join("profile-20260101-000000-2"));
        std::fs::create_dir(tmp.path().join("profile-20260101-000000-3")).unwrap();
        let fourth = create_unique_dir(&base).unwrap();
        assert_eq!(fourth, tmp.path().join("profile-20260101-000000-4"));
        assert!(create_unique_dir(&tmp.path().join("missing/parent")).is_err());
    }
}
