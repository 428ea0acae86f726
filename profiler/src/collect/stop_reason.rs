//! Why a run's window ended, and the exit status that gives the profiler.

use std::process::ExitStatus;

/// Why the run ended.
#[derive(Debug, Clone)]
pub enum StopReason {
    /// The requested duration elapsed.
    Elapsed,
    /// A signal asked to stop early.
    Signal(&'static str),
    /// The launched command exited.
    CommandExited(ExitStatus),
    /// Every `--pid` target exited (the named processes and those below them at the start).
    TargetsExited,
}

impl StopReason {
    /// The profiler's exit status for a run that otherwise succeeded: the launched
    /// command's when it exited, as `time` and `perf stat` give it (its code, or 128+N
    /// when signal N killed it); else 0.
    pub fn exit_status(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt;
        let Self::CommandExited(status) = self else {
            return 0;
        };
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        };
        u8::try_from(code).unwrap_or(u8::MAX)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Elapsed => write!(f, "the duration elapsed"),
            Self::Signal(name) => write!(f, "stopped early by {name}"),
            Self::CommandExited(status) => write!(f, "the command exited ({status})"),
            Self::TargetsExited => write!(f, "every target process exited"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn exit_status_is_the_commands() {
        let exited = |raw| StopReason::CommandExited(ExitStatus::from_raw(raw)).exit_status();
        assert_eq!(exited(42 << 8), 42);
        assert_eq!(exited(0), 0);
        assert_eq!(exited(libc::SIGKILL), 128 + 9);
        assert_eq!(StopReason::Elapsed.exit_status(), 0);
        assert_eq!(StopReason::Signal("Ctrl-C").exit_status(), 0);
    }
}
