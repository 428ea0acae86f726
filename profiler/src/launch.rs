//! Starts the command given after `--`.

use std::ffi::OsString;
use std::io::ErrorKind;

use anyhow::{Result, bail};
use tokio::process::{Child, Command};

/// Starts `argv` with the profiler's stdin, stdout and stderr.
///
/// # Errors
/// When the program cannot be found or executed, with what to check.
pub fn spawn(argv: &[OsString]) -> Result<Child> {
    let Some((program, args)) = argv.split_first() else {
        bail!("no command given after `--`");
    };
    let shown = program.to_string_lossy();
    let mut command = Command::new(program);
    command.args(args).kill_on_drop(false);
    // SAFETY: the hook only calls setrlimit, which is async-signal-safe.
    unsafe { command.pre_exec(crate::fdlimit::restore_in_child) };
    match command.spawn() {
        Ok(child) => Ok(child),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            bail!("cannot start `{shown}`: no such program: check the command and your PATH")
        }
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            bail!("cannot start `{shown}`: permission denied: is it executable?")
        }
        Err(err) => bail!("cannot start `{shown}`: {err}"),
    }
}
