//! Interning builder for [`Profile`]: equal locations, stacks and mappings are stored once.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::account::Account;
use super::address::{AddressSpace, FrameAddress};
use super::comment::Comment;
use super::kind::ProfileKind;
use super::model::{
    Label, Location, LocationId, Mapping, MappingId, Profile, StackId, ValueType, cap_inline_lines,
};
use super::model::{Sample, Waker};
use super::program_labels::ProgramLabels;

/// A frame before symbolization: an address in some address space. Equal raw frames
/// always make equal locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawFrame {
    /// Which address space the address is in.
    pub space: AddressSpace,
    /// The address, as unwound.
    pub address: FrameAddress,
}

/// Builds a [`Profile`], interning mappings, locations and stacks and merging samples
/// that share a stack and labels.
#[derive(Debug)]
pub struct ProfileBuilder {
    profile: Profile,
    mapping_ids: HashMap<Mapping, MappingId>,
    location_ids: HashMap<Location, LocationId>,
    frame_ids: HashMap<RawFrame, LocationId>,
    stack_ids: HashMap<Vec<LocationId>, StackId>,
    sample_ids: HashMap<(StackId, Vec<Label>, ProgramLabels, Option<Waker>), usize>,
    /// Locations whose inline chain was over [`MAX_INLINE_LINES`](crate::MAX_INLINE_LINES), and the lines elided
    /// from them, said in a comment when the profile is built.
    elided: (usize, usize),
}

impl ProfileBuilder {
    /// Starts a profile of `kind`, with its schema's sample types and default one.
    pub fn new(kind: ProfileKind, start: SystemTime, duration: Duration) -> Self {
        Self {
            profile: Profile {
                kind,
                sample_types: kind.value_types(),
                default_sample_type: kind.default_sample_type(),
                period_type: None,
                period: 0,
                start,
                duration,
                comments: Vec::new(),
                mappings: Vec::new(),
                locations: Vec::new(),
                stacks: Vec::new(),
                samples: Vec::new(),
            },
            mapping_ids: HashMap::new(),
            location_ids: HashMap::new(),
            frame_ids: HashMap::new(),
            stack_ids: HashMap::new(),
            sample_ids: HashMap::new(),
            elided: (0, 0),
        }
    }

    /// Starts a profile of `kind` with other sample types than its schema's, for tests of
    /// outputs, which must show whatever a profile holds.
    #[cfg(any(test, feature = "fixture"))]
    pub fn with_sample_types(
        kind: ProfileKind,
        sample_types: Vec<ValueType>,
        start: SystemTime,
        duration: Duration,
    ) -> Self {
        let mut builder = Self::new(kind, start, duration);
        builder.profile.sample_types = sample_types;
        builder.profile.default_sample_type = 0;
        builder
    }

    /// Sets the sample type viewers show first, for test profiles whose types are not
    /// their kind's schema.
    #[cfg(any(test, feature = "fixture"))]
    pub fn default_sample_type(&mut self, index: usize) -> &mut Self {
        assert!(
            index < self.profile.sample_types.len(),
            "default sample type out of range"
        );
        self.profile.default_sample_type = index;
        self
    }

    /// Sets pprof's period type and period (events between two samples).
    pub fn period(&mut self, period_type: ValueType, period: i64) -> &mut Self {
        self.profile.period_type = Some(period_type);
        self.profile.period = period;
        self
    }

    /// Adds a comment.
    pub fn comment(&mut self, comment: Comment) -> &mut Self {
        self.profile.comments.push(comment);
        self
    }

    /// Interns a mapping.
    pub fn mapping(&mut self, mapping: Mapping) -> MappingId {
        if let Some(&id) = self.mapping_ids.get(&mapping) {
            return id;
        }
        let id = MappingId::new(self.profile.mappings.len());
        self.profile.mappings.push(mapping.clone());
        self.mapping_ids.insert(mapping, id);
        id
    }

    /// Interns a location, its inline chain capped at [`MAX_INLINE_LINES`](crate::MAX_INLINE_LINES) (the excess
    /// is one elision frame, and counted).
    pub fn location(&mut self, mut location: Location) -> LocationId {
        debug_assert!(
            !location.lines.is_empty(),
            "a location needs at least one line"
        );
        let elided = cap_inline_lines(&mut location.lines);
        if let Some(&id) = self.location_ids.get(&location) {
            return id;
        }
        if elided > 0 {
            self.elided.0 += 1;
            self.elided.1 += elided;
        }
        let id = LocationId::new(self.profile.locations.len());
        self.profile.locations.push(location.clone());
        self.location_ids.insert(location, id);
        id
    }

    /// The location of a raw frame already interned: hashing a location's lines is what
    /// building a profile costs, and the same frames recur in thousands of stacks.
    pub fn frame_location(&self, frame: RawFrame) -> Option<LocationId> {
        self.frame_ids.get(&frame).copied()
    }

    /// Interns `location` as the location of the raw frame `frame`.
    pub fn add_frame_location(&mut self, frame: RawFrame, location: Location) -> LocationId {
        let id = self.location(location);
        self.frame_ids.insert(frame, id);
        id
    }

    /// Interns a stack of locations, leaf first.
    pub fn stack(&mut self, locations: Vec<LocationId>) -> StackId {
        if let Some(&id) = self.stack_ids.get(&locations) {
            return id;
        }
        let id = StackId::new(self.profile.stacks.len());
        self.profile.stacks.push(locations.clone());
        self.stack_ids.insert(locations, id);
        id
    }

    /// Adds values for a stack with labels; values of an equal (stack, labels) pair are summed.
    pub fn add_sample(&mut self, stack: StackId, values: &[i64], labels: Vec<Label>) {
        self.add_sample_from(stack, values, labels, ProgramLabels::NONE, None);
    }

    /// Adds values for `stack` with `labels` and the program's own labels `program`, woken
    /// by `waker` (an off-CPU wait): merged only with samples of the same labels, woken by
    /// the same stack.
    pub fn add_sample_from(
        &mut self,
        stack: StackId,
        values: &[i64],
        labels: Vec<Label>,
        program: ProgramLabels,
        waker: Option<Waker>,
    ) {
        assert_eq!(
            values.len(),
            self.profile.sample_types.len(),
            "one value per sample type"
        );
        match self.sample_ids.entry((stack, labels, program, waker)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let sample = &mut self.profile.samples[*e.get()];
                for (acc, v) in sample.values.iter_mut().zip(values) {
                    *acc += v;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let (_, labels, program, waker) = e.key().clone();
                e.insert(self.profile.samples.len());
                self.profile.samples.push(Sample {
                    stack,
                    values: values.to_vec(),
                    labels,
                    program,
                    waker,
                });
            }
        }
    }

    /// Finishes the profile; a comment says how many inlined frames were elided, if any.
    pub fn build(mut self) -> Profile {
        let (locations, lines) = self.elided;
        if locations > 0 {
            self.profile
                .comments
                .push(Comment::Account(Account::Elided {
                    lines: lines as u64,
                    locations: locations as u64,
                    on_read: false,
                }));
        }
        self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LabelKey;
    use crate::model::{Line, MAX_INLINE_LINES};

    fn loc(name: &str) -> Location {
        Location {
            address: name.len() as u64,
            mapping: None,
            lines: vec![Line {
                function: name.to_owned(),
                file: None,
                line: 0,
            }],
            kind: crate::FrameKind::Function,
        }
    }

    #[test]
    fn interns_and_merges() {
        let mut b = ProfileBuilder::with_sample_types(
            crate::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let a = b.location(loc("a"));
        let main = b.location(loc("main"));
        assert_eq!(b.location(loc("a")), a);
        let s1 = b.stack(vec![a, main]);
        assert_eq!(b.stack(vec![a, main]), s1);
        b.add_sample(s1, &[2], vec![Label::num(LabelKey::Pid, 1)]);
        b.add_sample(s1, &[3], vec![Label::num(LabelKey::Pid, 1)]);
        b.add_sample(s1, &[5], vec![Label::num(LabelKey::Pid, 2)]);
        let p = b.build();
        assert_eq!(p.locations.len(), 2);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.samples[0].values, vec![5]);
        assert_eq!(p.total(0), 10);
        assert_eq!(p.stack_functions(s1), vec!["main", "a"]);
    }

    #[test]
    fn long_inline_chains_are_cut_and_counted() {
        let mut b = ProfileBuilder::with_sample_types(
            crate::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let lines: Vec<Line> = (0..3001)
            .map(|i| loc(&format!("f{i}")).lines[0].clone())
            .collect();
        let deep = b.location(Location { lines, ..loc("x") });
        let short = b.location(loc("main"));
        let s = b.stack(vec![deep, short]);
        b.add_sample(s, &[1], vec![]);
        let p = b.build();
        let names: Vec<&str> = p
            .location(deep)
            .lines
            .iter()
            .map(|l| l.function.as_str())
            .collect();
        assert_eq!(names.len(), MAX_INLINE_LINES);
        assert_eq!(names[0], "f0", "the innermost frame stays");
        assert_eq!(names[15], "f15");
        assert_eq!(names[16], "[elided: 2970 inlined frames]");
        assert_eq!(names[17], "f2986");
        assert_eq!(names[31], "f3000", "the outermost frame stays");
        assert_eq!(p.location(short).lines.len(), 1);
        let note = p
            .comments
            .iter()
            .map(Comment::text)
            .find(|c| c.starts_with("inlined frames:"))
            .unwrap();
        assert!(note.contains("2970 elided at 1 locations"), "{note}");
    }
}
