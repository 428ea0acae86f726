//! The terminal summary of a profile: run facts, totals, and the top functions.

use super::processes;
pub(crate) use crate::analysis::units::{group, human_time};
use crate::analysis::{cpu_shares, functions};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use profiler_model::LabelKey;
use profiler_model::{Comment, Profile, ValueType};

use crate::output::strings::escape_terminal;

/// Longest function name shown before it is cut, so one C++ template cannot wreck the table.
const MAX_NAME: usize = 120;

/// Renders `profile` for the terminal, with the `top` functions by self and by total value.
pub fn render(profile: &Profile, top: usize) -> String {
    let index = profile.default_sample_type;
    let fallback = ValueType::new("samples", "count");
    let vt = profile.sample_types.get(index).unwrap_or(&fallback);
    let mut out = String::new();
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    let _ = writeln!(
        out,
        "{} profile: {} ({})",
        profile.kind.name(),
        vt.kind,
        vt.unit
    );
    for comment in profile.comments.iter().filter(|c| shown_in_terminal(c)) {
        let _ = writeln!(out, "  {}", escape_terminal(&comment.text()));
    }

    let total = profile.total(index);
    if profile.samples.is_empty() || total == 0 {
        let _ = writeln!(
            out,
            "No samples were recorded: the target may have been idle; \
             try a longer --duration or check the pid."
        );
        return out;
    }

    let pids: HashSet<String> = profile
        .samples
        .iter()
        .filter_map(|s| {
            s.label_num(LabelKey::Pid)
                .map(|p| p.to_string())
                .or_else(|| s.label_str(LabelKey::Pid).map(str::to_owned))
        })
        .collect();
    let time_like = vt.unit == "nanoseconds";
    let _ = write!(
        out,
        "  processes seen: {}; total: {} {}",
        pids.len(),
        group(total),
        vt.unit
    );
    if time_like {
        let _ = write!(out, " ({})", human_time(total));
    }
    let _ = writeln!(out);
    // A run of several processes shows first which processes the CPU went to: the
    // function table below adds up same-named functions of different processes.
    if let Some(shares) = cpu_shares::by_process(profile) {
        out.push_str(&processes::render(&shares, top));
    }

    let (self_values, total_values) = function_values(profile, index);
    let rows: Vec<(Cow<'_, str>, i64, i64)> = ranked(self_values, top)
        .into_iter()
        .map(|(name, v)| {
            let total = total_values.get(&name).copied().unwrap_or(v);
            (name, v, total)
        })
        .collect();
    let _ = writeln!(
        out,
        "Top {top} functions by self {} (and their total):",
        vt.kind
    );
    out.push_str(&table(&rows, total, time_like));
    out
}

/// Whether a profile comment belongs in the terminal summary: the run's facts are printed
/// once for all profiles, and what was traced or sampled is in the files and the report, so
/// the summary keeps to what was received, recorded and lost.
pub(crate) fn shown_in_terminal(comment: &Comment) -> bool {
    // The unwinding covers the whole run, like its facts: the terminal shows it once, first.
    matches!(comment, Comment::Account(_))
}

/// Per function, the value of sample type `index` of the stacks it is the leaf of (self)
/// and of the stacks it appears in at all (total).
fn function_values(profile: &Profile, index: usize) -> (Values<'_>, Values<'_>) {
    let mut self_values = HashMap::new();
    let mut total_values = HashMap::new();
    for (name, values) in functions::function_values(profile) {
        let at = |v: &[i64]| v.get(index).copied().unwrap_or(0);
        let label = name.label();
        self_values.insert(label.clone(), at(&values.self_values));
        total_values.insert(label, at(&values.total_values));
    }
    (self_values, total_values)
}

/// A value per function table row's name.
type Values<'a> = HashMap<Cow<'a, str>, i64>;

/// The `top` largest entries, largest first, ties by name so output is stable.
fn ranked(values: Values<'_>, top: usize) -> Vec<(Cow<'_, str>, i64)> {
    let mut v: Vec<_> = values.into_iter().filter(|&(_, v)| v != 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(top);
    v
}

/// An aligned table: self value and percent, total value and percent, time (when
/// time-like), function.
fn table(rows: &[(Cow<'_, str>, i64, i64)], total: i64, time_like: bool) -> String {
    let pct = |v: i64| format!("{:.1}%", v as f64 * 100.0 / total as f64);
    let mut cells: Vec<Vec<String>> = vec![
        ["self", "%", "total", "%"]
            .into_iter()
            .map(str::to_owned)
            .chain(time_like.then(|| "self time".to_owned()))
            .collect(),
    ];
    for &(_, self_value, total_value) in rows {
        let mut row = vec![
            group(self_value),
            pct(self_value),
            group(total_value),
            pct(total_value),
        ];
        if time_like {
            row.push(human_time(self_value));
        }
        cells.push(row);
    }
    let columns = cells[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>width$}");
        }
        let name = if i == 0 {
            "function".to_owned()
        } else {
            shorten(&rows[i - 1].0)
        };
        let _ = writeln!(out, "  {name}");
    }
    out
}

/// `name` escaped for the terminal and cut to [`MAX_NAME`] characters with an ellipsis:
/// every function name, call path and site the tables show goes through here.
pub(crate) fn shorten(name: &str) -> String {
    let name = escape_terminal(name);
    if name.chars().count() <= MAX_NAME {
        return name;
    }
    let mut s: String = name.chars().take(MAX_NAME - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::{self, PERIOD, line, location};
    use profiler_model::{Label, ProfileBuilder};

    use super::*;

    /// main->a (3), main->b->a (1), main->b (6), counted in samples.
    fn known() -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let main = b.location(location(1, None, vec![line("main")]));
        let a = b.location(location(2, None, vec![line("a")]));
        let bb = b.location(location(3, None, vec![line("b")]));
        let s1 = b.stack(vec![a, main]);
        let s2 = b.stack(vec![a, bb, main]);
        let s3 = b.stack(vec![bb, main]);
        b.add_sample(s1, &[3], vec![Label::num(LabelKey::Pid, 1)]);
        b.add_sample(s2, &[1], vec![Label::num(LabelKey::Pid, 1)]);
        b.add_sample(s3, &[6], vec![Label::num(LabelKey::Pid, 2)]);
        b.build()
    }

    type Ranked<'a> = Vec<(&'a str, i64)>;

    fn values(p: &Profile) -> (Ranked<'_>, Ranked<'_>) {
        let (s, t) = function_values(p, p.default_sample_type);
        fn borrowed(v: Vec<(Cow<'_, str>, i64)>) -> Ranked<'_> {
            v.into_iter()
                .map(|(name, v)| match name {
                    Cow::Borrowed(name) => (name, v),
                    Cow::Owned(_) => panic!("a named frame's row owns its name"),
                })
                .collect()
        }
        (borrowed(ranked(s, 10)), borrowed(ranked(t, 10)))
    }

    #[test]
    fn self_and_total_ranking() {
        let p = known();
        let (s, t) = values(&p);
        assert_eq!(s, [("b", 6), ("a", 4)]);
        assert_eq!(t, [("main", 10), ("b", 7), ("a", 4)]);
    }

    #[test]
    fn recursion_counts_once_per_stack() {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let main = b.location(location(1, None, vec![line("main")]));
        let f1 = b.location(location(2, None, vec![line("f")]));
        let f2 = b.location(location(3, None, vec![line("f")]));
        let s = b.stack(vec![f1, f2, f1, main]);
        b.add_sample(s, &[5], vec![]);
        let p = b.build();
        let (s, t) = values(&p);
        assert_eq!(s, [("f", 5)]);
        assert_eq!(t, [("f", 5), ("main", 5)]);
    }

    #[test]
    fn inlined_leaf_is_the_innermost_line() {
        let p = fixture::profile();
        let (s, t) = values(&p);
        let ms = |n: i64| n * PERIOD;
        assert_eq!(s, [("b", ms(6)), ("a", ms(4))]);
        assert_eq!(
            t,
            [("main", ms(10)), ("b", ms(7)), ("run", ms(7)), ("a", ms(4))]
        );
    }

    #[test]
    fn rendered_text() {
        let text = render(&known(), 2);
        assert!(text.starts_with("cpu profile: samples (count)\n"), "{text}");
        assert!(
            text.contains("processes seen: 2; total: 10 count"),
            "{text}"
        );
        // Two processes: their lines come first, by pid, the larger first.
        let processes = text.find("CPU by process:\n").expect("a per-process table");
        assert!(processes < text.find("Top 2 functions").unwrap(), "{text}");
        assert!(
            text.contains("      6  60.0%         -  [unknown] (pid 2)\n"),
            "{text}"
        );
        let table = text.split("(and their total):\n").nth(1).unwrap();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["self", "%", "total", "%", "function"]);
        assert_eq!(rows[1], ["6", "60.0%", "7", "70.0%", "b"]);
        assert_eq!(rows[2], ["4", "40.0%", "4", "40.0%", "a"]);
        // top = 2 cuts the rest.
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn time_like_profiles_show_time() {
        let text = render(&fixture::profile(), 5);
        assert!(text.contains("  window 2s\n  lost 0 samples\n"), "{text}");
        assert!(
            text.contains("total: 100,000,000 nanoseconds (100.0 ms)"),
            "{text}"
        );
        assert!(
            text.contains("60,000,000  60.0%  70,000,000  70.0%    60.0 ms  b"),
            "{text}"
        );
        // Columns line up: every row of the table has its function at the same offset.
        let table = text.split("(and their total):\n").nth(1).unwrap();
        let offsets: HashSet<usize> = table.lines().map(|l| l.rfind("  ").unwrap()).collect();
        assert_eq!(offsets.len(), 1, "{table}");
    }

    #[test]
    fn run_facts_and_tracing_notes_stay_out_of_the_terminal() {
        assert!(!shown_in_terminal(&Comment::read(
            "run: host vm".to_owned()
        )));
        assert!(!shown_in_terminal(&Comment::read(
            "traced: every call".to_owned()
        )));
        assert!(shown_in_terminal(&Comment::read(
            "received: 10 ticks".to_owned()
        )));
        assert!(shown_in_terminal(&Comment::read(
            "lost: 0 samples".to_owned()
        )));
    }

    #[test]
    fn no_samples_says_why() {
        let text = render(&fixture::empty(), 10);
        assert!(text.contains("No samples"), "{text}");
        assert!(text.contains("--duration"), "{text}");
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(-1000), "-1,000");
        assert_eq!(human_time(1_500), "1.5 µs");
        assert_eq!(human_time(2_500_000), "2.5 ms");
        assert_eq!(human_time(3_210_000_000), "3.21 s");
        assert_eq!(shorten(&"x".repeat(500)).chars().count(), MAX_NAME);
    }
}
