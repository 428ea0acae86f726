//! A throwaway nginx from Debian's packages, for tests that profile a real pre-fork server
//! against the figures it logs about itself.
//!
//! [`Nginx::start`] writes a configuration into a fresh temporary directory (document
//! root, logs, pid file and temp paths all inside it), and runs `nginx -g 'daemon off;'`
//! with a master process, so the child's pid is the master's and its workers are its
//! children. It listens on 127.0.0.1 only, on a free port. Load comes from `ab` with a
//! bounded request count; the server's own figures come from its access log, one line
//! per request: the worker's pid, the status, the body bytes sent and the request
//! length. Dropping it stops the master by its pid (SIGQUIT, then SIGKILL after a bound)
//! and removes the directory.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Run, free_port, run_command};

/// Where Debian installs the server, and the load generator (`apache2-utils`).
const NGINX: &str = "/usr/sbin/nginx";
const AB: &str = "/usr/bin/ab";
/// How long the server may take to accept connections with all its workers, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What [`Nginx::start`] configures.
#[derive(Debug, Clone, Copy)]
pub struct NginxConfig {
    /// `worker_processes`.
    pub workers: u32,
    /// `sendfile on` (file bodies sent by `sendfile`) or `off` (read, then written).
    pub sendfile: bool,
}

/// One access-log line: what a worker says it did for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// `$pid`: the worker that served it.
    pub pid: u32,
    /// `$status`.
    pub status: u16,
    /// `$body_bytes_sent`: the response body's bytes (headers not counted).
    pub body_bytes_sent: u64,
    /// `$bytes_sent`: everything sent to the client, headers included.
    pub bytes_sent: u64,
    /// `$request_length`: the request's bytes (request line, headers and body).
    pub request_length: u64,
    /// `$request_uri`.
    pub uri: String,
}

/// What `ab` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbResult {
    /// `Complete requests`.
    pub complete: u64,
    /// `Failed requests`.
    pub failed: u64,
}

/// A running nginx; stopped and removed when dropped.
pub struct Nginx {
    master: Option<Child>,
    port: u16,
    config: NginxConfig,
    /// Holds `html/` (the document root), `logs/`, `temp/` and `nginx.conf`.
    dir: tempfile::TempDir,
}

/// Why nginx cannot run here, or `None` when it can.
pub fn nginx_missing() -> Option<String> {
    for (program, package) in [(NGINX, "nginx"), (AB, "apache2-utils")] {
        if !Path::new(program).is_file() {
            return Some(format!(
                "{program} is not installed; `cargo xtask setup --for-tests` installs Debian's \
                 {package}"
            ));
        }
    }
    if !crate::is_root() {
        return Some("nginx's master must start as root to drop its workers to nobody".into());
    }
    None
}

impl Nginx {
    /// Writes the configuration and starts the server, waiting until it accepts
    /// connections and all its workers run. `Err` says why it cannot run here (not
    /// installed, not root); a server that should start and does not panics with its log.
    pub fn start(config: NginxConfig) -> Result<Nginx, String> {
        if let Some(why) = nginx_missing() {
            return Err(why);
        }
        let dir = tempfile::Builder::new()
            .prefix("profiler-it-nginx-")
            .tempdir()
            .expect("create temp dir");
        // Workers run as nobody and must reach the document root through this directory.
        crate::set_mode(dir.path(), 0o755);
        for sub in ["html", "logs", "temp"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create an nginx directory");
            crate::set_mode(&dir.path().join(sub), 0o755);
        }
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config_text(dir.path(), port, config)).expect("write nginx.conf");

        let log = dir.path().join("logs/stderr.log");
        let log_file = || File::create(&log).expect("create the server's stderr log");
        let mut cmd = Command::new(NGINX);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            // Not the package's /var/log/nginx/error.log, even before the config is read.
            .arg("-e")
            .arg(dir.path().join("logs/error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log_file())
            .stderr(log_file());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {NGINX}: {e}"));
        let mut nginx = Nginx {
            master: Some(child),
            port,
            config,
            dir,
        };
        nginx.wait_until_ready();
        Ok(nginx)
    }

    /// The master's pid (every worker is its child).
    pub fn pid(&self) -> u32 {
        self.master.as_ref().expect("server running").id()
    }

    /// The workers' pids, sorted: the master's children.
    pub fn workers(&self) -> Vec<u32> {
        children(self.pid())
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Puts a file into the document root, served at `/{name}`.
    pub fn put_file(&self, name: &str, contents: &[u8]) {
        let path = self.dir.path().join("html").join(name);
        std::fs::write(&path, contents).expect("write a file into nginx's document root");
        crate::set_mode(&path, 0o644);
    }

    /// Runs `ab -n requests -c concurrency` (with keep-alive if asked) against `/{name}`
    /// and returns its counts; panics with its output if it does not run to the end.
    pub fn ab(&self, name: &str, requests: u64, concurrency: u32, keep_alive: bool) -> AbResult {
        let mut cmd = Command::new(AB);
        cmd.arg("-q")
            .args(["-s", "30"])
            .arg("-n")
            .arg(requests.to_string())
            .arg("-c")
            .arg(concurrency.to_string());
        if keep_alive {
            cmd.arg("-k");
        }
        cmd.arg(format!("http://127.0.0.1:{}/{name}", self.port));
        let run = run_command(cmd);
        run.assert_success();
        parse_ab(&run)
    }

    /// Every line of the access log so far, in the order written.
    pub fn access_log(&self) -> Vec<AccessLine> {
        let path = self.dir.path().join("logs/access.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|line| {
                parse_access_line(line)
                    .unwrap_or_else(|| panic!("access log line not as configured: {line:?}"))
            })
            .collect()
    }

    /// The server's stderr and error log, for a failure message.
    pub fn logs(&self) -> String {
        ["logs/stderr.log", "logs/error.log"]
            .iter()
            .map(|p| std::fs::read_to_string(self.dir.path().join(p)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.master.as_mut().and_then(|c| c.try_wait().ok()?) {
                panic!("nginx exited at start ({status}):\n{}", self.logs());
            }
            let listening = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if listening && self.workers().len() == self.config.workers as usize {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not accept connections with {} workers within {START_TIMEOUT:?}:\n{}",
                self.config.workers,
                self.logs()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut master) = self.master.take() else {
            return;
        };
        // SIGQUIT: a graceful stop, workers finish what they serve and exit first.
        // SAFETY: a signal to our own child, which we have not reaped.
        unsafe { libc::kill(master.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = master.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let workers = children(master.id());
        let _ = master.kill();
        let _ = master.wait();
        for pid in workers {
            // SAFETY: plain signal; orphaned workers of the killed master.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// The configuration: everything under `dir`, one server on 127.0.0.1:`port`.
fn config_text(dir: &Path, port: u16, config: NginxConfig) -> String {
    let dir = dir.display();
    let sendfile = if config.sendfile { "on" } else { "off" };
    format!(
        "worker_processes {workers};
pid {dir}/logs/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format counts '$pid $status $body_bytes_sent $bytes_sent $request_length $request_uri';
    access_log {dir}/logs/access.log counts;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    sendfile {sendfile};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/html;
    }}
}}
",
        workers = config.workers,
    )
}

/// One line in the `counts` format, or `None` if it is not one.
fn parse_access_line(line: &str) -> Option<AccessLine> {
    let mut f = line.split(' ');
    Some(AccessLine {
        pid: f.next()?.parse().ok()?,
        status: f.next()?.parse().ok()?,
        body_bytes_sent: f.next()?.parse().ok()?,
        bytes_sent: f.next()?.parse().ok()?,
        request_length: f.next()?.parse().ok()?,
        uri: f.next()?.to_owned(),
    })
}

/// `ab`'s complete and failed request counts from its report.
fn parse_ab(run: &Run) -> AbResult {
    let field = |name: &str| -> u64 {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} line in ab's report:\n{}", run.stdout))
    };
    AbResult {
        complete: field("Complete requests:"),
        failed: field("Failed requests:"),
    }
}

/// The children of `pid`'s threads, sorted, from `/proc/PID/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_access_line("4242 200 65536 65776 79 /body.bin"),
            Some(AccessLine {
                pid: 4242,
                status: 200,
                body_bytes_sent: 65536,
                bytes_sent: 65776,
                request_length: 79,
                uri: "/body.bin".into(),
            })
        );
        assert_eq!(parse_access_line("127.0.0.1 - - [x]"), None);
    }
}
