//! Attaches the heap profile's uprobes to the allocators each target maps: one set of
//! probes per (process, file), scoped to that process, so no other process on the host
//! traps.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroU32;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use profiler_common::program_name::{
    self, GO_FREE, GO_MALLOC, HEAP_ALLOC, HEAP_ALLOC_RETURN, HEAP_FREE, HEAP_PRELOAD_STACK,
};

use crate::collect::allocators::{Allocators, GoRuntime, Role};
use crate::collect::preload::STACK_MARKER;
use crate::collect::target_elf::{Links, Refusal};
use crate::process::files::key_as_mapped;
use crate::process::procmaps::{FileKey, parse_maps};
use crate::sys::safe_open::open_regular_following;

/// A Go process whose runtime's own heap-profiling events are traced.
#[derive(Debug, Clone)]
pub struct GoTarget {
    /// The process.
    pub pid: u32,
    /// Its executable.
    pub path: String,
    /// What its runtime offers.
    pub runtime: GoRuntime,
    /// Where its executable is loaded, minus where it was linked (0 unless PIE; `None`
    /// for a PIE binary probed before it was mapped).
    pub load_bias: Option<u64>,
    /// `runtime.MemProfileRate` as last read from the process.
    pub rate: Option<i64>,
}

/// What the heap probes were attached to, and what could not be.
#[derive(Debug, Default)]
pub struct HeapProbes {
    /// Files probed in each process, and whether their C names were left to the
    /// interposer (to be probed after all if the process turns out not to load it).
    attached: HashMap<(u32, FileKey), bool>,
    /// Files whose allocator entry points are probed.
    pub files: BTreeSet<String>,
    /// Entry points probed (over every process and file).
    pub entry_points: usize,
    /// Of those, the ones probed on an instruction the kernel single-steps.
    pub stepped: usize,
    /// Go processes whose runtime events are traced.
    pub go: Vec<GoTarget>,
    /// Attachments that failed, and files refused for the collecting side's budget, one
    /// line each.
    pub failures: Vec<String>,
    /// Files refused for the budget, named once however many processes map them.
    refused: HashSet<FileKey>,
    /// What a trap cost, measured at the start.
    pub trap_cost: Option<crate::collect::trap_cost::TrapCost>,
    /// Threads of targets (not processes), which get no probes of their own.
    threads: HashSet<u32>,
    /// The `LD_PRELOAD` interposer's library, when a launched command loads it: a
    /// process that maps it needs no probes on the C names it takes.
    interposer: Option<PathBuf>,
}

impl HeapProbes {
    /// Loads the heap programs into the kernel (once, before any attachment).
    ///
    /// # Errors
    /// When the kernel refuses a program.
    pub fn load(ebpf: &mut Ebpf) -> Result<Self> {
        for name in program_name::HEAP {
            uprobe(ebpf, name)?
                .load()
                .with_context(|| format!("cannot load the heap program {name}"))?;
        }
        let trap_cost = crate::collect::trap_cost::measure(ebpf);
        Ok(Self {
            trap_cost,
            ..Self::default()
        })
    }

    /// Probes every allocator `pid` maps now that is not probed yet.
    pub fn attach_process(&mut self, ebpf: &mut Ebpf, pid: u32) {
        // The target filter holds threads too; a uprobe scoped to a process covers its
        // threads (they share its memory), and a second one would count each call twice.
        if self.threads.contains(&pid) {
            return;
        }
        if !is_process(pid) {
            self.threads.insert(pid);
            return;
        }
        // A launched command between its fork and its exec is still the profiler: its
        // files are probed for what it will be (`attach_future_files`), not for this.
        let exe = |pid: &str| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let program = exe(&pid.to_string());
        if program.is_some() && program == exe("self") {
            return;
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return; // Gone: nothing to probe.
        };
        let maps = parse_maps(&text);
        // By path: the device a mapping shows is not always the one stat gives (overlayfs).
        let interposed = self
            .interposer
            .as_ref()
            .is_some_and(|library| maps.iter().any(|m| Path::new(&m.path) == library));
        let mut seen = HashSet::new();
        for map in maps {
            if map.key.inode == 0 || !map.path.starts_with('/') || !seen.insert(map.key) {
                continue;
            }
            let path = PathBuf::from(format!("/proc/{pid}/root{}", map.path));
            let mapped_delta = map.start.wrapping_sub(map.offset);
            let how = How {
                mapped_delta: Some(mapped_delta),
                // The path is the target's: its last component is not followed.
                links: Links::Refused,
                // A program's own malloc comes before any preloaded one.
                interposed: interposed && program.as_deref() != Some(Path::new(&map.path)),
            };
            self.attach_file(ebpf, pid, map.key, &path, &map.path, how);
        }
    }

    /// Probes the files `pid` will map once it executes (a launched command that waits
    /// for the probes before it runs); `interposed` when it will load the interposer,
    /// which takes the C names' calls except those of `program` itself.
    pub fn attach_future_files(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        files: &[PathBuf],
        interposed: bool,
        program: Option<&Path>,
    ) {
        for path in files {
            // Keyed as the process's mappings will show the file, so that `attach_process`
            // knows it again once the command runs: by `stat`'s device, a file on
            // overlayfs would be probed a second time then, and every call counted twice.
            let Ok(file) = open_regular_following(path) else {
                continue;
            };
            let Some(key) = key_as_mapped(&file) else {
                continue;
            };
            let shown = path.to_string_lossy().into_owned();
            let how = How {
                mapped_delta: None,
                // The loader lists libraries by their links (`libstdc++.so.6`).
                links: Links::Followed,
                interposed: interposed && program != Some(path.as_path()),
            };
            self.attach_file(ebpf, pid, key, path, &shown, how);
        }
    }

    fn attach_file(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        key: FileKey,
        path: &Path,
        shown: &str,
        how: How,
    ) {
        let How {
            mapped_delta,
            links,
            interposed,
        } = how;
        // Only the C names left to an interposer the process did not load, if probed before.
        let only_c_names = match self.attached.get(&(pid, key)) {
            None => false,
            Some(true) if !interposed => true,
            Some(_) => return,
        };
        self.attached.insert((pid, key), interposed);
        let found = match Allocators::of_file(path, links) {
            Ok(found) => found,
            Err(Refusal::OverBudget(why)) => {
                if self.refused.insert(key) {
                    self.failures
                        .push(format!("{shown}: refused, over budget: {why}"));
                }
                return;
            }
            // Not an ELF file (a locale archive, a font), or not a regular file (a mapped
            // device): nothing to probe.
            Err(_) => return,
        };
        let Some(scope) = NonZeroU32::new(pid).map(UProbeScope::OneProcess) else {
            return;
        };
        let mut probed = 0;
        for entry in &found.entry_points {
            if (interposed && entry.interposed) || (only_c_names && !entry.interposed) {
                continue;
            }
            let attached = match entry.role {
                Role::Alloc(func) => {
                    attach(ebpf, HEAP_ALLOC_RETURN, entry.file_offset, 0, path, scope).and_then(
                        |()| attach(ebpf, HEAP_ALLOC, entry.file_offset, func, path, scope),
                    )
                }
                Role::Free => attach(ebpf, HEAP_FREE, entry.file_offset, 0, path, scope),
            };
            match attached {
                Ok(()) => {
                    probed += 1;
                    self.stepped += usize::from(!entry.emulated);
                }
                Err(err) => self
                    .failures
                    .push(format!("{} in {shown} (pid {pid}): {err:#}", entry.name)),
            }
        }
        if let Some(go) = found.go.clone().filter(|_| !only_c_names) {
            // Where the process holds MemProfileRate: the link-time address unless the
            // binary is position independent and not mapped yet.
            let load_bias = match mapped_delta {
                Some(delta) => Some(delta.wrapping_sub(go.code_delta)),
                None if !go.pie => Some(0),
                None => None,
            };
            let rate_address = go
                .rate_address
                .zip(load_bias)
                .map_or(0, |(at, bias)| at.wrapping_add(bias) & !(1 << 63));
            let cookie = rate_address | (u64::from(go.malloc_takes_m) << 63);
            let mut result = attach(ebpf, GO_MALLOC, go.malloc_offset, cookie, path, scope);
            if let (Ok(()), Some(offset)) = (&result, go.free_offset) {
                result = attach(ebpf, GO_FREE, offset, go.free_cookie, path, scope);
            }
            match result {
                Ok(()) => {
                    self.files.insert(shown.to_owned());
                    let mut target = GoTarget {
                        pid,
                        path: shown.to_owned(),
                        runtime: go,
                        load_bias,
                        rate: None,
                    };
                    // A command about to start still holds the profiler's memory.
                    if mapped_delta.is_some() {
                        target.rate = read_rate(&target);
                    }
                    self.go.push(target);
                }
                Err(err) => self
                    .failures
                    .push(format!("the Go runtime of {shown} (pid {pid}): {err:#}")),
            }
        }
        if probed > 0 {
            self.entry_points += probed;
            self.files.insert(shown.to_owned());
        }
    }

    /// Puts the stack probe on the interposer's marker function (in every process that
    /// loads the library; the program keeps only targets' calls), and from then on spares
    /// the processes that map it the probes on the C names.
    ///
    /// # Errors
    /// When the library has no marker or the probe cannot be attached.
    pub fn attach_interposer(&mut self, ebpf: &mut Ebpf, library: &Path) -> Result<()> {
        let offset = crate::collect::allocators::function_offset(library, STACK_MARKER)
            .ok_or_else(|| anyhow!("the heap interposer has no {STACK_MARKER}"))?;
        attach(
            ebpf,
            HEAP_PRELOAD_STACK,
            offset,
            0,
            library,
            UProbeScope::AllProcesses,
        )
        .context("cannot probe the heap interposer's stack marker")?;
        self.interposer = Some(library.to_owned());
        Ok(())
    }

    /// Where each Go target's `runtime.systemstack` is loaded: (pid, start, end).
    pub fn go_stack_roots(&self) -> Vec<(u32, u64, u64)> {
        self.go
            .iter()
            .filter_map(|t| {
                let (start, end) = t.runtime.systemstack?;
                let bias = t.load_bias?;
                Some((t.pid, start.wrapping_add(bias), end.wrapping_add(bias)))
            })
            .collect()
    }

    /// Reads `runtime.MemProfileRate` again from every Go target still alive: a program
    /// may set it (to 1, say) after it starts.
    pub fn refresh_go_rates(&mut self) {
        for target in &mut self.go {
            if let Some(rate) = read_rate(target) {
                target.rate = Some(rate);
            }
        }
    }
}

/// How a file is to be probed in a process.
#[derive(Debug, Clone, Copy)]
struct How {
    /// Its mapping's start minus its file offset; `None` before the process executes.
    mapped_delta: Option<u64>,
    /// Whether the path's last component may be a link.
    links: Links,
    /// Whether the process loads the interposer and the file is a library (a program's
    /// own malloc is found before any preloaded one), so that the interposer takes the
    /// C names' calls.
    interposed: bool,
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?;
    Ok(program.try_into()?)
}

fn attach(
    ebpf: &mut Ebpf,
    program: &str,
    file_offset: u64,
    cookie: u64,
    path: &Path,
    scope: UProbeScope,
) -> Result<()> {
    let point = UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(file_offset),
        cookie: Some(cookie),
    };
    uprobe(ebpf, program)?
        .attach(point, path, scope)
        .map_err(|err| crate::sys::fdlimit::note_if_exhausted(err.into()))?;
    Ok(())
}

/// Whether `pid` is a process (thread-group leader), not another thread of one.
fn is_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|t| t.trim().parse::<u32>().ok())
            == Some(pid)
    })
}

/// `runtime.MemProfileRate` of a live Go process, read from its memory.
fn read_rate(target: &GoTarget) -> Option<i64> {
    let address = target.runtime.rate_address?.wrapping_add(target.load_bias?);
    let mem = std::fs::File::open(format!("/proc/{}/mem", target.pid)).ok()?;
    let mut word = [0u8; 8];
    mem.read_exact_at(&mut word, address).ok()?;
    Some(i64::from_le_bytes(word))
}
