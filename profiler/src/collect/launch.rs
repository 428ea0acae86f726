//! Starts the command given after `--`: under sudo as the user who ran sudo, as `sudo`
//! itself would have, so the profiler's root is not handed on to the command.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Result, bail};
use tokio::process::{Child, Command};

/// What a launched command inherits beyond the profiler's own environment: variables to
/// set, and a descriptor to keep open across its exec.
#[derive(Debug, Default)]
pub struct Inherit {
    /// Variables set (or replaced) in the command's environment.
    pub env: Vec<(OsString, OsString)>,
    /// A close-on-exec descriptor the command keeps.
    pub fd: Option<i32>,
}

/// Starts `argv` with the profiler's stdin, stdout and stderr, plus `inherit`'s variables
/// and descriptor. Under sudo (`SUDO_UID` and `SUDO_GID` set, running as root) the
/// command runs as that user, with their groups and `HOME`, `USER` and `LOGNAME`, unless
/// `as_root`. With a `gate` (the descriptors of
/// [`crate::collect::gate::Gate::child_ends`]), the child stops just before it executes
/// the command, until the profiler lets it go.
///
/// # Errors
/// When the program cannot be found or executed, with what to check.
pub fn spawn(
    argv: &[OsString],
    as_root: bool,
    gate: Option<(i32, i32)>,
    inherit: &Inherit,
) -> Result<Child> {
    let Some((program, args)) = argv.split_first() else {
        bail!("no command given after `--`");
    };
    let shown = program.to_string_lossy();
    let mut command = Command::new(program);
    command.args(args).kill_on_drop(false);
    // SAFETY: the hook only calls setrlimit, which is async-signal-safe.
    unsafe { command.pre_exec(crate::sys::fdlimit::restore_in_child) };
    let user = if as_root { None } else { invoking_user() };
    if let Some(user) = &user {
        user.apply(&mut command);
    }
    command.envs(inherit.env.iter().map(|(k, v)| (k, v)));
    if let Some(fd) = inherit.fd {
        // SAFETY: fcntl is async-signal-safe; the descriptor is the child's copy.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if let Some((pid_write, go_read)) = gate {
        // SAFETY: the hook makes only async-signal-safe system calls.
        unsafe {
            command.pre_exec(move || crate::collect::gate::in_child(pid_write, go_read));
        }
    }
    let who = match &user {
        Some(user) => format!(" as user {} (from SUDO_UID)", user.uid),
        None => String::new(),
    };
    match command.spawn() {
        Ok(child) => Ok(child),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            bail!("cannot start `{shown}`{who}: no such program: check the command and your PATH")
        }
        Err(err) if err.kind() == ErrorKind::PermissionDenied && user.is_some() => bail!(
            "cannot start `{shown}`{who}: permission denied: can that user run it? \
             (--run-as-root runs it as root)"
        ),
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            bail!("cannot start `{shown}`: permission denied: is it executable?")
        }
        Err(err) if user.is_some() => bail!(
            "cannot start `{shown}`{who}: {err}: give --run-as-root to run it as root instead"
        ),
        Err(err) => bail!("cannot start `{shown}`: {err}"),
    }
}

/// The user who ran `sudo`, as the command should see itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InvokingUser {
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// Supplementary groups, as `initgroups` would set them.
    groups: Vec<libc::gid_t>,
    /// Login name and home directory, when the user has a passwd entry.
    account: Option<(OsString, OsString)>,
}

/// The sudo user to run the command as, or `None` when not under sudo (or sudo from root).
fn invoking_user() -> Option<InvokingUser> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Not root (a stale SUDO_UID in the environment): there is nothing to give up.
        return None;
    }
    let id = |var: &str| std::env::var(var).ok()?.trim().parse::<u32>().ok();
    let (uid, gid) = (id("SUDO_UID")?, id("SUDO_GID")?);
    if uid == 0 {
        return None;
    }
    let account = passwd_entry(uid);
    let groups = match &account {
        Some((name, _)) => group_list(name, gid),
        None => vec![gid],
    };
    Some(InvokingUser {
        uid,
        gid,
        groups,
        account,
    })
}

impl InvokingUser {
    /// Makes `command` run as this user: its environment names the user, and the child
    /// drops root between fork and exec, so the profiler (which follows the fork) still
    /// sees the command from its first instruction.
    fn apply(&self, command: &mut Command) {
        if let Some((name, home)) = &self.account {
            command
                .env("HOME", home)
                .env("USER", name)
                .env("LOGNAME", name);
        }
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // Everything in one hook, in the only order that works: the groups and gid while
        // still root, the uid last. (std's own uid()/gid() would clear the groups, and
        // hooks run after its setuid, too late for setgroups.)
        // SAFETY: the hook only makes async-signal-safe system calls on data moved in.
        unsafe {
            command.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// The login name and home directory of `uid`, from the passwd database.
fn passwd_entry(uid: libc::uid_t) -> Option<(OsString, OsString)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain data that getpwuid_r fills.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and buf's length is given.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        log::debug!("no passwd entry for uid {uid}: the command keeps HOME and USER");
        return None;
    }
    let field = |p: *const libc::c_char| {
        // SAFETY: on success both fields point at NUL-terminated strings inside buf.
        OsStr::from_bytes(unsafe { CStr::from_ptr(p) }.to_bytes()).to_owned()
    };
    Some((field(entry.pw_name), field(entry.pw_dir)))
}

/// `gid` and the supplementary groups of user `name`, as `initgroups(3)` would set them.
fn group_list(name: &OsStr, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let Ok(name) = CString::new(name.as_bytes()) else {
        return vec![gid];
    };
    let mut count: libc::c_int = 32;
    // The first call says how many groups there are when the guess was too small.
    for _ in 0..4 {
        let mut groups = vec![0; count.max(1) as usize];
        // SAFETY: groups holds `count` entries, as the call is told.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
    }
    vec![gid]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_passwd_entry_and_its_groups() {
        let (name, home) = passwd_entry(0).expect("root is in the passwd database");
        assert_eq!(name, "root");
        assert!(!home.is_empty());
        assert!(group_list(&name, 0).contains(&0));
    }
}
