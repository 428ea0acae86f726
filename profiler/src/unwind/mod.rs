//! Unwinding: from a sample's user registers and its copy of the user stack to the return
//! addresses of every frame, with framehop, the way samply and `perf --call-graph dwarf` do.
//!
//! In: a process's mappings with their files held open ([`crate::process::procmaps`]), and
//! per sample the registers (ip, sp, bp) and stack bytes the kernel copied. Out: the
//! addresses of the stack, leaf first, and why the walk ended, as data ([`StackEnd`]).
//! Each file's unwind sections are read once and shared by every process that maps it; each
//! process has its own framehop unwinder, rebuilt when its mappings change.

pub mod go_stacks;
pub mod sections;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{Error as FrameError, Module, Unwinder};

use crate::process::files::ObjectFile;
use crate::process::procmaps::ProcessInfo;
use sections::{Bytes, Refused, UnwindSections};

/// Frames at most in one stack: deeper stacks are cut at the root end.
pub const MAX_FRAMES: usize = 512;

/// The most bytes of unwind sections held over all files of a run: a busy host's
/// libraries hold tens of MiB; files past it unwind by frame pointers.
pub const MAX_RUN_SECTION_BYTES: u64 = 512 << 20;

/// The most time spent reading unwind sections over a run (it happens between samples):
/// files past it unwind by frame pointers.
pub const MAX_RUN_SECTION_TIME: Duration = Duration::from_secs(3);

/// What reading the files' unwind sections cost and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SectionStats {
    /// Files whose unwind sections are held.
    pub files: u64,
    /// Bytes of unwind sections held.
    pub bytes: u64,
    /// Files refused for a section over its budget (or the run's), unwound by frame
    /// pointers.
    pub over_budget: u64,
    /// Files refused for a compressed section that does not inflate to its stated size.
    pub bad_compression: u64,
    /// Time spent reading them.
    pub time: Duration,
}

/// Why an unwound stack ends where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StackEnd {
    /// The outermost frame was reached: the call frame information says so, or the frame
    /// pointer chain ends.
    Root,
    /// The walk needed stack beyond the bytes copied with the sample (`--call-graph
    /// dwarf,SIZE` was too small for this stack).
    CopyLimit,
    /// The walk stopped early: the stack was unreadable or inconsistent there.
    Stopped,
    /// The stack is deeper than [`MAX_FRAMES`].
    TooDeep,
}

/// A stack as unwound from one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwound {
    /// Code addresses, leaf first; all but the first are return addresses.
    pub frames: Vec<u64>,
    /// Why the stack ends after its last frame.
    pub end: StackEnd,
}

/// A copy of a thread's user stack: `bytes` as they were from address `sp` upwards.
#[derive(Debug, Clone, Copy)]
pub struct StackCopy<'a> {
    /// The stack pointer: the address of `bytes[0]`.
    pub sp: u64,
    /// The copied stack.
    pub bytes: &'a [u8],
    /// Whether the thread's stack ends at the end of the copy (so reading past it is not a
    /// copy limit).
    pub ends: bool,
}

impl StackCopy<'_> {
    /// Whether `addr` lies in the stack just above the copy (within the largest copy the
    /// kernel programs can make).
    fn just_past(&self, addr: u64) -> bool {
        let end = self.sp.saturating_add(self.bytes.len() as u64);
        (end..end.saturating_add(profiler_common::MAX_USER_STACK_BYTES as u64)).contains(&addr)
    }

    fn word(&self, addr: u64) -> Option<u64> {
        let start = usize::try_from(addr.checked_sub(self.sp)?).ok()?;
        let bytes = self.bytes.get(start..start.checked_add(8)?)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

struct ProcessUnwinder {
    generation: u64,
    unwinder: UnwinderX86_64<Bytes>,
    /// Where Go's code lies in the process, if it has any.
    go: Option<GoCode>,
}

/// Where a Go executable is mapped in a process, and its top frames (see [`go_stacks`]).
#[derive(Debug, Default)]
struct GoCode {
    code: Vec<Range<u64>>,
    tops: Vec<Range<u64>>,
}

impl GoCode {
    fn is_top(&self, address: u64) -> bool {
        self.tops.iter().any(|r| r.contains(&address))
    }

    fn holds(&self, address: u64) -> bool {
        self.code.iter().any(|r| r.contains(&address))
    }
}

/// Unwinds the samples of every process of a run.
#[derive(Default)]
pub struct StackUnwinder {
    /// Unwind sections by file, shared by every process that maps the file; `None` where
    /// the file is not ELF.
    sections: HashMap<*const ObjectFile, Option<Arc<UnwindSections>>>,
    /// Keeps the files of `sections` alive, so their addresses stay unique keys.
    files: Vec<Arc<ObjectFile>>,
    processes: HashMap<u32, ProcessUnwinder>,
    cache: CacheX86_64,
    stats: SectionStats,
    /// Processes found to run Go code since [`Self::take_new_go_processes`].
    new_go: Vec<u32>,
}

impl StackUnwinder {
    /// Unwinds one sample of process `pid` from its user registers and stack copy.
    pub fn unwind(
        &mut self,
        pid: u32,
        process: &ProcessInfo,
        (ip, sp, bp): (u64, u64, u64),
        stack: StackCopy<'_>,
    ) -> Unwound {
        self.update(pid, process);
        let unwinder = &self.processes[&pid].unwinder;
        let go = self.processes[&pid].go.as_ref();
        let mut read = |addr: u64| stack.word(addr).ok_or(());
        let mut frames = unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            &mut self.cache,
            &mut read,
        );
        let mut addresses = Vec::new();
        let end = loop {
            if addresses.len() == MAX_FRAMES {
                break StackEnd::TooDeep;
            }
            match frames.next() {
                Ok(Some(frame)) => {
                    addresses.push(frame.address());
                    if go.is_some_and(|go| go.is_top(frame.address_for_lookup())) {
                        break StackEnd::Root;
                    }
                }
                Ok(None) => break StackEnd::Root,
                // Just past the copy, where the thread's stack goes on: the copy was too
                // short. Anywhere else the walk went astray.
                Err(FrameError::CouldNotReadStack(addr))
                    if !stack.ends && stack.just_past(addr) =>
                {
                    break StackEnd::CopyLimit;
                }
                Err(_) => break StackEnd::Stopped,
            }
        };
        Unwound {
            frames: addresses,
            end,
        }
    }

    /// Continues the stack of a Go process's sample past a stack switch with the sample's
    /// frame-pointer `chain` (see [`go_stacks`]), unless it ended at a top frame, or at the
    /// root of a thread of C code (cgo); returns whether frames were added.
    pub fn continue_go_stack(&self, pid: u32, unwound: &mut Unwound, chain: &[u64]) -> bool {
        let Some(go) = self.processes.get(&pid).and_then(|p| p.go.as_ref()) else {
            return false;
        };
        // A return address is looked up one byte back, in its call instruction.
        let lookup = |i: usize, address: u64| {
            if i == 0 {
                address
            } else {
                address.saturating_sub(1)
            }
        };
        let Some((last, &address)) = unwound.frames.iter().enumerate().next_back() else {
            return false;
        };
        let address = lookup(last, address);
        if go.is_top(address) || (unwound.end == StackEnd::Root && !go.holds(address)) {
            return false;
        }
        let first_go = (unwound.frames.iter().enumerate())
            .position(|(i, &address)| go.holds(lookup(i, address)))
            .unwrap_or(0);
        let Some(mut frames) = go_stacks::continue_with_chain(&unwound.frames, chain, first_go)
        else {
            return false;
        };
        let top = frames
            .iter()
            .enumerate()
            .position(|(i, &address)| address != 0 && go.is_top(lookup(i, address)));
        unwound.end = match top {
            Some(at) => {
                frames.truncate(at + 1);
                StackEnd::Root
            }
            // The chain was cut at its size: the rest is unknown.
            None if chain.len() >= profiler_common::MAX_USER_FRAMES => StackEnd::Stopped,
            // The chain ended on a zero frame pointer: the bottom of the stack.
            None => StackEnd::Root,
        };
        if frames.len() > MAX_FRAMES {
            frames.truncate(MAX_FRAMES);
            unwound.end = StackEnd::TooDeep;
        }
        unwound.frames = frames;
        true
    }

    /// The processes found to run Go code since the last call: their CPU samples should
    /// carry their frame-pointer chain.
    pub fn take_new_go_processes(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.new_go)
    }

    /// Builds (or rebuilds, when its mappings changed) the unwinder of process `pid`.
    fn update(&mut self, pid: u32, process: &ProcessInfo) {
        if self
            .processes
            .get(&pid)
            .is_some_and(|p| p.generation == process.generation)
        {
            return;
        }
        let mut unwinder = UnwinderX86_64::new();
        let mut go = GoCode::default();
        // One module per executable mapping, each with its own bias: a file mapped twice
        // (dlmopen, or a library unloaded and loaded again elsewhere) is two modules.
        for entry in &process.maps {
            let Some(file) = &entry.file else { continue };
            let Some(sections) = self.sections_of(file) else {
                continue;
            };
            let Some(bias) = sections.bias(entry.start, entry.offset) else {
                continue;
            };
            if let Some(tops) = &sections.go_top_frames {
                go.code.push(entry.start..entry.end);
                go.tops.extend(
                    tops.iter()
                        .map(|r| r.start.wrapping_add(bias)..r.end.wrapping_add(bias)),
                );
            }
            unwinder.add_module(Module::new(
                file.path.clone(),
                entry.start..entry.end,
                bias,
                sections.module_info(),
            ));
        }
        let go = (!go.code.is_empty()).then_some(go);
        let was_go = self.processes.get(&pid).is_some_and(|p| p.go.is_some());
        if go.is_some() && !was_go {
            self.new_go.push(pid);
        }
        self.processes.insert(
            pid,
            ProcessUnwinder {
                generation: process.generation,
                unwinder,
                go,
            },
        );
    }

    /// What reading unwind sections cost and refused so far.
    pub fn section_stats(&self) -> SectionStats {
        self.stats
    }

    fn sections_of(&mut self, file: &Arc<ObjectFile>) -> Option<Arc<UnwindSections>> {
        let key = Arc::as_ptr(file);
        if let Some(known) = self.sections.get(&key) {
            return known.clone();
        }
        let stats = &mut self.stats;
        let read = if stats.time >= MAX_RUN_SECTION_TIME {
            Err(Refused::OverBudget)
        } else {
            let started = Instant::now();
            let read = UnwindSections::read(
                &file.file,
                MAX_RUN_SECTION_BYTES.saturating_sub(stats.bytes),
            );
            stats.time += started.elapsed();
            read
        };
        let sections = match read {
            Ok(sections) => {
                stats.files += 1;
                stats.bytes += sections.bytes();
                Some(Arc::new(sections))
            }
            Err(refused) => {
                match refused {
                    Refused::NotElf => {}
                    Refused::OverBudget => stats.over_budget += 1,
                    Refused::BadCompression => stats.bad_compression += 1,
                }
                if refused != Refused::NotElf {
                    log::debug!(
                        "unwind sections of {} refused ({refused:?}): unwound by frame pointers",
                        file.path.escape_debug()
                    );
                }
                None
            }
        };
        self.files.push(file.clone());
        self.sections.insert(key, sections.clone());
        sections
    }
}

#[cfg(test)]
mod tests;
