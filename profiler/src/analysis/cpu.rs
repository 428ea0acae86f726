//! CPU hot spots in memory management: time in the allocator (malloc/free and their kin in
//! C, C++, Rust and Go) or in Go's garbage collector, and what to do when it is a large share.

use std::collections::{BTreeSet, HashMap};

use profiler_model::{Profile, StackId};

use super::language::{self, Language};

/// The share of the CPU profile (by total, default sample type) that allocator or GC frames
/// must reach to be a finding: below it, memory management is not what to fix first.
pub const MIN_SHARE: f64 = 0.05;

/// How many matching functions and callers a finding names.
const NAMED: usize = 5;

/// What part of memory management the CPU went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Allocating and freeing: malloc, free, calloc, realloc, `operator new`,
    /// `runtime.mallocgc`, ...
    Allocation,
    /// Go's garbage collector: `runtime.gcBgMarkWorker`, `runtime.scanobject`, ...
    GarbageCollection,
}

impl Kind {
    /// A short name for headings: "allocation", "garbage collection".
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Allocation => "allocation",
            Kind::GarbageCollection => "garbage collection",
        }
    }
}

/// A large share of the CPU profile in allocator or GC frames.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryHotSpot {
    /// Allocation or garbage collection.
    pub kind: Kind,
    /// The value (default sample type) of the stacks with a frame of this kind.
    pub value: i64,
    /// The profile's total of that sample type.
    pub total: i64,
    /// The matching functions, most total value first.
    pub functions: Vec<(String, i64)>,
    /// The functions that called into them (the frame just above the outermost match),
    /// most value first.
    pub callers: Vec<(String, i64)>,
    /// What to do, in the language of the heaviest caller.
    pub hint: String,
}

impl MemoryHotSpot {
    /// `value` as a fraction of `total`.
    pub fn share(&self) -> f64 {
        if self.total > 0 {
            self.value as f64 / self.total as f64
        } else {
            0.0
        }
    }
}

/// The allocator and GC hot spots of a CPU profile that reach [`MIN_SHARE`].
pub fn memory_hot_spots(profile: &Profile) -> Vec<MemoryHotSpot> {
    memory_hot_spots_over(profile, MIN_SHARE)
}

/// The allocator and GC hot spots whose stacks hold at least `min_share` of the default
/// sample type, allocation first.
pub fn memory_hot_spots_over(profile: &Profile, min_share: f64) -> Vec<MemoryHotSpot> {
    #[derive(Default)]
    struct Acc<'p> {
        value: i64,
        functions: HashMap<&'p str, i64>,
        callers: HashMap<&'p str, i64>,
        heaviest: Option<(i64, StackId)>,
    }
    let index = profile.default_sample_type;
    let total = profile.total(index);
    let mut found: HashMap<Kind, Acc> = HashMap::new();
    // By stack: each distinct stack's frames are walked once.
    for (stack, v) in profile.stack_totals(index) {
        // Root first, user frames only: the kernel has its own, unrelated `free`s.
        let frames: Vec<&str> = profile
            .stack(stack)
            .iter()
            .rev()
            .map(|&l| profile.location(l))
            .filter(|loc| !loc.kind.is_kernel())
            .flat_map(|loc| loc.lines.iter().rev())
            .map(|line| line.function.as_str())
            .collect();
        for kind in [Kind::Allocation, Kind::GarbageCollection] {
            let Some(first) = frames.iter().position(|f| kind_of(f) == Some(kind)) else {
                continue;
            };
            let acc = found.entry(kind).or_default();
            // Saturating: values read from a file can add up past i64::MAX.
            acc.value = acc.value.saturating_add(v);
            // A set: recursion (or free called from malloc) counts once per stack.
            let matching: BTreeSet<&str> = frames[first..]
                .iter()
                .copied()
                .filter(|f| kind_of(f) == Some(kind))
                .collect();
            for f in matching {
                let slot = acc.functions.entry(f).or_default();
                *slot = slot.saturating_add(v);
            }
            // The Go runtime's own frames above the match (gcAssistAlloc under
            // mallocgc, a collector worker under goexit) are not who to look at.
            if let Some(caller) = frames[..first]
                .iter()
                .rev()
                .copied()
                .find(|f| !f.starts_with("runtime."))
            {
                let slot = acc.callers.entry(caller).or_default();
                *slot = slot.saturating_add(v);
            }
            if acc.heaviest.is_none_or(|(w, _)| v > w) {
                acc.heaviest = Some((v, stack));
            }
        }
    }
    let mut spots: Vec<MemoryHotSpot> = found
        .into_iter()
        .filter(|(_, acc)| total > 0 && acc.value as f64 >= min_share * total as f64)
        .map(|(kind, acc)| {
            let language = acc.heaviest.map_or(Language::C, |(_, stack)| {
                language::detect(profile.stack_functions(stack).into_iter().rev())
            });
            MemoryHotSpot {
                kind,
                value: acc.value,
                total,
                functions: ranked(acc.functions),
                callers: ranked(acc.callers),
                hint: hint(kind, language).to_owned(),
            }
        })
        .collect();
    spots.sort_by_key(|s| s.kind);
    spots
}

/// The [`NAMED`] largest entries, largest first, ties by name.
fn ranked(values: HashMap<&str, i64>) -> Vec<(String, i64)> {
    let mut v: Vec<(&str, i64)> = values.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .take(NAMED)
        .map(|(f, n)| (f.to_owned(), n))
        .collect()
}

/// Whether `function` is part of an allocator or of Go's garbage collector.
pub fn kind_of(function: &str) -> Option<Kind> {
    if let Some(go) = function.strip_prefix("runtime.") {
        return go_kind(go);
    }
    // Go's collector as symbolized without its package.
    if function == "scanobject" || function == "gcBgMarkWorker" {
        return Some(Kind::GarbageCollection);
    }
    if function.starts_with("operator new") || function.starts_with("operator delete") {
        return Some(Kind::Allocation);
    }
    // glibc exports malloc as __libc_malloc, __GI___libc_malloc, ...; other allocators
    // prefix their names (je_, tc_, mi_): compare what is left.
    let mut base = function.trim_start_matches('_');
    for prefix in ["GI_", "libc_", "je_", "tc_", "mi_", "rust_", "rdl_", "rg_"] {
        base = base
            .strip_prefix(prefix)
            .unwrap_or(base)
            .trim_start_matches('_');
    }
    let exact = [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "cfree",
        "reallocarray",
        "memalign",
        "posix_memalign",
        "aligned_alloc",
        "valloc",
        "pvalloc",
        "sysmalloc",
        "malloc_consolidate",
        "alloc",
        "dealloc",
        "alloc_zeroed",
    ];
    let internals = [
        "int_malloc",
        "int_free",
        "int_realloc",
        "int_memalign",
        "tcache_",
    ];
    let rust = function.starts_with("__rust_") || function.starts_with("__rdl_");
    let is_alloc = (exact.contains(&base)
        // `alloc`/`dealloc` alone are too common a name outside Rust's allocator shims.
        && (rust || !matches!(base, "alloc" | "dealloc" | "alloc_zeroed")))
        || internals.iter().any(|p| base.starts_with(p));
    is_alloc.then_some(Kind::Allocation)
}

/// The kind of a Go runtime function, named without its `runtime.` prefix.
fn go_kind(name: &str) -> Option<Kind> {
    const ALLOC: [&str; 8] = [
        "mallocgc",
        "newobject",
        "makeslice",
        "growslice",
        "makemap",
        "newarray",
        "(*mcache).nextFree",
        "(*mcache).refill",
    ];
    const GC: [&str; 16] = [
        "gcBgMarkWorker",
        "gcDrain",
        "scanobject",
        "scanblock",
        "scanstack",
        "scanframeworker",
        "markroot",
        "greyobject",
        "gcAssistAlloc",
        "gcMarkDone",
        "gcMarkTermination",
        "bgsweep",
        "sweepone",
        "(*mspan).sweep",
        "(*sweepLocked).sweep",
        "wbBufFlush",
    ];
    if GC.iter().any(|p| name.starts_with(p)) {
        Some(Kind::GarbageCollection)
    } else if ALLOC.iter().any(|p| name.starts_with(p)) {
        Some(Kind::Allocation)
    } else {
        None
    }
}

/// What to do about a memory hot spot of `kind` in code written in `language`.
fn hint(kind: Kind, language: Language) -> &'static str {
    match (kind, language) {
        (Kind::GarbageCollection, Language::Go) => {
            "the garbage collector is busy because the program allocates a lot: allocate less \
             (reuse buffers with sync.Pool, preallocate slices and maps with make(T, 0, n)), or \
             trade memory for CPU with GOGC / GOMEMLIMIT"
        }
        (Kind::GarbageCollection, _) => {
            "the garbage collector is busy: allocate less (reuse buffers, preallocate), or give \
             the heap more room"
        }
        (Kind::Allocation, Language::Go) => {
            "make fewer, larger allocations: reuse buffers (sync.Pool), preallocate slices and \
             maps with make(T, 0, n), and avoid string/[]byte conversions in the hot path"
        }
        (Kind::Allocation, Language::Rust) => {
            "make fewer, larger allocations: reuse buffers (clear() them instead of making new \
             ones), preallocate with Vec::with_capacity / String::with_capacity, and avoid \
             clone() in the hot path"
        }
        (Kind::Allocation, Language::Cpp) => {
            "make fewer, larger allocations: reserve() containers up front, reuse buffers \
             across iterations, and pool small objects (an arena or std::pmr resource)"
        }
        (Kind::Allocation, Language::C) => {
            "make fewer, larger allocations: reuse buffers across iterations instead of \
             malloc/free per item, preallocate to the final size, or carve small objects from \
             a pool or arena"
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::{line, location};
    use profiler_model::{Location, ProfileBuilder, ValueType};

    use super::*;

    /// A CPU profile from (root-first function names, samples) pairs; names starting with
    /// `k:` are kernel frames.
    fn profile(stacks: &[(&[&str], i64)]) -> Profile {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Cpu,
            vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        for (frames, n) in stacks {
            let ids = frames
                .iter()
                .rev()
                .map(|f| match f.strip_prefix("k:") {
                    Some(k) => b.location(Location {
                        kind: profiler_model::FrameKind::Kernel,
                        ..location(k.len() as u64, None, vec![line(k)])
                    }),
                    None => b.location(location(f.len() as u64 + 100, None, vec![line(f)])),
                })
                .collect();
            let stack = b.stack(ids);
            b.add_sample(stack, &[*n, n * 10], vec![]);
        }
        b.build()
    }

    #[test]
    fn names_allocators_and_collectors() {
        for f in [
            "malloc",
            "free",
            "calloc",
            "realloc",
            "__libc_malloc",
            "__GI___libc_free",
            "_int_malloc",
            "_int_free_merge_chunk",
            "je_malloc",
            "operator new(unsigned long)",
            "operator delete(void*, unsigned long)",
            "__rust_alloc",
            "__rust_dealloc",
            "runtime.mallocgc",
            "runtime.mallocgcSmallNoscan",
            "runtime.growslice",
        ] {
            assert_eq!(kind_of(f), Some(Kind::Allocation), "{f}");
        }
        for f in [
            "runtime.gcBgMarkWorker",
            "runtime.scanobject",
            "scanobject",
            "runtime.gcDrain",
            "runtime.gcAssistAlloc1",
        ] {
            assert_eq!(kind_of(f), Some(Kind::GarbageCollection), "{f}");
        }
        for f in [
            "main",
            "freeze",
            "free_list_pop",
            "alloc",
            "kfree",
            "runtime.main",
        ] {
            assert_eq!(kind_of(f), None, "{f}");
        }
    }

    #[test]
    fn flags_allocation_over_the_threshold_by_total() {
        let p = profile(&[
            (&["main", "parse", "malloc", "_int_malloc"], 6),
            (&["main", "parse", "free"], 4),
            (&["main", "burn"], 90),
        ]);
        let spots = memory_hot_spots(&p);
        assert_eq!(spots.len(), 1, "{spots:?}");
        let s = &spots[0];
        assert_eq!((s.kind, s.value, s.total), (Kind::Allocation, 10, 100));
        assert!((s.share() - 0.10).abs() < 1e-9);
        assert_eq!(
            s.functions,
            [
                ("_int_malloc".to_owned(), 6),
                ("malloc".to_owned(), 6),
                ("free".to_owned(), 4)
            ]
        );
        assert_eq!(s.callers, [("parse".to_owned(), 10)]);
        assert!(s.hint.contains("fewer, larger allocations"), "{}", s.hint);
        assert!(s.hint.contains("malloc/free"), "C hint: {}", s.hint);
    }

    #[test]
    fn below_the_threshold_is_no_finding() {
        let p = profile(&[(&["main", "malloc"], 4), (&["main", "burn"], 96)]);
        assert!(memory_hot_spots(&p).is_empty());
        assert_eq!(memory_hot_spots_over(&p, 0.04).len(), 1);
        assert!(memory_hot_spots(&profile(&[])).is_empty());
    }

    #[test]
    fn kernel_frames_do_not_count() {
        let p = profile(&[(&["main", "k:free"], 50), (&["main", "burn"], 50)]);
        assert!(memory_hot_spots(&p).is_empty());
    }

    #[test]
    fn go_collector_and_allocator_get_go_hints() {
        let p = profile(&[
            (
                &[
                    "runtime.goexit",
                    "runtime.gcBgMarkWorker",
                    "runtime.gcDrain",
                    "runtime.scanobject",
                ],
                20,
            ),
            (
                &[
                    "runtime.main",
                    "main.main",
                    "main.build",
                    "runtime.mallocgc",
                ],
                10,
            ),
            (&["runtime.main", "main.main", "main.work"], 70),
        ]);
        let spots = memory_hot_spots(&p);
        assert_eq!(
            spots.iter().map(|s| (s.kind, s.value)).collect::<Vec<_>>(),
            [(Kind::Allocation, 10), (Kind::GarbageCollection, 20)]
        );
        assert!(spots[0].hint.contains("sync.Pool"), "{}", spots[0].hint);
        assert_eq!(spots[0].callers, [("main.build".to_owned(), 10)]);
        assert!(spots[1].hint.contains("GOGC"), "{}", spots[1].hint);
        assert_eq!(
            spots[1].functions[0],
            ("runtime.gcBgMarkWorker".to_owned(), 20)
        );
    }

    #[test]
    fn recursion_counts_once_per_stack() {
        let p = profile(&[(&["main", "malloc", "free", "malloc"], 10)]);
        let s = &memory_hot_spots(&p)[0];
        assert_eq!(s.value, 10);
        assert_eq!(
            s.functions,
            [("free".to_owned(), 10), ("malloc".to_owned(), 10)]
        );
    }
}
