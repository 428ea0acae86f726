//! Where each thread's wall-clock time in the window went, from the kernel's exact sums:
//! on CPU, runnable, and off CPU by reason; written as the off-CPU profile's accounting.

use std::collections::{BTreeMap, HashMap};

use profiler_common::OffCpuThread;
use profiler_model::labels::OffCpuReason;

use crate::collect::records::comm;

/// Processes listed in a budget, the longest waiting first.
const MAX_PROCESSES: usize = 8;
/// Threads listed per process, the longest waiting first.
const MAX_THREADS: usize = 16;

/// One thread's time in the window.
#[derive(Debug, Clone)]
pub struct ThreadBudget {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The thread's name.
    pub thread: String,
    /// Its part of the window: from the window's start or its birth...
    pub start_ns: u64,
    /// ...to the window's end or its exit.
    pub stop_ns: u64,
    /// Time on CPU.
    pub oncpu_ns: u64,
    /// Time off CPU before its first switch-in, when it had been off CPU since before the
    /// window (why is not known).
    pub unseen_ns: u64,
    /// Time off CPU by reason, runnable time under [`OffCpuReason::Runqueue`].
    pub by_reason: [u64; OffCpuReason::ALL.len()],
    /// Time off CPU as the kernel summed it by class, whether its site was recorded or not.
    pub kernel_ns: u64,
}

impl ThreadBudget {
    /// The budget of `thread` as the kernel left it, in a window from `window_start_ns` to
    /// `window_end_ns`; its waits by reason are added with [`Self::add_reason`].
    pub fn of(thread: &OffCpuThread, window_start_ns: u64, window_end_ns: u64) -> Self {
        let start_ns = match thread.born_ns {
            0 => window_start_ns,
            born => born.max(window_start_ns),
        };
        let stop_ns = match thread.exit_ns {
            0 => window_end_ns,
            exit => exit.min(window_end_ns),
        };
        let mut oncpu_ns = thread.oncpu_ns;
        if thread.first_out_ns != 0 {
            // On CPU from the window's start to its first switch-out.
            oncpu_ns += thread.first_out_ns.saturating_sub(window_start_ns);
        }
        let unseen_ns = match thread.first_in_ns {
            0 => 0,
            first_in => first_in.saturating_sub(start_ns),
        };

        Self {
            pid: thread.pid,
            tid: thread.tid,
            thread: comm(&thread.comm),
            start_ns,
            stop_ns,
            oncpu_ns,
            unseen_ns,
            by_reason: [0; OffCpuReason::ALL.len()],
            kernel_ns: thread.offcpu_ns + thread.runnable_ns,
        }
    }

    /// The budget of a thread that waited through the whole window, from
    /// `window_start_ns` to `window_end_ns`, its reason to be added.
    pub fn waiting(
        pid: u32,
        tid: u32,
        name: &str,
        window_start_ns: u64,
        window_end_ns: u64,
    ) -> Self {
        Self {
            pid,
            tid,
            thread: name.to_owned(),
            start_ns: window_start_ns,
            stop_ns: window_end_ns,
            oncpu_ns: 0,
            unseen_ns: 0,
            by_reason: [0; OffCpuReason::ALL.len()],
            kernel_ns: window_end_ns.saturating_sub(window_start_ns),
        }
    }

    /// Adds a wait the kernel had not settled when the window closed.
    pub fn add_wait(&mut self, delay_ns: u64, runnable_ns: u64) {
        self.kernel_ns += delay_ns + runnable_ns;
    }

    /// Adds time off CPU for `reason`.
    pub fn add_reason(&mut self, reason: OffCpuReason, nanos: u64) {
        self.by_reason[reason as usize] += nanos;
    }

    /// Its part of the window.
    pub fn wall_ns(&self) -> u64 {
        self.stop_ns.saturating_sub(self.start_ns)
    }

    /// Time off CPU, every reason.
    pub fn off_cpu_ns(&self) -> u64 {
        self.by_reason.iter().sum::<u64>() + self.unseen_ns
    }

    /// Off-CPU time the kernel counted whose site was not recorded (its map was full).
    pub fn unrecorded_ns(&self) -> u64 {
        self.kernel_ns
            .saturating_sub(self.by_reason.iter().sum::<u64>())
    }
}

/// The time budgets of a run's threads.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Every thread followed.
    pub threads: Vec<ThreadBudget>,
    /// Process names by id.
    pub names: HashMap<u32, String>,
}

impl Budget {
    /// The budget as lines: per process the sum of its threads, then its threads, the
    /// longest off CPU first.
    pub fn lines(&self) -> Vec<String> {
        let mut by_process: BTreeMap<u32, Vec<&ThreadBudget>> = BTreeMap::new();
        for thread in &self.threads {
            by_process.entry(thread.pid).or_default().push(thread);
        }
        let mut processes: Vec<(u32, Vec<&ThreadBudget>)> = by_process.into_iter().collect();
        processes.sort_by_key(|(pid, threads)| {
            let off: u64 = threads.iter().map(|t| t.off_cpu_ns()).sum();
            (std::cmp::Reverse(off), *pid)
        });
        let mut lines = Vec::new();
        for (pid, mut threads) in processes.iter().take(MAX_PROCESSES).cloned() {
            threads.sort_by_key(|t| (std::cmp::Reverse(t.off_cpu_ns()), t.tid));
            let name = self.names.get(&pid).map_or("?", String::as_str);
            let total = sum(&threads);
            lines.push(format!(
                "budget: {name} (pid {pid}), {} thread{}: {}",
                threads.len(),
                if threads.len() == 1 { "" } else { "s" },
                equation(&total)
            ));
            for thread in threads.iter().take(MAX_THREADS) {
                lines.push(format!(
                    "budget:   thread {} (tid {}): {}",
                    thread.thread,
                    thread.tid,
                    equation(thread)
                ));
            }
            if threads.len() > MAX_THREADS {
                lines.push(format!(
                    "budget:   {} more threads",
                    threads.len() - MAX_THREADS
                ));
            }
        }
        if processes.len() > MAX_PROCESSES {
            lines.push(format!(
                "budget: {} more processes",
                processes.len() - MAX_PROCESSES
            ));
        }
        lines
    }
}

/// The sum of `threads`' budgets (named after none of them).
fn sum(threads: &[&ThreadBudget]) -> ThreadBudget {
    let mut total = ThreadBudget {
        pid: 0,
        tid: 0,
        thread: String::new(),
        start_ns: 0,
        stop_ns: 0,
        oncpu_ns: 0,
        unseen_ns: 0,
        by_reason: [0; OffCpuReason::ALL.len()],
        kernel_ns: 0,
    };
    for t in threads {
        total.stop_ns += t.wall_ns();
        total.oncpu_ns += t.oncpu_ns;
        total.unseen_ns += t.unseen_ns;
        total.kernel_ns += t.kernel_ns;
        for (sum, part) in total.by_reason.iter_mut().zip(t.by_reason) {
            *sum += part;
        }
    }
    total
}

/// `3.000 s = on CPU 0.150 s + runnable 0.010 s + sleep 2.840 s`, reasons in their order,
/// those without time left out; what the parts miss or exceed of the wall time is said.
fn equation(t: &ThreadBudget) -> String {
    let secs = |ns: u64| format!("{:.3} s", ns as f64 / 1e9);
    let mut out = format!("{} = on CPU {}", secs(t.wall_ns()), secs(t.oncpu_ns));
    for reason in OffCpuReason::ALL {
        let ns = t.by_reason[reason as usize];
        if ns > 0 {
            let name = match reason {
                OffCpuReason::Runqueue => "runnable",
                other => other.label(),
            };
            out.push_str(&format!(" + {name} {}", secs(ns)));
        }
    }
    if t.unseen_ns > 0 {
        out.push_str(&format!(
            " + off CPU since before the window {}",
            secs(t.unseen_ns)
        ));
    }
    let unrecorded = t.unrecorded_ns();
    if unrecorded > 0 {
        out.push_str(&format!(" + sites not recorded {}", secs(unrecorded)));
    }
    let parts = t.oncpu_ns + t.off_cpu_ns() + unrecorded;
    let wall = t.wall_ns();
    if parts.abs_diff(wall) * 100 > wall {
        out.push_str(&format!(
            " (the parts {} it by {})",
            if parts > wall { "exceed" } else { "miss" },
            secs(parts.abs_diff(wall))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(pid: u32, tid: u32) -> OffCpuThread {
        OffCpuThread {
            pid,
            tid,
            comm: *b"app\0\0\0\0\0\0\0\0\0\0\0\0\0",
            ..OffCpuThread::default()
        }
    }

    #[test]
    fn a_thread_running_since_before_the_window_is_on_cpu_from_its_start() {
        let mut t = thread(7, 7);
        t.first_out_ns = 1_500;
        t.oncpu_ns = 200;
        t.offcpu_ns = 300;
        let mut b = ThreadBudget::of(&t, 1_000, 3_000);
        b.add_reason(OffCpuReason::Sleep, 300);
        assert_eq!(b.wall_ns(), 2_000);
        assert_eq!(b.oncpu_ns, 700);
        assert_eq!(b.off_cpu_ns(), 300);
        assert_eq!(b.unrecorded_ns(), 0);
    }

    #[test]
    fn the_budget_says_what_its_parts_miss() {
        let mut t = thread(7, 8);
        t.born_ns = 2_000_000_000;
        t.oncpu_ns = 500_000_000;
        let mut b = ThreadBudget::of(&t, 1_000_000_000, 4_000_000_000);
        b.add_reason(OffCpuReason::Disk, 1_000_000_000);
        let budget = Budget {
            threads: vec![b],
            names: HashMap::from([(7, "app".to_owned())]),
        };
        let lines = budget.lines();
        assert_eq!(
            lines[0],
            "budget: app (pid 7), 1 thread: 2.000 s = on CPU 0.500 s + disk 1.000 s \
             (the parts miss it by 0.500 s)"
        );
        assert!(lines[1].starts_with("budget:   thread app (tid 8): 2.000 s"));
    }
}
