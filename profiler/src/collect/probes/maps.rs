//! Reads the loaded programs' maps at the end of the run (and the counters as it goes):
//! the profiles the kernel aggregated, by site, summed over CPUs where they are per CPU.

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, PerCpuArray};
use profiler_common::{
    BlockKey, BlockValue, BlockWake, BlockWakeKey, HeapLive, HeapLiveKey, HeapSiteKey,
    HeapSiteValue, InFlight, IoKey, IoValue, OffCpuKey, OffCpuSwitchIn, OffCpuThread, OffCpuValue,
    counter, map_name,
};

use super::Probes;

/// Totals of the kernel programs' per-CPU counters (see [`profiler_common::counter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters(pub [u64; counter::COUNT as usize]);

impl Default for Counters {
    fn default() -> Self {
        Self([0; counter::COUNT as usize])
    }
}

impl Counters {
    /// The counter at `index`.
    pub fn get(&self, index: u32) -> u64 {
        self.0[index as usize]
    }
}

impl Probes {
    /// Sums the per-CPU counters.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn counters(&self) -> Result<Counters> {
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map(map_name::COUNTERS)?)?;
        let mut totals = Counters::default();
        for (index, total) in totals.0.iter_mut().enumerate() {
            let values = array
                .get(&(index as u32), 0)
                .context("cannot read the counters")?;
            *total = values.iter().sum();
        }
        Ok(totals)
    }

    /// Reads what the traced I/O syscalls did, by call site.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_io_calls(&self) -> Result<Vec<(IoKey, IoValue)>> {
        self.read_hash(map_name::IO_CALLS)
    }

    /// Reads the futex waits by site and futex.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_block_waits(&self) -> Result<Vec<(BlockKey, BlockValue)>> {
        self.read_hash(map_name::BLOCK_WAITS)
    }

    /// Who woke futex waits, by site and waker.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_block_wakers(&self) -> Result<Vec<(BlockWakeKey, BlockWake)>> {
        self.read_hash(map_name::BLOCK_WAKERS)
    }

    /// Native allocations and frees by site, summed over CPUs.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_heap_sites(&self) -> Result<Vec<(HeapSiteKey, HeapSiteValue)>> {
        let map: aya::maps::PerCpuHashMap<_, HeapSiteKey, HeapSiteValue> =
            aya::maps::PerCpuHashMap::try_from(self.map(map_name::HEAP_SITES)?)?;
        let mut sites = Vec::new();
        for entry in map.iter() {
            let (key, values) =
                entry.with_context(|| format!("cannot read the map {}", map_name::HEAP_SITES))?;
            let mut total = HeapSiteValue::default();
            for value in values.iter() {
                total.allocs = total.allocs.wrapping_add(value.allocs);
                total.bytes = total.bytes.wrapping_add(value.bytes);
                total.frees = total.frees.wrapping_add(value.frees);
                total.freed_bytes = total.freed_bytes.wrapping_add(value.freed_bytes);
                if total.comm[0] == 0 {
                    total.comm = value.comm;
                }
            }
            sites.push((key, total));
        }
        Ok(sites)
    }

    /// The blocks allocated in the window and still live.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_heap_live(&self) -> Result<Vec<(HeapLiveKey, HeapLive)>> {
        self.read_hash(map_name::HEAP_LIVE)
    }

    /// Every entry of the hash map `name`.
    pub(crate) fn read_hash<K: aya::Pod, V: aya::Pod>(&self, name: &str) -> Result<Vec<(K, V)>> {
        let map: BpfHashMap<_, K, V> = BpfHashMap::try_from(self.map(name)?)?;
        map.iter()
            .map(|entry| entry.with_context(|| format!("cannot read the map {name}")))
            .collect()
    }

    /// The traced syscalls still in progress (their slots in the in-flight table).
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_in_flight(&self) -> Result<Vec<InFlight>> {
        let table: aya::maps::Array<_, InFlight> =
            aya::maps::Array::try_from(self.map(map_name::IN_FLIGHT)?)?;
        let mut busy = Vec::new();
        for entry in table.iter() {
            let entry = entry.context("cannot read the in-flight table")?;
            if entry.start_ns != 0 {
                busy.push(entry);
            }
        }
        Ok(busy)
    }

    /// The off-CPU waits by site.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_offcpu_sites(&self) -> Result<Vec<(OffCpuKey, OffCpuValue)>> {
        self.read_hash(map_name::OFFCPU_SITES)
    }

    /// The threads the off-CPU programs follow, by `task_struct` address, and those that
    /// exited, by `pid << 32 | tid`.
    ///
    /// # Errors
    /// When a map cannot be read.
    #[allow(clippy::type_complexity)]
    pub fn read_offcpu_threads(&self) -> Result<(Vec<(u64, OffCpuThread)>, Vec<OffCpuThread>)> {
        let live = self.read_hash(map_name::OFFCPU_THREADS)?;
        let done = self.read_hash::<u64, OffCpuThread>(map_name::OFFCPU_DONE)?;
        Ok((live, done.into_iter().map(|(_, thread)| thread).collect()))
    }

    /// Each CPU's latest switch-in: the thread on it when the programs stopped.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read_offcpu_switch_ins(&self) -> Result<Vec<OffCpuSwitchIn>> {
        let array: PerCpuArray<_, OffCpuSwitchIn> =
            PerCpuArray::try_from(self.map(map_name::OFFCPU_SWITCH_IN)?)?;
        let values = array
            .get(&0, 0)
            .context("cannot read the off-CPU switch-ins")?;
        Ok(values.iter().copied().collect())
    }
}
