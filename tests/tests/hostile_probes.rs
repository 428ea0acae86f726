//! The collecting side's own reads of target files (issue 20): the goroutine probes read
//! every executable on the host in whole-host mode, and the heap probes every file a
//! target maps. An unprivileged user's Go program extended to 2 GiB sparsely must cost
//! root its headers and the tables the probes need, not the file; one whose symbol table
//! states 1 GiB must be refused and the refusal shown where the summary says why a binary
//! is not traced (or not probed). Each program runs as user nobody from a directory it
//! owns, while root profiles it.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use integration_tests::*;

/// Debian's Go toolchain (`golang-go`), the one the attacker has.
const DEBIAN_GO: &str = "/usr/lib/go/bin/go";

/// Peak RSS budget of the runs below, MiB: the profiler idles around 100 MiB with its
/// maps; reading a Go binary's needed tables is a few MiB, never its 2 GiB.
const RSS_BUDGET_MIB: i64 = 400;

/// How long after the window the runs must end.
const AFTER_WINDOW: Duration = Duration::from_secs(25);

/// Size the attacker extends the binaries to.
const SPARSE_SIZE: &str = "2G";

/// The attacker's program: CPU in `main.spin`, goroutine waits in `main.sleeper`, heap
/// allocations in `main.allocate`, for as many seconds as its argument says.
const PROGRAM: &str = r#"package main

import (
	"os"
	"runtime"
	"strconv"
	"time"
)

var sink [][]byte

//go:noinline
func spin(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i*i ^ s
	}
	return s
}

//go:noinline
func allocate() {
	sink = append(sink, make([]byte, 64<<10))
	if len(sink) > 64 {
		sink = sink[:0]
	}
}

func sleeper(done chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func main() {
	runtime.MemProfileRate = 512 << 10
	secs, _ := strconv.Atoi(os.Args[1])
	done := make(chan struct{})
	go sleeper(done)
	end := time.Now().Add(time.Duration(secs) * time.Second)
	total := 0
	for time.Now().Before(end) {
		total += spin(1 << 18)
		allocate()
	}
	close(done)
	if total == 42 {
		println(total)
	}
}
"#;

/// Prints what a run measured (shown with `--nocapture`).
fn measured(test: &str, run: &Run) {
    eprintln!(
        "measured {test}: {:.1?}, peak RSS {} MiB",
        run.elapsed,
        run.peak_rss_kib / 1024
    );
}

/// Builds [`PROGRAM`] as user nobody with Debian's Go into `dir/NAME`, then extends it
/// to [`SPARSE_SIZE`] as nobody (a sparse tail: it still runs).
fn build_sparse_go(dir: &Path, name: &str) -> PathBuf {
    let src = dir.join("hostile.go");
    if !src.exists() {
        std::fs::write(&src, PROGRAM).unwrap();
    }
    let out = dir.join(name);
    let mut build = as_nobody(
        Path::new(DEBIAN_GO),
        &["build", "-o", out.to_str().unwrap(), src.to_str().unwrap()],
    );
    build
        .current_dir(dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("HOME", dir)
        .env("GO111MODULE", "off");
    let run = run_command(build);
    assert!(run.status.success(), "go build\n{}", run.transcript());
    let truncate = run_command(as_nobody(
        Path::new("truncate"),
        &["-s", SPARSE_SIZE, out.to_str().unwrap()],
    ));
    assert!(truncate.status.success(), "{}", truncate.transcript());
    out
}

/// Rewrites, as the attacker would, the section header of `.symtab` in the ELF file at
/// `path` to state 1 GiB at 512 MiB: inside the sparse tail, so every byte is readable.
fn state_a_huge_symbol_table(path: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut head = [0u8; 64];
    file.read_exact(&mut head).unwrap();
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let u16_at = |b: &[u8], at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&head, 0x28),
        u16_at(&head, 0x3a),
        u16_at(&head, 0x3c),
        u16_at(&head, 0x3e),
    );
    let mut table = vec![0u8; (shentsize * shnum) as usize];
    file.seek(SeekFrom::Start(shoff)).unwrap();
    file.read_exact(&mut table).unwrap();
    let header = |i: u64| &table[(i * shentsize) as usize..((i + 1) * shentsize) as usize];
    let strings = header(shstrndx);
    let mut names = vec![0u8; u64_at(strings, 0x20) as usize];
    file.seek(SeekFrom::Start(u64_at(strings, 0x18))).unwrap();
    file.read_exact(&mut names).unwrap();
    let symtab = (0..shnum)
        .find(|&i| {
            let name = u32::from_le_bytes(header(i)[..4].try_into().unwrap()) as usize;
            names[name..].starts_with(b".symtab\0")
        })
        .expect("the Go binary has a .symtab");
    let at = shoff + symtab * shentsize;
    file.seek(SeekFrom::Start(at + 0x18)).unwrap();
    file.write_all(&(512u64 << 20).to_le_bytes()).unwrap();
    file.write_all(&(1u64 << 30).to_le_bytes()).unwrap();
}

/// Starts `program` as user nobody for `seconds`.
fn start(program: &Path, seconds: &str) -> Child {
    as_nobody(program, &[seconds]).spawn().unwrap()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The attacker's two programs, running: the sparse one and the one stating a huge symbol
/// table. Returned with the directory guard.
struct Attack {
    _guard: tempfile::TempDir,
    sparse: PathBuf,
    crafted: PathBuf,
    sparse_child: Child,
    crafted_child: Child,
}

impl Attack {
    fn start() -> Attack {
        let (guard, dir) = attacker_dir();
        let sparse = build_sparse_go(&dir, "sparse");
        let crafted = build_sparse_go(&dir, "crafted");
        // The attacker owns the file; root's test plays the attacker's hand here.
        state_a_huge_symbol_table(&crafted);
        assert_eq!(std::fs::metadata(&sparse).unwrap().len(), 2 << 30);
        let sparse_child = start(&sparse, "40");
        let crafted_child = start(&crafted, "40");
        std::thread::sleep(Duration::from_millis(500));
        Attack {
            _guard: guard,
            sparse,
            crafted,
            sparse_child,
            crafted_child,
        }
    }

    fn stop(self) {
        stop(self.sparse_child);
        stop(self.crafted_child);
    }
}

/// The line of `stdout` that mentions `what` and `path`'s file name.
fn line_naming<'a>(stdout: &'a str, path: &Path, what: &str) -> Option<&'a str> {
    let name = path.file_name().unwrap().to_str().unwrap();
    stdout
        .lines()
        .find(|line| line.contains(what) && line.contains(&format!("/{name}")))
}

#[test]
fn sparse_and_crafted_go_binaries_cost_their_tables_in_whole_host_mode() {
    if !prerequisites() || !Path::new(DEBIAN_GO).is_file() {
        eprintln!("skipped: needs root and Debian's golang-go ({DEBIAN_GO})");
        return;
    }
    let attack = Attack::start();
    let sparse_pid = attack.sparse_child.id();
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let window = Duration::from_secs(3);
    // The default profiles and goroutine waits, which read every Go binary's tables.
    let run = run_profiler(
        &[
            "--duration",
            "3s",
            "--profiles",
            "cpu,io,block,goroutines",
            "--format",
            "folded,pprof",
        ],
        &out,
    );
    let (sparse, crafted) = (attack.sparse.clone(), attack.crafted.clone());
    attack.stop();
    run.assert_success();
    measured("whole host, 2 GiB Go binaries", &run);
    assert_bounded(&run, window, AFTER_WINDOW, RSS_BUDGET_MIB);
    // The sparse binary was read within budget: its goroutines are traced...
    assert!(
        run.stdout.contains(&format!("pid {sparse_pid} (go1.")),
        "the sparse Go binary's goroutine waits should be traced\n{}",
        run.transcript()
    );
    assert!(
        line_naming(&run.stdout, &sparse, "not traced").is_none(),
        "{}",
        run.transcript()
    );
    // ...the crafted one is refused, and the summary says why.
    let refused = line_naming(&run.stdout, &crafted, "not traced");
    assert!(
        refused.is_some_and(|l| l.contains("over budget") && l.contains("1024 MiB")),
        "the crafted binary's refusal should be shown: {refused:?}\n{}",
        run.transcript()
    );
    // Its CPU samples are still named.
    let folded = Folded::load(&out);
    let sparse_comm = folded.with_comm("sparse");
    assert!(
        sparse_comm.samples_containing("main.spin") > 0,
        "the sparse program's CPU samples should be named\n{}",
        folded.summary(20)
    );
}

#[test]
fn sparse_and_crafted_go_binaries_cost_their_tables_in_the_heap_profile() {
    if !prerequisites() || !Path::new(DEBIAN_GO).is_file() {
        eprintln!("skipped: needs root and Debian's golang-go ({DEBIAN_GO})");
        return;
    }
    let attack = Attack::start();
    let (sparse_pid, crafted_pid) = (attack.sparse_child.id(), attack.crafted_child.id());
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let window = Duration::from_secs(3);
    let pids = format!("{sparse_pid},{crafted_pid}");
    let run = run_profiler(
        &[
            "--pid",
            &pids,
            "--duration",
            "3s",
            "--profiles",
            "heap",
            "--format",
            "folded,pprof",
        ],
        &out,
    );
    let crafted = attack.crafted.clone();
    attack.stop();
    run.assert_success();
    measured("--pid heap, 2 GiB Go binaries", &run);
    assert_bounded(&run, window, AFTER_WINDOW, RSS_BUDGET_MIB);
    // The sparse binary's Go runtime was found within budget and its hooks probed.
    assert!(
        run.stdout.contains(&format!("pid {sparse_pid} (")),
        "the sparse Go binary's runtime should be probed\n{}",
        run.transcript()
    );
    let refused = line_naming(&run.stdout, &crafted, "not probed");
    assert!(
        refused.is_some_and(|l| l.contains("over budget") && l.contains("1024 MiB")),
        "the crafted binary's refusal should be shown: {refused:?}\n{}",
        run.transcript()
    );
    assert!(
        !run.stdout.contains(&format!("pid {crafted_pid} (")),
        "{}",
        run.transcript()
    );
}
