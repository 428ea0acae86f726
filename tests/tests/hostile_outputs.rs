//! Outputs against what an unprivileged user can make a root profiler see: a recursion
//! through a 100-deep `always_inline` chain (every output written, the SVG within its
//! budget, the elision counted, `profiler report` reading the run back), escape sequences
//! in a comm, a symbol and a JIT perf map (never printed raw), and `profiler report` on a
//! 35 KB pprof file made to balloon and on a FIFO.
//!
//! The programs are built and run as user nobody in a directory nobody owns, while the
//! profiler runs as root; every run is held to an end-time bound after its window and to
//! a peak RSS (from `wait4`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::{
    Attacker, CPU_SAMPLE_TYPES, IO_SAMPLE_TYPES, Msg, Run, Running, assert_bounded, attacker_dir,
    cc_as_nobody, prerequisites, profiler_command, run_report, temp_dir,
};

/// How long each profiled window lasts.
const WINDOW: Duration = Duration::from_secs(3);
/// How long after its window a run may take to write everything (symbolizing a few
/// thousand deep stacks and drawing them is most of it).
const END_BOUND: Duration = Duration::from_secs(30);
/// The peak RSS of a live run against these programs.
const RUN_RSS_MIB: i64 = 768;
/// The peak memory `profiler report` stays under for any file (README, `profiler report`).
const REPORT_RSS_MIB: i64 = 512;
/// The largest SVG a deep-stack run may write (the flame graph's frame budget, at a few
/// hundred bytes a frame).
const MAX_SVG_BYTES: u64 = 32 << 20;
/// How deep the fixture's inline chain is, and how deep it recurses through it.
const INLINE_DEPTH: usize = 100;
const RECURSION: usize = 600;

/// C source of a program that recurses [`RECURSION`] deep, each level through an
/// [`INLINE_DEPTH`]-deep chain of `always_inline` functions, forever: every sampled
/// return address stands for over a hundred inlined frames. Each level stores its
/// callee's result (a volatile write after the call), so the compiler cannot turn the
/// recursion into a loop.
fn deep_inline_source() -> String {
    let mut c = String::from(
        "#include <stdlib.h>\n\
         volatile unsigned long sink;\n\
         __attribute__((noinline)) int recurse(int depth);\n\
         __attribute__((noinline)) int leaf(void) {\n\
         \x20   for (int i = 0; i < 20000; i++) sink += i;\n\
         \x20   return (int)(sink & 1);\n\
         }\n\
         static inline __attribute__((always_inline)) int inl0(int d) {\n\
         \x20   if (d <= 0) return leaf();\n\
         \x20   int r = recurse(d - 1);\n\
         \x20   sink += r;\n\
         \x20   return r + 1;\n\
         }\n",
    );
    for i in 1..INLINE_DEPTH {
        c.push_str(&format!(
            "static inline __attribute__((always_inline)) int inl{i}(int d) {{\n\
             \x20   int r = inl{}(d);\n\
             \x20   sink += r;\n\
             \x20   return r + {i};\n\
             }}\n",
            i - 1
        ));
    }
    c.push_str(&format!(
        "__attribute__((noinline)) int recurse(int d) {{ return inl{}(d) + 1; }}\n\
         int main(int argc, char **argv) {{\n\
         \x20   int depth = argc > 1 ? atoi(argv[1]) : {RECURSION};\n\
         \x20   for (;;) sink += recurse(depth);\n\
         }}\n",
        INLINE_DEPTH - 1
    ));
    c
}

/// C source of a program whose comm, one of its symbols and its JIT perf map all carry
/// escape sequences: one thread spins in "JIT" code (an anonymous executable page named
/// in `/tmp/perf-PID.map`), one in a function whose symbol holds ESC, and one writes a
/// byte at a time to `/dev/null`, so its I/O call site (with its comm) makes the summary.
const ESCAPES_SOURCE: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void spin_esc(void) __asm__("\"spin_\x1b[31mred\"");
__attribute__((noinline)) void spin_esc(void) {
    for (;;) sink++;
}

static void *jit_thread(void *code) {
    ((void (*)(void))code)();
    return NULL;
}

static void *io_thread(void *unused) {
    (void)unused;
    int fd = open("/dev/null", O_WRONLY);
    for (;;) {
        if (write(fd, "x", 1) != 1) return NULL;
    }
}

int main(void) {
    prctl(PR_SET_NAME, "\x1b]0;pwned\x07\x1b[2J");
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) return 1;
    /* pause; jmp back */
    code[0] = 0xf3; code[1] = 0x90; code[2] = 0xeb; code[3] = 0xfc;
    char path[64];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
    FILE *map = fopen(path, "w");
    if (!map) return 2;
    fprintf(map, "%lx 10 jit_\x1b]2;owned\x07loop\n", (unsigned long)code);
    fclose(map);
    pthread_t jit, io;
    pthread_create(&jit, NULL, jit_thread, code);
    pthread_create(&io, NULL, io_thread, NULL);
    spin_esc();
    return 0;
}
"#;

/// Writes `source` into `dir/NAME.c` and compiles it as user nobody into `dir/NAME` with
/// `flags`.
fn build_as_nobody(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = format!("{name}.c");
    std::fs::write(dir.join(&src), source).unwrap();
    integration_tests::set_mode(&dir.join(&src), 0o644);
    cc_as_nobody(dir, &src, name, flags, &[])
}

/// Runs the profiler with `-o out`, `--duration` [`WINDOW`] and `args`, as root.
fn profile(out: &Path, args: &[&str]) -> Run {
    let window = format!("{}s", WINDOW.as_secs());
    let mut cmd = profiler_command(&["-o", out.to_str().unwrap(), "--duration", &window]);
    cmd.args(args);
    Running::spawn(cmd).wait_timeout(WINDOW + END_BOUND + Duration::from_secs(60))
}

/// `profiler report dir` as root, with its peak RSS; bounded like a run.
fn report(dir: &Path) -> Run {
    run_report(dir, Duration::from_secs(120))
}

/// `profiler report` of the crafted `file` in `dir`: it succeeds, ends within `bound` under
/// [`REPORT_RSS_MIB`], and prints what it measured.
fn report_within(dir: &Path, file: &[u8], bound: Duration) -> Run {
    let run = report(dir);
    run.assert_success();
    assert_bounded(&run, Duration::ZERO, bound, REPORT_RSS_MIB);
    eprintln!(
        "report of {} bytes: {:.1?}, peak RSS {} MiB",
        file.len(),
        run.elapsed,
        run.peak_rss_kib / 1024
    );
    run
}

/// Asserts a deep-inline run wrote every default output, each usable, the SVG within its
/// budget, the elision counted in the summary, and that `profiler report` reads it back.
fn check_deep_inline_run(run: &Run, out: &Path) {
    run.assert_success();
    assert_bounded(run, WINDOW, END_BOUND, RUN_RSS_MIB);
    for kind in ["cpu", "io", "block"] {
        for ext in ["pb.gz", "folded", "svg"] {
            let path = out.join(format!("{kind}.{ext}"));
            assert!(
                path.is_file(),
                "{} missing\n{}",
                path.display(),
                run.transcript()
            );
        }
    }
    // No temporary file left behind.
    for entry in std::fs::read_dir(out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left behind: {name}");
    }

    // The deep stacks are in the folded file, with the inline chains cut and said.
    let folded = std::fs::read_to_string(out.join("cpu.folded")).unwrap();
    let deep: Vec<&str> = folded.lines().filter(|l| l.contains(";recurse;")).collect();
    assert!(
        !deep.is_empty(),
        "no sample in recurse\n{}",
        run.transcript()
    );
    let deepest = deep.iter().map(|l| l.split(';').count()).max().unwrap_or(0);
    assert!(
        deepest > 1000,
        "the deepest stack has {deepest} frames: the recursion was not seen"
    );
    assert!(
        folded.contains(";[elided: ") && folded.contains(" inlined frames];"),
        "no elision frame in cpu.folded"
    );
    for line in folded.lines() {
        let (_, count) = line.rsplit_once(' ').expect("folded line has a count");
        count.parse::<u64>().expect("folded count is a number");
    }
    assert!(
        run.stdout.contains("inlined frames: ") && run.stdout.contains(" elided at "),
        "the summary does not count the elided inlined frames\n{}",
        run.stdout
    );

    // The SVG is a whole document of reasonable size that says what it cut.
    let svg_len = std::fs::metadata(out.join("cpu.svg")).unwrap().len();
    let svg = std::fs::read_to_string(out.join("cpu.svg")).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"),
        "cpu.svg is not a whole SVG document"
    );
    assert!(
        svg_len <= MAX_SVG_BYTES,
        "cpu.svg is {svg_len} bytes, over {MAX_SVG_BYTES}"
    );
    eprintln!(
        "cpu.svg: {svg_len} bytes; cpu.folded: {} bytes, deepest stack {deepest} frames",
        folded.len()
    );

    // The page's data parses.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let start = html.find("type=\"application/json\">").expect("data block") + 24;
    let end = start + html[start..].find("</script>").unwrap();
    let data: serde_json::Value =
        serde_json::from_str(&html[start..end]).expect("report.html's data is JSON");
    let cpu = &data["profiles"][0];
    assert_eq!(cpu["name"], "cpu");
    assert!(cpu["tree"].as_array().is_some_and(|t| t.len() > 1));

    // `profiler report` reads back everything the run wrote.
    let again = report(out);
    again.assert_success();
    assert_bounded(
        &again,
        Duration::ZERO,
        Duration::from_secs(60),
        REPORT_RSS_MIB,
    );
    assert!(
        again.stdout.contains("inlined frames: "),
        "the report's summary lost the elision count\n{}",
        again.stdout
    );
    eprintln!(
        "run: {:.1?}, peak RSS {} MiB; report: {:.1?}, peak RSS {} MiB",
        run.elapsed,
        run.peak_rss_kib / 1024,
        again.elapsed,
        again.peak_rss_kib / 1024
    );
}

/// The deep-inline program run as nobody and profiled by pid, or with `whole_host` the
/// whole host; the run checked by [`check_deep_inline_run`].
fn deep_inline_run(whole_host: bool) {
    if !prerequisites() {
        return;
    }
    let (_root, dir) = attacker_dir();
    let bin = build_as_nobody(&dir, "deep_inline", &deep_inline_source(), &["-O2", "-g"]);
    let victim = Attacker::start(&dir, &bin, &[]);
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let pid = victim.pid().to_string();
    let targets = if whole_host {
        vec![]
    } else {
        vec!["--pid", &pid]
    };
    let run = profile(&out, &targets);
    check_deep_inline_run(&run, &out);
}

#[test]
fn deep_inline_recursion_with_pid_writes_every_output_within_bounds() {
    deep_inline_run(false);
}

#[test]
fn deep_inline_recursion_whole_host_writes_every_output_within_bounds() {
    deep_inline_run(true);
}

/// Asserts `text` (what went to a terminal) holds no ESC byte and shows `shown`.
fn assert_escaped(what: &str, text: &str, shown: &[&str]) {
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "{what} carries a raw escape sequence:\n{}",
        text.escape_debug()
    );
    for s in shown {
        assert!(text.contains(s), "{what} does not show {s}:\n{text}");
    }
}

#[test]
fn escape_sequences_in_names_never_reach_the_terminal() {
    if !prerequisites() {
        return;
    }
    let (_root, dir) = attacker_dir();
    // Without -g: the function is named from its symbol, which carries the ESC.
    let bin = build_as_nobody(&dir, "escapes", ESCAPES_SOURCE, &["-O2", "-pthread"]);
    let victim = Attacker::start(&dir, &bin, &[]);
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let pid = victim.pid().to_string();
    let run = profile(&out, &["--pid", &pid, "--top", "20"]);
    run.assert_success();
    assert_bounded(&run, WINDOW, END_BOUND, RUN_RSS_MIB);
    let shown = [
        r"spin_\x1b[31mred",
        r"jit_\x1b]2;owned\x07loop",
        r"\x1b]0;pwned\x07\x1b[2J",
    ];
    assert_escaped("the run's stdout", &run.stdout, &shown);
    assert_escaped("the run's stderr", &run.stderr, &[]);

    let again = report(&out);
    again.assert_success();
    assert_escaped("the report's stdout", &again.stdout, &shown);
    assert_escaped("the report's stderr", &again.stderr, &[]);
    // The files keep the names as they are: escaping is for terminals only.
    let folded = std::fs::read_to_string(out.join("cpu.folded")).unwrap();
    assert!(
        folded.contains("spin_\x1b[31mred"),
        "cpu.folded lost the name"
    );
}

/// A profile with sample `types` of one location with `lines` inline lines (each its own
/// function), and `samples` samples of a stack of `depth` times that location, each with
/// its own `comm` label: small on disk, a tree of samples times frames once every sample
/// is a process of its own.
fn ballooning_profile(
    types: &[(&str, &str)],
    lines: usize,
    samples: usize,
    depth: usize,
) -> Vec<u8> {
    let mut strings: Vec<String> = vec![String::new()];
    let mut p = Msg::default();
    for (kind, unit) in types {
        let t = strings.len() as i64;
        strings.extend([kind.to_string(), unit.to_string()]);
        p.bytes(1, &Msg::default().int(1, t).int(2, t + 1).0);
    }
    let comm_key = strings.len() as i64;
    strings.push("comm".to_owned());
    let mut values = Msg::default();
    for _ in types {
        values.varint(1);
    }
    for s in 0..samples {
        let comm = strings.len() as i64;
        strings.push(format!("c{s}"));
        let label = Msg::default().int(1, comm_key).int(2, comm).0.clone();
        let mut sample = Msg::default();
        sample
            .bytes(1, &vec![1u8; depth])
            .bytes(2, &values.0)
            .bytes(3, &label);
        p.bytes(2, &sample.0);
    }
    let mut location = Msg::default();
    location.int(1, 1).int(3, 0x1000);
    for f in 0..lines {
        location.bytes(4, &Msg::default().int(1, f as i64 + 1).int(2, 7).0);
    }
    p.bytes(4, &location.0);
    for f in 0..lines {
        let name = strings.len() as i64;
        strings.push(format!("f{f}"));
        p.bytes(5, &Msg::default().int(1, f as i64 + 1).int(2, name).0);
    }
    for s in &strings {
        p.bytes(6, s.as_bytes());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&p.0).unwrap();
    gz.finish().unwrap()
}

#[test]
fn report_of_a_small_ballooning_file_stays_under_its_memory_cap() {
    if !prerequisites() {
        return;
    }
    let file = ballooning_profile(CPU_SAMPLE_TYPES, 2048, 9700, 1);
    assert!(
        (20_000..60_000).contains(&file.len()),
        "the crafted file is {} bytes, not the 35 KB of the issue",
        file.len()
    );
    let dir = temp_dir();
    std::fs::write(dir.path().join("cpu.pb.gz"), &file).unwrap();
    let run = report_within(dir.path(), &file, Duration::from_secs(60));
    assert!(
        run.stdout.contains("inlined frames: "),
        "the cut inline chain is not counted\n{}",
        run.stdout
    );
}

#[test]
fn report_of_a_file_at_its_frame_limits_stays_within_bounds() {
    if !prerequisites() {
        return;
    }
    // Stacks of 2,048 locations of 32 lines each (the most report keeps), 3,800 samples
    // of them, each its own process: 249 million frames, just under the limit; as a CPU
    // and as an I/O profile.
    let file = ballooning_profile(CPU_SAMPLE_TYPES, 32, 3800, 2048);
    let dir = temp_dir();
    std::fs::write(dir.path().join("cpu.pb.gz"), &file).unwrap();
    std::fs::write(
        dir.path().join("io.pb.gz"),
        ballooning_profile(IO_SAMPLE_TYPES, 32, 3800, 2048),
    )
    .unwrap();
    report_within(dir.path(), &file, Duration::from_secs(90));
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        page.contains("stacks are cut short in the flame graph"),
        "the report's tree was not cut at its budget, or does not say so"
    );
}

#[test]
fn report_refuses_a_fifo_with_one_line_and_no_hang() {
    if !prerequisites() {
        return;
    }
    let dir = temp_dir();
    let fifo = dir.path().join("cpu.pb.gz");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let run = report(dir.path());
    let line = run.assert_error_mentioning(&["FIFO"]);
    assert!(
        line.contains("cpu.pb.gz"),
        "{line:?} does not name the file"
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:.1?}",
        run.elapsed
    );
    eprintln!("{line} ({:.1?})", run.elapsed);
}
