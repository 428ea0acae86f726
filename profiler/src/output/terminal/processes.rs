//! The CPU summary's per-process lines: each process's samples, share and CPU time, the
//! first thing a whole-host or multi-process run shows, before the function table adds up
//! same-named functions of different processes.

use std::fmt::Write;

use super::summary::{group, human_time, shorten};
use crate::analysis::cpu_shares::ProcessShares;

/// This many processes get a line of their own, or `--top` of them when it asks for more;
/// the rest are summed on one line. More than the default `--top`: which processes the CPU
/// went to is the first answer a whole-host run gives.
pub const PROCESS_LINES: usize = 8;

/// The per-process table of `shares`, or nothing when at most one process has samples.
pub fn render(shares: &ProcessShares, top: usize) -> String {
    let mut out = String::new();
    if !shares.several() {
        return out;
    }
    let (shown, others) = shares.split(top.max(PROCESS_LINES));
    let heading = match shares.period_ns {
        Some(period) if period > 0 => format!(
            "CPU by process (CPU time = samples / {} Hz):",
            (1e9 / period as f64).round()
        ),
        _ => "CPU by process:".to_owned(),
    };
    let mut cells: Vec<[String; 4]> = vec![[
        "samples".to_owned(),
        "%".to_owned(),
        "CPU time".to_owned(),
        "process".to_owned(),
    ]];
    let numbers = |samples: u64| {
        [
            group(i64::try_from(samples).unwrap_or(i64::MAX)),
            format!("{:.1}%", shares.percent(samples)),
            shares.cpu_ns(samples).map_or("-".to_owned(), |ns| {
                human_time(i64::try_from(ns).unwrap_or(i64::MAX))
            }),
        ]
    };
    for p in shown {
        let [s, pct, time] = numbers(p.samples);
        // Escaped and cut as every name the tables show: a file can hold any comm.
        let name = if p.comm.is_empty() {
            "[unknown]".to_owned()
        } else {
            shorten(&p.comm)
        };
        let process = match p.pid {
            Some(pid) => format!("{name} (pid {pid})"),
            None => name,
        };
        cells.push([s, pct, time, process]);
    }
    if let Some((count, samples)) = others {
        let [s, pct, time] = numbers(samples);
        let what = if count == 1 { "process" } else { "processes" };
        cells.push([s, pct, time, format!("{count} other {what}")]);
    }
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    let _ = writeln!(out, "{heading}");
    for [s, pct, time, process] in &cells {
        let _ = writeln!(out, "  {s:>w0$}  {pct:>w1$}  {time:>w2$}  {process}");
    }
    let _ = writeln!(out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::cpu_shares::ProcessShare;

    fn shares(processes: &[(i64, &str, u64)]) -> ProcessShares {
        ProcessShares {
            processes: processes
                .iter()
                .map(|&(pid, comm, samples)| ProcessShare {
                    pid: Some(pid),
                    comm: comm.to_owned(),
                    samples,
                })
                .collect(),
            total: processes.iter().map(|p| p.2).sum(),
            period_ns: Some(2_004_008),
        }
    }

    #[test]
    fn one_line_per_process_then_the_rest() {
        let mut all = vec![(100, "postgres", 5000), (200, "postgres", 4100)];
        for pid in 0..9 {
            all.push((300 + pid, "other\x1b[31m", 100));
        }
        // The default --top (5) still shows 8 processes.
        let text = render(&shares(&all), 5);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "CPU by process (CPU time = samples / 499 Hz):",
            "{text}"
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["samples", "%", "CPU", "time", "process"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["5,000", "50.0%", "10.02", "s", "postgres", "(pid", "100)"]
        );
        assert!(lines[3].ends_with("  postgres (pid 200)"), "{text}");
        // 8 processes, then the other 3 (100 samples each) on one line.
        assert_eq!(lines.len(), 2 + 8 + 1 + 1, "{text}");
        assert_eq!(
            lines[10].split_whitespace().collect::<Vec<_>>(),
            ["300", "3.0%", "601.2", "ms", "3", "other", "processes"]
        );
        assert!(!text.contains('\x1b'), "names are escaped: {text}");
        // Columns line up.
        let at: std::collections::HashSet<Option<usize>> =
            lines[1..11].iter().map(|l| l.find('%')).collect();
        assert_eq!(at.len(), 1, "{text}");
    }

    #[test]
    fn top_asks_for_more_lines_never_fewer() {
        let all: Vec<(i64, &str, u64)> = (1..=12).map(|pid| (pid, "p", 13 - pid as u64)).collect();
        let lines = |top| render(&shares(&all), top).lines().count();
        // Heading, column titles, the processes, the others, the blank line.
        assert_eq!(lines(1), 2 + PROCESS_LINES + 1 + 1);
        assert_eq!(lines(10), 2 + 10 + 1 + 1);
        let text = render(&shares(&all), 11);
        assert!(text.contains("  1 other process\n"), "{text}");
        assert_eq!(lines(12), 2 + 12 + 1);
    }

    #[test]
    fn a_single_process_has_no_table() {
        assert_eq!(render(&shares(&[(1, "a", 5)]), 10), "");
    }

    #[test]
    fn without_a_period_there_is_no_cpu_time() {
        let mut s = shares(&[(1, "a", 5), (2, "b", 5)]);
        s.period_ns = None;
        let text = render(&s, 10);
        assert!(text.starts_with("CPU by process:\n"), "{text}");
        assert!(text.contains("  -  a (pid 1)"), "{text}");
    }
}
