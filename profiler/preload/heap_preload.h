/*
 * The memory the heap interposer (heap_preload.c) shares with the profiler: a header of
 * run-wide counts, then a table of call sites. The profiler's side is
 * profiler/src/collect/preload.rs; its test `the_rust_layout_is_the_interposer_s` compiles
 * this file and fails when an offset, a size or a constant here differs from there.
 */
#ifndef PROFILER_HEAP_PRELOAD_H
#define PROFILER_HEAP_PRELOAD_H

#include <stdatomic.h>
#include <stdint.h>

#define MAGIC 0x3150414548465250ull /* "PRFHEAP1" */
#define MAX_PROCESSES 64

/* Written by the profiler before the command starts (magic last), counted in by every
 * process of the command. */
struct header {
    uint64_t magic;
    uint64_t site_slots; /* powers of two */
    uint64_t live_slots;
    uint64_t sample_every;
    _Atomic uint64_t allocs, frees, frees_unknown, lost_sites, lost_live, stacks;
    _Atomic uint32_t processes;
    uint32_t pids[MAX_PROCESSES];
    uint32_t _pad;
};

/* A site's state: the profiler reads a site only once it is READY. */
enum { EMPTY = 0, CLAIMING = 1, READY = 2 };

/* A call site of one process, by the return address of its allocation call. */
struct site {
    _Atomic uint32_t state;
    uint32_t pid;
    uint64_t ret;
    _Atomic uint64_t allocs, bytes, frees, freed_bytes;
    char comm[16];
};

_Static_assert(sizeof(struct header) == 88 + 4 * MAX_PROCESSES, "header layout");
_Static_assert(sizeof(struct site) == 64, "site layout");

#endif
