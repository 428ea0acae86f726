//! Names of kernel frames in BPF programs: a whole-host profile with the I/O profile on,
//! while the `syscalls` fixture makes system calls as fast as it can, so that the
//! profiler's own syscall programs run all the time and some CPU samples interrupt them.
//! Those frames are named `bpf_prog_<tag>_<name>` after a program of the profiler, never
//! after the last kallsyms symbol below them (`__stop_runtime_ptr_*`, a data symbol).

use integration_tests::*;
use profiler_common::program_name::{SYS_ENTER, SYS_EXIT};

/// The profiler's syscall programs (`profiler-ebpf/src/syscalls.rs`), which kallsyms names
/// by their function names, truncated to the kernel's 15 characters.
const PROGRAMS: &[&str] = &[SYS_ENTER, SYS_EXIT];

/// Whether a frame is `bpf_prog_<16 hex digits>_<name>`; the name is returned.
fn bpf_program(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix("bpf_prog_")?;
    let (tag, name) = rest.split_at_checked(16)?;
    (tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
    name.strip_prefix('_')
}

#[test]
fn frames_in_the_profilers_bpf_programs_are_named_after_them() {
    if !prerequisites() {
        return;
    }
    // Until stopped, not for a fixed time: the profiler's start took 15 s in a loaded TCG
    // guest (CI at 19fd710, 6.12), past the 8 s the fixture used to run, and the window
    // then held none of its syscalls.
    let busy = FixtureProcess::spawn("syscalls", &["600"]);
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let run = run_profiler(
        &[
            "-F",
            "999",
            "--duration",
            "3s",
            "--profiles",
            "cpu,io",
            "--format",
            "folded",
        ],
        &out,
    );
    run.assert_success();
    let measured = busy.stop();
    let folded = Folded::load(&out);
    let frames: Vec<&str> = folded
        .stacks
        .iter()
        .flat_map(|s| s.frames.iter().map(String::as_str))
        .collect();
    assert!(
        !frames.iter().any(|f| f.contains("__stop_runtime_ptr")),
        "a kernel frame was named after a data symbol\n{}",
        folded.summary(20)
    );
    let in_bpf = folded.samples_where(|s| s.frames.iter().any(|f| bpf_program(f).is_some()));
    let ours = folded.samples_where(|s| {
        s.frames
            .iter()
            .filter_map(|f| bpf_program(f))
            .any(|name| PROGRAMS.contains(&name))
    });
    // Other programs of the host may run too; the profiler's certainly do.
    assert!(
        ours > 0,
        "{ours} samples in the profiler's programs, {in_bpf} in any BPF program, while the \
         fixture made {} syscalls\n{}",
        measured.u64("syscalls"),
        folded.summary(20)
    );
}
