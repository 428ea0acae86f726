//! Ties the eBPF object built into the binary to what userspace knows of it, both ways:
//! every map, program and load-time global named in `profiler_common` (`map_name`,
//! `program_name`, `global_name`) is in the object, the object has none they lack, and each
//! map's key and value are the size of the shared type userspace reads it as. The eBPF
//! crate names its items by their Rust names, which aya's macros take from the item, not
//! from a constant; and the object is built apart from the binary, so a stale one is
//! caught here rather than as a load failure on some host.

use std::collections::BTreeSet;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
use profiler_common::{
    BlockKey, BlockValue, GoWaitKey, GoWaitValue, HeapLive, HeapLiveKey, HeapPending, HeapSiteKey,
    HeapSiteValue, InFlight, IoKey, IoValue, Parked, ParkedKey, SampleRecord, counter, global_name,
    map_name, program_name,
};

/// What aya-log adds to every object that logs; userspace reaches it through aya-log,
/// never by name.
const AYA_LOG_MAPS: [&str; 1] = ["AYA_LOGS"];
const AYA_LOG_GLOBALS: [&str; 1] = ["AYA_LOG_LEVEL"];

fn object() -> aya_obj::Object {
    aya_obj::Object::parse(super::EBPF_OBJECT).expect("the embedded eBPF object parses")
}

/// Fails with what each side lacks when `found` in the object is not `named`.
fn assert_same(what: &str, named: &[&str], found: BTreeSet<String>) {
    let named_set: BTreeSet<String> = named.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(
        named_set.len(),
        named.len(),
        "a {what} is named twice: {named:?}"
    );
    let missing: Vec<&String> = named_set.difference(&found).collect();
    let unnamed: Vec<&String> = found.difference(&named_set).collect();
    assert!(
        missing.is_empty() && unnamed.is_empty(),
        "{what}s named in profiler_common but not in the eBPF object: {missing:?}; in the \
         object but not named in profiler_common: {unnamed:?} (rebuild the object with \
         `cargo xtask build`, or name the {what} in profiler-common/src/names.rs)"
    );
}

#[test]
fn the_object_has_exactly_the_named_maps() {
    let found = object()
        .maps
        .into_keys()
        // The data sections (`.rodata`, `.data`, `.bss`) are maps named after them.
        .filter(|name| !name.starts_with('.') && !AYA_LOG_MAPS.contains(&name.as_str()))
        .collect();
    assert_same("map", &map_name::ALL, found);
}

#[test]
fn the_object_has_exactly_the_named_programs() {
    let found = object().programs.into_keys().collect();
    assert_same("program", &program_name::ALL, found);
}

#[test]
fn the_object_has_exactly_the_named_globals() {
    let file = object::File::parse(super::EBPF_OBJECT).expect("the embedded eBPF object parses");
    // Globals are the global data symbols of the data sections (maps live in `maps`).
    let found = file
        .symbols()
        .filter(|s| s.is_global() && s.kind() == SymbolKind::Data)
        .filter(|s| {
            let section = s
                .section_index()
                .and_then(|i| file.section_by_index(i).ok());
            section
                .is_some_and(|section| matches!(section.name(), Ok(".rodata" | ".data" | ".bss")))
        })
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .filter(|name| !AYA_LOG_GLOBALS.contains(&name.as_str()))
        .collect();
    assert_same("global", &global_name::ALL, found);
}

#[test]
fn each_map_holds_the_shared_types_userspace_reads_it_as() {
    let maps = object().maps;
    let index = size_of::<u32>();
    // (map, key bytes, value bytes): the types of profiler_common both sides use, or 0 for
    // ring buffers, which have neither.
    let expected = [
        (map_name::TARGETS, size_of::<u32>(), size_of::<u8>()),
        (map_name::SAMPLE_SCRATCH, index, size_of::<SampleRecord>()),
        (map_name::SAMPLES, 0, 0),
        (map_name::COUNTERS, index, size_of::<u64>()),
        (map_name::PROC_EVENTS, 0, 0),
        (map_name::IO_CALLS, size_of::<IoKey>(), size_of::<IoValue>()),
        (map_name::IO_SCRATCH, index, size_of::<IoValue>()),
        (
            map_name::BLOCK_WAITS,
            size_of::<BlockKey>(),
            size_of::<BlockValue>(),
        ),
        (map_name::IN_FLIGHT, index, size_of::<InFlight>()),
        (
            map_name::HEAP_SITES,
            size_of::<HeapSiteKey>(),
            size_of::<HeapSiteValue>(),
        ),
        (
            map_name::HEAP_LIVE,
            size_of::<HeapLiveKey>(),
            size_of::<HeapLive>(),
        ),
        (map_name::HEAP_PENDING, index, size_of::<HeapPending>()),
        (
            map_name::PARKED,
            size_of::<ParkedKey>(),
            size_of::<Parked>(),
        ),
        (
            map_name::GO_WAITS,
            size_of::<GoWaitKey>(),
            size_of::<GoWaitValue>(),
        ),
    ];
    let listed: Vec<&str> = expected.iter().map(|(name, ..)| *name).collect();
    assert_eq!(listed, map_name::ALL, "every map has its types here");
    for (name, key, value) in expected {
        let map = maps
            .get(name)
            .unwrap_or_else(|| panic!("the eBPF object has no map {name}"));
        assert_eq!(
            (map.key_size() as usize, map.value_size() as usize),
            (key, value),
            "the map {name}'s key and value sizes in the eBPF object are not those of \
             profiler_common's types: rebuild the object with `cargo xtask build`"
        );
    }
    // Userspace sums counters 0..COUNT.
    assert_eq!(maps[map_name::COUNTERS].max_entries(), counter::COUNT);
}
