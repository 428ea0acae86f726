//! How big the stack-sample ring buffer is, and what to rerun with when it was full: the
//! kernel programs drop a sample they find no room for (and count it), so the ring must
//! hold whatever arrives while userspace is not draining it.

use std::time::Duration;

use profiler_common::counter;

use crate::collect::probes::Counters;
use crate::config::{Config, ring_buffer};

/// Smallest sample ring buffer of a run with the off-CPU profile.
pub const OFFCPU_RING_BYTES: u32 = 16 << 20;

/// Smallest sample ring buffer of a run with the heap profile.
pub const HEAP_RING_BYTES: u32 = 32 << 20;

/// The largest ring buffer sized without `--ring-buffer`: kernel memory held for the whole
/// run, which a host of many CPUs would otherwise take by the gigabyte unasked.
pub const MAX_SIZED_BYTES: u32 = 256 << 20;

/// Stack samples per CPU-second the traced profiles get room for on top of the CPU
/// samples: one I/O call in 256 and one futex wait in 64 of each site sends its stack (and
/// the first of each), so the rate follows the host's syscalls, not the sampling
/// frequency. A busy 2-CPU host (nginx and redis-server under load, spinners on every CPU:
/// tests/tests/whole_host_busy.rs) sent 860 to 1,700 per CPU-second at 1 I/O call in 64,
/// nearly all I/O, of half the largest record on average:
/// room for 500 of the largest beside the frequency's 99 holds one to two seconds of that.
pub const TRACED_STACKS_PER_CPU: u64 = 500;

/// Counters of the samples the kernel programs found no room for in the sample ring (the
/// process-event ring has its own size and counter).
const LOST_IN_RING: [u32; 8] = [
    counter::LOST_CPU_SAMPLES,
    counter::LOST_IO_STACK,
    counter::LOST_BLOCK_STACK,
    counter::LOST_GO_STACK,
    counter::LOST_GO_EVENTS,
    counter::LOST_HEAP_STACK,
    counter::LOST_OFFCPU_STACK,
    counter::LOST_OFFCPU_END,
];

/// Bytes of sample ring buffer for a run of `config` on `cpus` online CPUs: what
/// `--ring-buffer` says, else [`for_rate`] with room for the bursts of the heap and off-CPU
/// profiles.
pub fn for_run(config: &Config, cpus: usize) -> u32 {
    if let Some(bytes) = config.ring_buffer_bytes {
        return bytes;
    }
    let traced = config.profiles.io || config.profiles.block || config.profiles.goroutines;
    let mut bytes = for_rate(
        config.frequency,
        cpus,
        config.call_graph.record_bytes(),
        traced,
    );
    if config.profiles.heap {
        // A Go runtime sampling every allocation (MemProfileRate = 1) sends a record per
        // allocation: room for bursts of them.
        bytes = bytes.max(HEAP_RING_BYTES);
    }
    if config.profiles.offcpu {
        // The first wait of every site sends its stacks at once: room for that burst.
        bytes = bytes.max(OFFCPU_RING_BYTES);
    }
    bytes
}

/// Bytes of sample ring buffer that hold at least one second of samples at the expected
/// rate: `frequency` CPU samples on every one of `cpus`, plus [`TRACED_STACKS_PER_CPU`]
/// stack samples of I/O and blocking sites when those are `traced` (a CPU-only run does
/// not hold 32 MiB for them), each of at most `record_bytes`; a power of two
/// between 1 MiB and [`MAX_SIZED_BYTES`]. Userspace drains it every 20 ms, but not while
/// it reads a large file's symbols or the scheduler runs something else on a busy host:
/// a quarter second (the old size) was not enough there, and the CPU samples lost then
/// are the profile's own figures.
pub fn for_rate(frequency: u64, cpus: usize, record_bytes: u64, traced: bool) -> u32 {
    let stacks = if traced { TRACED_STACKS_PER_CPU } else { 0 };
    let per_cpu = frequency.max(1).saturating_add(stacks);
    let per_second = per_cpu
        .saturating_mul(cpus.max(1) as u64)
        .saturating_mul(record_bytes);
    let bytes = per_second.clamp(
        u64::from(ring_buffer::MIN_BYTES),
        u64::from(MAX_SIZED_BYTES),
    );
    u32::try_from(bytes.next_power_of_two()).unwrap_or(MAX_SIZED_BYTES)
}

/// Samples the kernel programs lost to a full sample ring, of every kind.
pub fn lost(counters: &Counters) -> u64 {
    LOST_IN_RING.iter().map(|&c| counters.get(c)).sum()
}

/// The `--ring-buffer` size to rerun with after a run of `window` lost `lost` samples to a
/// `ring_bytes` ring that `samples` samples of `bytes` in all went through; `None` when the
/// ring was already the largest. One second of the run's rate, as the default holds of the
/// expected one, the lost samples counted at the average size of those received; and at
/// least twice the ring: losses mean userspace was away longer than the ring lasted, so a
/// ring no larger than it would lose again.
pub fn rerun_bytes(
    ring_bytes: u32,
    samples: u64,
    bytes: u64,
    lost: u64,
    window: Duration,
) -> Option<u32> {
    if ring_bytes >= ring_buffer::MAX_BYTES {
        return None;
    }
    let average = bytes.checked_div(samples).unwrap_or(0);
    let sent = bytes.saturating_add(lost.saturating_mul(average));
    let per_second = sent as f64 / window.as_secs_f64().max(1e-3);
    let wanted = (per_second as u64).max(2 * u64::from(ring_bytes));
    // Capped before rounding: the largest ring is a power of two, and u64::MAX has none.
    let bytes = wanted
        .min(u64::from(ring_buffer::MAX_BYTES))
        .next_power_of_two();
    u32::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CallGraph;

    #[test]
    fn a_ring_holds_a_second_of_samples_as_a_bounded_power_of_two() {
        let dwarf = CallGraph::default().record_bytes();
        for (frequency, cpus, record) in [(99, 2, dwarf), (999, 8, 4_096), (1, 1, 1)] {
            let ring = for_rate(frequency, cpus, record, true);
            assert!(ring.is_power_of_two(), "{ring}");
            let per_second = (frequency + TRACED_STACKS_PER_CPU) * cpus as u64 * record;
            assert!(u64::from(ring) >= per_second.min(MAX_SIZED_BYTES.into()));
            assert!(u64::from(ring) < 2 * per_second.max(ring_buffer::MIN_BYTES.into()));
        }
        // A 2-CPU host at the default frequency and stack copy: 32 MiB, where a quarter
        // second at twice the CPU rate gave 2 MiB.
        assert_eq!(for_rate(99, 2, dwarf, true), 32 << 20);
        // CPU samples alone: a second of them.
        assert_eq!(for_rate(99, 2, dwarf, false), 4 << 20);
        assert_eq!(for_rate(1, 1, 100, true), ring_buffer::MIN_BYTES);
        assert_eq!(for_rate(100_000, 128, 66_000, true), MAX_SIZED_BYTES);
        assert_eq!(
            for_rate(u64::MAX, usize::MAX, u64::MAX, true),
            MAX_SIZED_BYTES
        );
    }

    #[test]
    fn the_rerun_size_covers_a_second_of_the_rate_and_doubles_the_ring() {
        let second = Duration::from_secs(1);
        // 16 MB/s with nothing lost: a second of it.
        assert_eq!(
            rerun_bytes(2 << 20, 1_000, 16_000_000, 0, second),
            Some(16 << 20)
        );
        // The lost samples count at the average size: 1,000 more of 16 KB.
        assert_eq!(
            rerun_bytes(2 << 20, 1_000, 16_000_000, 1_000, second),
            Some(32 << 20)
        );
        assert_eq!(
            rerun_bytes(2 << 20, 1_000, 160_000_000, 0, 10 * second),
            Some(16 << 20)
        );
        // A slow rate still gets twice the ring that was full.
        assert_eq!(rerun_bytes(32 << 20, 10, 1_000, 5, second), Some(64 << 20));
        assert_eq!(rerun_bytes(512 << 20, 10, 1_000, 5, second), Some(1 << 30));
        // A huge rate is capped at the largest ring; a ring that large has nothing to add.
        assert_eq!(rerun_bytes(2 << 20, 1, u64::MAX, 1, second), Some(1 << 30));
        assert_eq!(rerun_bytes(1 << 30, 10, 1_000, 5, second), None);
        assert_eq!(rerun_bytes(2 << 20, 0, 0, 5, Duration::ZERO), Some(4 << 20));
    }
}
