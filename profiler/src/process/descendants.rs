//! The processes already below the `--pid` targets when the run starts (their children,
//! the children's children, ...), found by walking `/proc/PID/task/TID/children`. A user
//! who names a pre-fork server's master (nginx, postgres's postmaster, gunicorn) means its
//! workers too, and the kernel programs follow only the children forked once they run.
//!
//! In: the named pids. Out: a [`Tree`] of the descendants found, nearer generations first,
//! with what bounded the walk. The walk tolerates processes exiting under it: one gone
//! before it was read is left out, never an error.

use std::collections::{HashSet, VecDeque};
use std::io::{ErrorKind, Read};
use std::path::Path;

use crate::process::names::read_comm;
use crate::sys::safe_open::open_regular;

/// How far and how wide the walk goes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Generations below a named process (its children are the first).
    pub depth: u32,
    /// Descendants found at most, over all named processes.
    pub processes: usize,
    /// Threads of one process whose children are read.
    pub threads: usize,
}

impl Default for Limits {
    /// Half the kernel's target map for the existing descendants, so the children forked
    /// during the run still find room in it; deeper than any process tree a service builds.
    fn default() -> Self {
        Self {
            depth: 32,
            processes: (profiler_common::MAX_TARGETS / 2) as usize,
            threads: 16384,
        }
    }
}

/// A named process, as it was when the walk started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Its pid.
    pub pid: u32,
    /// Its name (`/proc/PID/comm`), unless it was gone.
    pub name: Option<String>,
}

/// A process found below a named one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descendant {
    /// Its pid.
    pub pid: u32,
    /// Its generation: 1 for a child of a named process, 2 for a grandchild, ...
    pub depth: u32,
}

/// What the walk found, and what bounded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The named processes.
    pub roots: Vec<Root>,
    /// Their descendants, each once, parents before their children.
    pub found: Vec<Descendant>,
    /// More descendants than [`Limits::processes`] were listed: the rest are not targets.
    pub too_many: bool,
    /// Descendants deeper than [`Limits::depth`] were listed: they are not targets.
    pub too_deep: bool,
    /// A process with more threads than [`Limits::threads`]: the children of the rest of
    /// its threads were not read.
    pub threads_cut: Option<u32>,
    /// The kernel lists no thread's children (built without `CONFIG_PROC_CHILDREN`).
    pub unlisted: bool,
}

impl Tree {
    /// Whether every descendant is a child of a named process.
    pub fn only_children(&self) -> bool {
        self.found.iter().all(|d| d.depth == 1)
    }

    /// What the walk could not cover, one line each, saying what to do instead.
    pub fn warnings(&self, limits: Limits) -> Vec<String> {
        let mut lines = Vec::new();
        if self.unlisted {
            lines.push(
                "this kernel does not list child processes (/proc/PID/task/TID/children, \
                 CONFIG_PROC_CHILDREN): only the children the targets fork during the run \
                 are followed; name the existing ones with --pid"
                    .to_owned(),
            );
        }
        if self.too_many {
            lines.push(format!(
                "the targets have more than {} descendant processes: only the first {} \
                 (nearest first) are profiled; name the ones you need with --pid",
                limits.processes, limits.processes
            ));
        }
        if self.too_deep {
            lines.push(format!(
                "the targets have descendants more than {} generations below them: those \
                 are not profiled; name them with --pid",
                limits.depth
            ));
        }
        if let Some(pid) = self.threads_cut {
            lines.push(format!(
                "pid {pid} has more than {} threads: the children of the rest were not \
                 looked for; name them with --pid",
                limits.threads
            ));
        }
        lines
    }
}

/// Walks the processes below each of `roots` under `proc_root` (`/proc`), nearer
/// generations first, within `limits`. Process `skip` (the profiler) and everything below
/// it are left out: the profiler never profiles its own work.
pub fn walk(proc_root: &Path, roots: &[u32], skip: u32, limits: Limits) -> Tree {
    let mut tree = Tree {
        roots: roots
            .iter()
            .map(|&pid| Root {
                pid,
                name: read_comm(&proc_root.join(format!("{pid}/comm"))),
            })
            .collect(),
        ..Tree::default()
    };
    let mut seen: HashSet<u32> = roots.iter().copied().chain([skip]).collect();
    let mut queue: VecDeque<(u32, u32)> = roots.iter().map(|&pid| (pid, 0)).collect();
    while let Some((pid, depth)) = queue.pop_front() {
        for child in children(proc_root, pid, limits, &mut tree) {
            if !seen.insert(child) {
                continue;
            }
            if depth >= limits.depth {
                tree.too_deep = true;
                continue;
            }
            if tree.found.len() >= limits.processes {
                tree.too_many = true;
                return tree;
            }
            // Listed but already gone: nothing to profile, and not to be counted.
            if !proc_root.join(child.to_string()).is_dir() {
                continue;
            }
            let depth = depth + 1;
            tree.found.push(Descendant { pid: child, depth });
            queue.push_back((child, depth));
        }
    }
    tree
}

/// The children of every thread of process `pid` (a thread that forks is the parent),
/// notes in `tree` what cut the list; empty when the process is gone.
fn children(proc_root: &Path, pid: u32, limits: Limits, tree: &mut Tree) -> Vec<u32> {
    let tasks = proc_root.join(format!("{pid}/task"));
    let Ok(entries) = std::fs::read_dir(&tasks) else {
        return Vec::new();
    };
    // A list longer than this holds more pids than may be found in all (each is at most
    // 7 digits and a space), so reading no further loses nothing that could be added.
    let max_bytes = 8 * (limits.processes as u64 + 1);
    let mut pids = Vec::new();
    for (n, entry) in entries.flatten().enumerate() {
        if n >= limits.threads {
            tree.threads_cut = Some(pid);
            break;
        }
        let thread = entry.path();
        let list = match read_limited(&thread.join("children"), max_bytes) {
            Ok(list) => list,
            // The thread or its process exited under the walk, or the kernel has no lists.
            Err(err) if err.kind() == ErrorKind::NotFound => {
                tree.unlisted |= thread.join("stat").is_file();
                continue;
            }
            Err(_) => continue,
        };
        let cut = list.len() as u64 >= max_bytes;
        let mut words: Vec<&str> = list.split_ascii_whitespace().collect();
        if cut {
            // The last pid may be cut in the middle, and the list is over the bound anyway.
            words.pop();
            tree.too_many = true;
        }
        pids.extend(words.iter().filter_map(|w| w.parse::<u32>().ok()));
    }
    pids
}

/// At most `max` bytes of the regular file at `path`, opened without following a link
/// and without blocking.
fn read_limited(path: &Path, max: u64) -> std::io::Result<String> {
    let mut text = String::new();
    open_regular(path)?.take(max).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc`: each process with its threads and each thread's children.
    fn fake_proc(processes: &[(u32, &[(u32, &str)])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for &(pid, threads) in processes {
            std::fs::create_dir_all(dir.path().join(format!("{pid}/task"))).unwrap();
            std::fs::write(dir.path().join(format!("{pid}/comm")), format!("p{pid}\n")).unwrap();
            for &(tid, children) in threads {
                let task = dir.path().join(format!("{pid}/task/{tid}"));
                std::fs::create_dir_all(&task).unwrap();
                std::fs::write(task.join("stat"), "").unwrap();
                std::fs::write(task.join("children"), children).unwrap();
            }
        }
        dir
    }

    fn pids(tree: &Tree) -> Vec<(u32, u32)> {
        tree.found.iter().map(|d| (d.pid, d.depth)).collect()
    }

    #[test]
    fn finds_children_of_every_thread_and_grandchildren_nearest_first() {
        // 10 has two threads, each of which forked; 11 forked 13; 12 is gone (listed, no
        // directory); 99 is the profiler, under 10, with a child of its own.
        let proc = fake_proc(&[
            (10, &[(10, "11 12 "), (15, "14 99")]),
            (11, &[(11, "13 ")]),
            (13, &[(13, "")]),
            (14, &[(14, "")]),
            (99, &[(99, "100")]),
            (100, &[(100, "")]),
        ]);
        let tree = walk(proc.path(), &[10], 99, Limits::default());
        let mut found = pids(&tree);
        found[..2].sort_unstable();
        assert_eq!(found, vec![(11, 1), (14, 1), (13, 2)]);
        assert_eq!(
            tree.roots,
            vec![Root {
                pid: 10,
                name: Some("p10".to_owned())
            }]
        );
        assert!(!tree.only_children());
        assert!(!tree.too_many && !tree.too_deep && !tree.unlisted);
        assert!(tree.warnings(Limits::default()).is_empty());
    }

    #[test]
    fn a_named_process_below_another_and_a_gone_root_count_once() {
        let proc = fake_proc(&[(10, &[(10, "11")]), (11, &[(11, "")])]);
        let tree = walk(proc.path(), &[10, 11, 77], 1, Limits::default());
        assert!(tree.found.is_empty(), "{tree:?}");
        assert_eq!(
            tree.roots[2],
            Root {
                pid: 77,
                name: None
            }
        );
    }

    #[test]
    fn bounds_are_said_not_silently_cut() {
        let proc = fake_proc(&[
            (1, &[(1, "2 3 4")]),
            (2, &[(2, "5")]),
            (3, &[(3, "")]),
            (4, &[(4, "")]),
            (5, &[(5, "6")]),
            (6, &[(6, "")]),
        ]);
        let few = Limits {
            processes: 2,
            ..Limits::default()
        };
        let tree = walk(proc.path(), &[1], 0, few);
        assert_eq!(tree.found.len(), 2);
        assert!(tree.too_many && !tree.too_deep);
        assert!(tree.warnings(few)[0].contains("more than 2 descendant processes"));

        let shallow = Limits {
            depth: 2,
            ..Limits::default()
        };
        let tree = walk(proc.path(), &[1], 0, shallow);
        assert_eq!(pids(&tree), vec![(2, 1), (3, 1), (4, 1), (5, 2)]);
        assert!(tree.too_deep && !tree.too_many);
        assert!(tree.warnings(shallow)[0].contains("more than 2 generations"));
    }

    #[test]
    fn a_list_longer_than_the_bound_is_over_it() {
        let long: String = (1000..1100).map(|p| format!("{p} ")).collect();
        let proc = fake_proc(&[(1, &[(1, &long)])]);
        let few = Limits {
            processes: 3,
            ..Limits::default()
        };
        let tree = walk(proc.path(), &[1], 0, few);
        assert!(tree.too_many, "{tree:?}");
        assert!(
            tree.found.is_empty(),
            "none of the listed pids has a directory"
        );
    }

    #[test]
    fn a_kernel_without_children_lists_is_said() {
        let proc = fake_proc(&[(1, &[(1, "")])]);
        std::fs::remove_file(proc.path().join("1/task/1/children")).unwrap();
        let tree = walk(proc.path(), &[1], 0, Limits::default());
        assert!(tree.unlisted);
        assert!(tree.warnings(Limits::default())[0].contains("CONFIG_PROC_CHILDREN"));
    }
}
