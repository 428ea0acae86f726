//! Every analysis of a run's profiles in one place, so the terminal summary and the HTML
//! report show the same findings.

use profiler_model::{Profile, ProfileKind};

use crate::config::SmallIo;

use super::block::{self, LockWaits, ProcessBlocked};
use super::cpu::{self, MemoryHotSpot};
use super::finding::Finding;
use super::go_cpu::{self, GoSyscallHotSpot};
use super::go_runtime_locks;
use super::goroutines::{self, GoWaitFinding, GoWaitKind};
use super::heap::{self, HeapSite, SmallAllocations};
use super::io::{self, IoSite, SmallIoFinding};
use super::jit::{self, UnnamedJit};
use super::offcpu::{self, OffCpuWaits};
use super::wake_evidence;
use super::words;

/// Findings of one kind, ranked, with what they are called in a count.
#[derive(Debug, Clone)]
pub struct FindingGroup {
    /// What they are, plural: "contended locks".
    pub what: &'static str,
    /// The findings, most costly first.
    pub findings: Vec<Finding>,
}

/// What the analyses found in a run's profiles (each part empty when its profile is absent).
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// I/O call sites, most calls first.
    pub io_sites: Vec<IoSite>,
    /// The small-I/O hot paths among them.
    pub small_io: Vec<SmallIoFinding>,
    /// The thresholds the small-I/O findings used.
    pub small_io_thresholds: SmallIo,
    /// The I/O profile's window in seconds, which the call rates are over.
    pub io_seconds: f64,
    /// Futex waits per process, the most contended first.
    pub blocked: Vec<ProcessBlocked>,
    /// Nanoseconds of futex waits known to be idle (handed work, or timed out).
    pub idle_delay: u64,
    /// Futex waits by process and futex, and by acquire site, most delay first.
    pub locks: Vec<LockWaits>,
    /// Allocator and garbage-collector hot spots of the CPU profile.
    pub memory: Vec<MemoryHotSpot>,
    /// Allocation sites of the heap profile, most bytes first.
    pub heap_sites: Vec<HeapSite>,
    /// Sites making many small allocations.
    pub small_allocations: Vec<SmallAllocations>,
    /// Sites whose memory in use only grew during the window.
    pub leak_suspects: Vec<HeapSite>,
    /// The heap profile's window in seconds.
    pub heap_seconds: f64,
    /// Contended Go mutexes and busy channel sites, from goroutine waits.
    pub go_waits: Vec<GoWaitFinding>,
    /// CPU time in Go's read/write syscalls (small I/O), by the calling Go function.
    pub go_syscalls: Option<GoSyscallHotSpot>,
    /// Off-CPU time by process, reason and function, the longest first; `None` without
    /// the off-CPU profile.
    pub offcpu: Option<Vec<OffCpuWaits>>,
    /// JVM and Node.js processes whose CPU samples are mostly in unnamed JIT code.
    pub unnamed_jit: Vec<UnnamedJit>,
    /// Whether the run asked the JVMs for perf maps (`--jit-maps`), which changes what
    /// the unnamed-JIT findings advise.
    pub jit_maps_asked: bool,
}

impl Analysis {
    /// Analyzes each profile by its kind.
    pub fn of(profiles: &[Profile], small_io: SmallIo) -> Self {
        let mut analysis = Self {
            small_io_thresholds: small_io,
            ..Self::default()
        };
        for profile in profiles {
            match profile.kind {
                ProfileKind::Cpu => {
                    analysis.memory = cpu::memory_hot_spots(profile);
                    analysis.go_syscalls = go_cpu::syscall_hot_spot(profile);
                    analysis.unnamed_jit = jit::unnamed_jit(profile);
                }
                ProfileKind::Io => {
                    let seconds = profile.duration.as_secs_f64();
                    analysis.io_sites = io::sites(profile);
                    analysis.small_io = io::small_io(&analysis.io_sites, small_io, seconds);
                    analysis.io_seconds = seconds;
                }
                ProfileKind::Block => {
                    // Who woke whom, read once for the three.
                    let waits = wake_evidence::futex_waits(profile);
                    analysis.idle_delay = block::idle_delay(&waits);
                    // The Go runtime's own locks are not the program's: a channel's is a Go
                    // channel finding, the others the runtime's business.
                    let (runtime, program) = go_runtime_locks::split(profile, waits);
                    let runtime_waits: Vec<_> = runtime.iter().map(|(w, _)| w.clone()).collect();
                    analysis.blocked = block::by_process(&program, &runtime_waits);
                    analysis.locks = block::lock_waits(profile, &program);
                    analysis.go_waits = goroutines::findings(profile);
                    analysis
                        .go_waits
                        .extend(go_runtime_locks::channel_lock_findings(profile, &runtime));
                    analysis
                        .go_waits
                        .sort_by_key(|f| std::cmp::Reverse(f.delay));
                }
                ProfileKind::OffCpu => analysis.offcpu = Some(offcpu::waits(profile)),
                ProfileKind::Heap => {
                    let seconds = profile.duration.as_secs_f64();
                    analysis.heap_sites = heap::sites(profile);
                    analysis.small_allocations =
                        heap::small_allocations(&analysis.heap_sites, seconds);
                    analysis.leak_suspects = heap::leak_suspects(&analysis.heap_sites);
                    analysis.heap_seconds = seconds;
                }
            }
        }
        // Whether a buffer helps the Go syscall hot spot is the I/O profile's to say.
        if let Some(spot) = &mut analysis.go_syscalls
            && profiles.iter().any(|p| p.kind == ProfileKind::Io)
        {
            spot.io = go_cpu::IoEvidence::of(&spot.callers, &analysis.io_sites, &analysis.small_io);
        }
        analysis
    }

    /// The locks threads queued for, by futex or acquire site.
    pub fn contended(&self) -> impl Iterator<Item = &LockWaits> {
        self.locks.iter().filter(|f| f.contended())
    }

    /// The off-CPU waits with a fix to name.
    pub fn offcpu_findings(&self) -> impl Iterator<Item = &OffCpuWaits> {
        self.offcpu.iter().flatten().filter(|w| w.is_finding())
    }

    /// The contended Go mutexes.
    pub fn go_mutexes(&self) -> impl Iterator<Item = &GoWaitFinding> {
        self.go_waits.iter().filter(|f| f.kind == GoWaitKind::Mutex)
    }

    /// The Go channel sites goroutines waited at most.
    pub fn go_channels(&self) -> impl Iterator<Item = &GoWaitFinding> {
        self.go_waits.iter().filter(|f| f.kind != GoWaitKind::Mutex)
    }

    /// The unnamed-JIT findings, as values.
    pub fn unnamed_jit_findings(&self) -> Vec<Finding> {
        self.unnamed_jit
            .iter()
            .map(|u| words::unnamed_jit(u, self.jit_maps_asked))
            .collect()
    }

    /// Every finding as a value, by kind in the order the report lists them: small I/O,
    /// contention (futexes, then Go locks and channels), CPU memory hot spots, then the
    /// heap's small allocations and leak suspects, off-CPU waits and unnamed JIT code.
    pub fn groups(&self) -> Vec<FindingGroup> {
        let group = |what, findings| FindingGroup { what, findings };
        // Each analysis ranks its findings, most calls, delay or bytes first.
        vec![
            group(
                "small-I/O hot paths",
                self.small_io.iter().map(words::small_io).collect(),
            ),
            group(
                "contended locks",
                self.contended().map(words::contention).collect(),
            ),
            group(
                "Go lock and channel waits",
                self.go_waits.iter().map(words::go_wait).collect(),
            ),
            group(
                "memory hot spots",
                self.memory.iter().map(words::memory).collect(),
            ),
            group(
                "sites with many small allocations",
                self.small_allocations
                    .iter()
                    .map(words::small_allocations)
                    .collect(),
            ),
            group(
                "leak suspects",
                self.leak_suspects.iter().map(words::leak_suspect).collect(),
            ),
            group(
                "off-CPU waits with a fix",
                self.offcpu_findings().map(words::offcpu).collect(),
            ),
            group(
                "JIT runtimes with unnamed code",
                self.unnamed_jit_findings(),
            ),
        ]
    }

    /// What it takes to be a finding, in words.
    pub fn thresholds(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "small I/O: a call site making {} or more calls per second that asks for at \
                 most {} bytes per call on average (small requests), or asks for more but \
                 gets at most that from a socket or pipe (small arrivals), or finds nothing \
                 (EAGAIN) in at least {:.0}% of its calls (empty polls)",
                self.small_io_thresholds.min_calls_per_sec,
                self.small_io_thresholds.max_avg_bytes,
                io::EMPTY_POLL_SHARE * 100.0
            ),
            "contention: a futex that two or more threads waited on (idle Go runtime threads \
             left out), or a Go sync.Mutex/RWMutex that two or more goroutines waited on"
                .to_owned(),
            format!(
                "channel waits: goroutines waiting together at least {:.0}% of the window at \
                 one channel operation or select",
                goroutines::MIN_CHANNEL_SHARE * 100.0
            ),
            format!(
                "allocation / garbage collection: allocator or collector frames in at least \
                 {:.0}% of the CPU samples",
                cpu::MIN_SHARE * 100.0
            ),
            format!(
                "many small allocations: a heap site making {} or more allocations per second \
                 of at most {} bytes on average",
                heap::MIN_ALLOCS_PER_SEC,
                heap::MAX_SMALL_BYTES
            ),
            "leak suspect: a heap site whose memory in use never fell and grew during the \
             window"
                .to_owned(),
            format!(
                "Go small I/O: syscall.Read/Write frames in at least {:.0}% of the CPU samples",
                go_cpu::MIN_SHARE * 100.0
            ),
            format!(
                "unnamed JIT code: a JVM or Node.js process with at least {:.0}% of its CPU \
                 samples in JIT code its runtime gave no names for",
                jit::MIN_SHARE * 100.0
            ),
        ];
        if self.offcpu.is_some() {
            lines.push(format!(
                "off-CPU waits: one function's waits for the disk, in page faults, for a CPU,                  or short sleeps in a loop ({:.0} or more a second), taking at least {:.0}% of                  the window of the threads that waited there",
                offcpu::POLLING_SLEEPS_PER_SECOND,
                offcpu::FINDING_SHARE * 100.0
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use profiler_model::fixture;

    use super::*;

    #[test]
    fn analyzes_what_is_there() {
        let a = Analysis::of(&[fixture::profile()], SmallIo::default());
        assert!(a.io_sites.is_empty() && a.locks.is_empty() && a.memory.is_empty());
        assert_eq!(a.thresholds().len(), 8);
        let mut alloc = fixture::profile();
        for l in &mut alloc.locations {
            if l.lines[0].function == "a" {
                l.lines[0].function = "malloc".into();
            }
        }
        let a = Analysis::of(&[alloc], SmallIo::default());
        assert_eq!(a.memory.len(), 1);
        assert_eq!(a.contended().count() + a.small_io.len(), 0);
    }
}
