//! I/O-profile tests: every read/write-family call of the target is counted (and every
//! call between two descriptors, in `io/zero_copy.rs`), so the
//! profile's calls and bytes per function must equal exactly what the fixtures counted
//! themselves; the small-I/O findings must name the functions that make many small calls
//! and not the one that reads in large chunks; other processes must stay out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use integration_tests::{FixtureProcess, Folded, pprof, prerequisites, spawn_profiler, temp_dir};

// The crate root is this file, so each module names its path under io/.
#[path = "io/attach.rs"]
mod attach;
// The three small-I/O cases, on their own fixture.
#[path = "io/cases.rs"]
mod cases;
#[path = "io/exact.rs"]
mod exact;
#[path = "io/expected.rs"]
mod expected;
// Its round-trip checks serve the real-server tests (io_redis.rs and the like).
#[allow(dead_code)]
#[path = "io/findings.rs"]
mod findings;
#[path = "io/raw.rs"]
mod raw;
#[path = "io/run.rs"]
mod run;
// sendfile, splice, tee, vmsplice and copy_file_range, on their own fixture.
#[path = "io/zero_copy.rs"]
mod zero_copy;

use attach::{wait_until_attached, wait_until_catches};
use exact::{assert_folded_exact, assert_pprof_exact};
use expected::{Expected, io_mix_expected};
use findings::small_io_findings;
use raw::{RawProfile, RawSample};
use run::{assert_io_outputs, load_io_folded, profile_command, profile_io_mix};

#[test]
fn command_mode_counts_every_call_and_byte_of_each_function_exactly() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let expected = io_mix_expected(&r.measured);
    let folded = load_io_folded(&r.out);
    assert_folded_exact(&folded, &expected, "io_mix");
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    assert_pprof_exact(&raw, &expected);
}

#[test]
fn small_io_findings_name_small_calls_and_not_large_reads() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let m = &r.measured;
    let stdout = &r.run.stdout;
    assert!(
        stdout.contains("I/O call sites by calls:"),
        "the summary has no \"Top N I/O call sites by calls:\" table\n{}",
        r.run.transcript()
    );
    let findings = small_io_findings(stdout);
    for (function, syscall) in [("tiny_reads", "pread64"), ("line_writes", "write")] {
        let found = findings
            .iter()
            .find(|f| f.function == function)
            .unwrap_or_else(|| {
                panic!(
                    "{function} ({} {syscall} calls of {} B in {:.0} ms) is not listed as a \
                     small I/O hot path\n{}",
                    m.u64(&format!("{function}_calls")),
                    m.u64(&format!("{function}_bytes")) / m.u64(&format!("{function}_calls")),
                    m.u64("work_ns") as f64 / 1e6,
                    r.run.transcript()
                )
            });
        assert_eq!(
            found.syscall, syscall,
            "wrong syscall in {:?}",
            found.header
        );
        assert_eq!(
            found.calls,
            m.u64(&format!("{function}_calls")),
            "the finding {:?} does not count the fixture's exact calls",
            found.header
        );
        assert!(
            found.header.contains("on a file"),
            "the finding {:?} does not say the calls were on a file",
            found.header
        );
        assert!(
            found.fix().is_some(),
            "the finding for {function} has no `fix:` hint: {found:?}"
        );
    }
    assert!(
        !findings.iter().any(|f| f.function == "chunked_reads"),
        "chunked_reads ({} reads of {} B each) is listed as a small I/O hot path\n{}",
        m.u64("chunked_reads_calls"),
        m.u64("chunked_reads_bytes") / m.u64("chunked_reads_calls"),
        r.run.stdout
    );
}

#[test]
fn small_io_thresholds_are_respected() {
    if !prerequisites() {
        return;
    }
    // tiny_reads moves 1 B per call, line_writes 20 B: only the first is at most 1 B.
    let r = profile_io_mix(&["--small-io-bytes", "1"]);
    let names: Vec<String> = small_io_findings(&r.run.stdout)
        .into_iter()
        .map(|f| f.function)
        .collect();
    assert!(
        names.iter().any(|n| n == "tiny_reads") && !names.iter().any(|n| n == "line_writes"),
        "with --small-io-bytes 1 expected tiny_reads and not line_writes among the findings, \
         got {names:?}\n{}",
        r.run.stdout
    );

    // No site makes a billion calls per second.
    let r = profile_io_mix(&["--small-io-rate", "1000000000"]);
    assert!(
        r.run.stdout.contains("Small I/O hot paths: none."),
        "with --small-io-rate 1000000000 expected \"Small I/O hot paths: none.\"\n{}",
        r.run.stdout
    );
}

#[test]
fn pid_mode_counts_target_exactly_and_excludes_io_bystander() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let bystander = FixtureProcess::spawn("io_bystander", &["60"]);
    let mut target = FixtureProcess::spawn("io_mix", &["wait"]);
    let pid = target.pid();
    wait_until_catches(pid, libc::SIGUSR1);

    let profiler = spawn_profiler(
        &[
            "--profiles",
            "io",
            "--duration",
            "30s",
            "--pid",
            &pid.to_string(),
        ],
        &out,
    );
    wait_until_attached(profiler.pid());
    // SAFETY: kill(2) on our own child, which is still running (it waits for this signal).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGUSR1);
    }
    let measured = target.wait_result(Duration::from_secs(30));
    // The profiler stops by itself once its only target has exited.
    let run = profiler.wait();
    run.assert_success();
    let spun = bystander.stop();
    assert!(
        spun.u64("io_calls") >= 10_000,
        "the bystander made only {} I/O calls, so its absence proves nothing",
        spun.get("io_calls")
    );

    assert_io_outputs(&out);
    let text = std::fs::read_to_string(out.join("io.folded")).unwrap();
    let leaked: Vec<&str> = text.lines().filter(|l| l.contains("bystander")).collect();
    assert!(
        leaked.is_empty(),
        "io.folded of --pid {pid} has lines of the bystander: {leaked:?}"
    );
    let folded = Folded::parse(&text);
    let comms: Vec<String> = folded.comms().into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        comms,
        vec!["io_mix".to_owned()],
        "io.folded of --pid {pid} has other commands\n{}",
        folded.summary(20)
    );
    let expected = io_mix_expected(&measured);
    assert_folded_exact(&folded, &expected, "io_mix");

    let raw = RawProfile::load(&out.join("io.pb.gz"));
    let pids: BTreeSet<&str> = raw.samples.iter().filter_map(|s| s.label("pid")).collect();
    assert_eq!(
        pids,
        BTreeSet::from([pid.to_string().as_str()]),
        "io.pb.gz of --pid {pid} has samples of other processes"
    );
    assert_pprof_exact(&raw, &expected);
}

#[test]
fn go_tool_pprof_reads_io_profile_with_functions_and_syscall_labels() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let pb = r.out.join("io.pb.gz");
    let functions = [
        "tiny_reads",
        "line_writes",
        "chunked_reads",
        "socket_ping",
        "vector_writes",
    ];
    for index in ["bytes", "calls", "requested"] {
        // -nodefraction=0: tiny_reads moves 0.3% of the bytes, below the default cut.
        let top = pprof(&[
            "-top".as_ref(),
            "-nodefraction=0".as_ref(),
            format!("-sample_index={index}").as_ref(),
            pb.as_os_str(),
        ]);
        top.assert_success();
        for f in functions {
            assert!(
                top.stdout
                    .lines()
                    .any(|l| l.split_whitespace().last() == Some(f)),
                "`go tool pprof -top -nodefraction=0 -sample_index={index}` does not list {f}\n{}",
                top.transcript()
            );
        }
    }

    let raw = RawProfile::load(&pb);
    let syscalls: BTreeMap<&str, i64> = raw.samples.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.label("syscall").unwrap_or("<none>")).or_default() += s.value("calls");
        m
    });
    for name in ["pread64", "write", "read", "sendto", "recvfrom", "writev"] {
        assert!(
            syscalls.contains_key(name),
            "no sample has the label syscall={name}; calls by syscall label: {syscalls:?}\n{}",
            raw.text
        );
    }
    assert!(
        !syscalls.contains_key("<none>"),
        "some samples have no syscall label: {syscalls:?}"
    );
    for s in &raw.samples {
        assert_eq!(
            s.label("comm"),
            Some("io_mix"),
            "a sample without comm io_mix: {}",
            s.describe()
        );
        assert!(
            s.label("pid").is_some_and(|p| p.parse::<u32>().is_ok()),
            "a sample without a numeric pid label: {}",
            s.describe()
        );
    }

    let tags = pprof(&["-tags".as_ref(), pb.as_os_str()]);
    tags.assert_success();
    assert!(
        tags.stdout.contains("syscall:") && tags.stdout.contains("pread64"),
        "`go tool pprof -tags` shows no syscall tag with pread64\n{}",
        tags.transcript()
    );
}

#[test]
fn descriptor_labels_tell_files_from_sockets() {
    if !prerequisites() {
        return;
    }
    let r = profile_io_mix(&[]);
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    for (function, kind) in [
        ("tiny_reads", "file"),
        ("line_writes", "file"),
        ("chunked_reads", "file"),
        ("vector_writes", "file"),
        ("socket_ping", "socket"),
    ] {
        let samples: Vec<&RawSample> = raw.containing(function).collect();
        assert!(!samples.is_empty(), "no sample has {function} in its stack");
        for s in samples {
            assert_eq!(
                s.label("descriptor"),
                Some(kind),
                "a sample of {function} does not have descriptor={kind}: {}",
                s.describe()
            );
        }
    }
}

#[test]
fn sibling_functions_with_identical_frames_are_counted_apart() {
    if !prerequisites() {
        return;
    }
    // write_header and write_records call write(2) from the same stack depth with the
    // same frame size: same ip, sp and bp at the syscall, different call stacks. The
    // fixture pauses half a second first: its exec is then seen before its calls even on
    // an emulated CPU (the kernel matrix), where this short program can otherwise finish
    // before the profiler has read its new mappings.
    let r = profile_command("io_siblings", &["500"], &[]);
    let m = &r.measured;
    let expected: Vec<Expected> = ["write_header", "write_records"]
        .into_iter()
        .map(|function| Expected {
            function,
            parts: vec![(
                "write",
                m.u64(&format!("{function}_calls")),
                m.u64(&format!("{function}_bytes")),
            )],
        })
        .collect();
    let folded = load_io_folded(&r.out);
    assert_folded_exact(&folded, &expected, "io_siblings");
    let raw = RawProfile::load(&r.out.join("io.pb.gz"));
    assert_pprof_exact(&raw, &expected);
}

#[test]
fn raw_parser_reads_samples_labels_and_inlined_frames() {
    let raw = RawProfile::parse(
        "PeriodType:  \nSamples:\ncalls/count[dflt] bytes/bytes time/nanoseconds errors/count\n\
         \x20        128       3780      77724          0: 1 2 3 \n\
         \x20               comm:[io_siblings] descriptor:[file] syscall:[write]\n\
         \x20               pid:[6408]\n\
         Locations\n\
         \x20    1: 0x7fc4 M=1 __GI___libc_write ./io/write.c:26 s=0\n\
         \x20    2: 0x55f0 M=2 report /f/fixture.h:103 s=0\n\
         \x20            main /f/io_siblings.c:69 s=0\n\
         \x20    3: 0x6c61 [unknown] :0 s=0\n\
         Mappings\n1: 0x7fc4/0x7fea/0x26000 /usr/lib/libc.so.6 93ac [FN]\n",
    );
    assert_eq!(raw.samples.len(), 1);
    let s = &raw.samples[0];
    assert_eq!(s.value("calls"), 128);
    assert_eq!(s.value("bytes"), 3780);
    assert_eq!(
        s.frames,
        vec!["__GI___libc_write", "report", "main", "[unknown]"]
    );
    assert_eq!(s.label("syscall"), Some("write"));
    assert_eq!(s.label("descriptor"), Some("file"));
    assert_eq!(s.label("pid"), Some("6408"));
    let findings = small_io_findings(
        "Small I/O hot paths (many small calls; buffering would remove most):\n\
         \x20 * pread64 in tiny_reads: 20,000 calls (587,479/s) of 1 B on average, on a file\n\
         \x20   path: main > tiny_reads > __libc_pread64\n\
         \x20   fix:  read through stdio\n\
         \x20   saves: 19,999 of 20,000 calls\n\nwrote:\n",
    );
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].function, "tiny_reads");
    assert_eq!(findings[0].syscall, "pread64");
    assert_eq!(findings[0].calls, 20_000);
    assert_eq!(findings[0].fix(), Some("read through stdio"));
}

/// A whole-host run leaves the profiler's own process out: it reads /proc, writes its
/// files and waits on its own futexes and ring buffers during the window, which would
/// otherwise show among the host's I/O and waits (its cost has its own line).
#[test]
fn whole_host_profiles_leave_the_profilers_own_process_out() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let bystander = FixtureProcess::spawn("io_bystander", &["60"]);
    let bystander_pid = bystander.pid().to_string();
    let profiler = spawn_profiler(
        &[
            "--profiles",
            "io,block",
            "--duration",
            "2s",
            "--format",
            "pprof",
        ],
        &out,
    );
    let me = profiler.pid().to_string();
    let run = profiler.wait();
    run.assert_success();
    let spun = bystander.stop();
    assert!(
        spun.u64("io_calls") >= 10_000,
        "the bystander made only {} I/O calls",
        spun.get("io_calls")
    );
    for file in ["io.pb.gz", "block.pb.gz"] {
        let raw = RawProfile::load(&out.join(file));
        let pids: BTreeSet<&str> = raw.samples.iter().filter_map(|s| s.label("pid")).collect();
        assert!(
            !pids.contains(me.as_str()),
            "{file} of a whole-host run has samples of the profiler itself (pid {me})\n{}",
            raw.text
        );
        if file == "io.pb.gz" {
            assert!(
                pids.contains(bystander_pid.as_str()),
                "io.pb.gz of a whole-host run misses the bystander: {pids:?}"
            );
        }
    }
}
