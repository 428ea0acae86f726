//! A small headless-Chromium driver over the DevTools protocol, for the report's browser test.
//!
//! Chromium is started with `--remote-debugging-pipe`: it reads commands from fd 3 and writes
//! replies and events to fd 4, each a JSON message ended by a NUL byte. That needs neither
//! a WebSocket client nor Node: only Chromium itself (Debian's `chromium`, which
//! `cargo xtask setup --for-tests` installs) and this file. Clicks and typing are real input
//! events (`Input.dispatchMouseEvent`, `Input.insertText`), so they go through the page's
//! hit testing and event handlers as a user's would.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::json::{self, Json, quote};

/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Chromium may be: `$CHROMIUM`, Debian's package, then other common names on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        // A wrong $CHROMIUM is a mistake to report, not a reason to use another browser.
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let mut candidates = vec![PathBuf::from("/usr/bin/chromium")];
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            for name in [
                "chromium",
                "chromium-browser",
                "google-chrome",
                "google-chrome-stable",
            ] {
                candidates.push(dir.join(name));
            }
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    commands: File,
    replies: Receiver<Json>,
    next_id: u64,
    session: String,
    /// Events received while waiting for replies, oldest first.
    pub events: Vec<Json>,
    _profile_dir: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors on success, which we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium headless, without network features or a sandbox (tests run as root),
    /// with a fresh profile, and opens a blank page of `width` x `height` CSS pixels.
    pub fn launch(chromium: &Path, width: u32, height: u32) -> Browser {
        let profile_dir = tempfile::Builder::new()
            .prefix("report-chromium-")
            .tempdir()
            .expect("create a Chromium profile directory");
        let (to_browser_read, to_browser_write) = pipe();
        let (from_browser_read, from_browser_write) = pipe();
        let (child_in, child_out) = (to_browser_read.as_raw_fd(), from_browser_write.as_raw_fd());
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Chromium logs harmless D-Bus complaints on stderr in containers.
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends above 9 first, in case either already is fd 3 or 4; dup2
                // then gives 3 and 4 without close-on-exec.
                let input = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let output = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if input < 0 || output < 0 || libc::dup2(input, 3) < 0 || libc::dup2(output, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        // The child has its copies; ours would keep the pipes open after it exits.
        drop(to_browser_read);
        drop(from_browser_write);

        let (tx, replies) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(File::from(from_browser_read));
            let mut message = Vec::new();
            loop {
                message.clear();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                let text = String::from_utf8_lossy(&message);
                match json::parse(&text) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("unparsable DevTools message ({e}): {text:.200}"),
                }
            }
        });

        let mut browser = Browser {
            child,
            commands: File::from(to_browser_write),
            replies,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            _profile_dir: profile_dir,
        };
        let target = browser.call("Target.createTarget", r#"{"url":"about:blank"}"#);
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            &format!(r#"{{"targetId":{},"flatten":true}}"#, quote(&target_id)),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Network.enable"] {
            browser.call(domain, "{}");
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            &format!(
                r#"{{"width":{width},"height":{height},"deviceScaleFactor":1,"mobile":false}}"#
            ),
        );
        browser
    }

    /// Sends a command (to the page once one is attached) and waits for its result; panics
    /// with the protocol's error message if it fails.
    pub fn call(&mut self, method: &str, params: &str) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        let session = if self.session.is_empty() {
            String::new()
        } else {
            format!(r#","sessionId":{}"#, quote(&self.session))
        };
        let message = format!(
            r#"{{"id":{id},"method":{},"params":{params}{session}}}"#,
            quote(method)
        );
        self.commands
            .write_all(message.as_bytes())
            .and_then(|()| self.commands.write_all(b"\0"))
            .unwrap_or_else(|e| panic!("cannot send {method} to Chromium: {e}"));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) if reply["id"].as_f64() == Some(id as f64) => {
                    if reply["error"] != Json::Null {
                        panic!("{method} failed: {:?}", reply["error"]);
                    }
                    return reply["result"].clone();
                }
                Ok(event) => self.events.push(event),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("Chromium did not answer {method} within {COMMAND_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("Chromium exited during {method}"),
            }
        }
    }

    /// Opens `url` and waits until `ready` (a JavaScript expression) is true.
    pub fn open(&mut self, url: &str, ready: &str) {
        self.call("Page.navigate", &format!(r#"{{"url":{}}}"#, quote(url)));
        self.wait_for(ready, Duration::from_secs(20));
    }

    /// Waits until the JavaScript expression `condition` is true; panics after `timeout`.
    pub fn wait_for(&mut self, condition: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let ok = self
                .try_eval(&format!("!!({condition})"))
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "the page did not get to `{condition}` within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value (promises are
    /// awaited); `Err` carries the exception's text.
    pub fn try_eval(&mut self, expression: &str) -> Result<Json, String> {
        let result = self.call(
            "Runtime.evaluate",
            &format!(
                r#"{{"expression":{},"returnByValue":true,"awaitPromise":true}}"#,
                quote(expression)
            ),
        );
        let exception = &result["exceptionDetails"];
        if exception != &Json::Null {
            let text = exception["exception"]["description"]
                .as_str()
                .or(exception["text"].as_str())
                .unwrap_or("exception");
            return Err(text.to_owned());
        }
        Ok(result["result"]["value"].clone())
    }

    /// [`Browser::try_eval`], panicking on an exception.
    pub fn eval(&mut self, expression: &str) -> Json {
        self.try_eval(expression)
            .unwrap_or_else(|e| panic!("`{expression}` threw: {e}"))
    }

    /// The center of the first element matching `selector`, in viewport pixels, after
    /// scrolling it into view.
    pub fn center_of(&mut self, selector: &str) -> (f64, f64) {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; \
             e.scrollIntoView({{block: 'center', inline: 'center'}}); \
             const r = e.getBoundingClientRect(); \
             return [r.left + Math.min(r.width / 2, 40), r.top + r.height / 2]; }})()",
            quote(selector)
        );
        let v = self.eval(&js);
        match (v[0].as_f64(), v[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => panic!("no element matches {selector}"),
        }
    }

    /// Clicks (left button: move, press, release) at viewport point `(x, y)`.
    pub fn click_at(&mut self, x: f64, y: f64) {
        for (kind, buttons) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)] {
            self.call(
                "Input.dispatchMouseEvent",
                &format!(
                    r#"{{"type":"{kind}","x":{x},"y":{y},"button":"left","buttons":{buttons},"clickCount":1}}"#
                ),
            );
        }
    }

    /// Clicks the first element matching `selector`.
    pub fn click(&mut self, selector: &str) {
        let (x, y) = self.center_of(selector);
        self.click_at(x, y);
    }

    /// Moves the mouse to the first element matching `selector` (for hover).
    pub fn hover(&mut self, selector: &str) {
        let (x, y) = self.center_of(selector);
        self.call(
            "Input.dispatchMouseEvent",
            &format!(r#"{{"type":"mouseMoved","x":{x},"y":{y}}}"#),
        );
    }

    /// Types `text` into the focused element, as an input method would.
    pub fn type_text(&mut self, text: &str) {
        self.call(
            "Input.insertText",
            &format!(r#"{{"text":{}}}"#, quote(text)),
        );
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", r#"{"format":"png"}"#);
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64_decode(data).expect("screenshot data is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot directory");
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The URLs the page requested, from the Network domain's events so far.
    pub fn requested_urls(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"].as_str() == Some("Network.requestWillBeSent"))
            .filter_map(|e| e["params"]["request"]["url"].as_str())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask nicely, then make sure: a leftover browser would outlive the test.
        let _ = self
            .commands
            .write_all(b"{\"id\":999999,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes standard base64 (with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|&b| b != b'=' && !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = chunk.len();
        if n < 2 {
            return None;
        }
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_numbers() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aA").unwrap(), b"h");
        assert!(base64_decode("a*").is_none());
    }
}
