//! Off-CPU-profile tests: each mode of the `offcpu_waits` fixture waits one way from its
//! own named function and measures that function's wall time (and its thread's CPU time)
//! itself. With `--profiles cpu,offcpu`, the function's CPU samples / frequency plus its
//! off-CPU delay must make up its wall time, the delay must carry the reason of the way it
//! waited, and a reply's wait must name the peer function that sent the reply as its waker.
//! A wait still open when the window closes is counted up to its end, marked in progress;
//! each thread's time budget in the summary adds up to its time in the window.
//!
//! fdatasync and page faults need a block device under the fixture's files: the tests use
//! `BlockScratch` (a loop-mounted ext4 image where the temporary directory is tmpfs).

#[path = "io/raw.rs"]
mod raw;
// The crate root is this file, so each module names its path under offcpu/.
#[path = "offcpu/budget.rs"]
mod budget;
#[path = "offcpu/run.rs"]
mod run;

use std::time::Duration;

use integration_tests::{assert_counted_to_window_end, prerequisites, temp_dir};

use budget::{BudgetLine, window_seconds};
use raw::RawSample;
use run::{
    FIXTURE, PEER_THREAD, RUNQUEUE, TOLERANCE, assert_fixture_waited, block_scratch, check_single,
    label, ms, profile_mode, profile_mode_for,
};

// ---------------------------------------------------------------------------
// The tests

/// 4 KiB pwrite + fdatasync, over and over: the waits are the disk's.
#[test]
fn fdatasync_waits_are_disk_and_make_up_the_wall_time() {
    if !prerequisites() {
        return;
    }
    let Some(scratch) = block_scratch() else {
        return;
    };
    eprintln!("scratch: {}", scratch.describe());
    check_single("fsync", scratch.path(), "fsync_loop", "disk");
}

/// 1 ms nanosleeps: sleep, ended by the timer interrupt.
#[test]
fn nanosleep_waits_are_sleep_woken_by_the_timer() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let r = check_single("sleep", tmp.path(), "sleep_loop", "sleep");
    r.assert_waker("sleep_loop", "sleep", "timer (interrupt)");
}

/// poll(NULL, 0, 2): poll, ended by the timer interrupt.
#[test]
fn poll_timeouts_are_poll_woken_by_the_timer() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let r = check_single("poll", tmp.path(), "poll_loop", "poll");
    r.assert_waker("poll_loop", "poll", "timer (interrupt)");
}

/// A request over a pipe (or a socket) to a peer thread that thinks 20 ms before replying:
/// the reader waits in `reason`, woken by peer_reply; the peer mostly sleeps.
fn check_round_trips(mode: &str, reader: &str, reason: &str) {
    let tmp = temp_dir();
    let r = check_single(mode, tmp.path(), reader, reason);
    let peer_wall = assert_fixture_waited(&r, "peer_reply");
    r.assert_wall_time("peer_reply", peer_wall);
    r.assert_dominant_reason("peer_reply", "sleep");
    let peer_tid = r.measured.get("peer_reply_tid").to_owned();
    r.assert_thread_labels("peer_reply", &peer_tid, PEER_THREAD);

    // The waker: the label names the peer's function and its process.
    r.assert_folded_waker(reader, "peer_reply");
    r.assert_waker(reader, reason, &format!("peer_reply ({FIXTURE})"));
}

#[test]
fn pipe_reply_waits_are_pipe_and_name_the_peer_as_waker() {
    if !prerequisites() {
        return;
    }
    check_round_trips("pipe", "pipe_reader", "pipe");
}

#[test]
fn socket_reply_waits_are_net_and_name_the_peer_as_waker() {
    if !prerequisites() {
        return;
    }
    check_round_trips("socket", "socket_reader", "net");
}

/// One byte read per page of a mapped file whose cache was dropped: every touch is a major
/// fault waiting for the disk.
#[test]
fn major_fault_waits_are_pagefault() {
    if !prerequisites() {
        return;
    }
    let Some(scratch) = block_scratch() else {
        return;
    };
    eprintln!("scratch: {}", scratch.describe());
    let r = profile_mode("fault", scratch.path());
    let touches = r.measured.u64("fault_loop_calls");
    let majflt = r.measured.u64("fault_loop_majflt");
    assert!(
        touches >= 1000 && majflt * 10 >= touches * 9,
        "fault_loop touched {touches} pages and took {majflt} major faults: the page cache \
         was not dropped, the run cannot test fault waits\n{:?}",
        r.measured.0
    );
    let wall = assert_fixture_waited(&r, "fault_loop");
    r.assert_wall_time("fault_loop", wall);
    r.assert_dominant_reason("fault_loop", "pagefault");
    let tid = r.measured.get("fault_loop_tid").to_owned();
    r.assert_thread_labels("fault_loop", &tid, FIXTURE);
}

/// Four spinners pinned to one CPU: each is runnable, waiting for the CPU, whenever it is
/// not running, so its runqueue delay is its wall time minus its CPU time.
#[test]
fn spinners_sharing_one_cpu_wait_in_the_runqueue_for_wall_minus_cpu() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let r = profile_mode("runqueue", tmp.path());
    let list =
        |key: &str| -> Vec<String> { r.measured.get(key).split(',').map(str::to_owned).collect() };
    let number = |v: &String| -> u64 {
        v.parse()
            .unwrap_or_else(|e| panic!("fixture value {v:?} is not a number: {e}"))
    };
    let tids = list("spin_worker_tids");
    let walls: Vec<u64> = list("spin_worker_wall_ns").iter().map(number).collect();
    let cpus: Vec<u64> = list("spin_worker_cpu_ns").iter().map(number).collect();
    let function = "spin_worker";

    for ((tid, &wall), &cpu) in tids.iter().zip(&walls).zip(&cpus) {
        let waited = wall.saturating_sub(cpu);
        assert!(
            wall >= 1_000_000_000 && waited * 5 >= wall,
            "spinner {tid} ran {} with {} of CPU: it hardly waited for the CPU, the run \
             cannot test runqueue time\n{:?}",
            ms(wall as f64),
            ms(cpu as f64),
            r.measured.0
        );
        let runqueue = r.offcpu.sum("delay", |s| {
            s.has(function) && s.label("tid") == Some(tid) && s.label("reason") == Some(RUNQUEUE)
        });
        let gap = (runqueue as f64 - waited as f64) / waited as f64;
        assert!(
            gap.abs() <= TOLERANCE,
            "spinner {tid}: {} of runqueue delay under {function} in the profile, where it \
             measured wall {} - CPU {} = {} itself ({:+.1}%, more than {:.0}% off)\n{}",
            ms(runqueue as f64),
            ms(wall as f64),
            ms(cpu as f64),
            ms(waited as f64),
            100.0 * gap,
            100.0 * TOLERANCE,
            r.context(function)
        );
    }
    // All spinners together: their CPU samples and delays make up their wall times.
    r.assert_wall_time(function, walls.iter().sum());
    r.assert_dominant_reason(function, RUNQUEUE);
}

/// A read that never ends, begun right after the launch; the window closes 2 s later with
/// the read still waiting: it is counted, once, up to the end of the window, marked as in
/// progress.
#[test]
fn wait_in_progress_at_the_end_is_counted_up_to_it() {
    if !prerequisites() {
        return;
    }
    const WINDOW: Duration = Duration::from_secs(2);
    let tmp = temp_dir();
    // The fixture outlives the window by 1 s, then exits by itself.
    let r = profile_mode_for("stuck", tmp.path(), "2s");
    let function = "stuck_reader";
    let wait_start = r.measured.u64("stuck_reader_wait_start_ns");
    let tid = r.measured.get("stuck_reader_tid").to_owned();
    let context = r.context(function);
    // Only the read is in progress; the thread's waits before it (being preempted on its way
    // there) ended.
    let in_progress = |s: &RawSample| label(s, "outcome").as_deref() == Some("in progress");
    let waiting: Vec<&RawSample> = r
        .offcpu
        .containing(function)
        .filter(|s| in_progress(s))
        .collect();
    assert!(
        !waiting.is_empty(),
        "no wait in progress under {function} in the profile\n{context}"
    );
    for s in r.offcpu.containing(function) {
        let pipe = label(s, "reason").as_deref() == Some("pipe");
        assert_eq!(
            pipe,
            in_progress(s),
            "under {function}, whose one wait on a pipe never ends, a wait {} a pipe wait \
             and {} in progress: {}\n{context}",
            if pipe { "is" } else { "is not" },
            if in_progress(s) { "is" } else { "is not" },
            s.describe()
        );
    }
    r.assert_thread_labels(function, &tid, FIXTURE);
    let waits: i64 = waiting.iter().map(|s| s.value("waits")).sum();
    assert_eq!(waits, 1, "one wait, counted once\n{context}");
    let delay = waiting.iter().map(|s| s.value("delay")).sum::<i64>() as u64;

    let run = (r.started_ns, r.exited_ns);
    assert_counted_to_window_end("read", delay, wait_start, run, WINDOW, &context);
}

/// One `budget:` line of the terminal summary: `budget: NAME (pid P), N threads: T s = on
/// CPU X s + runnable Y s + REASON Z s ...` for a process, `budget:   thread NAME (tid T):
/// ...` for each of its threads.
#[test]
fn time_budget_per_thread_adds_up_to_the_window_and_to_the_spinners_own_clocks() {
    if !prerequisites() {
        return;
    }
    const BUDGET_TOLERANCE: f64 = 0.02;
    let tmp = temp_dir();
    let r = profile_mode("runqueue", tmp.path());
    let stdout = &r.run.stdout;
    let window = window_seconds(stdout);
    let budgets: Vec<BudgetLine> = stdout.lines().filter_map(BudgetLine::parse).collect();
    let pid = r.measured.get("pid");
    let context = format!(
        "fixture: {:?}\nbudget lines: {budgets:#?}\nprofiler stdout:\n{stdout}",
        r.measured.0
    );
    let close = |got: f64, want: f64, tolerance: f64| (got - want).abs() <= tolerance * want;

    let process = budgets
        .iter()
        .find(|b| b.id_kind == "pid" && b.id == pid)
        .unwrap_or_else(|| panic!("no budget line for the fixture's process {pid}\n{context}"));
    assert_eq!(
        process.name, FIXTURE,
        "the budget names the fixture's process by another name\n{context}"
    );
    for b in budgets.iter().filter(|b| b.id_kind == "tid") {
        let sum: f64 = b.terms.values().sum();
        assert!(
            close(sum, b.total_s, BUDGET_TOLERANCE),
            "thread {}: its budget's parts add up to {sum:.3} s, not to its {:.3} s\n{context}",
            b.id,
            b.total_s
        );
        assert!(
            b.total_s <= window * (1.0 + BUDGET_TOLERANCE),
            "thread {}: a budget of {:.3} s in a window of {window:.2} s\n{context}",
            b.id,
            b.total_s
        );
    }
    let thread = |tid: &str| {
        budgets
            .iter()
            .find(|b| b.id_kind == "tid" && b.id == tid)
            .unwrap_or_else(|| panic!("no budget line for thread {tid}\n{context}"))
    };
    // The main thread lives through the whole window (the command is the run).
    let main = thread(pid);
    assert!(
        close(main.total_s, window, BUDGET_TOLERANCE),
        "the main thread's budget is {:.3} s in a window of {window:.2} s it lived through\n\
         {context}",
        main.total_s
    );

    let list =
        |key: &str| -> Vec<String> { r.measured.get(key).split(',').map(str::to_owned).collect() };
    let tids = list("spin_worker_tids");
    let walls = list("spin_worker_wall_ns");
    let cpus = list("spin_worker_cpu_ns");
    for ((tid, wall), cpu) in tids.iter().zip(&walls).zip(&cpus) {
        let wall_s = wall.parse::<f64>().expect("wall is a number") / 1e9;
        let cpu_s = cpu.parse::<f64>().expect("cpu is a number") / 1e9;
        let b = thread(tid);
        let on_cpu = b.terms.get("on CPU").copied().unwrap_or(0.0);
        let runnable = b.terms.get("runnable").copied().unwrap_or(0.0);
        // The thread lived a little longer than its spinning: start, barrier, exit.
        assert!(
            wall_s <= b.total_s * (1.0 + BUDGET_TOLERANCE) && b.total_s <= window,
            "spinner {tid}: budget {:.3} s, but it spun {wall_s:.3} s by its own clock in a \
             window of {window:.2} s\n{context}",
            b.total_s
        );
        assert!(
            close(on_cpu, cpu_s, TOLERANCE),
            "spinner {tid}: {on_cpu:.3} s on CPU in its budget, {cpu_s:.3} s of CPU time by \
             its own clock\n{context}"
        );
        assert!(
            close(runnable, wall_s - cpu_s, TOLERANCE),
            "spinner {tid}: {runnable:.3} s runnable in its budget, wall {wall_s:.3} s - CPU \
             {cpu_s:.3} s = {:.3} s by its own clocks\n{context}",
            wall_s - cpu_s
        );
    }
}
