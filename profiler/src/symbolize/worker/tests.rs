//! The worker protocol, and workers stopped over their budgets, with the test binary as the
//! worker.

use std::sync::Mutex;
use std::time::Instant;

use super::*;

/// The environment variable that makes [`serve_as_worker`] serve.
const UNDER_TEST: &str = "PROFILER_SYMBOLIZE_WORKER_UNDER_TEST";

/// This test binary, running [`serve_as_worker`] alone.
pub fn harness_command() -> WorkerCommand {
    WorkerCommand {
        program: std::env::current_exe().expect("the test binary"),
        args: [
            "symbolize::worker::tests::serve_as_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: vec![(UNDER_TEST.to_owned(), "1".to_owned())],
    }
}

/// The worker's entry point when unit tests start workers (the test binary has no
/// `main` of the profiler's).
#[test]
#[ignore = "the worker of the unit tests, started by them"]
fn serve_as_worker() {
    if std::env::var_os(UNDER_TEST).is_some() {
        let code = serve();
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
}

/// Files named `[test:...]` make the unit tests' worker misbehave as a crafted file
/// would make it.
pub fn misbehave(name: &str) {
    match name {
        "[test:hang]" => std::thread::sleep(Duration::from_secs(3600)),
        "[test:abort]" => std::process::abort(),
        "[test:fail-allocation]" => {
            // As blazesym's inflating does: the allocation fails, and is handled.
            let mut buf: Vec<u8> = Vec::new();
            assert!(buf.try_reserve(1 << 40).is_err());
        }
        "[test:allocate]" => {
            // Past the memory limit, as an inflating section would go.
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(vec![1u8; 64 << 20]);
            }
        }
        _ => {}
    }
}

#[inline(never)]
fn named_in_a_worker() -> u64 {
    std::hint::black_box(11)
}

/// The file offset of `addr` in this test binary, and the binary's path.
fn own_offset(addr: u64) -> (String, u64) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if (start..end).contains(&addr) {
            let offset = u64::from_str_radix(fields[2], 16).unwrap();
            return (fields[5].to_owned(), addr - start + offset);
        }
    }
    panic!("{addr:#x} is not mapped");
}

fn job(name: &str) -> Job {
    let (path, offset) = own_offset(named_in_a_worker as fn() -> u64 as usize as u64);
    Job {
        open: path,
        name: name.to_owned(),
        offsets: vec![offset, u64::MAX / 2],
    }
}

fn is_named(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Named(named) => {
            named.frames[0]
                .as_ref()
                .is_ok_and(|l| l.iter().any(|l| l.function.contains("named_in_a_worker")))
                && named.frames[1].is_err()
        }
        _ => false,
    }
}

#[test]
fn a_request_round_trips() {
    let job = job("/bin/app");
    let line = serde_json::to_string(&job).unwrap();
    assert_eq!(serde_json::from_str::<Job>(&line).unwrap(), job);
    let answer = Answer {
        frames: vec![
            Ok(vec![WireLine {
                function: "f".to_owned(),
                file: Some("f.c".to_owned()),
                line: 3,
            }]),
            Err(WireWhy::OverBudget),
        ],
        debug_origin: Some(WireOrigin::DebugLink),
        refused: vec![Refusal::DebugDataStated { stated: 1 << 32 }],
        accounting: Accounting {
            debuginfod: Some(Activity {
                fetched: 1,
                ..Activity::default()
            }),
            refusals: Refusals {
                not_regular: 2,
                ..Refusals::default()
            },
        },
    };
    let line = serde_json::to_string(&answer).unwrap();
    assert!(!line.contains('\n'));
    let back: Answer = serde_json::from_str(&line).unwrap();
    assert_eq!(back, answer);
    let named = named_of(back, 3);
    assert_eq!(named.frames[1], Err(Unnamed::OverMemoryBudget));
    // An answer short of offsets leaves the rest unreadable, never out of step.
    assert_eq!(named.frames[2], Err(Unnamed::FileUnreadable));
    assert_eq!(named.debug_origin, Some(DebugOrigin::DebugLink));
}

#[test]
fn a_worker_names_files_and_merges_debuginfod_activity() {
    let jobs = vec![job("/bin/a"), job("/bin/b"), job("/bin/c")];
    let merged = Mutex::new(0);
    let outcomes = name_files(
        &jobs,
        &harness_command(),
        &Setup::default(),
        Budgets::default(),
        Instant::now(),
        &|accounting| {
            if accounting.debuginfod.is_some() {
                *merged.lock().unwrap() += 1;
            }
        },
    );
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(is_named), "{outcomes:?}");
    // No debuginfod client: no activity to merge.
    assert_eq!(*merged.lock().unwrap(), 0);
}

#[test]
fn a_worker_killed_mid_file_gives_the_reason_and_the_next_file_is_named() {
    let jobs = vec![
        job("[test:hang]"),
        job("/bin/after-hang"),
        job("[test:abort]"),
        job("/bin/after-abort"),
        job("[test:allocate]"),
        job("/bin/after-allocate"),
    ];
    let budgets = Budgets {
        per_file: Duration::from_secs(2),
        per_run: Duration::from_secs(60),
        memory: 256 << 20,
    };
    let started = Instant::now();
    let outcomes = name_files(
        &jobs,
        &harness_command(),
        &Setup::default(),
        budgets,
        started,
        &|_| {},
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let reason = |i: usize| match &outcomes[i] {
        Outcome::Stopped(why, _) => Some(*why),
        _ => None,
    };
    assert_eq!(reason(0), Some(Unnamed::OverTimeBudget), "{outcomes:?}");
    assert_eq!(reason(2), Some(Unnamed::OverMemoryBudget), "{outcomes:?}");
    assert_eq!(reason(4), Some(Unnamed::OverMemoryBudget), "{outcomes:?}");
    for i in [1, 3, 5] {
        assert!(is_named(&outcomes[i]), "{i}: {outcomes:?}");
    }
}

#[test]
fn a_file_that_reached_the_memory_limit_says_so() {
    let jobs = vec![job("[test:fail-allocation]"), job("/bin/after")];
    let outcomes = name_files(
        &jobs,
        &harness_command(),
        &Setup::default(),
        Budgets::default(),
        Instant::now(),
        &|_| {},
    );
    let Outcome::Named(named) = &outcomes[0] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(
        named.refused,
        [Refusal::MemoryLimit {
            limit: Some(MEMORY_BUDGET)
        }]
    );
    // Named from what fit, and the rest over the budget.
    assert!(named.frames[0].is_ok());
    assert_eq!(named.frames[1], Err(Unnamed::OverMemoryBudget));
    assert!(is_named(&outcomes[1]), "{outcomes:?}");
}

#[test]
fn files_after_the_run_budget_are_not_started() {
    let jobs = vec![job("[test:hang]"), job("[test:hang]"), job("/bin/late")];
    let budgets = Budgets {
        per_file: Duration::from_secs(10),
        per_run: Duration::from_secs(1),
        memory: MEMORY_BUDGET,
    };
    let started = Instant::now();
    let outcomes = name_files(
        &jobs,
        &harness_command(),
        &Setup::default(),
        budgets,
        started,
        &|_| {},
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Outcome::Stopped(Unnamed::RunBudgetSpent, _)),
            "{outcomes:?}"
        );
    }
}

#[test]
fn activity_deltas_count_only_what_is_new() {
    let before = Activity {
        fetched: 2,
        bytes: 10,
        ..Activity::default()
    };
    let now = Activity {
        fetched: 3,
        bytes: 15,
        gave_up: Some("timeout".to_owned()),
        ..Activity::default()
    };
    let delta = now.since(&before);
    assert_eq!((delta.fetched, delta.bytes), (1, 5));
    assert_eq!(delta.gave_up.as_deref(), Some("timeout"));
    assert_eq!(now.since(&now).gave_up, None);
}
