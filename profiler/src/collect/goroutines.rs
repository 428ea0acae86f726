//! Goroutine waits: finds the Go binaries the targets run (at the start, a command's before
//! it is launched, and as targets execute new programs), attaches the runtime uprobes to
//! each once, and reads back what they recorded.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::{TracePoint, UProbe};
use profiler_common::{
    GoWaitKey, GoWaitValue, Parked, ParkedKey, go_probe_cookie, map_name, program_name,
};

use crate::collect::golang::{self, GoBinary, NotTraceable};
use crate::collect::probes::Probes;

/// `_Gwaiting` in the runtime's goroutine states, and the `_Gscan` bit that may be set
/// with it while the garbage collector scans the stack.
const G_WAITING: u32 = 4;
const G_SCAN: u32 = 0x1000;

/// A file, by device and inode: one binary run by many processes is inspected and
/// probed once.
type FileId = (u64, u64);

/// Tracks the Go binaries whose runtime is probed, and which binary each process runs.
#[derive(Default)]
pub struct GoTracer {
    loaded: bool,
    binaries: HashMap<FileId, std::result::Result<Arc<GoBinary>, NotTraceable>>,
    /// The binary each process was last seen running (`None`: not a traceable Go binary).
    processes: HashMap<u32, (FileId, Option<Arc<GoBinary>>)>,
    /// One line per binary that is Go but cannot be traced, or could not be probed.
    notes: Vec<String>,
    /// Whether each goroutine recorded as parked was still parked when the window closed,
    /// checked then: by the time the maps are read its process may have exited.
    parked_at_close: HashMap<ParkedKey, bool>,
}

/// What the goroutine tracing of a run recorded.
#[derive(Debug, Default)]
pub struct GoroutineWaits {
    /// Finished waits by site.
    pub waits: Vec<(GoWaitKey, GoWaitValue)>,
    /// Goroutines still parked when the window closed (checked in the process's memory).
    pub parked: Vec<Parked>,
    /// Goroutines recorded as parked whose wait had ended unseen (readied by the network
    /// poller, or their process exited): their time is unknown and not counted.
    pub ended_unseen: u64,
    /// The binary of every process with goroutine waits.
    pub binaries: HashMap<u32, Arc<GoBinary>>,
    /// Go binaries that could not be traced, and why, one line each.
    pub notes: Vec<String>,
}

impl GoTracer {
    /// Loads the goroutine programs and the exec tracepoint that announces new programs.
    ///
    /// # Errors
    /// When the kernel refuses them.
    pub fn load(&mut self, probes: &mut Probes) -> Result<()> {
        let ebpf = probes.ebpf_mut();
        for name in [program_name::GO_PARK, program_name::GO_READY] {
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .with_context(|| format!("the eBPF object has no program {name}"))?
                .try_into()?;
            program
                .load()
                .with_context(|| format!("cannot load {name}"))?;
        }
        let exec: &mut TracePoint = ebpf
            .program_mut(program_name::SCHED_PROCESS_EXEC)
            .with_context(|| {
                format!(
                    "the eBPF object has no program {}",
                    program_name::SCHED_PROCESS_EXEC
                )
            })?
            .try_into()?;
        exec.load().context("cannot load sched_process_exec")?;
        exec.attach("sched", "sched_process_exec")
            .context("cannot attach to tracepoint sched/sched_process_exec")?;
        self.loaded = true;
        Ok(())
    }

    /// Looks at every process on the host (whole-host mode).
    pub fn scan_host(&mut self, probes: &mut Probes) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let me = std::process::id();
        for pid in entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me)
        {
            self.consider(probes, pid);
        }
    }

    /// Probes the program a command will run before it is launched, so that its
    /// goroutines are traced from its first instruction: `program` is found on `PATH`
    /// as the launch will find it.
    pub fn prepare_command(&mut self, probes: &mut Probes, program: &std::ffi::OsStr) {
        if let Some(path) = find_program(program) {
            self.binary(probes, &path);
        }
    }

    /// Probes the binary of `pid` if it is Go (once per binary), and remembers which it
    /// runs; a process that executed a new program is looked at afresh.
    pub fn consider(&mut self, probes: &mut Probes, pid: u32) {
        if !self.loaded {
            return;
        }
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let Some((id, binary)) = self.binary(probes, &exe) else {
            return; // Gone, or a kernel thread.
        };
        self.processes.insert(pid, (id, binary));
    }

    /// Looks at `pid` if it was never seen: a process that recorded a new stack.
    pub fn note_pid(&mut self, probes: &mut Probes, pid: u32) {
        if !self.processes.contains_key(&pid) {
            self.consider(probes, pid);
        }
    }

    /// The binary at `path`: inspected and probed the first time it is seen.
    fn binary(
        &mut self,
        probes: &mut Probes,
        path: &Path,
    ) -> Option<(FileId, Option<Arc<GoBinary>>)> {
        // Held open, the file stays readable and probeable through its descriptor even if
        // the process exits meanwhile (a short-lived process's /proc/PID/exe vanishes).
        // `/proc/PID/exe` is a link by nature: followed, to a regular file only, without
        // blocking.
        let file = crate::sys::safe_open::open_regular_following(path).ok()?;
        let meta = file.metadata().ok()?;
        let id = (meta.dev(), meta.ino());
        if let Some(known) = self.binaries.get(&id) {
            return Some((id, known.as_ref().ok().cloned()));
        }
        let shown = std::fs::read_link(path).unwrap_or_else(|_| path.to_owned());
        let held = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let inspected = if golang::is_go(&held) {
            golang::inspect(&held).map(Arc::new)
        } else {
            Err(NotTraceable::NotGo)
        };
        let attached = match inspected {
            Ok(binary) => match attach(probes, &held, &binary) {
                Ok(()) => {
                    log::debug!(
                        "goroutine waits: probing {} ({}; g.goid at {}, g.atomicstatus at {}, \
                         from {:?}; {} wait reasons)",
                        shown.display(),
                        binary.version,
                        binary.goid_offset,
                        binary.status_offset,
                        binary.layout_from,
                        binary.reasons.len()
                    );
                    Ok(binary)
                }
                Err(err) => {
                    self.notes.push(format!(
                        "goroutine waits of {} not traced: cannot attach the runtime probes: \
                         {err:#}",
                        shown.display()
                    ));
                    Err(NotTraceable::Unreadable(format!("{err:#}")))
                }
            },
            Err(NotTraceable::NotGo) => Err(NotTraceable::NotGo),
            Err(why) => {
                self.notes.push(format!(
                    "goroutine waits of {} not traced: {why}",
                    shown.display()
                ));
                Err(why)
            }
        };
        let binary = attached.as_ref().ok().cloned();
        self.binaries.insert(id, attached);
        Some((id, binary))
    }

    /// Checks, as the window closes, which goroutines recorded as parked still are, while
    /// their processes live (a launched command may exit as soon as the window ends).
    pub fn close(&mut self, probes: &mut Probes) {
        if !self.loaded {
            return;
        }
        let Ok(table) = probes.read_hash::<ParkedKey, Parked>(map_name::PARKED) else {
            return;
        };
        for (key, entry) in table {
            self.note_pid(probes, key.pid);
            let binary = self.processes.get(&key.pid).and_then(|(_, b)| b.as_ref());
            let still = binary.is_some_and(|binary| still_parked(key, &entry, binary));
            self.parked_at_close.insert(key, still);
        }
    }

    /// Reads what the goroutine probes recorded, once they have stopped; parked goroutines
    /// were checked in their process's memory as the window closed (else now), so that one whose wait ended unseen is not
    /// counted as still waiting.
    ///
    /// # Errors
    /// When a map cannot be read.
    pub fn finish(mut self, probes: &mut Probes) -> Result<GoroutineWaits> {
        if !self.loaded {
            return Ok(GoroutineWaits::default());
        }
        let waits: Vec<(GoWaitKey, GoWaitValue)> = probes.read_hash(map_name::GO_WAITS)?;
        let table: Vec<(ParkedKey, Parked)> = probes.read_hash(map_name::PARKED)?;
        for pid in waits
            .iter()
            .map(|(k, _)| k.pid)
            .chain(table.iter().map(|(k, _)| k.pid))
        {
            self.note_pid(probes, pid);
        }
        let binaries: HashMap<u32, Arc<GoBinary>> = self
            .processes
            .into_iter()
            .filter_map(|(pid, (_, binary))| Some((pid, binary?)))
            .filter(|(pid, _)| {
                waits.iter().any(|(k, _)| k.pid == *pid) || table.iter().any(|(k, _)| k.pid == *pid)
            })
            .collect();
        let mut parked = Vec::new();
        let mut ended_unseen = 0;
        for (key, entry) in table {
            let still = match self.parked_at_close.get(&key) {
                Some(&at_close) => at_close,
                None => binaries
                    .get(&key.pid)
                    .is_some_and(|binary| still_parked(key, &entry, binary)),
            };
            if still {
                parked.push(entry);
            } else {
                ended_unseen += 1;
            }
        }
        Ok(GoroutineWaits {
            waits,
            parked,
            ended_unseen,
            binaries,
            notes: self.notes,
        })
    }
}

/// Most processes looked at for [`untraced_note`]: a whole host's futex waits come from
/// many.
const MAX_UNTRACED_LOOKS: usize = 64;

/// One line for a run without goroutine tracing whose futex waits came from Go programs
/// (their runtime threads wait in futexes; their goroutines' waits are not futex waits):
/// which programs, and what tracing them would cost. `None` when none of the first
/// [`MAX_UNTRACED_LOOKS`] processes of `pids` is Go.
pub fn untraced_note(pids: impl Iterator<Item = u32>) -> Option<String> {
    let mut distinct: Vec<u32> = pids.collect();
    distinct.sort_unstable();
    distinct.dedup();
    let go: Vec<String> = distinct
        .into_iter()
        .take(MAX_UNTRACED_LOOKS)
        .filter(|pid| golang::is_go(Path::new(&format!("/proc/{pid}/exe"))))
        .map(|pid| format!("pid {pid}"))
        .collect();
    if go.is_empty() {
        return None;
    }
    Some(format!(
        "goroutine waits not traced: {} {} Go; --profiles with goroutines traces them, \
         with a uprobe trap on every goroutine park and wake (on a busy Go net/http \
         service here that cost 1.5-2.5x its CPU per request: BENCHMARKS.md row 15)",
        go.join(", "),
        if go.len() == 1 { "is" } else { "are" }
    ))
}

/// The file `execvp` would run for `program`: itself if it names a path, else the first
/// executable of that name on `PATH`.
fn find_program(program: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether the goroutine `key.g` is still the one that parked (same id) and still waiting.
fn still_parked(key: ParkedKey, entry: &Parked, binary: &GoBinary) -> bool {
    let Ok(mem) = std::fs::File::open(format!("/proc/{}/mem", key.pid)) else {
        return false;
    };
    let mut goid = [0u8; 8];
    let mut status = [0u8; 4];
    let read = mem
        .read_exact_at(&mut goid, key.g + u64::from(binary.goid_offset))
        .and_then(|()| mem.read_exact_at(&mut status, key.g + u64::from(binary.status_offset)));
    if read.is_err() {
        return false;
    }
    u64::from_le_bytes(goid) == entry.goid && u32::from_le_bytes(status) & !G_SCAN == G_WAITING
}

/// Attaches the park and ready probes to the binary at `exe`, for every process that runs
/// it (the kernel programs keep only the targets), with the offset of `goid` in its `g` as
/// the cookie.
fn attach(probes: &mut Probes, exe: &Path, binary: &GoBinary) -> Result<()> {
    let ebpf = probes.ebpf_mut();
    let mut attached = Vec::new();
    for (name, at) in [
        (program_name::GO_PARK, binary.gopark),
        (program_name::GO_READY, binary.ready),
    ] {
        let offset = at.offset;
        let cookie = u64::from(binary.goid_offset)
            | if at.at_stack_check {
                go_probe_cookie::AT_STACK_CHECK
            } else {
                0
            };
        let program: &mut UProbe = ebpf
            .program_mut(name)
            .with_context(|| format!("the eBPF object has no program {name}"))?
            .try_into()?;
        let link = program
            .attach(
                UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: Some(cookie),
                },
                exe,
                UProbeScope::AllProcesses,
            )
            .with_context(|| format!("cannot attach {name} at file offset {offset:#x}"));
        match link {
            Ok(link) => attached.push((name, link)),
            Err(err) => {
                // Parks without readies would only fill the table of parked goroutines.
                for (name, link) in attached {
                    if let Some(Ok(program)) = ebpf.program_mut(name).map(<&mut UProbe>::try_from) {
                        let _ = program.detach(link);
                    }
                }
                return Err(err);
            }
        }
    }
    Ok(())
}
