//! Turns the run's raw stacks into interned profile stacks: kernel frames, then user
//! frames, with a marker where a user stack could not be read or was lost.
//!
//! Before the first stack is interned, [`StackResolver::prepare`] (called once, by
//! [`crate::convert::profiles`]) goes over every raw stack of the run and symbolizes all
//! their addresses in one batch per file (see [`crate::symbolize`]), so that each file is
//! read once and its parsed data freed before the next. Interning then only reads the
//! results.

use std::time::Instant;

use profiler_model::{
    AddressSpace, FrameKind, Line, Location, LostStack, Mapping, ProfileBuilder, RawFrame, StackId,
};

use crate::collect::raw_profile::RawStack;
use crate::collect::stacks::{StackHandle, StackTable, UserStack};
use crate::process::procmaps::ProcessTable;

use crate::symbolize::{KERNEL_MAPPING, Symbolizer};

/// Resolves stacks of one run into locations of profiles being built.
pub struct StackResolver<'run> {
    stacks: &'run StackTable,
    processes: &'run ProcessTable,
    symbolizer: Symbolizer,
}

impl<'run> StackResolver<'run> {
    /// A resolver over the stacks and process snapshots of one run, with the default
    /// sources of names.
    #[cfg(test)]
    pub fn new(stacks: &'run StackTable, processes: &'run ProcessTable) -> Self {
        Self::with_symbolizer(stacks, processes, Symbolizer::new())
    }

    /// A resolver naming frames with `symbolizer` (and the sources it was given).
    pub fn with_symbolizer(
        stacks: &'run StackTable,
        processes: &'run ProcessTable,
        symbolizer: Symbolizer,
    ) -> Self {
        Self {
            stacks,
            processes,
            symbolizer,
        }
    }

    /// What the summary says of where names came from (see [`Symbolizer::notes`]).
    pub fn notes(&self) -> Vec<String> {
        self.symbolizer.notes()
    }

    /// Symbolizes, in one batch per file, every address of `stacks`: all the stacks the
    /// run's profiles will intern.
    pub fn prepare(&mut self, stacks: impl Iterator<Item = RawStack>) {
        let started = Instant::now();
        let mut count = 0;
        for stack in stacks {
            if let RawStack::Sampled { user, kernel } = stack {
                count += 1;
                self.request(user, kernel);
            }
        }
        self.symbolizer.resolve_requests();
        log::debug!("symbolized {count} stacks in {:?}", started.elapsed());
    }

    /// Interns a raw stack into `builder`: a lost one as the marker saying why.
    pub fn intern(&mut self, builder: &mut ProfileBuilder, stack: RawStack) -> StackId {
        match stack {
            RawStack::Sampled { user, kernel } => self.intern_sampled(builder, user, kernel),
            RawStack::Lost(why) => {
                let location = builder.location(lost(why));
                builder.stack(vec![location])
            }
        }
    }

    /// Interns the stack of a sample into `builder`, leaf first: kernel frames, then user
    /// frames, symbolized in the address space they were unwound in. Never empty: a sample
    /// without any frame gets `[unknown]`.
    ///
    /// Reads what [`Self::prepare`] symbolized; a stack it was not given is symbolized
    /// on its own, which is slow.
    fn intern_sampled(
        &mut self,
        builder: &mut ProfileBuilder,
        user: UserStack,
        kernel: StackHandle,
    ) -> StackId {
        let mut locations = Vec::new();
        for &frame in self.stacks.frames(kernel) {
            let raw = RawFrame {
                space: AddressSpace::Kernel,
                address: frame,
            };
            let symbolizer = &mut self.symbolizer;
            locations.push(builder.frame_location(raw, |builder| {
                let kernel = symbolizer.kernel(frame);
                // Interned on first use, so that a user binary can be pprof's main mapping.
                let mapping = builder.mapping(kernel_mapping(kernel.module.as_deref()));
                Location {
                    address: frame.address(),
                    mapping: Some(mapping),
                    lines: kernel.frame.lines,
                    kind: kernel.frame.kind,
                }
            }));
        }
        match user {
            UserStack::Frames { stack, space } => {
                let process = space.and_then(|s| self.processes.space_info(s));
                let jit = space.and_then(|s| self.processes.space_perf_map(s));
                let space =
                    space.map_or(AddressSpace::Unknown, |s| AddressSpace::Process(s.index()));
                for &frame in self.stacks.frames(stack) {
                    let raw = RawFrame {
                        space,
                        address: frame,
                    };
                    let symbolizer = &mut self.symbolizer;
                    locations.push(builder.frame_location(raw, |builder| {
                        let user = symbolizer.user(process, jit, frame);
                        let mapping = user.mapping.map(|m| builder.mapping(m));
                        Location {
                            address: frame.address(),
                            mapping,
                            lines: user.frame.lines,
                            kind: user.frame.kind,
                        }
                    }));
                }
            }
            UserStack::Unreadable => {
                locations.push(builder.location(lost(LostStack::Unreadable)));
            }
        }
        if locations.is_empty() {
            locations.push(builder.location(lost(LostStack::NoFrames)));
        }
        builder.stack(locations)
    }

    /// Asks the symbolizer for a stack's addresses.
    fn request(&mut self, user: UserStack, kernel: StackHandle) {
        for &frame in self.stacks.frames(kernel) {
            self.symbolizer.request_kernel(frame);
        }
        let UserStack::Frames { stack, space } = user else {
            return;
        };
        let process = space.and_then(|s| self.processes.space_info(s));
        for &frame in self.stacks.frames(stack) {
            self.symbolizer.request_user(process, frame);
        }
    }
}

/// The mapping of kernel frames: the kernel's, or a module's (`[fuse]`, as perf names it).
fn kernel_mapping(module: Option<&str>) -> Mapping {
    Mapping {
        start: 0,
        limit: u64::MAX,
        file_offset: 0,
        path: module.map_or_else(|| KERNEL_MAPPING.to_owned(), |m| format!("[{m}]")),
        build_id: None,
    }
}

/// The stand-in location for user frames that could not be collected.
fn lost(why: LostStack) -> Location {
    Location {
        address: 0,
        mapping: None,
        lines: vec![Line {
            function: why.frame_name().to_owned(),
            file: None,
            line: 0,
        }],
        kind: FrameKind::Lost(why),
    }
}

#[cfg(test)]
mod tests {
    use profiler_model::{FrameAddress, ValueType};

    use super::*;
    use std::time::{Duration, SystemTime};

    fn builder() -> ProfileBuilder {
        ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        )
    }

    #[inline(never)]
    fn a_leaf() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn interns_kernel_then_user_frames_with_markers() {
        let mut processes = ProcessTable::default();
        let pid = std::process::id();
        assert!(processes.snapshot(pid));
        let leaf = a_leaf as fn() -> _ as usize as u64;
        let caller = interns_kernel_then_user_frames_with_markers as fn() as usize as u64 + 8;
        let mut stacks = StackTable::default();
        let user = UserStack::Frames {
            stack: stacks.intern(FrameAddress::stack([leaf, caller])),
            space: processes.space(pid),
        };
        let mut resolver = StackResolver::new(&stacks, &processes);
        let mut b = builder();
        let full = resolver.intern(&mut b, RawStack::user(user));
        let unreadable = resolver.intern(&mut b, RawStack::user(UserStack::Unreadable));
        let empty = resolver.intern(&mut b, RawStack::user(UserStack::NONE));
        let lost = resolver.intern(&mut b, RawStack::Lost(LostStack::RingBufferFull));
        let profile = b.build();
        let names = profile.stack_functions(full);
        assert!(names.iter().any(|n| n.contains("a_leaf")), "{names:?}");
        assert!(
            names
                .iter()
                .any(|n| n.contains("interns_kernel_then_user_frames_with_markers")),
            "{names:?}"
        );
        assert_eq!(
            profile.stack_functions(unreadable),
            vec!["[user stack unreadable]"]
        );
        assert_eq!(profile.stack_functions(empty), vec!["[unknown]"]);
        assert_eq!(
            profile.stack_functions(lost),
            vec!["[user stack lost: ring buffer full]"]
        );
    }
}
