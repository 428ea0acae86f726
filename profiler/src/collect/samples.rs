//! Unwinds the run's stack samples as they arrive: each at once, while its process's
//! mappings are current, its stacks interned, before a collector counts it.

use std::collections::HashMap;

use std::time::{Duration, Instant};

use profiler_common::sample_kind;
use profiler_model::{FrameAddress, ProgramLabels};

use crate::collect::collector::Sample;
use crate::collect::go_labels::{LabelReader, LabelStats};
use crate::collect::python::{NewPython, PythonStats, PythonTracker, Splice};
use crate::collect::records::SampleView;
use crate::collect::stacks::{StackTable, UserStack};
use crate::process::procmaps::{ProcessInfo, ProcessTable};
use crate::unwind::{SectionStats, StackCopy, StackEnd, StackUnwinder, Unwound};

/// Why a process's mappings are read again while its samples are unwound. Each cause
/// keeps its own pace: a read for one must not delay the read the other needs. (A read
/// at exec, before the C library was mapped, once held back for 500 ms the read every
/// thread's `start_thread` return address needed, and half a second of samples ended in
/// `[unknown]`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Remap {
    /// The sample's very instruction lies outside the known mappings (an exec, a new
    /// library): read soon, but not for every sample of a process that is gone.
    UnknownIp,
    /// A return address lies outside them (`dlopen` since the last read): rarely, since a
    /// stack that unwound into garbage must not make every sample re-read the maps.
    ReturnAddress,
}

impl Remap {
    fn every(self) -> Duration {
        match self {
            Remap::UnknownIp => Duration::from_millis(10),
            Remap::ReturnAddress => Duration::from_millis(500),
        }
    }
}

/// When each process's mappings were last read, per cause.
#[derive(Default)]
struct RemapPace {
    last: HashMap<(u32, Remap), Instant>,
}

impl RemapPace {
    /// Whether `pid`'s mappings may be read again for `cause` at `now`; if so, notes it.
    fn due(&mut self, pid: u32, cause: Remap, now: Instant) -> bool {
        let key = (pid, cause);
        if self
            .last
            .get(&key)
            .is_some_and(|&at| now.duration_since(at) < cause.every())
        {
            return false;
        }
        self.last.insert(key, now);
        true
    }
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
    /// Go samples whose stack went on past a stack switch by its frame pointers, into the
    /// goroutine the system stack ran for.
    pub go_continued: u64,
    /// What became of the Go profiler labels the samples carried.
    pub go_labels: LabelStats,
    /// What became of the Python frames the samples carried.
    pub python: PythonStats,
    /// Time spent unwinding and counting the samples (reading mappings included).
    pub busy: Duration,
    /// What reading the files' unwind sections held and refused.
    pub sections: SectionStats,
}

/// The unwinding stage: parses each ring-buffer item, unwinds its user stack while the
/// process's mappings are current, and interns its stacks, so only distinct stacks are
/// kept, never the stack copies; the collectors count the samples.
#[derive(Default)]
pub struct StackSampler {
    stacks: StackTable,
    stats: UnwindStats,
    /// Per Go process, where `runtime.systemstack` is: a sampled allocation's stack ends
    /// there, as Go's own profile ends it.
    go_stack_roots: HashMap<u32, (u64, u64)>,
    unwinder: StackUnwinder,
    remapped: RemapPace,
    labels: LabelReader,
    /// Processes known to be Go's by their sampled allocations (whose frames the kernel
    /// walks, so the unwinder never sees them), not yet handed on.
    new_go: Vec<u32>,
    /// Processes handed on as Go's.
    go_handed: std::collections::HashSet<u32>,
    /// CPython processes and their samples' Python frames.
    python: PythonTracker,
}

/// The run's distinct stacks and how they were unwound, once every sample is in.
#[derive(Debug, Default)]
pub struct Unwinding {
    /// Every distinct stack.
    pub stacks: StackTable,
    /// How the stacks were unwound.
    pub stats: UnwindStats,
}

impl StackSampler {
    /// A sampler that reads CPython programs' Python frames if `python_frames`.
    pub fn new(python_frames: bool) -> Self {
        Self {
            python: if python_frames {
                PythonTracker::default()
            } else {
                PythonTracker::off()
            },
            ..Self::default()
        }
    }

    /// Unwinds one ring-buffer item, reading the process's mappings first when the sample
    /// falls outside what is known of them; `None` for an item that cannot be parsed.
    pub fn add(&mut self, item: &[u8], processes: &mut ProcessTable) -> Option<Sample> {
        let started = Instant::now();
        let sample = self.unwind(item, processes);
        self.stats.busy += started.elapsed();
        sample
    }

    fn unwind(&mut self, item: &[u8], processes: &mut ProcessTable) -> Option<Sample> {
        self.stats.bytes += item.len() as u64;
        let Some(view) = SampleView::parse(item) else {
            self.stats.malformed += 1;
            return None;
        };
        self.stats.samples += 1;
        let header = view.header;
        if matches!(header.kind, sample_kind::GO_FREE | sample_kind::OFFCPU_END) {
            // A Go free carries no stack, only its address; a wait's end only its times.
            return Some(Sample {
                header,
                user: UserStack::NONE,
                kernel: StackTable::EMPTY,
                program: ProgramLabels::NONE,
            });
        }
        if header.kind == sample_kind::GO_ALLOC
            && !self.go_handed.contains(&header.pid)
            && !self.new_go.contains(&header.pid)
        {
            self.new_go.push(header.pid);
        }
        let program = view
            .go_labels()
            .map_or(ProgramLabels::NONE, |labels| self.labels.read(&labels));
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
            // Every kind: a thread's waits are the Python lines that wait, too.
            if let Some(process) = processes.get(header.pid) {
                self.python.check(header.pid, process);
            }
            let python = view.python_frames();
            if python.is_none() {
                self.python.note_thread(header.pid, header.tid);
            }
            let stacks = &mut self.stacks;
            let spliced = python.and_then(|python| {
                self.python.splice(header.pid, &frames, &python, |name| {
                    stacks.intern_python(name)
                })
            });
            // Typed here, once: the leaf is where the thread was, the rest return addresses.
            let mut frames = match spliced {
                Some(spliced) => spliced
                    .into_iter()
                    .map(|frame| match frame {
                        Splice::Native(0) => FrameAddress::InstructionPointer(frames[0]),
                        Splice::Native(i) => FrameAddress::ReturnAddress(frames[i]),
                        Splice::Python(id) => FrameAddress::Interpreted(id),
                    })
                    .collect(),
                None => FrameAddress::stack(frames),
            };
            if header.kind == sample_kind::GO_ALLOC
                && let Some(&(start, end)) = self.go_stack_roots.get(&header.pid)
                && let Some(at) = frames
                    .iter()
                    .position(|frame| (start..end).contains(&frame.lookup_address()))
            {
                frames.truncate(at + 1);
            }
            UserStack::Frames {
                stack: self.stacks.intern(frames),
                space: processes.space(header.pid),
            }
        };
        // Taken by the CPU sampler and the off-CPU programs only.
        let kernel = if header.kernel_bytes > 0 {
            self.stacks
                .intern(FrameAddress::stack(view.kernel_frames()))
        } else {
            StackTable::EMPTY
        };
        Some(Sample {
            header,
            user,
            kernel,
            program,
        })
    }

    /// The processes found to run Go code since the last call: the kernel should send
    /// their CPU samples' frame-pointer chains.
    pub fn take_new_go_processes(&mut self) -> Vec<u32> {
        let mut pids = self.unwinder.take_new_go_processes();
        pids.append(&mut self.new_go);
        pids.retain(|&pid| self.go_handed.insert(pid));
        pids
    }

    /// Notes that process `pid` runs a Go executable (a target, or one that executed
    /// one), found before any of its samples: it is handed on (again) with the next
    /// [`Self::take_new_go_processes`], so that its first samples carry labels too.
    pub fn note_go(&mut self, pid: u32) {
        self.go_handed.remove(&pid);
        if !self.new_go.contains(&pid) {
            self.new_go.push(pid);
        }
    }

    /// Looks at process `pid`'s mappings for a CPython interpreter now, not at its next
    /// sample (see [`PythonTracker::check`]).
    pub fn check_python(&mut self, pid: u32, process: &ProcessInfo) {
        self.python.check(pid, process);
    }

    /// Forgets CPython process `pid`, which executed a new program.
    pub fn forget_python(&mut self, pid: u32) {
        self.python.forget(pid);
    }

    /// Forgets the CPython processes that exited.
    pub fn forget_exited_python(&mut self) {
        self.python.forget_exited();
    }

    /// The CPython processes and threads found since the last call, for the kernel's
    /// maps.
    pub fn take_new_python(&mut self) -> NewPython {
        self.python.take_new()
    }

    /// Counts a sample no collector took: a kind the kernel programs do not send for the
    /// run's profiles, as malformed as an item that cannot be parsed.
    pub fn refuse(&mut self) {
        self.stats.malformed += 1;
    }

    /// Ends the stacks of process `pid`'s Go allocations at `runtime.systemstack`
    /// (`start..end`): the runtime allocating for itself on the system stack is not the
    /// goroutine below it allocating.
    pub fn set_go_stack_root(&mut self, pid: u32, start: u64, end: u64) {
        self.go_stack_roots.insert(pid, (start, end));
    }

    /// The stacks interned and how they were unwound.
    pub fn finish(mut self) -> Unwinding {
        self.stats.sections = self.unwinder.section_stats();
        self.stats.go_labels = self.labels.stats;
        self.stats.python = self.python.stats;
        Unwinding {
            stacks: self.stacks,
            stats: self.stats,
        }
    }

    fn user_frames(&mut self, view: &SampleView<'_>, processes: &mut ProcessTable) -> Vec<u64> {
        let header = view.header;
        let pid = header.pid;
        let known = processes
            .get(pid)
            .is_some_and(|p| p.find(header.ip).is_some());
        if !known {
            self.remap(pid, processes, Remap::UnknownIp);
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
            self.stats.no_mappings += 1;
            return vec![header.ip];
        };
        let generation = process.generation;
        let mut unwound = self.unwinder.unwind(pid, process, regs, stack);
        // A return address outside every known mapping may be code mapped since (dlopen):
        // read the mappings again, and unwind once more if they changed.
        if outside_mappings(process, &unwound)
            && self.remap(pid, processes, Remap::ReturnAddress)
            && let Some(process) = processes.get(pid)
            && process.generation != generation
        {
            unwound = self.unwinder.unwind(pid, process, regs, stack);
        }
        if let Some(chain) = view.go_frames()
            && self.unwinder.continue_go_stack(pid, &mut unwound, &chain)
        {
            self.stats.go_continued += 1;
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
        let stats = &mut self.stats;
        match unwound.end {
            StackEnd::Root => {}
            StackEnd::CopyLimit => stats.copy_limit += 1,
            StackEnd::Stopped => stats.stopped += 1,
            StackEnd::TooDeep => stats.too_deep += 1,
        }
        unwound.frames
    }

    /// Reads the mappings of `pid` again unless that was done for `cause` too recently;
    /// returns whether it did.
    fn remap(&mut self, pid: u32, processes: &mut ProcessTable, cause: Remap) -> bool {
        self.remapped.due(pid, cause, Instant::now()) && processes.snapshot_maps(pid)
    }
}

fn outside_mappings(process: &ProcessInfo, unwound: &Unwound) -> bool {
    unwound
        .frames
        .iter()
        .skip(1)
        .any(|&addr| process.find(addr.saturating_sub(1)).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_for_one_cause_does_not_hold_back_the_other() {
        let mut pace = RemapPace::default();
        let t0 = Instant::now();
        assert!(pace.due(7, Remap::UnknownIp, t0));
        // The exec-time read must not delay the read a new library's return address needs.
        assert!(pace.due(7, Remap::ReturnAddress, t0 + Duration::from_millis(1)));
        assert!(!pace.due(7, Remap::ReturnAddress, t0 + Duration::from_millis(400)));
        assert!(pace.due(7, Remap::UnknownIp, t0 + Duration::from_millis(20)));
        assert!(pace.due(7, Remap::ReturnAddress, t0 + Duration::from_millis(502)));
        // Another process keeps its own pace.
        assert!(pace.due(8, Remap::ReturnAddress, t0 + Duration::from_millis(2)));
    }
}
