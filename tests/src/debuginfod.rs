//! A real debuginfod server and the build tools around it, for the tests that name frames
//! from debug information fetched or split off.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `program args` (a compiler or binutils), failing the test if it fails.
pub fn tool(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (cargo xtask setup --for-tests): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A debuginfod server serving a directory, on a free port, stopped when dropped.
pub struct Server {
    child: Child,
    /// Its URL, for `DEBUGINFOD_URLS`.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `debuginfod` serving `dir` (its database at `db`), once it serves `build_id`:
/// it answers only after it has scanned the directory.
pub fn debuginfod(dir: &Path, db: &Path, build_id: &str) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("debuginfod")
        .args(["-F", "-p", &port.to_string(), "-d"])
        .arg(db)
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("debuginfod (cargo xtask setup --for-tests installs it)");
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    loop {
        let status = http_status(port, &format!("/buildid/{build_id}/debuginfo"));
        if status.as_deref() == Some("200") {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "debuginfod did not serve {build_id} within a minute ({status:?})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The status code a GET of `path` on the loopback port gets, if it answers.
fn http_status(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0; 12];
    stream.read_exact(&mut head).ok()?;
    // `HTTP/1.x NNN`
    Some(String::from_utf8_lossy(&head[9..12]).into_owned())
}
