//! The virtual machine `cargo xtask test --kernel` runs the tests in: qemu (TCG, since
//! nested KVM is not something CI machines give) booted by virtme-ng over this machine's
//! own root filesystem, read-only, so the binaries built here run there as they are.
//!
//! virtme-ng comes from PyPI, pinned, installed with Debian's own python3 into
//! `target/virtme-ng` (Debian's pip refuses installs into the system, PEP 668), and run
//! from there with PYTHONPATH: nothing outside the project's target directory is needed
//! beyond Debian's packages.

use std::env;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::setup;
use crate::util::{self, host_target_dir, output_of, which};

/// The virtme-ng release the guest's init and options were tried with.
const VIRTME_NG_VERSION: &str = "1.42";
/// Debian's python3: the interpreter pip installs virtme-ng for (its scripts name it).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";
/// Memory of the guest: for the tests' programs plus the guest's /tmp, which lives in
/// its RAM.
const GUEST_MEMORY: &str = "4G";

/// Debian packages the VM needs, by the file that shows each is installed.
const VM_PACKAGES: &[(&str, &str)] = &[
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    // virtme-ng builds the guest's initramfs around a static busybox.
    ("/bin/busybox", "busybox-static"),
];

/// Where virtme-ng is installed.
fn virtme_dir() -> PathBuf {
    host_target_dir().join("virtme-ng")
}

/// The `vng` script of the project's virtme-ng.
fn vng_script() -> PathBuf {
    virtme_dir().join("bin/vng")
}

/// Whether the project's virtme-ng runs (not merely whether files are there).
fn virtme_works() -> bool {
    vng_script().is_file() && output_of(&mut vng_command(["--version"])).is_some()
}

/// Whether Debian's python3 has pip, to install virtme-ng with.
fn python_has_pip() -> bool {
    output_of(Command::new(DEBIAN_PYTHON).args(["-m", "pip", "--version"])).is_some()
}

/// What the VM needs and is missing, in words, and the apt packages that provide it.
fn missing() -> (Vec<String>, Vec<&'static str>) {
    let mut what = Vec::new();
    let mut packages = Vec::new();
    for &(file, package) in VM_PACKAGES {
        if !Path::new(file).is_file() {
            what.push(package.to_string());
            packages.push(package);
        }
    }
    if !virtme_works() {
        what.push(format!(
            "virtme-ng {VIRTME_NG_VERSION} in {}",
            virtme_dir().display()
        ));
        if !Path::new(DEBIAN_PYTHON).is_file() {
            packages.push("python3");
        }
        if !python_has_pip() {
            packages.push("python3-pip");
        }
    }
    (what, packages)
}

/// Installs what booting a kernel needs (qemu, busybox, virtme-ng) when it is missing.
pub fn ensure_tools() -> Result<()> {
    let (what, packages) = missing();
    if what.is_empty() {
        return Ok(());
    }
    println!("xtask: the kernel VM needs: {}", what.join(", "));
    if !packages.is_empty() {
        setup::apt_update();
        setup::apt_install_updated(&packages)?;
    }
    if !virtme_works() {
        install_virtme()?;
    }
    let (still, _) = missing();
    if !still.is_empty() {
        bail!("still missing after installing: {}", still.join(", "));
    }
    Ok(())
}

/// `python3 -m pip install --target target/virtme-ng virtme-ng==VERSION`.
fn install_virtme() -> Result<()> {
    let dir = virtme_dir();
    println!(
        "xtask: installing virtme-ng {VIRTME_NG_VERSION} from PyPI into {}",
        dir.display()
    );
    // A half-written directory from an interrupted install would make pip refuse.
    let _ = std::fs::remove_dir_all(&dir);
    let mut pip = Command::new(DEBIAN_PYTHON);
    pip.args(["-m", "pip", "install", "--quiet", "--target"])
        .arg(&dir)
        .arg(format!("virtme-ng=={VIRTME_NG_VERSION}"))
        // Only this interpreter's pip, with no user or pyenv configuration in between.
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        // Root is how CI runs; into a directory of its own that is no risk to the system.
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env_remove("PYTHONPATH");
    util::run(&mut pip).context("installing virtme-ng from PyPI (needed to boot a kernel)")?;
    if !virtme_works() {
        bail!(
            "virtme-ng {VIRTME_NG_VERSION} installed into {}, but `vng --version` does not run",
            dir.display()
        );
    }
    Ok(())
}

/// A command running the project's `vng` with ARGS: Debian's python3, the install on
/// PYTHONPATH, and its scripts first on PATH (vng runs `virtme-run` by name).
fn vng_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let dir = virtme_dir();
    let mut path = vec![dir.join("bin")];
    path.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    let mut cmd = Command::new(DEBIAN_PYTHON);
    cmd.arg(vng_script())
        .args(args)
        .env("PYTHONPATH", &dir)
        .env(
            "PATH",
            env::join_paths(path).unwrap_or_else(|_| OsString::from("/usr/bin:/bin")),
        );
    cmd
}

/// One boot of a kernel that runs one command and powers off.
pub struct Boot<'a> {
    /// The kernel image (`/boot/vmlinuz-...`).
    pub image: &'a Path,
    /// Directories of this machine the guest may write to (shared back); everything
    /// else it sees read-only.
    pub writable: Vec<PathBuf>,
    /// The shell command the guest runs as root.
    pub command: String,
    /// The guest's whole console output goes here.
    pub log: &'a Path,
    /// A guest still running after this long is killed.
    pub timeout: Duration,
    /// The guest's CPUs.
    pub cpus: u32,
    /// Runs every vCPU on one host thread (`-accel tcg,thread=single`): code one vCPU
    /// patches is then seen at once by the others.
    pub tcg_single_thread: bool,
    /// Console lines worth showing as they come (the rest is only in the log).
    pub show: fn(&str) -> bool,
}

/// How a boot ended.
pub enum Ended {
    /// vng exited (with the guest command's status when the guest got that far).
    Exited(ExitStatus),
    /// The timeout passed and the VM was killed.
    TimedOut,
}

impl Boot<'_> {
    /// Boots the kernel, streams its console into the log, and waits at most the timeout.
    pub fn run(&self) -> Result<Ended> {
        let mut cmd = vng_command([
            "--disable-kvm".as_ref(),
            "--run".as_ref(),
            self.image.as_os_str(),
            "--cpus".as_ref(),
            self.cpus.to_string().as_ref(),
            "--memory".as_ref(),
            GUEST_MEMORY.as_ref(),
            // The kernel's own messages on the console too: an oops or a panic in the
            // guest is then in the log, not only a dead VM.
            "--verbose".as_ref(),
        ]);
        for dir in &self.writable {
            cmd.arg("--rwdir").arg(dir);
        }
        if self.tcg_single_thread {
            cmd.arg("--qemu-opts=-accel tcg,thread=single");
        }
        cmd.arg("--exec").arg(&self.command);
        // No terminal in CI; the guest must not wait for one either.
        cmd.stdin(Stdio::null());
        let (reader, writer) = std::io::pipe().context("creating a pipe for the VM's output")?;
        cmd.stdout(writer.try_clone()?).stderr(writer);
        // Its own process group, so a timeout kills qemu with vng.
        cmd.process_group(0);
        let log =
            File::create(self.log).with_context(|| format!("creating {}", self.log.display()))?;
        println!("xtask: running: {}", util::display(&cmd));
        let child = cmd.spawn().context("could not start vng")?;
        // The parent's copies of the pipe's write end are gone with `cmd`, so the reader
        // sees the end once vng and qemu have exited.
        drop(cmd);

        let show = self.show;
        let copier = thread::spawn(move || copy_console(reader, log, show));
        let ended = wait_at_most(child, self.timeout)?;
        // A guest killed by the timeout leaves nothing writing; wait for the last lines.
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = done_tx.send(copier.join());
        });
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        Ok(ended)
    }
}

/// Copies every console line into the log and prints those `show` picks.
fn copy_console(reader: std::io::PipeReader, mut log: File, show: fn(&str) -> bool) {
    let mut lines = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(&line);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if show(text) {
            println!("  guest: {text}");
        }
    }
    let _ = log.flush();
}

/// Waits for the child at most `timeout`, then kills its process group.
fn wait_at_most(mut child: Child, timeout: Duration) -> Result<Ended> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("waiting for vng")? {
            return Ok(Ended::Exited(status));
        }
        if started.elapsed() >= timeout {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let group = child.id() as i32;
    println!(
        "xtask: the VM is still running after {} s; killing it (process group {group})",
        timeout.as_secs()
    );
    // SAFETY: kill has no memory preconditions; the group is the one vng was started in.
    unsafe {
        libc::kill(-group, libc::SIGTERM);
    }
    let grace = Instant::now();
    while grace.elapsed() < Duration::from_secs(10) {
        if child.try_wait().context("waiting for vng")?.is_some() {
            return Ok(Ended::TimedOut);
        }
        thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    let _ = child.wait();
    Ok(Ended::TimedOut)
}

/// Prints what the VM uses, for `setup --for-kernels`.
pub fn report() {
    for &(file, package) in VM_PACKAGES {
        if Path::new(file).is_file() {
            println!("xtask: setup: {package}: found {file}");
        } else {
            println!("xtask: setup: {package}: missing");
        }
    }
    if virtme_works() {
        // A `vng` on PATH (a pyenv shim, say) is never used: say so when there is one.
        println!(
            "xtask: setup: virtme-ng: found {}{}",
            vng_script().display(),
            which("vng")
                .map(|p| format!(" (used instead of {} on PATH)", p.display()))
                .unwrap_or_default()
        );
    } else {
        println!("xtask: setup: virtme-ng {VIRTME_NG_VERSION}: missing");
    }
}
