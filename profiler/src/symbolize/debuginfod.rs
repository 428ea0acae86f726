//! Fetches debug files by build ID from the debuginfod servers `DEBUGINFOD_URLS` names
//! (`GET <url>/buildid/<id>/debuginfo`), into the cache elfutils' client uses, with a
//! timeout, and keeps what it did for the run's summary.
//!
//! A server that times out or cannot be reached is not asked again in the run: a whole host
//! maps hundreds of files, and each would wait the whole timeout.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use debuginfod::{BuildId, Client, HttpClient, HttpClientError, Readable};

/// How long one request may take when `DEBUGINFOD_TIMEOUT` does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest debug file taken (a browser's is about 1 GiB).
const MAX_BYTES: u64 = 2 << 30;

/// A debuginfod client with a file cache.
pub struct Debuginfod {
    client: Client,
    urls: String,
    cache: PathBuf,
    timeout: Duration,
    state: Mutex<Activity>,
}

impl fmt::Debug for Debuginfod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Debuginfod")
            .field("cache", &self.cache)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a client is made from, to make the same client in another process (the
/// symbolization workers).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DebuginfodSettings {
    /// The servers, space-separated.
    pub urls: String,
    /// The cache directory.
    pub cache: PathBuf,
    /// How long one request may take.
    pub timeout: Duration,
}

/// What the client did in the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    /// Files downloaded, and their bytes.
    pub fetched: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files found in the cache.
    pub cached: u64,
    /// Build IDs no server had.
    pub missing: u64,
    /// Why the servers stopped being asked, if they did.
    pub gave_up: Option<String>,
    /// Time spent asking.
    pub elapsed: Duration,
}

impl Activity {
    /// Adds what another client (a worker's) did.
    pub fn merge(&mut self, other: &Activity) {
        self.fetched += other.fetched;
        self.bytes += other.bytes;
        self.cached += other.cached;
        self.missing += other.missing;
        self.elapsed += other.elapsed;
        if self.gave_up.is_none() {
            self.gave_up.clone_from(&other.gave_up);
        }
    }

    /// One line for the run's summary, or `None` when nothing was asked.
    pub fn summary(&self, urls: &str) -> Option<String> {
        if self.fetched + self.cached + self.missing == 0 && self.gave_up.is_none() {
            return None;
        }
        let mut line = format!(
            "debuginfod ({urls}): fetched debug info of {} file{} ({:.1} MiB) in {:.1?}, {} from the cache, {} not on the server",
            self.fetched,
            if self.fetched == 1 { "" } else { "s" },
            self.bytes as f64 / f64::from(1 << 20),
            self.elapsed,
            self.cached,
            self.missing,
        );
        if let Some(why) = &self.gave_up {
            line.push_str(&format!("; stopped asking: {why}"));
        }
        Some(line)
    }
}

impl Debuginfod {
    /// A client for the servers of `DEBUGINFOD_URLS`, or `None` when it names none (or
    /// cannot be parsed, which is logged).
    pub fn from_env() -> Option<Self> {
        let urls = std::env::var("DEBUGINFOD_URLS").ok()?;
        let timeout = std::env::var("DEBUGINFOD_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        Self::new(&urls, cache_dir()?, timeout)
    }

    /// A client for the space-separated server `urls`, caching under `cache`.
    pub fn new(urls: &str, cache: PathBuf, timeout: Duration) -> Option<Self> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let client = match Client::builder()
            .http_client(Ureq(agent))
            .build(urls.split_ascii_whitespace())
        {
            Ok(client) => client?,
            Err(err) => {
                crate::sys::console::eprint_line(&format!(
                    "profiler: DEBUGINFOD_URLS is not a list of URLs ({err:#}); debuginfod is not used"
                ));
                return None;
            }
        };
        Some(Self {
            client,
            urls: urls.split_ascii_whitespace().collect::<Vec<_>>().join(" "),
            cache,
            timeout,
            state: Mutex::new(Activity::default()),
        })
    }

    /// What this client is made from, for [`Self::from_settings`] in another process.
    pub fn settings(&self) -> DebuginfodSettings {
        DebuginfodSettings {
            urls: self.urls.clone(),
            cache: self.cache.clone(),
            timeout: self.timeout,
        }
    }

    /// The client `settings` describe.
    pub fn from_settings(settings: &DebuginfodSettings) -> Option<Self> {
        Self::new(&settings.urls, settings.cache.clone(), settings.timeout)
    }

    /// Adds what another process's client did to this one's activity.
    pub fn merge_activity(&self, other: &Activity) {
        if let Ok(mut state) = self.state.lock() {
            state.merge(other);
        }
    }

    /// The servers, space-separated.
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// What the client did so far.
    pub fn activity(&self) -> Activity {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The debug file of `build_id`: from the cache, else downloaded into it. `None` when
    /// no server has it, or the servers were given up on.
    pub fn fetch(&self, build_id: &[u8]) -> Option<PathBuf> {
        let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.cache.join(&hex).join("debuginfo");
        let mut state = self.state.lock().ok()?;
        if path.is_file() {
            state.cached += 1;
            return Some(path);
        }
        if state.gave_up.is_some() {
            return None;
        }
        let started = Instant::now();
        let result = self.download(&BuildId::raw(build_id), &path);
        state.elapsed += started.elapsed();
        match result {
            Ok(Some(bytes)) => {
                state.fetched += 1;
                state.bytes += bytes;
                log::debug!("debuginfod: fetched {hex} ({bytes} bytes)");
                Some(path)
            }
            Ok(None) => {
                state.missing += 1;
                None
            }
            Err(err) => {
                log::debug!("debuginfod: {hex}: {err:#}");
                state.gave_up = Some(format!("{err:#}"));
                None
            }
        }
    }

    /// Downloads the debug file of `build_id` to `path`; its size, or `None` when no server
    /// has it.
    fn download(&self, build_id: &BuildId<'_>, path: &Path) -> anyhow::Result<Option<u64>> {
        let Some(mut response) = self.client.fetch_debug_info(build_id)? else {
            return Ok(None);
        };
        let dir = path.parent().expect("a cache path has a directory");
        std::fs::create_dir_all(dir)?;
        // Written beside its place and renamed into it: another run, or gdb, never reads
        // half a file.
        let partial = dir.join(format!(".debuginfo.{}.part", std::process::id()));
        let written = (|| {
            let mut out = std::fs::File::create(&partial)?;
            let bytes = std::io::copy(&mut (&mut response.data).take(MAX_BYTES), &mut out)?;
            out.flush()?;
            std::fs::rename(&partial, path)?;
            anyhow::Ok(bytes)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        Ok(Some(written?))
    }
}

/// The cache directory elfutils' client uses: `$DEBUGINFOD_CACHE_PATH`, else
/// `$XDG_CACHE_HOME/debuginfod_client`, else `$HOME/.cache/debuginfod_client`.
fn cache_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var("DEBUGINFOD_CACHE_PATH")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("debuginfod_client")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache/debuginfod_client")))
}

/// The HTTP client the debuginfod client is given: ureq, with the run's timeout.
#[derive(Debug)]
struct Ureq(ureq::Agent);

/// A response body, for the debuginfod client to read.
struct Body(ureq::BodyReader<'static>);

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Body")
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl HttpClient for Ureq {
    fn get(&self, url: &str) -> Result<Box<dyn Readable>, HttpClientError> {
        let response = self
            .0
            .get(url)
            .call()
            .map_err(|err| HttpClientError::Other(Box::new(err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(HttpClientError::StatusCode(status));
        }
        let body = response
            .into_body()
            .into_with_config()
            .limit(MAX_BYTES)
            .reader();
        Ok(Box::new(Body(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-request HTTP server on loopback answering `status` with `body`; returns its
    /// URL and the request line it got.
    fn serve_once(
        status: &'static str,
        body: &'static [u8],
    ) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(body).unwrap();
            String::from_utf8_lossy(&request)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        (url, thread)
    }

    #[test]
    fn fetches_into_the_cache_and_reads_it_back() {
        let cache = tempfile::tempdir().unwrap();
        let (url, server) = serve_once("200 OK", b"the debug file");
        let client =
            Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
        let path = client.fetch(&[0xab, 0xcd]).unwrap();
        assert_eq!(
            server.join().unwrap(),
            "GET /buildid/abcd/debuginfo HTTP/1.1"
        );
        assert_eq!(path, cache.path().join("abcd/debuginfo"));
        assert_eq!(std::fs::read(&path).unwrap(), b"the debug file");
        // Asked again, the cache answers: there is no server any more.
        assert_eq!(client.fetch(&[0xab, 0xcd]), Some(path));
        let activity = client.activity();
        assert_eq!(
            (activity.fetched, activity.bytes, activity.cached),
            (1, 14, 1)
        );
        assert!(
            activity
                .summary(&url)
                .unwrap()
                .contains("fetched debug info of 1 file")
        );
    }

    #[test]
    fn a_missing_build_id_is_counted_and_an_unreachable_server_given_up() {
        let cache = tempfile::tempdir().unwrap();
        let (url, server) = serve_once("404 Not Found", b"");
        let client =
            Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
        assert_eq!(client.fetch(&[1, 2, 3, 4]), None);
        server.join().unwrap();
        assert_eq!(client.activity().missing, 1);
        assert!(client.activity().gave_up.is_none());
        // Nothing listens there now.
        assert_eq!(client.fetch(&[5, 6, 7, 8]), None);
        assert!(client.activity().gave_up.is_some());
        assert!(!cache.path().join("05060708").exists());
    }

    #[test]
    fn without_servers_there_is_no_client() {
        assert!(Debuginfod::new("  ", PathBuf::from("/tmp"), DEFAULT_TIMEOUT).is_none());
        assert_eq!(Activity::default().summary("x"), None);
    }
}
