//! Asks a running HotSpot JVM to write its perf map (`/tmp/perf-PID.map`), as
//! `jcmd PID Compiler.perfmap` does on JDK 17+: through HotSpot's attach mechanism.
//!
//! The mechanism: a file `.attach_pid<PID>` in the JVM's working directory or its `/tmp`
//! and a SIGQUIT make the JVM open the UNIX socket `/tmp/.java_pid<PID>`; a client writes
//! the protocol-1 request (`1\0jcmd\0Compiler.perfmap\0\0\0`) and reads a status line
//! (`0` on success) and the command's output. PID is the JVM's own pid in its namespace,
//! and every path is reached through `/proc/PID/root` or `/proc/PID/cwd`, so a JVM in a
//! container is asked the same way.
//!
//! We run as root among files other users control: nothing is followed through a symlink
//! (the trigger is created `O_EXCL|O_NOFOLLOW` in the JVM's `/tmp` only, owned by root,
//! the socket opened `O_PATH|O_NOFOLLOW`,
//! checked to be a socket of the JVM's user, and connected to through that descriptor),
//! SIGQUIT goes only to a process that maps `libjvm.so` and catches the signal (its
//! default action ends a process with a core dump), only when the socket is not there
//! already (a JVM run with `-Xrs` opens it at start), and through a pidfd, so that a pid
//! reused since is not signalled; every wait and read is bounded.
//!
//! The request may come seconds after the samples that called for it: the JVM may have
//! exited since and its pid gone to another process. So the pidfd is opened first and the
//! process it holds must have the start time recorded when the JVM was first sampled, and
//! must still live after that is read (a pid is not reused until its process is reaped);
//! otherwise nothing is sent, to it or to anyone.

use crate::process::start_time;
use crate::process::status::Status;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long the JVM is given to open its attach socket after the signal.
pub const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// How long the JVM is given to write its map and answer (a large code cache takes a
/// while).
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

/// The most bytes of a reply read (the command prints nothing on success).
const MAX_REPLY: u64 = 16 << 10;

/// The most bytes of `/proc/PID/maps`, `cmdline` and `environ` read to inspect a process.
const MAX_PROC_TEXT: u64 = 4 << 20;

/// The flag with which a JVM refuses every attach.
const ATTACH_DISABLED: &str = "-XX:+DisableAttachMechanism";

/// The request: protocol 1, command `jcmd` with its one argument, two empty arguments.
const REQUEST: &[u8] = b"1\0jcmd\0Compiler.perfmap\0\0\0";

/// How a request for a perf map ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The JVM wrote its map.
    Written,
    /// The process maps no `libjvm.so`: nothing was sent to it.
    NotHotSpot,
    /// Its command line or environment holds `-XX:+DisableAttachMechanism`: not signalled.
    AttachDisabled,
    /// It does not catch SIGQUIT, which would end it: not signalled.
    SignalNotCaught,
    /// No attach socket appeared within [`SOCKET_WAIT`] of the signal.
    NoSocket,
    /// The JVM answered with an error status (an older JDK has no `Compiler.perfmap`),
    /// and the first line of its words.
    Refused(String),
    /// The process sampled exited before it was asked: nothing was sent.
    Gone,
    /// The process sampled exited before it was asked and its pid is another process's now
    /// (one started at another time): nothing was sent to that one.
    Replaced,
    /// Something failed on our side or the process went away, in words.
    Failed(String),
}

impl Outcome {
    /// Why no map came, in words for the summary; `None` when one did.
    pub fn why_not(&self) -> Option<String> {
        Some(match self {
            Self::Written => return None,
            Self::NotHotSpot => "not a HotSpot JVM".to_owned(),
            Self::AttachDisabled => format!("started with {ATTACH_DISABLED}"),
            Self::SignalNotCaught => {
                "it does not catch SIGQUIT, so it was not signalled".to_owned()
            }
            Self::NoSocket => format!(
                "no attach socket within {}s of SIGQUIT (attach disabled, or not HotSpot 17+?)",
                SOCKET_WAIT.as_secs()
            ),
            Self::Refused(words) => {
                format!("it answered: {words} (Compiler.perfmap needs JDK 17+)")
            }
            Self::Gone => "it exited before it was asked".to_owned(),
            Self::Replaced => {
                "it exited before it was asked, and its pid is another process's now".to_owned()
            }
            Self::Failed(words) => words.clone(),
        })
    }
}

/// What is known of a process before anything is sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Jvm {
    /// Its pid in its own namespace, which names its files.
    nspid: u32,
    /// Its effective uid and gid, which its attach files must have.
    uid: u32,
    gid: u32,
    /// Whether it catches SIGQUIT.
    catches_quit: bool,
}

/// Asks process `pid`, the one started at `start_time` ([`start_time::read`]), for its
/// perf map, if it is a HotSpot JVM that can be asked. Blocks for at most [`SOCKET_WAIT`]
/// plus [`REPLY_WAIT`] (and then some for `/proc`).
pub fn request_perf_map(pid: u32, start_time: u64) -> Outcome {
    match request(pid, start_time) {
        Ok(outcome) => outcome,
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

fn request(pid: u32, start_time: u64) -> io::Result<Outcome> {
    // Held from before the checks to the signal: a pid reused in between is not signalled.
    let pidfd = match pidfd_open(pid) {
        Ok(pidfd) => pidfd,
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(Outcome::Gone),
        Err(err) => return Err(err),
    };
    if let Some(other) = not_the_one_sampled(pid, start_time, &pidfd)? {
        return Ok(other);
    }
    if !maps_libjvm(pid)? {
        return Ok(Outcome::NotHotSpot);
    }
    if attach_disabled(pid) {
        return Ok(Outcome::AttachDisabled);
    }
    let jvm = inspect(pid)?;
    let socket = match open_socket(pid, &jvm) {
        Some(socket) => socket,
        None => {
            if !jvm.catches_quit {
                return Ok(Outcome::SignalNotCaught);
            }
            let _trigger = Trigger::create(pid, &jvm)?;
            pidfd_signal(&pidfd, libc::SIGQUIT)?;
            match wait_for_socket(pid, &jvm) {
                Some(socket) => socket,
                None => return Ok(Outcome::NoSocket),
            }
        }
    };
    let reply = exchange(&socket)?;
    Ok(outcome_of(&reply))
}

/// Why the process `pidfd` holds is not the one sampled, which started at `start_time`;
/// `None` when it is. Its start time is read by pid, so the process must still live after
/// the read for the read to have been its own.
fn not_the_one_sampled(pid: u32, start_time: u64, pidfd: &OwnedFd) -> io::Result<Option<Outcome>> {
    let read = start_time::read(pid);
    match pidfd_signal(pidfd, 0) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(Some(Outcome::Gone)),
        Err(err) => return Err(err),
    }
    Ok((read? != start_time).then_some(Outcome::Replaced))
}

/// The outcome a reply tells: its first line is the status.
fn outcome_of(reply: &str) -> Outcome {
    let mut lines = reply.lines();
    match lines.next().map(str::trim) {
        Some("0") => Outcome::Written,
        Some(status) => {
            let words = lines.find(|l| !l.trim().is_empty()).unwrap_or(status);
            Outcome::Refused(words.trim().chars().take(200).collect())
        }
        None => Outcome::Failed("the JVM closed the attach socket without a reply".to_owned()),
    }
}

/// Whether process `pid` maps HotSpot's library.
fn maps_libjvm(pid: u32) -> io::Result<bool> {
    let maps = read_proc(pid, "maps")?;
    Ok(String::from_utf8_lossy(&maps).lines().any(is_libjvm))
}

/// Whether a mapped path (or a `/proc/PID/maps` line, which ends with it) is HotSpot's
/// library.
pub fn is_libjvm(path: &str) -> bool {
    path.trim_end_matches(" (deleted)").ends_with("/libjvm.so")
}

/// Whether the JVM's command line or environment (`JAVA_TOOL_OPTIONS` and its kin) turns
/// the attach mechanism off: then a SIGQUIT would only print a thread dump into its output.
fn attach_disabled(pid: u32) -> bool {
    ["cmdline", "environ"].iter().any(|what| {
        read_proc(pid, what).is_ok_and(|text| {
            text.split(|&b| b == 0)
                .any(|arg| String::from_utf8_lossy(arg).contains(ATTACH_DISABLED))
        })
    })
}

/// At most [`MAX_PROC_TEXT`] bytes of `/proc/PID/<what>`.
fn read_proc(pid: u32, what: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(format!("/proc/{pid}/{what}"))?
        .take(MAX_PROC_TEXT)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// The JVM's namespace pid, effective ids and signal disposition, from its status.
fn inspect(pid: u32) -> io::Result<Jvm> {
    jvm_of(&Status::read(pid)?)
        .ok_or_else(|| io::Error::other(format!("cannot read /proc/{pid}/status")))
}

/// What the attach needs of a status, when it says all of it.
fn jvm_of(status: &Status) -> Option<Jvm> {
    Some(Jvm {
        nspid: status.nspid?,
        uid: status.effective_uid?,
        gid: status.effective_gid?,
        catches_quit: status.catches(libc::SIGQUIT)?,
    })
}

/// The triggers created and not yet removed, each with its own descriptor of its directory:
/// a request's thread may still hold one when the run ends (it waits up to
/// [`SOCKET_WAIT`] plus [`REPLY_WAIT`]), and its file must not outlive the run.
static PENDING: std::sync::Mutex<Vec<Pending>> = std::sync::Mutex::new(Vec::new());

/// A trigger not yet removed: its directory, name, and device and inode.
type Pending = (OwnedFd, CString, (u64, u64));

/// Removes the triggers requests still under way created: called at the end of the run,
/// when their threads are left behind.
pub fn remove_pending_triggers() {
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    for (dir, name, id) in pending {
        unlink_if_same(&dir, &name, id);
    }
}

/// Removes `name` from `dir` if it is still the file `id` names (the JVM's user could have
/// replaced it).
fn unlink_if_same(dir: &OwnedFd, name: &CString, id: (u64, u64)) {
    if stat_at(dir, name).is_some_and(|st| (st.st_dev, st.st_ino) == id) {
        // SAFETY: a valid directory descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    }
}

/// The file that tells a JVM to start its attach listener, removed when dropped.
struct Trigger {
    dir: OwnedFd,
    name: CString,
    /// The file's device and inode, so that only this very file is removed.
    id: (u64, u64),
}

impl Trigger {
    /// Creates `.attach_pid<NSPID>` in the JVM's `/tmp` (HotSpot looks there after its
    /// working directory), owned by root, which HotSpot 17+ accepts; never over an
    /// existing name. Not in its working directory: a process can sit in any directory,
    /// and a file of ours must not appear in, say, `/etc`, let alone one its user owns.
    fn create(pid: u32, jvm: &Jvm) -> io::Result<Trigger> {
        let name = CString::new(format!(".attach_pid{}", jvm.nspid)).expect("no NUL");
        let dir = open_tmp(pid)?;
        // SAFETY: a valid directory descriptor and NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_NOFOLLOW
                    | libc::O_NONBLOCK
                    | libc::O_CLOEXEC,
                0o600,
            )
        };
        let file = File::from(owned(fd)?);
        let meta = file.metadata()?;
        use std::os::unix::fs::MetadataExt;
        let id = (meta.dev(), meta.ino());
        match dir.try_clone() {
            Ok(copy) => {
                PENDING
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((copy, name.clone(), id))
            }
            Err(err) => log::debug!("attach trigger of {pid} not registered: {err}"),
        }
        Ok(Trigger { dir, name, id })
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        PENDING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, _, id)| *id != self.id);
        unlink_if_same(&self.dir, &self.name, self.id);
    }
}

/// `fstatat` of `name` in `dir`, not following a symlink.
fn stat_at(dir: &OwnedFd, name: &CString) -> Option<libc::stat> {
    // SAFETY: all zeroes is a valid `stat`, filled by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, NUL-terminated name and a `stat` to fill.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (rc == 0).then_some(st)
}

/// A directory as an `O_PATH` descriptor (a `/proc` magic link is followed: the kernel
/// resolves it to the process's own directory).
fn open_dir(path: &str) -> io::Result<OwnedFd> {
    let path = CString::new(path).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

/// The JVM's `/tmp`, under its root; refused when `tmp` is a symlink, which would be
/// resolved against our root rather than the JVM's.
fn open_tmp(pid: u32) -> io::Result<OwnedFd> {
    let root = open_dir(&format!("/proc/{pid}/root"))?;
    // SAFETY: a valid directory descriptor and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            root.as_raw_fd(),
            c"tmp".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The JVM's attach socket, `/tmp/.java_pid<NSPID>` under its root, as an `O_PATH`
/// descriptor of a socket its user owns; `None` while there is none.
fn open_socket(pid: u32, jvm: &Jvm) -> Option<OwnedFd> {
    let tmp = open_tmp(pid).ok()?;
    let name = CString::new(format!(".java_pid{}", jvm.nspid)).expect("no NUL");
    // SAFETY: a valid directory descriptor and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            tmp.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    let fd = owned(fd).ok()?;
    // SAFETY: all zeroes is a valid `stat`, filled by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a `stat` to fill.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    let is_socket = st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
    if !is_socket || (st.st_uid != jvm.uid && st.st_uid != 0) {
        log::debug!("attach socket of {pid} ignored: not a socket of its user");
        return None;
    }
    Some(fd)
}

/// Polls for the attach socket for at most [`SOCKET_WAIT`], more slowly as time goes.
fn wait_for_socket(pid: u32, jvm: &Jvm) -> Option<OwnedFd> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    while started.elapsed() < SOCKET_WAIT {
        std::thread::sleep(pause);
        if let Some(socket) = open_socket(pid, jvm) {
            return Some(socket);
        }
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    None
}

/// Connects to the socket held as an `O_PATH` descriptor (through `/proc/self/fd`, so the
/// name is not looked up again), sends the request and reads the bounded reply.
fn exchange(socket: &OwnedFd) -> io::Result<String> {
    let path = format!("/proc/self/fd/{}", socket.as_raw_fd());
    // Not blocking while connecting: a listener with a full backlog is an error, not a wait.
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    let fd = owned(fd)?;
    // SAFETY: all zeroes is a valid `sockaddr_un`.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(path.as_bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: a valid socket and a filled address of the given size.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REPLY_WAIT))?;
    stream.set_read_timeout(Some(REPLY_WAIT))?;
    stream.write_all(REQUEST)?;
    // Each read waits at most REPLY_WAIT; the whole reply is bounded in time too.
    let started = Instant::now();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while (reply.len() as u64) < MAX_REPLY {
        // Each read may wait only what is left of the whole reply's time.
        let Some(left) = REPLY_WAIT
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            break;
        };
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if reply.is_empty() => return Err(err),
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// `pidfd_open(2)`: a handle on the process that a reused pid does not redirect.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: the syscall takes a pid and flags and returns a descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(fd as libc::c_int)
}

/// `pidfd_send_signal(2)`; signal 0 only checks that the process lives.
fn pidfd_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_the_namespace_pid_effective_ids_and_sigquit() {
        let status = "Name:\tjava\nUid:\t1000\t1001\t1001\t1001\nGid:\t50\t51\t51\t51\n\
                      NSpid:\t4242\t7\nSigCgt:\t0000000000000004\n";
        let jvm = jvm_of(&Status::parse(status)).unwrap();
        assert_eq!((jvm.nspid, jvm.uid, jvm.gid), (7, 1001, 51));
        assert!(jvm.catches_quit);
        let xrs = status.replace("0000000000000004", "0000000180000000");
        assert!(!jvm_of(&Status::parse(&xrs)).unwrap().catches_quit);
        assert_eq!(jvm_of(&Status::parse("Name:\tx\n")), None);
    }

    #[test]
    fn replies_are_read_by_their_status_line() {
        assert_eq!(outcome_of("0\n"), Outcome::Written);
        assert_eq!(
            outcome_of("-1\njava.lang.IllegalArgumentException: Unknown diagnostic command\n"),
            Outcome::Refused(
                "java.lang.IllegalArgumentException: Unknown diagnostic command".to_owned()
            )
        );
        assert!(matches!(outcome_of(""), Outcome::Failed(_)));
        assert_eq!(Outcome::Written.why_not(), None);
    }

    #[test]
    fn a_process_without_libjvm_is_not_signalled() {
        // This test process maps no libjvm.so: it is left alone, quickly.
        let me = std::process::id();
        let started = Instant::now();
        let outcome = request_perf_map(me, start_time::read(me).unwrap());
        assert_eq!(outcome, Outcome::NotHotSpot);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(request_perf_map(u32::MAX, 0), Outcome::Failed(_)));
    }

    #[test]
    fn a_process_started_at_another_time_than_the_one_sampled_is_left_alone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = start_time::read(pid).unwrap();
        // As if the process sampled had exited and `sleep` had got its pid.
        assert_eq!(request_perf_map(pid, started + 1), Outcome::Replaced);
        assert!(child.try_wait().unwrap().is_none(), "sleep was signalled");
        // With its own start time it is looked at, and is no JVM.
        assert_eq!(request_perf_map(pid, started), Outcome::NotHotSpot);
        assert!(child.try_wait().unwrap().is_none(), "sleep was signalled");
        child.kill().unwrap();
        child.wait().unwrap();
        // Reaped: its pid is no process's, unless another got it already.
        let after = request_perf_map(pid, started);
        assert!(
            matches!(after, Outcome::Gone | Outcome::Replaced),
            "{after:?}"
        );
    }
}
