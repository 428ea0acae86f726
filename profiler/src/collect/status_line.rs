//! The one-line status a run shows on a terminal while it profiles.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use profiler_common::counter;

use crate::collect::probes::Counters;

/// A spinner with a message on stderr (nothing when stderr is not a terminal).
pub fn status_line() -> ProgressBar {
    // indicatif draws nothing when stderr is not a terminal.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// How far the window is, what was recorded and what was lost so far.
pub fn status_text(elapsed: Duration, duration: Option<Duration>, counters: &Counters) -> String {
    let elapsed_s = elapsed.as_secs_f64();
    let window = match duration {
        Some(d) => format!("{elapsed_s:.1}s of {:.1}s", d.as_secs_f64()),
        None => format!("{elapsed_s:.1}s (Ctrl-C to stop)"),
    };
    let lost = counters.get(counter::LOST_CPU_SAMPLES)
        + counters.get(counter::LOST_IO_STACK)
        + counters.get(counter::LOST_BLOCK_STACK)
        + counters.get(counter::LOST_IO_FULL)
        + counters.get(counter::LOST_SLOT);
    format!(
        "profiling: {window} | {} samples | {} I/O calls | {lost} lost",
        counters.get(counter::RECORDED),
        counters.get(counter::IO_CALLS)
    )
}
