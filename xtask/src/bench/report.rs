//! The bench's results as data, and their rendering into BENCHMARKS.md.
//!
//! Rows build [`Section`]s of plain strings; this file only lays them out, so the
//! Markdown format lives in one place. The file records the machine and the exact
//! command, because the figures mean nothing without them, and gathers every goal into
//! one table at the top so a missed goal cannot hide in a long section.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::stats::Spread;
use crate::util::{output_of, workspace_root};

/// Whether a goal was met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Met,
    Missed,
    /// The row was skipped or the figure could not be taken.
    NotMeasured,
}

impl Status {
    pub fn from_bool(met: bool) -> Status {
        if met { Status::Met } else { Status::Missed }
    }

    fn text(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "**missed**",
            Status::NotMeasured => "not measured",
        }
    }
}

/// One goal with what was measured against it.
#[derive(Clone, Debug)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub status: Status,
}

impl Goal {
    pub fn new(goal: impl Into<String>, measured: impl Into<String>, status: Status) -> Goal {
        Goal {
            goal: goal.into(),
            measured: measured.into(),
            status,
        }
    }
}

/// A Markdown table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.headers));
        out.push_str(&line(&vec!["---".to_string(); self.headers.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out.push('\n');
    }
}

/// One row group of the bench.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub title: String,
    /// How it was measured, one paragraph.
    pub method: String,
    pub tables: Vec<Table>,
    pub goals: Vec<Goal>,
    /// Skipped peers, caveats, derived formulas.
    pub notes: Vec<String>,
    /// Why the row could not run, when it could not.
    pub error: Option<String>,
}

impl Section {
    pub fn new(title: &str, method: impl Into<String>) -> Section {
        Section {
            title: title.to_string(),
            method: method.into(),
            ..Section::default()
        }
    }

    /// A row that failed to run: the bench exits non-zero, and the report says why.
    pub fn failed(title: &str, error: &anyhow::Error) -> Section {
        Section {
            title: title.to_string(),
            error: Some(format!("{error:#}")),
            ..Section::default()
        }
    }
}

/// The machine the figures come from.
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory: String,
    pub kernel: String,
    pub date: String,
    pub commit: String,
    /// /proc/loadavg when the report is written: other work on the machine skews figures.
    pub load: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
            .map_or_else(
                || "unknown".to_string(),
                |kib| format!("{:.1} GiB", kib / 1048576.0),
            );
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let date = output_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let commit = output_of(Command::new("git").arg("-C").arg(workspace_root()).args([
            "describe",
            "--always",
            "--dirty=+uncommitted changes",
        ]))
        .map(|s| s.trim().replace('+', " + "))
        .unwrap_or_else(|| "unknown".to_string());
        Machine {
            load: loadavg(),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            kernel,
            date,
            commit,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let parts: Vec<&str> = l.split_whitespace().take(3).collect();
            (parts.len() == 3).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Everything BENCHMARKS.md shows.
pub struct Report {
    pub machine: Machine,
    /// The command that reproduces the figures.
    pub command: String,
    /// Repetitions and durations used.
    pub settings: String,
    /// Load averages before the bench started: other work skews every figure.
    pub load_before: String,
    /// Peer tool versions (or why they are missing).
    pub tools: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        out.push_str("# Benchmarks\n\n");
        out.push_str(
            "Generated by `cargo xtask bench` (xtask/src/bench/); do not edit by hand, run it \
             again. The figures hold for this machine and this run only: compare ratios, not \
             absolute times, and rerun before comparing two builds.\n\n",
        );
        let _ = writeln!(out, "Reproduce (as root): `{}`\n", self.command);
        let _ = writeln!(out, "Settings: {}\n", self.settings);
        out.push_str("## Machine\n\n");
        let mut machine = Table::new(&["", ""]);
        for (k, v) in [
            ("CPU", m.cpu_model.clone()),
            ("CPUs (nproc)", m.cpus.to_string()),
            ("Memory", m.memory.clone()),
            ("Kernel (`uname -r`)", m.kernel.clone()),
            ("Date", m.date.clone()),
            ("Profiler source", format!("`{}`", m.commit)),
            (
                "Load average (1, 5, 15 min) before the bench / at its end",
                format!("{} / {}", self.load_before, m.load),
            ),
        ] {
            machine.row(vec![k.to_string(), v]);
        }
        for (tool, version) in &self.tools {
            machine.row(vec![tool.clone(), version.clone()]);
        }
        machine.render(&mut out);

        out.push_str("## How it measures\n\n");
        for rule in [
            "Timed rows run the same fixture unprofiled (A) and profiled (B) in alternating pairs \
             (A, B, A, B, ...). The overhead is the median of the per-pair ratios B/A, so \
             drift over the run cancels within each pair; the spread shown is the min–max \
             over the pairs.",
            "Every other figure is a median over the repetitions with its min–max; absolute \
             times are only compared within one run.",
            "Fixtures time themselves (CLOCK_MONOTONIC around their work loop), so start-up and \
             a tracer's attach time are not part of the figures. Background observers (the \
             profiler, perf record, bpftrace) are started, given time to attach, then the \
             fixture runs, then they are stopped with SIGINT.",
            "`kernel.bpf_stats_enabled` is 1 only for the rows that report the kernel programs' \
             run time (5, 6, 7; it costs every BPF program two clock reads) and 0 for the \
             overhead and accuracy rows; the previous value is restored afterwards.",
            "A missed goal is reported, not an error; a row that fails to run makes the bench \
             exit non-zero. Benchmarks never run under `cargo xtask test`.",
        ] {
            let _ = writeln!(out, "- {rule}");
        }
        out.push('\n');

        out.push_str("## Goals at a glance\n\n");
        let mut goals = Table::new(&["Row", "Goal", "Measured", "Result"]);
        for section in &self.sections {
            if let Some(error) = &section.error {
                goals.row(vec![
                    section.title.clone(),
                    "the row runs".to_string(),
                    one_line(error),
                    "**failed to run**".to_string(),
                ]);
            }
            for goal in &section.goals {
                goals.row(vec![
                    section.title.clone(),
                    goal.goal.clone(),
                    goal.measured.clone(),
                    goal.status.text().to_string(),
                ]);
            }
        }
        goals.render(&mut out);

        for section in &self.sections {
            let _ = writeln!(out, "## {}\n", section.title);
            if let Some(error) = &section.error {
                let _ = writeln!(out, "**This row failed to run:**\n\n```\n{error}\n```\n");
                continue;
            }
            let _ = writeln!(out, "{}\n", section.method);
            for table in &section.tables {
                table.render(&mut out);
            }
            for note in &section.notes {
                let _ = writeln!(out, "- {note}");
            }
            if !section.notes.is_empty() {
                out.push('\n');
            }
        }
        out
    }

    /// Writes BENCHMARKS.md at the workspace root and returns its path.
    pub fn write(&self) -> Result<std::path::PathBuf> {
        let path = workspace_root().join("BENCHMARKS.md");
        write_to(&path, &self.render())?;
        Ok(path)
    }
}

fn write_to(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A table cell must stay on one line.
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    first.replace('|', "/")
}

/// `12.3 (11.9–13.0)` with `digits` decimals.
pub fn spread(s: Spread, digits: usize) -> String {
    format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits)
}

/// A ratio spread as overhead percentages: `+0.42% (−0.3%…+1.1%)`.
pub fn overhead(ratio: Spread) -> String {
    let p = ratio.map(|r| (r - 1.0) * 100.0);
    format!(
        "{} ({} … {})",
        signed_pct(p.median),
        signed_pct(p.min),
        signed_pct(p.max)
    )
}

/// `+1.23%` / `−0.40%`.
pub fn signed_pct(p: f64) -> String {
    if p < 0.0 {
        format!("−{:.2}%", -p)
    } else {
        format!("+{p:.2}%")
    }
}

/// A ratio spread as `1.23x (1.10–1.40)`.
pub fn times(ratio: Spread) -> String {
    format!("{:.2}x ({:.2}–{:.2})", ratio.median, ratio.min, ratio.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_goals_and_failures() {
        let mut ok = Section::new("1. Row", "Method.");
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        ok.tables.push(t);
        ok.goals
            .push(Goal::new("under 1%", "+0.50%", Status::from_bool(true)));
        ok.notes.push("a note".into());
        let bad = Section::failed("2. Broken", &anyhow::anyhow!("fixture crashed\ndetails"));
        let report = Report {
            machine: Machine {
                cpu_model: "cpu".into(),
                cpus: 2,
                memory: "1 GiB".into(),
                kernel: "6.1".into(),
                date: "today".into(),
                commit: "abc".into(),
                load: "0.1 0.1 0.1".into(),
            },
            command: "cargo xtask bench".into(),
            settings: "5 reps".into(),
            load_before: "0 0 0".into(),
            tools: vec![("perf".into(), "perf version 6.1".into())],
            sections: vec![ok, bad],
        };
        let md = report.render();
        assert!(md.contains("| 1. Row | under 1% | +0.50% | met |"));
        assert!(md.contains("| 2. Broken | the row runs | fixture crashed | **failed to run** |"));
        assert!(md.contains("| a | b |\n| --- | --- |\n| 1 | 2 |"));
        assert!(md.contains("Reproduce (as root): `cargo xtask bench`"));
        assert!(md.contains("- a note"));
    }

    #[test]
    fn number_formats() {
        let s = Spread {
            median: 1.005,
            min: 0.99,
            max: 1.02,
        };
        assert_eq!(overhead(s), "+0.50% (−1.00% … +2.00%)");
        assert_eq!(times(s), "1.00x (0.99–1.02)");
        assert_eq!(spread(s, 1), "1.0 (1.0–1.0)");
    }
}
