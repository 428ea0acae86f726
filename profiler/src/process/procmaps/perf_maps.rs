//! The perf maps of processes with JIT code (anonymous executable memory), read as the JIT
//! adds to them and within a byte budget for the run, and which code they do not name yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ProcessTable, SpaceId, is_anonymous};
use crate::process::jvm_attach;
use crate::process::perfmap::{self, PerfMap};

/// The most bytes of perf maps held over all processes: a map past what is left is read
/// only so far, the rest counted as dropped.
pub const MAX_PERF_MAP_BYTES: u64 = 256 << 20;

/// How soon a process's perf map may be read again, at least.
const PERF_MAP_EVERY: Duration = Duration::from_millis(250);

/// How soon it may be read again, in multiples of its last read's time: a map rewritten
/// all the time costs the run at most about a twentieth of its time, and cannot stretch
/// it.
const PERF_MAP_COST_FACTOR: u32 = 20;

/// What reading JIT perf maps held, cost and dropped over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerfMapStats {
    /// Bytes the latest maps hold.
    pub held_bytes: u64,
    /// Lines past the read cap (or what was left of [`MAX_PERF_MAP_BYTES`]) in the latest
    /// maps, not read.
    pub dropped: u64,
    /// Whether some map went on past what was scanned to count its dropped lines.
    pub dropped_more: bool,
    /// Reads of changed maps.
    pub reads: u64,
    /// Time spent reading them.
    pub time: Duration,
}

impl ProcessTable {
    /// Reads the perf map of a process with JIT code again, if it changed and was not
    /// read too recently (see [`PERF_MAP_COST_FACTOR`]).
    pub(super) fn read_perf_map(&mut self, pid: u32) {
        let now = Instant::now();
        if self.perf_map_due.get(&pid).is_some_and(|&due| now < due) {
            return;
        }
        let previous = self.perf_maps.get(&pid).map(Arc::as_ref);
        let previous_bytes = previous.map_or(0, PerfMap::held_bytes);
        // What the other processes' maps leave, this one's own included.
        let left = MAX_PERF_MAP_BYTES
            .saturating_sub(self.perf_map_stats.held_bytes)
            .saturating_add(previous_bytes);
        let cap = left.min(perfmap::MAX_BYTES);
        // A JIT that writes a jitdump file maps it (for perf to find): read that instead.
        let uid = perfmap::process_ids(pid).map(|(uid, _)| uid);
        let maps = self
            .processes
            .get(&pid)
            .map_or(&[][..], |info| &info.maps[..]);
        let read = match self.jitdumps.of(pid, uid, maps) {
            Some(held) => PerfMap::read_jitdump(pid, held, previous, cap),
            None => PerfMap::read(pid, previous, cap),
        };
        let spent = now.elapsed();
        self.perf_map_due.insert(
            pid,
            now + (spent * PERF_MAP_COST_FACTOR).max(PERF_MAP_EVERY),
        );
        let Some(map) = read.filter(|m| !m.is_empty()) else {
            return;
        };
        let stats = &mut self.perf_map_stats;
        stats.reads += 1;
        stats.time += spent;
        let (dropped, more) = map.dropped();
        let (old_dropped, _) = previous.map_or((0, false), PerfMap::dropped);
        stats.dropped = stats.dropped - old_dropped + dropped;
        stats.dropped_more |= more;
        stats.held_bytes = stats.held_bytes - previous_bytes + map.held_bytes();
        if dropped > 0 {
            log::debug!(
                "perf map of {pid}: {} functions from {} bytes, {dropped} lines past the cap \
                 not read",
                map.len(),
                map.read_bytes()
            );
        } else {
            log::debug!("perf map of {pid}: {} functions", map.len());
        }
        self.perf_maps.insert(pid, Arc::new(map));
    }

    /// What the perf maps held, cost and dropped.
    pub fn perf_map_stats(&self) -> PerfMapStats {
        self.perf_map_stats
    }

    /// Reads the perf maps of the live processes with JIT code again where they changed: a
    /// JIT adds to its map as it compiles, and a process may exit before the end of the run
    /// (its map with it). A process gone since keeps the map last read.
    pub fn refresh_perf_maps(&mut self) {
        let pids: Vec<u32> = self.jit_pids.iter().copied().collect();
        for pid in pids {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                // A jitdump's last records are written as the process exits.
                if self.jitdumps.held(pid).is_some() {
                    self.read_perf_map_now(pid);
                    self.jitdumps.release(pid);
                }
                self.jit_pids.remove(&pid);
                continue;
            }
            self.read_perf_map(pid);
        }
    }

    /// Reads a process's perf map now, however recently it was read: it was just written
    /// on request (see [`crate::process::jit_maps`]).
    pub fn read_perf_map_now(&mut self, pid: u32) {
        self.perf_map_due.remove(&pid);
        self.read_perf_map(pid);
    }

    /// Whether the process maps HotSpot's `libjvm.so`, as far as its mappings were read.
    pub fn maps_libjvm(&self, pid: u32) -> bool {
        self.processes
            .get(&pid)
            .is_some_and(|info| info.maps.iter().any(|m| jvm_attach::is_libjvm(&m.path)))
    }

    /// Whether `addr` lies in the process's anonymous executable memory (JIT code) and
    /// its perf map, if any, does not name it.
    pub fn unnamed_jit(&self, pid: u32, addr: u64) -> bool {
        let anonymous = self
            .processes
            .get(&pid)
            .and_then(|info| info.find(addr))
            .is_some_and(|m| m.file.is_none() && is_anonymous(&m.path));
        anonymous
            && self
                .perf_maps
                .get(&pid)
                .is_none_or(|map| map.lookup(addr).is_none())
    }

    /// The perf map of the process of a frozen address space, if it had JIT code.
    pub fn space_perf_map(&self, space: SpaceId) -> Option<&PerfMap> {
        let pid = self.space_pids.get(space.0 as usize)?;
        self.perf_maps.get(pid).map(Arc::as_ref)
    }
}
