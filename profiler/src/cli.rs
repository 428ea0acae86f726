//! Command-line flags, parsed with clap into a plain [`Config`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Parser;

use crate::config::{Config, ProfileSet, SmallIo, Target};

/// A system-wide sampling profiler for Linux on eBPF.
///
/// With no target it profiles the whole host; `--pid` profiles processes (their threads
/// and the children they fork); `-- COMMAND` launches a command and profiles it until it exits.
#[derive(Debug, Parser)]
#[command(name = "profiler", version, about, max_term_width = 100)]
struct Args {
    /// Profile this process, its threads and its children (repeatable or comma-separated).
    #[arg(short, long = "pid", value_name = "PID", value_delimiter = ',')]
    pids: Vec<u32>,

    /// How long to profile, e.g. 500ms, 30s, 2m [default: until Ctrl-C or the command exits].
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Samples per second on each CPU.
    #[arg(short = 'F', long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    frequency: u64,

    /// Profiles to collect, comma-separated: cpu, io, block.
    #[arg(long, value_delimiter = ',', default_value = "cpu,io,block", value_parser = ["cpu", "io", "block"])]
    profiles: Vec<String>,

    /// A call site whose average I/O call moves at most this many bytes counts as small I/O.
    #[arg(long, value_name = "BYTES", default_value_t = SmallIo::default().max_avg_bytes)]
    small_io_bytes: u64,

    /// A small-I/O site is flagged when it makes at least this many calls per second.
    #[arg(long, value_name = "CALLS", default_value_t = SmallIo::default().min_calls_per_sec)]
    small_io_rate: f64,

    /// Directory for the results [default: ./profile-YYYYMMDD-HHMMSS].
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,

    /// Rows in each table of the terminal summary.
    #[arg(long, default_value_t = 10)]
    top: usize,

    /// Show kernel-side logs and debug detail.
    #[arg(short, long)]
    verbose: bool,

    /// A command to launch and profile, with its arguments.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration.is_zero() {
        return Err("the duration must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// Parses the process's arguments; on bad flags clap prints usage and exits.
pub fn parse() -> Result<Config, clap::Error> {
    from_args(std::env::args_os())
}

fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Config, clap::Error> {
    let args = Args::try_parse_from(args)?;
    let target = match (args.pids.is_empty(), args.command.is_empty()) {
        (true, true) => Target::Host,
        (false, true) => Target::Pids(args.pids),
        (true, false) => Target::Command(args.command),
        (false, false) => {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--pid and a command cannot be combined: profile either running processes or a new command\n",
            ));
        }
    };
    Ok(Config {
        target,
        duration: args.duration,
        frequency: args.frequency,
        profiles: ProfileSet {
            cpu: args.profiles.iter().any(|p| p == "cpu"),
            io: args.profiles.iter().any(|p| p == "io"),
            block: args.profiles.iter().any(|p| p == "block"),
        },
        small_io: SmallIo {
            max_avg_bytes: args.small_io_bytes,
            min_calls_per_sec: args.small_io_rate,
        },
        output_dir: args.output.unwrap_or_else(default_output_dir),
        top: args.top,
        verbose: args.verbose,
    })
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

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        from_args(
            std::iter::once("profiler")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn no_target_is_the_host() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.target, Target::Host);
        assert_eq!(config.frequency, 99);
        assert!(config.output_dir.to_string_lossy().starts_with("profile-"));
        assert_eq!(config.profiles, ProfileSet::default());
    }

    #[test]
    fn profiles_are_chosen_by_name() {
        let config = parse(&["--profiles", "io"]).unwrap();
        assert_eq!(
            config.profiles,
            ProfileSet {
                cpu: false,
                io: true,
                block: false
            }
        );
        assert!(parse(&["--profiles", "block,cpu"]).unwrap().profiles.block);
        assert!(parse(&["--profiles", "heap"]).is_err());
    }

    #[test]
    fn pids_repeat_and_split_on_commas() {
        let config = parse(&["--pid", "1,2", "-p", "3", "--duration", "500ms"]).unwrap();
        assert_eq!(config.target, Target::Pids(vec![1, 2, 3]));
        assert_eq!(config.duration, Some(Duration::from_millis(500)));
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
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&["--pid", "1", "--", "ls"]).is_err());
        assert!(parse(&["--duration", "0s"]).is_err());
        assert!(parse(&["--duration", "soon"]).is_err());
        assert!(parse(&["-F", "0"]).is_err());
    }
}
