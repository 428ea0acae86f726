//! Threads of `--pid` targets that waited through the whole window: they never left or
//! came back to a CPU, so the scheduler's tracepoints never saw them. Read from `/proc`
//! when the window closes (their state and the syscall they wait in), so their time is in
//! the budget and the profile rather than missing.

use std::io::Read;

use profiler_common::{NO_SYSCALL, offcpu_class};

use crate::process::descriptors::fd_kind;

/// Threads read per process: a process with more is cut here.
const MAX_THREADS_PER_PROCESS: usize = 16384;

/// Bytes read of one `/proc` file: a `stat` or `syscall` line is well under it.
const MAX_LINE: u64 = 4096;

/// A thread as `/proc` showed it when the window closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The thread's name.
    pub name: String,
    /// Its kernel class, as [`offcpu_class`] names it; `None` while it runs.
    pub class: Option<u32>,
    /// The syscall it waits in, or [`NO_SYSCALL`].
    pub syscall: i32,
    /// The kind of the descriptor in its first argument, when that is one.
    pub descriptor: Option<&'static str>,
}

/// Every thread of each of `pids`, as `/proc` shows it now.
pub fn snapshot(pids: &[u32]) -> Vec<Snapshot> {
    let mut threads = Vec::new();
    for &pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for entry in tasks.flatten().take(MAX_THREADS_PER_PROCESS) {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let dir = format!("/proc/{pid}/task/{tid}");
            let Some((name, state)) = read_line(&format!("{dir}/stat")).and_then(|s| stat(&s))
            else {
                continue;
            };
            let (syscall, fd) = read_line(&format!("{dir}/syscall"))
                .and_then(|s| syscall(&s))
                .unwrap_or((NO_SYSCALL, -1));
            // Only the reasons of the read/write family look at it (a pipe, a socket).
            let descriptor = (0..1 << 20)
                .contains(&fd)
                .then(|| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
                .flatten()
                .map(|target| fd_kind(&target.to_string_lossy()));
            threads.push(Snapshot {
                pid,
                tid,
                name,
                class: class(state, syscall),
                syscall,
                descriptor,
            });
        }
    }
    threads
}

fn read_line(path: &str) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_LINE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The name and state letter of a `stat` line: `tid (name) S ...`, the name being anything
/// up to the last `)`.
fn stat(line: &str) -> Option<(String, char)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_owned();
    let state = line.get(close + 1..)?.trim_start().chars().next()?;
    Some((name, state))
}

/// The syscall number and first argument of a `syscall` line (`202 0x7f... ...`); `-1` for
/// a thread in an exception; `None` while it runs.
fn syscall(line: &str) -> Option<(i32, i64)> {
    let mut words = line.split_whitespace();
    let number: i32 = words.next()?.parse().ok()?;
    let arg = words
        .next()
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .map_or(-1, |a| a as i64);
    Some((number, arg))
}

/// The kernel class of a thread in state `state` waiting in `syscall`.
fn class(state: char, syscall: i32) -> Option<u32> {
    Some(match state {
        'R' => return None,
        'T' | 't' => offcpu_class::STOPPED,
        'D' if syscall == NO_SYSCALL => offcpu_class::FAULT,
        'D' => offcpu_class::SYSCALL_D,
        _ => offcpu_class::SYSCALL_S,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_and_syscall_lines() {
        assert_eq!(
            stat("42 (a (b) c) S 1 2 3"),
            Some(("a (b) c".to_owned(), 'S'))
        );
        assert_eq!(
            syscall("202 0x7f00 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x7f01\n"),
            Some((202, 0x7f00))
        );
        assert_eq!(syscall("0 0x3 0x7ffd 0x1000 0 0 0 0x1 0x2"), Some((0, 3)));
        assert_eq!(syscall("-1 0x7ffd 0x7f01"), Some((-1, 0x7ffd)));
        assert_eq!(syscall("running"), None);
        assert_eq!(class('R', 0), None);
        assert_eq!(class('D', -1), Some(offcpu_class::FAULT));
        assert_eq!(class('D', 75), Some(offcpu_class::SYSCALL_D));
        assert_eq!(class('S', 202), Some(offcpu_class::SYSCALL_S));
    }
}
