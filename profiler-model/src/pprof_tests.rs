//! The pprof writer and reader together: what `decode` reads back is what `encode` wrote.

use super::*;
use crate::KERNEL_MAPPING;
use crate::LabelKey;
use crate::ProfileKind;
use crate::ProgramLabels;
use crate::fixture;
use crate::pprof_decode::decode;
use crate::pprof_read::decode_bytes;
use crate::{
    Comment, FrameKind, Label, Location, LocationId, LostStack, Mapping, MappingId, Sample,
    StackId, Unnamed,
};

/// The gzipped pprof file of `profile`.
fn file(profile: &Profile) -> Vec<u8> {
    let mut out = Vec::new();
    write(profile, &mut out).unwrap();
    out
}

/// Compares two profiles field by field (Profile has no PartialEq: nothing else needs it).
fn assert_same(a: &Profile, b: &Profile) {
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.sample_types, b.sample_types);
    assert_eq!(a.default_sample_type, b.default_sample_type);
    assert_eq!(a.period_type, b.period_type);
    assert_eq!(a.period, b.period);
    assert_eq!(a.start, b.start);
    assert_eq!(a.duration, b.duration);
    assert_eq!(a.comments, b.comments);
    assert_eq!(a.mappings, b.mappings);
    assert_eq!(a.locations, b.locations);
    assert_eq!(a.stacks, b.stacks);
    assert_eq!(a.samples, b.samples);
}

/// The fixture with a kernel frame, a lost-stack marker, an empty string label and a
/// pid 0, which pprof's encoding makes the decoder work for.
fn rich_profile() -> Profile {
    let mut p = fixture::profile();
    p.mappings.push(Mapping {
        start: 0,
        limit: u64::MAX,
        file_offset: 0,
        path: KERNEL_MAPPING.to_owned(),
        build_id: None,
    });
    p.locations.push(Location {
        address: 0xffff_ffff_8100_0000,
        mapping: Some(MappingId::new(1)),
        lines: vec![fixture::line("do_syscall_64")],
        kind: FrameKind::Kernel,
    });
    p.locations.push(Location {
        address: 0,
        mapping: None,
        lines: vec![fixture::line(LostStack::MapFull.frame_name())],
        kind: FrameKind::Lost(LostStack::MapFull),
    });
    let (syscall, marker) = (
        LocationId::new(p.locations.len() - 2),
        LocationId::new(p.locations.len() - 1),
    );
    let main = LocationId::new(0);
    p.stacks.push(vec![syscall, main]);
    p.stacks.push(vec![marker, main]);
    let n = p.stacks.len();
    p.samples.push(Sample {
        stack: StackId::new(n - 2),
        values: vec![2, 2 * fixture::PERIOD],
        labels: vec![
            Label::num(LabelKey::Pid, 0),
            Label::num(LabelKey::Tid, 0),
            Label::str(LabelKey::Comm, ""),
        ],
        program: ProgramLabels::NONE,
        waker: None,
    });
    p.samples.push(Sample {
        stack: StackId::new(n - 1),
        values: vec![1, fixture::PERIOD],
        labels: vec![Label::str(LabelKey::Comm, "swapper/0")],
        program: ProgramLabels::new(vec![("endpoint".to_owned(), "/kv".to_owned())]),
        waker: None,
    });
    p
}

#[test]
fn the_main_executable_is_the_first_mapping() {
    // The C library's mapping was interned first, as it is when the first sample's
    // leaf is in it, and the kernel's is in every stack.
    let mut p = rich_profile();
    p.mappings.insert(
        0,
        Mapping {
            start: 0x7f00_0000_0000,
            limit: 0x7f00_0010_0000,
            file_offset: 0x28000,
            path: "/usr/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
            build_id: None,
        },
    );
    for loc in &mut p.locations {
        loc.mapping = loc.mapping.map(|m| MappingId::new(m.index() + 1));
    }
    p.locations.push(Location {
        address: 0x7f00_0000_1000,
        mapping: Some(MappingId::new(0)),
        lines: vec![fixture::line("write")],
        kind: FrameKind::Function,
    });
    let write = LocationId::new(p.locations.len() - 1);
    for stack in &mut p.stacks {
        stack.insert(0, write);
    }
    let encoded = encode(&p);
    let name = |m: &proto::Mapping| encoded.string_table[m.filename as usize].clone();
    assert_eq!(name(&encoded.mapping[0]), "/usr/bin/app");
    assert_eq!(encoded.mapping[0].id, 1);
    assert_eq!(
        name(&encoded.mapping[1]),
        "/usr/lib/x86_64-linux-gnu/libc.so.6"
    );
    // Locations keep their mappings.
    let back = decode(&encoded, ProfileKind::Cpu).unwrap();
    for (a, b) in back.locations.iter().zip(&p.locations) {
        let path = |p: &Profile, l: &Location| l.mapping.map(|m| p.mapping(m).path.clone());
        assert_eq!(path(&back, a), path(&p, b));
    }
}

#[test]
fn decode_inverts_encode() {
    for p in [fixture::profile(), rich_profile(), fixture::empty()] {
        let back = decode(&encode(&p), ProfileKind::Cpu).unwrap();
        assert_same(&back, &p);
    }
}

#[test]
fn the_kind_comes_from_the_sample_types() {
    let mut p = rich_profile();
    assert_same(&decode_bytes(&file(&p), ProfileKind::Cpu).unwrap(), &p);
    let err = format!(
        "{:#}",
        decode_bytes(&file(&p), ProfileKind::Io).unwrap_err()
    );
    assert!(
        err.contains("not an I/O profile")
            && err.contains("samples/count, cpu/nanoseconds")
            && err.contains("those of a CPU profile"),
        "{err}"
    );
    p.sample_types = [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ]
    .iter()
    .map(|k| ValueType::new(k, "count"))
    .collect();
    for s in &mut p.samples {
        s.values = vec![1, 2, 3, 4];
    }
    let err = format!(
        "{:#}",
        decode_bytes(&file(&p), ProfileKind::Io).unwrap_err()
    );
    assert!(
        err.contains("alloc_objects/count, alloc_space/count")
            && err.contains("another program's profile"),
        "{err}"
    );
}

#[test]
fn decode_rejects_what_does_not_add_up() {
    let good = encode(&fixture::profile());
    let mut p = good.clone();
    p.sample[0].value.pop();
    let err = format!("{:#}", decode(&p, ProfileKind::Cpu).unwrap_err());
    assert!(
        err.contains("sample 0 has 1 values for 2 sample types"),
        "{err}"
    );
    let mut p = good.clone();
    p.sample[0].location_id.push(99);
    assert!(format!("{:#}", decode(&p, ProfileKind::Cpu).unwrap_err()).contains("location 99"));
    let mut p = good.clone();
    p.location[0].line[0].function_id = 77;
    assert!(format!("{:#}", decode(&p, ProfileKind::Cpu).unwrap_err()).contains("function 77"));
    let mut p = good.clone();
    p.comment.push(10_000);
    assert!(format!("{:#}", decode(&p, ProfileKind::Cpu).unwrap_err()).contains("string index"));
    let mut p = good.clone();
    p.location[1].id = p.location[0].id;
    assert!(decode(&p, ProfileKind::Cpu).is_err());
    let mut p = good;
    p.sample_type.clear();
    for s in &mut p.sample {
        s.value.clear();
    }
    assert!(
        format!("{:#}", decode(&p, ProfileKind::Cpu).unwrap_err()).contains("sample types none")
    );
}

#[test]
fn decode_fills_what_pprof_leaves_out() {
    let mut p = encode(&fixture::profile());
    p.location[0].line.clear();
    p.default_sample_type = 0;
    let back = decode(&p, ProfileKind::Cpu).unwrap();
    // 0x1100 in a mapping starting at 0x1000 of /usr/bin/app.
    assert_eq!(back.locations[0].lines[0].function, "app+0x100");
    assert_eq!(
        back.default_sample_type, 1,
        "pprof's default is the last type"
    );
}

#[test]
fn labels_of_unknown_keys_are_left_out_and_counted() {
    let mut p = encode(&fixture::profile());
    let key = p.string_table.len() as i64;
    p.string_table.push("span_id".to_owned());
    let labels_before = p.sample[0].label.len();
    p.sample[0].label.push(proto::Label {
        key,
        str: 0,
        num: 7,
        num_unit: 0,
    });
    let back = decode(&p, ProfileKind::Cpu).unwrap();
    assert_eq!(back.samples[0].labels.len(), labels_before);
    let note = back
        .comments
        .iter()
        .map(Comment::text)
        .find(|c| c.starts_with("labels:"));
    assert_eq!(
        note.as_deref(),
        Some("labels: 1 left out whose keys the profiler does not know")
    );
}

fn string(p: &proto::Profile, i: i64) -> &str {
    &p.string_table[i as usize]
}

fn round_trip() -> proto::Profile {
    let bytes = file(&fixture::profile());
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw).unwrap();
    proto::Profile::decode(raw.as_slice()).unwrap()
}

#[test]
fn header_fields() {
    let p = round_trip();
    assert_eq!(p.string_table[0], "");
    let types: Vec<_> = p
        .sample_type
        .iter()
        .map(|t| (string(&p, t.r#type), string(&p, t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert_eq!(string(&p, p.default_sample_type), "cpu");
    let period_type = p.period_type.as_ref().unwrap();
    assert_eq!(
        (string(&p, period_type.r#type), string(&p, period_type.unit)),
        ("cpu", "nanoseconds")
    );
    assert_eq!(p.period, fixture::PERIOD);
    assert_eq!(p.time_nanos, 1_700_000_000 * 1_000_000_000);
    assert_eq!(p.duration_nanos, 2_000_000_000);
    let comments: Vec<_> = p.comment.iter().map(|&c| string(&p, c)).collect();
    assert_eq!(comments, ["window 2s", "lost 0 samples"]);
    // Interning: no string is stored twice.
    let mut sorted = p.string_table.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), p.string_table.len());
}

#[test]
fn samples_and_labels() {
    let p = round_trip();
    assert_eq!(p.sample.len(), 3);
    assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 10);
    assert_eq!(
        p.sample.iter().map(|s| s.value[1]).sum::<i64>(),
        10 * fixture::PERIOD
    );
    let labels: Vec<Vec<String>> = p
        .sample
        .iter()
        .map(|s| {
            s.label
                .iter()
                .map(|l| match l.str {
                    0 => format!("{}={}", string(&p, l.key), l.num),
                    v => format!("{}={}", string(&p, l.key), string(&p, v)),
                })
                .collect()
        })
        .collect();
    assert_eq!(labels[0], ["pid=100", "tid=101", "comm=app"]);
    assert_eq!(labels[2], ["pid=200", "tid=200"]);
}

#[test]
fn locations_functions_and_mapping() {
    let p = round_trip();
    let function = |id: u64| p.function.iter().find(|f| f.id == id).unwrap();
    let names = |loc_id: u64| -> Vec<&str> {
        let loc = p.location.iter().find(|l| l.id == loc_id).unwrap();
        loc.line
            .iter()
            .map(|l| string(&p, function(l.function_id).name))
            .collect()
    };
    // The second sample is main -> run/b (inlined) -> a, leaf first.
    let stack: Vec<Vec<&str>> = p.sample[1]
        .location_id
        .iter()
        .map(|&id| names(id))
        .collect();
    assert_eq!(stack, [vec!["a"], vec!["b", "run"], vec!["main"]]);
    let main = p.location.iter().find(|l| names(l.id) == ["main"]).unwrap();
    assert_eq!(main.address, 0x1100);
    assert_eq!(main.line[0].line, 10);
    assert_eq!(
        string(&p, function(main.line[0].function_id).filename),
        "main.c"
    );
    assert_eq!(p.function.len(), 4);

    assert_eq!(p.mapping.len(), 1);
    let m = &p.mapping[0];
    assert_eq!((m.id, m.memory_start, m.memory_limit), (1, 0x1000, 0x9000));
    assert_eq!(string(&p, m.filename), "/usr/bin/app");
    assert_eq!(string(&p, m.build_id), "abcdef0123");
    assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);
    assert!(p.location.iter().all(|l| l.mapping_id == 1));
}

#[test]
fn reads_plain_protobuf_and_reports_garbage() {
    let plain = encode(&fixture::profile()).encode_to_vec();
    assert_same(
        &decode_bytes(&plain, ProfileKind::Cpu).unwrap(),
        &fixture::profile(),
    );
    assert!(decode_bytes(b"\xff\xff\xff", ProfileKind::Cpu).is_err());
    assert!(decode_bytes(b"\x1f\x8b\x08\x00garbage", ProfileKind::Cpu).is_err());
}

#[test]
fn partly_symbolized_mapping_claims_nothing() {
    let mut p = fixture::profile();
    p.locations.push(Location {
        kind: FrameKind::Unnamed(Unnamed::NoSymbol),
        ..fixture::location(
            0x1400,
            Some(MappingId::new(0)),
            vec![fixture::line("app+0x400")],
        )
    });
    p.mappings.push(p.mappings[0].clone());
    p.mappings[1].path = "/usr/lib/unused.so".into();
    let m = encode(&p).mapping;
    assert!(!m[0].has_functions && !m[0].has_filenames && !m[0].has_line_numbers);
    assert!(m[0].has_inline_frames);
    assert!(!m[1].has_functions && !m[1].has_inline_frames);
}

#[test]
fn functions_are_told_by_kind_not_by_name() {
    // A real function may look like a fallback name (`operator+0xyz`, `f+0x1`).
    let mut p = fixture::profile();
    for l in &mut p.locations {
        l.lines = vec![fixture::line("operator+0x1")];
    }
    assert!(encode(&p).mapping[0].has_functions);
    p.locations[0].kind = FrameKind::Unnamed(Unnamed::NoSymbol);
    let message = encode(&p);
    assert!(!message.mapping[0].has_functions);
    let back = decode(&message, ProfileKind::Cpu).unwrap();
    assert_eq!(
        back.locations[0].kind,
        FrameKind::Unnamed(Unnamed::NoSymbol)
    );
    assert_eq!(back.locations[0].lines, p.locations[0].lines);
}
