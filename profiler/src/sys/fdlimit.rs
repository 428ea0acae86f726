//! The open-file limit: every map, program and per-CPU perf event is a descriptor, so the
//! soft limit is raised to the hard one at start, and running out is named as what it is.

use std::sync::OnceLock;

/// The soft limit the profiler started with, which the launched command gets back.
static ORIGINAL: OnceLock<libc::rlimit> = OnceLock::new();

fn get() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// The soft limit on open files now (raised to the hard one by [`raise`] at start).
pub fn soft_limit() -> Option<u64> {
    get().map(|limit| limit.rlim_cur)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, remembering the original for
/// [`restore_in_child`]. A failure only leaves the limit as it was.
pub fn raise() {
    let Some(limit) = get() else { return };
    let _ = ORIGINAL.set(limit);
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: a valid rlimit; raising the soft limit up to the hard one is always allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        log::debug!(
            "cannot raise the open-file limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Gives a forked child, between fork and exec, the open-file limit the profiler started
/// with: a command should run as it would without the profiler (some still use select(2),
/// which breaks on descriptors past 1024).
///
/// # Errors
/// When the limit cannot be set.
pub fn restore_in_child() -> std::io::Result<()> {
    if let Some(original) = ORIGINAL.get() {
        // SAFETY: a valid rlimit; setrlimit is async-signal-safe.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, original) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The errno of descriptor exhaustion anywhere in `err`'s chain: `EMFILE` (this process's
/// limit) or `ENFILE` (the system's).
pub fn exhaustion(err: &anyhow::Error) -> Option<i32> {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .filter_map(std::io::Error::raw_os_error)
        .find(|&errno| errno == libc::EMFILE || errno == libc::ENFILE)
}

/// `err`, with running out of descriptors added to its causes when this process has none
/// left right now: a library can report a failed open as something else (aya's tracefs
/// lookup says "tracefs not found"), and the descriptors are closed by the time the error
/// reaches `main`.
pub fn note_if_exhausted(err: anyhow::Error) -> anyhow::Error {
    if exhaustion(&err).is_some() {
        return err;
    }
    match std::fs::File::open("/dev/null") {
        Err(open) if matches!(open.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            anyhow::Error::new(open).context(format!("{err:#}"))
        }
        _ => err,
    }
}

/// `err` said as running out of descriptors when that is its cause, so the user raises the
/// limit instead of chasing what the failing call was about; other errors are unchanged.
pub fn explain(err: anyhow::Error) -> anyhow::Error {
    match exhaustion(&err) {
        Some(libc::EMFILE) => {
            let limit = get().map_or_else(|| "unknown".to_owned(), |l| l.rlim_cur.to_string());
            anyhow::anyhow!(
                "{err}: too many open files (limit {limit}): raise it with `ulimit -n` \
                 (and its hard limit with `ulimit -Hn` as root)"
            )
        }
        Some(_) => {
            let max = std::fs::read_to_string("/proc/sys/fs/file-max")
                .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
            anyhow::anyhow!(
                "{err}: too many open files on the whole system (fs.file-max {max}): close some \
                 programs or raise it with `sysctl fs.file-max`"
            )
        }
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_descriptor_exhaustion_and_leaves_other_errors() {
        let emfile = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EMFILE))
            .context("cannot sample CPU 0");
        let text = format!("{:#}", explain(emfile));
        assert!(
            text.starts_with("cannot sample CPU 0: too many open files (limit "),
            "{text}"
        );
        assert!(text.contains("ulimit -n"), "{text}");
        let other = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(exhaustion(&other), None);
        assert!(!format!("{:#}", explain(other)).contains("open files"));
    }

    #[test]
    fn an_error_with_descriptors_left_is_left_alone() {
        let err = anyhow::anyhow!("tracefs not found");
        assert_eq!(format!("{:#}", note_if_exhausted(err)), "tracefs not found");
    }

    #[test]
    fn raise_reaches_the_hard_limit() {
        raise();
        let limit = get().unwrap();
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
