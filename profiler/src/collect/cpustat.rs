//! Busy CPU time of the whole host from `/proc/stat`: what the CPU profile's received samples
//! are compared with (an idle CPU takes no `cpu-clock` samples).

use std::fs;

/// Cumulative CPU time of all CPUs, in clock ticks (`USER_HZ`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time spent running anything: user, nice, system, irq, softirq, steal.
    pub busy: u64,
    /// Busy time plus idle and iowait.
    pub total: u64,
    /// Context switches of the host since boot (`ctxt`).
    pub context_switches: u64,
}

impl CpuTimes {
    /// Reads the host's counters now; zeroes when `/proc/stat` cannot be read.
    pub fn now() -> Self {
        fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse(&text))
            .unwrap_or_default()
    }

    /// Busy CPU-seconds between `earlier` and `self`.
    pub fn busy_seconds_since(&self, earlier: &Self) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.busy.saturating_sub(earlier.busy) as f64 / hz
    }
}

fn parse(text: &str) -> Option<CpuTimes> {
    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    // Guest time is already counted in user and nice.
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    let context_switches = text
        .lines()
        .find_map(|l| l.strip_prefix("ctxt ")?.trim().parse().ok())
        .unwrap_or(0);
    Some(CpuTimes {
        busy,
        total: busy + get(3) + get(4),
        context_switches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_line() {
        let text = "cpu  100 5 50 1000 10 1 2 3 0 0\ncpu0 50 2 25 500 5 0 1 1 0 0\n";
        assert_eq!(
            parse(text),
            Some(CpuTimes {
                busy: 161,
                total: 1171,
                context_switches: 0
            })
        );
        assert_eq!(parse("intr 1 2 3\n"), None);
    }

    #[test]
    fn reads_this_host() {
        let now = CpuTimes::now();
        assert!(now.total >= now.busy && now.total > 0);
    }
}
