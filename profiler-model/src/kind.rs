//! The profiles this profiler writes, as types: each kind's schema (sample types by name,
//! the default one, its title and file name) and typed indices of its values.
//!
//! Every builder starts its profile from the kind's schema, every output asks the kind
//! what it is (never the profile's name), and `profiler report` checks a file's sample
//! types against the kind its name promises.

/// What a sample value measures and in which unit, as pprof's `ValueType` (`cpu`/`nanoseconds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueType {
    /// The quantity, such as `samples`, `cpu` or `calls`.
    pub kind: String,
    /// Its unit, such as `count`, `nanoseconds` or `bytes`.
    pub unit: String,
}

impl ValueType {
    /// Builds a value type from its kind and unit.
    pub fn new(kind: &str, unit: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

/// A profile this profiler writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileKind {
    /// `cpu.pb.gz`: where the CPU time went, by sampled stack.
    Cpu,
    /// `io.pb.gz`: every traced read/write-family syscall and call between descriptors
    /// (sendfile, splice, ...), by call stack.
    Io,
    /// `block.pb.gz`: futex waits by call stack, as Go's block profile counts them.
    Block,
    /// `heap.pb.gz`: allocations and memory in use by call stack, with Go's heap profile's
    /// sample types.
    Heap,
    /// `offcpu.pb.gz`: where threads waited off CPU, by call stack and reason.
    OffCpu,
}

/// The values of a CPU profile's samples, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuValue {
    /// `samples/count`: samples taken.
    Samples,
    /// `cpu/nanoseconds`: the CPU time they stand for.
    Cpu,
}

/// The values of an I/O profile's samples, in order. The first four are those of
/// profiles written before `requested`, `short` and `eagain` were appended, so a reader of
/// the old ones finds every value where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoValue {
    /// `calls/count`.
    Calls,
    /// `bytes/bytes`: what the calls moved.
    Bytes,
    /// `time/nanoseconds`: time spent in the calls.
    Time,
    /// `errors/count`: calls that failed.
    Errors,
    /// `requested/bytes`: what the calls asked for (bytes; messages for `*mmsg`).
    Requested,
    /// `short/count`: calls that moved less than they asked for.
    Short,
    /// `eagain/count`: calls that failed with `EAGAIN`/`EWOULDBLOCK`.
    Eagain,
    /// `turns/count`: calls that moved data the other way than the process's last call
    /// that moved data on the same descriptor (a reply after a request, a request after a
    /// reply): a round trip with the peer.
    Turns,
}

/// The values of a blocking profile's samples, in order, as Go's block profile has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockValue {
    /// `contentions/count`: waits.
    Contentions,
    /// `delay/nanoseconds`: time waited.
    Delay,
}

/// The values of an off-CPU profile's samples, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffCpuValue {
    /// `waits/count`: times a thread left the CPU there.
    Waits,
    /// `delay/nanoseconds`: time off CPU.
    Delay,
}

/// The values of a heap profile's samples, in order, exactly as Go's heap profile has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapValue {
    /// `alloc_objects/count`: allocations made in the window.
    AllocObjects,
    /// `alloc_space/bytes`: the bytes they asked for.
    AllocSpace,
    /// `inuse_objects/count`: of them, those still live when the window closed.
    InuseObjects,
    /// `inuse_space/bytes`: their bytes.
    InuseSpace,
}

macro_rules! value_index {
    ($($t:ty),*) => {$(
        impl $t {
            /// Index of this value in a sample's values.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    )*};
}
value_index!(CpuValue, IoValue, BlockValue, HeapValue, OffCpuValue);

/// The I/O profile's sample types (kind, unit), in [`IoValue`] order.
const IO_SAMPLE_TYPES: [(&str, &str); 8] = [
    ("calls", "count"),
    ("bytes", "bytes"),
    ("time", "nanoseconds"),
    ("errors", "count"),
    ("requested", "bytes"),
    ("short", "count"),
    ("eagain", "count"),
    ("turns", "count"),
];

/// The heap profile's sample types (kind, unit), in [`HeapValue`] order.
const HEAP_SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

impl ProfileKind {
    /// Every kind, in the order reports show them.
    pub const ALL: [ProfileKind; 5] = [Self::Cpu, Self::Io, Self::Block, Self::OffCpu, Self::Heap];

    /// The profile's name, which is also its file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Io => "io",
            Self::Block => "block",
            Self::Heap => "heap",
            Self::OffCpu => "offcpu",
        }
    }

    /// The name people use for it.
    pub fn title(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::Io => "I/O",
            Self::Block => "blocking",
            Self::Heap => "heap",
            Self::OffCpu => "off-CPU",
        }
    }

    /// The sample types (kind, unit) this profiler writes for it, in value order.
    pub fn sample_types(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Cpu => &[("samples", "count"), ("cpu", "nanoseconds")],
            Self::Io => &IO_SAMPLE_TYPES,
            Self::Block => &[("contentions", "count"), ("delay", "nanoseconds")],
            Self::Heap => &HEAP_SAMPLE_TYPES,
            Self::OffCpu => &[("waits", "count"), ("delay", "nanoseconds")],
        }
    }

    /// The sample types as the model's [`ValueType`]s.
    pub fn value_types(self) -> Vec<ValueType> {
        self.sample_types()
            .iter()
            .map(|&(kind, unit)| ValueType::new(kind, unit))
            .collect()
    }

    /// The index of the sample type viewers show first: samples for CPU (as perf weights
    /// its stacks), calls for I/O, delay for blocking (as Go's block profile), in-use bytes for the heap (as
    /// Go's heap profile).
    pub fn default_sample_type(self) -> usize {
        match self {
            Self::Cpu => CpuValue::Samples.index(),
            Self::Io => IoValue::Calls.index(),
            Self::Block => BlockValue::Delay.index(),
            // As Go's heap profile.
            Self::Heap => HeapValue::InuseSpace.index(),
            Self::OffCpu => OffCpuValue::Delay.index(),
        }
    }

    /// The sample types earlier builds wrote for it, still read: for the I/O profile, the
    /// four it had before `requested`, `short` and `eagain` were appended, and the seven
    /// it had before `turns`.
    pub fn earlier_sample_types(self) -> &'static [&'static [(&'static str, &'static str)]] {
        const IO_EARLIER: [&[(&str, &str)]; 2] =
            [IO_SAMPLE_TYPES.split_at(4).0, IO_SAMPLE_TYPES.split_at(7).0];
        match self {
            Self::Io => &IO_EARLIER,
            Self::Cpu | Self::Block | Self::Heap | Self::OffCpu => &[],
        }
    }

    /// The kind whose sample types are exactly `types` (as this build or an earlier one
    /// wrote them), if any.
    pub fn of(types: &[ValueType]) -> Option<ProfileKind> {
        let same = |want: &[(&str, &str)]| {
            want.len() == types.len()
                && want
                    .iter()
                    .zip(types)
                    .all(|(&(kind, unit), t)| t.kind == kind && t.unit == unit)
        };
        Self::ALL
            .into_iter()
            .find(|k| same(k.sample_types()) || k.earlier_sample_types().iter().any(|t| same(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_indices_name_the_schema_in_order() {
        trait IndexOf {
            fn index_of(self, name: &str) -> Option<usize>;
        }
        impl IndexOf for ProfileKind {
            fn index_of(self, name: &str) -> Option<usize> {
                self.sample_types()
                    .iter()
                    .position(|&(kind, _)| kind == name)
            }
        }
        let io = ProfileKind::Io;
        for (value, name) in [
            (IoValue::Calls, "calls"),
            (IoValue::Bytes, "bytes"),
            (IoValue::Time, "time"),
            (IoValue::Errors, "errors"),
            (IoValue::Requested, "requested"),
            (IoValue::Short, "short"),
            (IoValue::Eagain, "eagain"),
            (IoValue::Turns, "turns"),
        ] {
            assert_eq!(io.index_of(name), Some(value.index()));
        }
        assert_eq!(io.sample_types().len(), IoValue::Turns.index() + 1);
        let block = ProfileKind::Block;
        assert_eq!(
            block.index_of("contentions"),
            Some(BlockValue::Contentions.index())
        );
        assert_eq!(block.index_of("delay"), Some(BlockValue::Delay.index()));
        let cpu = ProfileKind::Cpu;
        assert_eq!(cpu.index_of("samples"), Some(CpuValue::Samples.index()));
        assert_eq!(cpu.index_of("cpu"), Some(CpuValue::Cpu.index()));
    }

    #[test]
    fn every_kind_is_recognized_by_its_sample_types() {
        for kind in ProfileKind::ALL {
            assert_eq!(ProfileKind::of(&kind.value_types()), Some(kind));
            assert!(kind.default_sample_type() < kind.sample_types().len());
        }
        let old_io: Vec<ValueType> = ProfileKind::Io.value_types()[..4].to_vec();
        assert_eq!(ProfileKind::of(&old_io), Some(ProfileKind::Io));
        assert_eq!(
            ProfileKind::of(&[ValueType::new("alloc_objects", "count")]),
            None
        );
    }
}
