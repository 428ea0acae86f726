//! JIT runtimes whose code the CPU profile could not name: a HotSpot JVM or Node.js
//! process most of whose samples are in anonymous executable memory with no perf map to
//! name it. The finding says what names it (`--jit-maps`, `--perf-basic-prof`).

use std::collections::HashMap;

use profiler_model::labels::LabelKey;
use profiler_model::{FrameKind, Profile, Unnamed};

/// The share of a process's CPU samples in unnamed JIT code that is a finding: its
/// profile is then mostly `[anon]`.
pub const MIN_SHARE: f64 = 0.5;

/// A runtime that compiles code at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JitRuntime {
    /// A HotSpot JVM (it maps `libjvm.so`).
    HotSpot,
    /// Node.js (V8), by its executable or `libnode.so`.
    Node,
}

impl JitRuntime {
    /// The runtime a mapped file belongs to, by its name.
    fn of_mapping(path: &str) -> Option<Self> {
        let file = path.rsplit('/').next().unwrap_or(path);
        if file == "libjvm.so" {
            Some(Self::HotSpot)
        } else if matches!(file, "node" | "nodejs") || file.starts_with("libnode.so") {
            Some(Self::Node)
        } else {
            None
        }
    }
}

/// One process of a JIT runtime whose CPU samples are mostly in unnamed JIT code.
#[derive(Debug, Clone, PartialEq)]
pub struct UnnamedJit {
    /// Its runtime.
    pub runtime: JitRuntime,
    /// Its pid.
    pub pid: i64,
    /// Its command name.
    pub comm: String,
    /// The value (default sample type) of its samples whose innermost user frame is
    /// unnamed anonymous code.
    pub unnamed: i64,
    /// The value of all its samples.
    pub total: i64,
}

impl UnnamedJit {
    /// `unnamed` as a fraction of `total`.
    pub fn share(&self) -> f64 {
        self.unnamed as f64 / self.total.max(1) as f64
    }
}

/// What one process's samples held.
#[derive(Default)]
struct Tally {
    runtime: Option<JitRuntime>,
    comm: String,
    unnamed: i64,
    total: i64,
}

/// The processes of a CPU profile that run a JIT runtime and have at least
/// [`MIN_SHARE`] of their samples in unnamed JIT code, the most unnamed first.
pub fn unnamed_jit(profile: &Profile) -> Vec<UnnamedJit> {
    let index = profile.default_sample_type;
    let mut by_pid: HashMap<i64, Tally> = HashMap::new();
    for sample in &profile.samples {
        let Some(pid) = sample.label_num(LabelKey::Pid) else {
            continue;
        };
        let tally = by_pid.entry(pid).or_default();
        let value = sample.value(index);
        tally.total += value;
        if tally.comm.is_empty() {
            tally.comm = sample.label_str(LabelKey::Comm).unwrap_or("").to_owned();
        }
        let mut leaf = true;
        for &id in profile.stack(sample.stack) {
            let location = profile.location(id);
            if location.kind.is_kernel() {
                continue;
            }
            if leaf && location.kind == FrameKind::Unnamed(Unnamed::Anonymous) {
                tally.unnamed += value;
            }
            leaf = false;
            if tally.runtime.is_some() {
                break;
            }
            tally.runtime = location
                .mapping
                .and_then(|m| JitRuntime::of_mapping(&profile.mapping(m).path));
        }
    }
    let mut found: Vec<UnnamedJit> = by_pid
        .into_iter()
        .filter_map(|(pid, t)| {
            Some(UnnamedJit {
                runtime: t.runtime?,
                pid,
                comm: t.comm,
                unnamed: t.unnamed,
                total: t.total,
            })
        })
        .filter(|u| u.total > 0 && u.share() >= MIN_SHARE)
        .collect();
    found.sort_by_key(|u| (std::cmp::Reverse(u.unnamed), u.pid));
    found
}

#[cfg(test)]
mod tests {
    use profiler_model::{Label, Line, Location, Mapping, ProfileBuilder, ValueType};
    use std::time::{Duration, SystemTime};

    use super::*;

    /// A profile of one process: `unnamed` samples in anonymous code called from `lib`,
    /// `named` in a function of `lib`.
    fn process(lib: &str, unnamed: i64, named: i64) -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let mapping = b.mapping(Mapping {
            start: 0x1000,
            limit: 0x2000,
            file_offset: 0,
            path: lib.to_owned(),
            build_id: None,
        });
        let line = |f: &str| Line {
            function: f.to_owned(),
            file: None,
            line: 0,
        };
        let named_at = b.location(Location {
            address: 0x1100,
            mapping: Some(mapping),
            lines: vec![line("JavaMain")],
            kind: FrameKind::Function,
        });
        let anon = b.location(Location {
            address: 0x7000,
            mapping: None,
            lines: vec![line("[anon]")],
            kind: FrameKind::Unnamed(Unnamed::Anonymous),
        });
        let labels = vec![
            Label::num(LabelKey::Pid, 42),
            Label::str(LabelKey::Comm, "java"),
        ];
        let jit = b.stack(vec![anon, named_at]);
        let own = b.stack(vec![named_at]);
        b.add_sample(jit, &[unnamed], labels.clone());
        b.add_sample(own, &[named], labels);
        b.build()
    }

    #[test]
    fn a_jvm_mostly_in_unnamed_code_is_found() {
        let found = unnamed_jit(&process(
            "/usr/lib/jvm/java-17/lib/server/libjvm.so",
            90,
            10,
        ));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].runtime, JitRuntime::HotSpot);
        assert_eq!(
            (found[0].pid, found[0].unnamed, found[0].total),
            (42, 90, 100)
        );
        assert_eq!(found[0].comm, "java");
        assert_eq!(
            unnamed_jit(&process("/usr/bin/node", 60, 40))[0].runtime,
            JitRuntime::Node
        );
    }

    #[test]
    fn mostly_named_or_not_a_jit_runtime_is_not_found() {
        assert!(unnamed_jit(&process("/usr/lib/libjvm.so", 40, 60)).is_empty());
        assert!(unnamed_jit(&process("/usr/bin/luajit", 90, 10)).is_empty());
    }
}
