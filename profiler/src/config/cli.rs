//! Command-line flags, parsed with clap into a plain [`Config`] (a profiling run) or
//! [`ReportConfig`] (`profiler report DIR`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{
    CallGraph, Config, Formats, HeapVia, ProfileSet, ReportConfig, SmallIo, Target, ring_buffer,
};

/// A profile `--profiles` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProfileArg {
    /// CPU samples.
    Cpu,
    /// Read/write-family syscalls, and sendfile, splice, tee, vmsplice, copy_file_range.
    Io,
    /// Futex waits.
    Block,
    /// Allocations and memory in use (needs --pid or a command).
    Heap,
    /// Goroutine waits of Go programs.
    Goroutines,
    /// Every wait off CPU, with its reason and waker.
    Offcpu,
}

/// How `--heap-via` counts a command's native allocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HeapViaArg {
    /// An LD_PRELOAD interposer: no trap per call.
    Preload,
    /// Uprobes on the allocators, as with --pid.
    Uprobes,
}

/// A file kind `--format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// `{name}.pb.gz`.
    Pprof,
    /// `{name}.folded`.
    Folded,
    /// `{name}.svg`.
    Svg,
    /// `report.html`.
    Html,
    /// `{name}.speedscope.json`.
    Speedscope,
}

/// Rows per table of the terminal summary unless `--top` says otherwise: few enough that
/// the three profiles and the findings fit on one screen.
const DEFAULT_TOP: usize = 5;

/// A system-wide sampling profiler for Linux on eBPF.
///
/// With no target it profiles the whole host; `--pid` profiles processes (their threads
/// and descendants); `-- COMMAND` launches a command and profiles it until it exits.
/// `profiler report DIR` shows an earlier run's results again.
#[derive(Debug, Parser)]
#[command(
    name = "profiler",
    version,
    about,
    max_term_width = 100,
    // `profiler report DIR` takes none of the run's flags: mixing them is a mistake to report.
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    subcommand: Option<Sub>,

    /// Profile this process, its threads and its descendants: those it has when the run
    /// starts and the children forked during it (repeatable or comma-separated).
    #[arg(short, long = "pid", value_name = "PID", value_delimiter = ',')]
    pids: Vec<u32>,

    /// With --pid: leave out the processes the named ones have already forked (follow only
    /// their threads and the children they fork during the run).
    #[arg(long, requires = "pids")]
    pid_only: bool,

    /// How long to profile, e.g. 500ms, 30s, 2m [default: until Ctrl-C or the command exits].
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Samples per second on each CPU.
    #[arg(short = 'F', long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    frequency: u64,

    /// How user stacks are taken: `dwarf[,SIZE]` copies SIZE bytes of stack per sample
    /// (default 16384, at most 65536) and unwinds them from the files' call frame
    /// information; `fp` walks frame pointers only.
    #[arg(long, value_name = "MODE", default_value = "dwarf", value_parser = parse_call_graph)]
    call_graph: CallGraph,

    /// Size of the stack-sample ring buffer, e.g. 64M or 1G, rounded up to a power of two
    /// (1M to 1G) [default: one second of samples at the expected rate]; a run that lost
    /// samples to a full one says what to rerun with.
    #[arg(long, value_name = "SIZE", value_parser = ring_buffer::parse)]
    ring_buffer: Option<u32>,

    /// Profiles to collect, comma-separated: cpu, io, block (futex waits), goroutines
    /// (goroutine waits of Go programs, by uprobes on the Go runtime; into the blocking
    /// profile; not in the default set: a uprobe traps on every goroutine park and wake),
    /// heap (needs --pid or a command, and is not in the default set: a uprobe traps on
    /// every allocation), offcpu (every wait off CPU, by reason and waker; not in the
    /// default set: it runs on every context switch of the host).
    #[arg(long, value_delimiter = ',', default_value = "cpu,io,block")]
    profiles: Vec<ProfileArg>,

    /// How the heap profile counts a launched command's native allocations: `preload`
    /// loads an interposer with LD_PRELOAD (no trap per call; uprobes stay for static or
    /// setuid programs and Go), `uprobes` traps on every call as with --pid.
    #[arg(long, value_name = "HOW", default_value = "preload")]
    heap_via: HeapViaArg,

    /// Files to write, comma-separated: pprof, folded, svg, html (report.html), speedscope.
    #[arg(
        long = "format",
        value_name = "FORMATS",
        value_delimiter = ',',
        default_value = "pprof,folded,svg,html"
    )]
    formats: Vec<FormatArg>,

    #[command(flatten)]
    small_io: SmallIoArgs,

    /// Directory for the results [default: ./profile-YYYYMMDD-HHMMSS].
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,

    /// Rows in each table of the terminal summary.
    #[arg(long, default_value_t = DEFAULT_TOP)]
    top: usize,

    /// Show kernel-side logs and debug detail.
    #[arg(short, long)]
    verbose: bool,

    /// Under sudo, run the command as root rather than as the user who ran sudo.
    #[arg(long)]
    run_as_root: bool,

    /// A directory of separate debug files to search before /usr/lib/debug, laid out as it
    /// is: `.build-id/xx/rest.debug`, or debug-link targets under the binary's directory
    /// (repeatable).
    #[arg(long = "debuginfo-dir", value_name = "DIR")]
    debuginfo_dirs: Vec<PathBuf>,

    /// Ask each HotSpot JVM (JDK 17+) among the targets to write a perf map of its JIT code,
    /// as `jcmd PID Compiler.perfmap` does (its attach mechanism: a file in its working
    /// directory and a SIGQUIT), at start and again when unnamed JIT code runs, so Java
    /// methods are named; interpreted code shows as `Interpreter`. Stacks reach their
    /// roots only if the JVM runs with -XX:+PreserveFramePointer.
    #[arg(long)]
    jit_maps: bool,

    /// Leave CPython programs' samples with the interpreter's native frames: no walk of
    /// their Python frames at each sample (up to 64 frames read from the thread's memory
    /// in the kernel; BENCHMARKS.md measures what it costs).
    #[arg(long)]
    no_python_frames: bool,

    /// A command to launch and profile, with its arguments.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The thresholds of the small-I/O findings, shared by a run and `report`.
#[derive(Debug, clap::Args)]
struct SmallIoArgs {
    /// A call site whose average I/O call moves at most this many bytes counts as small I/O.
    #[arg(long, value_name = "BYTES", default_value_t = SmallIo::default().max_avg_bytes)]
    small_io_bytes: u64,

    /// A small-I/O site is flagged when it makes at least this many calls per second.
    #[arg(long, value_name = "CALLS", default_value_t = SmallIo::default().min_calls_per_sec)]
    small_io_rate: f64,
}

impl SmallIoArgs {
    fn thresholds(&self) -> SmallIo {
        SmallIo {
            max_avg_bytes: self.small_io_bytes,
            min_calls_per_sec: self.small_io_rate,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Print the summary and write DIR/report.html again from the pprof files of an earlier
    /// run (cpu.pb.gz, io.pb.gz, block.pb.gz); needs no root.
    Report {
        /// The earlier run's output directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,

        #[command(flatten)]
        small_io: SmallIoArgs,

        /// Rows in each table of the terminal summary.
        #[arg(long, default_value_t = DEFAULT_TOP)]
        top: usize,
    },
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Profile, then write and summarize the profiles.
    Profile(Config),
    /// Summarize an earlier run again from its files.
    Report(ReportConfig),
}

fn parse_call_graph(text: &str) -> Result<CallGraph, String> {
    let (mode, size) = match text.split_once(',') {
        Some((mode, size)) => (mode, Some(size)),
        None => (text, None),
    };
    match (mode, size) {
        ("fp", None) => Ok(CallGraph::Fp),
        ("dwarf", None) => Ok(CallGraph::default()),
        ("dwarf", Some(size)) => {
            let max = CallGraph::MAX_STACK_BYTES;
            match size.parse::<u32>() {
                Ok(bytes) if (8..=max).contains(&bytes) => Ok(CallGraph::Dwarf {
                    stack_bytes: bytes & !7,
                }),
                _ => Err(format!(
                    "the stack size must be a number of bytes from 8 to {max}, as in dwarf,32768"
                )),
            }
        }
        _ => Err("expected dwarf, dwarf,SIZE or fp".to_owned()),
    }
}

/// The longest `--duration`: tokio's timer clamps deadlines to about 2.2 years ahead (it
/// would end a longer run early) and the clock cannot add much larger ones at all, so a
/// round limit well inside both is refused at parsing, before anything is loaded.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration.is_zero() {
        return Err("the duration must be longer than zero".to_owned());
    }
    if duration > MAX_DURATION {
        return Err(
            "the longest duration accepted is 365days: give a shorter one, or none \
                    to run until Ctrl-C"
                .to_owned(),
        );
    }
    Ok(duration)
}

/// `pids` in their first order with repeats dropped: `--pid 5 --pid 5,5` is one target.
fn fold_duplicates(pids: Vec<u32>) -> Vec<u32> {
    let mut seen = std::collections::HashSet::new();
    pids.into_iter().filter(|&pid| seen.insert(pid)).collect()
}

/// Parses the process's arguments; on bad flags clap prints usage and exits.
pub fn parse() -> Result<Invocation, clap::Error> {
    from_args(std::env::args_os())
}

fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, clap::Error> {
    let args = Args::try_parse_from(args)?;
    if let Some(Sub::Report { dir, small_io, top }) = args.subcommand {
        return Ok(Invocation::Report(ReportConfig {
            dir,
            small_io: small_io.thresholds(),
            top,
        }));
    }
    let target = match (args.pids.is_empty(), args.command.is_empty()) {
        (true, true) => Target::Host,
        (false, true) => Target::Pids(fold_duplicates(args.pids)),
        (true, false) => Target::Command(args.command),
        (false, false) => {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--pid and a command cannot be combined: profile either running processes or a new command\n",
            ));
        }
    };
    Ok(Invocation::Profile(Config {
        target,
        existing_descendants: !args.pid_only,
        duration: args.duration,
        frequency: args.frequency,
        call_graph: args.call_graph,
        ring_buffer_bytes: args.ring_buffer,
        heap_via: match args.heap_via {
            HeapViaArg::Preload => HeapVia::Preload,
            HeapViaArg::Uprobes => HeapVia::Uprobes,
        },
        profiles: ProfileSet {
            cpu: args.profiles.contains(&ProfileArg::Cpu),
            io: args.profiles.contains(&ProfileArg::Io),
            block: args.profiles.contains(&ProfileArg::Block),
            heap: args.profiles.contains(&ProfileArg::Heap),
            goroutines: args.profiles.contains(&ProfileArg::Goroutines),
            offcpu: args.profiles.contains(&ProfileArg::Offcpu),
        },
        small_io: args.small_io.thresholds(),
        output_dir_is_default: args.output.is_none(),
        output_dir: args.output.unwrap_or_else(default_output_dir),
        formats: Formats {
            pprof: args.formats.contains(&FormatArg::Pprof),
            folded: args.formats.contains(&FormatArg::Folded),
            svg: args.formats.contains(&FormatArg::Svg),
            html: args.formats.contains(&FormatArg::Html),
            speedscope: args.formats.contains(&FormatArg::Speedscope),
        },
        top: args.top,
        verbose: args.verbose,
        run_as_root: args.run_as_root,
        debuginfo_dirs: args.debuginfo_dirs,
        jit_maps: args.jit_maps,
        python_frames: !args.no_python_frames,
    }))
}

/// `profile-YYYYMMDD-HHMMSS` in the current directory, in UTC.
fn default_output_dir() -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // "2026-11-27T22:08:51Z" -> "20261127-220851"
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    PathBuf::from(format!("profile-{}-{}", &digits[..8], &digits[8..14]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(args: &[&str]) -> Result<Invocation, clap::Error> {
        from_args(
            std::iter::once("profiler")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    /// A profiling run's config; an error for anything else.
    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        match invocation(args)? {
            Invocation::Profile(config) => Ok(config),
            Invocation::Report(r) => panic!("{args:?} parsed as a report: {r:?}"),
        }
    }

    fn report(args: &[&str]) -> Result<ReportConfig, clap::Error> {
        match invocation(args)? {
            Invocation::Report(r) => Ok(r),
            Invocation::Profile(c) => panic!("{args:?} parsed as a run: {c:?}"),
        }
    }

    #[test]
    fn no_target_is_the_host() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.target, Target::Host);
        assert_eq!(config.frequency, 99);
        assert!(config.output_dir.to_string_lossy().starts_with("profile-"));
        assert!(config.output_dir_is_default);
        assert!(!parse(&["-o", "out"]).unwrap().output_dir_is_default);
        assert_eq!(config.profiles, ProfileSet::default());
        assert_eq!(config.formats, Formats::default());
        assert_eq!(config.top, DEFAULT_TOP);
    }

    #[test]
    fn formats_are_chosen_by_name() {
        let config = parse(&["--format", "html,speedscope"]).unwrap();
        assert_eq!(
            config.formats,
            Formats {
                pprof: false,
                folded: false,
                svg: false,
                html: true,
                speedscope: true
            }
        );
        assert!(
            parse(&["--format", "pprof", "--format", "svg"])
                .unwrap()
                .formats
                .svg
        );
        assert!(parse(&["--format", "png"]).is_err());
    }

    #[test]
    fn report_is_a_subcommand() {
        let r = report(&["report", "out/run1"]).unwrap();
        assert_eq!(r.dir, PathBuf::from("out/run1"));
        assert_eq!(r.top, DEFAULT_TOP);
        assert_eq!(r.small_io, SmallIo::default());
        let r = report(&["report", "--top", "20", "--small-io-bytes", "1", "d"]).unwrap();
        assert_eq!((r.top, r.small_io.max_avg_bytes), (20, 1));
        // A directory is required, and a run's flags do not belong to `report`.
        assert!(invocation(&["report"]).is_err());
        assert!(invocation(&["--pid", "1", "report", "d"]).is_err());
        assert!(invocation(&["report", "d", "--pid", "1"]).is_err());
    }

    #[test]
    fn a_command_named_report_is_still_a_command() {
        let config = parse(&["--", "report", "x"]).unwrap();
        assert_eq!(
            config.target,
            Target::Command(vec!["report".into(), "x".into()])
        );
        let config = parse(&["-d", "1s", "--", "sleep", "1"]).unwrap();
        assert_eq!(config.duration, Some(Duration::from_secs(1)));
    }

    #[test]
    fn profiles_are_chosen_by_name() {
        let config = parse(&["--profiles", "io"]).unwrap();
        assert_eq!(
            config.profiles,
            ProfileSet {
                cpu: false,
                io: true,
                block: false,
                goroutines: false,
                heap: false,
                offcpu: false,
            }
        );
        let go = parse(&["--profiles", "goroutines"]).unwrap().profiles;
        assert!(go.goroutines && !go.block);
        assert!(parse(&["--profiles", "block,cpu"]).unwrap().profiles.block);
        assert!(
            parse(&["--profiles", "heap", "-p", "1"])
                .unwrap()
                .profiles
                .heap
        );
        assert!(!parse(&[]).unwrap().profiles.heap);
        assert!(parse(&["--profiles", "memory"]).is_err());
    }

    #[test]
    fn pids_repeat_and_split_on_commas() {
        let config = parse(&["--pid", "1,2", "-p", "3", "--duration", "500ms"]).unwrap();
        assert_eq!(config.target, Target::Pids(vec![1, 2, 3]));
        assert_eq!(config.duration, Some(Duration::from_millis(500)));
    }

    #[test]
    fn repeated_pids_are_one_target() {
        let config = parse(&["--pid", "5", "--pid", "5,5", "-p", "2,5"]).unwrap();
        assert_eq!(config.target, Target::Pids(vec![5, 2]));
    }

    #[test]
    fn pid_only_leaves_existing_descendants_out_and_needs_a_pid() {
        assert!(parse(&["--pid", "5"]).unwrap().existing_descendants);
        assert!(
            !parse(&["--pid", "5", "--pid-only"])
                .unwrap()
                .existing_descendants
        );
        assert!(parse(&["--pid-only"]).is_err());
    }

    #[test]
    fn durations_stop_at_a_year() {
        let year = parse(&["--duration", "365days"]).unwrap();
        assert_eq!(year.duration, Some(MAX_DURATION));
        let err = parse(&["--duration", "500000000000years"]).unwrap_err();
        assert!(
            err.to_string().contains("longest duration accepted is"),
            "{err}"
        );
        assert!(parse(&["--duration", "366days"]).is_err());
        // The largest accepted duration fits the clock the run's deadline is taken on.
        assert!(
            tokio::time::Instant::now()
                .checked_add(MAX_DURATION)
                .is_some()
        );
    }

    #[test]
    fn command_after_double_dash() {
        let config = parse(&["-F", "999", "-o", "out", "--", "sleep", "--help"]).unwrap();
        assert_eq!(
            config.target,
            Target::Command(vec!["sleep".into(), "--help".into()])
        );
        assert_eq!(config.frequency, 999);
        assert_eq!(config.output_dir, PathBuf::from("out"));
        assert!(!config.run_as_root);
        assert!(parse(&["--run-as-root", "--", "id"]).unwrap().run_as_root);
        assert!(config.debuginfo_dirs.is_empty());
        let dirs = parse(&["--debuginfo-dir", "/a", "--debuginfo-dir", "/b"]).unwrap();
        assert_eq!(
            dirs.debuginfo_dirs,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&["--pid", "1", "--", "ls"]).is_err());
        assert!(parse(&["--duration", "0s"]).is_err());
        assert!(parse(&["--duration", "soon"]).is_err());
        assert!(parse(&["-F", "0"]).is_err());
    }

    #[test]
    fn call_graph_in_perf_s_words() {
        assert_eq!(parse(&[]).unwrap().call_graph, CallGraph::default());
        assert_eq!(
            parse(&["--call-graph", "dwarf,4096"]).unwrap().call_graph,
            CallGraph::Dwarf { stack_bytes: 4096 }
        );
        assert_eq!(
            parse(&["--call-graph", "fp"]).unwrap().call_graph,
            CallGraph::Fp
        );
        for bad in ["bogus", "dwarf,0", "dwarf,70000", "fp,8", "dwarf,"] {
            assert!(parse(&["--call-graph", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn ring_buffer_size_is_a_flag() {
        assert_eq!(parse(&[]).unwrap().ring_buffer_bytes, None);
        let sized = |size: &str| parse(&["--ring-buffer", size]).unwrap().ring_buffer_bytes;
        assert_eq!(sized("32M"), Some(32 << 20));
        assert_eq!(sized("100M"), Some(128 << 20));
        // Refused with the reason on clap's one error line.
        let err = parse(&["--ring-buffer", "2G"]).unwrap_err().to_string();
        assert!(err.contains("largest ring buffer, 1024M"), "{err}");
        assert!(parse(&["--ring-buffer", "lots"]).is_err());
    }
}
