//! Running as root safely: output files are created without following links planted in
//! the output directory and handed only to the sudo user, an output that cannot be
//! written costs only itself, and `profiler report` turns hostile pprof files (a gzip
//! bomb, a huge string table, a 50,000-frame stack, overflowing values, a corrupt file
//! beside good ones, another program's profile, an empty file) into one clear line each,
//! within its documented memory cap, measured from the child's peak RSS.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{
    BLOCK_SAMPLE_TYPES, CPU_SAMPLE_TYPES, IO_SAMPLE_TYPES, Msg, NOBODY, Run, fixture,
    prerequisites, profiler_bin, run_command, run_report, set_mode, temp_dir,
};

/// The peak memory `profiler report` stays under for one pprof file (README, Output).
const MEMORY_CAP_KIB: i64 = 512 * 1024;

/// The sudo user the runs below hand their files to.
const USER: u32 = 65534;

/// `profiler -o out --profiles cpu --format ... -- cpu_split 1`, as if started by sudo
/// from user nobody.
fn run_as_sudo_nobody(out: &Path) -> Run {
    let mut cmd = Command::new(profiler_bin());
    let cpu_split = fixture("cpu_split");
    cmd.arg("-o")
        .arg(out)
        .args(["--profiles", "cpu", "--format", "pprof,folded,svg,html"])
        .args(["--duration", "5s", "--"])
        .arg(&cpu_split)
        .arg("1")
        .env("SUDO_UID", NOBODY)
        .env("SUDO_GID", NOBODY);
    run_command(cmd)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn planted_links_are_replaced_and_only_our_files_change_owner() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let secret = tmp.path().join("secret");
    fs::write(&secret, b"root's file\n").unwrap();
    set_mode(&secret, 0o600);
    // An existing, root-owned output directory with links planted at two output names.
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&secret, out.join("cpu.svg")).unwrap();
    fs::hard_link(&secret, out.join("cpu.folded")).unwrap();

    let run = run_as_sudo_nobody(&out);
    run.assert_success();
    run.assert_no_panic();

    let meta = fs::metadata(&secret).unwrap();
    assert_eq!(
        fs::read(&secret).unwrap(),
        b"root's file\n",
        "written through"
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "the link target changed owner"
    );
    assert_eq!(meta.nlink(), 1, "the hardlink should have been replaced");
    assert_eq!(meta.mode() & 0o7777, 0o600);
    let dir = fs::metadata(&out).unwrap();
    assert_eq!(dir.uid(), 0, "an existing -o directory keeps its owner");
    for name in ["cpu.svg", "cpu.folded", "cpu.pb.gz", "report.html"] {
        let m = fs::symlink_metadata(out.join(name)).unwrap();
        assert!(m.is_file() && m.len() > 0, "{name} is not a non-empty file");
        assert_eq!(
            (m.uid(), m.gid()),
            (USER, USER),
            "{name} not given to the user"
        );
        assert_ne!(m.ino(), meta.ino(), "{name} is still the planted link");
    }
    assert_eq!(
        names(&out),
        ["cpu.folded", "cpu.pb.gz", "cpu.svg", "report.html"],
        "temporary files were left behind"
    );

    // A directory the profiler creates is the user's.
    let new = tmp.path().join("new");
    run_as_sudo_nobody(&new).assert_success();
    assert_eq!(fs::metadata(&new).unwrap().uid(), USER);
}

#[test]
fn an_output_that_cannot_be_written_costs_only_itself() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    // rename(2) cannot put a file where a directory is.
    fs::create_dir(out.join("cpu.svg")).unwrap();
    // Nor over an immutable file, where the filesystem has the attribute.
    let folded = out.join("cpu.folded");
    fs::write(&folded, b"old\n").unwrap();
    let immutable = Command::new("chattr")
        .arg("+i")
        .arg(&folded)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !immutable {
        eprintln!("chattr +i failed on this filesystem: checking only the directory case");
        fs::remove_file(&folded).unwrap();
    }

    let run = run_as_sudo_nobody(&out);
    if immutable {
        let _ = Command::new("chattr").arg("-i").arg(&folded).status();
    }
    run.assert_no_panic();
    assert_eq!(run.status.code(), Some(1), "{}", run.transcript());
    let errors = run.error_lines();
    let mut failed = vec!["cpu.svg"];
    if immutable {
        failed.push("cpu.folded");
    }
    assert_eq!(errors.len(), failed.len(), "{}", run.transcript());
    for name in &failed {
        assert!(
            errors
                .iter()
                .any(|l| l.contains(&format!("cannot write {}", out.join(name).display()))),
            "no error line for {name}\n{}",
            run.transcript()
        );
    }
    // The others and the summary are still written.
    assert!(run.stdout.contains("wrote to "), "{}", run.transcript());
    assert!(run.stdout.contains("burn_alpha"), "{}", run.transcript());
    for name in ["cpu.pb.gz", "report.html"] {
        assert!(fs::metadata(out.join(name)).unwrap().len() > 0, "{name}");
    }
    assert!(names(&out.join("cpu.svg")).is_empty());
    if immutable {
        assert_eq!(fs::read(&folded).unwrap(), b"old\n");
    } else {
        assert!(fs::metadata(&folded).unwrap().len() > 0);
    }
    assert_eq!(
        names(&out),
        ["cpu.folded", "cpu.pb.gz", "cpu.svg", "report.html"],
        "a partial or temporary file was left behind"
    );
}

// ---------------------------------------------------------------------------
// Hand-encoded pprof files

/// A profile with the given sample types and one function `main` at location 1, and
/// samples of (stack of location ids, values).
fn profile(types: &[(&str, &str)], samples: &[(Vec<i64>, Vec<i64>)]) -> Msg {
    let mut strings = vec![""];
    let mut p = Msg::default();
    for (kind, unit) in types {
        let t = strings.len() as i64;
        strings.extend([*kind, *unit]);
        p.bytes(1, &Msg::default().int(1, t).int(2, t + 1).0);
    }
    for (stack, values) in samples {
        p.bytes(2, &Msg::default().packed(1, stack).packed(2, values).0);
    }
    let main = strings.len() as i64;
    strings.push("main");
    let line = Msg::default().int(1, 1).0.clone();
    p.bytes(4, &Msg::default().int(1, 1).bytes(4, &line).0);
    p.bytes(5, &Msg::default().int(1, 1).int(2, main).0);
    for s in strings {
        p.bytes(6, s.as_bytes());
    }
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Runs `profiler report dir` (killed after 60 s) and asserts its peak RSS stayed under
/// the memory cap.
fn report(dir: &Path) -> Run {
    let run = run_report(dir, Duration::from_secs(60));
    assert!(
        run.peak_rss_kib < MEMORY_CAP_KIB,
        "profiler report peaked at {} KiB, over the {MEMORY_CAP_KIB} KiB cap\n{}",
        run.peak_rss_kib,
        run.transcript()
    );
    run
}

/// A directory holding `files` (name, contents).
fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = temp_dir();
    for (name, contents) in files {
        fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}

/// Asserts `profiler report` on `files` fails with one line naming `file` and one of
/// `keywords`, within the memory cap.
fn refused(files: &[(&str, &[u8])], file: &str, keywords: &[&str]) -> Run {
    let dir = dir_with(files);
    let r = report(dir.path());
    let line = r.assert_error_mentioning(keywords);
    assert!(line.contains(file), "{line:?} does not name {file}");
    assert!(!dir.path().join("report.html").exists());
    eprintln!("{line} (peak RSS {} KiB)", r.peak_rss_kib);
    r
}

#[test]
fn a_gzip_bomb_is_refused_within_the_memory_cap() {
    // About 2.2 GB of zeros, gzipped to about 2 MB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    while gz.get_ref().len() < 2 << 20 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    refused(
        &[("cpu.pb.gz", &bomb)],
        "cpu.pb.gz",
        &["larger than 64 MiB"],
    );
}

#[test]
fn a_huge_string_table_is_refused_before_decoding() {
    // 25 million empty strings: 50 MB on the wire, 600 MB as Strings.
    let mut p = profile(CPU_SAMPLE_TYPES, &[(vec![1], vec![1, 10])]);
    for _ in 0..25_000_000 {
        p.0.extend_from_slice(&[0x32, 0x00]);
    }
    let file = gzip(&p.0);
    refused(&[("cpu.pb.gz", &file)], "cpu.pb.gz", &["MiB"]);
}

#[test]
fn a_50000_frame_stack_is_refused_without_overflowing() {
    let p = profile(CPU_SAMPLE_TYPES, &[(vec![1; 50_000], vec![1, 10])]);
    let file = gzip(&p.0);
    refused(&[("cpu.pb.gz", &file)], "cpu.pb.gz", &["50000 frames"]);
}

#[test]
fn values_that_overflow_saturate() {
    let max = i64::MAX;
    let p = profile(
        CPU_SAMPLE_TYPES,
        &[(vec![1], vec![max, max]), (vec![1], vec![max, max])],
    );
    let dir = dir_with(&[("cpu.pb.gz", &gzip(&p.0))]);
    let r = report(dir.path());
    r.assert_success();
    assert!(r.stdout.contains("main"), "{}", r.transcript());
    // What wrapping would have printed: a negative number (a word, not the "-1" a
    // temporary directory's random name can hold).
    let negative = r.stdout.split_whitespace().any(|word| {
        word.strip_prefix('-')
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    assert!(!negative, "{}", r.transcript());
    let html = fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains(&format!("\"totals\":[{max},{max}]")),
        "totals wrapped"
    );
}

#[test]
fn a_corrupt_profile_costs_only_itself() {
    let io = profile(
        IO_SAMPLE_TYPES,
        &[(vec![1], vec![20_000, 20_000, 5_000_000, 0])],
    );
    let block = profile(BLOCK_SAMPLE_TYPES, &[(vec![1], vec![3, 7_000_000])]);
    let dir = dir_with(&[
        ("cpu.pb.gz", b"\x1f\x8b\x08\x00 this is not gzip"),
        ("io.pb.gz", &gzip(&io.0)),
        ("block.pb.gz", &gzip(&block.0)),
    ]);
    let r = report(dir.path());
    assert_eq!(r.status.code(), Some(1), "{}", r.transcript());
    let errors = r.error_lines();
    assert_eq!(errors.len(), 1, "{}", r.transcript());
    assert!(errors[0].contains("cpu.pb.gz"), "{}", errors[0]);
    for shown in ["io profile", "block", "main", "20,000"] {
        assert!(
            r.stdout.contains(shown),
            "the summary lacks {shown:?}\n{}",
            r.transcript()
        );
    }
    assert!(fs::metadata(dir.path().join("report.html")).unwrap().len() > 0);
}

#[test]
fn another_programs_profile_is_refused_by_its_sample_types() {
    let goroutines = profile(&[("goroutine", "count")], &[(vec![1], vec![3])]);
    refused(
        &[("io.pb.gz", &gzip(&goroutines.0))],
        "io.pb.gz",
        &[
            "io.pb.gz is not an I/O profile of this profiler (sample types goroutine/count): \
           another program's",
        ],
    );
    // Go's heap profile types are this profiler's heap profile's: not shown as I/O.
    let heap = profile(
        &[
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ],
        &[(vec![1], vec![1, 4096, 1, 4096])],
    );
    refused(
        &[("io.pb.gz", &gzip(&heap.0))],
        "io.pb.gz",
        &["those of a heap profile"],
    );
    // A CPU profile saved under the I/O profile's name is not shown as I/O either.
    let cpu = profile(CPU_SAMPLE_TYPES, &[(vec![1], vec![1, 10])]);
    refused(
        &[("io.pb.gz", &gzip(&cpu.0))],
        "io.pb.gz",
        &["those of a CPU profile"],
    );
}

#[test]
fn an_empty_profile_file_is_named() {
    refused(&[("block.pb.gz", b"")], "block.pb.gz", &["is empty"]);
}
