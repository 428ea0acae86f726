//! The CPU tab's per-process table: each process's samples and CPU time, as the terminal
//! summary's per-process lines count them, for a run where several processes have samples.

use profiler_model::Profile;
use serde::Serialize;

use crate::analysis::cpu_shares;
use crate::output::folded::frame_name;

/// At most this many processes get a row; the rest are summed in [`ProcessesData::others`].
pub const MAX_PROCESSES: usize = 100;

/// One process's CPU samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    /// Its name.
    pub name: String,
    /// Its frame at the root of the flame graph.
    pub frame: String,
    /// Its pid, when the samples had one.
    pub pid: Option<i64>,
    /// Its samples.
    pub samples: u64,
    /// The CPU time they stand for (samples / frequency), when the period is known.
    pub cpu_ns: Option<u64>,
}

/// The processes past [`MAX_PROCESSES`], summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherProcesses {
    /// How many.
    pub count: usize,
    /// Their samples.
    pub samples: u64,
    /// Their CPU time, when the period is known.
    pub cpu_ns: Option<u64>,
}

/// The CPU profile's samples by process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessesData {
    /// The processes, most samples first.
    pub rows: Vec<ProcessRow>,
    /// The rest, summed.
    pub others: Option<OtherProcesses>,
    /// All samples, for the shares.
    pub total: u64,
}

/// The per-process table of a CPU profile; `None` for other profiles and when at most one
/// process has samples.
pub(super) fn process_rows(profile: &Profile) -> Option<ProcessesData> {
    let shares = cpu_shares::by_process(profile).filter(|s| s.several())?;
    let (shown, others) = shares.split(MAX_PROCESSES);
    Some(ProcessesData {
        rows: shown
            .iter()
            .map(|p| ProcessRow {
                name: p.comm.clone(),
                frame: frame_name(&p.comm),
                pid: p.pid,
                samples: p.samples,
                cpu_ns: shares.cpu_ns(p.samples),
            })
            .collect(),
        others: others.map(|(count, samples)| OtherProcesses {
            count,
            samples,
            cpu_ns: shares.cpu_ns(samples),
        }),
        total: shares.total,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::{line, location};
    use profiler_model::{Label, LabelKey, ProfileBuilder, ProfileKind, ValueType};

    use super::*;

    fn profile(processes: &[(i64, &str, i64)]) -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            ProfileKind::Cpu,
            vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        b.period(ValueType::new("cpu", "nanoseconds"), 1_000_000);
        let main = b.location(location(1, None, vec![line("main")]));
        let stack = b.stack(vec![main]);
        for &(pid, comm, n) in processes {
            let labels = vec![
                Label::num(LabelKey::Pid, pid),
                Label::str(LabelKey::Comm, comm),
            ];
            b.add_sample(stack, &[n, n * 1_000_000], labels);
        }
        b.build()
    }

    #[test]
    fn rows_by_process_with_cpu_time() {
        let data = process_rows(&profile(&[(1, "a b", 3), (2, "c", 7)])).unwrap();
        assert_eq!(data.total, 10);
        assert_eq!(data.others, None);
        assert_eq!(
            data.rows[0],
            ProcessRow {
                name: "c".into(),
                frame: "c".into(),
                pid: Some(2),
                samples: 7,
                cpu_ns: Some(7_000_000)
            }
        );
        assert_eq!((data.rows[1].pid, data.rows[1].samples), (Some(1), 3));
    }

    #[test]
    fn one_process_has_no_table_and_many_are_capped() {
        assert_eq!(process_rows(&profile(&[(1, "a", 3)])), None);
        let many: Vec<(i64, &str, i64)> = (0..MAX_PROCESSES as i64 + 2)
            .map(|pid| (pid, "p", 1))
            .collect();
        let data = process_rows(&profile(&many)).unwrap();
        assert_eq!(data.rows.len(), MAX_PROCESSES);
        assert_eq!(
            data.others,
            Some(OtherProcesses {
                count: 2,
                samples: 2,
                cpu_ns: Some(2_000_000)
            })
        );
    }
}
