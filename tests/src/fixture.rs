//! Fixtures as running processes, and the measurements they write when they finish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{fixture, temp_dir};

/// A fixture process started by a test. It is stopped (SIGTERM, then SIGKILL)
/// when dropped, so a failing test leaves nothing burning CPU.
pub struct FixtureProcess {
    child: Child,
    name: String,
    result: PathBuf,
    _dir: tempfile::TempDir,
}

impl FixtureProcess {
    /// Starts fixture `name` with `args` followed by the path of a result file
    /// the fixture writes its measurements to.
    pub fn spawn(name: &str, args: &[&str]) -> FixtureProcess {
        let dir = temp_dir();
        let result = dir.path().join("result.txt");
        let child = Command::new(fixture(name))
            .args(args)
            .arg(&result)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start fixture {name}: {e}"));
        FixtureProcess {
            child,
            name: name.to_owned(),
            result,
            _dir: dir,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to stop now (SIGTERM), waits, and returns its measurements.
    pub fn stop(mut self) -> FixtureResult {
        signal(self.child.id(), libc::SIGTERM);
        self.wait_result(Duration::from_secs(20))
    }

    /// Waits up to `timeout` for it to finish by itself and returns its
    /// measurements.
    pub fn wait_result(&mut self, timeout: Duration) -> FixtureResult {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for fixture") {
                break s;
            }
            assert!(
                start.elapsed() < timeout,
                "fixture {} did not finish within {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "fixture {} failed: {status}", self.name);
        FixtureResult::read(&self.result)
    }
}

impl Drop for FixtureProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A fixture's `key=value` measurements (one line, space-separated).
#[derive(Debug, Clone)]
pub struct FixtureResult(pub HashMap<String, String>);

impl FixtureResult {
    /// Reads and parses a result file.
    pub fn read(path: &Path) -> FixtureResult {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("fixture result {} unreadable: {e}", path.display()));
        FixtureResult::parse(&text)
    }

    /// Parses `k=v k=v ...`.
    pub fn parse(text: &str) -> FixtureResult {
        FixtureResult(
            text.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("fixture result has no {key}: {:?}", self.0))
    }

    /// The value of `key` as a number.
    pub fn u64(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|e| panic!("fixture result {key} is not a number: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_results_parse() {
        let r = FixtureResult::parse("alpha_ns=7 beta_ns=3\n");
        assert_eq!(r.u64("alpha_ns") + r.u64("beta_ns"), 10);
    }
}
