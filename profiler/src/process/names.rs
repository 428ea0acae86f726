//! Processes named by the process, not by whichever thread a record came from: a JVM's
//! samples are `java`, not a dozen roots from `GC Thread#1` to `C2 CompilerThre`, and a
//! thread's own name stays on its samples as the `thread` label.
//!
//! A process's name is its main thread's `comm` (the executable's name since its last
//! exec, unless it renamed itself), read from `/proc` when the process is first seen,
//! again when it executes, and at the end for what is still alive. A process gone before
//! it was read keeps its threads' names.

use std::collections::HashMap;
use std::io::Read as _;

use profiler_model::{Label, LabelKey, LabelValue};

/// Processes named at most: past it, later processes keep their threads' names.
const MAX_PROCESSES: usize = 1 << 16;

/// The names of the processes seen in a run, by pid.
#[derive(Debug, Clone, Default)]
pub struct ProcessNames {
    names: HashMap<u32, String>,
}

impl ProcessNames {
    /// Reads the name of `pid` unless it is known already.
    pub fn note(&mut self, pid: u32) {
        if self.names.contains_key(&pid) || self.names.len() >= MAX_PROCESSES {
            return;
        }
        if let Some(name) = process_name(pid) {
            self.names.insert(pid, name);
        }
    }

    /// Reads the name of `pid` again: it executed a new program.
    pub fn note_exec(&mut self, pid: u32) {
        let room = self.names.len() < MAX_PROCESSES || self.names.contains_key(&pid);
        if let (true, Some(name)) = (room, process_name(pid)) {
            self.names.insert(pid, name);
        }
    }

    /// Names every process of a run's records as the run ends: by `/proc` while it lives
    /// (its latest name); else by what its main thread was called in its own records
    /// (the last), which saw its exec even when no exec event was traced; else as first
    /// read. Takes each record's pid and, for a main thread's record, its name.
    pub fn settle<'a>(&mut self, records: impl Iterator<Item = (u32, Option<&'a str>)>) {
        let mut main_threads: HashMap<u32, Option<&'a str>> = HashMap::new();
        for (pid, main_thread) in records {
            let seen = main_threads.entry(pid).or_default();
            if main_thread.is_some() {
                *seen = main_thread;
            }
        }
        for (pid, main_thread) in main_threads {
            let room = self.names.len() < MAX_PROCESSES || self.names.contains_key(&pid);
            let name = process_name(pid).or_else(|| main_thread.map(str::to_owned));
            if let (Some(name), true) = (name, room) {
                self.names.insert(pid, name);
            }
        }
    }

    /// The name of process `pid`, if it was read.
    pub fn get(&self, pid: u32) -> Option<&str> {
        self.names.get(&pid).map(String::as_str)
    }

    /// Makes a record's `comm` label its process's name, keeping the thread's own name as
    /// the `thread` label when it differs (a record that has one already is left alone).
    pub fn relabel(&self, labels: &mut Vec<Label>) {
        if labels.iter().any(|l| l.key == LabelKey::Thread) {
            return;
        }
        let pid = labels.iter().find_map(|l| match (l.key, &l.value) {
            (LabelKey::Pid, LabelValue::Num(pid)) => u32::try_from(*pid).ok(),
            _ => None,
        });
        let Some(process) = pid.and_then(|pid| self.get(pid)) else {
            return;
        };
        let Some(comm) = labels.iter_mut().find(|l| l.key == LabelKey::Comm) else {
            return;
        };
        let LabelValue::Str(thread) = &comm.value else {
            return;
        };
        if thread == process {
            return;
        }
        let thread = Label::str(LabelKey::Thread, thread.clone());
        comm.value = LabelValue::Str(process.to_owned());
        labels.push(thread);
    }
}

/// The name of process `pid` (its main thread's), read from `/proc`; `None` for the idle
/// task (an interrupt's) or a process already gone.
pub fn process_name(pid: u32) -> Option<String> {
    if pid == 0 {
        return None;
    }
    let mut name = String::new();
    // procfs: no other user can put a link or a large file here; `comm` is at most 16
    // bytes, and the read is bounded anyway.
    std::fs::File::open(format!("/proc/{pid}/comm"))
        .ok()?
        .take(64)
        .read_to_string(&mut name)
        .ok()?;
    Some(name.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pid: i64, comm: &str) -> Vec<Label> {
        vec![
            Label::num(LabelKey::Pid, pid),
            Label::num(LabelKey::Tid, pid + 1),
            Label::str(LabelKey::Comm, comm),
        ]
    }

    #[test]
    fn a_threads_record_is_named_by_its_process_and_keeps_the_threads_name() {
        let mut names = ProcessNames::default();
        names.names.insert(10, "java".into());
        let mut l = labels(10, "GC Thread#1");
        names.relabel(&mut l);
        assert!(l.contains(&Label::str(LabelKey::Comm, "java")));
        assert!(l.contains(&Label::str(LabelKey::Thread, "GC Thread#1")));

        // The main thread's record: nothing to add.
        let mut l = labels(10, "java");
        names.relabel(&mut l);
        assert_eq!(l, labels(10, "java"));

        // A process never read keeps its thread's name.
        let mut l = labels(11, "worker");
        names.relabel(&mut l);
        assert_eq!(l, labels(11, "worker"));
    }

    #[test]
    fn a_gone_process_is_named_by_its_main_threads_last_record() {
        let mut names = ProcessNames::default();
        // Read before it executed, when it still had its parent's name.
        let gone = u32::MAX - 1;
        names.names.insert(gone, "profiler".into());
        names.settle(
            [
                (gone, Some("stacks_tree")),
                (gone, None),
                (gone + 1, None),
                (std::process::id(), Some("old name")),
            ]
            .into_iter(),
        );
        assert_eq!(names.get(gone), Some("stacks_tree"));
        assert_eq!(names.get(gone + 1), None);
        // A living process is named as it is now.
        assert_eq!(
            names.get(std::process::id()),
            process_name(std::process::id()).as_deref()
        );
    }

    #[test]
    fn a_record_with_a_thread_label_is_left_alone() {
        let mut names = ProcessNames::default();
        names.names.insert(10, "java".into());
        let mut l = labels(10, "other");
        l.push(Label::str(LabelKey::Thread, "t"));
        let before = l.clone();
        names.relabel(&mut l);
        assert_eq!(l, before);
    }

    #[test]
    fn this_process_is_named_from_proc() {
        let mut names = ProcessNames::default();
        names.note(std::process::id());
        let mut comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        comm.truncate(comm.trim_end().len());
        assert_eq!(names.get(std::process::id()), Some(comm.as_str()));
        assert_eq!(process_name(0), None);
    }
}
