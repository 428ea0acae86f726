//! The time budget lines of the terminal summary, read back.

use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) struct BudgetLine {
    pub(crate) name: String,
    /// `pid` or `tid`, and its value.
    pub(crate) id_kind: String,
    pub(crate) id: String,
    pub(crate) total_s: f64,
    /// The terms after `=`, by name (`on CPU`, `runnable`, reasons).
    pub(crate) terms: BTreeMap<String, f64>,
}

impl BudgetLine {
    pub(crate) fn parse(line: &str) -> Option<BudgetLine> {
        let rest = line.trim_start().strip_prefix("budget:")?.trim_start();
        let rest = rest.strip_prefix("thread ").unwrap_or(rest);
        let open = rest.rfind(" (")?;
        let name = rest[..open].to_owned();
        let after = &rest[open + 2..];
        let close = after.find(')')?;
        let (id_kind, id) = after[..close].split_once(' ')?;
        let (_, sums) = after[close..].split_once(": ")?;
        let (total, terms) = sums.split_once(" = ")?;
        let seconds = |t: &str| t.trim().strip_suffix(" s")?.trim().parse::<f64>().ok();
        let mut parsed = BTreeMap::new();
        for term in terms.split(" + ") {
            let (key, value) = term.trim().rsplit_once(' ').and_then(|(k, unit)| {
                let (key, number) = k.rsplit_once(' ')?;
                Some((key, seconds(&format!("{number} {unit}"))?))
            })?;
            parsed.insert(key.to_owned(), value);
        }
        Some(BudgetLine {
            name,
            id_kind: id_kind.to_owned(),
            id: id.to_owned(),
            total_s: seconds(total)?,
            terms: parsed,
        })
    }
}

/// The run's window in seconds, from the summary's `window: 3.01s from ...`.
pub(crate) fn window_seconds(stdout: &str) -> f64 {
    stdout
        .split("window: ")
        .nth(1)
        .and_then(|w| w.split('s').next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("the summary has no `window: N.NNs`:\n{stdout}"))
}

/// Four spinners on one CPU: the time budget of each thread adds up to its time in the
/// window (its own wall time, the whole window for the main thread) within 2%, and its
/// on-CPU and runnable parts are the CPU time and wall minus CPU time the spinner measured.

#[test]
fn budget_lines_parse() {
    let b = BudgetLine::parse(
        "  budget:   thread offcpu_waits (tid 976): 3.008 s = on CPU 0.493 s + runnable 2.515 s \
         + lock 0.000 s",
    )
    .expect("parses");
    assert_eq!(
        (b.name.as_str(), b.id_kind.as_str()),
        ("offcpu_waits", "tid")
    );
    assert_eq!(b.id, "976");
    assert_eq!(b.total_s, 3.008);
    assert_eq!(b.terms["on CPU"] + b.terms["runnable"], 3.008);
    let p = BudgetLine::parse(
        "  budget: offcpu_waits (pid 974), 5 threads: 15.044 s = on CPU 1.981 s + runnable \
         10.065 s",
    )
    .expect("parses");
    assert_eq!((p.id_kind.as_str(), p.id.as_str()), ("pid", "974"));
    assert_eq!(p.terms.len(), 2);
}
