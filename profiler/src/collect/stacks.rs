//! The run's distinct stacks: interned frames and the user stack of a sample, as data.

use profiler_model::FrameAddress;

use crate::collect::python::PythonFrameName;
use crate::process::procmaps::SpaceId;
use indexmap::IndexSet;

/// A distinct stack, by its index in a [`StackTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackHandle(u32);

/// Every distinct stack of the run, interned: frames, leaf first, each stack stored once.
#[derive(Debug)]
pub struct StackTable {
    stacks: IndexSet<Box<[FrameAddress]>>,
    /// The Python frames the stacks' [`FrameAddress::Interpreted`] frames number.
    python: IndexSet<PythonFrameName>,
}

impl Default for StackTable {
    fn default() -> Self {
        let mut table = Self {
            stacks: IndexSet::new(),
            python: IndexSet::new(),
        };
        table.intern(Vec::new());
        table
    }
}

impl StackTable {
    /// The empty stack (a kernel thread's user stack, a user-mode sample's kernel stack).
    pub const EMPTY: StackHandle = StackHandle(0);

    /// The id of `frames`, adding it if it is new.
    pub fn intern(&mut self, frames: Vec<FrameAddress>) -> StackHandle {
        let (index, _) = self.stacks.insert_full(frames.into_boxed_slice());
        StackHandle(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The frames of a stack, leaf first.
    pub fn frames(&self, id: StackHandle) -> &[FrameAddress] {
        self.stacks.get_index(id.0 as usize).map_or(&[], |s| s)
    }

    /// Number of distinct stacks.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    /// The number of a Python frame, for [`FrameAddress::Interpreted`], adding it if new.
    pub fn intern_python(&mut self, name: PythonFrameName) -> u32 {
        let (index, _) = self.python.insert_full(name);
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// The Python frame numbered `id` by [`Self::intern_python`].
    pub fn python_frame(&self, id: u32) -> Option<&PythonFrameName> {
        self.python.get_index(id as usize)
    }
}

/// A sample's user stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStack {
    /// Unwound (or walked) into these frames, in this address space (`None` where the
    /// process's mappings could never be read, or it has no user context).
    Frames {
        /// The frames.
        stack: StackHandle,
        /// The address space they are addresses in.
        space: Option<SpaceId>,
    },
    /// The kernel could not read any of it.
    Unreadable,
}

impl UserStack {
    /// No user stack at all: a kernel thread's.
    pub const NONE: Self = Self::Frames {
        stack: StackTable::EMPTY,
        space: None,
    };

    /// A total order, so that profiles come out the same whatever a hash map's order.
    pub fn order(&self) -> (u8, StackHandle, Option<SpaceId>) {
        match *self {
            Self::Frames { stack, space } => (0, stack, space),
            Self::Unreadable => (1, StackTable::EMPTY, None),
        }
    }
}
