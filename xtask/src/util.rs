//! Small helpers shared by the tasks: running and printing external commands,
//! finding programs, the workspace root and whether we are root.

use std::env;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

/// An external command that ran but did not succeed; `main` exits with its code.
#[derive(Debug)]
pub struct CommandFailed {
    pub command: String,
    pub code: Option<u8>,
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "`{}` failed with exit code {code}", self.command),
            None => write!(f, "`{}` was killed by a signal", self.command),
        }
    }
}

impl std::error::Error for CommandFailed {}

/// The workspace root: xtask lives in `<root>/xtask`, and is always built from the
/// source tree, so the compile-time manifest dir is reliable (no hard-coded paths).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest dir has a parent")
        .to_path_buf()
}

/// Where the host (userspace) build puts its artifacts: `$CARGO_TARGET_DIR` if the
/// user set it, else `<root>/target`, matching what a plain `cargo build` does.
pub fn host_target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The cargo that launched us (rustup sets `$CARGO` to the toolchain's binary), so
/// nested builds use the same toolchain; plain `cargo` otherwise.
pub fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

unsafe extern "C" {
    // From the C library std already links; declared here so xtask needs no libc crate.
    fn geteuid() -> u32;
    fn signal(signum: i32, handler: usize) -> usize;
}

/// Whether we run with effective uid 0 (loading eBPF and apt need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

/// Runs an interactive child (the profiler) to completion, surviving Ctrl-C.
///
/// The terminal sends SIGINT to the whole foreground group: the profiler then writes its
/// output and exits, and xtask must still be alive to wait for it and pass on its exit
/// code. SIGINT is ignored only after the spawn, because an ignored disposition would be
/// inherited by the child across exec.
pub fn status_surviving_ctrl_c(cmd: &mut Command) -> Result<ExitStatus> {
    const SIGINT: i32 = 2;
    const SIG_IGN: usize = 1;
    let shown = display(cmd);
    println!("xtask: running: {shown}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    // SAFETY: setting SIGINT to SIG_IGN has no preconditions and touches no Rust state.
    unsafe {
        signal(SIGINT, SIG_IGN);
    }
    child
        .wait()
        .with_context(|| format!("could not wait for `{shown}`"))
}

/// Whether a command needing root must go through sudo: false when we are root, an
/// error naming `what` when we are not and sudo is not installed.
pub fn need_sudo(what: &str) -> Result<bool> {
    if is_root() {
        Ok(false)
    } else if which("sudo").is_some() {
        Ok(true)
    } else {
        anyhow::bail!("{what} needs root and sudo is not installed: run this as root")
    }
}

/// A program's full path if it is on `$PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs a command quietly for a check and returns its stdout if it succeeded.
pub fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prints the command, runs it with inherited stdio and returns its status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    let shown = display(cmd);
    println!("xtask: running: {shown}");
    cmd.status()
        .with_context(|| format!("could not start `{shown}`"))
}

/// Prints the command, runs it, and fails with [`CommandFailed`] unless it succeeded.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if status.success() {
        Ok(())
    } else {
        Err(CommandFailed {
            command: display(cmd),
            code: status.code().map(clamp_code),
        }
        .into())
    }
}

/// Maps a child's exit status onto ours: its code, or 128+signal like a shell.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => clamp_code(code),
        (None, Some(sig)) => clamp_code(128 + sig),
        (None, None) => 1,
    }
}

fn clamp_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// A copy-pasteable shell rendering of a command:
/// `cd DIR && env -u REMOVED VAR=val program args`.
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        parts.push(format!("cd {} &&", quote(dir.as_os_str())));
    }
    let removed: Vec<_> = cmd.get_envs().filter(|(_, v)| v.is_none()).collect();
    if !removed.is_empty() {
        parts.push("env".to_string());
        parts.extend(removed.iter().map(|(k, _)| format!("-u {}", quote(k))));
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
