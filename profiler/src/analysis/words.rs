//! The words of every finding, made once from what the analyses found: the terminal
//! summary and the HTML report lay out these [`Finding`]s and write none of their own.

use profiler_model::ProfileKind;
use profiler_model::labels::Waiters;

use super::block::{LockKind, LockWaits, WaitedOn};
use super::cpu::{Kind, MemoryHotSpot};
use super::finding::{Detail, Fact, Finding, FindingKind, Reading, Text};
use super::go_cpu::GoSyscallHotSpot;
use super::goroutines::GoWaitFinding;
use super::heap::{HeapSite, LEAK_HINT, SmallAllocations};
use super::io::SmallIoFinding;
use super::jit::{JitRuntime, UnnamedJit};
use super::offcpu::{self, OffCpuWaits};
use super::units::{group, human_bytes, human_time};

/// How many waiting functions a contended lock's details name.
pub const WAITERS_NAMED: usize = 3;

/// How many functions a list names in the terminal's brief reading; the report names all.
const BRIEF_LIST: usize = 3;

fn detail(fact: Fact, text: Text) -> Detail {
    Detail { fact, text }
}

/// A small-I/O hot path: the call, its rate and size, the case, the path and the saving.
pub fn small_io(finding: &SmallIoFinding) -> Finding {
    let site = &finding.site;
    // Up to the caller: the frames below it are the C library's and the kernel's.
    let upto = site
        .path
        .iter()
        .rposition(|f| *f == site.caller)
        .map_or(site.path.len(), |i| i + 1);
    let descriptors = if site.descriptors.is_empty() {
        String::new()
    } else {
        format!(", on a {}", site.descriptors.join("/"))
    };
    let title = Text::words(format!("{} in ", site.syscall_name()))
        .name(&site.caller)
        .push(format!(
            ": {} calls ({}/s) of {} on average{descriptors}",
            group(site.calls as i64),
            group(finding.calls_per_sec.round() as i64),
            human_bytes(site.avg_bytes()),
        ));
    let mut details = vec![
        detail(Fact::Process, Text::words("process: ").target(&site.comm)),
        detail(Fact::Case, Text::words(format!("case: {}", finding.case()))),
        detail(
            Fact::Path,
            Text::words("path: ").name(site.path.join(" > ")),
        ),
    ];
    if let Some(saving) = finding.saving() {
        details.push(detail(Fact::Saves, Text::words(format!("saves: {saving}"))));
    }
    Finding {
        kind: FindingKind::SmallIo,
        profile: ProfileKind::Io,
        title,
        details,
        hint: finding.hint.clone(),
        functions: vec![site.caller.clone()],
        process: Some(site.comm.clone()),
        path: site.path[..upto].to_vec(),
        focus: site.caller.clone(),
    }
}

/// A lock threads queued for: which futex or acquire site, where, how often and how long,
/// how much of it a fellow waiter held the lock, and the functions that waited longest.
pub fn contention(lock: &LockWaits) -> Finding {
    let place = match (&lock.on, lock.kind) {
        (WaitedOn::Futex(futex), LockKind::PythonGil) => Text::words(format!(
            "the GIL, CPython's interpreter lock (futex {futex}), in "
        )),
        (WaitedOn::Futex(futex), LockKind::Program) => Text::words(format!("futex {futex} in ")),
        (WaitedOn::AcquireSite(site), _) => Text::words("lock-acquire site ")
            .name(site.join(" > "))
            .push(" in "),
    };
    let processes = if lock.processes > 1 {
        format!("{} processes", lock.processes)
    } else {
        format!("pid {}", lock.pid)
    };
    let mut title = place.target(&lock.comm).push(format!(
        " ({processes}): {} threads waited {} times, {} in all",
        lock.threads,
        group(lock.waits as i64),
        human_time(lock.delay as i64)
    ));
    if lock.evidence {
        title = title.push(format!(
            "; {} of it for a lock another of them held",
            human_time(lock.contended_delay as i64)
        ));
    }
    if matches!(lock.on, WaitedOn::AcquireSite(_)) {
        title = title.push(" (each slept on its own futex, woken by the one before it)");
    }
    let waiters: Vec<String> = lock.waiters.iter().map(|(f, _)| f.clone()).collect();
    Finding {
        kind: FindingKind::Contention,
        profile: ProfileKind::Block,
        title,
        details: lock
            .waiters
            .iter()
            .take(WAITERS_NAMED)
            .map(|(f, d)| {
                let text = Text::words("waited in ")
                    .name(f)
                    .push(format!(" ({})", human_time(*d as i64)));
                detail(Fact::WaitedIn, text)
            })
            .collect(),
        hint: lock.kind.hint().to_owned(),
        focus: waiters.first().cloned().unwrap_or_default(),
        functions: waiters,
        process: Some(lock.comm.clone()),
        path: Vec::new(),
    }
}

/// A contended Go lock or a busy channel site.
pub fn go_wait(finding: &GoWaitFinding) -> Finding {
    let title = Text::default()
        .name(&finding.function)
        .push(" in ")
        .target(&finding.comm)
        .push(format!(
            " (pid {}): {} waited {} times in {}, {} in all",
            finding.pid,
            match finding.waiters {
                Waiters::Several => "several goroutines",
                Waiters::One => "one goroutine per stack",
            },
            group(finding.waits as i64),
            finding.operation,
            human_time(finding.delay as i64)
        ));
    Finding {
        kind: FindingKind::Contention,
        profile: ProfileKind::Block,
        title,
        details: vec![detail(
            Fact::Process,
            Text::words("process: ").target(&finding.comm),
        )],
        hint: finding.kind.hint().to_owned(),
        focus: finding.function.clone(),
        functions: vec![finding.function.clone()],
        process: Some(finding.comm.clone()),
        path: Vec::new(),
    }
}

/// `f (12.5%), g (3.0%)`: functions with their shares of `total`; past [`BRIEF_LIST`]
/// they are in the full reading only.
fn shares(v: &[(String, i64)], total: i64) -> Text {
    let mut text = Text::default();
    for (i, (f, n)) in v.iter().enumerate() {
        let item = Text::words(if i == 0 { "" } else { ", " })
            .name(f)
            .push(format!(
                " ({:.1}%)",
                100.0 * *n as f64 / total.max(1) as f64
            ));
        text = if i < BRIEF_LIST {
            text.then(item)
        } else {
            text.only(Reading::Full, item)
        };
    }
    text
}

/// An allocator or garbage-collector hot spot of the CPU profile.
pub fn memory(spot: &MemoryHotSpot) -> Finding {
    let frames = match spot.kind {
        Kind::Allocation => "allocator",
        Kind::GarbageCollection => "garbage-collector",
    };
    let title = Text::words(format!(
        "{}: {:.1}% of CPU samples ({} of {})",
        spot.kind.describe(),
        100.0 * spot.share(),
        group(spot.value),
        group(spot.total),
    ))
    .only(Reading::Full, Text::words(format!(" have {frames} frames")))
    .only(
        Reading::Brief,
        Text::words(" in ").then(shares(&spot.functions, spot.total)),
    );
    let mut details = vec![detail(
        Fact::Functions,
        Text::words("in ").then(shares(&spot.functions, spot.total)),
    )];
    if !spot.callers.is_empty() {
        details.push(detail(
            Fact::Callers,
            Text::words("called from ").then(shares(&spot.callers, spot.total)),
        ));
    }
    Finding {
        kind: match spot.kind {
            Kind::Allocation => FindingKind::Allocation,
            Kind::GarbageCollection => FindingKind::GarbageCollection,
        },
        profile: ProfileKind::Cpu,
        title,
        details,
        hint: spot.hint.clone(),
        functions: spot.functions.iter().map(|(f, _)| f.clone()).collect(),
        process: None,
        path: Vec::new(),
        focus: spot
            .functions
            .first()
            .map(|(f, _)| f.clone())
            .unwrap_or_default(),
    }
}

fn heap_process(site: &HeapSite) -> Detail {
    detail(
        Fact::Process,
        Text::words("process: ")
            .target(&site.comm)
            .push(format!(" (pid {})", site.pid)),
    )
}

/// A heap site making many small allocations.
pub fn small_allocations(finding: &SmallAllocations) -> Finding {
    let site = &finding.site;
    let title = Text::default()
        .name(&site.caller)
        .push(format!(
            " makes {}",
            group(finding.per_second.round() as i64)
        ))
        .only(Reading::Full, Text::words(" allocations per second"))
        .only(Reading::Brief, Text::words("/s"))
        .push(format!(" of {} on average", human_bytes(site.average())))
        .only(
            Reading::Brief,
            Text::words(format!(
                " ({} in the window)",
                group(site.alloc_objects as i64)
            )),
        );
    Finding {
        kind: FindingKind::SmallAllocations,
        profile: ProfileKind::Heap,
        title,
        details: vec![
            heap_process(site),
            detail(
                Fact::Allocations,
                Text::words(format!(
                    "allocations: {} ({} in the window)",
                    group(site.alloc_objects as i64),
                    human_bytes(site.alloc_space as f64)
                )),
            ),
        ],
        hint: finding.hint().to_owned(),
        functions: vec![site.caller.clone()],
        process: None,
        path: Vec::new(),
        focus: site.caller.clone(),
    }
}

/// A heap site whose memory in use only grew.
pub fn leak_suspect(site: &HeapSite) -> Finding {
    let title = Text::default().name(&site.caller).push(format!(
        " holds {} in {} blocks, and its memory in use only grew",
        human_bytes(site.inuse_space as f64),
        group(site.inuse_objects as i64)
    ));
    Finding {
        kind: FindingKind::LeakSuspect,
        profile: ProfileKind::Heap,
        title,
        details: vec![heap_process(site)],
        hint: LEAK_HINT.to_owned(),
        functions: vec![site.caller.clone()],
        process: None,
        path: Vec::new(),
        focus: site.caller.clone(),
    }
}

/// Go's read/write syscalls as a CPU hot spot, with every calling Go function.
pub fn go_syscalls(spot: &GoSyscallHotSpot) -> Finding {
    let mut title = Text::words(format!(
        "{:.1}% of CPU samples in syscall.Read/Write, called from ",
        100.0 * spot.share()
    ));
    if spot.callers.is_empty() {
        title = title.push("?");
    }
    for (i, (f, n)) in spot.callers.iter().enumerate() {
        title = title
            .push(if i == 0 { "" } else { ", " })
            .name(f)
            .push(format!(
                " ({:.1}%)",
                100.0 * *n as f64 / spot.total.max(1) as f64
            ));
    }
    Finding {
        kind: FindingKind::GoSmallIo,
        profile: ProfileKind::Cpu,
        title,
        details: Vec::new(),
        hint: spot.io.hint(),
        functions: spot.callers.iter().map(|(f, _)| f.clone()).collect(),
        process: None,
        path: Vec::new(),
        focus: spot
            .callers
            .first()
            .map(|(f, _)| f.clone())
            .unwrap_or_default(),
    }
}

/// A JVM or Node.js process whose CPU samples are mostly in unnamed JIT code, with what
/// names it; `asked` when the run asked the JVMs for perf maps (`--jit-maps`).
pub fn unnamed_jit(u: &UnnamedJit, asked: bool) -> Finding {
    let runtime = match u.runtime {
        JitRuntime::HotSpot => "a JVM",
        JitRuntime::Node => "Node.js",
    };
    let title = Text::default().target(&u.comm).push(format!(
        " (pid {}, {runtime}): {:.1}% of its CPU samples ({} of {}) are in JIT code with no \
         name ([anon])",
        u.pid,
        100.0 * u.share(),
        group(u.unnamed),
        group(u.total),
    ));
    let hint = match (u.runtime, asked) {
        (JitRuntime::HotSpot, false) => {
            "rerun with --jit-maps: the profiler then asks the \
            JVM (JDK 17+) for a perf map through its attach mechanism, as `jcmd PID \
            Compiler.perfmap` does, and names its Java methods (interpreted code as \
            Interpreter); start the JVM with -XX:+PreserveFramePointer too, and its Java \
            stacks reach their roots (without it they stop at the first Java frame)"
        }
        (JitRuntime::HotSpot, true) => {
            "--jit-maps was given, but the JVM's perf map did \
            not name this code: the `jit maps:` line of the CPU profile says why (a JVM of \
            JDK 17+ answers unless started with -XX:+DisableAttachMechanism)"
        }
        (JitRuntime::Node, _) => {
            "start node with --perf-basic-prof (it writes /tmp/perf-PID.map as it compiles) \
            or --perf-prof (jitdump files, jit-PID.dump): the profiler reads either, and its \
            JavaScript functions are named (add --interpreted-frames-native-stack to name \
            interpreted frames too)"
        }
    };
    Finding {
        kind: FindingKind::UnnamedJit,
        profile: ProfileKind::Cpu,
        title,
        details: vec![detail(
            Fact::Process,
            Text::words("process: ").target(&u.comm),
        )],
        hint: hint.to_owned(),
        functions: Vec::new(),
        process: Some(u.comm.clone()),
        path: Vec::new(),
        focus: String::new(),
    }
}

/// A thread off CPU for a large share of the window: where, why, how long, and the fix.
pub fn offcpu(w: &OffCpuWaits) -> Finding {
    let title = Text::default().name(&w.function).push(format!(
        " waits off CPU ({}): {} in {} waits, {:.0}% of {} window",
        w.reason.label(),
        human_time(i64::try_from(w.delay).unwrap_or(i64::MAX)),
        group(i64::try_from(w.waits).unwrap_or(i64::MAX)),
        100.0 * w.share(),
        if w.threads > 1 {
            format!("{} threads'", w.threads)
        } else {
            "its thread's".to_owned()
        }
    ));
    let mut details = vec![detail(
        Fact::Process,
        Text::words("process: ")
            .target(&w.comm)
            .push(format!(" (pid {})", w.pid)),
    )];
    if let Some(waker) = &w.waker {
        details.push(detail(
            Fact::WaitedIn,
            Text::words("woken by ").target(waker),
        ));
    }
    Finding {
        kind: FindingKind::OffCpu,
        profile: ProfileKind::OffCpu,
        title,
        details,
        hint: offcpu::hint(w.reason).to_owned(),
        functions: vec![w.function.clone()],
        process: Some(w.comm.clone()),
        path: Vec::new(),
        focus: w.function.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_lists_three_briefly_and_all_in_full() {
        let spot = MemoryHotSpot {
            kind: Kind::Allocation,
            value: 12,
            total: 100,
            functions: ["a", "b", "c", "d"]
                .iter()
                .map(|f| (f.to_string(), 3))
                .collect(),
            callers: vec![("churn".into(), 12)],
            hint: "fewer".into(),
        };
        let f = memory(&spot);
        let same = |s: &str| s.to_owned();
        assert_eq!(
            f.title.render(Reading::Brief, &same, &same),
            "allocation: 12.0% of CPU samples (12 of 100) in a (3.0%), b (3.0%), c (3.0%)"
        );
        assert_eq!(
            f.title.full(),
            "allocation: 12.0% of CPU samples (12 of 100) have allocator frames"
        );
        let functions = f.details_of(Fact::Functions).next().unwrap();
        assert!(functions.full().ends_with("c (3.0%), d (3.0%)"));
        assert_eq!(f.kind.name(), "allocation");
    }

    #[test]
    fn heap_findings_read_as_the_summary_and_the_report_say_them() {
        use crate::analysis::language::Language;
        let site = HeapSite {
            pid: 7,
            comm: "app".into(),
            caller: "churn".into(),
            language: Language::C,
            alloc_objects: 20_000,
            alloc_space: 640_000,
            inuse_objects: 3,
            inuse_space: 3 * 4096,
            only_grew: true,
        };
        let same = |s: &str| s.to_owned();
        let small = small_allocations(&SmallAllocations {
            site: site.clone(),
            per_second: 10_000.0,
        });
        assert_eq!(
            small.title.render(Reading::Brief, &same, &same),
            "churn makes 10,000/s of 32 B on average (20,000 in the window)"
        );
        assert_eq!(
            small.title.full(),
            "churn makes 10,000 allocations per second of 32 B on average"
        );
        let details: Vec<String> = small.details.iter().map(|d| d.text.full()).collect();
        assert_eq!(
            details,
            [
                "process: app (pid 7)",
                "allocations: 20,000 (625.0 KiB in the window)"
            ]
        );
        let leak = leak_suspect(&site);
        assert_eq!(
            leak.title.full(),
            "churn holds 12.0 KiB in 3 blocks, and its memory in use only grew"
        );
        assert_eq!(leak.hint, LEAK_HINT);
        assert_eq!(
            (leak.kind.name(), leak.profile),
            ("leak-suspect", ProfileKind::Heap)
        );
    }
}
