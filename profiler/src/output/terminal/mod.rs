//! The text printed at the end of a run (and by `profiler report`): the run's facts once,
//! each profile's summary, the CPU memory hot spots, and where every file went and how to
//! open it; colored only when stdout is a terminal. Each profile kind's part has a file:
//! [`summary`] (functions by self and total), [`processes`] (the CPU by process, which a
//! CPU summary shows first), [`io`] (call sites, small-I/O findings), [`block`] (waits by
//! process and contended futexes).

pub mod block;
pub mod heap;
pub mod io;
pub mod offcpu;
pub mod paths;
pub mod processes;
pub mod summary;

use std::fmt::Write;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use profiler_model::{Comment, Profile, ProfileKind};

use self::summary::shorten;
use crate::analysis::cpu::{self, MemoryHotSpot};
use crate::analysis::finding::{Fact, Reading, Text};
use crate::analysis::findings::Analysis;
use crate::analysis::words;
use crate::output::strings::{escape_terminal, escape_terminal_lines};

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colors when stdout is a terminal and `NO_COLOR` is unset (<https://no-color.org>):
    /// escape codes in a file or a pipe would only be noise.
    pub fn for_stdout() -> Self {
        Self {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// No styling.
    #[cfg(test)]
    pub fn plain() -> Self {
        Self { color: false }
    }

    fn paint(&self, sgr: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Bold.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dimmed, for secondary text.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Styles summary text line by line: profile titles, table headings, findings (`* `)
    /// and their fixes stand out.
    pub fn summary(&self, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + 256);
        for line in text.split_inclusive('\n') {
            let (body, newline) = match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            };
            let trimmed = body.trim_start();
            let styled = if body.contains(" profile: ") && !body.starts_with(' ') {
                self.paint("1;36", body)
            } else if !body.starts_with(' ') && body.ends_with(':') {
                self.paint("1", body)
            } else if trimmed.starts_with("* ") {
                self.paint("33", body)
            } else if trimmed.starts_with("fix:") {
                self.paint("32", body)
            } else {
                body.to_owned()
            };
            out.push_str(&styled);
            out.push_str(newline);
        }
        out
    }
}

/// The summaries of `profiles` with what `analysis` found, `top` rows per table.
///
/// The `run:` comment every profile starts with is printed once, first, rather than once per
/// profile, and so is the `unwinding:` comment, which covers every profile's stacks.
pub fn render(profiles: &[Profile], analysis: &Analysis, top: usize, style: &Style) -> String {
    let mut out = String::new();
    let run = profiles
        .first()
        .and_then(|p| p.comments.first())
        .filter(|c| matches!(c, Comment::Run { .. }));
    if let Some(run) = run {
        out.push_str(&style.bold(&escape_terminal(&run.text())));
        out.push('\n');
    }
    let unwinding = profiles
        .iter()
        .flat_map(|p| &p.comments)
        .find(|c| matches!(c, Comment::Unwinding(_)));
    if let Some(unwinding) = unwinding {
        out.push_str(&escape_terminal(&unwinding.text()));
        out.push('\n');
    }
    if run.is_some() || unwinding.is_some() {
        out.push('\n');
    }
    for profile in profiles {
        let text = match profile.kind {
            ProfileKind::Io => {
                let mut text = String::from("io profile: calls (count)\n");
                for comment in profile
                    .comments
                    .iter()
                    .filter(|c| summary::shown_in_terminal(c))
                {
                    let _ = writeln!(text, "  {}", escape_terminal(&comment.text()));
                }
                // The findings are ranked; like every other list here, show the top ones.
                let shown = &analysis.small_io[..analysis.small_io.len().min(top)];
                text.push_str(&io::render(
                    &analysis.io_sites,
                    shown,
                    analysis.io_seconds,
                    top,
                ));
                let more = analysis.small_io.len() - shown.len();
                if more > 0 {
                    let _ = writeln!(
                        text,
                        "  ({more} more small-I/O hot paths: --top {} lists them all)",
                        analysis.small_io.len()
                    );
                }
                text
            }
            ProfileKind::Block => {
                let mut text = block::render(
                    profile,
                    &analysis.blocked,
                    analysis.idle_delay,
                    &analysis.locks,
                    top,
                );
                text.push_str(&block::go_section(&analysis.go_waits, top));
                text
            }
            ProfileKind::Heap => heap::render(
                profile,
                &analysis.heap_sites,
                &analysis.small_allocations,
                &analysis.leak_suspects,
                top,
            ),
            ProfileKind::OffCpu => {
                offcpu::render(profile, analysis.offcpu.as_deref().unwrap_or(&[]), top)
            }
            ProfileKind::Cpu => {
                let mut text = summary::render(profile, top);
                text.push('\n');
                text.push_str(&memory_section(&analysis.memory));
                text.push_str(&go_syscall_section(analysis.go_syscalls.as_ref()));
                text.push_str(&unnamed_jit_section(analysis));
                text
            }
        };
        // Every target string above was escaped where it was written; this catches any
        // that a future table forgets, before styling adds the only escapes we mean.
        out.push_str(&style.summary(&escape_terminal_lines(&text)));
        out.push('\n');
    }
    out.push_str(&style.bold(&findings_line(analysis)));
    out.push('\n');
    out
}

/// Go's read/write syscalls as a CPU hot spot, with the calling Go functions and the fix;
/// empty when they are not one.
fn go_syscall_section(spot: Option<&crate::analysis::go_cpu::GoSyscallHotSpot>) -> String {
    let Some(spot) = spot.map(words::go_syscalls) else {
        return String::new();
    };
    format!(
        "Go small I/O: {}\n    fix:  {}\n",
        brief(&spot.title),
        spot.hint
    )
}

/// The JVM and Node.js processes whose CPU samples are mostly in unnamed JIT code, with
/// what names it; empty when there are none.
fn unnamed_jit_section(analysis: &Analysis) -> String {
    let findings = analysis.unnamed_jit_findings();
    if findings.is_empty() {
        return String::new();
    }
    let mut out = String::from("JIT code without names:\n");
    for finding in &findings {
        let _ = writeln!(out, "  * {}", brief(&finding.title));
        let _ = writeln!(out, "    fix:  {}", finding.hint);
    }
    out
}

/// The allocator and garbage-collector hot spots of the CPU profile, with their fixes.
fn memory_section(spots: &[MemoryHotSpot]) -> String {
    let mut out = String::new();
    if spots.is_empty() {
        let _ = writeln!(
            out,
            "Allocation and garbage collection: under {:.0}% of the CPU samples.",
            cpu::MIN_SHARE * 100.0
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Allocation and garbage collection hot spots (at least {:.0}% of the CPU samples):",
        cpu::MIN_SHARE * 100.0
    );
    for spot in spots.iter().map(words::memory) {
        let _ = writeln!(out, "  * {}", brief(&spot.title));
        line(&mut out, "    ", spot.details_of(Fact::Callers));
        let _ = writeln!(out, "    fix:  {}", spot.hint);
    }
    out
}

/// A finding's words in the summary: the brief reading, long names cut, what a target
/// wrote escaped.
pub(crate) fn brief(text: &Text) -> String {
    text.render(Reading::Brief, &shorten, &escape_terminal)
}

/// [`brief`] with names whole, for lines that have room for them.
pub(crate) fn brief_whole(text: &Text) -> String {
    text.render(Reading::Brief, &escape_terminal, &escape_terminal)
}

/// Writes each of `texts` ([`brief`]) on a line of its own after `indent`.
pub(crate) fn line<'a>(out: &mut String, indent: &str, texts: impl Iterator<Item = &'a Text>) {
    for text in texts {
        let _ = writeln!(out, "{indent}{}", brief(text));
    }
}

/// One line counting the findings of every kind.
fn findings_line(analysis: &Analysis) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let contended = analysis.contended().count() + analysis.go_mutexes().count();
    let channels = analysis.go_channels().count();
    format!(
        "Findings: {}, {}, {}, {}{}.",
        plural(
            analysis.small_io.len(),
            "small-I/O hot path",
            "small-I/O hot paths"
        ),
        plural(contended, "contended lock", "contended locks"),
        plural(channels, "busy Go channel", "busy Go channels"),
        plural(
            analysis.memory.len(),
            "allocation/GC hot spot",
            "allocation/GC hot spots"
        ),
        heap_findings(analysis),
    ) + &offcpu_findings(analysis)
        + &unnamed_jit_findings(analysis)
}

/// The unnamed-JIT part of the findings line, when there is any.
fn unnamed_jit_findings(analysis: &Analysis) -> String {
    match analysis.unnamed_jit.len() {
        0 => String::new(),
        1 => " 1 JIT runtime with unnamed code.".to_owned(),
        n => format!(" {n} JIT runtimes with unnamed code."),
    }
}

/// The off-CPU findings' part of the findings line, when the off-CPU profile was collected.
fn offcpu_findings(analysis: &Analysis) -> String {
    if analysis.offcpu.is_none() {
        return String::new();
    }
    let n = analysis.offcpu_findings().count();
    format!(
        " {n} off-CPU wait{} with a fix.",
        if n == 1 { "" } else { "s" }
    )
}

/// The heap findings' part of the findings line, when the heap profile was collected.
fn heap_findings(analysis: &Analysis) -> String {
    if analysis.heap_sites.is_empty() {
        return String::new();
    }
    format!(
        ", {} with many small allocations, {} leak suspect{}",
        analysis.small_allocations.len(),
        analysis.leak_suspects.len(),
        if analysis.leak_suspects.len() == 1 {
            ""
        } else {
            "s"
        }
    )
}

/// The closing lines: the files written, grouped by kind, each with how to open it.
pub fn files(dir: &Path, written: &[PathBuf], style: &Style) -> String {
    let kinds: [(&str, &str); 5] = [
        (".pb.gz", "pprof"),
        (
            ".folded",
            "folded stacks: flamegraph.pl, inferno or speedscope read them",
        ),
        (".svg", "flame graphs: open in a browser"),
        (".speedscope.json", "drag onto https://www.speedscope.app"),
        (".html", "the report"),
    ];
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    for (suffix, what) in kinds {
        let paths: Vec<&PathBuf> = written
            .iter()
            .filter(|p| name(p).ends_with(suffix))
            .collect();
        let Some(first) = paths.first() else { continue };
        let how = match suffix {
            ".pb.gz" => format!("go tool pprof -http=: {}", first.display()),
            ".html" => {
                let absolute = std::fs::canonicalize(first).unwrap_or_else(|_| first.to_path_buf());
                format!("open file://{} in a browser", absolute.display())
            }
            _ => what.to_owned(),
        };
        let names: Vec<String> = paths.iter().map(|p| name(p)).collect();
        rows.push((names.join(" "), how));
    }
    let mut out = format!("{}\n", style.bold(&format!("wrote to {}:", dir.display())));
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    for (names, how) in rows {
        let _ = writeln!(out, "  {names:<width$}  {}", style.dim(&how));
    }
    out
}

#[cfg(test)]
mod tests {
    use profiler_model::fixture;

    use super::*;
    use crate::analysis::cpu::Kind;
    use crate::config::SmallIo;

    fn with_run_line() -> Profile {
        let mut p = fixture::profile();
        p.comments
            .insert(0, Comment::read("run: host h, kernel k, 2 CPUs".to_owned()));
        p
    }

    #[test]
    fn unwinding_is_printed_once_after_the_run() {
        let mut cpu = with_run_line();
        cpu.comments
            .push(Comment::read("unwinding: call graph fp".to_owned()));
        let mut io = cpu.clone();
        io.kind = ProfileKind::Io;
        let profiles = [cpu, io];
        let analysis = Analysis::of(&profiles, SmallIo::default());
        let text = render(&profiles, &analysis, 5, &Style::plain());
        assert!(
            text.starts_with("run: host h, kernel k, 2 CPUs\nunwinding: call graph fp\n\n"),
            "{text}"
        );
        assert_eq!(text.matches("unwinding:").count(), 1, "{text}");
    }

    #[test]
    fn run_facts_are_printed_once() {
        let profiles = [with_run_line()];
        let analysis = Analysis::of(&profiles, SmallIo::default());
        let text = render(&profiles, &analysis, 5, &Style::plain());
        assert!(
            text.starts_with("run: host h, kernel k, 2 CPUs\n\ncpu profile: "),
            "{text}"
        );
        assert_eq!(text.matches("run: host h").count(), 1, "{text}");
        assert!(
            text.contains("  window 2s\n"),
            "other comments stay: {text}"
        );
        assert!(
            text.contains("Allocation and garbage collection: under 5%"),
            "{text}"
        );
        assert!(
            text.contains("Findings: 0 small-I/O hot paths, 0 contended locks"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn small_io_findings_are_cut_at_top() {
        use crate::analysis::io::{IoSite, SmallIoFinding, SmallIoKind};
        use crate::analysis::language::Language;
        let finding = |caller: &str| SmallIoFinding {
            site: IoSite {
                syscall: Some(profiler_model::IoSyscall::Read),
                comm: "app".into(),
                caller: caller.into(),
                path: vec!["main".into(), caller.into()],
                descriptors: vec![],
                calls: 5000,
                bytes: 5000,
                nanos: 0,
                errors: 0,
                requested: Some(5000),
                short: 0,
                eagain: 0,
                turns: None,
                language: Language::C,
            },
            calls_per_sec: 5000.0,
            kind: SmallIoKind::SmallRequests { calls_saved: 4999 },
            hint: "buffer".into(),
        };
        let mut io = fixture::profile();
        io.kind = ProfileKind::Io;
        let analysis = Analysis {
            io_sites: vec![finding("a").site],
            small_io: vec![finding("a"), finding("b"), finding("c")],
            io_seconds: 1.0,
            ..Analysis::default()
        };
        let text = render(&[io], &analysis, 2, &Style::plain());
        assert!(
            text.contains("* read in a: ") && text.contains("* read in b: "),
            "{text}"
        );
        assert!(!text.contains("* read in c: "), "{text}");
        assert!(
            text.contains("  (1 more small-I/O hot paths: --top 3 lists them all)"),
            "{text}"
        );
        assert!(text.contains("Findings: 3 small-I/O hot paths"), "{text}");
    }

    #[test]
    fn memory_hot_spots_are_listed_with_the_fix() {
        let spot = MemoryHotSpot {
            kind: Kind::Allocation,
            value: 12,
            total: 100,
            functions: vec![("malloc".into(), 8), ("free".into(), 4)],
            callers: vec![("churn".into(), 12)],
            hint: "make fewer, larger allocations".into(),
        };
        let text = memory_section(&[spot]);
        assert!(
            text.contains(
                "* allocation: 12.0% of CPU samples (12 of 100) in malloc (8.0%), free (4.0%)"
            ),
            "{text}"
        );
        assert!(text.contains("called from churn (12.0%)"), "{text}");
        assert!(text.contains("fix:  make fewer"), "{text}");
    }

    #[test]
    fn go_syscalls_name_every_caller_with_the_fix() {
        use crate::analysis::go_cpu::{GoSyscallHotSpot, HINT};
        let spot = GoSyscallHotSpot {
            value: 30,
            total: 100,
            callers: vec![("main.readLoop".into(), 20), ("main.write".into(), 10)],
            io: Default::default(),
        };
        assert_eq!(
            go_syscall_section(Some(&spot)),
            format!(
                "Go small I/O: 30.0% of CPU samples in syscall.Read/Write, called from \
                 main.readLoop (20.0%), main.write (10.0%)\n    fix:  {HINT}\n"
            )
        );
        let nobody = GoSyscallHotSpot {
            callers: vec![],
            ..spot
        };
        assert!(go_syscall_section(Some(&nobody)).contains("called from ?\n"));
        assert_eq!(go_syscall_section(None), "");
    }

    #[test]
    fn colors_only_when_asked() {
        let color = Style { color: true };
        let text = "cpu profile: samples (count)\nTop 5 functions:\n  * x\n    fix: y\n  plain\n";
        let styled = color.summary(text);
        assert!(styled.contains("\x1b[1;36mcpu profile: samples (count)\x1b[0m\n"));
        assert!(styled.contains("\x1b[1mTop 5 functions:\x1b[0m\n"));
        assert!(styled.contains("\x1b[33m  * x\x1b[0m"));
        assert!(styled.contains("\x1b[32m    fix: y\x1b[0m"));
        assert!(styled.ends_with("  plain\n"));
        assert_eq!(Style::plain().summary(text), text);
    }

    #[test]
    fn files_are_grouped_with_how_to_open_them() {
        let dir = Path::new("out");
        let written: Vec<PathBuf> = [
            "cpu.pb.gz",
            "cpu.folded",
            "cpu.svg",
            "io.pb.gz",
            "io.folded",
            "io.svg",
            "report.html",
        ]
        .iter()
        .map(|f| dir.join(f))
        .collect();
        let text = files(dir, &written, &Style::plain());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "wrote to out:");
        assert!(lines[1].starts_with("  cpu.pb.gz io.pb.gz "), "{text}");
        assert!(
            lines[1].ends_with("go tool pprof -http=: out/cpu.pb.gz"),
            "{text}"
        );
        assert!(lines[4].starts_with("  report.html "), "{text}");
        assert!(lines[4].contains("file://") && lines[4].ends_with("report.html in a browser"));
        // The hints line up (they hold no double spaces themselves).
        let starts: std::collections::HashSet<usize> =
            lines[1..].iter().map(|l| l.rfind("  ").unwrap()).collect();
        assert_eq!(starts.len(), 1, "{text}");
    }
}
