//! The named subsets of the integration suite `cargo xtask test --kernel` can run, for
//! when the whole suite is too slow under emulation.

/// One test of a subset: the test binary (`tests/tests/BINARY.rs`), the test, and the
/// kernel programs and probe types it is there for.
pub struct Pick {
    pub binary: &'static str,
    pub test: &'static str,
    pub covers: &'static str,
}

const fn pick(binary: &'static str, test: &'static str, covers: &'static str) -> Pick {
    Pick {
        binary,
        test,
        covers,
    }
}

/// `--subset ci`, what CI runs on Debian's 6.1 and 6.12 (`.ci/run`): together these
/// tests load and check every kernel program of `profiler-ebpf/src` and every kind of
/// probe the profiler places, in the time two kernels have under TCG in CI's run (about
/// 30 minutes each, boot included). Each covers:
pub const CI: &[Pick] = &[
    // Not `pid_mode_cpu_split_matches_fixture_self_measurement`: on one vCPU (6.12's
    // guest, see .ci/run) its two threads take turns on the CPU, and under TCG the
    // samples of a 499 Hz timer fell 4 points off the threads' own CPU-time split
    // (72.6% against 68.3%, the test allows 3); on two it passes.
    pick(
        "cpu",
        "pid_mode_profiles_every_thread_and_excludes_busy_bystander",
        "cpu_sample (perf_event cpu-clock) with the DWARF stack copy, by --pid, every \
         thread of the target and none of a busy bystander",
    ),
    // Not `call_graph::call_graph_fp_still_profiles_frame_pointer_fixture`: it wants 80%
    // of the ticks of 999 Hz, which TCG does not keep (69% on 6.1). User stacks through
    // bpf_get_stack(BPF_F_USER_STACK), what `--call-graph fp` uses, are taken by the Go
    // heap test below (Go's allocations are always walked by frame pointers).
    pick(
        "cpu",
        "kernel_frames_under_syscall_heavy_code_are_kallsyms_names",
        "cpu_sample's kernel stacks, named from kallsyms",
    ),
    // Not `pid_mode_follows_forked_child_and_survives_target_exit`: its fixture is done
    // in 4 s, before the profiler has started under TCG.
    pick(
        "cpu",
        "command_mode_profiles_forked_descendants",
        "sched_process_fork, sched_process_exec and sched_process_exit: a launched \
         command's children, followed until they exit",
    ),
    // Not `command_mode_counts_every_call_and_byte_of_each_function_exactly`: io_mix sends
    // about 330 stack samples in a third of a second, which under TCG overflow the 2 MiB
    // ring before the profiler drains it (counted and shown as lost, so that function's
    // calls land under "[user stack lost]"; 2 of 5 guest runs).
    pick(
        "io",
        "sibling_functions_with_identical_frames_are_counted_apart",
        "sys_enter/sys_exit (BTF raw tracepoints) for the read/write family, exact counts",
    ),
    pick(
        "block",
        "contended_mutex_delay_matches_fixture_and_names_the_lock",
        "sys_enter/sys_exit for futex waits, futex_waking (sched_waking) for who woke them",
    ),
    pick(
        "go_block",
        "goroutine_waits_match_go_s_own_block_profile",
        "go_park/go_ready uprobes on the Go runtime, against Go's own block profile",
    ),
    pick(
        "offcpu",
        "pipe_reply_waits_are_pipe_and_name_the_peer_as_waker",
        "sched_switch, sched_waking and sched_wakeup_new (BTF tracepoints): off-CPU waits \
         timed to their wakeup with the waker's stack, a new thread's first run, and \
         sched_process_exit settling an exiting thread's budget",
    ),
    pick(
        "heap",
        "native_allocations_are_counted_exactly_by_function",
        "heap_alloc/heap_alloc_return/heap_free: uprobes and uretprobes on the C library",
    ),
    pick(
        "heap",
        "native_allocations_through_the_interposer_are_counted_exactly",
        "heap_preload_stack: the LD_PRELOAD interposer's marker uprobe",
    ),
    pick(
        "heap",
        "go_allocations_match_go_s_own_allocs_profile",
        "go_malloc/go_free uprobes on Go's memory profiler, against Go's allocs profile",
    ),
    pick(
        "names_kernel",
        "frames_in_the_profilers_bpf_programs_are_named_after_them",
        "the kernel's names of the profiler's own BPF programs (bpf_prog ksyms)",
    ),
];

/// The Go releases the `ci` subset's Go tests build with (the tests' variable
/// `PROFILER_TEST_GO_VERSIONS`): the newest only, since under TCG each release's build and
/// runs take minutes; the host suite covers every release.
pub const CI_GO_VERSIONS: &str = "1.27.3";

/// A named subset: its tests, and the Go releases its Go tests are limited to.
pub struct Subset {
    pub picks: &'static [Pick],
    pub go_versions: Option<&'static str>,
}

/// The subset called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Subset> {
    match name {
        "ci" => Some(Subset {
            picks: CI,
            go_versions: Some(CI_GO_VERSIONS),
        }),
        _ => None,
    }
}

/// The names [`by_name`] knows, for error messages.
pub const NAMES: &[&str] = &["ci"];

#[cfg(test)]
mod tests {
    use super::CI;

    /// The `ci` subset is there to load and check every kernel program: each program of
    /// the eBPF object (the list its own test ties to it) is named in some pick's `covers`.
    #[test]
    fn the_ci_subset_covers_every_kernel_program() {
        let named = |program: &str| {
            CI.iter().any(|pick| {
                pick.covers
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|word| word == program)
            })
        };
        let uncovered: Vec<&str> = profiler_common::program_name::ALL
            .into_iter()
            .filter(|program| !named(program))
            .collect();
        assert!(
            uncovered.is_empty(),
            "no test of the ci subset covers the kernel programs {uncovered:?}: add a pick \
             that loads and checks them"
        );
    }
}
