//! What profiling costs, as the kernel accounts for it: the run time of this process's
//! kernel programs (when `kernel.bpf_stats_enabled` is on) and the memory of its maps.

use std::fs;

use crate::collect::uprobe_check::UprobeFacts;

/// Totals over every BPF program and map this process holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCost {
    /// Nanoseconds the programs ran; zero unless `kernel.bpf_stats_enabled` was on.
    pub run_time_ns: u64,
    /// Times the programs ran; zero unless stats were on.
    pub run_count: u64,
    /// Bytes of memory charged to the maps.
    pub map_bytes: u64,
    /// Whether the kernel was counting program run time.
    pub stats_enabled: bool,
    /// What the kernel was seen to do with a uprobe, when the run placed any.
    pub uprobes: Option<UprobeFacts>,
    /// The host's context switches in the window and its seconds, when the off-CPU
    /// programs ran on each of them.
    pub context_switches: Option<(u64, std::time::Duration)>,
}

impl KernelCost {
    /// Reads the totals from `/proc/self/fdinfo`, where the kernel reports each BPF
    /// object's `run_time_ns`, `run_cnt` and `memlock`.
    pub fn now() -> Self {
        let mut cost = Self {
            stats_enabled: fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
                .is_ok_and(|v| v.trim() == "1"),
            ..Self::default()
        };
        let Ok(entries) = fs::read_dir("/proc/self/fdinfo") else {
            return cost;
        };
        for entry in entries.flatten() {
            if let Ok(info) = fs::read_to_string(entry.path()) {
                cost.add(&info);
            }
        }
        cost
    }

    fn add(&mut self, fdinfo: &str) {
        let field = |name: &str| {
            fdinfo
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if fdinfo.contains("\nprog_type:") || fdinfo.starts_with("prog_type:") {
            self.run_time_ns += field("run_time_ns:");
            self.run_count += field("run_cnt:");
        } else if fdinfo.contains("\nmap_type:") || fdinfo.starts_with("map_type:") {
            self.map_bytes += field("memlock:");
        }
    }

    /// One line for the summary.
    pub fn describe(&self) -> String {
        let maps = format!("BPF maps hold {:.1} MiB", self.map_bytes as f64 / 1048576.0);
        let mut line = self.programs_and_maps(&maps);
        if let Some((switches, window)) = self.context_switches {
            line.push_str(&format!(
                "; the off-CPU programs ran on each of the host's {switches} context switches \
                 ({:.0} a second; what each costs: BENCHMARKS.md row 14)",
                switches as f64 / window.as_secs_f64().max(1e-9)
            ));
        }
        match self.uprobes {
            Some(uprobes) => format!("{line}; {}", uprobes.describe()),
            None => line,
        }
    }

    fn programs_and_maps(&self, maps: &str) -> String {
        if self.stats_enabled {
            format!(
                "profiler cost: kernel programs ran {:.1} ms in {} runs; {maps}",
                self.run_time_ns as f64 / 1e6,
                self.run_count
            )
        } else {
            format!(
                "profiler cost: {maps}; kernel program run time unknown \
                 (sysctl kernel.bpf_stats_enabled=1 measures it)"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_programs_and_maps() {
        let mut cost = KernelCost::default();
        cost.add("pos:\t0\nflags:\t02000002\nprog_type:\t7\nrun_time_ns:\t1500\nrun_cnt:\t3\n");
        cost.add("pos:\t0\nmap_type:\t1\nmemlock:\t4096\n");
        cost.add("pos:\t0\nflags:\t02\n");
        assert_eq!(
            (cost.run_time_ns, cost.run_count, cost.map_bytes),
            (1500, 3, 4096)
        );
        cost.stats_enabled = true;
        assert!(cost.describe().contains("ran 0.0 ms in 3 runs"));
    }
}
