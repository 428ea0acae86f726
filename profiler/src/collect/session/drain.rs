//! Takes what the kernel programs put in the run's two ring buffers, as it arrives and
//! once more after the window: process events (new code, forks, new descriptors, execs),
//! which update the process table and attach the collectors, and stack samples, unwound
//! and handed to the collectors of their kind.

use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use profiler_common::{ProcEvent, proc_event, sample_kind};

use super::{Rings, Session};
use crate::collect::collector::Seen;

impl Session {
    /// Stops the kernel programs and takes every event and sample still in the ring
    /// buffers, then reads the processes' mappings a last time.
    pub(super) fn drain_after_window(
        &mut self,
        rings: &mut Rings,
        started: Instant,
        duration: Duration,
    ) {
        self.probes.stop();
        self.drain_events(rings.events.get_mut(), None);
        self.drain_samples(rings.samples.get_mut(), None);
        log::debug!(
            "last samples drained {:?} after the window",
            started.elapsed() - duration
        );
        if let Some(jit_maps) = &mut self.jit_maps {
            jit_maps.settle(&mut self.processes);
        }
        self.processes.refresh();
        // Maps changed since the last tick, and jitdumps their processes finished as they
        // exited.
        self.processes.refresh_perf_maps();
        self.probes.flush_logs();
        log::debug!(
            "mappings read again {:?} after the window",
            started.elapsed() - duration
        );
    }

    /// Reads what is needed of every process that recorded a new stack, while it still
    /// lives: its mappings when they do not cover the new stack (new code was mapped: the
    /// C library after the dynamic loader, a `dlopen`), and the kind of a new call site's
    /// descriptor; and tells the collectors of new code and programs. Drains for at most
    /// `budget`; returns whether the ring buffer was emptied.
    pub(super) fn drain_events(
        &mut self,
        ring: &mut RingBuf<MapData>,
        budget: Option<Duration>,
    ) -> bool {
        let started = Instant::now();
        while let Some(item) = ring.next() {
            self.handle_event(&item);
            drop(item);
            if budget.is_some_and(|budget| started.elapsed() >= budget) {
                return false;
            }
        }
        true
    }

    /// Handles one process event.
    fn handle_event(&mut self, item: &[u8]) {
        if item.len() < size_of::<ProcEvent>() {
            return;
        }
        // SAFETY: the kernel wrote a ProcEvent; read_unaligned copes with any alignment.
        let event: ProcEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        let seen = match event.kind {
            proc_event::NEW_KEY => {
                self.processes.note_new_key(event.pid, event.ip, event.fd);
                self.names.note(event.pid);
                Seen::NewCode(event.pid)
            }
            proc_event::FORK => {
                self.processes.note_fork(event.parent, event.pid);
                return;
            }
            proc_event::NEW_FD => {
                self.processes.note_new_fd(event.pid, event.fd);
                return;
            }
            proc_event::EXEC => {
                self.processes.note_exec(event.pid);
                self.names.note_exec(event.pid);
                self.note_if_go(event.pid);
                self.sampler.forget_python(event.pid);
                self.note_if_python(event.pid);
                Seen::Exec(event.pid)
            }
            _ => return,
        };
        for collector in &mut self.collectors {
            collector.attach(&mut self.probes, seen);
        }
    }

    /// Unwinds the stack samples waiting in the ring buffer and hands each to the
    /// collectors of its kind, for at most `budget` during the window (samples arriving as
    /// fast as they are unwound, from a process that keeps executing itself, must not keep
    /// the loop from the end of the window); returns whether the ring buffer was emptied.
    pub(super) fn drain_samples(
        &mut self,
        ring: &mut RingBuf<MapData>,
        budget: Option<Duration>,
    ) -> bool {
        let started = Instant::now();
        while let Some(item) = ring.next() {
            let sample = self.sampler.add(&item, &mut self.processes);
            drop(item);
            if let Some(sample) = sample {
                self.names.note(sample.header.pid);
                if let Some(jit_maps) = &mut self.jit_maps
                    && sample.header.kind == sample_kind::CPU
                {
                    jit_maps.note_sample(&self.processes, sample.header.pid, sample.header.ip);
                }
                let mut taken = false;
                for collector in &mut self.collectors {
                    if collector.takes(sample.header.kind) {
                        collector.take(&sample);
                        taken = true;
                    }
                }
                if !taken {
                    self.sampler.refuse();
                }
            }
            if budget.is_some_and(|budget| started.elapsed() >= budget) {
                self.mark_go_processes();
                self.mark_python_processes();
                return false;
            }
        }
        self.mark_go_processes();
        self.mark_python_processes();
        true
    }
}
