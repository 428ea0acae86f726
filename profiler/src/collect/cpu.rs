//! The CPU profile's collector: `cpu-clock` samples counted by thread and stacks, with
//! what was received, expected and lost.

use std::collections::HashMap;

use anyhow::Result;
use profiler_common::{COMM_LEN, counter, sample_kind};
use profiler_model::LabelKey;
use profiler_model::{
    Account, Comment, CpuValue, Label, ProfileKind, ProgramLabels, Ticks, ValueType,
};

use crate::collect::collector::{Collector, RunEnd, Sample};
use crate::collect::probes::Probes;
use crate::collect::raw_profile::{RawProfile, RawStack};
use crate::collect::records::comm;
use crate::collect::stacks::{StackHandle, UserStack};

/// What one CPU sample is counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CpuSampleKey {
    pid: u32,
    tid: u32,
    /// The thread's command name, NUL padded.
    comm: [u8; COMM_LEN],
    user: UserStack,
    kernel: StackHandle,
    program: ProgramLabels,
}

/// Counts CPU samples by thread and stacks.
#[derive(Default)]
pub struct CpuCollector {
    samples: HashMap<CpuSampleKey, u64>,
}

impl Collector for CpuCollector {
    fn takes(&self, kind: u32) -> bool {
        kind == sample_kind::CPU
    }

    fn take(&mut self, sample: &Sample) {
        let key = CpuSampleKey {
            pid: sample.header.pid,
            tid: sample.header.tid,
            comm: sample.header.comm,
            user: sample.user,
            kernel: sample.kernel,
            program: sample.program.clone(),
        };
        *self.samples.entry(key).or_default() += 1;
    }

    /// Sample types `samples/count` and `cpu/nanoseconds`, labels `pid`, `tid` and
    /// `comm`, and comments saying what was received, expected and lost.
    fn finish(self: Box<Self>, _probes: &mut Probes, run: &RunEnd<'_>) -> Result<RawProfile> {
        let frequency = run.config.frequency;
        let period_ns = 1_000_000_000 / frequency as i64;
        let mut raw = RawProfile::new(ProfileKind::Cpu, accounting(run));
        raw.period = Some((ValueType::new("cpu", "nanoseconds"), period_ns));
        let mut samples: Vec<_> = self
            .samples
            .into_iter()
            .filter(|(key, _)| run.keeps(key.pid))
            .collect();
        // The same profile whatever the hash map's order.
        samples.sort_by(|(a, _), (b, _)| {
            let order = |k: &CpuSampleKey| (k.pid, k.tid, k.kernel, k.user.order());
            (order(a), &a.program).cmp(&(order(b), &b.program))
        });
        for (key, count) in samples {
            let count = count as i64;
            let labels = vec![
                Label::num(LabelKey::Pid, i64::from(key.pid)),
                Label::num(LabelKey::Tid, i64::from(key.tid)),
                Label::str(LabelKey::Comm, comm(&key.comm)),
            ];
            let mut values = vec![0; CpuValue::Cpu.index() + 1];
            values[CpuValue::Samples.index()] = count;
            values[CpuValue::Cpu.index()] = count * period_ns;
            let stack = RawStack::Sampled {
                user: key.user,
                kernel: key.kernel,
            };
            raw.add_labeled(stack, values, labels, key.program);
        }
        Ok(raw)
    }
}

/// What the run saw and lost, against what it could have seen, as profile comments.
fn accounting(run: &RunEnd<'_>) -> Vec<Comment> {
    let c = run.counters;
    let frequency = run.config.frequency;
    let ticks = c.get(counter::TICKS);
    let busy_ticks = ticks.saturating_sub(c.get(counter::IDLE));
    let mut lines = vec![
        Comment::Method(format!(
            "sampling: cpu-clock at {frequency} Hz on every CPU; call graph: {}",
            run.call_graph
        )),
        Comment::Account(Account::Ticks(Ticks::new(
            busy_ticks,
            frequency,
            run.busy_cpu_seconds,
            run.duration.as_secs_f64(),
            run.cpus as u64,
        ))),
        Comment::Account(Account::Recorded {
            recorded: c.get(counter::RECORDED),
            filtered: c.get(counter::FILTERED),
        }),
        Comment::Account(Account::SamplesLost {
            samples: c.get(counter::LOST_CPU_SAMPLES),
            user_stacks: c.get(counter::USER_STACK_UNREADABLE),
            kernel_stacks: c.get(counter::LOST_KERNEL_STACK),
        }),
    ];
    let announcements = c.get(counter::LOST_PROC_EVENTS);
    let forks = c.get(counter::LOST_FORKS);
    if announcements + forks > 0 {
        lines.push(Comment::Account(Account::ProcessesLost {
            announcements,
            forks,
        }));
    }
    lines
}
