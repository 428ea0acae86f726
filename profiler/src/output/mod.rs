//! Everything a finished [`Profile`] is turned into: pprof files, folded stacks, SVG flame
//! graphs, speedscope files, the HTML report and the terminal summary.
//!
//! In: the profiles and their [`crate::analysis::findings::Analysis`]. Out: files created
//! safely in the output directory ([`safe_file`]) and the text for stdout ([`terminal`]).
//! The pprof codec is the model's ([`profiler_model::pprof`]); its reader is the way back:
//! `profiler report` decodes the pprof files, bounded.

pub mod flamegraph;
pub mod folded;
pub mod html;
pub mod safe_file;
pub mod speedscope;
pub mod strings;
pub mod terminal;

use std::io::Write;
use std::path::PathBuf;

use profiler_model::{Profile, pprof};

use crate::config::Formats;
use crate::output::strings::escape_terminal_lines;

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

#[cfg(test)]
mod tests {
    use profiler_model::{Sample, fixture};

    use super::*;
    use crate::output::folded::process_frame;

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
            stack: p.samples[0].stack,
            values: vec![],
            labels: vec![],
            program: profiler_model::ProgramLabels::NONE,
            waker: None,
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
