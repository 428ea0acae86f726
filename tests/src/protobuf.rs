//! Hand-encoded pprof files, for the tests that give `profiler report` crafted input.

/// A protobuf message under construction (pprof's fields by number); `.0` is its encoding.
#[derive(Default, Clone)]
pub struct Msg(pub Vec<u8>);

impl Msg {
    /// Appends `v` as a varint.
    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }

    /// Appends field `field` with the integer `v`.
    pub fn int(&mut self, field: u64, v: i64) -> &mut Self {
        self.varint(field << 3).varint(v as u64)
    }

    /// Appends field `field` with the bytes `b` (a string or an embedded message).
    pub fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
        self.varint(field << 3 | 2).varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// Appends field `field` with `values`, packed.
    pub fn packed(&mut self, field: u64, values: &[i64]) -> &mut Self {
        let mut inner = Msg::default();
        for &v in values {
            inner.varint(v as u64);
        }
        self.bytes(field, &inner.0)
    }
}

/// The sample types (type, unit) of the profiler's CPU profile.
pub const CPU_SAMPLE_TYPES: &[(&str, &str)] = &[("samples", "count"), ("cpu", "nanoseconds")];
/// The sample types of its I/O profile.
pub const IO_SAMPLE_TYPES: &[(&str, &str)] = &[
    ("calls", "count"),
    ("bytes", "bytes"),
    ("time", "nanoseconds"),
    ("errors", "count"),
];
/// The sample types of its block profile.
pub const BLOCK_SAMPLE_TYPES: &[(&str, &str)] =
    &[("contentions", "count"), ("delay", "nanoseconds")];
