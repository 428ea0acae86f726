//! Symbolization bombs: libraries an unprivileged user crafts so that naming their frames
//! would inflate GiBs. User nobody builds a program linking two of them and runs it while
//! root profiles (its pid, and the whole host):
//! - `libbombdd.so`, stripped, whose MiniDebugInfo (`.gnu_debugdata`) is an xz of 1 GiB of
//!   zeros (152 KiB);
//! - `libbombz.so`, stripped but for its DWARF, whose `.debug_info` is flagged compressed
//!   (`SHF_COMPRESSED`) and is a zlib of 1 GiB of zeros (1 MiB);
//! - `libbomblie.so`, the same whose header states 1 KiB: nothing tells before inflating,
//!   and the symbolization worker's memory limit stops it (and is named as the reason).
//!
//! Each run must end within a stated bound after its window, stay under the symbolization
//! workers' memory budget (README, "Budgets against hostile input"), name the program's
//! own functions, leave the libraries' hidden functions unnamed with the reason as data,
//! and name the refused files and why in the summary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::{
    Attacker, Folded, Run, assert_bounded, attacker_dir, cc_as_nobody, nobody, prerequisites,
    spawn_profiler, temp_dir,
};

/// How long the profiler profiles.
const WINDOW: Duration = Duration::from_secs(3);
/// How long after its window a run may take: the workers' run budget (30 s) and the rest.
const AFTER_WINDOW: Duration = Duration::from_secs(40);
/// The memory budget of a symbolization worker (README): the run's peak RSS, which counts
/// its reaped workers, stays under it.
const BUDGET_MIB: i64 = 1024;

/// A library: an exported `PREFIX_spin` that calls a hidden `PREFIX_hidden_spin`, where the
/// time goes, which only the library's debug information names.
fn library_source(prefix: &str) -> String {
    format!(
        "static __attribute__((noinline)) unsigned long {prefix}_hidden_spin(unsigned long n) {{\n\
         \x20   volatile unsigned long x = 0;\n\
         \x20   for (unsigned long i = 0; i < n; i++) x += i * i;\n\
         \x20   return x;\n\
         }}\n\
         unsigned long {prefix}_spin(unsigned long n) {{ return {prefix}_hidden_spin(n) + 1; }}\n"
    )
}

/// The program: its own work, then each library's, until its time is up.
const VICTIM: &str = r#"
#include <stdlib.h>
#include <time.h>
extern unsigned long bombdd_spin(unsigned long);
extern unsigned long bombz_spin(unsigned long);
extern unsigned long bomblie_spin(unsigned long);
__attribute__((noinline)) unsigned long victim_own_work(unsigned long n) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < n; i++) x += i ^ (x >> 3);
    return x;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 10;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned long sum = 0;
    do {
        sum += victim_own_work(200000);
        sum += bombdd_spin(200000);
        sum += bombz_spin(200000);
        sum += bomblie_spin(200000);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < secs);
    return sum == 42;
}
"#;

/// Writes `.debug_info`'s new contents (an ELF64 compression header stating the size given,
/// then a zlib stream of 1 GiB of zeros), or with `restate` the same contents as another
/// file's stating another size, or with `flag` sets `SHF_COMPRESSED` on the section.
const CRAFT_ZLIB: &str = r#"
import struct, sys, zlib
if sys.argv[1] == "restate":
    data = bytearray(open(sys.argv[3], "rb").read())
    struct.pack_into("<Q", data, 8, int(sys.argv[4]))
    open(sys.argv[2], "wb").write(data)
elif sys.argv[1] == "stream":
    out = open(sys.argv[2], "wb")
    out.write(struct.pack("<IIQQ", 1, 0, int(sys.argv[3]), 1))
    c = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    for _ in range(1024):
        out.write(c.compress(chunk))
    out.write(c.flush())
else:
    f = open(sys.argv[2], "r+b")
    data = f.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    for i in range(shnum):
        hdr = shoff + i * shentsize
        name, = struct.unpack_from("<I", data, hdr)
        if data[strtab + name:].split(b"\0", 1)[0] == b".debug_info":
            flags, = struct.unpack_from("<Q", data, hdr + 8)
            f.seek(hdr + 8)
            f.write(struct.pack("<Q", flags | 0x800))
"#;

/// Builds the two bomb libraries and the program linking them, as user nobody, in `dir`;
/// the program's path.
fn build_attack(dir: &Path) -> PathBuf {
    for (name, text) in [
        ("bombdd.c", library_source("bombdd")),
        ("bombz.c", library_source("bombz")),
        ("bomblie.c", library_source("bomblie")),
        ("victim.c", VICTIM.to_owned()),
        ("craft_zlib.py", CRAFT_ZLIB.to_owned()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    for lib in ["bombdd", "bombz", "bomblie"] {
        build_library(dir, lib);
    }
    // MiniDebugInfo: the stripped library (only its dynamic symbols) with an xz of zeros.
    nobody(
        dir,
        "/bin/sh",
        &["-c", "head -c 1G /dev/zero | xz -0 -T1 > debugdata.xz"],
    );
    nobody(
        dir,
        "/usr/bin/strip",
        &[
            "--strip-all",
            "libbombdd.full.so",
            "-o",
            "libbombdd.stripped.so",
        ],
    );
    nobody(
        dir,
        "/usr/bin/objcopy",
        &[
            "--add-section",
            ".gnu_debugdata=debugdata.xz",
            "libbombdd.stripped.so",
            "libbombdd.so",
        ],
    );
    // Compressed DWARF: the library without symbol tables, its .debug_info replaced, its
    // header stating the truth (1 GiB) or a lie (1 KiB).
    for (lib, stated) in [("bombz", 1u64 << 30), ("bomblie", 1024)] {
        nobody(
            dir,
            "/usr/bin/strip",
            &[
                "--strip-all",
                "--keep-section=.debug_info",
                "--keep-section=.debug_abbrev",
                &format!("lib{lib}.full.so"),
                "-o",
                &format!("lib{lib}.stripped.so"),
            ],
        );
        let contents = format!("{lib}.debug_info");
        let stated = stated.to_string();
        let craft = match lib {
            "bombz" => vec!["craft_zlib.py", "stream", &contents, &stated],
            _ => vec![
                "craft_zlib.py",
                "restate",
                &contents,
                "bombz.debug_info",
                &stated,
            ],
        };
        nobody(dir, "/usr/bin/python3", &craft);
        nobody(
            dir,
            "/usr/bin/objcopy",
            &[
                "--update-section",
                &format!(".debug_info={contents}"),
                &format!("lib{lib}.stripped.so"),
                &format!("lib{lib}.so"),
            ],
        );
        nobody(
            dir,
            "/usr/bin/python3",
            &["craft_zlib.py", "flag", &format!("lib{lib}.so")],
        );
    }
    let victim = build_victim(dir, &["bombdd", "bombz", "bomblie"]);
    let size = |name: &str| std::fs::metadata(dir.join(name)).unwrap().len();
    assert!(
        size("libbombdd.so") < 1 << 20
            && size("libbombz.so") < 2 << 20
            && size("libbomblie.so") < 2 << 20,
        "the bombs are not small files"
    );
    victim
}

/// Compiles `LIB.c` as user nobody in `dir` into `libLIB.full.so`, debug information and
/// symbol tables in full.
fn build_library(dir: &Path, lib: &str) {
    cc_as_nobody(
        dir,
        &format!("{lib}.c"),
        &format!("lib{lib}.full.so"),
        &["-O1", "-g", "-fPIC", "-shared"],
        &[],
    );
}

/// Links `victim.c` as user nobody in `dir` into `victim`, against the libraries `libs`
/// beside it; its path.
fn build_victim(dir: &Path, libs: &[&str]) -> PathBuf {
    let libs: Vec<String> = libs.iter().map(|lib| format!("-l{lib}")).collect();
    let mut after = vec!["-L."];
    after.extend(libs.iter().map(String::as_str));
    after.push("-Wl,-rpath,$ORIGIN");
    cc_as_nobody(dir, "victim.c", "victim", &["-O1", "-g"], &after)
}

/// Profiles `pid` (the whole host without one) for [`WINDOW`], CPU only, and prints what
/// the `what` run measured; the run, and the output directory in its guard.
fn profile(pid: Option<u32>, what: &str) -> (Run, PathBuf, tempfile::TempDir) {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let mut args = vec![
        "--duration".to_owned(),
        "3s".to_owned(),
        "--profiles".to_owned(),
        "cpu".to_owned(),
        "--format".to_owned(),
        "pprof,folded".to_owned(),
    ];
    if let Some(pid) = pid {
        args.extend(["--pid".to_owned(), pid.to_string()]);
    }
    let run = spawn_profiler(&args, &out).wait();
    eprintln!(
        "{what} run: {:.1?} ({:.1?} after the window), peak RSS {} MiB",
        run.elapsed,
        run.elapsed.saturating_sub(WINDOW),
        run.peak_rss_kib / 1024
    );
    (run, out, tmp)
}

/// Whether `pprof` (a gzipped profile) holds `text`.
fn pprof_holds(pprof: &Path, text: &str) -> bool {
    let file = std::fs::File::open(pprof).unwrap();
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut data)
        .unwrap();
    data.windows(text.len()).any(|w| w == text.as_bytes())
}

/// What every run with the bombs must show.
fn assert_refused(out: &Path, run: &Run) {
    run.assert_success();
    assert_bounded(run, WINDOW, AFTER_WINDOW, BUDGET_MIB);
    let folded = Folded::load(out).with_comm("victim");
    assert!(
        folded.samples_containing("victim_own_work") > 0,
        "the program's own function is not named\n{}",
        folded.summary(20)
    );
    for lib in ["libbombdd.so", "libbombz.so", "libbomblie.so"] {
        let hidden = format!(
            "{}_hidden_spin",
            lib.trim_start_matches("lib").trim_end_matches(".so")
        );
        assert_eq!(
            folded.samples_containing(&hidden),
            0,
            "{hidden} was named from refused debug information\n{}",
            folded.summary(20)
        );
        let unnamed =
            folded.samples_where(|s| s.frames.iter().any(|f| f.starts_with(&format!("{lib}+0x"))));
        assert!(
            unnamed > 0,
            "no unnamed frame of {lib}\n{}",
            folded.summary(20)
        );
    }
    let summary = &run.stdout;
    let line = summary
        .lines()
        .find(|l| l.contains("symbolization budgets:"))
        .unwrap_or_else(|| panic!("no budget line in the summary\n{}", run.transcript()));
    assert!(
        line.contains("libbombdd.so (.gnu_debugdata states 1024 MiB, over the 256 MiB cap)"),
        "{line}"
    );
    assert!(
        line.contains("libbombz.so (compressed .debug_info states 1024 MiB, over the 256 MiB cap)"),
        "{line}"
    );
    assert!(
        line.contains("libbomblie.so (reading it reached the symbolizer's 1024 MiB memory limit)"),
        "{line}"
    );
    // The reason is data the pprof file carries for `profiler report`.
    assert!(pprof_holds(
        &out.join("cpu.pb.gz"),
        "[profiler:unnamed:over-memory-budget]"
    ));
}

/// The bomb libraries' program profiled by pid, or with `whole_host` the whole host, and
/// the run checked by [`assert_refused`].
fn bomb_run(whole_host: bool) {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let victim = build_attack(&dir);
    let program = Attacker::start(&dir, &victim, &["30"]);
    let (run, out, _tmp) = if whole_host {
        profile(None, "whole-host")
    } else {
        profile(Some(program.pid()), "--pid")
    };
    assert_refused(&out, &run);
    drop(program);
}

#[test]
fn bomb_libraries_of_a_pid_are_refused_within_budget() {
    bomb_run(false);
}

#[test]
fn bomb_libraries_are_refused_in_a_whole_host_run() {
    bomb_run(true);
}

/// A stripped library whose `.gnu_debuglink` names a FIFO beside it: opening the candidate
/// blocks until someone writes it, which nobody does. The worker naming the library is
/// stopped at its time budget (or, once debug files are opened without blocking, never
/// waits at all): the run ends, the program's own functions are named.
#[test]
fn a_debuglink_to_a_fifo_costs_at_most_the_file_budget() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    std::fs::write(dir.join("fifo.c"), library_source("fifo")).unwrap();
    std::fs::write(
        dir.join("victim.c"),
        VICTIM
            .replace("bombdd", "fifo")
            .replace("extern unsigned long bombz_spin(unsigned long);", "")
            .replace("extern unsigned long bomblie_spin(unsigned long);", "")
            .replace("sum += bombz_spin(200000);", "")
            .replace("sum += bomblie_spin(200000);", ""),
    )
    .unwrap();
    build_library(&dir, "fifo");
    nobody(
        &dir,
        "/usr/bin/strip",
        &["--strip-all", "libfifo.full.so", "-o", "libfifo.so"],
    );
    std::fs::write(dir.join("libfifo.debug"), b"not yet a FIFO").unwrap();
    nobody(
        &dir,
        "/usr/bin/objcopy",
        &["--add-gnu-debuglink=libfifo.debug", "libfifo.so"],
    );
    std::fs::remove_file(dir.join("libfifo.debug")).unwrap();
    nobody(&dir, "/usr/bin/mkfifo", &["libfifo.debug"]);
    let victim = build_victim(&dir, &["fifo"]);
    let program = Attacker::start(&dir, &victim, &["60"]);
    let (run, out, _tmp) = profile(Some(program.pid()), "FIFO debuglink");
    run.assert_success();
    // The file's budget (10 s) and the rest of the run.
    assert_bounded(&run, WINDOW, Duration::from_secs(25), BUDGET_MIB);
    let folded = Folded::load(&out).with_comm("victim");
    assert!(
        folded.samples_containing("victim_own_work") > 0,
        "the program's own function is not named\n{}",
        folded.summary(20)
    );
    if let Some(line) = run
        .stdout
        .lines()
        .find(|l| l.contains("symbolization budgets:"))
    {
        assert!(
            line.contains("libfifo.so (over its 10s time budget)"),
            "{line}"
        );
    }
    drop(program);
}
