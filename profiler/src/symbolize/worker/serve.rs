//! The worker's side: names the files it is sent, one answer line each, and notices when
//! its memory limit made an allocation fail.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Accounting, Job, Setup, answer_of};
use crate::symbolize::debuginfo::{DebugInfoFinder, Refusals};
use crate::symbolize::debuginfod::{Activity, Debuginfod};
use crate::symbolize::file_names::{self, NoName};
use crate::symbolize::inflation::Refusal;

/// The profiler's allocator: the system's, noting when an allocation fails, so that a
/// worker that reached its memory limit while naming a file (blazesym inflating a section
/// whose header lied, into a buffer that could not grow) says so instead of naming less.
pub struct NotingAllocator;

static ALLOCATION_FAILED: AtomicBool = AtomicBool::new(false);

fn noted(ptr: *mut u8) -> *mut u8 {
    if ptr.is_null() {
        ALLOCATION_FAILED.store(true, Ordering::Relaxed);
    }
    ptr
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for NotingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees are System's.
        noted(unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        noted(unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        noted(unsafe { System.realloc(ptr, layout, new_size) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Whether an allocation failed since the last call.
fn allocation_failed() -> bool {
    ALLOCATION_FAILED.swap(false, Ordering::Relaxed)
}

/// This process's `RLIMIT_DATA`, if it has one.
fn data_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut limit) } == 0;
    (got && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The worker's side: reads the setup and then jobs on standard input, and answers each on
/// descriptor 3, until standard input closes.
pub fn serve() -> std::process::ExitCode {
    // SAFETY: fcntl only asks whether descriptor 3 is open.
    if unsafe { libc::fcntl(3, libc::F_GETFD) } < 0 {
        // Not started by the profiler, which opens it for the answers.
        return std::process::ExitCode::FAILURE;
    }
    // SAFETY: descriptor 3 is open (checked above): the parent opened it for the answers
    // before executing the worker, and nothing else in this process owns it.
    let mut out = unsafe { File::from_raw_fd(3) };
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let Some(Ok(setup)) = lines.next() else {
        return std::process::ExitCode::FAILURE;
    };
    let Ok(setup) = serde_json::from_str::<Setup>(&setup) else {
        return std::process::ExitCode::FAILURE;
    };
    let debuginfod = setup
        .debuginfod
        .as_ref()
        .and_then(Debuginfod::from_settings);
    let finder = DebugInfoFinder::new(&setup.roots, debuginfod);
    let mut reported = Activity::default();
    let mut refused = Refusals::default();
    for line in lines {
        let Ok(job) = line.and_then(|l| Ok(serde_json::from_str::<Job>(&l)?)) else {
            return std::process::ExitCode::FAILURE;
        };
        allocation_failed();
        #[cfg(test)]
        super::tests::misbehave(&job.name);
        let named = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            file_names::name_offsets(Path::new(&job.open), &job.name, &job.offsets, &finder)
        }));
        let mut names = named.unwrap_or_else(|_| file_names::FileNames {
            frames: vec![Err(NoName::Unreadable); job.offsets.len()],
            debug_origin: None,
            refused: Vec::new(),
        });
        if allocation_failed() {
            // What was not named may have been, had the limit been higher.
            names.refused.push(Refusal::MemoryLimit {
                limit: data_limit(),
            });
            for frame in &mut names.frames {
                if frame.is_err() {
                    *frame = Err(NoName::OverBudget);
                }
            }
        }
        let activity = finder.debuginfod().map(|d| {
            let now = d.activity();
            let delta = now.since(&reported);
            reported = now;
            delta
        });
        let refusals = finder.refusals();
        let accounting = Accounting {
            debuginfod: activity,
            refusals: refusals.since(&refused),
        };
        refused = refusals;
        let answer = answer_of(names, accounting);
        let written = serde_json::to_writer(&mut out, &answer)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if written.is_err() {
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
