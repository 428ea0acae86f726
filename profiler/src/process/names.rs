//! Processes named by the process, not by whichever thread a record came from: a JVM's
//! samples are `java`, not a dozen roots from `GC Thread#1` to `C2 CompilerThre`, and a
//! thread's own name stays on its samples as the `thread` label.
//!
//! A process's name is its main thread's `comm` (the executable's name since its last
//! exec, unless it renamed itself), read from `/proc` when the process is first seen,
//! again when it executes, and at the end for what is still alive. A process gone before
//! it was read keeps its threads' names.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::Path;

use profiler_model::{Label, LabelKey, LabelValue};

use crate::sys::safe_open::open_regular;

/// Processes named at most: past it, later processes keep their threads' names.
const MAX_PROCESSES: usize = 1 << 16;

/// The names of the processes seen in a run, by pid.
#[derive(Debug, Clone, Default)]
pub struct ProcessNames {
    names: HashMap<u32, String>,
    /// Processes whose name was read after they executed their program: the program's.
    read_after_exec: HashSet<u32>,
    /// The profiler's own threads' names, as [`Self::settle`] read them.
    own: HashSet<String>,
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
            self.read_after_exec.insert(pid);
        }
    }

    /// Names every process of a run's records as the run ends, for the records of its
    /// threads other than the main one (whose own name is the process's at the time): by
    /// `/proc` while it lives (its latest name); else by the name its main thread had in
    /// most of its records by weight, leaving out the profiler's own threads' names (a
    /// launched command's first records, before its exec, are of the profiler's fork);
    /// else as read once it executed its program; else as first read, if a record had
    /// it; else by the name most of its other threads had (a Go program's threads all
    /// have its name). Takes each record's pid, whether it is of the main thread, its
    /// thread's name, and its weight (samples, calls or waits).
    pub fn settle<'a>(&mut self, records: impl Iterator<Item = (u32, bool, Option<&'a str>, u64)>) {
        let own = own_thread_names();
        #[derive(Default)]
        struct Seen<'a> {
            main_thread: HashMap<&'a str, u64>,
            others: HashMap<&'a str, u64>,
            any: HashSet<&'a str>,
        }
        // The name of the most weight, the first by name among equals.
        fn most(names: &HashMap<&str, u64>) -> Option<String> {
            let most = names.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
            most.map(|(name, _)| (*name).to_owned())
        }
        let mut seen: HashMap<u32, Seen<'a>> = HashMap::new();
        for (pid, main, comm, weight) in records {
            let entry = seen.entry(pid).or_default();
            if let Some(comm) = comm {
                // Bounded by the distinct names a process's threads had (16 bytes each).
                entry.any.insert(comm);
                let names = if main {
                    if own.contains(comm) {
                        continue;
                    }
                    &mut entry.main_thread
                } else {
                    &mut entry.others
                };
                let n = names.entry(comm).or_default();
                *n = n.saturating_add(weight);
            }
        }
        self.own = own.clone();
        for (pid, seen) in seen {
            let room = self.names.len() < MAX_PROCESSES || self.names.contains_key(&pid);
            if !room {
                continue;
            }
            let read = self.names.get(&pid).cloned();
            let after_exec = read.clone().filter(|_| self.read_after_exec.contains(&pid));
            let first_read = read.filter(|name| seen.any.contains(name.as_str()));
            let name = process_name(pid)
                .or_else(|| most(&seen.main_thread))
                .or(after_exec)
                .or(first_read)
                .or_else(|| most(&seen.others));
            match name {
                Some(name) => {
                    self.names.insert(pid, name);
                }
                None => {
                    self.names.remove(&pid);
                }
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
        let number = |key: LabelKey| {
            labels.iter().find_map(|l| match (l.key == key, &l.value) {
                (true, LabelValue::Num(n)) => u32::try_from(*n).ok(),
                _ => None,
            })
        };
        let pid = number(LabelKey::Pid);
        let main_thread = pid.is_some() && number(LabelKey::Tid) == pid;
        let Some(process) = pid.and_then(|pid| self.get(pid)) else {
            return;
        };
        let Some(comm) = labels.iter_mut().find(|l| l.key == LabelKey::Comm) else {
            return;
        };
        let LabelValue::Str(thread) = &comm.value else {
            return;
        };
        // A main thread's name is its process's at the time of the record (across execs),
        // except the profiler's own name on a launched command's records from before its
        // exec: the process is the command (a `sh -c` whose shell did little was named
        // `profiler` by the profiler's fork).
        if thread == process || (main_thread && !self.own.contains(thread)) {
            return;
        }
        let thread = Label::str(LabelKey::Thread, thread.clone());
        comm.value = LabelValue::Str(process.to_owned());
        labels.push(thread);
    }
}

/// The names of the profiler's own threads (at most 4096 of them).
fn own_thread_names() -> HashSet<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return HashSet::new();
    };
    tasks
        .flatten()
        .take(4096)
        .filter_map(|task| read_comm(&task.path().join("comm")))
        .collect()
}

/// The name of process `pid` (its main thread's), read from `/proc`; `None` for the idle
/// task (an interrupt's) or a process already gone.
pub fn process_name(pid: u32) -> Option<String> {
    if pid == 0 {
        return None;
    }
    read_comm(Path::new(&format!("/proc/{pid}/comm")))
}

/// A `comm` file's name, without its newline: opened as a regular file only, never
/// following a link or blocking, and read to at most 64 bytes (the kernel's are 16).
pub fn read_comm(path: &Path) -> Option<String> {
    let mut name = String::new();
    open_regular(path)
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

        // A main thread's record keeps its own name: the process's when it was taken (a
        // shell that executed the program has records under both names).
        let main = |comm: &str| {
            vec![
                Label::num(LabelKey::Pid, 10),
                Label::num(LabelKey::Tid, 10),
                Label::str(LabelKey::Comm, comm),
            ]
        };
        let mut l = main("sh");
        names.relabel(&mut l);
        assert_eq!(l, main("sh"));
    }

    #[test]
    fn a_gone_process_is_named_by_what_its_main_thread_was_mostly_called() {
        let mut names = ProcessNames::default();
        // Read before it executed, when it still had its parent's name.
        let gone = u32::MAX - 1;
        names.names.insert(gone, "profiler".into());
        names.settle(
            [
                (gone, true, Some("stacks_tree"), 40),
                (gone, false, Some("stree-0"), 500),
                // Samples of its main thread from before its exec, in more records.
                (gone, true, Some("profiler"), 1),
                (gone, true, Some("profiler"), 1),
                (gone + 1, false, None, 1),
                (std::process::id(), true, Some("old name"), 1),
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
    fn a_gone_process_read_before_its_exec_is_named_by_its_threads() {
        let mut names = ProcessNames::default();
        let (go, jvm) = (u32::MAX - 1, u32::MAX - 2);
        // Both read while still a forked child of another program.
        names.names.insert(go, "tokio-runtime-w".into());
        names.names.insert(jvm, "java".into());
        names.settle(
            [
                (go, false, Some("names_go"), 300),
                (jvm, false, Some("java"), 1),
                (jvm, false, Some("GC Thread#1"), 90),
            ]
            .into_iter(),
        );
        // No thread of the Go program was called tokio-runtime-w: most were names_go.
        assert_eq!(names.get(go), Some("names_go"));
        // A thread of the JVM had the name first read: it stays.
        assert_eq!(names.get(jvm), Some("java"));
    }

    #[test]
    fn a_name_read_after_the_exec_outweighs_the_profilers_fork() {
        let own = own_thread_names()
            .into_iter()
            .next()
            .expect("a thread of our own");
        let mut names = ProcessNames::default();
        let gone = u32::MAX - 1;
        // A launched command, read once it executed; one sample of its main thread from
        // before the exec, under the name of the profiler's thread that forked it.
        names.names.insert(gone, "names_go".into());
        names.read_after_exec.insert(gone);
        names.settle(
            [
                (gone, true, Some(own.as_str()), 1),
                (gone, false, Some("names_go"), 300),
            ]
            .into_iter(),
        );
        assert_eq!(names.get(gone), Some("names_go"));
    }

    #[test]
    fn a_launched_commands_records_from_before_its_exec_are_the_commands() {
        let own = own_thread_names()
            .into_iter()
            .next()
            .expect("a thread of our own");
        let mut names = ProcessNames::default();
        let sh = u32::MAX - 3;
        names.names.insert(sh, "sh".into());
        names.settle(
            [
                (sh, true, Some(own.as_str()), 30),
                (sh, true, Some("sh"), 1),
            ]
            .into_iter(),
        );
        let main = |comm: &str| {
            vec![
                Label::num(LabelKey::Pid, i64::from(sh)),
                Label::num(LabelKey::Tid, i64::from(sh)),
                Label::str(LabelKey::Comm, comm),
            ]
        };
        // The main thread under the profiler's name, before the exec: the command's.
        let mut l = main(&own);
        names.relabel(&mut l);
        let mut want = main("sh");
        want.push(Label::str(LabelKey::Thread, own.clone()));
        assert_eq!(l, want);
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
