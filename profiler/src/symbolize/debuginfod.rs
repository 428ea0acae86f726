//! Fetches debug files by build ID from the debuginfod servers `DEBUGINFOD_URLS` names
//! (`GET <url>/buildid/<id>/debuginfo`), into a cache laid out as elfutils' client lays it
//! out, and keeps what it did for the run's summary.
//!
//! What a server sends is not trusted: a body over [`MAX_BYTES`] is refused (by its
//! `Content-Length`, and counted while it streams), and a file is kept only when it carries
//! the build ID asked for. All requests of a run share one budget of [`RUN_BUDGET`], an
//! absolute deadline that crosses into the symbolization workers with the settings; a
//! request's own timeout is cut to what remains of it. A server that fails or cannot be
//! reached is not asked again in the run. Where the cache is, and how it is written without
//! following anything another user planted, is [`cache`]'s job.

mod cache;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use debuginfod::{BuildId, Client, HttpClient, HttpClientError, Readable};

use self::cache::{Cache, Stored};

/// How long one request may take when `DEBUGINFOD_TIMEOUT` does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The time all of a run's requests may take together, from the first.
pub const RUN_BUDGET: Duration = Duration::from_secs(10);
/// The largest debug file taken (a browser's is about 1 GiB); `DEBUGINFOD_MAXSIZE` may
/// lower it.
pub const MAX_BYTES: u64 = 2 << 30;

/// A debuginfod client with a file cache.
pub struct Debuginfod {
    client: Client,
    urls: String,
    cache: Cache,
    timeout: Duration,
    max_bytes: u64,
    /// The run's deadline in milliseconds since the epoch, set by the first request (or
    /// [`Self::settings`]), shared with the HTTP client.
    deadline: Arc<OnceLock<u64>>,
    state: Mutex<Activity>,
    /// What each build ID asked for in this process came to, so none is asked twice.
    known: Mutex<HashMap<Vec<u8>, Option<PathBuf>>>,
}

impl fmt::Debug for Debuginfod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Debuginfod")
            .field("cache", &self.cache.path())
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
    /// The cache directory (already chosen and checked for the user the run is).
    pub cache: PathBuf,
    /// How long one request may take.
    pub timeout: Duration,
    /// The largest debug file taken.
    pub max_bytes: u64,
    /// When the run's requests must end, in milliseconds since the Unix epoch: no request
    /// starts after it, and none lasts past it.
    pub deadline_unix_ms: Option<u64>,
}

/// What the client did in the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    /// Files downloaded.
    pub fetched: u64,
    /// Bytes downloaded and kept.
    pub bytes: u64,
    /// Files found in the cache.
    pub cached: u64,
    /// Build IDs no server had.
    pub missing: u64,
    /// Bodies refused for being over the size cap.
    pub too_large: u64,
    /// Files refused (and deleted) for carrying another build ID, or none.
    pub wrong_build_id: u64,
    /// Build IDs not asked for, or cut short, because the run's budget was spent.
    pub over_budget: u64,
    /// Build IDs not asked for because the servers were given up on.
    pub not_asked: u64,
    /// Why the servers stopped being asked, if they did.
    pub gave_up: Option<String>,
    /// A cache directory the environment named and that was refused, with why.
    pub cache_refused: Option<String>,
    /// Time spent asking (summed over requests made at once).
    pub elapsed: Duration,
}

impl Activity {
    /// Adds what another client (a worker's) did.
    pub fn merge(&mut self, other: &Activity) {
        self.fetched += other.fetched;
        self.bytes += other.bytes;
        self.cached += other.cached;
        self.missing += other.missing;
        self.too_large += other.too_large;
        self.wrong_build_id += other.wrong_build_id;
        self.over_budget += other.over_budget;
        self.not_asked += other.not_asked;
        self.elapsed += other.elapsed;
        if self.gave_up.is_none() {
            self.gave_up.clone_from(&other.gave_up);
        }
        if self.cache_refused.is_none() {
            self.cache_refused.clone_from(&other.cache_refused);
        }
    }

    /// What was done since `before`, an earlier reading of the same client: what a worker
    /// reports with each answer, for [`Self::merge`] in the parent.
    pub fn since(&self, before: &Activity) -> Activity {
        let newer =
            |now: &Option<String>, then: &Option<String>| now.clone().filter(|_| then.is_none());
        Activity {
            fetched: self.fetched.saturating_sub(before.fetched),
            bytes: self.bytes.saturating_sub(before.bytes),
            cached: self.cached.saturating_sub(before.cached),
            missing: self.missing.saturating_sub(before.missing),
            too_large: self.too_large.saturating_sub(before.too_large),
            wrong_build_id: self.wrong_build_id.saturating_sub(before.wrong_build_id),
            over_budget: self.over_budget.saturating_sub(before.over_budget),
            not_asked: self.not_asked.saturating_sub(before.not_asked),
            gave_up: newer(&self.gave_up, &before.gave_up),
            cache_refused: newer(&self.cache_refused, &before.cache_refused),
            elapsed: self.elapsed.saturating_sub(before.elapsed),
        }
    }

    /// One line for the run's summary, or `None` when nothing was asked and nothing
    /// refused.
    pub fn summary(&self, urls: &str) -> Option<String> {
        if *self == Self::default() {
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
        let mut refused = Vec::new();
        if self.too_large > 0 {
            refused.push(format!("{} over the size cap", self.too_large));
        }
        if self.wrong_build_id > 0 {
            refused.push(format!(
                "{} with another build ID (deleted)",
                self.wrong_build_id
            ));
        }
        if !refused.is_empty() {
            line.push_str(&format!("; refused {}", refused.join(", ")));
        }
        if self.over_budget > 0 {
            line.push_str(&format!(
                "; {} not fetched: the run's {}s budget for debuginfod was spent",
                self.over_budget,
                RUN_BUDGET.as_secs()
            ));
        }
        if let Some(why) = &self.gave_up {
            line.push_str(&format!(
                "; stopped asking ({} not asked): {why}",
                self.not_asked
            ));
        }
        if let Some(why) = &self.cache_refused {
            line.push_str(&format!("; {why}"));
        }
        Some(line)
    }
}

/// Why a request was refused before or as its answer came.
#[derive(Debug)]
enum Refusal {
    /// Its `Content-Length` was over the cap.
    TooLarge(u64),
    /// The run's budget was spent.
    OverBudget,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(bytes) => write!(f, "a body of {bytes} bytes, over the cap"),
            Self::OverBudget => f.write_str("the run's debuginfod budget is spent"),
        }
    }
}

impl std::error::Error for Refusal {}

/// What came of asking for one build ID.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Stored(Stored),
    Missing,
    OverBudget,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What remains before `deadline` (none set: no limit).
fn remaining(deadline: &OnceLock<u64>) -> Duration {
    deadline.get().map_or(Duration::MAX, |&d| {
        Duration::from_millis(d.saturating_sub(now_ms()))
    })
}

impl Debuginfod {
    /// A client for the servers of `DEBUGINFOD_URLS`, or `None` when it names none (or
    /// cannot be parsed, or no cache can be had, which is said).
    pub fn from_env() -> Option<Self> {
        let urls = std::env::var("DEBUGINFOD_URLS").ok()?;
        let timeout = std::env::var("DEBUGINFOD_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        // elfutils' variable for the same cap: it may lower ours, not raise it.
        let max_bytes = std::env::var("DEBUGINFOD_MAXSIZE")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(MAX_BYTES, |s| s.min(MAX_BYTES));
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let choice = cache::choose(
            euid,
            |name| std::env::var_os(name),
            cache::root_home,
            cache::trusted_for_root,
        )?;
        let client = Self::build(&urls, &choice.path, timeout, max_bytes, None)?;
        if let Ok(mut state) = client.state.lock() {
            state.cache_refused = choice.refused;
        }
        Some(client)
    }

    /// A client for the space-separated server `urls`, caching under `cache` (the tests'
    /// way to point a client at a server and a cache of their own).
    #[cfg(test)]
    pub fn new(urls: &str, cache: PathBuf, timeout: Duration) -> Option<Self> {
        Self::build(urls, &cache, timeout, MAX_BYTES, None)
    }

    fn build(
        urls: &str,
        cache: &Path,
        timeout: Duration,
        max_bytes: u64,
        deadline_unix_ms: Option<u64>,
    ) -> Option<Self> {
        let deadline = Arc::new(OnceLock::new());
        if let Some(ms) = deadline_unix_ms {
            let _ = deadline.set(ms);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let http = Ureq {
            agent,
            timeout,
            max_bytes,
            deadline: Arc::clone(&deadline),
        };
        let client = match Client::builder()
            .http_client(http)
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
        // SAFETY: geteuid cannot fail.
        let as_root = unsafe { libc::geteuid() } == 0;
        let cache = match Cache::open(cache, as_root) {
            Ok(cache) => cache,
            Err(why) => {
                crate::sys::console::eprint_line(&format!(
                    "profiler: debuginfod cache {}: {why}; debuginfod is not used (set DEBUGINFOD_CACHE_PATH to a directory only root can write)",
                    cache.display()
                ));
                return None;
            }
        };
        Some(Self {
            client,
            urls: urls.split_ascii_whitespace().collect::<Vec<_>>().join(" "),
            cache,
            timeout,
            max_bytes,
            deadline,
            state: Mutex::new(Activity::default()),
            known: Mutex::new(HashMap::new()),
        })
    }

    /// What this client is made from, for [`Self::from_settings`] in another process; the
    /// run's debuginfod budget starts now if no request started it.
    pub fn settings(&self) -> DebuginfodSettings {
        DebuginfodSettings {
            urls: self.urls.clone(),
            cache: self.cache.path().to_owned(),
            timeout: self.timeout,
            max_bytes: self.max_bytes,
            deadline_unix_ms: Some(self.deadline_ms()),
        }
    }

    /// The client `settings` describe.
    pub fn from_settings(settings: &DebuginfodSettings) -> Option<Self> {
        Self::build(
            &settings.urls,
            &settings.cache,
            settings.timeout,
            settings.max_bytes,
            settings.deadline_unix_ms,
        )
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

    /// The run's deadline, starting the budget if nothing did yet.
    fn deadline_ms(&self) -> u64 {
        *self.deadline.get_or_init(|| {
            now_ms().saturating_add(u64::try_from(RUN_BUDGET.as_millis()).unwrap_or(u64::MAX))
        })
    }

    /// The debug file of `build_id`: from the cache, else downloaded into it. `None` when
    /// no server has it, what came was refused, the budget is spent, or the servers were
    /// given up on. Each build ID is looked up once per process.
    pub fn fetch(&self, build_id: &[u8]) -> Option<PathBuf> {
        if build_id.is_empty() || build_id.len() > cache::MAX_BUILD_ID {
            return None;
        }
        if let Some(known) = self.known.lock().ok()?.get(build_id) {
            return known.clone();
        }
        let found = self.look_up(build_id);
        self.known
            .lock()
            .ok()?
            .insert(build_id.to_vec(), found.clone());
        found
    }

    fn look_up(&self, build_id: &[u8]) -> Option<PathBuf> {
        let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.cache.file_path(&hex);
        match self.cache.lookup(&hex, build_id) {
            Ok((true, _)) => {
                self.state.lock().ok()?.cached += 1;
                return Some(path);
            }
            Ok((false, true)) => {
                log::debug!("debuginfod: the cached {hex} had another build ID: deleted");
                self.state.lock().ok()?.wrong_build_id += 1;
            }
            Ok((false, false)) => {}
            Err(err) => log::debug!("debuginfod: cannot look up {hex} in the cache: {err}"),
        }
        {
            let mut state = self.state.lock().ok()?;
            if state.gave_up.is_some() {
                state.not_asked += 1;
                return None;
            }
        }
        if now_ms() >= self.deadline_ms() {
            self.state.lock().ok()?.over_budget += 1;
            return None;
        }
        let started = Instant::now();
        let result = self.download(build_id, &hex);
        let mut state = self.state.lock().ok()?;
        state.elapsed += started.elapsed();
        match result {
            Ok(Outcome::Stored(Stored::Kept(bytes))) => {
                state.fetched += 1;
                state.bytes += bytes;
                log::debug!("debuginfod: fetched {hex} ({bytes} bytes)");
                Some(path)
            }
            Ok(Outcome::Stored(Stored::TooLarge)) => {
                log::debug!(
                    "debuginfod: {hex} is over {} bytes: refused",
                    self.max_bytes
                );
                state.too_large += 1;
                None
            }
            Ok(Outcome::Stored(Stored::WrongBuildId)) => {
                log::debug!("debuginfod: what came for {hex} has another build ID: deleted");
                state.wrong_build_id += 1;
                None
            }
            Ok(Outcome::Missing) => {
                state.missing += 1;
                None
            }
            Ok(Outcome::OverBudget) => {
                state.over_budget += 1;
                None
            }
            Err(err) => {
                log::debug!("debuginfod: {hex}: {err:#}");
                if state.gave_up.is_none() {
                    state.gave_up = Some(format!("{err:#}"));
                }
                None
            }
        }
    }

    /// Asks the servers for `build_id` (`hex` in hex) and stores what comes.
    fn download(&self, build_id: &[u8], hex: &str) -> anyhow::Result<Outcome> {
        let past_deadline = || remaining(&self.deadline).is_zero();
        let mut response = match self.client.fetch_debug_info(&BuildId::raw(build_id)) {
            Ok(Some(response)) => response,
            Ok(None) => return Ok(Outcome::Missing),
            Err(err) => {
                return match err.chain().find_map(|e| e.downcast_ref::<Refusal>()) {
                    Some(Refusal::TooLarge(_)) => Ok(Outcome::Stored(Stored::TooLarge)),
                    Some(Refusal::OverBudget) => Ok(Outcome::OverBudget),
                    // A request cut short by the budget is not the server's failure.
                    None if past_deadline() => Ok(Outcome::OverBudget),
                    None => Err(err),
                };
            }
        };
        match self
            .cache
            .store(hex, build_id, &mut response.data, self.max_bytes)
        {
            Ok(stored) => Ok(Outcome::Stored(stored)),
            Err(_) if past_deadline() => Ok(Outcome::OverBudget),
            Err(err) => Err(err.into()),
        }
    }
}

/// The HTTP client the debuginfod client is given: ureq, each request's timeout cut to
/// what remains of the run's budget, a body over the cap refused by its length.
#[derive(Debug)]
struct Ureq {
    agent: ureq::Agent,
    timeout: Duration,
    max_bytes: u64,
    deadline: Arc<OnceLock<u64>>,
}

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
        let left = remaining(&self.deadline);
        if left.is_zero() {
            return Err(HttpClientError::Other(Box::new(Refusal::OverBudget)));
        }
        let response = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(self.timeout.min(left)))
            .build()
            .call()
            .map_err(|err| HttpClientError::Other(Box::new(err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(HttpClientError::StatusCode(status));
        }
        if let Some(length) = response.body().content_length()
            && length > self.max_bytes
        {
            return Err(HttpClientError::Other(Box::new(Refusal::TooLarge(length))));
        }
        // Not limited here: the cache counts what it writes and refuses a body over the
        // cap whatever its headers said.
        let body = response.into_body().into_with_config().reader();
        Ok(Box::new(Body(body)))
    }
}

#[cfg(test)]
mod tests;
