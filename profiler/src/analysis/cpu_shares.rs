//! Each process's share of a CPU profile: the samples of a whole-host or multi-process run
//! by process (its pid, named by its `comm` label), so that same-named functions of
//! different processes, which the function tables add up, are not the first thing seen.

use std::collections::HashMap;

use profiler_model::{CpuValue, LabelKey, Profile, ProfileKind, Sample};

/// One process's CPU samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessShare {
    /// Its pid; `None` for samples without one (a profile read from someone else's file).
    pub pid: Option<i64>,
    /// Its name: the `comm` label most of its samples carry, empty when none has one.
    pub comm: String,
    /// Its samples.
    pub samples: u64,
}

/// The CPU samples of a profile, by process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessShares {
    /// Every process with samples, most samples first, ties by pid.
    pub processes: Vec<ProcessShare>,
    /// All samples of the profile.
    pub total: u64,
    /// Nanoseconds of CPU time one sample stands for (1 / the sampling frequency), when
    /// the profile says.
    pub period_ns: Option<u64>,
}

impl ProcessShares {
    /// Whether more than one process has samples: only then is a split worth a table.
    pub fn several(&self) -> bool {
        self.processes.len() > 1
    }

    /// `samples` as a percentage of all samples.
    pub fn percent(&self, samples: u64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            samples as f64 * 100.0 / self.total as f64
        }
    }

    /// The CPU time `samples` stand for (samples / frequency), when the period is known.
    pub fn cpu_ns(&self, samples: u64) -> Option<u64> {
        self.period_ns.map(|p| p.saturating_mul(samples))
    }

    /// The first `shown` processes, and the rest summed: (how many, their samples).
    pub fn split(&self, shown: usize) -> (&[ProcessShare], Option<(usize, u64)>) {
        let shown = shown.min(self.processes.len());
        let (top, rest) = self.processes.split_at(shown);
        let others = (!rest.is_empty()).then(|| {
            let samples = rest.iter().fold(0u64, |a, p| a.saturating_add(p.samples));
            (rest.len(), samples)
        });
        (top, others)
    }
}

/// The samples of a CPU profile by process; `None` for a profile of another kind.
pub fn by_process(profile: &Profile) -> Option<ProcessShares> {
    if profile.kind != ProfileKind::Cpu {
        return None;
    }
    let index = samples_index(profile);
    // Per process: samples, and samples per name (a name read at different times can
    // differ: the one most samples carry names it).
    let mut acc: HashMap<Option<i64>, (u64, HashMap<&str, u64>)> = HashMap::new();
    let mut total = 0u64;
    for sample in &profile.samples {
        let n = sample.count(index);
        if n == 0 {
            continue;
        }
        // Saturating: values read from a file can add up past the largest number.
        total = total.saturating_add(n);
        let (samples, names) = acc.entry(pid(sample)).or_default();
        *samples = samples.saturating_add(n);
        let name = sample.label_str(LabelKey::Comm).unwrap_or("");
        let slot = names.entry(name).or_default();
        *slot = slot.saturating_add(n);
    }
    let mut processes: Vec<ProcessShare> = acc
        .into_iter()
        .map(|(pid, (samples, names))| ProcessShare {
            pid,
            comm: names
                .into_iter()
                // Most samples, then a name over none, then by name: stable output.
                .max_by(|a, b| {
                    (a.1, !a.0.is_empty())
                        .cmp(&(b.1, !b.0.is_empty()))
                        .then(b.0.cmp(a.0))
                })
                .map(|(name, _)| name.to_owned())
                .unwrap_or_default(),
            samples,
        })
        .collect();
    processes.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.pid.cmp(&b.pid)));
    Some(ProcessShares {
        processes,
        total,
        period_ns: period_ns(profile),
    })
}

/// The index of the `samples` count: the CPU profile's first value, or the default type
/// of a file that lays its values out otherwise.
fn samples_index(profile: &Profile) -> usize {
    let at = CpuValue::Samples.index();
    match profile.sample_types.get(at) {
        Some(t) if t.unit == "count" => at,
        _ => profile.default_sample_type,
    }
}

/// A sample's pid: numeric as collected, or a string label as another tool may write it.
fn pid(sample: &Sample) -> Option<i64> {
    sample
        .label_num(LabelKey::Pid)
        .or_else(|| sample.label_str(LabelKey::Pid)?.parse().ok())
}

/// The CPU time between two samples, when the profile's period is one of CPU time.
fn period_ns(profile: &Profile) -> Option<u64> {
    let t = profile.period_type.as_ref()?;
    (t.unit == "nanoseconds" && profile.period > 0).then_some(profile.period.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::{line, location};
    use profiler_model::{Label, ProfileBuilder, ValueType};

    use super::*;

    /// A CPU profile sampled at 100 Hz with one sample per (pid, comm, thread, samples).
    fn profile(samples: &[(i64, &str, &str, i64)]) -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            ProfileKind::Cpu,
            vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        b.period(ValueType::new("cpu", "nanoseconds"), 10_000_000);
        let main = b.location(location(1, None, vec![line("main")]));
        let stack = b.stack(vec![main]);
        for &(pid, comm, thread, n) in samples {
            let mut labels = vec![
                Label::num(LabelKey::Pid, pid),
                Label::num(LabelKey::Tid, pid),
                Label::str(LabelKey::Comm, comm),
            ];
            if !thread.is_empty() {
                labels.push(Label::str(LabelKey::Thread, thread));
            }
            b.add_sample(stack, &[n, n * 10_000_000], labels);
        }
        b.build()
    }

    #[test]
    fn samples_are_split_by_pid_not_by_name() {
        // Two processes of one name stay apart; a process's threads add up under it.
        let p = profile(&[
            (10, "python3", "", 30),
            (11, "python3", "", 20),
            (12, "java", "GC Thread#1", 5),
            (12, "java", "", 45),
        ]);
        let shares = by_process(&p).unwrap();
        assert_eq!(shares.total, 100);
        assert!(shares.several());
        let rows: Vec<(Option<i64>, &str, u64)> = shares
            .processes
            .iter()
            .map(|s| (s.pid, s.comm.as_str(), s.samples))
            .collect();
        assert_eq!(
            rows,
            [
                (Some(12), "java", 50),
                (Some(10), "python3", 30),
                (Some(11), "python3", 20)
            ]
        );
        assert_eq!(shares.period_ns, Some(10_000_000));
        assert_eq!(shares.cpu_ns(50), Some(500_000_000));
        assert!((shares.percent(30) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn the_rest_is_summed() {
        let p = profile(&[(1, "a", "", 6), (2, "b", "", 3), (3, "c", "", 1)]);
        let shares = by_process(&p).unwrap();
        let (top, others) = shares.split(1);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].comm, "a");
        assert_eq!(others, Some((2, 4)));
        assert_eq!(shares.split(3).1, None);
        assert_eq!(shares.split(9).0.len(), 3);
    }

    #[test]
    fn a_process_is_named_by_most_of_its_samples() {
        let p = profile(&[(7, "sh", "", 1), (7, "server", "", 9)]);
        let shares = by_process(&p).unwrap();
        assert_eq!(shares.processes.len(), 1);
        assert!(!shares.several());
        assert_eq!(shares.processes[0].comm, "server");
    }

    #[test]
    fn only_cpu_profiles_have_shares() {
        let mut p = profile(&[(1, "a", "", 1)]);
        p.kind = ProfileKind::Io;
        assert_eq!(by_process(&p), None);
    }

    #[test]
    fn no_period_is_no_cpu_time() {
        let mut p = profile(&[(1, "a", "", 1)]);
        p.period_type = None;
        let shares = by_process(&p).unwrap();
        assert_eq!(shares.cpu_ns(1), None);
    }
}
