//! Self and total values per function, as the terminal summary and the report's function
//! table both rank them. Addresses no symbol names are one row per library: split per
//! address, a stripped library's hot code is dozens of rows of a percent each (issue 25:
//! libcrypto's SHA, 19% of the samples over 37 rows).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use profiler_model::{FrameKind, Line, Location, Profile, StackId, Unnamed};

/// What a row of a function table stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FunctionName<'a> {
    /// A function, or a stand-in with no file behind it (`[unknown]`, a lost stack).
    Named(&'a str),
    /// A Python function, with the base name of its source file: a function name alone
    /// is many (`main`, `run`, `__init__` of every module).
    Python {
        /// Its qualified name.
        function: &'a str,
        /// Its file's base name (`server.py`).
        file: &'a str,
    },
    /// Every address of one file (by base name, as frames name it) that has no name.
    Unnamed {
        /// The file's base name (`libcrypto.so.3`).
        library: &'a str,
        /// Whether the file's symbols were read and none covered the addresses, rather
        /// than the file not being read (not held, unreadable, over a budget).
        read: bool,
    },
}

impl<'a> FunctionName<'a> {
    /// The row of the frame at `line` of `location`.
    fn of(profile: &'a Profile, location: &'a Location, line: &'a Line) -> Self {
        if let (FrameKind::Python, Some(file)) = (location.kind, &line.file) {
            return Self::Python {
                function: &line.function,
                file: file.rsplit('/').next().unwrap_or(file),
            };
        }
        let line = line.function.as_str();
        let read = match location.kind {
            FrameKind::Unnamed(Unnamed::NoSymbol | Unnamed::NoDebugInfo)
            | FrameKind::KernelUnnamed => true,
            FrameKind::Unnamed(_) => false,
            _ => return Self::Named(line),
        };
        let Some(mapping) = location.mapping else {
            return Self::Named(line);
        };
        // The base name, as profiler_model::module_offset names the frame.
        let path = profile.mapping(mapping).path.as_str();
        let library = path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("[anon]");
        Self::Unnamed { library, read }
    }

    /// The row's name: the function's, or `libcrypto.so.3 (no symbols)`.
    pub fn label(&self) -> Cow<'a, str> {
        match *self {
            Self::Named(name) => Cow::Borrowed(name),
            Self::Python { function, file } => Cow::Owned(format!("{function} ({file})")),
            Self::Unnamed {
                library,
                read: true,
            } => Cow::Owned(format!("{library} (no symbols)")),
            Self::Unnamed {
                library,
                read: false,
            } => Cow::Owned(format!("{library} (not symbolized)")),
        }
    }
}

/// One function's values, one per sample type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionValues {
    /// Of the stacks the function is the innermost frame of.
    pub self_values: Vec<i64>,
    /// Of the stacks it appears in, once per stack even when recursive.
    pub total_values: Vec<i64>,
}

/// Per function, its self and total value of every sample type; the unnamed addresses of
/// a file are one row.
pub fn function_values(profile: &Profile) -> HashMap<FunctionName<'_>, FunctionValues> {
    let types = profile.sample_types.len();
    let zero = || FunctionValues {
        self_values: vec![0; types],
        total_values: vec![0; types],
    };
    // Summed by stack first, so each distinct stack is walked once however many samples
    // (threads, processes, labels) share it: a file can repeat one deep stack in every
    // sample.
    let mut by_stack: HashMap<StackId, Vec<i64>> = HashMap::new();
    for sample in &profile.samples {
        let sums = by_stack
            .entry(sample.stack)
            .or_insert_with(|| vec![0; types]);
        for (t, slot) in sums.iter_mut().enumerate() {
            *slot = slot.saturating_add(sample.value(t));
        }
    }
    let mut rows: HashMap<FunctionName<'_>, FunctionValues> = HashMap::new();
    for (stack, values) in by_stack {
        let value = |t: usize| values[t];
        // The innermost line of the leaf location is the function actually running;
        // frames inlined around it are its callers.
        let leaf = profile
            .stack(stack)
            .first()
            .map(|&l| profile.location(l))
            .and_then(|l| Some(FunctionName::of(profile, l, l.lines.first()?)))
            .unwrap_or(FunctionName::Named("[unknown]"));
        // Saturating throughout: values read from a file can add up past i64::MAX.
        let row = rows.entry(leaf).or_insert_with(zero);
        for (t, slot) in row.self_values.iter_mut().enumerate() {
            *slot = slot.saturating_add(value(t));
        }
        // A set, so a recursive function is counted once per stack: otherwise its total
        // could exceed the profile's.
        let functions: HashSet<FunctionName<'_>> = profile
            .stack(stack)
            .iter()
            .map(|&l| profile.location(l))
            .flat_map(|l| {
                l.lines
                    .iter()
                    .map(move |line| FunctionName::of(profile, l, line))
            })
            .collect();
        for f in functions {
            let row = rows.entry(f).or_insert_with(zero);
            for (t, slot) in row.total_values.iter_mut().enumerate() {
                *slot = slot.saturating_add(value(t));
            }
        }
    }
    rows
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::{line, location};
    use profiler_model::{Mapping, ProfileBuilder, ProfileKind, ValueType, module_offset};

    use super::*;

    /// `main` calling three addresses of a stripped `libhot.so` (5, 3 and 2 samples, one
    /// of them through another), and `main` itself (1 sample).
    pub(crate) fn stripped_library() -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            ProfileKind::Cpu,
            vec![ValueType::new("samples", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let exe = b.mapping(Mapping {
            start: 0x1000,
            limit: 0x2000,
            file_offset: 0,
            path: "/bin/app".to_owned(),
            build_id: None,
        });
        let lib = b.mapping(Mapping {
            start: 0x7000,
            limit: 0x9000,
            file_offset: 0,
            path: "/opt/lib/libhot.so".to_owned(),
            build_id: None,
        });
        let main = b.location(location(0x1100, Some(exe), vec![line("main")]));
        let mut unnamed = |address: u64, why: Unnamed| {
            let name = module_offset(Some("/opt/lib/libhot.so"), address - 0x7000);
            let mut l = location(address, Some(lib), vec![line(&name)]);
            l.kind = FrameKind::Unnamed(why);
            b.location(l)
        };
        let (x, y, z) = (
            unnamed(0x7100, Unnamed::NoSymbol),
            unnamed(0x7200, Unnamed::NoSymbol),
            unnamed(0x7300, Unnamed::NoDebugInfo),
        );
        let stacks = [
            (vec![x, main], 5),
            (vec![y, main], 3),
            (vec![z, y, main], 2),
            (vec![main], 1),
        ];
        for (frames, n) in stacks {
            let s = b.stack(frames);
            b.add_sample(s, &[n], vec![]);
        }
        b.build()
    }

    #[test]
    fn a_files_unnamed_addresses_are_one_row() {
        let p = stripped_library();
        let rows = function_values(&p);
        let library = FunctionName::Unnamed {
            library: "libhot.so",
            read: true,
        };
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[&library].self_values, [10]);
        // Once per stack, though one stack holds two of its addresses.
        assert_eq!(rows[&library].total_values, [10]);
        assert_eq!(rows[&FunctionName::Named("main")].self_values, [1]);
        assert_eq!(rows[&FunctionName::Named("main")].total_values, [11]);
        assert_eq!(library.label(), "libhot.so (no symbols)");
    }

    #[test]
    fn unnamed_without_a_file_keeps_its_name() {
        let mut p = stripped_library();
        for l in &mut p.locations {
            if matches!(l.kind, FrameKind::Unnamed(_)) {
                l.mapping = None;
                l.kind = FrameKind::Unnamed(Unnamed::NoMapping);
                l.lines = vec![line("[unknown]")];
            }
        }
        let rows = function_values(&p);
        assert_eq!(rows[&FunctionName::Named("[unknown]")].self_values, [10]);
        let unread = FunctionName::Unnamed {
            library: "libhot.so",
            read: false,
        };
        assert_eq!(unread.label(), "libhot.so (not symbolized)");
    }
}
