//! The terminal summary's way to standard output. `print!` panics when stdout is closed
//! (`| head -1`) or full (`> /dev/full`); here that is an error which ends the program as
//! `cat` does: quietly for a reader that went away, with one line for anything else.

use std::io::{ErrorKind, Write};

/// Standard output could not take the summary.
#[derive(Debug)]
pub struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot write to standard output: {}: the output files are complete; \
             `profiler report DIR` prints the summary again",
            self.0
        )
    }
}

impl std::error::Error for StdoutError {}

/// Writes `text` to standard output and flushes it, so that every failure shows here and
/// none is left for the exit, where it would be lost.
///
/// # Errors
/// When standard output is closed or full.
pub fn print(text: &str) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// Whether `err` is standard output's reader having gone away (EPIPE), which, like `cat`,
/// ends the program with a failure status and no message: nobody is reading.
pub fn reader_went_away(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<StdoutError>())
        .any(|StdoutError(io)| io.kind() == ErrorKind::BrokenPipe)
}

/// Prints `line` to standard error, ignoring failure: there is nowhere left to report it.
pub fn eprint_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_is_quiet() {
        let pipe = anyhow::Error::from(StdoutError(ErrorKind::BrokenPipe.into()));
        assert!(reader_went_away(&pipe));
        let full =
            anyhow::Error::from(StdoutError(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(!reader_went_away(&full));
        assert!(
            full.to_string()
                .starts_with("cannot write to standard output: ")
        );
    }
}
