//! The off-CPU profile in the terminal: how it was traced and each thread's time budget,
//! the waits by process, reason and function with who woke them, and the waits with a fix.

use std::fmt::Write;

use profiler_model::{OffCpuValue, Profile};

use super::summary::{human_time, shorten, shown_in_terminal};
use super::{brief, line};
use crate::analysis::offcpu::OffCpuWaits;
use crate::analysis::words;
use crate::output::strings::escape_terminal;

/// Renders the off-CPU profile with its `top` waits and findings.
pub fn render(profile: &Profile, waits: &[OffCpuWaits], top: usize) -> String {
    let mut out = String::from("offcpu profile: delay (nanoseconds)\n");
    for comment in profile.comments.iter().filter(|c| shown_in_terminal(c)) {
        let _ = writeln!(out, "  {}", escape_terminal(&comment.text()));
    }
    let total = profile.total(OffCpuValue::Delay.index());
    if waits.is_empty() || total <= 0 {
        out.push_str(
            "No off-CPU waits were recorded: the targets ran or were runnable the whole \
             window.\n",
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Top {top} waits off CPU by process, reason and function ({} in all):",
        human_time(total)
    );
    let _ = writeln!(
        out,
        "  {:>10} {:>6} {:>9}  {:<9}  function (process)  [woken by]",
        "time", "%", "waits", "reason"
    );
    for w in waits.iter().take(top) {
        let _ = write!(
            out,
            "  {:>10} {:>5.1}% {:>9}  {:<9}  {} ({})",
            human_time(i64::try_from(w.delay).unwrap_or(i64::MAX)),
            100.0 * w.delay as f64 / total as f64,
            w.waits,
            w.reason.label(),
            shorten(&w.function),
            escape_terminal(&w.comm)
        );
        if let Some(waker) = &w.waker {
            let _ = write!(out, "  [{}]", escape_terminal(waker));
        }
        out.push('\n');
    }
    for finding in waits.iter().filter(|w| w.is_finding()).take(top) {
        let finding = words::offcpu(finding);
        let _ = writeln!(out, "off-CPU: {}", brief(&finding.title));
        line(
            &mut out,
            "    ",
            finding.details.iter().map(|detail| &detail.text),
        );
        let _ = writeln!(out, "    fix:  {}", finding.hint);
    }
    out
}
