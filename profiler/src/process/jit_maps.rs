//! `--jit-maps`: which JVMs among the targets are asked for a perf map, and when.
//!
//! A JVM is asked when its first CPU samples come (its code is new) and again whenever a
//! sample lies in its JIT code but its perf map does not name it (it compiled since), at
//! most once every [`EVERY`] per JVM: each request makes HotSpot walk
//! and write its whole code cache. The requests ([`jvm_attach`]) wait for the JVM, so
//! they run on threads of their own, never on the loop that drains the samples. A JVM that
//! refuses is not asked again (one that may only be starting is, a few times), and the
//! run's summary says why in one line. A request goes only to the process first sampled
//! under its pid, told by its start time, never to one that got the pid after it exited.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::jvm_attach::{self, Outcome};
use crate::process::procmaps::ProcessTable;
use crate::process::start_time;

/// How soon one JVM may be asked again.
pub const EVERY: Duration = Duration::from_secs(2);

/// Requests under way at once, over all JVMs.
const MAX_IN_FLIGHT: usize = 4;

/// How many requests may find a JVM not catching SIGQUIT before it counts as refusing:
/// a JVM starting installs its handler only after its first samples come.
const NOT_READY_TRIES: u32 = 5;

/// How long the end of the run waits for requests under way, so that the last map names
/// the code of the last samples.
pub const SETTLE: Duration = Duration::from_secs(3);

/// What is known of one JVM.
#[derive(Debug, Default)]
struct JvmState {
    /// When the process started, read when it was first sampled: a request goes only to
    /// the process with this start time, not to another that got its pid after it exited
    /// (then it ends [`Outcome::Replaced`] and the JVM is not asked again).
    start_time: u64,
    /// When it may be asked again.
    due: Option<Instant>,
    /// Whether code its map does not name ran since it was last asked.
    wanted: bool,
    /// The request under way.
    running: Option<JoinHandle<Outcome>>,
    /// Maps it wrote.
    written: u32,
    /// Why it gave none, once it refused (it is not asked again).
    refused: Option<Outcome>,
    /// Requests that found it not catching SIGQUIT yet.
    not_ready: u32,
    /// Whether it was asked again after no socket came.
    retried_socket: bool,
}

/// The JVMs of the run and their requests.
#[derive(Debug, Default)]
pub struct JitMaps {
    jvms: HashMap<u32, JvmState>,
    /// Processes seen that are not HotSpot JVMs, with the generation of their mappings
    /// when looked at.
    others: HashMap<u32, u64>,
}

impl JitMaps {
    /// Notes a CPU sample of process `pid` at user address `ip`: a JVM seen for the first
    /// time, or one running code its map does not name, is to be asked. Cheap: it runs for
    /// every CPU sample.
    pub fn note_sample(&mut self, processes: &ProcessTable, pid: u32, ip: u64) {
        if !self.jvms.contains_key(&pid) {
            // Looked at again only when its mappings change: a JVM's launcher maps
            // libjvm.so after its first samples.
            let generation = processes.get(pid).map(|info| info.generation);
            if generation.is_none() || self.others.get(&pid) == generation.as_ref() {
                return;
            }
            if !processes.maps_libjvm(pid) {
                self.others.insert(pid, generation.unwrap_or_default());
                return;
            }
            let Ok(start_time) = start_time::read(pid) else {
                // Gone already: its samples stay unnamed.
                self.others.insert(pid, generation.unwrap_or_default());
                return;
            };
            log::debug!("jit maps: process {pid} is a HotSpot JVM");
            self.jvms.insert(
                pid,
                JvmState {
                    start_time,
                    wanted: true,
                    ..JvmState::default()
                },
            );
        }
        if processes.unnamed_jit(pid, ip)
            && let Some(jvm) = self.jvms.get_mut(&pid)
        {
            jvm.wanted = true;
        }
    }

    /// Takes the answers of finished requests and starts those that are due.
    pub fn tick(&mut self, processes: &mut ProcessTable) {
        let now = Instant::now();
        let mut in_flight = 0;
        for (&pid, jvm) in &mut self.jvms {
            if jvm.running.as_ref().is_some_and(JoinHandle::is_finished) {
                take_answer(pid, jvm, processes);
            }
            in_flight += usize::from(jvm.running.is_some());
        }
        for (&pid, jvm) in &mut self.jvms {
            let ready = jvm.wanted
                && jvm.running.is_none()
                && jvm.refused.is_none()
                && jvm.due.is_none_or(|due| now >= due);
            if !ready || in_flight >= MAX_IN_FLIGHT {
                continue;
            }
            jvm.wanted = false;
            jvm.due = Some(now + EVERY);
            log::debug!("jit maps: asking the JVM of pid {pid} for its perf map");
            let start_time = jvm.start_time;
            let spawned = std::thread::Builder::new()
                .name("jit-maps".to_owned())
                .spawn(move || jvm_attach::request_perf_map(pid, start_time));
            match spawned {
                Ok(handle) => {
                    jvm.running = Some(handle);
                    in_flight += 1;
                }
                Err(err) => log::debug!("cannot start a perf-map request: {err}"),
            }
        }
    }

    /// At the end of the run: waits at most [`SETTLE`] for the requests under way and
    /// reads the maps they made, so the samples of the last seconds are named.
    pub fn settle(&mut self, processes: &mut ProcessTable) {
        let started = Instant::now();
        for (&pid, jvm) in &mut self.jvms {
            while jvm.running.as_ref().is_some_and(|h| !h.is_finished())
                && started.elapsed() < SETTLE
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if jvm.running.as_ref().is_some_and(JoinHandle::is_finished) {
                take_answer(pid, jvm, processes);
            }
        }
        // A request still under way is left to its thread, but not its trigger file.
        jvm_attach::remove_pending_triggers();
    }

    /// One line per JVM that gave no map, and one for those that did, for the summary.
    pub fn notes(&self) -> Vec<String> {
        let mut pids: Vec<&u32> = self.jvms.keys().collect();
        pids.sort();
        let mut notes = Vec::new();
        let written: Vec<String> = pids
            .iter()
            .filter(|&&pid| self.jvms[pid].written > 0)
            .map(|&&pid| format!("{pid} ({}x)", self.jvms[&pid].written))
            .collect();
        if !written.is_empty() {
            notes.push(format!(
                "jit maps: perf maps written on request by the JVMs of pid {}",
                written.join(", ")
            ));
        }
        for &pid in pids {
            let jvm = &self.jvms[&pid];
            if let Some(why) = jvm.refused.as_ref().and_then(Outcome::why_not) {
                notes.push(format!(
                    "jit maps: the JVM of pid {pid} gave no perf map: {why}; its JIT frames \
                     stay unnamed"
                ));
            } else if jvm.not_ready > 0 && jvm.written == 0 {
                let why = Outcome::SignalNotCaught.why_not().unwrap_or_default();
                notes.push(format!(
                    "jit maps: the JVM of pid {pid} gave no perf map: {why}; its JIT frames \
                     stay unnamed"
                ));
            } else if jvm.running.is_some() && jvm.written == 0 {
                notes.push(format!(
                    "jit maps: the JVM of pid {pid} had not answered by the end of the run"
                ));
            }
        }
        notes
    }
}

/// Takes a finished request's answer: a map written is read at once.
fn take_answer(pid: u32, jvm: &mut JvmState, processes: &mut ProcessTable) {
    let Some(handle) = jvm.running.take() else {
        return;
    };
    match handle.join() {
        Ok(Outcome::Written) => {
            jvm.written += 1;
            processes.read_perf_map_now(pid);
        }
        Ok(Outcome::SignalNotCaught) if jvm.not_ready + 1 < NOT_READY_TRIES => {
            jvm.not_ready += 1;
            jvm.wanted = true;
        }
        // A JVM signalled while it starts may not open its socket: asked once more (a
        // second signal to one that cannot attach costs it a second thread dump).
        Ok(Outcome::NoSocket) if jvm.written == 0 && !jvm.retried_socket => {
            jvm.retried_socket = true;
            jvm.wanted = true;
        }
        // One that answered before and does not now is exiting, or gone: not a refusal.
        Ok(other) if jvm.written > 0 => log::debug!("perf map of JVM {pid}: {other:?}"),
        Ok(other) => {
            log::debug!("perf map of JVM {pid}: {other:?}");
            jvm.refused = Some(other);
        }
        Err(_) => jvm.refused = Some(Outcome::Failed("the request panicked".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands `jvm` a finished request that answered `outcome`, and takes the answer.
    fn answer(jvm: &mut JvmState, outcome: Outcome) {
        let handle = std::thread::spawn(move || outcome);
        while !handle.is_finished() {
            std::thread::yield_now();
        }
        jvm.running = Some(handle);
        take_answer(u32::MAX, jvm, &mut ProcessTable::default());
    }

    fn notes_of(jvm: JvmState) -> Vec<String> {
        let mut maps = JitMaps::default();
        maps.jvms.insert(7, jvm);
        maps.notes()
    }

    #[test]
    fn a_jvm_without_a_socket_is_asked_once_more_then_named_in_one_line() {
        let mut jvm = JvmState::default();
        answer(&mut jvm, Outcome::NoSocket);
        assert!(jvm.wanted && jvm.refused.is_none());
        jvm.wanted = false;
        answer(&mut jvm, Outcome::NoSocket);
        assert_eq!(jvm.refused, Some(Outcome::NoSocket));
        let notes = notes_of(jvm);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("pid 7 gave no perf map: no attach socket"));
    }

    #[test]
    fn a_jvm_that_answered_is_not_refusing_when_it_exits() {
        let mut jvm = JvmState::default();
        answer(&mut jvm, Outcome::Written);
        answer(&mut jvm, Outcome::NotHotSpot);
        assert_eq!((jvm.written, jvm.refused.is_none()), (1, true));
        assert_eq!(
            notes_of(jvm),
            vec!["jit maps: perf maps written on request by the JVMs of pid 7 (1x)"]
        );
    }

    #[test]
    fn a_jvm_whose_pid_went_to_another_process_is_not_asked_again() {
        let mut jvm = JvmState::default();
        answer(&mut jvm, Outcome::Replaced);
        assert_eq!(
            (jvm.wanted, jvm.refused.clone()),
            (false, Some(Outcome::Replaced))
        );
        let notes = notes_of(jvm);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("its pid is another process's now"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_jvm_not_catching_sigquit_yet_is_asked_again_a_few_times() {
        let mut jvm = JvmState::default();
        for _ in 1..NOT_READY_TRIES {
            answer(&mut jvm, Outcome::SignalNotCaught);
            assert!(jvm.wanted && jvm.refused.is_none());
        }
        answer(&mut jvm, Outcome::SignalNotCaught);
        assert_eq!(jvm.refused, Some(Outcome::SignalNotCaught));
        assert_eq!(notes_of(jvm).len(), 1);
    }
}
