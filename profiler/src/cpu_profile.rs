//! Builds the CPU profile from a run's raw samples: symbolize, label, and account for losses.

use profiler_common::{COMM_LEN, counter};

use crate::config::{Config, Target};
use crate::profile::{Label, Line, Location, Mapping, Profile, ProfileBuilder, ValueType};
use crate::session::RunOutcome;
use crate::symbolize::{KERNEL_MAPPING, Symbolizer};

const EEXIST: i32 = 17;
const ENOMEM: i32 = 12;

/// Builds the symbolized CPU profile: sample types `samples/count` and `cpu/nanoseconds`,
/// labels `pid`, `tid` and `comm`, and comments saying what was received, expected and lost.
pub fn build(run: &RunOutcome, config: &Config, symbolizer: &mut Symbolizer) -> Profile {
    let period_ns = 1_000_000_000 / config.frequency as i64;
    let mut builder = ProfileBuilder::new(
        "cpu",
        vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        run.start,
        run.duration,
    );
    builder.period(ValueType::new("cpu", "nanoseconds"), period_ns);
    // Samples, not nanoseconds, weight the folded stacks and flame graph, as with perf.
    builder.default_sample_type(0);
    for comment in accounting(run, config) {
        builder.comment(comment);
    }
    let kernel_mapping = Mapping {
        start: 0,
        limit: u64::MAX,
        file_offset: 0,
        path: KERNEL_MAPPING.to_owned(),
        build_id: None,
    };
    for (key, value) in &run.cpu.samples {
        // In command mode the profiler is a target for the instant it forks the command.
        if !matches!(config.target, Target::Host) && key.pid == std::process::id() {
            continue;
        }
        let process = run.processes.get(key.pid);
        let mut locations = Vec::new();
        let kernel_frames = stack_frames(run, key.kernel_stack_id);
        for (i, &addr) in kernel_frames.iter().enumerate() {
            let lines = symbolizer.kernel(addr, i > 0);
            // Interned on first use, so a user-space binary can be pprof's main mapping.
            let mapping = builder.mapping(kernel_mapping.clone());
            locations.push(builder.location(Location {
                address: addr,
                mapping: Some(mapping),
                lines,
                kernel: true,
            }));
        }
        if let Some(reason) = lost_stack(key.kernel_stack_id) {
            locations
                .push(builder.location(marker(&format!("[kernel stack lost: {reason}]"), true)));
        }
        let user_frames = stack_frames(run, key.user_stack_id);
        for (i, &addr) in user_frames.iter().enumerate() {
            let frame = symbolizer.user(process, addr, i > 0);
            let mapping = frame.mapping.map(|m| builder.mapping(m));
            locations.push(builder.location(Location {
                address: addr,
                mapping,
                lines: frame.lines,
                kernel: false,
            }));
        }
        if let Some(reason) = lost_stack(key.user_stack_id) {
            locations
                .push(builder.location(marker(&format!("[user stack lost: {reason}]"), false)));
        }
        if locations.is_empty() {
            locations.push(builder.location(marker("[unknown]", false)));
        }
        let stack = builder.stack(locations);
        let count = value.count as i64;
        let labels = vec![
            Label::num("pid", i64::from(key.pid)),
            Label::num("tid", i64::from(key.tid)),
            Label::str("comm", comm(&value.comm)),
        ];
        builder.add_sample(stack, &[count, count * period_ns], labels);
    }
    builder.build()
}

fn stack_frames(run: &RunOutcome, id: i32) -> &[u64] {
    u32::try_from(id)
        .ok()
        .and_then(|id| run.cpu.stacks.get(&id))
        .map_or(&[], Vec::as_slice)
}

fn lost_stack(id: i32) -> Option<&'static str> {
    match -id {
        EEXIST => Some("stack-map collision"),
        ENOMEM => Some("stack map full"),
        _ => None,
    }
}

fn marker(name: &str, kernel: bool) -> Location {
    Location {
        address: 0,
        mapping: None,
        lines: vec![Line {
            function: name.to_owned(),
            file: None,
            line: 0,
        }],
        kernel,
    }
}

fn comm(raw: &[u8; COMM_LEN]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// What the run saw and lost, against what it could have seen, as profile comments.
fn accounting(run: &RunOutcome, config: &Config) -> Vec<String> {
    let c = &run.counters;
    let secs = run.duration.as_secs_f64();
    let expected = config.frequency as f64 * secs * run.cpus as f64;
    let ticks = c.get(counter::TICKS);
    let target = match &config.target {
        Target::Host => "the whole host".to_owned(),
        Target::Pids(pids) => {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            format!("pid {} with threads and children", pids.join(","))
        }
        Target::Command(argv) => {
            let argv: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            format!("command `{}`", argv.join(" "))
        }
    };
    let mut lines = vec![
        format!(
            "window: {secs:.2}s of {target} at {} Hz on {} CPUs; {}",
            config.frequency, run.cpus, run.stop
        ),
        format!(
            "timer ticks: {ticks} of {expected:.0} expected ({} Hz x {secs:.2}s x {} CPUs), {:.1}%; \
             the shortfall is ticks the kernel throttled or missed",
            config.frequency,
            run.cpus,
            percent(ticks as f64, expected)
        ),
        format!(
            "samples: {} recorded; {} ticks on idle CPUs and {} in other processes not recorded",
            c.get(counter::RECORDED),
            c.get(counter::IDLE),
            c.get(counter::FILTERED)
        ),
        format!(
            "lost: {} samples (aggregation map full), {} user and {} kernel stacks \
             (stack-map collisions or full map, kept as [... stack lost] frames)",
            c.get(counter::LOST_AGG_FULL),
            c.get(counter::LOST_USER_STACK),
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

    #[test]
    fn lost_stacks_are_named() {
        assert_eq!(lost_stack(-17), Some("stack-map collision"));
        assert_eq!(lost_stack(-12), Some("stack map full"));
        assert_eq!(lost_stack(-14), None);
        assert_eq!(lost_stack(3), None);
    }
}
