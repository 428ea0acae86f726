//! What the heap profile means: allocation sites by the code that called the allocator,
//! sites making many small allocations (with the fix in their language), and sites whose
//! memory in use only grew during the window (leak suspects).

use std::collections::HashMap;

use profiler_model::LabelKey;
use profiler_model::labels::ONLY_GREW;
use profiler_model::{FrameKind, HeapValue, Profile};

use crate::analysis::language::{self, Language};

/// A site makes many small allocations from this many per second...
pub const MIN_ALLOCS_PER_SEC: f64 = 10_000.0;
/// ...of at most this many bytes on average.
pub const MAX_SMALL_BYTES: f64 = 256.0;

/// The allocations of one function (the innermost frame outside the allocator and the
/// language's runtime) in one process.
#[derive(Debug, Clone, PartialEq)]
pub struct HeapSite {
    /// Process id.
    pub pid: i64,
    /// Its command name.
    pub comm: String,
    /// The function that allocated.
    pub caller: String,
    /// The language its frames are in.
    pub language: Language,
    /// Allocations made in the window.
    pub alloc_objects: u64,
    /// Bytes they asked for.
    pub alloc_space: u64,
    /// Of them, still live at the end.
    pub inuse_objects: u64,
    /// Their bytes.
    pub inuse_space: u64,
    /// Whether its memory in use only grew during the window.
    pub only_grew: bool,
}

impl HeapSite {
    /// Average bytes per allocation.
    pub fn average(&self) -> f64 {
        self.alloc_space as f64 / self.alloc_objects.max(1) as f64
    }
}

/// A site making many small allocations.
#[derive(Debug, Clone, PartialEq)]
pub struct SmallAllocations {
    /// The site.
    pub site: HeapSite,
    /// Its allocations per second over the window.
    pub per_second: f64,
}

impl SmallAllocations {
    /// What to do, in the site's language.
    pub fn hint(&self) -> &'static str {
        small_allocation_hint(self.site.language)
    }
}

/// The fix for many small allocations, in `language`.
pub fn small_allocation_hint(language: Language) -> &'static str {
    match language {
        Language::Rust => {
            "allocate less often: reserve capacity once (Vec::with_capacity, \
             String::with_capacity), reuse buffers across iterations (clear() keeps the \
             capacity), or combine small objects into one larger one"
        }
        Language::Cpp => {
            "allocate less often: reserve() vectors and strings up front, reuse objects from a \
             pool, or keep small objects by value in one container instead of one new each"
        }
        Language::Go => {
            "allocate less often: presize slices and maps (make with a capacity), build \
             strings with strings.Builder, reuse temporaries through sync.Pool, or combine \
             small objects into one larger one"
        }
        Language::C => {
            "allocate less often: carve small objects out of an arena, keep a free list of \
             them, reuse one buffer across iterations, or combine them into one larger block"
        }
    }
}

/// What to do about a leak suspect.
pub const LEAK_HINT: &str = "memory allocated here only grew during the window and was not \
    freed: check that every block is released (or bounded, for a cache); profile longer to \
    confirm";

/// Frames that belong to the allocator or a language runtime, above the code that asked.
fn is_allocator_frame(function: &str) -> bool {
    const PREFIXES: [&str; 16] = [
        "runtime.",
        "alloc::",
        "<alloc::",
        "core::",
        "<core::",
        "std::",
        "<std::",
        "__rust",
        "__rdl",
        "__rg_",
        "_rjem_",
        "je_",
        "mi_",
        "tc_",
        "operator new",
        "[",
    ];
    const NAMES: [&str; 10] = [
        "malloc",
        "calloc",
        "realloc",
        "free",
        "reallocarray",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
        || NAMES.contains(&function)
        || function.contains("libc_malloc")
        || function.contains("libc_calloc")
        || function.contains("libc_realloc")
}

/// The heap profile's sites, most bytes allocated first.
pub fn sites(profile: &Profile) -> Vec<HeapSite> {
    let mut by_caller: HashMap<(i64, String), HeapSite> = HashMap::new();
    for sample in &profile.samples {
        let stack = &profile.stack(sample.stack);
        let lines: Vec<(&str, bool)> = stack
            .iter()
            .map(|&id| profile.location(id))
            .filter(|loc| matches!(loc.kind, FrameKind::Function | FrameKind::Jit))
            .flat_map(|loc| {
                let system = language::is_system_library(profile, loc);
                loc.lines.iter().map(move |l| (l.function.as_str(), system))
            })
            .collect();
        let caller = lines
            .iter()
            .find(|(f, system)| !system && !is_allocator_frame(f))
            .map_or("[unknown]", |(f, _)| f);
        let pid = sample.label_num(LabelKey::Pid).unwrap_or(0);
        let site = by_caller
            .entry((pid, caller.to_owned()))
            .or_insert_with(|| HeapSite {
                pid,
                comm: sample
                    .label_str(LabelKey::Comm)
                    .unwrap_or_default()
                    .to_owned(),
                caller: caller.to_owned(),
                language: language::detect(lines.iter().map(|(f, _)| *f)),
                alloc_objects: 0,
                alloc_space: 0,
                inuse_objects: 0,
                inuse_space: 0,
                only_grew: false,
            });
        site.alloc_objects += sample.count(HeapValue::AllocObjects.index());
        site.alloc_space += sample.count(HeapValue::AllocSpace.index());
        site.inuse_objects += sample.count(HeapValue::InuseObjects.index());
        site.inuse_space += sample.count(HeapValue::InuseSpace.index());
        site.only_grew |= sample.label_str(LabelKey::Trend) == Some(ONLY_GREW);
    }
    let mut sites: Vec<HeapSite> = by_caller.into_values().collect();
    sites.sort_by(|a, b| {
        b.alloc_space
            .cmp(&a.alloc_space)
            .then(a.pid.cmp(&b.pid))
            .then(a.caller.cmp(&b.caller))
    });
    sites
}

/// The sites making at least [`MIN_ALLOCS_PER_SEC`] allocations per second of at most
/// [`MAX_SMALL_BYTES`] on average, most allocations first.
pub fn small_allocations(sites: &[HeapSite], seconds: f64) -> Vec<SmallAllocations> {
    let mut found: Vec<SmallAllocations> = sites
        .iter()
        .filter(|s| s.alloc_objects > 0 && s.average() <= MAX_SMALL_BYTES)
        .map(|s| SmallAllocations {
            site: s.clone(),
            per_second: s.alloc_objects as f64 / seconds.max(1e-9),
        })
        .filter(|f| f.per_second >= MIN_ALLOCS_PER_SEC)
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.site.alloc_objects));
    found
}

/// The sites whose memory in use only grew during the window, most in use first.
pub fn leak_suspects(sites: &[HeapSite]) -> Vec<HeapSite> {
    let mut found: Vec<HeapSite> = sites
        .iter()
        .filter(|s| s.only_grew && s.inuse_space > 0)
        .cloned()
        .collect();
    found.sort_by_key(|s| std::cmp::Reverse(s.inuse_space));
    found
}

#[cfg(test)]
mod tests {
    use profiler_model::{Label, Line, Location, ProfileBuilder, ProfileKind};

    use super::*;
    use std::time::{Duration, SystemTime};

    fn profile() -> Profile {
        let mut b = ProfileBuilder::new(
            ProfileKind::Heap,
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(2),
        );
        let mut stack = |names: &[&str]| {
            let locations = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    b.location(Location {
                        address: 0x1000 + i as u64,
                        mapping: None,
                        lines: vec![Line {
                            function: (*name).to_owned(),
                            file: None,
                            line: 0,
                        }],
                        kind: FrameKind::Function,
                    })
                })
                .collect();
            b.stack(locations)
        };
        let churn = stack(&[
            "malloc",
            "alloc::raw_vec::finish_grow",
            "app::churn",
            "main",
        ]);
        let keep = stack(&["malloc", "app::keep", "main"]);
        let labels = |trend: bool| {
            let mut l = vec![
                Label::num(LabelKey::Pid, 7),
                Label::str(LabelKey::Comm, "app"),
            ];
            if trend {
                l.push(Label::str(LabelKey::Trend, ONLY_GREW));
            }
            l
        };
        b.add_sample(churn, &[100_000, 3_200_000, 0, 0], labels(false));
        b.add_sample(keep, &[100, 409_600, 100, 409_600], labels(true));
        b.build()
    }

    #[test]
    fn sites_are_the_callers_of_the_allocator() {
        let sites = sites(&profile());
        assert_eq!(sites[0].caller, "app::churn");
        assert_eq!(sites[0].language, Language::Rust);
        assert_eq!(sites[0].average(), 32.0);
        assert_eq!(sites[1].caller, "app::keep");
        let small = small_allocations(&sites, 2.0);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].per_second, 50_000.0);
        assert!(small[0].hint().contains("Vec::with_capacity"));
        let leaks = leak_suspects(&sites);
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].caller, "app::keep");
        assert!(small_allocation_hint(Language::Go).contains("sync.Pool"));
    }
}
