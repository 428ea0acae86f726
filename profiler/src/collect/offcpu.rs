//! The off-CPU profile: every wait of a target thread, from its switch-out to its wakeup
//! and its switch-in, counted exactly by the kernel per site; the stacks of sampled waits,
//! each with its own time, so a site's totals are split over its stacks by delay; and who
//! woke them. The per-thread time budget comes from the same exact sums.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use profiler_common::{OffCpuKey, OffCpuSwitchIn, OffCpuThread, OffCpuValue, counter, sample_kind};
use profiler_model::labels::{IN_PROGRESS, OffCpuReason};
use profiler_model::{Account, Cause, Count, Counted, Loss, Subject, Table, Tally};
use profiler_model::{Comment, Label, LabelKey, LostStack, ProfileKind};

use crate::collect::collector::{Collector, RunEnd, Sample, Seen};
use crate::collect::offcpu_budget::{Budget, ThreadBudget};
use crate::collect::offcpu_idle::{self, Snapshot};
use crate::collect::offcpu_reason::reason;
use crate::collect::offcpu_split::{Sampled, Sampling, Totals, add_split, push};
use crate::collect::probes::Probes;
use crate::collect::raw_profile::{RawProfile, RawStack, RawWaker};
use crate::collect::records::comm;
use crate::process::names::process_name;

/// Sampled waits kept per run: the kernel sends at most a few thousand a second per CPU;
/// past this many the rest are counted and their time still goes to their sites.
const MAX_SAMPLED_WAITS: usize = 1 << 20;

/// A wait, by its thread and its number in that thread.
type WaitId = (u32, u32);

/// The times of a sampled wait and its waker's ids.
#[derive(Debug, Clone, Copy, Default)]
struct WaitTimes {
    delay_ns: u64,
    runnable_ns: u64,
}

/// Collects the off-CPU profile.
#[derive(Default)]
pub struct OffCpuCollector {
    /// Sampled waits: their site and stacks.
    waits: HashMap<WaitId, (OffCpuKey, RawStack)>,
    /// The times of sampled waits that ended.
    ends: HashMap<WaitId, WaitTimes>,
    /// The wakers of sampled waits.
    wakers: HashMap<WaitId, RawWaker>,
    /// Sampled waits not kept (over [`MAX_SAMPLED_WAITS`]).
    dropped: u64,
    /// The `--pid` targets.
    targets: Vec<u32>,
    /// Their threads as `/proc` showed them when the window closed.
    at_close: Vec<Snapshot>,
    /// The names of the processes that woke sampled waits, read while they live.
    waker_processes: HashMap<u32, String>,
}

impl OffCpuCollector {
    /// Loads the off-CPU programs; the session attaches them when the window opens.
    ///
    /// # Errors
    /// When the kernel refuses a program.
    pub fn start(probes: &mut Probes) -> Result<Self> {
        probes.load_offcpu()?;
        Ok(Self::default())
    }

    fn full(&mut self) -> bool {
        let full = self.waits.len() + self.ends.len() + self.wakers.len() >= MAX_SAMPLED_WAITS;
        if full {
            self.dropped += 1;
        }
        full
    }
}

impl Collector for OffCpuCollector {
    fn takes(&self, kind: u32) -> bool {
        matches!(
            kind,
            sample_kind::OFFCPU | sample_kind::OFFCPU_END | sample_kind::OFFCPU_WAKER
        )
    }

    fn take(&mut self, sample: &Sample) {
        if self.full() {
            return;
        }
        let wait = sample.header.offcpu;
        let id = (wait.tid, wait.seq);
        let stack = RawStack::Sampled {
            user: sample.user,
            kernel: sample.kernel,
        };
        match sample.header.kind {
            sample_kind::OFFCPU => {
                self.waits.insert(id, (wait.site, stack));
            }
            sample_kind::OFFCPU_END => {
                let times = WaitTimes {
                    delay_ns: wait.delay_ns,
                    runnable_ns: wait.runnable_ns,
                };
                self.ends.insert(id, times);
            }
            _ => {
                let pid = sample.header.pid;
                let thread = comm(&sample.header.comm);
                let process = self
                    .waker_processes
                    .entry(pid)
                    .or_insert_with(|| process_name(pid).unwrap_or(thread))
                    .clone();
                let waker = RawWaker {
                    stack,
                    comm: process,
                };
                self.wakers.insert(id, waker);
            }
        }
    }

    fn attach(&mut self, _probes: &mut Probes, seen: Seen) {
        if let Seen::Target(pid) = seen {
            self.targets.push(pid);
        }
    }

    fn close(&mut self, probes: &mut Probes, window_end_ktime_ns: u64) {
        if let Err(err) = probes.end_offcpu_window(window_end_ktime_ns) {
            log::warn!("{err:#}");
        }
        self.at_close = offcpu_idle::snapshot(&self.targets);
    }

    /// Sample types `waits/count` and `delay/nanoseconds` (the default); labels `pid`,
    /// `tid`, `comm` (the process's name), `thread`, `reason`, and `outcome` for a wait still
    /// in progress at the end; the waker goes with the sample for the converter to name.
    fn finish(self: Box<Self>, probes: &mut Probes, run: &RunEnd<'_>) -> Result<RawProfile> {
        let mut sites = probes.read_offcpu_sites()?;
        sites.retain(|(key, _)| run.keeps(key.pid));
        let (live, done) = probes.read_offcpu_threads()?;
        let switch_ins = probes.read_offcpu_switch_ins()?;
        let end = run.window_end_ktime_ns;
        let mut this = *self;
        let mut totals = settled(&sites, &live, &done, run);
        let ended: u64 = totals.values().map(|t| t.waits).sum();
        let (mut threads, in_progress) = this.unsettled(&live, &switch_ins, &mut totals, run);
        for thread in done.iter().filter(|t| run.keeps(t.pid)) {
            threads.push(ThreadBudget::of(thread, run.window_start_ktime_ns, end));
        }
        let mut out = Building {
            raw: RawProfile::new(ProfileKind::OffCpu, Vec::new()),
            names: Names::of(live.iter().map(|(_, t)| t).chain(&done)),
            by_site: this.sampled_by_site(),
            reasons: HashMap::new(),
        };
        for (key, id, delay, runnable) in in_progress {
            out.add_in_progress(&this, key, id, delay, runnable, run);
        }
        let mut ordered: Vec<(&OffCpuKey, &Totals)> = totals.iter().collect();
        ordered.sort_by_key(|(key, _)| key_order(key));
        for (key, t) in ordered {
            out.add_site(key, t, run);
        }
        for budget in &mut threads {
            for &(why, nanos) in out.reasons.get(&budget.tid).map_or(&[][..], Vec::as_slice) {
                budget.add_reason(why, nanos);
            }
        }
        out.add_unseen(&this.at_close, &mut threads, run);
        let budget = Budget {
            threads,
            names: out.names.processes.clone(),
        };
        let mut raw = out.raw;
        raw.accounting = accounting(run, ended, this.dropped, &budget);
        Ok(raw)
    }
}

/// A wait the kernel had not settled when the window closed: its site, its id, and its
/// delay and runnable time up to its end or the window's.
type Unsettled = (OffCpuKey, WaitId, u64, u64);

/// The totals of every site the kernel settled: those of its aggregation map, and the
/// sums each thread kept for itself (at its last site, and its waits for a CPU).
fn settled(
    sites: &[(OffCpuKey, OffCpuValue)],
    live: &[(u64, OffCpuThread)],
    done: &[OffCpuThread],
    run: &RunEnd<'_>,
) -> HashMap<OffCpuKey, Totals> {
    let mut totals: HashMap<OffCpuKey, Totals> = sites
        .iter()
        .map(|(key, v)| {
            let t = Totals {
                waits: v.waits,
                nanos: v.nanos,
                runnable: v.runnable_nanos,
            };
            (*key, t)
        })
        .collect();
    let kept = live
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.exit_ns == 0)
        .chain(done)
        .filter(|t| t.pid != 0 && run.keeps(t.pid));
    for thread in kept {
        let (pid, tid) = (thread.pid, thread.tid);
        for (site, sums) in [
            (thread.run_site, thread.run),
            (runqueue_key(pid, tid), thread.runq),
        ] {
            if sums.waits > 0 {
                let key = OffCpuKey { pid, tid, ..site };
                totals
                    .entry(key)
                    .or_default()
                    .add(sums.waits, sums.nanos, sums.runnable_nanos);
            }
        }
    }
    totals
}

impl OffCpuCollector {
    /// The budgets of the live threads, each with the wait the kernel had not settled: one
    /// that ended when the thread was switched in last is added to `totals`, one still
    /// going on is returned.
    fn unsettled(
        &mut self,
        live: &[(u64, OffCpuThread)],
        switch_ins: &[OffCpuSwitchIn],
        totals: &mut HashMap<OffCpuKey, Totals>,
        run: &RunEnd<'_>,
    ) -> (Vec<ThreadBudget>, Vec<Unsettled>) {
        let end = run.window_end_ktime_ns;
        let mut threads = Vec::new();
        let mut in_progress = Vec::new();
        for (task, thread) in live {
            // An exited thread's budget is in `done`; a thread born but never run has none.
            if !run.keeps(thread.pid) || thread.pid == 0 || thread.exit_ns != 0 {
                continue;
            }
            let mut budget = ThreadBudget::of(thread, run.window_start_ktime_ns, end);
            if thread.out_ns != 0 {
                let mut key = thread.site;
                (key.pid, key.tid) = (thread.pid, thread.tid);
                let id = (thread.tid, thread.seq);
                let switched_in = switch_ins
                    .iter()
                    .find(|s| s.task == *task && s.at_ns >= thread.out_ns)
                    .map(|s| s.at_ns.min(end));
                let until = switched_in.unwrap_or(end);
                let woke = match thread.wake_ns {
                    0 => until,
                    w => w.min(until),
                };
                let delay = woke.saturating_sub(thread.out_ns);
                let runnable = until.saturating_sub(woke);
                budget.add_wait(delay, runnable);
                if thread.sampled != 0 {
                    self.ends.entry(id).or_insert(WaitTimes {
                        delay_ns: delay,
                        runnable_ns: runnable,
                    });
                }
                match switched_in {
                    Some(at) => {
                        budget.oncpu_ns += end.saturating_sub(at);
                        totals.entry(key).or_default().add(1, delay, runnable);
                    }
                    None => in_progress.push((key, id, delay, runnable)),
                }
            }
            threads.push(budget);
        }
        (threads, in_progress)
    }
}

/// The off-CPU profile being built, with what its samples are named and split by.
struct Building {
    raw: RawProfile,
    names: Names,
    /// The stacks sampled at each site.
    by_site: HashMap<OffCpuKey, Vec<Sampled>>,
    /// The time each thread spent by reason, for its budget.
    reasons: HashMap<u32, Vec<(OffCpuReason, u64)>>,
}

impl Building {
    /// Adds a wait still going on at the window's end, on its own stacks when it was
    /// sampled, else on those sampled at its site.
    fn add_in_progress(
        &mut self,
        collector: &OffCpuCollector,
        key: OffCpuKey,
        id: WaitId,
        delay: u64,
        runnable: u64,
        run: &RunEnd<'_>,
    ) {
        let why = site_reason(&key, run);
        let labels = self.names.labels(&key, why, Some(IN_PROGRESS));
        let stacks: Vec<Sampled> = match collector.waits.get(&id) {
            Some((_, stack)) => vec![Sampled {
                stack: *stack,
                waker: None,
                sampling: Sampling::of(id.1),
                seen: 1,
                delay,
                runnable,
            }],
            None => self
                .by_site
                .get(&key)
                .into_iter()
                .flatten()
                // Nothing has woken this one yet.
                .map(|s| Sampled {
                    waker: None,
                    ..s.clone()
                })
                .collect(),
        };
        let t = Totals {
            waits: 1,
            nanos: delay,
            runnable,
        };
        add_split(
            &mut self.raw,
            &stacks,
            &t,
            &labels,
            self.names.runnable(&labels),
        );
        let per = self.reasons.entry(key.tid).or_default();
        per.push((why, delay));
        per.push((OffCpuReason::Runqueue, runnable));
    }

    /// Adds a site's settled waits, split over the stacks sampled there.
    fn add_site(&mut self, key: &OffCpuKey, t: &Totals, run: &RunEnd<'_>) {
        let why = site_reason(key, run);
        let labels = self.names.labels(key, why, None);
        let stacks = self.by_site.remove(key).unwrap_or_default();
        add_split(
            &mut self.raw,
            &stacks,
            t,
            &labels,
            self.names.runnable(&labels),
        );
        let per = self.reasons.entry(key.tid).or_default();
        per.push((why, t.nanos));
        per.push((OffCpuReason::Runqueue, t.runnable));
    }

    /// Adds the threads the tracepoints never saw, which waited through the whole window
    /// (as the snapshot at its close found them), each with its budget.
    fn add_unseen(
        &mut self,
        at_close: &[Snapshot],
        threads: &mut Vec<ThreadBudget>,
        run: &RunEnd<'_>,
    ) {
        let seen: HashSet<u32> = threads.iter().map(|t| t.tid).collect();
        let (start, end) = (run.window_start_ktime_ns, run.window_end_ktime_ns);
        let wall = end.saturating_sub(start);
        for idle in at_close {
            let Some(class) = idle.class else { continue };
            if seen.contains(&idle.tid) || !run.keeps(idle.pid) {
                continue;
            }
            self.names.add(idle.pid, idle.tid, &idle.name);
            let why = reason(class, idle.syscall, idle.descriptor);
            let key = OffCpuKey {
                pid: idle.pid,
                tid: idle.tid,
                ..OffCpuKey::default()
            };
            let labels = self.names.labels(&key, why, Some(IN_PROGRESS));
            let whole = RawStack::Lost(LostStack::WholeWindow);
            push(&mut self.raw, whole, None, [1, wall], labels);
            let mut budget = ThreadBudget::waiting(idle.pid, idle.tid, &idle.name, start, end);
            budget.add_reason(why, wall);
            threads.push(budget);
        }
    }
}

/// The one site of a thread's waits for a CPU, as the kernel program keys it.
fn runqueue_key(pid: u32, tid: u32) -> OffCpuKey {
    OffCpuKey {
        pid,
        tid,
        class: profiler_common::offcpu_class::RUNQUEUE,
        syscall: profiler_common::NO_SYSCALL,
        fd: -1,
        ..OffCpuKey::default()
    }
}

impl OffCpuCollector {
    /// The sampled waits grouped by site, then by stacks and waker, in a fixed order.
    fn sampled_by_site(&self) -> HashMap<OffCpuKey, Vec<Sampled>> {
        // (seen, delay, runnable) of the waits of one site with the same stacks, waker and
        // sampling.
        type Group = (OffCpuKey, RawStack, Option<RawWaker>, Sampling);
        let mut groups: HashMap<Group, (u64, u64, u64)> = HashMap::new();
        for (id, (site, stack)) in &self.waits {
            let times = self.ends.get(id).copied().unwrap_or_default();
            let waker = self.wakers.get(id).cloned();
            let key = (*site, *stack, waker, Sampling::of(id.1));
            let group = groups.entry(key).or_default();
            group.0 += 1;
            group.1 += times.delay_ns;
            group.2 += times.runnable_ns;
        }
        let mut by_site: HashMap<OffCpuKey, Vec<Sampled>> = HashMap::new();
        for ((site, stack, waker, sampling), (seen, delay, runnable)) in groups {
            by_site.entry(site).or_default().push(Sampled {
                stack,
                waker,
                sampling,
                seen,
                delay,
                runnable,
            });
        }
        for stacks in by_site.values_mut() {
            stacks.sort_by(|a, b| {
                (b.delay, b.seen, &b.waker.as_ref().map(|w| &w.comm)).cmp(&(
                    a.delay,
                    a.seen,
                    &a.waker.as_ref().map(|w| &w.comm),
                ))
            });
        }
        by_site
    }
}

/// A fixed order of sites, so profiles come out the same whatever the maps' order.
fn key_order(k: &OffCpuKey) -> (u32, u32, u32, i32, i64, u64, u64, u64, u64, u64) {
    (
        k.pid, k.tid, k.class, k.syscall, k.fd, k.ip, k.sp, k.bp, k.ret, k.python,
    )
}

/// The reason of a site's waits.
fn site_reason(key: &OffCpuKey, run: &RunEnd<'_>) -> OffCpuReason {
    let descriptor = run
        .processes
        .get(key.pid)
        .and_then(|p| p.descriptor(key.ip, key.fd));
    reason(key.class, key.syscall, descriptor)
}

/// The names of the run's processes and threads, as the off-CPU programs saw them.
#[derive(Default)]
struct Names {
    /// Process id -> its main thread's name.
    processes: HashMap<u32, String>,
    /// Thread id -> its name.
    threads: HashMap<u32, String>,
}

impl Names {
    fn of<'a>(threads: impl Iterator<Item = &'a OffCpuThread>) -> Self {
        let mut names = Self::default();
        let mut others = Vec::new();
        for t in threads {
            let name = comm(&t.comm);
            if t.tid == t.pid {
                names.processes.insert(t.pid, name.clone());
            } else {
                others.push((t.pid, name.clone()));
            }
            names.threads.insert(t.tid, name);
        }
        // A process whose main thread never left the CPU is named after another thread.
        for (pid, name) in others {
            names.processes.entry(pid).or_insert(name);
        }
        names
    }

    /// Names a thread `/proc` showed, and its process after it when it is the main one.
    fn add(&mut self, pid: u32, tid: u32, name: &str) {
        self.threads.insert(tid, name.to_owned());
        if tid == pid {
            self.processes.insert(pid, name.to_owned());
        } else {
            self.processes.entry(pid).or_insert_with(|| name.to_owned());
        }
    }

    fn process(&self, pid: u32, tid: u32) -> String {
        self.processes
            .get(&pid)
            .or_else(|| self.threads.get(&tid))
            .cloned()
            .unwrap_or_default()
    }

    fn labels(&self, key: &OffCpuKey, why: OffCpuReason, outcome: Option<&str>) -> Vec<Label> {
        let mut labels = vec![
            Label::num(LabelKey::Pid, i64::from(key.pid)),
            Label::num(LabelKey::Tid, i64::from(key.tid)),
            Label::str(LabelKey::Comm, self.process(key.pid, key.tid)),
            Label::str(
                LabelKey::Thread,
                self.threads.get(&key.tid).cloned().unwrap_or_default(),
            ),
            Label::str(LabelKey::Reason, why.label()),
        ];
        if let Some(outcome) = outcome {
            labels.push(Label::str(LabelKey::Outcome, outcome));
        }
        labels
    }

    /// The labels of the runnable part of a wait: the same, with reason `runqueue`.
    fn runnable(&self, labels: &[Label]) -> Vec<Label> {
        labels
            .iter()
            .map(|label| {
                if label.key == LabelKey::Reason {
                    Label::str(LabelKey::Reason, OffCpuReason::Runqueue.label())
                } else {
                    label.clone()
                }
            })
            .collect()
    }
}

fn loss(count: u64, cause: Cause) -> Loss {
    Loss { count, cause }
}

fn accounting(run: &RunEnd<'_>, ended: u64, dropped: u64, budget: &Budget) -> Vec<Comment> {
    let c = run.counters;
    let mut lines = vec![
        Comment::Method(
            "traced: every switch-out of a target thread to its wakeup and switch-in \
             (sched_switch, sched_waking); exact totals per wait site, stacks of the first \
             wait of a site and 1 wait in 64, split by their own delays"
                .to_owned(),
        ),
        Comment::Account(Account::Tally(Tally {
            subject: Subject::OffCpuWaits,
            counts: vec![Count {
                count: ended,
                what: Counted::Completed,
            }],
            lost: vec![
                loss(c.get(counter::OFFCPU_STACKS_RATE_LIMITED), Cause::OverRate),
                loss(dropped, Cause::OverLimit),
                loss(c.get(counter::LOST_OFFCPU_END), Cause::EndsLost),
                loss(
                    c.get(counter::LOST_OFFCPU_SITES_FULL),
                    Cause::MapFull(Table::OffCpuSites),
                ),
                loss(
                    c.get(counter::LOST_OFFCPU_THREADS_FULL),
                    Cause::MapFull(Table::OffCpuThreads),
                ),
                loss(
                    c.get(counter::LOST_OFFCPU_DONE_FULL),
                    Cause::MapFull(Table::OffCpuExited),
                ),
            ],
            stacks_taken: c.get(counter::OFFCPU_STACKS),
            stacks_lost: c.get(counter::LOST_OFFCPU_STACK),
        })),
    ];
    // The budget's lines are words for now: its numbers are the threads' in the profile.
    lines.extend(
        budget
            .lines()
            .into_iter()
            .map(|line| Comment::Account(Account::Note(line))),
    );
    lines
}
