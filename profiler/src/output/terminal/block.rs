//! The blocking part of the terminal summary: blocked time per process, the stacks that
//! waited longest, and contended locks with what to do about them.

use std::collections::HashSet;
use std::fmt::Write;

use profiler_model::BlockValue;
use profiler_model::{Profile, Sample, StackId};

use super::paths::{self, PATH_WIDTH};
use super::summary::{group, human_time, shown_in_terminal};
use super::{brief, line};
use crate::analysis::block::{LockKind, LockWaits, ProcessBlocked, is_idle};
use crate::analysis::finding::Fact;
use crate::analysis::goroutines::{GoWaitFinding, GoWaitKind, is_idle_wait};
use crate::analysis::wake_evidence::futex_waits;
use crate::analysis::words;
use crate::output::strings::escape_terminal;

/// Renders blocked time per process, the `top` waiting stacks (without the `idle_delay`
/// nanoseconds of waits known to be idle) and the contended locks.
pub fn render(
    profile: &Profile,
    per_process: &[ProcessBlocked],
    idle_delay: u64,
    locks: &[LockWaits],
    top: usize,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    let _ = writeln!(out, "block profile: delay (nanoseconds)");
    for comment in profile.comments.iter().filter(|c| shown_in_terminal(c)) {
        let _ = writeln!(out, "  {}", escape_terminal(&comment.text()));
    }
    if per_process.is_empty() {
        // No futex wait is not no wait: a thread may have waited for the disk, a socket or
        // a timer, which only the off-CPU profile times.
        let _ = writeln!(
            out,
            "No futex waits were recorded (waits for the disk, sockets, pipes, timers or a              CPU are in the off-CPU profile: --profiles offcpu)."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Blocked time per process (contended: waiting for a lock of the program's that \
         another thread held):"
    );
    for p in per_process.iter().take(top) {
        let contended = p.contended.map_or(String::new(), |c| {
            format!("{:>10} contended of ", human_time(c as i64))
        });
        // A Go runtime lock's wait is time waited, but not a lock of the program's.
        let runtime = if p.runtime_locks > 0 {
            format!(
                "; {} of it in the Go runtime's own locks",
                human_time(p.runtime_locks as i64)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {contended}{:>10} waited  {} (pid {}, {} threads){runtime}",
            human_time(p.waited as i64),
            escape_terminal(&p.comm),
            p.pid,
            p.threads,
        );
    }
    let _ = writeln!(out);
    let idle = if idle_delay > 0 {
        format!(
            "; waits handed work or timed out left out: {}",
            human_time(idle_delay as i64)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "Top {top} waiting stacks by delay (idle Go runtime threads and idle goroutines: \
         sleeping, on the network, GC workers, workers waiting for work, left out{idle}):"
    );
    let stacks: Vec<(StackId, i64, i64)> = top_stacks(profile).into_iter().take(top).collect();
    if stacks.is_empty() {
        let _ = writeln!(out, "  (none: every wait was idle)");
    }
    let frames: Vec<Vec<&str>> = stacks
        .iter()
        .map(|&(stack, _, _)| profile.stack_functions(stack))
        .collect();
    for ((_, waits, delay), path) in stacks.iter().zip(paths::fit(&frames, PATH_WIDTH)) {
        let _ = writeln!(
            out,
            "  {:>10}  {:>9} waits  {path}",
            human_time(*delay),
            group(*waits),
        );
    }
    let _ = writeln!(out);
    let contended: Vec<&LockWaits> = locks.iter().filter(|f| f.contended()).collect();
    if contended.is_empty() {
        let in_runtime = if per_process.iter().any(|p| p.runtime_locks > 0) {
            " of the programs' (the Go runtime's own lock waits are apart, above)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "Contention: none (no thread waited for a lock{in_runtime} that another waiting \
             thread held)."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Contention (locks threads queued for, each woken by another waiter):"
    );
    let shown = &contended[..contended.len().min(top)];
    for lock in shown.iter().map(|f| words::contention(f)) {
        let _ = writeln!(out, "  * {}", brief(&lock.title));
        line(&mut out, "    ", lock.details_of(Fact::WaitedIn));
    }
    // Every contended lock of a kind has the same fix: it is said once, under them all.
    for kind in [LockKind::Program, LockKind::PythonGil] {
        if shown.iter().any(|l| l.kind == kind) {
            let whose = match kind {
                LockKind::Program => "",
                LockKind::PythonGil => " (the GIL)",
            };
            let _ = writeln!(out, "  fix{whose}: {}", kind.hint());
        }
    }
    out
}

/// The Go findings: contended mutexes by the function that took the lock, and the channel
/// sites goroutines waited at most, each with its fix; empty when there is none.
pub fn go_section(findings: &[GoWaitFinding], top: usize) -> String {
    let mut out = String::new();
    for kind in GoWaitKind::ALL {
        let heading = match kind {
            GoWaitKind::Mutex => {
                "Go lock contention (sync.Mutex/RWMutex waited on by several goroutines):"
            }
            GoWaitKind::ChannelSend => "Go channel sends (goroutines waiting for a receiver):",
            GoWaitKind::ChannelReceive => {
                "Go channel receives (goroutines waiting for a value; workers waiting for \
                 work left out):"
            }
            GoWaitKind::ChannelLock => {
                "Go channel locks (threads queued in the runtime for a channel's own lock):"
            }
        };
        let of_kind: Vec<&GoWaitFinding> = findings.iter().filter(|f| f.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{heading}");
        for f in of_kind.iter().take(top) {
            let _ = writeln!(out, "  * {}", brief(&words::go_wait(f).title));
        }
        let _ = writeln!(out, "  fix: {}", kind.hint());
    }
    out
}

/// Stacks by delay, summed over labels: (stack, waits, delay), most delay first.
fn top_stacks(profile: &Profile) -> Vec<(StackId, i64, i64)> {
    let mut by_stack = std::collections::HashMap::<StackId, (i64, i64)>::new();
    let idle: HashSet<*const Sample> = futex_waits(profile)
        .iter()
        .filter(|w| w.evidence.is_idle())
        .map(|w| std::ptr::from_ref(w.sample))
        .collect();
    for sample in profile
        .samples
        .iter()
        .filter(|s| !is_idle(s) && !is_idle_wait(profile, s))
    {
        if idle.contains(&std::ptr::from_ref(sample)) {
            continue;
        }
        let entry = by_stack.entry(sample.stack).or_default();
        // Saturating: values read from a file can add up past i64::MAX.
        entry.0 = entry
            .0
            .saturating_add(sample.value(BlockValue::Contentions.index()));
        entry.1 = entry
            .1
            .saturating_add(sample.value(BlockValue::Delay.index()));
    }
    let mut all: Vec<(StackId, i64, i64)> = by_stack
        .into_iter()
        .map(|(stack, (waits, delay))| (stack, waits, delay))
        .collect();
    all.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::block::WaitedOn;

    fn lock(threads: usize) -> LockWaits {
        LockWaits {
            pid: 7,
            comm: "app".to_owned(),
            processes: 1,
            on: WaitedOn::Futex("0x10".to_owned()),
            threads,
            waits: 22,
            delay: 1_200_000,
            contended_waits: 22,
            contended_delay: 1_200_000,
            handed_off_delay: 0,
            evidence: true,
            waiters: vec![("contend_lock".to_owned(), 1_200_000)],
            kind: LockKind::Program,
        }
    }

    fn blocked(waited: u64) -> ProcessBlocked {
        ProcessBlocked {
            pid: 7,
            comm: "app".to_owned(),
            threads: 4,
            waited,
            contended: Some(waited),
            runtime_locks: 0,
        }
    }

    fn empty_profile() -> Profile {
        profiler_model::ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Block,
            vec![],
            std::time::SystemTime::UNIX_EPOCH,
            std::time::Duration::ZERO,
        )
        .build()
    }

    #[test]
    fn lists_contended_futexes_with_the_hint() {
        let text = render(&empty_profile(), &[blocked(1_200_000)], 0, &[lock(4)], 10);
        assert!(
            text.contains("1.2 ms contended of     1.2 ms waited  app (pid 7, 4 threads)"),
            "{text}"
        );
        assert!(
            text.contains(
                "futex 0x10 in app (pid 7): 4 threads waited 22 times, 1.2 ms in all; 1.2 ms \
                 of it for a lock another of them held"
            ),
            "{text}"
        );
        assert!(text.contains("waited in contend_lock (1.2 ms)"), "{text}");
        assert!(text.contains("fix: shorten the critical section"), "{text}");
    }

    #[test]
    fn names_the_gil_with_its_own_fix_beside_a_program_lock() {
        let mut gil = lock(3);
        (gil.on, gil.kind) = (WaitedOn::Futex("0x20".to_owned()), LockKind::PythonGil);
        let text = render(
            &empty_profile(),
            &[blocked(1_200_000)],
            0,
            &[lock(4), gil],
            10,
        );
        assert!(
            text.contains("the GIL, CPython's interpreter lock (futex 0x20), in app (pid 7)"),
            "{text}"
        );
        assert!(
            text.contains("  fix: shorten the critical section"),
            "{text}"
        );
        assert!(text.contains("  fix (the GIL): only one thread"), "{text}");
        let alone = render(
            &empty_profile(),
            &[blocked(1_200_000)],
            0,
            &[gil_only()],
            10,
        );
        assert!(!alone.contains("fix: shorten"), "{alone}");
    }

    fn gil_only() -> LockWaits {
        LockWaits {
            kind: LockKind::PythonGil,
            ..lock(2)
        }
    }

    #[test]
    fn says_how_much_waiting_was_in_go_runtime_locks() {
        let mut go = blocked(2_000_000);
        (go.contended, go.runtime_locks) = (Some(0), 1_500_000);
        let text = render(&empty_profile(), &[go], 0, &[], 10);
        assert!(
            text.contains(
                "0.0 µs contended of     2.0 ms waited  app (pid 7, 4 threads); 1.5 ms of it in \
                 the Go runtime's own locks"
            ),
            "{text}"
        );
        assert!(text.contains("Contention: none (no thread waited for a lock of the programs'"));
    }

    #[test]
    fn says_when_nothing_is_contended() {
        let text = render(&empty_profile(), &[blocked(5)], 0, &[lock(1)], 10);
        assert!(text.contains("Contention: none"), "{text}");
        assert!(render(&empty_profile(), &[], 0, &[], 10).contains("No futex waits"));
    }
}
