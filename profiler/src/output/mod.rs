//! Everything a finished [`Profile`] is turned into: pprof files, folded stacks, SVG flame
//! graphs, speedscope files, the HTML report and the terminal summary.
//!
//! In: the profiles and their [`crate::analysis::findings::Analysis`]. Out: files created
//! safely in the output directory ([`safe_file`]) and the text for stdout ([`terminal`]).
//! [`pprof_read`] is the way back: `profiler report` decodes the pprof files, bounded.

pub mod flamegraph;
pub mod folded;
pub mod html;
pub mod pprof;
mod pprof_mappings;
pub mod pprof_read;
pub mod proto;
pub mod safe_file;
pub mod speedscope;
pub mod strings;
pub mod terminal;
pub mod wire;

use std::io::Write;
use std::path::PathBuf;

use crate::config::Formats;
use crate::output::strings::escape_terminal_lines;
use crate::profile::Profile;

pub use safe_file::OutputDir;

/// Writes the per-profile files `formats` asks for into `dir`: `{name}.pb.gz`,
/// `{name}.folded`, `{name}.svg` and `{name}.speedscope.json`, each on its own: one
/// result per file, its path or why it could not be written.
/// (`report.html` covers every profile at once: [`html::write`] writes it.)
///
/// Under sudo, every file is handed to the invoking user, so the results are not left
/// owned by root.
pub fn write_profile(
    profile: &Profile,
    dir: &OutputDir,
    formats: &Formats,
) -> Vec<anyhow::Result<PathBuf>> {
    type Writer = fn(&Profile, &mut dyn Write) -> anyhow::Result<()>;
    let writers: [(bool, &str, Writer); 4] = [
        (formats.pprof, "pb.gz", pprof::write),
        (formats.folded, "folded", folded::write),
        (formats.svg, "svg", flamegraph::write),
        (formats.speedscope, "speedscope.json", speedscope::write),
    ];
    writers
        .into_iter()
        .filter(|(wanted, _, _)| *wanted)
        .map(|(_, extension, write)| {
            let name = format!("{}.{extension}", profile.kind.name());
            dir.write(&name, |out| write(profile, out))
        })
        .collect()
}

/// Adds the paths written among `results` to `written` and prints one
/// `profiler: error: ...` line for each that failed; returns how many failed.
///
/// An output that cannot be written should not cost the others, nor the summary.
pub fn note_results(
    results: impl IntoIterator<Item = anyhow::Result<PathBuf>>,
    written: &mut Vec<PathBuf>,
) -> usize {
    let mut failed = 0;
    for result in results {
        match result {
            Ok(path) => written.push(path),
            Err(err) => {
                // An error can quote a path or a name a target chose.
                eprintln!(
                    "profiler: error: {}",
                    escape_terminal_lines(&format!("{err:#}"))
                );
                failed += 1;
            }
        }
    }
    failed
}

/// A small profile shared by the output tests.
#[cfg(test)]
pub(crate) mod fixture {
    use std::time::{Duration, SystemTime};

    use crate::profile::{Label, Line, Location, Mapping, Profile, ProfileBuilder, ValueType};

    /// Nanoseconds of CPU time each sample stands for.
    pub const PERIOD: i64 = 10_000_000;

    /// A line without source information.
    pub fn line(function: &str) -> Line {
        Line {
            function: function.to_owned(),
            file: None,
            line: 0,
        }
    }

    /// A user-space location at `address` with the given lines, innermost first.
    pub fn location(address: u64, mapping: Option<usize>, lines: Vec<Line>) -> Location {
        Location {
            address,
            mapping,
            lines,
            kind: crate::profile::FrameKind::Function,
        }
    }

    /// A cpu profile starting at 1_700_000_000 s, lasting 2 s, with samples/cpu types
    /// (cpu the default) and three stacks:
    ///
    /// - `main -> a` 3 samples, pid 100 tid 101 comm `app`
    /// - `main -> run -> b -> a` 1 sample, pid 100 tid 102 comm `app`, where `b` is inlined
    ///   into `run` (one location, two lines)
    /// - `main -> run -> b` 6 samples, pid 200 tid 200, no comm
    pub fn profile() -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            crate::profile::ProfileKind::Cpu,
            vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            Duration::from_secs(2),
        );
        b.default_sample_type(1)
            .period(ValueType::new("cpu", "nanoseconds"), PERIOD)
            .comment("window 2s")
            .comment("lost 0 samples");
        let app = b.mapping(Mapping {
            start: 0x1000,
            limit: 0x9000,
            file_offset: 0,
            path: "/usr/bin/app".into(),
            build_id: Some("abcdef0123".into()),
        });
        let main = b.location(location(
            0x1100,
            Some(app),
            vec![Line {
                function: "main".into(),
                file: Some("main.c".into()),
                line: 10,
            }],
        ));
        let a = b.location(location(
            0x1200,
            Some(app),
            vec![Line {
                function: "a".into(),
                file: Some("a.c".into()),
                line: 5,
            }],
        ));
        let run_b = b.location(location(
            0x1300,
            Some(app),
            vec![
                Line {
                    function: "b".into(),
                    file: Some("b.c".into()),
                    line: 20,
                },
                Line {
                    function: "run".into(),
                    file: Some("run.c".into()),
                    line: 7,
                },
            ],
        ));
        let s1 = b.stack(vec![a, main]);
        let s2 = b.stack(vec![a, run_b, main]);
        let s3 = b.stack(vec![run_b, main]);
        let app_labels = |tid| {
            vec![
                Label::num("pid", 100),
                Label::num("tid", tid),
                Label::str("comm", "app"),
            ]
        };
        b.add_sample(s1, &[3, 3 * PERIOD], app_labels(101));
        b.add_sample(s2, &[1, PERIOD], app_labels(102));
        b.add_sample(
            s3,
            &[6, 6 * PERIOD],
            vec![Label::num("pid", 200), Label::num("tid", 200)],
        );
        b.build()
    }

    /// A profile with the same types as [`profile`] and no samples.
    pub fn empty() -> Profile {
        ProfileBuilder::with_sample_types(
            crate::profile::ProfileKind::Cpu,
            vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        )
        .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::folded::process_frame;
    use crate::profile::Sample;

    #[test]
    fn writes_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(&dir.path().join("new")).unwrap();
        let paths: Vec<PathBuf> = write_profile(&fixture::profile(), &out, &Formats::default())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["cpu.pb.gz", "cpu.folded", "cpu.svg"]);
        for p in &paths {
            assert!(
                std::fs::metadata(p).unwrap().len() > 0,
                "{} is empty",
                p.display()
            );
        }
    }

    #[test]
    fn writes_the_formats_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let formats = Formats::from_names(&["svg", "speedscope", "html"]);
        let out = OutputDir::create(dir.path()).unwrap();
        let paths: Vec<PathBuf> = write_profile(&fixture::profile(), &out, &formats)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["cpu.svg", "cpu.speedscope.json"]);
        assert!(!dir.path().join("cpu.pb.gz").exists());
    }

    #[test]
    fn process_frame_is_folded_first_field() {
        let p = fixture::profile();
        let names: Vec<String> = p.samples.iter().map(process_frame).collect();
        assert_eq!(names, ["app", "app", "200"]);
        let unnamed = Sample {
            stack: 0,
            values: vec![],
            labels: vec![],
        };
        assert_eq!(process_frame(&unnamed), "[unknown]");
    }

    #[test]
    fn a_failed_file_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the pprof file should go makes replacing it fail.
        std::fs::create_dir(dir.path().join("cpu.pb.gz")).unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        let results = write_profile(&fixture::profile(), &out, &Formats::default());
        let mut written = Vec::new();
        assert_eq!(note_results(results, &mut written), 1);
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["cpu.folded", "cpu.svg"]);
        let err = write_profile(&fixture::profile(), &out, &Formats::default())
            .remove(0)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("cannot write") && text.contains("cpu.pb.gz"),
            "{text}"
        );
    }
}
