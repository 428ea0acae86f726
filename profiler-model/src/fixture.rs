//! A small profile shared by the tests of the model and of every output.

use crate::{Account, Comment, LabelKey};
use std::time::{Duration, SystemTime};

use crate::{Label, Line, Location, Mapping, MappingId, Profile, ProfileBuilder, ValueType};

/// Nanoseconds of CPU time each sample stands for.
pub const PERIOD: i64 = 10_000_000;

/// A line without source information.
pub fn line(function: &str) -> Line {
    Line {
        function: function.to_owned(),
        file: None,
        line: 0,
    }
}

/// A user-space location at `address` with the given lines, innermost first.
pub fn location(address: u64, mapping: Option<MappingId>, lines: Vec<Line>) -> Location {
    Location {
        address,
        mapping,
        lines,
        kind: crate::FrameKind::Function,
    }
}

/// A stack in `b` of one location per name, leaf first, each named by its one line and
/// at an address of its name's length.
pub fn named_stack(b: &mut ProfileBuilder, names: &[&str]) -> crate::StackId {
    let locations = names
        .iter()
        .map(|name| b.location(location(name.len() as u64, None, vec![line(name)])))
        .collect();
    b.stack(locations)
}

/// A cpu profile starting at 1_700_000_000 s, lasting 2 s, with samples/cpu types
/// (cpu the default) and three stacks:
///
/// - `main -> a` 3 samples, pid 100 tid 101 comm `app`
/// - `main -> run -> b -> a` 1 sample, pid 100 tid 102 comm `app`, where `b` is inlined
///   into `run` (one location, two lines)
/// - `main -> run -> b` 6 samples, pid 200 tid 200, no comm
pub fn profile() -> Profile {
    let mut b = ProfileBuilder::with_sample_types(
        crate::ProfileKind::Cpu,
        vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        Duration::from_secs(2),
    );
    b.default_sample_type(1)
        .period(ValueType::new("cpu", "nanoseconds"), PERIOD)
        .comment(Comment::Account(Account::Note("window 2s".to_owned())))
        .comment(Comment::Account(Account::Note("lost 0 samples".to_owned())));
    let app = b.mapping(Mapping {
        start: 0x1000,
        limit: 0x9000,
        file_offset: 0,
        path: "/usr/bin/app".into(),
        build_id: Some("abcdef0123".into()),
    });
    let main = b.location(location(
        0x1100,
        Some(app),
        vec![Line {
            function: "main".into(),
            file: Some("main.c".into()),
            line: 10,
        }],
    ));
    let a = b.location(location(
        0x1200,
        Some(app),
        vec![Line {
            function: "a".into(),
            file: Some("a.c".into()),
            line: 5,
        }],
    ));
    let run_b = b.location(location(
        0x1300,
        Some(app),
        vec![
            Line {
                function: "b".into(),
                file: Some("b.c".into()),
                line: 20,
            },
            Line {
                function: "run".into(),
                file: Some("run.c".into()),
                line: 7,
            },
        ],
    ));
    let s1 = b.stack(vec![a, main]);
    let s2 = b.stack(vec![a, run_b, main]);
    let s3 = b.stack(vec![run_b, main]);
    let app_labels = |tid| {
        vec![
            Label::num(LabelKey::Pid, 100),
            Label::num(LabelKey::Tid, tid),
            Label::str(LabelKey::Comm, "app"),
        ]
    };
    b.add_sample(s1, &[3, 3 * PERIOD], app_labels(101));
    b.add_sample(s2, &[1, PERIOD], app_labels(102));
    b.add_sample(
        s3,
        &[6, 6 * PERIOD],
        vec![
            Label::num(LabelKey::Pid, 200),
            Label::num(LabelKey::Tid, 200),
        ],
    );
    b.build()
}

/// A profile with the same types as [`profile`] and no samples.
pub fn empty() -> Profile {
    ProfileBuilder::with_sample_types(
        crate::ProfileKind::Cpu,
        vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        SystemTime::UNIX_EPOCH,
        Duration::from_secs(1),
    )
    .build()
}
