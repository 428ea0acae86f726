//! Tells the kernel which processes run a language runtime whose state it reads at sample
//! time (Go's goroutine labels and frame chains, CPython's frames), as soon as they are
//! known: at attach or exec, and as the unwinder finds them in samples.

use std::path::Path;
use std::time::Instant;

use super::Session;
use crate::collect::{go_labels, golang, python_layout};

impl Session {
    /// Tells the kernel which processes run CPython and where their threads' states are,
    /// so that their CPU samples carry their Python frames; an update that fails leaves
    /// their stacks native.
    pub(super) fn mark_python_processes(&mut self) {
        let new = self.sampler.take_new_python();
        for (pid, process) in new.processes {
            if let Err(err) = self.probes.add_python_process(pid, process) {
                log::debug!("{err:#}");
            }
        }
        for (tid, tstate) in new.threads {
            if let Err(err) = self.probes.add_python_thread(tid, tstate) {
                log::debug!("{err:#}");
            }
        }
    }

    /// Tells the kernel at once that process `pid` runs Go, if its executable is Go's: a
    /// goroutine wait site keeps the labels of its first stack sample, which may come
    /// before the unwinder has seen the process.
    pub(super) fn note_if_go(&mut self, pid: u32) {
        if golang::is_go(Path::new(&format!("/proc/{pid}/exe"))) {
            let started = Instant::now();
            self.sampler.note_go(pid);
            self.mark_go_processes();
            log::debug!("Go process {pid} marked in {:?}", started.elapsed());
        }
    }

    /// Tells the kernel at once that process `pid` runs CPython, if it executed an
    /// interpreter that holds it (`python3.N` linked statically, as Debian's): a thread's
    /// first wait is its wait site's stack sample, and it may come before the first
    /// drain of the rings would find the interpreter from a sample. (An interpreter in
    /// `libpython3.N.so` is not mapped yet at exec: found from the samples.)
    pub(super) fn note_if_python(&mut self, pid: u32) {
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            return;
        };
        if python_layout::minor_of_file(&exe.to_string_lossy()).is_none() {
            return;
        }
        self.processes.snapshot_maps(pid);
        if let Some(process) = self.processes.get(pid) {
            self.sampler.check_python(pid, process);
            self.mark_python_processes();
        }
    }

    /// Tells the kernel which processes the unwinder found to run Go, so that their CPU
    /// samples carry frame-pointer chains; an update that fails leaves their stacks as the
    /// stack copy alone gives them.
    pub(super) fn mark_go_processes(&mut self) {
        for pid in self.sampler.take_new_go_processes() {
            let exe = std::path::PathBuf::from(format!("/proc/{pid}/exe"));
            let process = go_labels::process_of(&exe);
            if let Err(err) = self.probes.add_go_process(pid, process) {
                log::debug!("{err:#}");
            }
        }
    }
}
