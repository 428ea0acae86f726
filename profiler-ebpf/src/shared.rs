//! Maps and helpers every program uses: the target filter, counters, process
//! announcements, and the stack samples sent to userspace.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        BPF_RB_RING_SIZE,
    },
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::{
            bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_get_stack, bpf_probe_read_user,
            bpf_task_pt_regs,
        },
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use profiler_common::{
    BlockKey, COMM_LEN, GO_FRAMES_BYTES, GO_LABELS_BYTES, GO_STACK_HASH_FRAMES, GoProcess,
    GoWaitKey, HeapEvent, IoKey, MAX_KERNEL_FRAMES, MAX_TARGETS, MAX_USER_FRAMES,
    MAX_USER_STACK_BYTES, OffCpuWait, PROC_EVENTS_BYTES, PYTHON_FRAMES_BYTES, ProcEvent,
    PythonProcess, SAMPLE_FIXED_BYTES, SAMPLE_RING_BYTES, SampleRecord, counter, proc_event,
    sample_flag, stack_mode,
};

use crate::{go_labels, python, regs};

/// Non-zero when only the pids in [`TARGETS`] are profiled; set by userspace at load time.
#[unsafe(no_mangle)]
static FILTER_PIDS: u8 = 0;

/// How user stacks are taken, one of [`stack_mode`]; set by userspace at load time.
#[unsafe(no_mangle)]
static STACK_MODE: u8 = stack_mode::DWARF;

/// Bytes of user stack copied per sample in DWARF mode (a multiple of 8, at most
/// [`MAX_USER_STACK_BYTES`]); set by userspace at load time.
#[unsafe(no_mangle)]
static USER_STACK_BYTES: u32 = 16384;

/// Data waiting in the sample ring buffer above which a new sample wakes userspace; below
/// it, userspace drains the buffer on its own timer. Set by userspace at load time.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;

/// The profiler's own process id: its records are never sent, in a whole-host run too
/// (it would fill the rings with its own reads of them, and its cost has its own line).
/// Set by userspace at load time.
#[unsafe(no_mangle)]
static PROFILER_TGID: u32 = 0;

/// The processes to profile (tgid -> 1), filled by userspace and by the fork tracepoint.
#[map]
pub static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Go processes, filled by userspace as it finds them: their CPU samples carry the
/// frame-pointer chain beside the stack copy, to follow Go's stack switches, and their
/// samples the goroutine's profiler labels where the value says where they are.
#[map]
pub static GO_PROCESSES: LruHashMap<u32, GoProcess> = LruHashMap::with_max_entries(MAX_TARGETS, 0);

/// CPython processes (tgid -> where their frames are), filled by userspace as it finds
/// them: their CPU samples carry the thread's Python frames.
#[map]
pub static PYTHON_PROCESSES: LruHashMap<u32, PythonProcess> =
    LruHashMap::with_max_entries(MAX_TARGETS, 0);

/// The `PyThreadState` of each thread of a CPython process (tid -> address), filled by
/// userspace from the interpreter's thread list: a cache, checked against the state's
/// own tid, that spares most samples the walk of the list (finding the state from the
/// thread's TLS would take per-version TSS keys and `task_struct` offsets).
#[map]
pub static PYTHON_THREADS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_TARGETS, 0);

/// Where a sample is built before it is sent: [`SCRATCH_SLOTS`] per CPU (see [`Context`]),
/// too large for the BPF stack and for a per-CPU map. Userspace sets the size to that many
/// times the number of possible CPUs at load time.
#[map]
static SAMPLE_SCRATCH: Array<SampleRecord> = Array::with_max_entries(SCRATCH_SLOTS, 0);

/// Stack samples to userspace; userspace sizes it from the sampling rate at load time.
#[map]
static SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLE_RING_BYTES, 0);

/// What was seen and what was lost, per CPU; indices are in [`counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Announcements to userspace: a process to snapshot while it lives.
#[map]
static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(PROC_EVENTS_BYTES, 0);

/// Which kind of program builds a sample: a CPU sample can interrupt a syscall program on
/// the same CPU (it runs from the timer interrupt), so each kind has a scratch slot.
#[derive(Clone, Copy)]
pub enum Context {
    /// The `cpu-clock` sampler.
    Sampler = 0,
    /// The syscall tracepoints.
    Syscall = 1,
    /// The uprobes (allocators, the Go runtime), which run in the thread's own context.
    Uprobe = 2,
    /// The context switch, which runs with interrupts off (and an exiting thread's last
    /// settling, which cannot be preempted by a switch).
    Switch = 3,
    /// The wakeup, which can run from an interrupt during any of the others.
    Waking = 4,
}

/// Scratch slots per CPU, one per [`Context`].
const SCRATCH_SLOTS: u32 = profiler_common::SCRATCH_SLOTS_PER_CPU;

/// Adds one to a counter of this CPU.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and a program cannot be preempted by itself on one CPU.
        unsafe { *slot += 1 };
    }
}

/// Whether only targets are profiled.
#[inline(always)]
pub fn filtering() -> bool {
    // SAFETY: a read of a global that userspace sets before load.
    unsafe { core::ptr::read_volatile(&FILTER_PIDS) != 0 }
}

/// Whether process `tgid` is profiled.
#[inline(always)]
pub fn is_target(tgid: u32) -> bool {
    // SAFETY: a read of a global that userspace sets before load.
    let profiler = unsafe { core::ptr::read_volatile(&PROFILER_TGID) };
    // SAFETY: the value is only checked for presence.
    tgid != profiler && (!filtering() || unsafe { TARGETS.get(&tgid) }.is_some())
}

/// The current (process id, thread id).
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// The call site or wait site a sampled stack belongs to.
pub enum Site<'a> {
    /// A CPU sample: no site, but the kernel stack is taken.
    Cpu,
    /// An I/O call site.
    Io(&'a IoKey),
    /// A blocking wait site.
    Block(&'a BlockKey),
    /// An allocation: a native site, or one the Go runtime sampled (`kind` is one of
    /// [`profiler_common::sample_kind`]).
    Heap(u32, &'a HeapEvent),
    /// A goroutine's wait site.
    Go(&'a GoWaitKey),
    /// An off-CPU wait at its switch-out: the kernel stack is taken.
    OffCpu(&'a OffCpuWait),
    /// Whoever woke a sampled off-CPU wait: the kernel stack is taken.
    OffCpuWaker(&'a OffCpuWait),
}

/// Whether a repeat stack sample of a known call or wait site (1 in 256 or 64 of its calls) may
/// take room in the sample ring buffer: only while it is at most half full. Those stacks
/// only split totals the maps keep exactly, and come in bursts (a busy server sends
/// thousands a second), so past half the buffer the rest is kept for CPU samples, heap
/// events and the first stack of each new site, which nothing else records (a busy
/// whole-host run lost 137 CPU samples to goroutine and I/O stacks).
#[inline(always)]
pub fn room_for_repeat() -> bool {
    SAMPLES.query(BPF_RB_AVAIL_DATA as u64) <= SAMPLES.query(BPF_RB_RING_SIZE as u64) / 2
}

/// Sends one stack sample of the current thread to userspace: its user registers, its
/// kernel stack (CPU samples only), and its user stack, copied for userspace to unwind, or
/// walked by frame pointers in frame-pointer mode. Returns false when the ring buffer was
/// full and the sample was lost (the caller counts it).
#[inline(always)]
pub fn send_sample<C: EbpfContext>(ctx: &C, slot: Context, site: Site<'_>) -> bool {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(record) = SAMPLE_SCRATCH.get_ptr_mut(cpu * SCRATCH_SLOTS + slot as u32) else {
        return false;
    };
    let (tgid, tid) = current_ids();
    // SAFETY: the slot belongs to this CPU and program kind while it runs; every read of
    // the task's registers and stack goes through a probe-read helper.
    unsafe {
        let header = &mut (*record).header;
        header.pid = tgid;
        header.tid = tid;
        header.flags = 0;
        header.kernel_bytes = 0;
        header.user_bytes = 0;
        header.time_ns = bpf_ktime_get_ns();
        header.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        let mut kernel_stack = false;
        match site {
            Site::Cpu => {
                header.kind = profiler_common::sample_kind::CPU;
                kernel_stack = true;
            }
            Site::OffCpu(wait) => {
                header.kind = profiler_common::sample_kind::OFFCPU;
                header.offcpu = *wait;
                kernel_stack = true;
            }
            Site::OffCpuWaker(wait) => {
                header.kind = profiler_common::sample_kind::OFFCPU_WAKER;
                header.offcpu = *wait;
                kernel_stack = true;
            }
            Site::Io(key) => {
                header.kind = profiler_common::sample_kind::IO;
                header.io_site = *key;
            }
            Site::Block(key) => {
                header.kind = profiler_common::sample_kind::BLOCK;
                header.block_site = *key;
            }
            Site::Heap(kind, event) => {
                header.kind = kind;
                header.heap = *event;
            }
            Site::Go(key) => {
                header.kind = profiler_common::sample_kind::GO_WAIT;
                header.go_site = *key;
            }
        }
        if kernel_stack {
            let got = bpf_get_stack(
                ctx.as_ptr(),
                (*record).kernel.as_mut_ptr().cast(),
                (MAX_KERNEL_FRAMES * 8) as u32,
                0,
            );
            if got >= 0 {
                header.kernel_bytes = got as u32;
            } else {
                count(counter::LOST_KERNEL_STACK);
            }
        }
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as usize;
        let user_reg =
            |offset: usize| bpf_probe_read_kernel((regs + offset) as *const u64).unwrap_or(0);
        // A kernel thread (or an io_uring worker) has no user context: its saved registers
        // are not user mode (`cs` without privilege level 3), and it has no user stack to
        // lose.
        let user_mode = user_reg(regs::CS) & 3 == 3;
        header.ip = user_reg(regs::IP);
        header.sp = user_reg(regs::SP);
        header.bp = user_reg(regs::BP);
        // The off-CPU profile does not carry them yet (a waker's would read as the wait's).
        let go = if user_mode && !matches!(site, Site::OffCpu(_) | Site::OffCpuWaker(_)) {
            GO_PROCESSES.get(&tgid)
        } else {
            None
        };
        let mut user = (*record).user.as_mut_ptr();
        let mut prefix = 0;
        if let Some(go) = go {
            let labels = go_labels::labels_of(regs, go);
            if labels != 0 && go_labels::read(labels, go.format, user.cast()) {
                header.flags |= sample_flag::GO_LABELS;
                user = user.add(GO_LABELS_BYTES);
                prefix = GO_LABELS_BYTES as u32;
            }
        } else if user_mode
            && let Some(py) = PYTHON_PROCESSES.get(&tgid)
            && python::read(
                python::thread_state(py, tid, PYTHON_THREADS.get(&tid).map_or(0, |t| *t)),
                py,
                user.cast(),
            )
        {
            // Never with Go's prefix: a process is one or the other, and the room after
            // the prefix holds the largest stack copy either way.
            header.flags |= sample_flag::PYTHON_FRAMES;
            user = user.add(PYTHON_FRAMES_BYTES);
            prefix = PYTHON_FRAMES_BYTES as u32;
        }
        if !user_mode {
            header.flags |= sample_flag::NO_USER;
        } else if core::ptr::read_volatile(&STACK_MODE) == stack_mode::FP
            || matches!(site, Site::Heap(profiler_common::sample_kind::GO_ALLOC, _))
        {
            // Go code always keeps frame pointers: walking them is far cheaper than a stack
            // copy, and a runtime sampling every allocation sends many.
            header.flags |= sample_flag::USER_FRAMES;
            let got = bpf_get_stack(
                ctx.as_ptr(),
                user.cast(),
                (MAX_USER_FRAMES * 8) as u32,
                BPF_F_USER_STACK as u64,
            );
            if got > 0 {
                header.user_bytes = got as u32;
            }
        } else if header.sp != 0 {
            let want = core::ptr::read_volatile(&USER_STACK_BYTES);
            let (copied, ends) = if matches!(site, Site::Cpu) && go.is_some() {
                // Go runs the runtime on the system stack and calls the vDSO there: the copy
                // from `sp` ends where the goroutine's stack is left, and its frame pointers
                // lead on. On failure the helper zeroes the area, which reads as no frames.
                bpf_get_stack(
                    ctx.as_ptr(),
                    user.cast(),
                    GO_FRAMES_BYTES as u32,
                    BPF_F_USER_STACK as u64,
                );
                // The record's user area has room for the labels, the chain and the
                // largest copy.
                let (copied, ends) = copy_user_stack::<MAX_USER_STACK_BYTES>(
                    user.add(GO_FRAMES_BYTES),
                    header.sp,
                    want,
                );
                if copied > 0 {
                    header.flags |= sample_flag::GO_FRAMES;
                    (copied + GO_FRAMES_BYTES as u32, ends)
                } else {
                    (0, ends)
                }
            } else {
                copy_user_stack::<MAX_USER_STACK_BYTES>(user, header.sp, want)
            };
            header.user_bytes = copied;
            if ends {
                header.flags |= sample_flag::STACK_ENDS;
            }
        }
        if header.user_bytes == 0 && user_mode {
            header.flags |= sample_flag::USER_UNREADABLE;
            count(counter::USER_STACK_UNREADABLE);
        }
        header.user_bytes += prefix;
        let len = (SAMPLE_FIXED_BYTES as u64 + u64::from(header.user_bytes))
            .min(size_of::<SampleRecord>() as u64);
        // Waking userspace for every sample would cost a context switch each; it drains
        // the buffer on a timer too, and is woken early only when the buffer fills.
        let wakeup =
            if SAMPLES.query(BPF_RB_AVAIL_DATA as u64) >= core::ptr::read_volatile(&WAKEUP_BYTES) {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
        let bytes = core::slice::from_raw_parts(record.cast::<u8>(), len as usize);
        SAMPLES.output::<[u8]>(bytes, u64::from(wakeup)).is_ok()
    }
}

/// Size of a page, the unit in which stack memory is mapped.
const PAGE: u64 = 4096;

/// Copies up to `want` bytes (at most `CAP`, the room at `dst`) of user stack from `sp`
/// into `dst`, returning how many were copied and whether the stack ended before `want`. A
/// thread whose stack ends sooner (near the top of its stack) still gets the readable pages
/// above `sp`, found one page at a time with one-byte probes: readability is not monotonic
/// (the kernel leaves an untouched gap of random size below a process's arguments), so the
/// copy stops at the first page that cannot be read.
#[inline(always)]
unsafe fn copy_user_stack<const CAP: usize>(dst: *mut u8, sp: u64, want: u32) -> (u32, bool) {
    let want = (want & !7).min(CAP as u32);
    if want == 0 {
        return (0, false);
    }
    // SAFETY: the caller's buffer holds CAP bytes; probe reads never fault.
    unsafe {
        if read_user::<CAP>(dst, want, sp) {
            return (want, false);
        }
        let first_page = sp & !(PAGE - 1);
        let end = sp + u64::from(want);
        // The page of `sp` itself is the stack in use; the pages above are probed.
        let mut readable_end = first_page + PAGE;
        for _ in 0..MAX_USER_STACK_BYTES / PAGE as usize {
            if readable_end >= end {
                break;
            }
            let mut byte = 0u8;
            if bpf_probe_read_user((&raw mut byte).cast(), 1, readable_end as *const _) != 0 {
                break;
            }
            readable_end += PAGE;
        }
        // Bounded by `want` in a form the verifier follows.
        let len = (readable_end - sp).min(u64::from(want)) as u32 & !7;
        if len > 0 && read_user::<CAP>(dst, len, sp) {
            (len, true)
        } else {
            (0, true)
        }
    }
}

/// Reads `len` bytes (at most `CAP`, the room at `dst`) of user memory at `src`.
#[inline(always)]
unsafe fn read_user<const CAP: usize>(dst: *mut u8, len: u32, src: u64) -> bool {
    if len as usize > CAP {
        return false;
    }
    // SAFETY: `dst` holds CAP bytes; the helper never faults.
    unsafe { bpf_probe_read_user(dst.cast(), len, src as *const _) == 0 }
}

/// Tells userspace that process `tgid` recorded a new call site at user address `ip` (with
/// descriptor `fd`, or -1), so it can read what it needs while the process lives; counted
/// when the ring buffer is full.
#[inline(always)]
pub fn notify_new_key(tgid: u32, ip: u64, fd: i64) {
    notify(&ProcEvent {
        kind: proc_event::NEW_KEY,
        pid: tgid,
        ip,
        fd,
        parent: 0,
        _pad: 0,
    });
}

/// Tells userspace that process `tgid` moved data on descriptor `fd` for the first time.
#[inline(always)]
pub fn notify_new_fd(tgid: u32, fd: i64) {
    notify(&ProcEvent {
        kind: proc_event::NEW_FD,
        pid: tgid,
        ip: 0,
        fd,
        parent: 0,
        _pad: 0,
    });
}

/// Tells userspace that target `tgid` executed a new program.
#[inline(always)]
pub fn notify_exec(tgid: u32) {
    notify(&ProcEvent {
        kind: proc_event::EXEC,
        pid: tgid,
        ip: 0,
        fd: -1,
        parent: 0,
        _pad: 0,
    });
}

/// Tells userspace that `parent` forked `child`, whose mappings are its parent's until it
/// maps its own: a child that exits before userspace reads its mappings still symbolizes.
#[inline(always)]
pub fn notify_fork(parent: u32, child: u32) {
    notify(&ProcEvent {
        kind: proc_event::FORK,
        pid: child,
        ip: 0,
        fd: -1,
        parent,
        _pad: 0,
    });
}

#[inline(always)]
fn notify(event: &ProcEvent) {
    if PROC_EVENTS.output::<ProcEvent>(event, 0).is_err() {
        count(counter::LOST_PROC_EVENTS);
    }
}

/// A hash of the current thread's user stack as its frame pointers walk it (Go code
/// always keeps them), at most [`GO_STACK_HASH_FRAMES`] return addresses, mixed with
/// `first` (what the walk from a function's entry skips: its return address). Zero when
/// the stack cannot be walked. The walk goes through the uprobe scratch slot, which a
/// sample sent afterwards overwrites.
#[inline(always)]
pub fn user_stack_hash<C: EbpfContext>(ctx: &C, first: u64) -> u64 {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(record) = SAMPLE_SCRATCH.get_ptr_mut(cpu * SCRATCH_SLOTS + Context::Uprobe as u32)
    else {
        return 0;
    };
    // SAFETY: the slot belongs to this CPU and program kind while it runs; the helper
    // writes at most the size it is given, which the buffer holds.
    unsafe {
        let frames = (*record).user.as_mut_ptr().cast::<u64>();
        let got = bpf_get_stack(
            ctx.as_ptr(),
            frames.cast(),
            (GO_STACK_HASH_FRAMES * 8) as u32,
            BPF_F_USER_STACK as u64,
        );
        if got <= 0 {
            return 0;
        }
        let n = (got as usize / 8).min(GO_STACK_HASH_FRAMES);
        let mut hash = mix(0xcbf2_9ce4_8422_2325, first);
        for i in 0..GO_STACK_HASH_FRAMES {
            if i >= n {
                break;
            }
            hash = mix(hash, *frames.add(i));
        }
        hash
    }
}

/// Mixes `word` into `hash` (a cheap multiply-xorshift step, for keys, not security).
#[inline(always)]
pub fn mix(hash: u64, word: u64) -> u64 {
    let h = (hash ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// Sends a record without stacks (a Go free): the fixed part of a sample only. Returns
/// false when the ring buffer was full (the caller counts it).
#[inline(always)]
pub fn send_heap_event(kind: u32, event: &HeapEvent) -> bool {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(record) = SAMPLE_SCRATCH.get_ptr_mut(cpu * SCRATCH_SLOTS + Context::Uprobe as u32)
    else {
        return false;
    };
    let (tgid, tid) = current_ids();
    // SAFETY: the slot belongs to this CPU and program kind while it runs.
    unsafe {
        let header = &mut (*record).header;
        header.kind = kind;
        header.pid = tgid;
        header.tid = tid;
        header.flags = sample_flag::NO_USER;
        header.kernel_bytes = 0;
        header.user_bytes = 0;
        header.time_ns = bpf_ktime_get_ns();
        header.heap = *event;
        let bytes = core::slice::from_raw_parts(record.cast::<u8>(), SAMPLE_FIXED_BYTES);
        SAMPLES
            .output::<[u8]>(bytes, u64::from(BPF_RB_NO_WAKEUP))
            .is_ok()
    }
}

/// Sends the end of a sampled off-CPU wait of process `pid`: the fixed part of a sample
/// only, from the context switch. Returns false when the ring buffer was full.
#[inline(always)]
pub fn send_wait_end(pid: u32, wait: &OffCpuWait) -> bool {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(record) = SAMPLE_SCRATCH.get_ptr_mut(cpu * SCRATCH_SLOTS + Context::Switch as u32)
    else {
        return false;
    };
    // SAFETY: the slot belongs to this CPU and the switch while it runs.
    unsafe {
        let header = &mut (*record).header;
        header.kind = profiler_common::sample_kind::OFFCPU_END;
        header.pid = pid;
        header.tid = wait.tid;
        header.flags = sample_flag::NO_USER;
        header.kernel_bytes = 0;
        header.user_bytes = 0;
        header.time_ns = bpf_ktime_get_ns();
        header.offcpu = *wait;
        let bytes = core::slice::from_raw_parts(record.cast::<u8>(), SAMPLE_FIXED_BYTES);
        SAMPLES
            .output::<[u8]>(bytes, u64::from(BPF_RB_NO_WAKEUP))
            .is_ok()
    }
}
