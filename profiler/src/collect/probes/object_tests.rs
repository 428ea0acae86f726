//! Ties the eBPF object built into the binary to what userspace knows of it, both ways:
//! every map, program and load-time global named in `profiler_common` (`map_name`,
//! `program_name`, `global_name`) is in the object, the object has none they lack, each
//! map's key and value are the size of the shared type userspace reads it as, and every
//! shared struct has in the object's debug info the size and field offsets it has here.
//! The eBPF crate names its items by their Rust names, which aya's macros take from the
//! item, not from a constant; and the object is built apart from the binary, so a stale
//! one is caught here rather than as a load failure or misread fields on some host.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::offset_of;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
use profiler_common::{
    BlockKey, BlockValue, BlockWake, BlockWakeKey, GoLabels, GoProcess, GoWaitKey, GoWaitValue,
    HeapEvent, HeapLive, HeapLiveKey, HeapPending, HeapSiteKey, HeapSiteValue, InFlight, IoFdKey,
    IoKey, IoValue, OffCpuKey, OffCpuRate, OffCpuSwitchIn, OffCpuThread, OffCpuValue, OffCpuWait,
    Parked, ParkedKey, ProcEvent, PythonFrame, PythonFrames, PythonProcess, SampleHeader,
    SampleRecord, counter, global_name, map_name, program_name,
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
        (
            map_name::GO_PROCESSES,
            size_of::<u32>(),
            size_of::<GoProcess>(),
        ),
        (
            map_name::PYTHON_PROCESSES,
            size_of::<u32>(),
            size_of::<PythonProcess>(),
        ),
        (map_name::PYTHON_THREADS, size_of::<u32>(), size_of::<u64>()),
        (map_name::SAMPLE_SCRATCH, index, size_of::<SampleRecord>()),
        (map_name::SAMPLES, 0, 0),
        (map_name::COUNTERS, index, size_of::<u64>()),
        (map_name::PROC_EVENTS, 0, 0),
        (map_name::IO_CALLS, size_of::<IoKey>(), size_of::<IoValue>()),
        (map_name::IO_SCRATCH, index, size_of::<IoValue>()),
        (
            map_name::IO_DIRECTIONS,
            size_of::<IoFdKey>(),
            size_of::<u8>(),
        ),
        (
            map_name::BLOCK_WAITS,
            size_of::<BlockKey>(),
            size_of::<BlockValue>(),
        ),
        (
            map_name::BLOCK_WAKERS,
            size_of::<BlockWakeKey>(),
            size_of::<BlockWake>(),
        ),
        (map_name::BLOCK_WINDOW, index, size_of::<u64>()),
        (map_name::FUTEX_SLEEPERS, size_of::<u64>(), size_of::<u64>()),
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
        (
            map_name::OFFCPU_SITES,
            size_of::<OffCpuKey>(),
            size_of::<OffCpuValue>(),
        ),
        (
            map_name::OFFCPU_THREADS,
            size_of::<u64>(),
            size_of::<OffCpuThread>(),
        ),
        (
            map_name::OFFCPU_DONE,
            size_of::<u64>(),
            size_of::<OffCpuThread>(),
        ),
        (
            map_name::OFFCPU_SWITCH_IN,
            index,
            size_of::<OffCpuSwitchIn>(),
        ),
        (map_name::OFFCPU_WINDOW_END, index, size_of::<u64>()),
        (map_name::OFFCPU_RATE, index, size_of::<OffCpuRate>()),
        (
            map_name::OFFCPU_NEW_THREAD,
            index,
            size_of::<OffCpuThread>(),
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

/// A struct's size and its fields' offsets by name.
type Layout = (usize, BTreeMap<String, usize>);

/// The layout of a `profiler_common` struct as Rust lays it out here.
macro_rules! layout {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        (
            stringify!($ty),
            (
                size_of::<$ty>(),
                BTreeMap::from([$((stringify!($field).to_owned(), offset_of!($ty, $field))),*]),
            ),
        )
    };
}

/// The layouts of the structs the object's debug info has in `profiler_common`, by name.
fn object_layouts() -> BTreeMap<String, Layout> {
    let file = object::File::parse(super::EBPF_OBJECT).expect("the embedded eBPF object parses");
    // The object is relocatable, but its debug sections' relocations are against section
    // symbols with the offset in place: read as they are, they say the same.
    let load = |id: gimli::SectionId| -> Result<&[u8], gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|section| section.data().ok())
            .unwrap_or(&[]))
    };
    let sections = gimli::DwarfSections::load(load).expect("the debug sections load");
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut layouts = BTreeMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next().expect("a unit header") {
        let unit = dwarf.unit(header).expect("a unit");
        let mut entries = unit.entries();
        // The namespaces around the current entry, with their depths.
        let mut namespaces: Vec<(isize, String)> = Vec::new();
        // The shared struct being read: its name, depth and layout.
        let mut current: Option<(String, isize, Layout)> = None;
        while let Some(entry) = entries.next_dfs().expect("a debug entry") {
            let depth = entry.depth();
            namespaces.retain(|(at, _)| *at < depth);
            if current.as_ref().is_some_and(|(_, at, _)| depth <= *at) {
                let (name, _, layout) = current.take().expect("checked");
                layouts.insert(name, layout);
            }
            let name = entry
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(&unit, v).ok())
                .map(|s| String::from_utf8_lossy(s.slice()).into_owned());
            let udata = |at| entry.attr_value(at).and_then(|v| v.udata_value());
            match (entry.tag(), name) {
                (gimli::DW_TAG_namespace, Some(name)) => namespaces.push((depth, name)),
                (gimli::DW_TAG_structure_type, Some(name))
                    if namespaces
                        .first()
                        .is_some_and(|(_, n)| n == "profiler_common")
                        && current.is_none() =>
                {
                    let size = udata(gimli::DW_AT_byte_size).expect("a struct's size");
                    current = Some((name, depth, (size as usize, BTreeMap::new())));
                }
                (gimli::DW_TAG_member, Some(field)) => {
                    if let Some((_, at, (_, fields))) = &mut current
                        && depth == *at + 1
                    {
                        let offset =
                            udata(gimli::DW_AT_data_member_location).expect("a field's offset");
                        fields.insert(field, offset as usize);
                    }
                }
                _ => {}
            }
        }
        if let Some((name, _, layout)) = current {
            layouts.insert(name, layout);
        }
    }
    layouts
}

#[test]
fn each_shared_struct_has_the_object_s_layout() {
    let here: BTreeMap<&str, Layout> = BTreeMap::from([
        layout!(SampleHeader {
            kind,
            pid,
            tid,
            flags,
            kernel_bytes,
            user_bytes,
            time_ns,
            ip,
            sp,
            bp,
            comm,
            io_site,
            block_site,
            heap,
            go_site,
            offcpu,
        }),
        layout!(SampleRecord {
            header,
            kernel,
            user
        }),
        layout!(InFlight {
            tid,
            syscall,
            start_ns,
            pid,
            nr,
            uaddr,
            ip,
            sp,
            bp,
            ret,
            python,
            requested,
            facts,
            facts_left,
        }),
        layout!(BlockKey {
            pid,
            tid,
            uaddr,
            ip,
            sp,
            bp,
            ret,
            python
        }),
        layout!(BlockValue {
            waits,
            nanos,
            first_ns,
            comm
        }),
        layout!(BlockWakeKey {
            site,
            waker_pid,
            waker_tid
        }),
        layout!(BlockWake {
            waits,
            nanos,
            last_ns
        }),
        layout!(IoKey {
            pid,
            tid,
            syscall,
            _pad,
            ip,
            sp,
            bp,
            ret
        }),
        layout!(IoValue {
            calls,
            bytes,
            nanos,
            errors,
            requested,
            short,
            eagain,
            turns,
            fd,
            comm
        }),
        layout!(GoWaitKey {
            pid,
            reason,
            stack,
            labels
        }),
        layout!(GoWaitValue {
            waits,
            nanos,
            first_goid,
            others,
            stack_sent,
            comm
        }),
        layout!(ParkedKey { pid, _pad, g }),
        layout!(GoProcess {
            g_m,
            g_labels,
            m_g0,
            m_curg,
            format,
            _pad
        }),
        layout!(PythonProcess {
            tstate_frame,
            cframe_frame,
            frame_code,
            frame_previous,
            frame_instr,
            frame_marker,
            tstate_tid,
            pthread_tid,
            tstate_next,
            threads_head,
            code_name,
            code_firstlineno,
            interpreters_head
        }),
        layout!(PythonFrame { code, instr, key }),
        layout!(PythonFrames {
            count,
            truncated,
            frames,
            markers
        }),
        layout!(GoLabels {
            count,
            kept,
            lens,
            text
        }),
        layout!(IoFdKey { pid, _pad, fd }),
        layout!(Parked {
            start_ns,
            goid,
            site
        }),
        layout!(ProcEvent {
            kind,
            pid,
            ip,
            fd,
            parent,
            _pad
        }),
        layout!(HeapSiteKey { pid, _pad, ret }),
        layout!(HeapSiteValue {
            allocs,
            bytes,
            frees,
            freed_bytes,
            comm
        }),
        layout!(HeapLiveKey { pid, _pad, ptr }),
        layout!(HeapLive { size, ret }),
        layout!(HeapPending {
            tid,
            _pad,
            sp,
            size,
            ret,
            old,
            func
        }),
        layout!(HeapEvent {
            site,
            ptr,
            size,
            rate
        }),
        layout!(OffCpuKey {
            pid,
            tid,
            class,
            syscall,
            fd,
            ip,
            sp,
            bp,
            ret,
            python
        }),
        layout!(OffCpuValue {
            waits,
            nanos,
            runnable_nanos
        }),
        layout!(OffCpuWait {
            site,
            seq,
            tid,
            waker_pid,
            waker_tid,
            delay_ns,
            runnable_ns
        }),
        layout!(OffCpuThread {
            pid,
            tid,
            born_ns,
            first_in_ns,
            first_out_ns,
            out_ns,
            wake_ns,
            waker_pid,
            waker_tid,
            seq,
            sampled,
            exit_ns,
            site,
            run_site,
            run,
            runq,
            oncpu_ns,
            runnable_ns,
            offcpu_ns,
            comm
        }),
        layout!(OffCpuSwitchIn { task, at_ns }),
        layout!(OffCpuRate { second_ns, sent }),
    ]);
    let there = object_layouts();
    let unlisted: Vec<&String> = there
        .keys()
        .filter(|name| !here.contains_key(name.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "the eBPF object uses profiler_common structs this test does not list: {unlisted:?}"
    );
    for (name, layout) in here {
        let Some(theirs) = there.get(name) else {
            panic!(
                "the eBPF object's debug info has no struct {name}: rebuild it with `cargo xtask build`"
            );
        };
        assert!(
            theirs == &layout,
            "{name} is laid out otherwise in the eBPF object than here: (size, field offsets) \
             {theirs:?} there, {layout:?} here; rebuild the object with `cargo xtask build`"
        );
    }
}
