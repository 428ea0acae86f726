//! A raw frame's address, typed once where it was unwound: the instruction a sample
//! stopped at, or a return address, which is looked up one byte before (the byte after
//! a call may already belong to the next line or function, as perf and pprof know).

/// One frame's address in a raw stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameAddress {
    /// The instruction the thread was at: the leaf frame.
    InstructionPointer(u64),
    /// Where a call returns to: every frame but the leaf.
    ReturnAddress(u64),
    /// A frame of interpreted code (a CPython function at a line), by the caller's
    /// numbering of them: it has no machine address.
    Interpreted(u32),
}

impl FrameAddress {
    /// A stack's frames from its addresses, leaf first: the leaf's is where the thread was,
    /// every other is a return address.
    pub fn stack(addresses: impl IntoIterator<Item = u64>) -> Vec<Self> {
        addresses
            .into_iter()
            .enumerate()
            .map(|(i, address)| {
                if i == 0 {
                    Self::InstructionPointer(address)
                } else {
                    Self::ReturnAddress(address)
                }
            })
            .collect()
    }

    /// The address as it was unwound.
    pub fn address(self) -> u64 {
        match self {
            Self::InstructionPointer(address) | Self::ReturnAddress(address) => address,
            Self::Interpreted(_) => 0,
        }
    }

    /// The address whose code, line and function the frame is: a return address's call
    /// instruction, one byte before it.
    pub fn lookup_address(self) -> u64 {
        match self {
            Self::InstructionPointer(address) => address,
            Self::ReturnAddress(address) => address.saturating_sub(1),
            Self::Interpreted(_) => 0,
        }
    }
}

/// The address space a raw frame's address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSpace {
    /// The kernel's.
    Kernel,
    /// A process's, by the caller's numbering of them.
    Process(u32),
    /// A process's whose mappings were never read.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_return_addresses_are_looked_up_before_themselves() {
        let frames = FrameAddress::stack([0x10, 0x20, 0x30]);
        assert_eq!(
            frames,
            vec![
                FrameAddress::InstructionPointer(0x10),
                FrameAddress::ReturnAddress(0x20),
                FrameAddress::ReturnAddress(0x30),
            ]
        );
        let lookups: Vec<u64> = frames.iter().map(|f| f.lookup_address()).collect();
        assert_eq!(lookups, vec![0x10, 0x1f, 0x2f]);
        assert_eq!(FrameAddress::ReturnAddress(0).lookup_address(), 0);
    }
}
