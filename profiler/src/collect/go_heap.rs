//! The Go runtime's sampled allocations, by stack, and which of them are still live: the
//! runtime reports each sampled allocation (`mProf_Malloc`, with its stack) and the freeing
//! of each sampled object (`freeSpecial`, by address).

use std::collections::HashMap;

use profiler_common::COMM_LEN;

use profiler_model::ProgramLabels;

use crate::collect::stacks::UserStack;

/// Where a sampled Go allocation was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GoAllocStack {
    /// Process id.
    pub pid: u32,
    /// The thread's command name, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// The stack that allocated.
    pub user: UserStack,
    /// The labels the program had put on the work (Go's profiler labels).
    pub program: ProgramLabels,
}

/// The sampled allocations of a run's Go processes.
#[derive(Debug, Default)]
pub struct GoHeap {
    /// Sampled allocations by stack and size: how many.
    pub allocs: HashMap<(GoAllocStack, u64), u64>,
    /// Sampled objects not freed yet, by (pid, address): their stack and size.
    live: HashMap<(u32, u64), (GoAllocStack, u64)>,
    /// Frees of sampled objects allocated before the window (not counted).
    pub frees_before: u64,
    /// `runtime.MemProfileRate` of each process as its last event read it.
    pub rates: HashMap<u32, u64>,
}

impl GoHeap {
    /// Counts a sampled allocation.
    pub fn alloc(&mut self, stack: GoAllocStack, ptr: u64, size: u64, rate: u64) {
        if rate != 0 {
            self.rates.insert(stack.pid, rate);
        }
        self.live.insert((stack.pid, ptr), (stack.clone(), size));
        *self.allocs.entry((stack, size)).or_default() += 1;
    }

    /// Notes that the sampled object at `ptr` was freed.
    pub fn free(&mut self, pid: u32, ptr: u64) {
        if self.live.remove(&(pid, ptr)).is_none() {
            self.frees_before += 1;
        }
    }

    /// The sampled objects still live, with their stack and size.
    pub fn live(&self) -> impl Iterator<Item = &(GoAllocStack, u64)> {
        self.live.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frees_end_what_was_allocated_in_the_window() {
        let stack = GoAllocStack {
            pid: 7,
            comm: [0; COMM_LEN],
            user: UserStack::Unreadable,
            program: ProgramLabels::NONE,
        };
        let mut heap = GoHeap::default();
        heap.alloc(stack.clone(), 0x1000, 64, 1);
        heap.alloc(stack.clone(), 0x2000, 64, 0);
        heap.free(7, 0x1000);
        heap.free(7, 0x9000);
        assert_eq!(heap.allocs[&(stack, 64)], 2);
        assert_eq!(heap.live().count(), 1);
        assert_eq!(heap.frees_before, 1);
        assert_eq!(heap.rates[&7], 1);
    }
}
