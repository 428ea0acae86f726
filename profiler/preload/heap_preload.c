/*
 * The heap profile's interposer for `profiler --profiles heap -- COMMAND`.
 *
 * Loaded into the command with LD_PRELOAD, it takes the malloc family's calls, passes
 * each to the allocator that follows it in the search order (the C library's, or one
 * the program links), and counts it in memory it shares with the profiler: by call site
 * (the caller's return address, as the kernel programs key it), and every live block
 * (pointer -> size, site) so that in-use figures are exact. No call traps into the
 * kernel; one allocation in `sample_every` per site calls profiler_heap_preload_stack,
 * which the profiler probes to take the stack through the same path as its uprobes.
 *
 * The layout it shares with the profiler is heap_preload.h; profiler/src/collect/preload.rs
 * reads it, and a test there compiles the header and fails when the two disagree.
 * Everything is bounded: a full table is counted, never grown.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap_preload.h"

#define SITE_PROBES 64
#define LIVE_PROBES 256 /* in the block's window; then SPILL_PROBES scattered */
#define SPILL_PROBES 64

/* A live block of this process (a private table): its pointer, and in `meta` its size
 * (bits 24-63, saturating), a bit set in every record (23) and its site's index (0-22). */
struct live {
    _Atomic uint64_t ptr;
    _Atomic uint64_t meta;
};

#define META_SIZE_SHIFT 24
#define META_PRESENT (1ull << 23)
#define META_SITE_MASK 0x7fffffull
#define META_MAX_SIZE ((1ull << (64 - META_SIZE_SHIFT)) - 1)

_Static_assert(sizeof(struct live) == 16, "live layout");

static struct header *shared;
static struct site *sites;
static struct live *lives;
static size_t live_len_bytes;
static uint64_t live_mask;
static uint32_t my_pid;

static void *(*next_malloc)(size_t);
static void (*next_free)(void *);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void *(*next_memalign)(size_t, size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static void *(*next_valloc)(size_t);
static void *(*next_pvalloc)(size_t);

/* While dlsym looks the allocator up it may allocate: those calls get this buffer. */
static char bootstrap[64 * 1024] __attribute__((aligned(64)));
static _Atomic size_t bootstrap_used;
static _Atomic int init_state; /* 0 not started, 1 in progress, 2 done */
static __thread int initializing;

static int from_bootstrap(const void *p) {
    return (const char *)p >= bootstrap && (const char *)p < bootstrap + sizeof bootstrap;
}

static void *bootstrap_alloc(size_t size) {
    if (size > sizeof bootstrap) {
        return NULL;
    }
    size = (size + 63) & ~(size_t)63;
    size_t at = atomic_fetch_add(&bootstrap_used, size);
    if (at > sizeof bootstrap || size > sizeof bootstrap - at) {
        return NULL;
    }
    return bootstrap + at; /* static storage: already zero, as calloc must return */
}

/*
 * The stack of a sampled allocation is taken at this function's entry, where the
 * profiler puts a uprobe. Written in assembly so that it starts with a push, which the
 * kernel emulates (one trap, not two), and with call-frame information for the unwinder.
 */
__asm__(".text\n"
        ".globl profiler_heap_preload_stack\n"
        ".type profiler_heap_preload_stack, @function\n"
        "profiler_heap_preload_stack:\n"
        ".cfi_startproc\n"
        "push %rbp\n"
        ".cfi_adjust_cfa_offset 8\n"
        ".cfi_rel_offset %rbp, 0\n"
        "pop %rbp\n"
        ".cfi_adjust_cfa_offset -8\n"
        ".cfi_restore %rbp\n"
        "ret\n"
        ".cfi_endproc\n"
        ".size profiler_heap_preload_stack, . - profiler_heap_preload_stack\n");
/* `first`: the site's first allocation, which has the profiler read the process's
 * mappings while it is alive if they are new to it. */
void profiler_heap_preload_stack(uint64_t ret, uint64_t size, uint64_t first);

static void register_process(void) {
    my_pid = (uint32_t)getpid();
    if (shared == NULL) {
        return;
    }
    uint32_t at = atomic_fetch_add(&shared->processes, 1);
    if (at < MAX_PROCESSES) {
        shared->pids[at] = my_pid;
    }
}

static void attach_shared(void) {
    const char *fd_text = getenv("PROFILER_HEAP_FD");
    if (fd_text == NULL) {
        return;
    }
    int fd = atoi(fd_text);
    /* An inherited variable may outlive the descriptor: only the profiler's memfd. */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (size_t)st.st_size < sizeof(struct header)) {
        return;
    }
    struct header *head = mmap(NULL, sizeof(struct header), PROT_READ, MAP_SHARED, fd, 0);
    if (head == MAP_FAILED) {
        return;
    }
    uint64_t magic = head->magic, site_slots = head->site_slots, live_slots = head->live_slots;
    munmap(head, sizeof(struct header));
    if (magic != MAGIC || site_slots == 0 || (site_slots & (site_slots - 1)) != 0 ||
        live_slots == 0 || (live_slots & (live_slots - 1)) != 0) {
        return;
    }
    size_t len = sizeof(struct header) + site_slots * sizeof(struct site);
    if ((size_t)st.st_size < len) {
        return;
    }
    char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        return;
    }
    /*
     * The live blocks are this process's own business (the profiler reads in-use figures
     * from the sites' counters), so their table is private memory: a fork's child can
     * forget its copy, and huge pages, where the system allows them, spare the lookups
     * TLB misses (see live_slot for what the lookups' order did).
     */
    size_t live_len = live_slots * sizeof(struct live);
    void *table = mmap(NULL, live_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    if (table == MAP_FAILED) {
        munmap(base, len);
        return;
    }
    madvise(table, live_len, MADV_HUGEPAGE);
    lives = table;
    live_len_bytes = live_len;
    live_mask = live_slots - 1;
    sites = (struct site *)(base + sizeof(struct header));
    shared = (struct header *)base;
}

static void init(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&init_state, &expected, 1)) {
        while (atomic_load(&init_state) != 2) {
        }
        return;
    }
    initializing = 1;
    next_malloc = dlsym(RTLD_NEXT, "malloc");
    next_free = dlsym(RTLD_NEXT, "free");
    next_calloc = dlsym(RTLD_NEXT, "calloc");
    next_realloc = dlsym(RTLD_NEXT, "realloc");
    next_memalign = dlsym(RTLD_NEXT, "memalign");
    next_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    next_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    next_valloc = dlsym(RTLD_NEXT, "valloc");
    next_pvalloc = dlsym(RTLD_NEXT, "pvalloc");
    attach_shared();
    register_process();
    initializing = 0;
    atomic_store(&init_state, 2);
}

/*
 * Called in the child of a fork: its counts are its own. The blocks it inherited are
 * copies of its parent's, counted at the parent's sites: forgotten (zero pages again),
 * so that their frees here count as frees of blocks from before.
 */
static void after_fork(void) {
    if (lives != NULL) {
        madvise(lives, live_len_bytes, MADV_DONTNEED);
    }
    register_process();
}

__attribute__((constructor)) static void start(void) {
    if (atomic_load(&init_state) == 0) {
        init();
    }
    pthread_atfork(NULL, NULL, after_fork);
}

static int ready(void) {
    if (__builtin_expect(atomic_load_explicit(&init_state, memory_order_acquire) == 2, 1)) {
        return 1;
    }
    if (initializing) {
        return 0;
    }
    init();
    return 1;
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/*
 * Where a block's record starts looking for a slot: each 64 KiB of address space keeps
 * its blocks in address order, from a base scattered by hashing. An allocator hands out
 * neighbouring blocks one after another and a program frees them in much the same
 * order, so their records share cache lines; a fully scattered hash made perl's hash
 * build of 800,000 blocks twice as slow as unprofiled, plain address order (one window
 * for everything) piled arenas 64 MiB apart onto the same slots.
 */
static uint64_t live_slot(uint64_t ptr) { return mix(ptr >> 16) + ((ptr >> 4) & 0xfff); }

/* The i-th slot a block's record may be in: in its window first, then scattered (for a
 * window crowded by its neighbours). */
static struct live *live_probe(uint64_t ptr, uint64_t i) {
    uint64_t at = i < LIVE_PROBES ? live_slot(ptr) + i : mix(ptr) + (i - LIVE_PROBES);
    return &lives[at & live_mask];
}

/* The site of (this process, ret), claimed if new; NULL when the table is full. */
static struct site *site_of(uint64_t ret, uint32_t *index) {
    uint64_t mask = shared->site_slots - 1;
    char comm[16] = {0};
    int named = 0;
    uint64_t h = mix(ret ^ ((uint64_t)my_pid << 47));
    for (uint64_t i = 0; i < SITE_PROBES; i++) {
        uint64_t at = (h + i) & mask;
        struct site *s = &sites[at];
        uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
        if (state == EMPTY) {
            if (!named) {
                /* Before the claim: nothing slow or interruptible while it is held. */
                prctl(PR_GET_NAME, comm, 0, 0, 0);
                named = 1;
            }
            uint32_t empty = EMPTY;
            if (atomic_compare_exchange_strong(&s->state, &empty, CLAIMING)) {
                s->pid = my_pid;
                s->ret = ret;
                memcpy(s->comm, comm, sizeof comm);
                atomic_store_explicit(&s->state, READY, memory_order_release);
                *index = (uint32_t)at;
                return s;
            }
            state = empty;
        }
        /* A slot being claimed is passed over, never waited for (its claimer may be a
         * signal handler's victim); the same site claimed twice is merged when read. */
        if (state == READY && s->pid == my_pid && s->ret == ret) {
            *index = (uint32_t)at;
            return s;
        }
    }
    atomic_fetch_add_explicit(&shared->lost_sites, 1, memory_order_relaxed);
    return NULL;
}

static inline __attribute__((always_inline)) void count_alloc(void *ptr, size_t size,
                                                               uint64_t ret) {
    if (shared == NULL || ptr == NULL) {
        return;
    }
    atomic_fetch_add_explicit(&shared->allocs, 1, memory_order_relaxed);
    uint32_t index;
    struct site *s = site_of(ret, &index);
    if (s == NULL) {
        return;
    }
    uint64_t n = atomic_fetch_add_explicit(&s->allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->bytes, size, memory_order_relaxed);
    if (n % shared->sample_every == 0) {
        atomic_fetch_add_explicit(&shared->stacks, 1, memory_order_relaxed);
        profiler_heap_preload_stack(ret, size, n == 0);
    }
    uint64_t stored = size < META_MAX_SIZE ? size : META_MAX_SIZE;
    uint64_t meta = stored << META_SIZE_SHIFT | META_PRESENT | (uint64_t)index;
    for (uint64_t i = 0; i < LIVE_PROBES + SPILL_PROBES; i++) {
        struct live *l = live_probe((uint64_t)ptr, i);
        uint64_t empty = 0;
        if (atomic_load_explicit(&l->ptr, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&l->ptr, &empty, (uint64_t)ptr)) {
            /* The block is not the program's until malloc returns: no free races this. */
            atomic_store_explicit(&l->meta, meta, memory_order_release);
            return;
        }
    }
    atomic_fetch_add_explicit(&shared->lost_live, 1, memory_order_relaxed);
}

/* Removes `ptr`'s record; its meta, or 0 when it has none (a block from before). */
static inline __attribute__((always_inline)) uint64_t take_live(void *ptr) {
    for (uint64_t i = 0; i < LIVE_PROBES + SPILL_PROBES; i++) {
        struct live *l = live_probe((uint64_t)ptr, i);
        if (atomic_load_explicit(&l->ptr, memory_order_acquire) != (uint64_t)ptr) {
            continue;
        }
        uint64_t meta = atomic_load_explicit(&l->meta, memory_order_acquire);
        if ((meta & META_SITE_MASK) < shared->site_slots) {
            atomic_store_explicit(&l->meta, 0, memory_order_relaxed);
            atomic_store_explicit(&l->ptr, 0, memory_order_release);
            return meta;
        }
    }
    return 0;
}

/* Puts back a record `take_live` removed. */
static void restore_live(void *ptr, uint64_t meta) {
    for (uint64_t i = 0; i < LIVE_PROBES + SPILL_PROBES; i++) {
        struct live *l = live_probe((uint64_t)ptr, i);
        uint64_t empty = 0;
        if (atomic_compare_exchange_strong(&l->ptr, &empty, (uint64_t)ptr)) {
            atomic_store_explicit(&l->meta, meta, memory_order_release);
            return;
        }
    }
    atomic_fetch_add_explicit(&shared->lost_live, 1, memory_order_relaxed);
}

/* Counts the free of a block whose record `take_live` removed. */
static inline __attribute__((always_inline)) void count_freed(uint64_t meta) {
    if (meta == 0) {
        atomic_fetch_add_explicit(&shared->frees_unknown, 1, memory_order_relaxed);
        return;
    }
    struct site *s = &sites[meta & META_SITE_MASK];
    atomic_fetch_add_explicit(&s->frees, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->freed_bytes, meta >> META_SIZE_SHIFT, memory_order_relaxed);
    atomic_fetch_add_explicit(&shared->frees, 1, memory_order_relaxed);
}

static inline __attribute__((always_inline)) void count_free(void *ptr) {
    if (shared == NULL || ptr == NULL) {
        return;
    }
    count_freed(take_live(ptr));
}

#define RET() ((uint64_t)__builtin_return_address(0))

void *malloc(size_t size) {
    if (!ready()) {
        return bootstrap_alloc(size);
    }
    void *p = next_malloc(size);
    count_alloc(p, size, RET());
    return p;
}

void free(void *ptr) {
    if (ptr == NULL || from_bootstrap(ptr)) {
        return;
    }
    if (!ready()) {
        return;
    }
    count_free(ptr);
    next_free(ptr);
}

void *calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (!ready()) {
        return bootstrap_alloc(total);
    }
    void *p = next_calloc(n, size);
    count_alloc(p, total, RET());
    return p;
}

static inline __attribute__((always_inline)) void *resize(void *old, size_t size,
                                                           uint64_t ret) {
    if (old != NULL && from_bootstrap(old)) {
        void *p = next_malloc(size);
        if (p != NULL) {
            /* Its size is unknown: copy what can be there, up to the buffer's end. */
            size_t room = (size_t)(bootstrap + sizeof bootstrap - (char *)old);
            memcpy(p, old, size < room ? size : room);
            count_alloc(p, size, ret);
        }
        return p;
    }
    /* The old block's record goes first: once realloc has freed it, another thread may
     * be given the same address and record it. */
    uint64_t meta = (shared != NULL && old != NULL) ? take_live(old) : 0;
    void *p = next_realloc(old, size);
    if (old != NULL && shared != NULL) {
        if (p != NULL || size == 0) {
            count_freed(meta); /* resized (in place or moved), or freed by a zero size */
        } else if (meta != 0) {
            restore_live(old, meta); /* failed: the old block stays */
        }
    }
    count_alloc(p, size, ret);
    return p;
}

void *realloc(void *old, size_t size) {
    if (!ready()) {
        return old == NULL ? bootstrap_alloc(size) : NULL;
    }
    return resize(old, size, RET());
}

void *reallocarray(void *old, size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (!ready()) {
        return NULL;
    }
    return resize(old, total, RET());
}

void *memalign(size_t alignment, size_t size) {
    if (!ready() || next_memalign == NULL) {
        return NULL;
    }
    void *p = next_memalign(alignment, size);
    count_alloc(p, size, RET());
    return p;
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!ready() || next_posix_memalign == NULL) {
        return ENOMEM;
    }
    int err = next_posix_memalign(out, alignment, size);
    if (err == 0) {
        count_alloc(*out, size, RET());
    }
    return err;
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (!ready() || next_aligned_alloc == NULL) {
        return NULL;
    }
    void *p = next_aligned_alloc(alignment, size);
    count_alloc(p, size, RET());
    return p;
}

void *valloc(size_t size) {
    if (!ready() || next_valloc == NULL) {
        return NULL;
    }
    void *p = next_valloc(size);
    count_alloc(p, size, RET());
    return p;
}

void *pvalloc(size_t size) {
    if (!ready() || next_pvalloc == NULL) {
        return NULL;
    }
    void *p = next_pvalloc(size);
    count_alloc(p, size, RET());
    return p;
}
