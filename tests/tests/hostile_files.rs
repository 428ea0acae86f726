//! Files an unprivileged user plants for root's profiler to open: a `.gnu_debuglink` that
//! names a FIFO, a symlink to `/dev/zero` or a 100 GiB sparse file; a Go binary extended
//! sparsely to 2 GiB; a Go binary whose `.gopclntab` (as its section header finds it) is
//! crafted so that naive walks run for minutes; a copy of a library with the same build
//! ID and size as root's, but a renamed function; and a library whose DWARF links
//! (`.gnu_debugaltlink`) to a FIFO.
//!
//! The attacker is user nobody, building in a directory it owns and running its programs
//! while root profiles them (`--pid`, and the whole host). Each run must exit 0, end
//! within a stated bound after its window under a stated peak RSS, name the attacker's
//! own functions, and change no file outside its output directory.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::*;

/// The profiling window of every run here.
const WINDOW: Duration = Duration::from_secs(3);
/// How long after its window a run may take: symbolizing a few small programs takes well
/// under a second; the rest is the profiler's start and the whole host's files.
const BOUND: Duration = Duration::from_secs(25);
/// Peak RSS of a `--pid` run (a clean one peaks near 100 MiB here).
const PID_RSS_MIB: i64 = 400;
/// Peak RSS of a whole-host run.
const HOST_RSS_MIB: i64 = 800;

/// Runs `program args` as root in `dir`.
fn root(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Profiles for [`WINDOW`] with `targets` (`--pid` flags, or none for the whole host),
/// CPU only, and checks the run: exit 0, its bound, `rss_mib`, no file of `watched`
/// changed.
fn profile(
    targets: &[String],
    rss_mib: i64,
    watched: &[&Path],
) -> (Run, Folded, PathBuf, tempfile::TempDir) {
    let before: Vec<Snapshot> = watched.iter().map(|d| snapshot(d)).collect();
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let window = format!("{}s", WINDOW.as_secs());
    let mut args = vec![
        "--profiles".to_owned(),
        "cpu".to_owned(),
        "--format".to_owned(),
        "pprof,folded".to_owned(),
        "-F".to_owned(),
        "499".to_owned(),
        "--duration".to_owned(),
        window,
    ];
    for pid in targets {
        args.extend(["--pid".to_owned(), pid.clone()]);
    }
    let run = spawn_profiler(&args, &out).wait_timeout(WINDOW + BOUND + Duration::from_secs(30));
    run.assert_success();
    run.assert_no_panic();
    assert_bounded(&run, WINDOW, BOUND, rss_mib);
    eprintln!(
        "elapsed {:.2?} for a {WINDOW:?} window, peak RSS {} KiB",
        run.elapsed, run.peak_rss_kib
    );
    for (dir, before) in watched.iter().zip(before) {
        assert!(snapshot(dir) == before, "{} changed", dir.display());
    }
    let folded = Folded::load(&out);
    assert!(out.join("cpu.pb.gz").is_file(), "cpu.pb.gz not written");
    (run, folded, out, tmp)
}

const LIBRARY: &str = r#"
volatile unsigned long LIBNAME_sink;
void LIBNAME_spin(void) {
    for (unsigned long i = 0; i < 20000000; i++) LIBNAME_sink += i * i;
}
"#;

const DEBUGLINK_MAIN: &str = r#"
void fifo_spin(void);
void zero_spin(void);
void sparse_spin(void);
volatile unsigned long sink;
__attribute__((noinline)) void attacker_own_spin(void) {
    for (unsigned long i = 0; i < 20000000; i++) sink += i ^ (i >> 3);
}
int main(void) {
    for (;;) {
        fifo_spin();
        zero_spin();
        sparse_spin();
        attacker_own_spin();
    }
}
"#;

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Three libraries whose debug links name, beside them, a FIFO, a symlink to
/// `/dev/zero` and a sparse file of 100 GiB, and a program calling each in turn.
fn debuglink_attacker(dir: &Path) -> PathBuf {
    for lib in ["fifo", "zero", "sparse"] {
        std::fs::write(
            dir.join(format!("{lib}.c")),
            LIBRARY.replace("LIBNAME", lib),
        )
        .unwrap();
        let so = format!("lib{lib}.so");
        nobody(
            dir,
            "cc",
            &["-O1", "-shared", "-fPIC", "-o", &so, &format!("{lib}.c")],
        );
        // objcopy reads the link's target for its CRC: a real file first.
        let debug = format!("{lib}.debug");
        std::fs::write(dir.join(&debug), b"placeholder").unwrap();
        nobody(
            dir,
            "objcopy",
            &[&format!("--add-gnu-debuglink={debug}"), &so],
        );
        std::fs::remove_file(dir.join(&debug)).unwrap();
    }
    mkfifo(&dir.join("fifo.debug"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.debug")).unwrap();
    let sparse = std::fs::File::create(dir.join("sparse.debug")).unwrap();
    sparse.set_len(100 << 30).unwrap();
    drop(sparse);
    for planted in ["fifo.debug", "zero.debug", "sparse.debug"] {
        root(dir, "chown", &["-h", "65534:65534", planted]);
    }
    std::fs::write(dir.join("main.c"), DEBUGLINK_MAIN).unwrap();
    nobody(
        dir,
        "cc",
        &[
            "-O1",
            "-o",
            "linked",
            "main.c",
            "-L.",
            "-lfifo",
            "-lzero",
            "-lsparse",
            "-Wl,-rpath,$ORIGIN",
        ],
    );
    dir.join("linked")
}

fn assert_debuglink_run(run: &Run, folded: &Folded) {
    // The refusals are counted in the summary.
    let refused = run
        .stdout
        .lines()
        .find(|l| l.starts_with("refused: "))
        .unwrap_or_else(|| panic!("no refusals in the summary\n{}", run.transcript()));
    assert!(
        refused.contains("not regular files") && refused.contains("over 4 GiB"),
        "{refused}"
    );
    let mine = folded.with_comm("linked");
    assert!(
        mine.samples_containing("attacker_own_spin") > 0,
        "the attacker's own function is not named\n{}",
        folded.summary(20)
    );
    // The libraries' frames are named from their symbol tables.
    for lib in ["fifo_spin", "zero_spin", "sparse_spin"] {
        assert!(
            mine.samples_containing(lib) > 0,
            "{lib} is not named\n{}",
            mine.summary(20)
        );
    }
}

/// The debug-link attack profiled by pid, or with `whole_host` the whole host.
fn debuglink_run(whole_host: bool) {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let program = debuglink_attacker(&dir);
    let attacker = Attacker::start(&dir, &program, &[]);
    let (targets, rss) = if whole_host {
        (Vec::new(), HOST_RSS_MIB)
    } else {
        (vec![attacker.pid().to_string()], PID_RSS_MIB)
    };
    let (run, folded, _, _tmp) = profile(&targets, rss, &[&dir]);
    assert_debuglink_run(&run, &folded);
}

/// A library with DWARF of its own whose `.gnu_debugaltlink` names a FIFO by absolute
/// path, and a program calling it: the library blazesym would open what the link names,
/// by path and blocking, so its DWARF must not be handed over.
fn altlink_attacker(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("alt.c"), LIBRARY.replace("LIBNAME", "alt")).unwrap();
    nobody(
        dir,
        "cc",
        &["-O1", "-g", "-shared", "-fPIC", "-o", "libalt.so", "alt.c"],
    );
    let fifo = dir.join("dwz.debug");
    mkfifo(&fifo);
    root(dir, "chown", &["-h", "65534:65534", "dwz.debug"]);
    // The section as dwz writes it: the file's path, NUL, the build ID it must have.
    let mut section = fifo.to_str().unwrap().as_bytes().to_vec();
    section.push(0);
    section.extend([0xab; 20]);
    std::fs::write(dir.join("altlink.bin"), section).unwrap();
    nobody(
        dir,
        "objcopy",
        &[
            "--add-section",
            ".gnu_debugaltlink=altlink.bin",
            "libalt.so",
        ],
    );
    std::fs::write(
        dir.join("main.c"),
        "void alt_spin(void);\nint main(void) { for (;;) alt_spin(); }\n",
    )
    .unwrap();
    nobody(
        dir,
        "cc",
        &[
            "-O1",
            "-o",
            "alt",
            "main.c",
            "-L.",
            "-lalt",
            "-Wl,-rpath,$ORIGIN",
        ],
    );
    dir.join("alt")
}

#[test]
fn dwarf_that_links_to_a_fifo_is_not_read_and_costs_no_budget() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let program = altlink_attacker(&dir);
    let attacker = Attacker::start(&dir, &program, &[]);
    let (run, folded, _, _tmp) = profile(&[attacker.pid().to_string()], PID_RSS_MIB, &[&dir]);
    // Refused before blazesym opens anything: not a file that ran out its time budget.
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("refused: ")
                && l.contains("DWARF links to files a user controls")),
        "the linked DWARF is not counted as refused\n{}",
        run.transcript()
    );
    assert!(
        !run.stdout
            .lines()
            .any(|l| l.starts_with("symbolization budgets:")),
        "a file ran out a symbolization budget\n{}",
        run.transcript()
    );
    // Named from its symbol table instead.
    assert!(
        folded.with_comm("alt").samples_containing("alt_spin") > 0,
        "alt_spin is not named\n{}",
        folded.summary(20)
    );
}

#[test]
fn debuglinks_to_a_fifo_a_device_and_a_sparse_file_end_in_time_by_pid() {
    debuglink_run(false);
}

#[test]
fn debuglinks_to_a_fifo_a_device_and_a_sparse_file_end_in_time_whole_host() {
    debuglink_run(true);
}

const GO_MAIN: &str = r#"package main

var sink uint64

//go:noinline
func attackerSpin() {
	for i := uint64(0); i < 50000000; i++ {
		sink += i * i
	}
}

func main() {
	for {
		attackerSpin()
		helpers()
	}
}
"#;

/// Functions enough that a profile samples a few hundred distinct addresses, each a
/// lookup in the table.
const GO_HELPERS: usize = 200;

/// The helpers' source: `helperN` spinning a little each, and `helpers` calling them all.
fn go_helpers() -> String {
    let mut src = String::from("package main\n\nfunc helpers() {\n");
    for i in 0..GO_HELPERS {
        src.push_str(&format!("\thelper{i}()\n"));
    }
    src.push_str("}\n");
    for i in 0..GO_HELPERS {
        src.push_str(&format!(
            "\n//go:noinline\nfunc helper{i}() {{\n\tfor i := uint64(0); i < 200000; i++ {{\n\t\tsink += i ^ {i}\n\t}}\n}}\n"
        ));
    }
    src
}

/// A Go program built by the attacker without DWARF (so its `.gopclntab` names it).
fn go_attacker(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("main.go"), GO_MAIN).unwrap();
    std::fs::write(dir.join("helpers.go"), go_helpers()).unwrap();
    std::fs::write(dir.join("go.mod"), "module attacker\n\ngo 1.16\n").unwrap();
    let mut cmd = as_nobody(&go_binary(), &["build", "-ldflags=-w", "-o", "goprog", "."]);
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("GOCACHE", dir.join(".cache"))
        .env("GOPATH", dir.join(".gopath"))
        .env("GOFLAGS", "-mod=mod");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("goprog")
}

#[test]
fn a_go_binary_extended_to_2_gib_costs_its_sections_only() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let program = go_attacker(&dir);
    nobody(&dir, "truncate", &["-s", "2G", "goprog"]);
    let attacker = Attacker::start(&dir, &program, &[]);
    let (_, folded, _, _tmp) = profile(&[attacker.pid().to_string()], PID_RSS_MIB, &[&dir]);
    assert!(
        folded.samples_containing("main.attackerSpin") > 0,
        "the Go program is not named\n{}",
        folded.summary(20)
    );
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap())
}

/// The section header (its offset in the file) of `name` in the ELF64 file `data`.
fn section_header(data: &[u8], name: &str) -> usize {
    let shoff = u64_at(data, 0x28) as usize;
    let shnum = usize::from(u16::from_le_bytes([data[0x3c], data[0x3d]]));
    let shstrndx = usize::from(u16::from_le_bytes([data[0x3e], data[0x3f]]));
    let strtab = u64_at(data, shoff + shstrndx * 64 + 0x18) as usize;
    (0..shnum)
        .map(|i| shoff + i * 64)
        .find(|&h| {
            let at = strtab + u32_at(data, h) as usize;
            data[at..].starts_with(name.as_bytes()) && data[at + name.len()] == 0
        })
        .unwrap_or_else(|| panic!("no {name} section"))
}

/// Bytes of the run every function's line and file tables are pointed at.
const CRAFTED_RUN: usize = 96 << 20;

/// Makes `.gopclntab`, as its section header finds it, a crafted copy: the loaded table
/// the Go runtime itself reads stays as it was, so the program runs, while the copy
/// appended to the file points every function's line and file tables at one run of
/// "value + 1, pc + 0" pairs, which a naive walk follows to its end at every lookup.
fn craft_pclntab(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let header = section_header(&data, ".gopclntab");
    let offset = u64_at(&data, header + 0x18) as usize;
    let size = u64_at(&data, header + 0x20) as usize;
    let mut tab = data[offset..offset + size].to_vec();
    let magic = u32_at(&tab, 0);
    assert!(
        magic == 0xffff_fff0 || magic == 0xffff_fff1,
        "a Go 1.18+ table: {magic:#x}"
    );
    let nfunc = u64_at(&tab, 8) as usize;
    let pctab = u64_at(&tab, 8 + 6 * 8) as usize;
    let functab = u64_at(&tab, 8 + 7 * 8) as usize;
    // The run starts where the copy ends; its offset counts from pctab.
    let run_at = u32::try_from(tab.len() - pctab).unwrap();
    for i in 0..nfunc {
        let func = functab + u32_at(&tab, functab + i * 8 + 4) as usize;
        // entryOff, nameOff, args, deferreturn, pcsp, then pcfile and pcln.
        tab[func + 20..func + 24].copy_from_slice(&run_at.to_le_bytes());
        tab[func + 24..func + 28].copy_from_slice(&run_at.to_le_bytes());
    }
    // Appended in pieces: the test's own memory is the profiler's too (its peak RSS, as
    // wait4 gives it, counts what the test held when it started the profiler).
    let copy_at = data.len().next_multiple_of(4096);
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(&vec![0; copy_at - data.len()]).unwrap();
    file.write_all(&tab).unwrap();
    let run: Vec<u8> = std::iter::repeat_n([2u8, 0u8], 1 << 19).flatten().collect();
    for _ in 0..CRAFTED_RUN / run.len() {
        file.write_all(&run).unwrap();
    }
    // Not through the appending descriptor: pwrite would append.
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let size = (tab.len() + CRAFTED_RUN) as u64;
    file.write_all_at(&(copy_at as u64).to_le_bytes(), header as u64 + 0x18)
        .unwrap();
    file.write_all_at(&size.to_le_bytes(), header as u64 + 0x20)
        .unwrap();
}

#[test]
fn a_crafted_pclntab_is_refused_in_bounded_time() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let program = go_attacker(&dir);
    craft_pclntab(&program);
    let attacker = Attacker::start(&dir, &program, &[]);
    let (run, folded, _, _tmp) = profile(&[attacker.pid().to_string()], PID_RSS_MIB, &[&dir]);
    assert!(
        run.stdout
            .contains("1 Go line table (.gopclntab) that broke its bounds"),
        "the refusal is not in the summary\n{}",
        run.transcript()
    );
    // Named from the symbol table instead, the helpers too.
    let helpers = folded.samples_where(|s| s.frames.iter().any(|f| f.starts_with("main.helper")));
    assert!(
        folded.samples_containing("main.attackerSpin") > 0 && helpers > 0,
        "the Go program is not named\n{}",
        folded.summary(20)
    );
}

const TWIN_LIB: &str = r#"
volatile unsigned long twin_sink;
void DIGEST(void) {
    for (unsigned long i = 0; i < 20000000; i++) twin_sink += i * 7;
}
"#;

const TWIN_MAIN: &str = r#"
void DIGEST(void);
volatile unsigned long sink;
__attribute__((noinline)) void OWN(void) {
    for (unsigned long i = 0; i < 5000000; i++) sink += i;
}
int main(void) {
    for (;;) {
        DIGEST();
        OWN();
    }
}
"#;

/// A fixed build ID both copies of the library are linked with.
const TWIN_ID: &str = "0x5eedf00d5eedf00d5eedf00d5eedf00d5eedf00d";

/// Builds `libtwin.so` with function `digest`, and program `program` calling it and its
/// own `own`, in `dir`, with `run` (as root or as nobody).
fn build_twin(dir: &Path, digest: &str, own: &str, program: &str, run: fn(&Path, &str, &[&str])) {
    std::fs::write(dir.join("twin.c"), TWIN_LIB.replace("DIGEST", digest)).unwrap();
    std::fs::write(
        dir.join("main.c"),
        TWIN_MAIN.replace("DIGEST", digest).replace("OWN", own),
    )
    .unwrap();
    let id = format!("-Wl,--build-id={TWIN_ID}");
    run(
        dir,
        "cc",
        &["-O1", "-shared", "-fPIC", &id, "-o", "libtwin.so", "twin.c"],
    );
    run(
        dir,
        "cc",
        &[
            "-O1",
            "-o",
            program,
            "main.c",
            "-L.",
            "-ltwin",
            "-Wl,-rpath,$ORIGIN",
        ],
    );
}

fn twin_run(whole_host: bool) {
    if !prerequisites() {
        return;
    }
    // Root's program and library, in a directory only root writes.
    let root_dir = temp_dir();
    set_mode(root_dir.path(), 0o755);
    build_twin(
        root_dir.path(),
        "REAL_Digest",
        "root_own_spin",
        "twin_root",
        root,
    );
    let (_guard, dir) = attacker_dir();
    build_twin(&dir, "PWN__Digest", "evil_own_spin", "twin_evil", nobody);
    let sizes: Vec<u64> = [root_dir.path(), &dir]
        .iter()
        .map(|d| std::fs::metadata(d.join("libtwin.so")).unwrap().len())
        .collect();
    assert_eq!(sizes[0], sizes[1], "the twin must have the same size");
    // The attacker's copy is seen first.
    let evil = Attacker::start(&dir, &dir.join("twin_evil"), &[]);
    let mut victim = Command::new(root_dir.path().join("twin_root"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (targets, rss) = if whole_host {
        (Vec::new(), HOST_RSS_MIB)
    } else {
        (
            vec![evil.pid().to_string(), victim.id().to_string()],
            PID_RSS_MIB,
        )
    };
    let (_, folded, _, _tmp) = profile(&targets, rss, &[&dir, root_dir.path()]);
    let _ = victim.kill();
    let _ = victim.wait();
    let rooted = folded.with_comm("twin_root");
    let evil_stacks = folded.with_comm("twin_evil");
    assert!(
        rooted.samples_containing("REAL_Digest") > 0
            && rooted.samples_containing("root_own_spin") > 0,
        "root's frames are not named from root's library\n{}",
        folded.summary(20)
    );
    assert_eq!(
        rooted.samples_containing("PWN__Digest"),
        0,
        "root's frames were named from the attacker's copy\n{}",
        folded.summary(20)
    );
    // And the attacker's own, from its own.
    assert!(
        evil_stacks.samples_containing("PWN__Digest") > 0
            && evil_stacks.samples_containing("evil_own_spin") > 0,
        "{}",
        folded.summary(20)
    );
}

#[test]
fn a_build_id_twin_does_not_name_root_s_frames_by_pid() {
    twin_run(false);
}

#[test]
fn a_build_id_twin_does_not_name_root_s_frames_whole_host() {
    twin_run(true);
}
