//! The facts of a run in words: the typed [`RunFacts`] every profile carries as its first
//! comment, and the unwinding line every profile carries last.

use std::ffi::CStr;

use profiler_model::RunFacts;

use crate::collect::session::RunOutcome;
use crate::config::{Config, Target};

/// The facts of `run`, which every profile says first.
pub fn describe(run: &RunOutcome, config: &Config) -> RunFacts {
    let (host, kernel) = uname();
    RunFacts {
        host: Some(host),
        kernel: Some(kernel),
        cpus: u64::try_from(run.cpus).ok(),
        target: Some(target(&config.target)),
        window: Some(run.duration),
        started: Some(run.start),
        ended: Some(run.stop.to_string()),
    }
}

/// `unwinding: call graph MODE; N stack samples (B bytes through a R MiB ring buffer), D
/// distinct stacks; C hit the copy limit before the root, S stopped early`.
pub fn unwinding(run: &RunOutcome) -> String {
    let stats = &run.unwinding.stats;
    let secs = run.duration.as_secs_f64().max(1e-9);
    format!(
        "unwinding: call graph {}; {} stack samples ({} bytes, {:.2} MB/s, through a {} MiB \
         ring buffer), {} distinct stacks, unwound in {} ms ({:.0} samples/s on one core); {} \
         hit the copy limit before reaching the root, {} stopped early, {} deeper than {} \
         frames; {} of processes gone before their mappings were read (instruction \
         pointer only), {} malformed; {} mapped files not held (open-file limit)",
        run.call_graph,
        stats.samples,
        stats.bytes,
        stats.bytes as f64 / secs / 1e6,
        run.ring_bytes >> 20,
        run.unwinding.stacks.len(),
        stats.busy.as_millis(),
        stats.samples as f64 / stats.busy.as_secs_f64().max(1e-9),
        stats.copy_limit,
        stats.stopped,
        stats.too_deep,
        crate::unwind::MAX_FRAMES,
        stats.no_mappings,
        stats.malformed,
        run.processes.files_not_held()
    ) + &crate::collect::budgets::describe(run)
}

/// What was profiled, in words.
pub fn target(target: &Target) -> String {
    match target {
        Target::Host => "the whole host".to_owned(),
        Target::Pids(pids) => {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            format!("pid {} with threads and children", pids.join(","))
        }
        Target::Command(argv) => {
            let argv: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            format!("command `{}` and its children", argv.join(" "))
        }
    }
}

/// The host name and kernel release.
fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it and cannot fail with a valid pointer.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname this function owns.
    if unsafe { libc::uname(&mut name) } != 0 {
        return ("unknown".to_owned(), "unknown".to_owned());
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    (field(&name.nodename), field(&name.release))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_targets() {
        assert_eq!(target(&Target::Host), "the whole host");
        assert_eq!(
            target(&Target::Pids(vec![1, 2])),
            "pid 1,2 with threads and children"
        );
        assert_eq!(
            target(&Target::Command(vec!["ls".into(), "-l".into()])),
            "command `ls -l` and its children"
        );
        let (host, kernel) = uname();
        assert!(!host.is_empty() && kernel.contains('.'), "{host} {kernel}");
    }
}
