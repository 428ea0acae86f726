//! The collecting side against an unprivileged user's programs (issue 20): JIT perf maps
//! at and over the read cap, and rewritten all the time; a process that executes itself
//! again and again under one pid; a library whose unwind section is a compression bomb;
//! a launched command forging the heap interposer's counters; and two smaller promises
//! (the default output directory under sudo, the interposer's directory after SIGKILL).
//! Each program runs as user nobody from a directory it owns, while root profiles it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration_tests::*;

/// The most a perf map is read (README, "Budgets against hostile input").
const PERF_MAP_CAP: u64 = 64 << 20;

/// Peak RSS budget of the runs below, MiB: the profiler idles around 100 MiB with its
/// maps; each budget here leaves room for one capped input, not for the attack's size.
const RSS_BUDGET_MIB: i64 = 512;

/// Prints what a run measured (shown with `--nocapture`), and asserts it ended within
/// `bound` of its `window` under [`RSS_BUDGET_MIB`].
fn measured_within(test: &str, run: &Run, window: Duration, bound: Duration) {
    eprintln!(
        "measured {test}: {:.1?}, peak RSS {} MiB",
        run.elapsed,
        run.peak_rss_kib / 1024
    );
    assert_bounded(run, window, bound, RSS_BUDGET_MIB);
}

/// Compiles `tests/fixtures/SOURCE` as user nobody into `dir/NAME` with `flags`, and
/// `libs` after the source.
fn build_as_nobody(dir: &Path, source: &str, name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    fs::copy(fixtures.join(source), dir.join(source)).unwrap();
    cc_as_nobody(dir, source, name, flags, libs)
}

/// Runs the profiler for `window` with `args`, writing only the folded file; the run, and
/// its output directory in its guard.
fn profile_folded(args: &[&str], window: Duration) -> (Run, PathBuf, tempfile::TempDir) {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let duration = format!("{}s", window.as_secs());
    let mut all = vec!["--duration", &duration, "--format", "folded"];
    all.extend(args);
    let run = run_profiler(&all, &out);
    (run, out, tmp)
}

/// Samples whose leaf is the JIT function named within the perf map's cap.
fn jit_named(folded: &Folded) -> u64 {
    folded.samples_where(|s| s.frames.last().is_some_and(|f| f == "JIT_spin_within_cap"))
}

/// The number in `line` right before `what` (`... 12 perf-map lines ...`).
fn number_before(text: &str, what: &str) -> Option<u64> {
    let at = text.find(what)?;
    text[..at].split_whitespace().last()?.parse().ok()
}

/// Asserts the run kept its window (as the summary states it, within a tick) and wrote
/// everything within `after` of its end.
fn assert_window_kept(run: &Run, window: Duration, after: Duration) {
    let stated = run
        .stdout
        .split("window: ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|secs| secs.parse::<f64>().ok())
        .unwrap_or(f64::MAX);
    assert!(
        stated <= window.as_secs_f64() + 1.0,
        "the window was stretched to {stated}s\n{}",
        run.transcript()
    );
    let written = number_before(&run.stdout, "ms after the window closed").unwrap_or(u64::MAX);
    assert!(
        written <= after.as_millis() as u64,
        "written {written} ms after the window\n{}",
        run.transcript()
    );
}

/// Lines of `path` that start at or past byte `cap` (a line cut by the cap included).
fn lines_past(path: &Path, cap: u64) -> u64 {
    let bytes = fs::read(path).unwrap();
    let cap = cap as usize;
    if bytes.len() <= cap {
        return 0;
    }
    // The line the cap cuts counts as past it, unless the cap falls right after a newline.
    let start = bytes[..cap]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    bytes[start..].iter().filter(|&&b| b == b'\n').count() as u64
}

/// Starts `hostile_jit_map FILLER REWRITE_MS SECONDS` as nobody and waits until its map
/// is written.
fn start_jit(
    dir: &Path,
    filler: u64,
    rewrite_ms: u64,
    seconds: u64,
) -> (std::process::Child, PathBuf) {
    let program = build_as_nobody(
        dir,
        "hostile_jit_map.c",
        "jit_map",
        &["-O1", "-pthread"],
        &[],
    );
    let mut child = as_nobody(
        &program,
        &[
            &filler.to_string(),
            &rewrite_ms.to_string(),
            &seconds.to_string(),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    let map = PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
    (child, map)
}

fn stop(mut child: std::process::Child, map: &Path) {
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_file(map);
}

#[test]
fn a_perf_map_over_the_cap_is_read_to_the_cap_and_the_rest_counted() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    // 80 MiB of map: 16 MiB past the cap.
    let (child, map) = start_jit(&dir, 80 << 20, 0, 40);
    let expected_dropped = lines_past(&map, PERF_MAP_CAP);
    let window = Duration::from_secs(5);
    let pid = child.id().to_string();
    let (run, out, _tmp) = profile_folded(&["--pid", &pid, "--profiles", "cpu"], window);
    stop(child, &map);
    run.assert_success();
    measured_within(
        "perf map over the cap",
        &run,
        window,
        Duration::from_secs(10),
    );
    let dropped = number_before(&run.stdout, "perf-map lines not read");
    assert_eq!(
        dropped,
        Some(expected_dropped),
        "the lines past the cap should be counted\n{}",
        run.transcript()
    );
    // The function named within the cap is still named.
    let folded = Folded::load(&out);
    let spinning = jit_named(&folded);
    assert!(
        folded.total() >= 100 && spinning * 2 >= folded.total(),
        "{spinning} of {} samples in the named JIT code\n{}",
        folded.total(),
        folded.summary(10)
    );
}

#[test]
fn a_perf_map_rewritten_every_200ms_cannot_stretch_the_run() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    // Just under the cap, rewritten (a new file each time) every 200 ms.
    let (child, map) = start_jit(&dir, PERF_MAP_CAP - (1 << 20), 200, 40);
    let window = Duration::from_secs(10);
    let pid = child.id().to_string();
    let (run, out, _tmp) = profile_folded(&["--pid", &pid, "--profiles", "cpu"], window);
    stop(child, &map);
    run.assert_success();
    // Loading the programs on a busy two-CPU host takes seconds before the window.
    measured_within(
        "perf map rewritten every 200 ms",
        &run,
        window,
        Duration::from_secs(10),
    );
    assert_window_kept(&run, window, Duration::from_secs(3));
    let folded = Folded::load(&out);
    assert!(
        jit_named(&folded) > 0,
        "the JIT code is still named\n{}",
        folded.summary(10)
    );
}

#[test]
fn a_process_re_executing_itself_cannot_grow_the_profiler() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let program = build_as_nobody(&dir, "hostile_reexec.c", "reexec", &["-O1", "-g"], &[]);
    let child = as_nobody(&program, &["30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let window = Duration::from_secs(25);
    let pid = child.id().to_string();
    let (run, out, _tmp) = profile_folded(&["--pid", &pid], window);
    let output = child.wait_with_output().unwrap();
    let generations =
        FixtureResult::parse(&String::from_utf8_lossy(&output.stdout)).u64("generations");
    run.assert_success();
    eprintln!(
        "{generations} generations; profiler peak RSS {} KiB, {:.1?}",
        run.peak_rss_kib, run.elapsed
    );
    assert!(generations > 1000, "only {generations} generations");
    measured_within("re-exec loop", &run, window, Duration::from_secs(15));
    assert_window_kept(&run, window, Duration::from_secs(5));
    // Its samples are still there, in the program it keeps executing.
    let folded = Folded::load(&out);
    assert!(
        folded.with_comm("exe").total() > 0,
        "{}",
        folded.summary(10)
    );
}

/// Turns the `.debug_frame` of `library` into a bomb: its
/// compression header states `stated` bytes, and its data is zlib of that many zeros.
fn plant_bomb(library: &Path, stated: u64) {
    let mut elf = fs::read(library).unwrap();
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let half = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize;
    let shoff = word(&elf, 0x28) as usize;
    let (shentsize, shnum, shstrndx) = (half(&elf, 0x3a), half(&elf, 0x3c), half(&elf, 0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = word(&elf, header(shstrndx) + 0x18) as usize;
    let index = (0..shnum)
        .find(|&i| {
            let name = strtab
                + u32::from_le_bytes(elf[header(i)..header(i) + 4].try_into().unwrap()) as usize;
            elf[name..].starts_with(b".debug_frame\0")
        })
        .expect("a .debug_frame section");
    // SHF_COMPRESSED (objcopy leaves a section that would not shrink uncompressed).
    let flags = word(&elf, header(index) + 8) | 0x800;
    elf[header(index) + 8..header(index) + 16].copy_from_slice(&flags.to_le_bytes());
    // Elf64_Chdr: ch_type ZLIB, reserved, ch_size, ch_addralign; then the stream.
    let mut data = Vec::new();
    data.extend(1u32.to_le_bytes());
    data.extend(0u32.to_le_bytes());
    data.extend(stated.to_le_bytes());
    data.extend(8u64.to_le_bytes());
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(stated >> 20) {
        std::io::Write::write_all(&mut zlib, &zeros).unwrap();
    }
    data.extend(zlib.finish().unwrap());
    let offset = elf.len() as u64;
    elf.extend(&data);
    let h = header(index);
    elf[h + 0x18..h + 0x20].copy_from_slice(&offset.to_le_bytes());
    elf[h + 0x20..h + 0x28].copy_from_slice(&(data.len() as u64).to_le_bytes());
    fs::write(library, elf).unwrap();
}

#[test]
fn a_compressed_unwind_section_bomb_is_refused_in_whole_host_mode() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let no_eh_frame = [
        "-O1",
        "-g",
        "-fno-asynchronous-unwind-tables",
        "-fno-unwind-tables",
    ];
    let library = build_as_nobody(
        &dir,
        "hostile_unwind_bomb.c",
        "libbomb.so",
        &[&no_eh_frame[..], &["-shared", "-fPIC", "-DBOMB_LIBRARY"]].concat(),
        &[],
    );
    // 1 GiB stated, about 1 MiB on disk.
    plant_bomb(&library, 1 << 30);
    let dir_arg = dir.to_str().unwrap();
    let rpath = format!("-Wl,-rpath,{dir_arg}");
    let program = build_as_nobody(
        &dir,
        "hostile_unwind_bomb.c",
        "bomb",
        &no_eh_frame,
        &["-L", dir_arg, &rpath, "-lbomb"],
    );
    let mut bomb = as_nobody(&program, &["30"]).spawn().unwrap();
    // A program of the rest of the host, whose samples must not be lost.
    let bystander = FixtureProcess::spawn("cpu_split", &["30"]);
    std::thread::sleep(Duration::from_millis(300));
    let window = Duration::from_secs(5);
    let (run, out, _tmp) = profile_folded(&["--profiles", "cpu"], window);
    let _ = bomb.kill();
    let _ = bomb.wait();
    drop(bystander);
    run.assert_success();
    measured_within("unwind section bomb", &run, window, Duration::from_secs(10));
    let refused = number_before(&run.stdout, "files' unwind sections refused");
    assert!(
        refused.is_some_and(|n| n >= 1),
        "the bomb's section should be refused and counted\n{}",
        run.transcript()
    );
    let lost = number_before(&run.stdout, "samples (ring buffer full)").unwrap_or(u64::MAX);
    let folded = Folded::load(&out);
    assert!(
        lost * 20 <= folded.total(),
        "{lost} CPU samples lost of {}\n{}",
        folded.total(),
        run.transcript()
    );
    // The bomb's own function is still seen (its leaf is named from the symbol table).
    assert!(
        folded.samples_containing("bomb_spin") > 0 && folded.with_comm("cpu_split").total() > 0,
        "{}",
        folded.summary(10)
    );
}

#[test]
fn forged_interposer_counters_are_refused_not_shown() {
    if !prerequisites() {
        return;
    }
    let (_guard, dir) = attacker_dir();
    let program = build_as_nobody(&dir, "hostile_forge_heap.c", "forge", &["-O1", "-g"], &[]);
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let run = run_profiler(
        &[
            "--profiles".as_ref(),
            "heap".as_ref(),
            "--format".as_ref(),
            "folded,pprof".as_ref(),
            "--".as_ref(),
            program.as_os_str(),
        ],
        &out,
    );
    // The command's status is the profiler's.
    assert_eq!(run.status.code(), Some(7), "{}", run.transcript());
    measured_within(
        "forged interposer counters",
        &run,
        Duration::ZERO,
        Duration::from_secs(20),
    );
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !text.contains("18446744073709551615") && !text.contains("forged_comm"),
        "forged counts shown as facts\n{}",
        run.transcript()
    );
    let refused = number_before(&run.stdout, "forged or impossible records refused");
    assert!(
        refused.is_some_and(|n| n >= 3),
        "two forged sites and a forged total should be refused\n{}",
        run.transcript()
    );
    // The command's real allocations are still counted (all freed by the end: the
    // in-use folded file is empty, the summary's table of allocations names them).
    let table = run
        .stdout
        .split("Top 5 allocating functions")
        .nth(1)
        .unwrap_or_default();
    assert!(
        table.contains("honest_allocation") && table.contains("1,000"),
        "{}",
        run.transcript()
    );
}

#[test]
fn the_default_output_directory_is_the_sudo_users() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let mut cmd = Command::new(profiler_bin());
    cmd.current_dir(tmp.path())
        .args(["--profiles", "cpu", "--format", "folded", "--", "true"])
        .env("SUDO_UID", NOBODY)
        .env("SUDO_GID", NOBODY);
    let run = run_command(cmd);
    run.assert_success();
    let made: Vec<PathBuf> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("profile-")
        })
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let meta = fs::metadata(&made[0]).unwrap();
    let nobody: u32 = NOBODY.parse().unwrap();
    assert_eq!((meta.uid(), meta.gid()), (nobody, nobody));
    assert_eq!(
        fs::metadata(made[0].join("cpu.folded")).unwrap().uid(),
        nobody
    );
}

/// The interposer directories of `pid` under /tmp.
fn heap_dirs_of(pid: u32) -> Vec<PathBuf> {
    fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("profiler-heap-{pid}-"))
        })
        .collect()
}

#[test]
fn a_killed_run_s_interposer_directory_is_removed_by_the_next_run() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let killed = spawn_profiler(
        &[
            "--profiles",
            "heap",
            "--format",
            "folded",
            "--",
            "sleep",
            "30",
        ],
        &tmp.path().join("killed"),
    );
    let pid = killed.pid();
    let mut left = Vec::new();
    for _ in 0..200 {
        left = heap_dirs_of(pid);
        if !left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(left.len(), 1, "the run should have made its directory");
    // SAFETY: kill on a child of this test.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = killed.wait_timeout(Duration::from_secs(10));
    assert!(left[0].exists(), "SIGKILL leaves the directory");
    let run = run_profiler(
        &["--profiles", "heap", "--format", "folded", "--", "true"],
        &tmp.path().join("next"),
    );
    run.assert_success();
    assert!(
        !left[0].exists(),
        "the next run should have removed {}",
        left[0].display()
    );
}
