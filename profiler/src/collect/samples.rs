//! Counts the run's stack samples as they arrive: each is unwound at once (while its
//! process's mappings are current) and its stacks interned, so only distinct stacks and
//! their counts are kept, never the stack copies.

use std::collections::HashMap;

use std::time::{Duration, Instant};

use profiler_common::{BlockKey, COMM_LEN, GoWaitKey, HeapSiteKey, IoKey, sample_kind};

use crate::collect::go_heap::{GoAllocStack, GoHeap};
pub use crate::collect::stacks::{StackHandle, StackTable, UserStack};

use crate::collect::records::SampleView;
use crate::process::procmaps::{ProcessInfo, ProcessTable};
use crate::unwind::{SectionStats, StackCopy, StackEnd, StackUnwinder, Unwound};

/// How soon a process's mappings may be read again because a return address left them:
/// a stack that unwound into garbage must not make every sample re-read the maps.
const REMAP_EVERY: Duration = Duration::from_millis(500);

/// How soon a process's mappings may be read again because a sample's very instruction
/// lies outside them (an exec, a new library): soon, but not for every sample of a
/// process that is gone.
const REMAP_UNKNOWN_IP_EVERY: Duration = Duration::from_millis(10);

/// What one CPU sample is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSampleKey {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The thread's command name, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// The user stack.
    pub user: UserStack,
    /// The kernel stack.
    pub kernel: StackHandle,
}

/// How the samples' stacks were unwound, for the profiles' accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnwindStats {
    /// Samples received, of every kind.
    pub samples: u64,
    /// Bytes received through the ring buffer.
    pub bytes: u64,
    /// Samples whose walk needed more stack than was copied.
    pub copy_limit: u64,
    /// Samples whose walk stopped early (unreadable or inconsistent stack).
    pub stopped: u64,
    /// Samples deeper than the frame limit.
    pub too_deep: u64,
    /// Items that could not be parsed (never sent by the kernel programs).
    pub malformed: u64,
    /// Samples of processes whose mappings could never be read (gone before the first
    /// read, and no parent's to inherit): only their instruction pointer is kept.
    pub no_mappings: u64,
    /// Time spent unwinding and counting the samples (reading mappings included).
    pub busy: Duration,
    /// What reading the files' unwind sections held and refused.
    pub sections: SectionStats,
}

/// The run's samples, counted by stack.
#[derive(Debug, Default)]
pub struct Samples {
    /// Every distinct stack.
    pub stacks: StackTable,
    /// CPU samples by thread and stacks.
    pub cpu: HashMap<CpuSampleKey, u64>,
    /// Stack samples of I/O call sites: how often each stack was seen at each site.
    pub io: HashMap<(IoKey, UserStack), u64>,
    /// Stack samples of wait sites: how often each stack was seen at each site.
    pub block: HashMap<(BlockKey, UserStack), u64>,
    /// Stack samples of native allocation sites: how often each stack was seen at each.
    pub heap: HashMap<(HeapSiteKey, UserStack), u64>,
    /// The allocations the Go runtime sampled.
    pub go_heap: GoHeap,
    /// Stack samples of goroutine wait sites: how often each stack was seen at each site.
    pub go: HashMap<(GoWaitKey, UserStack), u64>,
    /// How the stacks were unwound.
    pub stats: UnwindStats,
}

/// Unwinds and counts samples as they arrive.
#[derive(Default)]
pub struct Collector {
    samples: Samples,
    /// Per Go process, where `runtime.systemstack` is: a sampled allocation's stack ends
    /// there, as Go's own profile ends it.
    go_stack_roots: HashMap<u32, (u64, u64)>,
    unwinder: StackUnwinder,
    remapped: HashMap<u32, Instant>,
}

impl Collector {
    /// Counts one ring-buffer item, reading the process's mappings first when the sample
    /// falls outside what is known of them.
    pub fn add(&mut self, item: &[u8], processes: &mut ProcessTable) {
        let started = Instant::now();
        self.count(item, processes);
        self.samples.stats.busy += started.elapsed();
    }

    fn count(&mut self, item: &[u8], processes: &mut ProcessTable) {
        self.samples.stats.bytes += item.len() as u64;
        let Some(view) = SampleView::parse(item) else {
            self.samples.stats.malformed += 1;
            return;
        };
        self.samples.stats.samples += 1;
        let header = view.header;
        if header.kind == sample_kind::GO_FREE {
            self.samples.go_heap.free(header.pid, header.heap.ptr);
            return;
        }
        let user = if view.no_user() {
            UserStack::NONE
        } else if view.user_unreadable() {
            UserStack::Unreadable
        } else {
            let mut frames = self.user_frames(&view, processes);
            if header.kind == sample_kind::HEAP_PRELOAD && !frames.is_empty() {
                // The interposer's marker function, called from its `malloc`: that
                // `malloc` is the leaf, as the C library's is for a uprobe's stack.
                frames.remove(0);
            }
            if header.kind == sample_kind::GO_ALLOC
                && let Some(&(start, end)) = self.go_stack_roots.get(&header.pid)
                && let Some(at) = frames.iter().enumerate().position(|(i, &addr)| {
                    let addr = if i > 0 { addr.saturating_sub(1) } else { addr };
                    (start..end).contains(&addr)
                })
            {
                frames.truncate(at + 1);
            }
            UserStack::Frames {
                stack: self.samples.stacks.intern(frames),
                space: processes.space(header.pid),
            }
        };
        match header.kind {
            sample_kind::CPU => {
                let kernel = self.samples.stacks.intern(view.kernel_frames());
                let key = CpuSampleKey {
                    pid: header.pid,
                    tid: header.tid,
                    comm: header.comm,
                    user,
                    kernel,
                };
                *self.samples.cpu.entry(key).or_default() += 1;
            }
            sample_kind::IO => *self.samples.io.entry((header.io_site, user)).or_default() += 1,
            sample_kind::BLOCK => {
                *self
                    .samples
                    .block
                    .entry((header.block_site, user))
                    .or_default() += 1;
            }
            sample_kind::HEAP | sample_kind::HEAP_PRELOAD => {
                *self
                    .samples
                    .heap
                    .entry((header.heap.site, user))
                    .or_default() += 1
            }
            sample_kind::GO_ALLOC => {
                let stack = GoAllocStack {
                    pid: header.pid,
                    comm: header.comm,
                    user,
                };
                self.samples.go_heap.alloc(
                    stack,
                    header.heap.ptr,
                    header.heap.size,
                    header.heap.rate,
                );
            }
            sample_kind::GO_WAIT => {
                *self.samples.go.entry((header.go_site, user)).or_default() += 1;
            }
            _ => self.samples.stats.malformed += 1,
        }
    }

    /// Ends the stacks of process `pid`'s Go allocations at `runtime.systemstack`
    /// (`start..end`): the runtime allocating for itself on the system stack is not the
    /// goroutine below it allocating.
    pub fn set_go_stack_root(&mut self, pid: u32, start: u64, end: u64) {
        self.go_stack_roots.insert(pid, (start, end));
    }

    /// The samples counted so far.
    pub fn finish(mut self) -> Samples {
        self.samples.stats.sections = self.unwinder.section_stats();
        self.samples
    }

    fn user_frames(&mut self, view: &SampleView<'_>, processes: &mut ProcessTable) -> Vec<u64> {
        let header = view.header;
        let pid = header.pid;
        let known = processes
            .get(pid)
            .is_some_and(|p| p.find(header.ip).is_some());
        if !known {
            self.remap(pid, processes, REMAP_UNKNOWN_IP_EVERY);
        }
        if let Some(frames) = view.user_frames() {
            // Frame-pointer mode: the kernel walked them; the mappings are only needed
            // for symbolization, and were read above.
            return frames;
        }
        let stack = StackCopy {
            sp: header.sp,
            bytes: view.user_stack(),
            ends: view.stack_ends(),
        };
        let regs = (header.ip, header.sp, header.bp);
        let Some(process) = processes.get(pid) else {
            self.samples.stats.no_mappings += 1;
            return vec![header.ip];
        };
        let generation = process.generation;
        let mut unwound = self.unwinder.unwind(pid, process, regs, stack);
        // A return address outside every known mapping may be code mapped since (dlopen):
        // read the mappings again, and unwind once more if they changed.
        if outside_mappings(process, &unwound)
            && self.remap(pid, processes, REMAP_EVERY)
            && let Some(process) = processes.get(pid)
            && process.generation != generation
        {
            unwound = self.unwinder.unwind(pid, process, regs, stack);
        }
        if unwound.end != StackEnd::Root {
            log::trace!(
                "pid {pid} ({}): stack ends {:?} after {} frames (sp {:#x}, {} bytes copied, \
                 stack ends: {}, last frame {:#x}), {} mappings",
                String::from_utf8_lossy(&header.comm),
                unwound.end,
                unwound.frames.len(),
                header.sp,
                stack.bytes.len(),
                stack.ends,
                unwound.frames.last().copied().unwrap_or(0),
                processes.get(pid).map_or(0, |p| p.maps.len())
            );
        }
        let stats = &mut self.samples.stats;
        match unwound.end {
            StackEnd::Root => {}
            StackEnd::CopyLimit => stats.copy_limit += 1,
            StackEnd::Stopped => stats.stopped += 1,
            StackEnd::TooDeep => stats.too_deep += 1,
        }
        unwound.frames
    }

    /// Reads the mappings of `pid` again unless that was done less than `every` ago;
    /// returns whether it did.
    fn remap(&mut self, pid: u32, processes: &mut ProcessTable, every: Duration) -> bool {
        let now = Instant::now();
        if self
            .remapped
            .get(&pid)
            .is_some_and(|&at| now.duration_since(at) < every)
        {
            return false;
        }
        self.remapped.insert(pid, now);
        processes.snapshot_maps(pid)
    }
}

fn outside_mappings(process: &ProcessInfo, unwound: &Unwound) -> bool {
    unwound
        .frames
        .iter()
        .skip(1)
        .any(|&addr| process.find(addr.saturating_sub(1)).is_none())
}
