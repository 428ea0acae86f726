//! Builds the CPU profile from a run's raw samples: symbolize, label, and account for losses.

use profiler_common::{COMM_LEN, counter};
use profiler_model::CpuValue;
use profiler_model::{Label, Profile, ProfileKind, ValueType};

use crate::collect::session::RunOutcome;
use crate::config::Config;
use crate::convert::facts;
use crate::convert::stacks::StackResolver;

/// Builds the symbolized CPU profile: sample types `samples/count` and `cpu/nanoseconds`,
/// labels `pid`, `tid` and `comm`, and comments saying what was received, expected and lost.
pub fn build<'run>(
    run: &'run RunOutcome,
    config: &Config,
    resolver: &mut StackResolver<'run>,
) -> Profile {
    let period_ns = 1_000_000_000 / config.frequency as i64;
    let mut builder = facts::start(ProfileKind::Cpu, run, config, accounting(run, config));
    builder.period(ValueType::new("cpu", "nanoseconds"), period_ns);
    let mut samples: Vec<_> = run.samples.cpu.iter().collect();
    // The same profile whatever the hash map's order.
    samples.sort_by_key(|(key, _)| (key.pid, key.tid, key.kernel, key.user.order()));
    for (key, &count) in samples {
        let stack = resolver.intern(&mut builder, key.user, key.kernel);
        let count = count as i64;
        let labels = vec![
            Label::num("pid", i64::from(key.pid)),
            Label::num("tid", i64::from(key.tid)),
            Label::str("comm", comm(&key.comm)),
        ];
        let mut values = [0; CpuValue::Cpu.index() + 1];
        values[CpuValue::Samples.index()] = count;
        values[CpuValue::Cpu.index()] = count * period_ns;
        builder.add_sample(stack, &values, labels);
    }
    builder.build()
}

/// A NUL-padded kernel command name as text.
pub fn comm(raw: &[u8; COMM_LEN]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// What the run saw and lost, against what it could have seen, as profile comments.
fn accounting(run: &RunOutcome, config: &Config) -> Vec<String> {
    let c = &run.counters;
    let secs = run.duration.as_secs_f64();
    let upper = config.frequency as f64 * secs * run.cpus as f64;
    let ticks = c.get(counter::TICKS);
    let busy_ticks = ticks.saturating_sub(c.get(counter::IDLE));
    let expected_busy = config.frequency as f64 * run.busy_cpu_seconds;
    let mut lines = vec![
        format!(
            "sampling: cpu-clock at {} Hz on every CPU; call graph: {}",
            config.frequency, run.call_graph
        ),
        format!(
            "received: {busy_ticks} ticks on busy CPUs of {expected_busy:.0} expected \
             ({} Hz x {:.2} busy CPU-seconds from /proc/stat), {:.1}%; at most {upper:.0} \
             ({} Hz x {secs:.2}s x {} CPUs) if every CPU had been busy; idle CPUs take no ticks",
            config.frequency,
            run.busy_cpu_seconds,
            percent(busy_ticks as f64, expected_busy),
            config.frequency,
            run.cpus
        ),
        format!(
            "samples: {} recorded; {} ticks in other processes not recorded",
            c.get(counter::RECORDED),
            c.get(counter::FILTERED)
        ),
        format!(
            "lost: {} samples (ring buffer full); {} user stacks unreadable, {} kernel stacks \
             not taken",
            c.get(counter::LOST_CPU_SAMPLES),
            c.get(counter::USER_STACK_UNREADABLE),
            c.get(counter::LOST_KERNEL_STACK)
        ),
    ];
    let proc_lost = c.get(counter::LOST_PROC_EVENTS);
    let forks_lost = c.get(counter::LOST_FORKS);
    if proc_lost + forks_lost > 0 {
        lines.push(format!(
            "also lost: {proc_lost} process announcements (ring buffer full: those processes \
             may be unsymbolized) and {forks_lost} forked children not followed (target map full)"
        ));
    }
    lines
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        let mut raw = [0u8; COMM_LEN];
        raw[..4].copy_from_slice(b"bash");
        assert_eq!(comm(&raw), "bash");
        assert_eq!(comm(&[b'x'; COMM_LEN]), "x".repeat(COMM_LEN));
    }
}
