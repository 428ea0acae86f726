//! A throwaway PostgreSQL server from Debian's packages, for tests that profile real
//! software against the figures the server measures about itself.
//!
//! [`Postgres::start`] makes a data directory owned by user `postgres` in a fresh temporary
//! directory, runs `initdb` and then `postgres` as that user (through `setpriv`, which
//! execs, so the child's pid is the postmaster's), listening on 127.0.0.1 only on a free
//! port. Load comes from `pgbench` with a bounded duration; the server's own figures come
//! from `pg_stat_wal` and from sampling `pg_stat_activity` inside the server. Dropping it
//! stops the server by its pid (fast shutdown, then SIGKILL after a bound) and removes
//! the directory.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Run, Running, free_port, run_command};

/// Where Debian installs each PostgreSQL version's programs: `/usr/lib/postgresql/N/bin`.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// The programs a test needs from that directory.
const PROGRAMS: [&str; 4] = ["postgres", "initdb", "pgbench", "psql"];
/// The user Debian's packages create to run the server.
const USER: &str = "postgres";
/// `pg_stat_wal.wal_sync_time` exists from 14 to 17 (18 moved WAL timing to `pg_stat_io`).
const VERSIONS_WITH_WAL_SYNC_TIME: std::ops::RangeInclusive<u32> = 14..=17;
/// How long the server may take to accept connections, and to stop when asked.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The `application_name` of the activity sampler's own session.
const SAMPLER_APPLICATION: &str = "profiler_it_sampler";
/// `statfs` magic of tmpfs, where `fdatasync` never waits for a device.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The newest installed PostgreSQL whose bin directory has every program in [`PROGRAMS`]
/// and whose `pg_stat_wal` times WAL syncs, with its major version; or why there is none.
pub fn postgres_bin_dir() -> Result<(u32, PathBuf), String> {
    let entries = std::fs::read_dir(DEBIAN_ROOT).map_err(|e| {
        format!(
            "PostgreSQL is not installed ({DEBIAN_ROOT}: {e}); `cargo xtask setup --for-tests` \
             installs Debian's postgresql"
        )
    })?;
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            PROGRAMS
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    let (version, bin) = found.pop().ok_or_else(|| {
        format!(
            "no {DEBIAN_ROOT}/N/bin has all of {}; install Debian's postgresql",
            PROGRAMS.join(", ")
        )
    })?;
    if !VERSIONS_WITH_WAL_SYNC_TIME.contains(&version) {
        return Err(format!(
            "PostgreSQL {version}: the test reads pg_stat_wal.wal_sync_time, which exists in \
             versions 14 to 17 only"
        ));
    }
    Ok((version, bin))
}

/// Whether `path` is on tmpfs, where `fdatasync` waits for no device: a test about WAL
/// syncs needs its server's files (the temporary directory) on a disk.
pub fn is_tmpfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain data.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a NUL-terminated path and to the struct to fill.
    let ok = unsafe { libc::statfs(c_path.as_ptr(), &mut st) } == 0;
    ok && st.f_type as i64 == TMPFS_MAGIC
}

/// The uid and gid of `name`, or `None` if there is no such user.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated name; the result is read at once, before any other
    // getpw* call in this thread could overwrite it.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null, as just checked.
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}

/// The server's cumulative WAL figures (`pg_stat_wal`) at one moment.
#[derive(Debug, Clone, Copy)]
pub struct WalStats {
    /// When it was read (the server's `clock_timestamp()`, Unix seconds).
    pub at: f64,
    /// `wal_sync`: WAL syncs (`issue_xlog_fsync` calls).
    pub syncs: i64,
    /// `wal_sync_time`: time in them, in milliseconds (`track_wal_io_timing`).
    pub sync_ms: f64,
    /// `wal_write`: WAL writes.
    pub writes: i64,
    /// `wal_write_time`: their time in milliseconds.
    pub write_ms: f64,
}

/// One sample of one client backend from `pg_stat_activity`.
#[derive(Debug, Clone)]
pub struct ActivitySample {
    /// When it was taken (Unix seconds).
    pub at: f64,
    /// The backend's process id.
    pub pid: u32,
    /// `backend_start` (Unix seconds).
    pub backend_start: f64,
    /// `wait_event_type`, `wait_event`; `None` when the backend was not waiting.
    pub wait: Option<(String, String)>,
}

/// What a sampler saw, every ~10 ms, of the client backends with one `application_name`.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Every sample, in the order taken.
    pub samples: Vec<ActivitySample>,
}

impl Activity {
    /// The sampled backends' pids, sorted.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.samples.iter().map(|s| s.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The share of samples in which a backend waited on `event` (e.g. `ClientRead`).
    pub fn share(&self, event: &str) -> f64 {
        let hits = self
            .samples
            .iter()
            .filter(|s| s.wait.as_ref().is_some_and(|(_, e)| e == event))
            .count();
        hits as f64 / self.samples.len().max(1) as f64
    }

    /// Each wait event's share of the samples, largest first (`on CPU` when not waiting).
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for s in &self.samples {
            let name = s
                .wait
                .as_ref()
                .map_or("on CPU".to_owned(), |(t, e)| format!("{t}:{e}"));
            *counts.entry(name).or_default() += 1;
        }
        let n = self.samples.len().max(1) as f64;
        let mut v: Vec<(String, f64)> =
            counts.into_iter().map(|(k, c)| (k, c as f64 / n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// Per backend: `(pid, backend_start, last time it was seen)`, Unix seconds.
    pub fn lifetimes(&self) -> Vec<(u32, f64, f64)> {
        self.pids()
            .into_iter()
            .map(|pid| {
                let mine = self.samples.iter().filter(|s| s.pid == pid);
                let start = mine
                    .clone()
                    .map(|s| s.backend_start)
                    .fold(f64::MAX, f64::min);
                let last = mine.map(|s| s.at).fold(f64::MIN, f64::max);
                (pid, start, last)
            })
            .collect()
    }
}

/// A sampler running in its own server session; [`Sampler::finish`] collects it.
pub struct Sampler {
    running: Running,
}

impl Sampler {
    /// Waits for the sampler to end and parses what it saw.
    pub fn finish(self, timeout: Duration) -> Activity {
        let run = self.running.wait_timeout(timeout);
        run.assert_success();
        let mut activity = Activity::default();
        for line in run.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('|').collect();
            let num = |i: usize| -> f64 {
                f.get(i)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("sampler line field {i} is not a number: {line:?}"))
            };
            let wait = match (f.get(3), f.get(4)) {
                (Some(t), Some(e)) if !t.is_empty() && !e.is_empty() => {
                    Some(((*t).to_owned(), (*e).to_owned()))
                }
                _ => None,
            };
            activity.samples.push(ActivitySample {
                at: num(0),
                pid: num(1) as u32,
                backend_start: num(2),
                wait,
            });
        }
        activity
    }
}

/// A running PostgreSQL server; stopped and removed when dropped.
pub struct Postgres {
    version: u32,
    bin: PathBuf,
    port: u16,
    postmaster: Option<Child>,
    /// Holds `run/` (owned by `postgres`: data directory, socket) and the server's log.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// [`Self::start`] for a test: the server, or `None` after saying on stderr why it
    /// cannot run here (`skipping: ...`).
    pub fn start_or_skip() -> Option<Postgres> {
        match Self::start() {
            Ok(pg) => Some(pg),
            Err(why) => {
                eprintln!("skipping: {why}");
                None
            }
        }
    }

    /// Creates a cluster and starts its server, waiting until it accepts connections.
    /// `Err` says why it cannot run here (not installed, no `postgres` user, not root);
    /// a failure of a program that should work panics with its output.
    pub fn start() -> Result<Postgres, String> {
        let (version, bin) = postgres_bin_dir()?;
        let (uid, gid) = user_ids(USER)
            .ok_or_else(|| format!("no user {USER:?} (Debian's postgresql-common creates it)"))?;
        if !crate::is_root() {
            return Err("starting PostgreSQL as user postgres needs root".to_owned());
        }
        let dir = tempfile::Builder::new()
            .prefix("profiler-it-pg-")
            .tempdir()
            .expect("create temp dir");
        // The server, running as postgres, must reach its directory through ours.
        crate::set_mode(dir.path(), 0o755);
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("create the cluster directory");
        std::os::unix::fs::chown(&run, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {USER}: {e}", run.display()));
        crate::set_mode(&run, 0o700);

        let mut initdb = as_postgres(&run);
        initdb
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(run.join("data"))
            .args(["-U", USER, "--auth=trust", "--locale=C", "-E", "UTF8"])
            .arg("--no-instructions");
        let init = run_command(initdb);
        init.assert_success();

        let port = free_port();
        let log = dir.path().join("server.log");
        let log_file = || File::create(&log).expect("create the server log");
        let mut server = as_postgres(&run);
        server
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(run.join("data"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", run.display()))
            // pg_stat_wal's sync and write times are only measured with this on.
            .args(["-c", "track_wal_io_timing=on", "-c", "fsync=on"])
            // Linux's default, said aloud: WAL syncs are fdatasync calls.
            .args(["-c", "wal_sync_method=fdatasync"])
            .stdin(Stdio::null())
            .stdout(log_file())
            .stderr(log_file());
        let child = server
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.join("postgres").display()));
        let mut pg = Postgres {
            version,
            bin,
            port,
            postmaster: Some(child),
            dir,
        };
        pg.wait_until_ready();
        Ok(pg)
    }

    /// The PostgreSQL major version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The postmaster's pid (every server process is its child).
    pub fn pid(&self) -> u32 {
        self.postmaster.as_ref().expect("server running").id()
    }

    /// The TCP port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("run/data")
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A client program of this version (`psql`, `pgbench`) with the environment's `PG*`
    /// variables removed, so only the arguments choose the server.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// The connection arguments every client takes (TCP on loopback, as `postgres`).
    fn connection(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            USER.into(),
        ]
    }

    /// A `pgbench` command against this server (connection arguments first, then `args`,
    /// then the database).
    pub fn pgbench(&self, args: &[&str]) -> Command {
        let mut cmd = self.client("pgbench");
        cmd.args(self.connection()).args(args).arg(USER);
        cmd
    }

    /// `pgbench -i -s SCALE`: the TPC-B tables, `100_000 * SCALE` accounts.
    pub fn pgbench_init(&self, scale: u32) {
        let run = run_command(self.pgbench(&["-i", "-q", "-s", &scale.to_string()]));
        run.assert_success();
    }

    fn psql_command(&self) -> Command {
        let mut cmd = self.client("psql");
        cmd.args(self.connection())
            .args(["-d", USER, "-X", "-q", "-A", "-t", "-F", "|"])
            .args(["-v", "ON_ERROR_STOP=1"]);
        cmd
    }

    /// Runs `sql` through `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = self.psql_command();
        cmd.arg("-c").arg(sql);
        let run = run_command(cmd);
        if !run.status.success() {
            panic!("psql -c {sql:?} failed\n{}", run.transcript());
        }
        run.stdout
    }

    /// `pg_stat_wal` now.
    pub fn wal(&self) -> WalStats {
        let out = self.psql(
            "SELECT extract(epoch from clock_timestamp()), wal_sync, wal_sync_time, \
             wal_write, wal_write_time FROM pg_stat_wal",
        );
        let f: Vec<&str> = out.trim().split('|').collect();
        let num = |i: usize| -> f64 {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("pg_stat_wal field {i} is not a number: {out:?}"))
        };
        WalStats {
            at: num(0),
            syncs: num(1) as i64,
            sync_ms: num(2),
            writes: num(3) as i64,
            write_ms: num(4),
        }
    }

    /// Starts sampling, every 10 ms for `seconds`, the wait event of every client
    /// backend whose `application_name` is `application` (`pgbench` sets its own), from a
    /// session of its own inside the server: one connection for the whole run, not a
    /// client per sample. `pg_stat_clear_snapshot()` makes each sample fresh, since
    /// `pg_stat_activity` is otherwise read once per transaction.
    ///
    /// The sampling backend runs under `SCHED_FIFO`, so each sample is taken when its
    /// timer fires. As a normal task on CPUs the load keeps busy, it would mostly get a
    /// CPU when some task blocked, i.e. just as a backend began to wait for its client:
    /// on 2 CPUs under pgbench that read `ClientRead` 3 to 12 points above the backends'
    /// own `epoll_wait` time on the client's wait set (bpftrace, same runs).
    pub fn sample_activity(&self, application: &str, seconds: f64) -> Sampler {
        assert!(
            application
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "application name {application:?} would need quoting"
        );
        let sql = format!(
            r#"
CREATE FUNCTION pg_temp.sample_waits(seconds double precision, every double precision)
RETURNS TABLE(t double precision, pid int, started double precision, wtype text, wevent text)
LANGUAGE plpgsql AS $$
DECLARE
  stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
  WHILE clock_timestamp() < stop LOOP
    PERFORM pg_stat_clear_snapshot();
    RETURN QUERY SELECT extract(epoch from clock_timestamp())::double precision, a.pid,
        extract(epoch from a.backend_start)::double precision,
        a.wait_event_type::text, a.wait_event::text
      FROM pg_stat_activity a
      WHERE a.backend_type = 'client backend' AND a.application_name = '{application}'
        AND a.pid <> pg_backend_pid();
    PERFORM pg_sleep(every);
  END LOOP;
END $$;
SELECT * FROM pg_temp.sample_waits({seconds}, 0.01);
"#
        );
        let file = self.dir.path().join("sampler.sql");
        std::fs::write(&file, sql).expect("write the sampler's SQL");
        let mut cmd = self.psql_command();
        cmd.arg("-f")
            .arg(&file)
            .env("PGAPPNAME", SAMPLER_APPLICATION);
        let running = Running::spawn(cmd);
        self.make_sampler_realtime();
        Sampler { running }
    }

    /// Finds the sampler's backend (by its application name) and gives it `SCHED_FIFO`
    /// priority 1: a few hundred microseconds of work every 10 ms, far below the
    /// kernel's real-time throttling.
    fn make_sampler_realtime(&self) {
        let started = Instant::now();
        let pid = loop {
            let out = self.psql(&format!(
                "SELECT pid FROM pg_stat_activity WHERE application_name = \
                 '{SAMPLER_APPLICATION}'"
            ));
            if let Some(pid) = out.lines().find_map(|l| l.trim().parse::<i32>().ok()) {
                break pid;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the sampler's session did not appear in pg_stat_activity within 10 s"
            );
            thread::sleep(Duration::from_millis(20));
        };
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: a valid sched_param; the pid is a server process we started (as root).
        let rc = unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) };
        assert_eq!(
            rc,
            0,
            "sched_setscheduler(SCHED_FIFO) on the sampler's backend {pid}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Polls until a `SELECT 1` succeeds; panics with the log if the server exits or
    /// takes longer than [`START_TIMEOUT`].
    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .postmaster
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.postmaster = None;
                panic!(
                    "postgres exited ({status}) before accepting connections; its log:\n{}",
                    self.log()
                );
            }
            let listening = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if listening {
                let mut cmd = self.psql_command();
                cmd.args(["-c", "SELECT 1"]);
                let run: Run = run_command(cmd);
                if run.status.success() {
                    return;
                }
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "postgres did not accept connections within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `setpriv` running what follows as user postgres (with its groups), from `cwd`.
fn as_postgres(cwd: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--init-groups",
        "--",
    ])
    .current_dir(cwd)
    .env("LC_ALL", "C");
    cmd
}

impl Drop for Postgres {
    /// Fast shutdown (SIGINT to the postmaster, by pid), then SIGKILL after
    /// [`STOP_TIMEOUT`]; its children exit when they see the postmaster gone. The
    /// temporary directory goes after.
    fn drop(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions; the child is unreaped, so its
        // pid is still ours.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "postgres (pid {}) did not stop within {STOP_TIMEOUT:?} of SIGINT; killing it",
            child.id()
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
