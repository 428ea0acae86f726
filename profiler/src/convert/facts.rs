//! The facts of a run in words: the typed [`RunFacts`] every profile carries as its first
//! comment, and the unwinding line every profile carries last.

use std::ffi::CStr;

use std::time::Duration;

use profiler_model::{Account, RingFull, RunFacts};

use crate::collect::go_labels::LabelStats;
use crate::collect::python::PythonStats;
use crate::collect::python_layout::MINORS;
use crate::collect::ring_size;
use crate::collect::samples::UnwindStats;
use crate::collect::session::RunOutcome;
use crate::config::{Config, Target};
use crate::process::descendants::Tree;

/// The facts of `run`, which every profile says first.
pub fn describe(run: &RunOutcome, config: &Config) -> RunFacts {
    let (host, kernel) = uname();
    RunFacts {
        host: Some(host),
        kernel: Some(kernel),
        cpus: u64::try_from(run.cpus).ok(),
        target: Some(target(&config.target, run.descendants.as_ref())),
        window: Some(run.duration),
        started: Some(run.start),
        ended: Some(run.stop.to_string()),
    }
}

/// `unwinding: call graph MODE; N stack samples (B bytes through a R MiB ring buffer), D
/// distinct stacks; C hit the copy limit before the root, S stopped early`.
pub fn unwinding(run: &RunOutcome) -> String {
    let stats = &run.unwinding.stats;
    let secs = run.duration.as_secs_f64().max(1e-9);
    format!(
        "unwinding: call graph {}; {} stack samples ({} bytes, {:.2} MB/s, through a {} MiB \
         ring buffer), {} distinct stacks, unwound in {} ms ({:.0} samples/s on one core); {} \
         hit the copy limit before reaching the root, {} stopped early, {} deeper than {} \
         frames; {} of processes gone before their mappings were read (instruction \
         pointer only), {} malformed; {} mapped files not held (open-file limit)",
        run.call_graph,
        stats.samples,
        stats.bytes,
        stats.bytes as f64 / secs / 1e6,
        run.ring_bytes >> 20,
        run.unwinding.stacks.len(),
        stats.busy.as_millis(),
        stats.samples as f64 / stats.busy.as_secs_f64().max(1e-9),
        stats.copy_limit,
        stats.stopped,
        stats.too_deep,
        crate::unwind::MAX_FRAMES,
        stats.no_mappings,
        stats.malformed,
        run.processes.files_not_held()
    ) + &go_continued(stats.go_continued)
        + &go_labels(&stats.go_labels)
        + &python(&stats.python)
        + &crate::collect::budgets::describe(run)
}

/// The unwinding line's clause on Go stacks continued past a stack switch, when any were.
fn go_continued(samples: u64) -> String {
    if samples == 0 {
        return String::new();
    }
    format!(
        "; {samples} Go samples continued from the system stack into their goroutine by \
         frame pointers"
    )
}

/// The unwinding line's clause on the Go profiler labels samples carried, and what of them
/// could not be kept, when any did.
fn go_labels(stats: &LabelStats) -> String {
    if stats.samples == 0 {
        return String::new();
    }
    format!(
        "; {} samples carried Go profiler labels ({} labels left out of sets larger than {},          {} keys or values cut at {} bytes, {} unreadable)",
        stats.samples,
        stats.left_out,
        profiler_common::GO_LABELS_MAX,
        stats.cut,
        profiler_common::GO_LABEL_TEXT,
        stats.unread
    )
}

/// The unwinding line's clause on the Python frames samples carried, and on the CPython
/// versions met whose frames are not read, when there were any.
fn python(stats: &PythonStats) -> String {
    let mut out = String::new();
    if stats.samples > 0 {
        out += &format!(
            "; {} samples carried Python frames ({} with every frame placed in its \
             evaluation loop's stead, {} frames' code unreadable, {} left out past the code \
             cache's budget)",
            stats.samples, stats.spliced, stats.unreadable, stats.over_budget
        );
    }
    let unsupported = stats.unsupported();
    if !unsupported.is_empty() {
        let versions: Vec<String> = unsupported.iter().map(|m| format!("3.{m}")).collect();
        out += &format!(
            "; CPython {} not supported (3.{} to 3.{} are): their samples keep the \
             interpreter's native frames",
            versions.join(", "),
            MINORS.start(),
            MINORS.end()
        );
    }
    out
}

/// The account of the samples a run of `window` lost to its full `ring_bytes` sample ring
/// (`lost` of them), with what went through it (`stats`) and the size to rerun with;
/// `None` when it lost none.
pub fn ring_full(
    ring_bytes: u32,
    lost: u64,
    stats: &UnwindStats,
    window: Duration,
) -> Option<Account> {
    if lost == 0 {
        return None;
    }
    let rerun = ring_size::rerun_bytes(ring_bytes, stats.samples, stats.bytes, lost, window);
    Some(Account::RingFull(RingFull {
        lost,
        mb_per_second: stats.bytes as f64 / window.as_secs_f64().max(1e-9) / 1e6,
        ring_mib: u64::from(ring_bytes >> 20),
        rerun_mib: rerun.map(|bytes| u64::from(bytes >> 20)),
    }))
}

/// What was profiled, in words: for `--pid`, the named processes by name, and how many
/// were already below them when the run started (`tree`, unless `--pid-only`).
pub fn target(target: &Target, tree: Option<&Tree>) -> String {
    match target {
        Target::Host => "the whole host".to_owned(),
        Target::Pids(pids) => pids_target(pids, tree),
        Target::Command(argv) => {
            let argv: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            format!("command `{}` and its children", argv.join(" "))
        }
    }
}

/// `pid 1234 (nginx) and its 2 child processes, with threads and new children`.
fn pids_target(pids: &[u32], tree: Option<&Tree>) -> String {
    let named: Vec<String> = pids
        .iter()
        .map(|&pid| {
            let name = tree
                .and_then(|t| t.roots.iter().find(|r| r.pid == pid))
                .and_then(|r| r.name.as_deref());
            match name {
                Some(name) => format!("{pid} ({name})"),
                None => pid.to_string(),
            }
        })
        .collect();
    let (noun, its) = if pids.len() == 1 {
        ("pid", "its")
    } else {
        ("pids", "their")
    };
    let mut text = format!("{noun} {}", named.join(", "));
    match tree {
        None => text.push_str(" with threads and new children only (--pid-only)"),
        Some(tree) if tree.found.is_empty() => text.push_str(" with threads and new children"),
        Some(tree) => {
            let count = tree.found.len();
            let first = if tree.too_many { "first " } else { "" };
            let kind = if tree.only_children() {
                "child"
            } else {
                "descendant"
            };
            let plural = if count == 1 { "" } else { "es" };
            text.push_str(&format!(
                " and {its} {first}{count} {kind} process{plural}, with threads and new children"
            ));
        }
    }
    text
}

/// The host name and kernel release.
fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it and cannot fail with a valid pointer.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname this function owns.
    if unsafe { libc::uname(&mut name) } != 0 {
        return ("unknown".to_owned(), "unknown".to_owned());
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    (field(&name.nodename), field(&name.release))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::descendants::{Descendant, Root};

    #[test]
    fn describes_targets() {
        assert_eq!(target(&Target::Host, None), "the whole host");
        assert_eq!(
            target(&Target::Pids(vec![1, 2]), None),
            "pids 1, 2 with threads and new children only (--pid-only)"
        );
        assert_eq!(
            target(&Target::Command(vec!["ls".into(), "-l".into()]), None),
            "command `ls -l` and its children"
        );
        let (host, kernel) = uname();
        assert!(!host.is_empty() && kernel.contains('.'), "{host} {kernel}");
    }

    #[test]
    fn a_ring_that_lost_samples_says_what_to_rerun_with() {
        let stats = UnwindStats {
            samples: 19_190,
            bytes: 161_867_736,
            ..UnwindStats::default()
        };
        let window = Duration::from_secs(10);
        assert_eq!(ring_full(2 << 20, 0, &stats, window), None);
        // 16.19 MB/s, and 236 samples more of 8.4 KB on average: a second of that is
        // 16.4 MB, which 16 MiB holds.
        let text = ring_full(2 << 20, 236, &stats, window).unwrap().text();
        assert_eq!(
            text,
            "ring buffer full: 236 samples lost in all, with 16.19 MB/s through a 2 MiB ring \
             buffer; rerun with --ring-buffer 16M"
        );
        let largest = ring_full(1 << 30, 1, &stats, window).unwrap().text();
        assert!(largest.contains("rerun with --call-graph fp"), "{largest}");
    }

    #[test]
    fn names_the_pids_and_counts_the_processes_below_them() {
        let root = |pid, name: Option<&str>| Root {
            pid,
            name: name.map(str::to_owned),
        };
        let below = |depths: &[u32]| -> Vec<Descendant> {
            (0u32..)
                .zip(depths)
                .map(|(i, &depth)| Descendant {
                    pid: 100 + i,
                    depth,
                })
                .collect()
        };
        let nginx = Tree {
            roots: vec![root(1234, Some("nginx"))],
            found: below(&[1, 1]),
            ..Tree::default()
        };
        assert_eq!(
            target(&Target::Pids(vec![1234]), Some(&nginx)),
            "pid 1234 (nginx) and its 2 child processes, with threads and new children"
        );
        let deep = Tree {
            roots: vec![root(1, Some("a")), root(2, None)],
            found: below(&[1, 2, 1]),
            too_many: true,
            ..Tree::default()
        };
        assert_eq!(
            target(&Target::Pids(vec![1, 2]), Some(&deep)),
            "pids 1 (a), 2 and their first 3 descendant processes, with threads and new \
             children"
        );
        let alone = Tree {
            roots: vec![root(7, Some("sh"))],
            found: below(&[1]),
            ..Tree::default()
        };
        assert_eq!(
            target(&Target::Pids(vec![7]), Some(&alone)),
            "pid 7 (sh) and its 1 child process, with threads and new children"
        );
        let none = Tree {
            roots: vec![root(7, Some("sh"))],
            ..Tree::default()
        };
        assert_eq!(
            target(&Target::Pids(vec![7]), Some(&none)),
            "pid 7 (sh) with threads and new children"
        );
    }
}
