//! Finds the allocator entry points a file defines, by symbol: the malloc family of a C
//! library, jemalloc (also under its `je_` and tikv-jemallocator's `_rjem_` prefixes),
//! mimalloc and tcmalloc; and, in a Go binary, the runtime's heap-profiling hooks.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use iced_x86::Register;
use object::{Object, ObjectSymbol, ReadRef};
use profiler_common::heap_fn;

use crate::collect::probe_point::{Reads, probe_point};
use crate::collect::target_elf::{self, Links, Refusal};
use crate::process::elf_data::{bytes_at, file_offset};

/// What a probed entry point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Allocates (or resizes); the [`heap_fn`] says where its arguments are.
    Alloc(u64),
    /// Frees the block in its first argument.
    Free,
}

/// The allocator entry points by name, as C libraries and well-known allocators export them.
const C_NAMES: &[(&str, Role)] = &[
    ("malloc", Role::Alloc(heap_fn::SIZE)),
    ("calloc", Role::Alloc(heap_fn::CALLOC)),
    ("realloc", Role::Alloc(heap_fn::REALLOC)),
    ("reallocarray", Role::Alloc(heap_fn::REALLOCARRAY)),
    ("posix_memalign", Role::Alloc(heap_fn::POSIX_MEMALIGN)),
    ("aligned_alloc", Role::Alloc(heap_fn::ALIGNED)),
    ("memalign", Role::Alloc(heap_fn::ALIGNED)),
    ("valloc", Role::Alloc(heap_fn::SIZE)),
    ("pvalloc", Role::Alloc(heap_fn::SIZE)),
    ("free", Role::Free),
    ("cfree", Role::Free),
];

/// jemalloc's own entry points, beside the C names it may export under a prefix.
const JEMALLOC_NAMES: &[(&str, Role)] = &[
    ("mallocx", Role::Alloc(heap_fn::SIZE)),
    ("rallocx", Role::Alloc(heap_fn::REALLOC)),
    ("sdallocx", Role::Free),
    ("dallocx", Role::Free),
];

/// Prefixes jemalloc builds export its names under: tikv-jemallocator's (Rust) and the
/// library's own `je_`.
const JEMALLOC_PREFIXES: &[&str] = &["_rjem_", "je_"];

/// mimalloc's entry points (the Rust `mimalloc` crate calls the aligned ones).
const MIMALLOC_NAMES: &[(&str, Role)] = &[
    ("mi_malloc", Role::Alloc(heap_fn::SIZE)),
    ("mi_zalloc", Role::Alloc(heap_fn::SIZE)),
    ("mi_calloc", Role::Alloc(heap_fn::CALLOC)),
    ("mi_realloc", Role::Alloc(heap_fn::REALLOC)),
    ("mi_malloc_aligned", Role::Alloc(heap_fn::SIZE_ALIGNED)),
    ("mi_zalloc_aligned", Role::Alloc(heap_fn::SIZE_ALIGNED)),
    ("mi_realloc_aligned", Role::Alloc(heap_fn::REALLOC)),
    ("mi_free", Role::Free),
];

/// tcmalloc's entry points (it also exports the C names as aliases, deduplicated by
/// address).
const TCMALLOC_NAMES: &[(&str, Role)] = &[
    ("tc_malloc", Role::Alloc(heap_fn::SIZE)),
    ("tc_calloc", Role::Alloc(heap_fn::CALLOC)),
    ("tc_realloc", Role::Alloc(heap_fn::REALLOC)),
    ("tc_memalign", Role::Alloc(heap_fn::ALIGNED)),
    ("tc_posix_memalign", Role::Alloc(heap_fn::POSIX_MEMALIGN)),
    ("tc_free", Role::Free),
];

/// One entry point to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    /// Its symbol (the first name found at its address).
    pub name: String,
    /// What it does.
    pub role: Role,
    /// The file offset the uprobe goes at: the entry, or the first instruction after it
    /// that costs one trap ([`probe_point`]).
    pub file_offset: u64,
    /// Whether the kernel emulates the probed instruction (else each hit costs a second
    /// trap, to execute it out of line).
    pub emulated: bool,
    /// Whether it is exported under a C name (`malloc`, `free`...): an `LD_PRELOAD`
    /// interposer takes those calls and passes them on to it, so it needs no probe there.
    pub interposed: bool,
}

/// The Go runtime's heap-profiling hooks in a Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoRuntime {
    /// `runtime.buildVersion`, such as `go1.21.13`.
    pub version: String,
    /// File offset `runtime.mProf_Malloc` is probed at (past its stack check).
    pub malloc_offset: u64,
    /// Whether `mProf_Malloc` takes `(mp, p, size)` (from Go 1.23) rather than `(p, size)`.
    pub malloc_takes_m: bool,
    /// Whether the binary is position independent (loaded at an address known only once
    /// it runs).
    pub pie: bool,
    /// File offset `runtime.freeSpecial` is probed at, if the binary has it.
    pub free_offset: Option<u64>,
    /// `freeSpecial`'s cookie: `_KindSpecialProfile` and the offset of `special.kind`.
    pub free_cookie: u64,
    /// Whether the linker disabled memory profiling (nothing references
    /// `runtime.MemProfile`): the runtime then never samples.
    pub profiling_disabled: bool,
    /// Virtual address of `runtime.MemProfileRate`, to read from the process.
    pub rate_address: Option<u64>,
    /// Link-time address minus file offset of the code: with a mapping's start and
    /// offset, gives where the binary was loaded.
    pub code_delta: u64,
    /// Link-time address range of `runtime.systemstack`: the runtime's own allocations made
    /// on the system stack belong to the runtime, as Go's profile has them, not to the
    /// goroutine whose frames lie beyond it.
    pub systemstack: Option<(u64, u64)>,
}

/// What a file offers to the heap profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocators {
    /// Native entry points, one per address.
    pub entry_points: Vec<EntryPoint>,
    /// The Go runtime's hooks, for a Go binary.
    pub go: Option<GoRuntime>,
}

impl Allocators {
    /// Reads `path`'s symbols (and the code at the entry points), within
    /// [`target_elf`]'s budget: never the whole file.
    ///
    /// # Errors
    /// When the file cannot be opened, is not a regular ELF file, or what is needed of it
    /// is over the budget ([`Refusal::OverBudget`], to be shown).
    pub fn of_file(path: &Path, links: Links) -> Result<Self, Refusal> {
        let data = target_elf::open(path, links)?;
        let file = target_elf::parse(&data)?;
        let found = Self::of_object(&file);
        // A Go runtime whose code or data was refused for its size is not silently
        // missing: the file is refused as a whole.
        match target_elf::over_budget(&data) {
            Some(refusal) if found.go.is_none() && found.entry_points.is_empty() => Err(refusal),
            _ => Ok(found),
        }
    }

    fn of_object<'data, R: ReadRef<'data>>(file: &object::File<'data, R>) -> Self {
        let mut wanted: HashMap<String, Role> = HashMap::new();
        for &(name, role) in C_NAMES.iter().chain(MIMALLOC_NAMES).chain(TCMALLOC_NAMES) {
            wanted.insert(name.to_owned(), role);
        }
        for &(name, role) in JEMALLOC_NAMES {
            wanted.insert(name.to_owned(), role);
        }
        for prefix in JEMALLOC_PREFIXES {
            for &(name, role) in C_NAMES.iter().chain(JEMALLOC_NAMES) {
                wanted.insert(format!("{prefix}{name}"), role);
            }
        }
        let mut by_address: BTreeMap<u64, (String, Role, u64)> = BTreeMap::new();
        let mut c_named: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut addresses: HashMap<String, u64> = HashMap::new();
        let mut sizes: HashMap<String, u64> = HashMap::new();
        for symbol in file.dynamic_symbols().chain(file.symbols()) {
            if !symbol.is_definition() {
                continue;
            }
            let Ok(name) = symbol.name() else { continue };
            if name.starts_with("runtime.") {
                addresses.insert(name.to_owned(), symbol.address());
                sizes.insert(name.to_owned(), symbol.size());
                continue;
            }
            if symbol.kind() != object::SymbolKind::Text {
                continue;
            }
            // glibc's versioned duplicates (`malloc@@GLIBC_2.2.5`) name the same address.
            if C_NAMES.iter().any(|&(c, _)| c == name) {
                c_named.insert(symbol.address());
            }
            if let Some(&role) = wanted.get(name) {
                by_address.entry(symbol.address()).or_insert((
                    name.to_owned(),
                    role,
                    symbol.size(),
                ));
            }
        }
        let entry_points = by_address
            .into_iter()
            .filter_map(|(address, (name, role, size))| {
                let reads = match role {
                    Role::Alloc(_) => C_ALLOC_READS,
                    Role::Free => C_FREE_READS,
                };
                let (at, point) = probe_point(file, address, size, reads);
                let emulated = point.emulated;
                Some(EntryPoint {
                    name,
                    role,
                    file_offset: file_offset(file, at)?,
                    emulated,
                    interposed: c_named.contains(&address),
                })
            })
            .collect();
        Self {
            entry_points,
            go: go_runtime(file, &addresses, &sizes).map(|mut go| {
                // An assembly function: named with its ABI (`.abi0`) from Go 1.17.
                go.systemstack = ["runtime.systemstack.abi0", "runtime.systemstack"]
                    .into_iter()
                    .find_map(|name| addresses.get(name).zip(sizes.get(name)))
                    .map(|(&at, &size)| (at, at + size));
                go
            }),
        }
    }
}

/// The file offset of the function `name` in the ELF file at `path`, if it defines it
/// (the profiler's own files: a link is followed, to a regular file only).
pub fn function_offset(path: &Path, name: &str) -> Option<u64> {
    let data = target_elf::open(path, Links::Followed).ok()?;
    let file = target_elf::parse(&data).ok()?;
    let symbol = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.is_definition() && s.name() == Ok(name))?;
    file_offset(&file, symbol.address())
}

/// What `heap_alloc` and its uretprobe read: the arguments of any allocating function.
const C_ALLOC_READS: Reads = Reads {
    registers: &[Register::RDI, Register::RSI, Register::RDX],
    go: false,
    morestack_aware: false,
};

/// What `heap_free` reads: the pointer.
const C_FREE_READS: Reads = Reads {
    registers: &[Register::RDI],
    go: false,
    morestack_aware: false,
};

/// What `go_malloc` and `go_free` read: the first three arguments of Go's register ABI.
const GO_READS: Reads = Reads {
    registers: &[Register::RAX, Register::RBX, Register::RCX],
    go: true,
    morestack_aware: false,
};

/// Exactly `len` bytes of the file's initialized data at virtual address `address`.
fn read_at<'data, R: ReadRef<'data>>(
    file: &object::File<'data, R>,
    address: u64,
    len: u64,
) -> Option<&'data [u8]> {
    bytes_at(file, address, len).filter(|bytes| bytes.len() as u64 == len)
}

fn go_runtime<'data, R: ReadRef<'data>>(
    file: &object::File<'data, R>,
    symbols: &HashMap<String, u64>,
    sizes: &HashMap<String, u64>,
) -> Option<GoRuntime> {
    let malloc = *symbols.get("runtime.mProf_Malloc")?;
    let version = symbols
        .get("runtime.buildVersion")
        .and_then(|&at| read_at(file, at, 16))
        .and_then(|header| {
            let ptr = u64::from_le_bytes(header[..8].try_into().ok()?);
            let len = u64::from_le_bytes(header[8..16].try_into().ok()?);
            let text = read_at(file, ptr, len.min(64))?;
            Some(String::from_utf8_lossy(text).into_owned())
        })
        .unwrap_or_default();
    let (major, minor) = go_version(&version);
    let newer = |m: u32| (major, minor) >= (1, m);
    let profile_kind: u64 = if newer(26) {
        4
    } else if newer(23) {
        3
    } else {
        2
    };
    let kind_offset: u64 = if newer(22) { 16 } else { 10 };
    let profiling_disabled = symbols
        .get("runtime.disableMemoryProfiling")
        .and_then(|&at| read_at(file, at, 1))
        .is_some_and(|b| b[0] != 0);
    let probed = |name: &str, at: u64| {
        let size = sizes.get(name).copied().unwrap_or(0);
        file_offset(file, probe_point(file, at, size, GO_READS).0)
    };
    Some(GoRuntime {
        version,
        malloc_offset: probed("runtime.mProf_Malloc", malloc)?,
        malloc_takes_m: newer(23),
        pie: file.kind() != object::ObjectKind::Executable,
        free_offset: symbols
            .get("runtime.freeSpecial")
            .and_then(|&at| probed("runtime.freeSpecial", at)),
        free_cookie: profile_kind | (kind_offset << 8),
        profiling_disabled,
        rate_address: symbols.get("runtime.MemProfileRate").copied(),
        code_delta: malloc - file_offset(file, malloc)?,
        systemstack: None,
    })
}

/// `(major, minor)` of a version such as `go1.21.13` (`(0, 0)` when unreadable).
pub fn go_version(version: &str) -> (u32, u32) {
    let mut parts = version
        .trim_start_matches("go")
        .split(['.', 'r', 'b', ' ', '-']);
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_c_library_s_malloc_family() {
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("a C library");
        let found = Allocators::of_file(libc, Links::Followed).unwrap();
        let names: Vec<&str> = found.entry_points.iter().map(|e| e.name.as_str()).collect();
        for name in ["malloc", "calloc", "realloc", "free", "posix_memalign"] {
            assert!(names.contains(&name), "{names:?}");
        }
        let mut offsets: Vec<u64> = found.entry_points.iter().map(|e| e.file_offset).collect();
        offsets.dedup();
        assert_eq!(
            offsets.len(),
            found.entry_points.len(),
            "one probe per address"
        );
        assert!(found.go.is_none());
        // glibc's malloc starts with a push and its free with `test; je`: both are probed
        // where the kernel emulates, one trap a call.
        let stepped: Vec<&str> = found
            .entry_points
            .iter()
            .filter(|e| !e.emulated)
            .map(|e| e.name.as_str())
            .collect();
        for name in ["malloc", "free"] {
            assert!(!stepped.contains(&name), "single-stepped: {stepped:?}");
        }
    }

    #[test]
    fn reads_go_versions() {
        assert_eq!(go_version("go1.21.13"), (1, 21));
        assert_eq!(go_version("go1.27rc1"), (1, 27));
        assert_eq!(go_version(""), (0, 0));
    }
}
