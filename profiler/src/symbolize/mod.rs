//! Turns raw addresses into source frames with blazesym, once, at the end of the run.
//!
//! User addresses are resolved against the mapping snapshots taken while each process lived
//! (see [`crate::process::procmaps`]): the address becomes a file offset in the mapped ELF
//! file, read through the descriptor held since the mapping was first seen, which works just
//! as well after the process has exited and for files in other mount namespaces. An address
//! that cannot be symbolized is data, not an error: its frame carries the reason as a
//! [`FrameKind::Unnamed`] and is displayed as `module+0xoffset` or `[unknown]`.
//!
//! Symbolization takes two passes, so that the run's memory stays small. First every address
//! that will be needed is requested ([`Symbolizer::request_user`],
//! [`Symbolizer::request_kernel`]); then [`Symbolizer::resolve_requests`] symbolizes them in
//! one batch for the kernel (in this process: kallsyms is the kernel's) and one batch per
//! file, each in a worker process ([`worker`]) under a memory limit and a time budget: the
//! files are the targets', and a crafted one must cost the run neither its memory nor its
//! time. A file's parsed (and often decompressed) symbols and DWARF can take tens of MiB,
//! and a whole host maps hundreds of files: they stay in the workers, and only the frames
//! come back. Afterwards [`Symbolizer::user`] and [`Symbolizer::kernel`] read the frames
//! from the results.

pub mod debuginfo;
pub mod debuginfod;
pub mod dynsym;
pub mod file_names;
pub mod gopclntab;
pub mod inflation;
pub mod kallsyms;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::process::bpf_symbols::BpfSymbols;
use crate::process::perfmap::PerfMap;
use crate::process::procmaps::{MapEntry, ProcessInfo};
pub use profiler_model::KERNEL_MAPPING;
use profiler_model::{FrameAddress, FrameKind, Line, Mapping, Unnamed, module_offset};

use crate::symbolize::debuginfo::{DebugInfoFinder, DebugOrigin};
use crate::symbolize::debuginfod::Debuginfod;
use crate::symbolize::kallsyms::{Kallsyms, KernelName};
use crate::symbolize::worker::{Budgets, Job, Outcome, Setup, WorkerCommand};

/// A symbolized address: its source frames and what kind of frame it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Source frames, innermost (inlined callee) first, never empty.
    pub lines: Vec<Line>,
    /// A named function, or why the address has no name.
    pub kind: FrameKind,
}

/// A symbolized user address: the mapping it fell in and its frame.
#[derive(Debug, Clone)]
pub struct UserFrame {
    /// The mapping of the address, if the process's snapshot had one.
    pub mapping: Option<Mapping>,
    /// Its frame.
    pub frame: Frame,
}

/// A symbolized kernel address: its frame, and the module it is in, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFrame {
    /// Its frame.
    pub frame: Frame,
    /// The module whose code it is (`fuse`), for module frames.
    pub module: Option<String>,
}

/// Symbolizes user and kernel addresses in batches, keeping the resulting frames (not the
/// parsed files) for the rest of the run.
#[derive(Default)]
pub struct Symbolizer {
    /// Frames of the kernel addresses resolved so far, by lookup address.
    kernel_lines: HashMap<u64, KernelFrame>,
    /// Kernel lookup addresses requested and not resolved yet.
    kernel_requests: BTreeSet<u64>,
    /// Frames of the user addresses resolved so far, by file (the path through which it is
    /// opened) and offset in it.
    file_lines: HashMap<String, HashMap<u64, Frame>>,
    /// File offsets requested and not resolved yet, by file: the path to open it by, and
    /// the path to name it by.
    file_requests: BTreeMap<(String, String), BTreeSet<u64>>,
    /// Where separate debug files are looked for.
    finder: DebugInfoFinder,
    /// The BPF programs seen during the run, for kernel frames in them.
    bpf: BpfSymbols,
    /// Files named from separate debug information (by the path they are opened by), by
    /// where it was found.
    debug_files: BTreeMap<DebugOrigin, BTreeSet<String>>,
    /// The `--debuginfo-dir` roots, for the workers.
    roots: Vec<PathBuf>,
    /// How workers are started, and their budgets.
    command: WorkerCommand,
    budgets: Budgets,
    /// When the first file was given to a worker: the run's budget counts from there.
    run_start: Option<Instant>,
    /// Files (by the name their process gave them) not fully named for a budget, and why.
    over_budget: BTreeMap<String, String>,
    /// Files named in this process because no worker could be started.
    named_here: u64,
}

impl Symbolizer {
    /// A symbolizer using DWARF where present (the file's own, else separate debug files
    /// under `/usr/lib/debug`), ELF symbols otherwise, and kallsyms for the kernel.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// A symbolizer also searching `debuginfo_dirs` and `debuginfod` for separate debug
    /// files, and naming kernel frames in the BPF programs `bpf` saw.
    pub fn with_sources(
        debuginfo_dirs: &[PathBuf],
        debuginfod: Option<Debuginfod>,
        bpf: BpfSymbols,
    ) -> Self {
        Self {
            finder: DebugInfoFinder::new(debuginfo_dirs, debuginfod),
            bpf,
            roots: debuginfo_dirs.to_vec(),
            ..Self::default()
        }
    }

    /// The same symbolizer with other worker budgets (for tests).
    #[cfg(test)]
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// One line on where separate debug information came from, and one on what debuginfod
    /// did, when either did anything.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.debug_files.is_empty() {
            let parts: Vec<String> = self
                .debug_files
                .iter()
                .map(|(origin, files)| format!("{} via {}", files.len(), origin.describe()))
                .collect();
            notes.push(format!("separate debug info: {}", parts.join(", ")));
        }
        if let Some(debuginfod) = self.finder.debuginfod() {
            notes.extend(debuginfod.activity().summary(debuginfod.urls()));
        }
        if !self.over_budget.is_empty() {
            notes.push(over_budget_note(&self.over_budget));
        }
        if self.named_here > 0 {
            notes.push(format!(
                "symbolization: no worker process could be started; {} file{} named in the \
                 profiler itself, without the memory and time budgets",
                self.named_here,
                if self.named_here == 1 { "" } else { "s" }
            ));
        }
        notes.extend(self.finder.refusals().summary());
        notes
    }

    /// Asks for the user frame `frame` of a process to be symbolized by the next
    /// [`Self::resolve_requests`]. Addresses outside any file-backed mapping need no
    /// symbolization and are not recorded.
    pub fn request_user(&mut self, process: Option<&ProcessInfo>, frame: FrameAddress) {
        let Some((entry, file_offset)) = locate(process, frame) else {
            return;
        };
        let Some(file) = &entry.file else {
            return;
        };
        let open = file.open_path();
        if self
            .file_lines
            .get(&open)
            .is_some_and(|lines| lines.contains_key(&file_offset))
        {
            return;
        }
        self.file_requests
            .entry((open, entry.path.clone()))
            .or_default()
            .insert(file_offset);
    }

    /// Asks for the kernel frame `frame` to be symbolized by the next
    /// [`Self::resolve_requests`].
    pub fn request_kernel(&mut self, frame: FrameAddress) {
        let lookup = frame.lookup_address();
        if !self.kernel_lines.contains_key(&lookup) {
            self.kernel_requests.insert(lookup);
        }
    }

    /// Symbolizes every requested address: the kernel's in one batch, and each file's in
    /// one batch, a file at a time, freeing each file's parsed data before the next.
    pub fn resolve_requests(&mut self) {
        let kernel: Vec<u64> = std::mem::take(&mut self.kernel_requests)
            .into_iter()
            .collect();
        let files = std::mem::take(&mut self.file_requests);
        let bpf = std::mem::take(&mut self.bpf);
        std::thread::scope(|scope| {
            // Reading and parsing kallsyms takes about 100 ms but little memory, so it runs
            // beside the files, which take their memory one at a time.
            let kernel_batch = if kernel.is_empty() {
                None
            } else {
                let batch = std::thread::Builder::new()
                    .name("kallsyms".to_owned())
                    .spawn_scoped(scope, || symbolize_kernel(&kernel, &bpf));
                // Without a thread, the batch runs after the files.
                Some(batch.map_err(|err| log::debug!("no thread for kallsyms: {err}")))
            };
            let mut jobs: Vec<Job> = files
                .into_iter()
                .map(|((open, name), offsets)| Job {
                    open,
                    name,
                    offsets: offsets.into_iter().collect(),
                })
                .collect();
            // The run's budget goes first to root's files, then to the files with the
            // most addresses: a user's files that spend their whole budgets cannot leave
            // the rest of the host unnamed.
            jobs.sort_by_cached_key(|job| {
                let users = std::fs::metadata(&job.open).map_or(true, |m| m.uid() != 0);
                (users, std::cmp::Reverse(job.offsets.len()))
            });
            self.resolve_files(jobs);
            let lines = match kernel_batch {
                None => return,
                Some(Ok(thread)) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Some(Err(())) => symbolize_kernel(&kernel, &bpf),
            };
            self.kernel_lines.extend(kernel.iter().copied().zip(lines));
        });
        self.bpf = bpf;
        release_freed_memory();
    }

    /// Symbolizes the user frame `frame` of a process, at its lookup address (one byte
    /// before a return address, as perf and pprof do).
    ///
    /// The frames come from [`Self::resolve_requests`]; an address that was not requested
    /// is symbolized on its own, which costs a parse of its file. An address in anonymous
    /// memory is named by the process's JIT perf map `jit`, where it has one.
    pub fn user(
        &mut self,
        process: Option<&ProcessInfo>,
        jit: Option<&PerfMap>,
        frame: FrameAddress,
    ) -> UserFrame {
        let jitted = || {
            let name = jit?.lookup(frame.lookup_address())?;
            Some(Frame {
                lines: vec![unknown_line(name)],
                kind: FrameKind::Jit,
            })
        };
        let Some((entry, file_offset)) = locate(process, frame) else {
            // JIT code mapped after the process's last mapping snapshot.
            return UserFrame {
                mapping: None,
                frame: jitted().unwrap_or_else(|| unnamed(None, 0, Unnamed::NoMapping)),
            };
        };
        let mapping = Mapping {
            start: entry.start,
            limit: entry.end,
            file_offset: entry.offset,
            path: entry.path.clone(),
            build_id: entry.file.as_ref().and_then(|f| f.build_id_hex()),
        };
        let frame = match &entry.file {
            Some(file) => self.file_frame(&file.open_path(), &entry.path, file_offset),
            None => {
                // A pseudo file such as `[heap]` or `[anon:...]` has no file behind it.
                let why = if entry.path.starts_with('/') {
                    Unnamed::FileNotHeld
                } else {
                    Unnamed::Anonymous
                };
                let jitted = (why == Unnamed::Anonymous).then(jitted).flatten();
                jitted.unwrap_or_else(|| unnamed(Some(&entry.path), file_offset, why))
            }
        };
        UserFrame {
            mapping: Some(mapping),
            frame,
        }
    }

    /// Symbolizes the kernel frame `frame` at its lookup address; an address that was not
    /// requested is symbolized on its own.
    pub fn kernel(&mut self, frame: FrameAddress) -> KernelFrame {
        let lookup = frame.lookup_address();
        if !self.kernel_lines.contains_key(&lookup) {
            log::debug!("{KERNEL_MAPPING}+{lookup:#x} was not requested: symbolized alone");
            let lines = symbolize_kernel(&[lookup], &self.bpf);
            self.kernel_lines.extend([lookup].into_iter().zip(lines));
        }
        self.kernel_lines[&lookup].clone()
    }

    fn file_frame(&mut self, open: &str, name: &str, file_offset: u64) -> Frame {
        let known = self
            .file_lines
            .get(open)
            .is_some_and(|lines| lines.contains_key(&file_offset));
        if !known {
            log::debug!("{name}+{file_offset:#x} was not requested: symbolized alone");
            self.resolve_file(open, name, &[file_offset]);
        }
        self.file_lines[open][&file_offset].clone()
    }

    /// Symbolizes offsets of one file in one batch: the file opened by path `open`, named
    /// `name` in frames that cannot be symbolized.
    fn resolve_file(&mut self, open: &str, name: &str, offsets: &[u64]) {
        self.resolve_files(vec![Job {
            open: open.to_owned(),
            name: name.to_owned(),
            offsets: offsets.to_vec(),
        }]);
    }

    /// Symbolizes each job's offsets in worker processes, a batch a file; a file no worker
    /// could take is named here.
    fn resolve_files(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        let run_start = *self.run_start.get_or_insert(started);
        // The workers open the held files through this process's descriptors.
        let me = format!("/proc/{}/", std::process::id());
        let remote: Vec<Job> = jobs
            .iter()
            .map(|job| Job {
                open: job.open.replacen("/proc/self/", &me, 1),
                ..job.clone()
            })
            .collect();
        let debuginfod = self.finder.debuginfod();
        let setup = Setup {
            roots: self.roots.clone(),
            // Servers given up on are not asked again by new workers.
            debuginfod: debuginfod
                .filter(|d| d.activity().gave_up.is_none())
                .map(Debuginfod::settings),
            verbose: log::log_enabled!(log::Level::Debug),
        };
        let finder = &self.finder;
        let merge = |accounting: &worker::Accounting| {
            if let (Some(debuginfod), Some(activity)) = (debuginfod, &accounting.debuginfod) {
                debuginfod.merge_activity(activity);
            }
            finder.refuse(|refusals| *refusals += &accounting.refusals);
        };
        let outcomes = worker::name_files(
            &remote,
            &self.command,
            &setup,
            self.budgets,
            run_start,
            &merge,
        );
        for (job, outcome) in jobs.iter().zip(outcomes) {
            let named = match outcome {
                Outcome::Named(named) => named,
                Outcome::Stopped(why, text) => {
                    self.over_budget.insert(job.name.clone(), text);
                    worker::Named {
                        frames: vec![Err(why); job.offsets.len()],
                        debug_origin: None,
                        refused: Vec::new(),
                    }
                }
                Outcome::NoWorker => {
                    self.named_here += 1;
                    self.name_here(job)
                }
            };
            self.store(job, named);
        }
        log::debug!("symbolized {} files in {:?}", jobs.len(), started.elapsed());
    }

    /// Names a job's file in this process (when no worker can be started).
    fn name_here(&self, job: &Job) -> worker::Named {
        let names =
            file_names::name_offsets(Path::new(&job.open), &job.name, &job.offsets, &self.finder);
        worker::Named {
            frames: names
                .frames
                .into_iter()
                .map(|f| f.map_err(worker::unnamed_of))
                .collect(),
            debug_origin: names.debug_origin,
            refused: names.refused,
        }
    }

    /// Keeps the frames of a named file.
    fn store(&mut self, job: &Job, named: worker::Named) {
        if let Some(origin) = named.debug_origin {
            self.debug_files
                .entry(origin)
                .or_default()
                .insert(job.open.clone());
        }
        if !named.refused.is_empty() {
            let why: Vec<String> = named.refused.iter().map(|r| r.describe()).collect();
            self.over_budget.insert(job.name.clone(), why.join("; "));
        }
        let name = job.name.as_str();
        let frames = job
            .offsets
            .iter()
            .zip(named.frames)
            .map(|(&offset, named)| match named {
                Ok(lines) => Frame {
                    lines,
                    kind: FrameKind::Function,
                },
                Err(why) => unnamed(Some(name), offset, why),
            });
        self.file_lines
            .entry(job.open.clone())
            .or_default()
            .extend(job.offsets.iter().copied().zip(frames));
    }
}

/// The summary's line on the files not fully named for a budget: the first few by name,
/// each with why.
fn over_budget_note(files: &BTreeMap<String, String>) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<String> = files
        .iter()
        .take(SHOWN)
        .map(|(name, why)| format!("{} ({why})", escape_control(name)))
        .collect();
    let more = match files.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!(", and {n} more (-v lists them)"),
    };
    for (name, why) in files.iter().skip(SHOWN) {
        log::debug!("not fully named: {} ({why})", escape_control(name));
    }
    format!(
        "symbolization budgets: {} file{} not fully named, {}{more}",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        shown.join(", ")
    )
}

/// `text` with control characters shown as escapes (`\x1b`): a file name is the target's
/// and must not drive the terminal.
fn escape_control(text: &str) -> String {
    text.chars()
        .map(|c| match u32::from(c) {
            code if c.is_control() && code < 0x100 => format!("\\x{code:02x}"),
            _ if c.is_control() => c.escape_unicode().to_string(),
            _ => c.to_string(),
        })
        .collect()
}

/// The frames of kernel lookup addresses, symbolized in one batch from kallsyms and the BPF
/// programs of the run.
fn symbolize_kernel(addrs: &[u64], bpf: &BpfSymbols) -> Vec<KernelFrame> {
    let started = Instant::now();
    let kallsyms = Kallsyms::read(bpf)
        .map_err(|err| log::debug!("cannot read /proc/kallsyms: {err}"))
        .unwrap_or_default();
    let frames = addrs
        .iter()
        .map(|&addr| {
            let name = kallsyms.lookup(addr);
            let (kind, module) = match &name {
                None => {
                    return KernelFrame {
                        frame: Frame {
                            lines: vec![unknown_line(&format!("{KERNEL_MAPPING}+{addr:#x}"))],
                            kind: FrameKind::KernelUnnamed,
                        },
                        module: None,
                    };
                }
                Some(KernelName::Kernel(_)) => (FrameKind::Kernel, None),
                Some(KernelName::Bpf(_)) => (FrameKind::Bpf, None),
                Some(KernelName::Module { module, .. }) => {
                    (FrameKind::KernelModule, Some(module.clone()))
                }
            };
            KernelFrame {
                frame: Frame {
                    lines: vec![unknown_line(name.as_ref().map_or("", KernelName::function))],
                    kind,
                },
                module,
            }
        })
        .collect();
    log::debug!(
        "symbolized {} kernel addresses in {:?}",
        addrs.len(),
        started.elapsed()
    );
    frames
}

/// Hands freed memory back to the kernel.
///
/// glibc keeps freed memory for reuse, so several MiB of a parsed file's DWARF would stay
/// resident after its symbolizer is dropped and count towards the run's peak while the
/// profiles and their files are built; large allocations (a whole file read at once) are
/// mappings of their own and cannot reuse it.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only gives free memory back; no live allocation is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The mapping of a user frame and the file offset of its lookup address.
fn locate(process: Option<&ProcessInfo>, frame: FrameAddress) -> Option<(&MapEntry, u64)> {
    let lookup = frame.lookup_address();
    let entry = process?.find(lookup)?;
    Some((entry, lookup - entry.start + entry.offset))
}

/// The frame of an unnamed user address at `offset` in the file at `path`.
fn unnamed(path: Option<&str>, offset: u64, why: Unnamed) -> Frame {
    Frame {
        lines: vec![unknown_line(&module_offset(path, offset))],
        kind: FrameKind::Unnamed(why),
    }
}

fn unknown_line(name: &str) -> Line {
    Line {
        function: name.to_owned(),
        file: None,
        line: 0,
    }
}

#[cfg(test)]
mod tests;
