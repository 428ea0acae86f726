//! A throwaway redis-server from Debian's packages, for tests that profile a real
//! request/response server against the figures it keeps about itself.
//!
//! [`Redis::start`] runs `redis-server` on 127.0.0.1 and a free port, without persistence
//! and with its working directory in a fresh temporary directory, and waits until it
//! answers `PING`. Load comes from `redis-benchmark` with a bounded request count; the
//! server's own figures come from `INFO stats` (`total_reads_processed`,
//! `total_writes_processed`, `total_commands_processed`). Dropping it stops the server by
//! its pid (SIGTERM, then SIGKILL after a bound).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{free_port, run_command};

/// Where Debian installs the server (`redis-server`) and its tools (`redis-tools`).
const SERVER: &str = "/usr/bin/redis-server";
const CLI: &str = "/usr/bin/redis-cli";
const BENCHMARK: &str = "/usr/bin/redis-benchmark";
/// How long the server may take to answer, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why redis cannot run here, or `None` when it can.
pub fn redis_missing() -> Option<String> {
    for (program, package) in [
        (SERVER, "redis-server"),
        (CLI, "redis-tools"),
        (BENCHMARK, "redis-tools"),
    ] {
        if !Path::new(program).is_file() {
            return Some(format!(
                "{program} is not installed; `cargo xtask setup --for-tests` installs Debian's \
                 {package}"
            ));
        }
    }
    None
}

/// A running redis-server; stopped and removed when dropped.
pub struct Redis {
    server: Option<Child>,
    port: u16,
    /// Its working directory and log.
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts the server and waits until it answers. `Err` says why it cannot run here;
    /// a server that should start and does not panics with its log.
    pub fn start() -> Result<Redis, String> {
        if let Some(why) = redis_missing() {
            return Err(why);
        }
        let dir = tempfile::Builder::new()
            .prefix("profiler-it-redis-")
            .tempdir()
            .expect("create temp dir");
        let port = free_port();
        let log = dir.path().join("redis.log");
        let log_file = || File::create(&log).expect("create the server's log");
        let mut cmd = Command::new(SERVER);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file())
            .stderr(log_file());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SERVER}: {e}"));
        let mut redis = Redis {
            server: Some(child),
            port,
            dir,
        };
        redis.wait_until_ready();
        Ok(redis)
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.server.as_ref().expect("server running").id()
    }

    /// `INFO stats` as key/value pairs.
    pub fn stats(&self) -> HashMap<String, u64> {
        let mut cmd = Command::new(CLI);
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "INFO",
            "stats",
        ]);
        let run = run_command(cmd);
        run.assert_success();
        run.stdout
            .lines()
            .filter_map(|line| {
                let (key, value) = line.trim().split_once(':')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// One figure of `INFO stats`, failing with all of them when missing.
    pub fn stat(stats: &HashMap<String, u64>, key: &str) -> u64 {
        *stats
            .get(key)
            .unwrap_or_else(|| panic!("redis's INFO stats has no {key}: {stats:?}"))
    }

    /// Runs `redis-benchmark -t get -n requests -c clients -P pipeline` and returns its
    /// output; panics with it if it does not run to the end.
    pub fn benchmark(&self, requests: u64, clients: u32, pipeline: u32) -> String {
        let mut cmd = Command::new(BENCHMARK);
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", "get", "-q"])
            .arg("-n")
            .arg(requests.to_string())
            .arg("-c")
            .arg(clients.to_string())
            .arg("-P")
            .arg(pipeline.to_string());
        let run = run_command(cmd);
        run.assert_success();
        run.stdout
    }

    /// The server's log, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.server.as_mut().and_then(|c| c.try_wait().ok()?) {
                panic!("redis-server exited at start ({status}):\n{}", self.log());
            }
            let pong = Command::new(CLI)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "PING"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"PONG"));
            if pong {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // SAFETY: a signal to our own child, which we have not reaped.
        unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}
