//! pprof's `profile.proto` messages (package `perftools.profiles`), declared by hand with
//! prost derives.
//!
//! The structs follow the documented wire format field by field, so no protoc or
//! prost-build step is needed at build time. Strings are stored once in
//! [`Profile::string_table`] and every other message refers to them by index; ids of
//! mappings, locations and functions are 1-based, with 0 meaning "none".

/// A whole profile: sample types, samples, and the tables they index into.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each entry of [`Sample::value`] measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The recorded samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Mappings referenced by locations; ids must be non-zero and distinct.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Locations referenced by samples.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by location lines.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string of the profile; entry 0 must be the empty string.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// String index of a regex of frames to drop from stacks (0: none).
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// String index of a regex of frames kept even if `drop_frames` matches them.
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// When collection started, in nanoseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long the profile covers, in nanoseconds.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of events between two samples.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Events between two samples, in `period_type` units.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments, as string indices.
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// String index of the `type` of the sample type viewers show first.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// A kind of value and its unit, both as string indices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// String index of the kind, such as `cpu` or `samples`.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// String index of the unit, such as `nanoseconds` or `count`.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// Values measured at one call stack, with labels.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Location ids of the stack, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per [`Profile::sample_type`].
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels such as `pid` or `comm`.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A key with either a string or a numeric value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// String index of the key.
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String index of the value, for string labels (0 otherwise).
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// The value, for numeric labels.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// String index of the unit of `num`, 0 when it has none.
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A mapped object (binary, library, kernel) that addresses fall in.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    /// Non-zero id referenced by [`Location::mapping_id`].
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// First address of the mapping.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// One past the last address of the mapping.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// Offset in the file of `memory_start`.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// String index of the object's path.
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// String index of the build ID (hex), 0 when unknown.
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Whether the locations carry function names.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Whether the locations carry source file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Whether the locations carry source line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// Whether the locations carry inlined frames.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// An instruction address and the source lines it stands for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Non-zero id referenced by [`Sample::location_id`].
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Id of the mapping the address falls in, 0 when unknown.
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// The instruction address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Source frames, innermost (inlined callee) first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Whether several addresses were folded into this location.
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// A function and a line in it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// Id of the [`Function`].
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line number, 0 when unknown.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// A function: names and source file, as string indices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Non-zero id referenced by [`Line::function_id`].
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// String index of the human-readable (demangled) name.
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// String index of the name as the system knows it (e.g. mangled).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// String index of the source file.
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function in the source file, 0 when unknown.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_match_the_wire_format() {
        // period=12 as varint: key (12 << 3 | 0) = 0x60; default_sample_type=14: key 0x70.
        let p = Profile {
            period: 5,
            default_sample_type: 3,
            ..Default::default()
        };
        assert_eq!(p.encode_to_vec(), vec![0x60, 5, 0x70, 3]);
        // string_table=6, length-delimited: key 0x32.
        let p = Profile {
            string_table: vec![String::new(), "a".into()],
            ..Default::default()
        };
        assert_eq!(p.encode_to_vec(), vec![0x32, 0, 0x32, 1, b'a']);
    }

    #[test]
    fn round_trips() {
        let p = Profile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            sample: vec![Sample {
                location_id: vec![1, 2],
                value: vec![7],
                label: vec![Label {
                    key: 3,
                    str: 0,
                    num: 42,
                    num_unit: 0,
                }],
            }],
            location: vec![Location {
                id: 1,
                mapping_id: 1,
                address: 0x1000,
                line: vec![Line {
                    function_id: 1,
                    line: 10,
                }],
                is_folded: false,
            }],
            string_table: vec!["".into(), "cpu".into(), "nanoseconds".into(), "pid".into()],
            ..Default::default()
        };
        assert_eq!(Profile::decode(p.encode_to_vec().as_slice()).unwrap(), p);
    }
}
