//! Turns the run's raw stacks into interned profile stacks: kernel frames, then user
//! frames, with a marker where a user stack could not be read or was lost.
//!
//! Before the first stack is interned, [`StackResolver::prepare`] (called once, by
//! [`crate::convert::profiles`]) goes over every raw stack of the run and symbolizes all
//! their addresses in one batch per file (see [`crate::symbolize`]), so that each file is
//! read once and its parsed data freed before the next. Interning then only reads the
//! results.

use std::collections::HashMap;
use std::time::Instant;

use profiler_model::{
    AddressSpace, FrameAddress, FrameKind, Line, Location, LostStack, Mapping, ProfileBuilder,
    RawFrame, StackId,
};

use crate::collect::python::PythonFrameName;
use crate::collect::raw_profile::{RawStack, StackStart};
use crate::collect::stacks::{StackHandle, StackTable, UserStack};
use crate::convert::go_stack_start::{self, Start};
use crate::process::procmaps::{ProcessTable, SpaceId};

use crate::symbolize::{KERNEL_MAPPING, Symbolizer};

/// Resolves stacks of one run into locations of profiles being built.
pub struct StackResolver<'run> {
    stacks: &'run StackTable,
    processes: &'run ProcessTable,
    symbolizer: Symbolizer,
    /// Every frame [`Self::prepare`] was given, named.
    named: HashMap<RawFrame, Named>,
}

/// What a frame was named: its mapping, source lines and kind.
#[derive(Debug, Clone)]
struct Named {
    mapping: Option<Mapping>,
    lines: Vec<Line>,
    kind: FrameKind,
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
            named: HashMap::new(),
        }
    }

    /// What the summary says of where names came from (see [`Symbolizer::notes`]).
    pub fn notes(&self) -> Vec<String> {
        self.symbolizer.notes()
    }

    /// Names every frame of `stacks`, all the stacks the run's profiles will intern: the
    /// symbolizer is asked for all their addresses, resolves them in one batch per file,
    /// and each distinct frame's name is kept for the profiles to read.
    pub fn prepare(&mut self, stacks: impl Iterator<Item = RawStack>) {
        let started = Instant::now();
        let mut frames: HashMap<RawFrame, Option<SpaceId>> = HashMap::new();
        for stack in stacks {
            if let RawStack::Sampled { user, kernel } = stack {
                frames.extend(self.raw_frames(user, kernel));
            }
        }
        for (&raw, &space) in &frames {
            if matches!(raw.address, FrameAddress::Interpreted(_)) {
                continue;
            }
            match raw.space {
                AddressSpace::Kernel => self.symbolizer.request_kernel(raw.address),
                _ => {
                    let process = space.and_then(|s| self.processes.space_info(s));
                    self.symbolizer.request_user(process, raw.address);
                }
            }
        }
        self.symbolizer.resolve_requests();
        for (raw, space) in frames {
            let named = self.name(raw, space);
            self.named.insert(raw, named);
        }
        log::debug!(
            "named {} distinct frames in {:?}",
            self.named.len(),
            started.elapsed()
        );
    }

    /// Interns a raw stack into `builder`: a lost one as the marker saying why; a sampled
    /// one from where `start` says it starts (see [`go_stack_start`]).
    pub fn intern(
        &mut self,
        builder: &mut ProfileBuilder,
        stack: RawStack,
        start: StackStart,
    ) -> StackId {
        let (user, kernel) = match stack {
            RawStack::Sampled { user, kernel } => (user, kernel),
            RawStack::Lost(why) => {
                let location = builder.location(lost(why));
                return builder.stack(vec![location]);
            }
        };
        let frames = self.raw_frames(user, kernel);
        let from = match start {
            StackStart::Leaf => Start::default(),
            _ => self.start_of(start, &frames),
        };
        let mut locations = Vec::new();
        for (i, &(raw, space)) in frames.iter().enumerate().skip(from.location) {
            let id = if i == from.location && from.line > 0 {
                // Its outer inlined frames only: a location of its own.
                let location = self.location(builder, raw, space, from.line);
                builder.location(location)
            } else if let Some(id) = builder.frame_location(raw) {
                id
            } else {
                let location = self.location(builder, raw, space, 0);
                builder.add_frame_location(raw, location)
            };
            locations.push(id);
        }
        if user == UserStack::Unreadable {
            locations.push(builder.location(lost(LostStack::Unreadable)));
        }
        if locations.is_empty() {
            locations.push(builder.location(lost(LostStack::NoFrames)));
        }
        builder.stack(locations)
    }

    /// The location of a raw frame, without its innermost `inlined` lines.
    fn location(
        &mut self,
        builder: &mut ProfileBuilder,
        raw: RawFrame,
        space: Option<SpaceId>,
        inlined: usize,
    ) -> Location {
        let named = match self.named.get(&raw) {
            Some(named) => named.clone(),
            // Not prepared: named on its own, which is slow.
            None => self.name(raw, space),
        };
        // Interned on first use, so that a user binary can be pprof's main mapping.
        let mapping = named.mapping.map(|m| builder.mapping(m));
        Location {
            address: raw.address.address(),
            mapping,
            lines: named.lines[inlined.min(named.lines.len().saturating_sub(1))..].to_vec(),
            kind: named.kind,
        }
    }

    /// Where the stack of `frames` starts for a sample that is to start at `start`.
    fn start_of(&mut self, start: StackStart, frames: &[(RawFrame, Option<SpaceId>)]) -> Start {
        for &(raw, space) in frames {
            if !self.named.contains_key(&raw) {
                let named = self.name(raw, space);
                self.named.insert(raw, named);
            }
        }
        let lines: Vec<&[Line]> = frames
            .iter()
            .map(|(raw, _)| self.named[raw].lines.as_slice())
            .collect();
        go_stack_start::start(start, &lines)
    }

    /// A sample's frames, leaf first: kernel frames, then user frames, each with the
    /// address space it was unwound in.
    fn raw_frames(&self, user: UserStack, kernel: StackHandle) -> Vec<(RawFrame, Option<SpaceId>)> {
        let mut frames: Vec<_> = self
            .stacks
            .frames(kernel)
            .iter()
            .map(|&address| {
                let space = AddressSpace::Kernel;
                (RawFrame { space, address }, None)
            })
            .collect();
        if let UserStack::Frames { stack, space: id } = user {
            let space = id.map_or(AddressSpace::Unknown, |s| AddressSpace::Process(s.index()));
            let user = self.stacks.frames(stack).iter();
            frames.extend(user.map(|&address| (RawFrame { space, address }, id)));
        }
        frames
    }

    /// Names one frame, from what the symbolizer resolved.
    fn name(&mut self, raw: RawFrame, space: Option<SpaceId>) -> Named {
        if let FrameAddress::Interpreted(id) = raw.address {
            return python_frame(self.stacks.python_frame(id));
        }
        if raw.space == AddressSpace::Kernel {
            let kernel = self.symbolizer.kernel(raw.address);
            return Named {
                mapping: Some(kernel_mapping(kernel.module.as_deref())),
                lines: kernel.frame.lines,
                kind: kernel.frame.kind,
            };
        }
        let process = space.and_then(|s| self.processes.space_info(s));
        let jit = space.and_then(|s| self.processes.space_perf_map(s));
        let user = self.symbolizer.user(process, jit, raw.address);
        Named {
            mapping: user.mapping,
            lines: user.frame.lines,
            kind: user.frame.kind,
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

/// A Python frame's name: `qualname` at `file.py:line`, no mapping (it is no machine code).
fn python_frame(frame: Option<&PythonFrameName>) -> Named {
    let line = match frame {
        Some(frame) => Line {
            function: frame.function.clone(),
            file: Some(frame.file.clone()),
            line: frame.line,
        },
        None => Line {
            function: "[python]".to_owned(),
            file: None,
            line: 0,
        },
    };
    Named {
        mapping: None,
        lines: vec![line],
        kind: FrameKind::Python,
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
    use profiler_model::ValueType;

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
        let full = resolver.intern(&mut b, RawStack::user(user), StackStart::Leaf);
        let unreadable = resolver.intern(
            &mut b,
            RawStack::user(UserStack::Unreadable),
            StackStart::Leaf,
        );
        let empty = resolver.intern(&mut b, RawStack::user(UserStack::NONE), StackStart::Leaf);
        let lost = resolver.intern(
            &mut b,
            RawStack::Lost(LostStack::RingBufferFull),
            StackStart::Leaf,
        );
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
