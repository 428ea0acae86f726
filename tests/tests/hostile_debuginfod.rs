//! The debuginfod client as root, with the environment `sudo -E` leaves (`HOME`,
//! `XDG_CACHE_HOME`, even `DEBUGINFOD_CACHE_PATH` pointing into user nobody's directory,
//! where links to root-only files and directories are planted) and servers that lie: a
//! 6 GiB body, a body that never ends, a file of another build ID, a 404 that takes its
//! time for every build ID.
//!
//! Each test builds a program that spins in stripped shared libraries (a static function
//! only debug information names) with a fresh build ID, so no cache knows it, runs it under
//! the profiler, and checks what the summary says, what root's own cache holds, that
//! nothing nobody planted was followed, and that the run ended within its bound.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{lchown, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use integration_tests::*;

/// The function only debug information names.
const HOT: &str = "hot_spin_static";
/// How long the program runs.
const WINDOW: Duration = Duration::from_secs(3);
/// The profiler's peak RSS budget in these runs.
const RSS_MIB: i64 = 512;

const LIB_C: &str = r#"
#include <stdint.h>
static volatile uint64_t sink;
static __attribute__((noinline)) uint64_t hot_spin_static(uint64_t n) {
    uint64_t h = 0;
    for (uint64_t i = 0; i < n; i++) { h ^= i; h *= 0x100000001b3ULL; h ^= h >> 29; }
    return h;
}
void hot_run(uint64_t n) { sink = hot_spin_static(n); }
"#;

/// `app SECONDS LIB...`: loads every library and calls them in a random order until SECONDS
/// passed. Not in turn: calls of equal length in a fixed cycle fell into step with the
/// sampler's fixed period (CI saw a run that sampled 57 of 150 libraries, then asked
/// debuginfod too few times to spend its budget; by hand 65 to 147 of 150 in 6 of 12 runs,
/// in three of which the program timed each library's calls equal within 3%), so every
/// library is sampled only when the calls come in no cycle (150 of 150 in 6 of 6 runs).
const APP_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
    double seconds = atof(argv[1]);
    int n = argc - 2;
    void (**run)(unsigned long) = calloc(n, sizeof *run);
    for (int i = 0; i < n; i++) {
        void *h = dlopen(argv[i + 2], RTLD_NOW);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        run[i] = (void (*)(unsigned long))dlsym(h, "hot_run");
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    srand(1);
    for (;;) {
        int i = rand() % n;
        run[i](100000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 >= seconds) break;
    }
    return 0;
}
"#;

/// A build ID no cache has seen: 16 bytes from the clock, the pid and a counter.
fn fresh_build_id() -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let tag = (u64::from(std::process::id()) << 32) | NEXT.fetch_add(1, Ordering::Relaxed);
    [nanos.to_be_bytes(), tag.to_be_bytes()].concat()
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The program, its stripped libraries (each its own build ID) and the first one's debug
/// file, in a root-owned directory; their entries in root's cache are removed when it is
/// dropped.
struct Program {
    dir: tempfile::TempDir,
    app: PathBuf,
    libs: Vec<PathBuf>,
    /// The build IDs of `libs`, in hex.
    ids: Vec<String>,
    /// What `objcopy --only-keep-debug` kept of the first library.
    debug: PathBuf,
}

/// Builds the program and `count` stripped libraries: the first compiled with a fresh
/// build ID, the others copies of it with their build ID bytes replaced by fresh ones.
fn program(count: usize) -> Program {
    let dir = temp_dir();
    set_mode(dir.path(), 0o755);
    let d = dir.path();
    std::fs::write(d.join("hot.c"), LIB_C).unwrap();
    std::fs::write(d.join("app.c"), APP_C).unwrap();
    let first = fresh_build_id();
    let lib = d.join("libhot0.so");
    let debug = d.join("libhot0.debug");
    let build_id = format!("-Wl,--build-id=0x{}", hex(&first));
    let (hot_c, app_c, app) = (d.join("hot.c"), d.join("app.c"), d.join("app"));
    tool(
        "cc",
        &[
            "-O1".as_ref(),
            "-g".as_ref(),
            "-fPIC".as_ref(),
            "-shared".as_ref(),
            build_id.as_ref(),
            hot_c.as_os_str(),
            "-o".as_ref(),
            lib.as_os_str(),
        ],
    );
    tool(
        "cc",
        &[
            "-O1".as_ref(),
            app_c.as_os_str(),
            "-ldl".as_ref(),
            "-o".as_ref(),
            app.as_os_str(),
        ],
    );
    tool(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            lib.as_os_str(),
            debug.as_os_str(),
        ],
    );
    tool(
        "objcopy",
        &[
            "--strip-debug".as_ref(),
            "--strip-unneeded".as_ref(),
            lib.as_os_str(),
        ],
    );
    let stripped = std::fs::read(&lib).unwrap();
    let at = stripped
        .windows(first.len())
        .position(|w| w == first)
        .expect("the build ID in the stripped library");
    let mut libs = vec![lib];
    let mut ids = vec![hex(&first)];
    for i in 1..count {
        let id = fresh_build_id();
        let mut copy = stripped.clone();
        copy[at..at + id.len()].copy_from_slice(&id);
        let path = d.join(format!("libhot{i}.so"));
        std::fs::write(&path, copy).unwrap();
        libs.push(path);
        ids.push(hex(&id));
    }
    Program {
        dir,
        app,
        libs,
        ids,
        debug,
    }
}

/// Root's own debuginfod cache, from the password database as the profiler takes it.
fn root_cache() -> PathBuf {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let home = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[2] == "0")
        .map_or("/root".to_owned(), |f| f[5].to_owned());
    Path::new(&home).join(".cache/debuginfod_client")
}

/// A test's program leaves nothing in root's cache: its entries go when it is dropped.
impl Drop for Program {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = std::fs::remove_dir_all(root_cache().join(id));
        }
    }
}

/// User nobody's HOME, as `sudo -E` leaves it to root, with links planted in every cache
/// directory elfutils' order would pick: the entry of `id` linking to a root-only
/// directory, and the temporary names the profiler used to write (`.debuginfo.<pid>.part`,
/// for the pids the next runs will likely get) linking to a root-only file.
struct Planted {
    _guard: tempfile::TempDir,
    home: PathBuf,
    /// Root-only: a 0700 directory holding a 0600 file.
    root_only: PathBuf,
    secret: PathBuf,
}

fn plant(id: &str) -> Planted {
    let (guard, home) = attacker_dir();
    let root_only = guard.path().join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    set_mode(&root_only, 0o700);
    let secret = root_only.join("secret");
    std::fs::write(&secret, b"root's own bytes").unwrap();
    set_mode(&secret, 0o600);
    let uid: u32 = NOBODY.parse().unwrap();
    let next_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .map_or(1, |s| s.trim().parse().unwrap_or(1));
    for cache in [".cache/debuginfod_client", "xdg/debuginfod_client", "cache"] {
        let cache = home.join(cache);
        std::fs::create_dir_all(&cache).unwrap();
        let entry = cache.join(id);
        symlink(&root_only, &entry).unwrap();
        let other = cache.join("0000000000000000000000000000000000000000");
        std::fs::create_dir(&other).unwrap();
        for pid in next_pid..next_pid + 300 {
            symlink(&secret, other.join(format!(".debuginfo.{pid}.part"))).unwrap();
        }
        symlink(&secret, other.join("debuginfo")).unwrap();
    }
    // Everything in HOME is nobody's.
    let mut dirs = vec![home.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            lchown(&path, Some(uid), Some(uid)).unwrap();
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                dirs.push(path);
            }
        }
    }
    Planted {
        _guard: guard,
        home,
        root_only,
        secret,
    }
}

impl Planted {
    /// The environment of `sudo -E` from nobody's session, with `urls` as the servers.
    fn env(&self, urls: &str) -> Vec<(&'static str, String)> {
        let at = |p: &str| self.home.join(p).to_str().unwrap().to_owned();
        vec![
            ("HOME", at("")),
            ("XDG_CACHE_HOME", at("xdg")),
            ("DEBUGINFOD_CACHE_PATH", at("cache")),
            ("DEBUGINFOD_URLS", urls.to_owned()),
        ]
    }

    fn before(&self) -> [Snapshot; 2] {
        [snapshot(&self.home), snapshot(&self.root_only)]
    }

    /// Nothing nobody planted, and nothing root-only, changed.
    fn assert_untouched(&self, before: &[Snapshot; 2], run: &Run) {
        assert!(
            self.before() == *before,
            "files under nobody's HOME or the root-only directory changed\n{}",
            run.transcript()
        );
        assert_eq!(std::fs::read(&self.secret).unwrap(), b"root's own bytes");
    }

    /// What every run here must keep: nothing planted changed, the run ended within 20 s of
    /// its window under [`RSS_MIB`]. The summary's debuginfod line.
    fn check(&self, before: &[Snapshot; 2], run: &Run) -> String {
        self.assert_untouched(before, run);
        assert_bounded(run, WINDOW, Duration::from_secs(20), RSS_MIB);
        debuginfod_line(run)
    }
}

/// Profiles `app` running over `libs` at 999 Hz with environment `env`.
fn profile(program: &Program, libs: &[PathBuf], env: &[(&str, String)]) -> (Run, Folded) {
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let mut cmd = profiler_command(&["-F", "999", "--format", "pprof,folded"]);
    cmd.arg("-o").arg(&out).arg("--").arg(&program.app);
    cmd.arg(WINDOW.as_secs().to_string()).args(libs);
    cmd.env_remove("DEBUGINFOD_CACHE_PATH");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let run = run_command(cmd);
    run.assert_success();
    let folded = Folded::load(&out).with_comm("app");
    (run, folded)
}

/// [`profile`] with the environment `sudo -E` leaves from a HOME nobody planted for `id`
/// (`url` the server, `extra` on top), checked with [`Planted::check`]: the run, the app's
/// samples and the summary's debuginfod line.
fn profile_planted(
    program: &Program,
    libs: &[PathBuf],
    id: &str,
    url: &str,
    extra: &[(&'static str, String)],
) -> (Run, Folded, String) {
    let planted = plant(id);
    let before = planted.before();
    let mut env = planted.env(url);
    env.extend_from_slice(extra);
    let (run, folded) = profile(program, libs, &env);
    let line = planted.check(&before, &run);
    (run, folded, line)
}

/// A server answering every request with a 404 after 250 ms; its URL.
fn slow_404() -> String {
    serve(|stream| {
        std::thread::sleep(Duration::from_millis(250));
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    })
}

/// The summary's debuginfod line (shown with the run's time and peak RSS).
fn debuginfod_line(run: &Run) -> String {
    let line = run
        .stdout
        .lines()
        // The summary's own line starts with it; a whole-host run may also list a process
        // named debuginfod (a real server on the host) in its per-process lines.
        .find(|l| l.starts_with("debuginfod ("))
        .unwrap_or_else(|| panic!("no debuginfod line\n{}", run.transcript()))
        .to_owned();
    eprintln!(
        "{line}\nrun: {:.1?} for a {WINDOW:?} window, peak RSS {} KiB",
        run.elapsed, run.peak_rss_kib
    );
    line
}

/// An HTTP server on loopback answering every request, each on a thread of its own, with
/// `answer(stream)` once the request's head is read; its URL.
fn serve(answer: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                answer(&mut stream);
            });
        }
    });
    url
}

/// Writes `total` bytes of a lazily generated body (an ELF header, then zeros) until the
/// client hangs up.
fn stream_body(stream: &mut TcpStream, total: u64) {
    let mut chunk = vec![0u8; 1 << 20];
    chunk[..4].copy_from_slice(b"\x7fELF");
    let mut sent = 0;
    while sent < total {
        if stream.write_all(&chunk).is_err() {
            return;
        }
        sent += chunk.len() as u64;
        chunk[..4].fill(0);
    }
}

fn assert_unnamed_and_uncached(program: &Program, folded: &Folded, run: &Run) {
    assert!(
        folded.total() > 0,
        "no samples of app\n{}",
        run.transcript()
    );
    assert_eq!(folded.samples_containing(HOT), 0, "{}", run.transcript());
    assert!(
        !root_cache()
            .join(&program.ids[0])
            .join("debuginfo")
            .exists(),
        "root's cache kept what was refused\n{}",
        run.transcript()
    );
}

#[test]
fn root_never_writes_where_a_users_home_points_and_names_from_a_real_server() {
    if !prerequisites() {
        return;
    }
    let program = program(1);
    let served = program.dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    std::fs::copy(&program.debug, served.join("libhot0.debug")).unwrap();
    let server = debuginfod(
        &served,
        &program.dir.path().join("db.sqlite"),
        &program.ids[0],
    );
    let (run, folded, line) =
        profile_planted(&program, &program.libs, &program.ids[0], &server.url, &[]);
    assert!(line.contains("fetched debug info of 1 file"), "{line}");
    assert!(
        line.contains("DEBUGINFOD_CACHE_PATH")
            && line.contains("refused (")
            && line.contains("not root"),
        "{line}"
    );
    // Root's own cache has it, the same bytes the server has.
    let cached = root_cache().join(&program.ids[0]).join("debuginfo");
    assert_eq!(
        std::fs::read(&cached).ok(),
        std::fs::read(&program.debug).ok(),
        "{}",
        run.transcript()
    );
    let total = folded.total();
    let hot = folded.samples_containing(HOT);
    assert!(
        total >= 100 && hot * 10 >= total * 7,
        "{hot} of {total} samples of app name {HOT}\n{}\n{}",
        folded.summary(10),
        run.transcript()
    );
}

#[test]
fn a_6_gib_body_is_refused_by_its_length() {
    if !prerequisites() {
        return;
    }
    let program = program(1);
    let url = serve(|stream| {
        let total = 6u64 << 30;
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        );
        stream_body(stream, total);
    });
    let (run, folded, line) = profile_planted(&program, &program.libs, &program.ids[0], &url, &[]);
    assert!(
        line.contains("over the size cap") && line.contains("fetched debug info of 0 files"),
        "{line}"
    );
    assert_unnamed_and_uncached(&program, &folded, &run);
}

#[test]
fn an_endless_body_is_cut_at_the_cap_and_deleted() {
    if !prerequisites() {
        return;
    }
    let program = program(1);
    // No length: it would stream 6 GiB. elfutils' DEBUGINFOD_MAXSIZE lowers the cap to
    // 64 MiB, so that the test writes little.
    let url = serve(|stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        stream_body(stream, 6 << 30);
    });
    let maxsize = [("DEBUGINFOD_MAXSIZE", (64u64 << 20).to_string())];
    let (run, folded, line) =
        profile_planted(&program, &program.libs, &program.ids[0], &url, &maxsize);
    assert!(line.contains("over the size cap"), "{line}");
    assert_unnamed_and_uncached(&program, &folded, &run);
    // Not even the partial file is left.
    let entry = root_cache().join(&program.ids[0]);
    let left: Vec<_> =
        std::fs::read_dir(&entry).map_or(Vec::new(), |d| d.flatten().map(|e| e.path()).collect());
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_file_of_another_build_id_is_not_cached() {
    if !prerequisites() {
        return;
    }
    // The program loads the copy; the server answers every request with the debug file
    // of the original, a real debug file of another build ID.
    let program = program(2);
    let debug = std::fs::read(&program.debug).unwrap();
    let url = serve(move |stream| {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            debug.len()
        );
        let _ = stream.write_all(&debug);
    });
    let (run, folded, line) =
        profile_planted(&program, &program.libs[1..], &program.ids[1], &url, &[]);
    assert!(line.contains("with another build ID (deleted)"), "{line}");
    assert!(folded.total() > 0, "{}", run.transcript());
    assert_eq!(folded.samples_containing(HOT), 0, "{}", run.transcript());
    for id in &program.ids {
        assert!(
            !root_cache().join(id).join("debuginfo").exists(),
            "{}",
            run.transcript()
        );
    }
}

#[test]
fn a_slow_404_for_every_build_id_is_bounded_by_the_runs_budget() {
    if !prerequisites() {
        return;
    }
    // 150 libraries at 250 ms a 404: 37 s asked one after another, 19 s two at a time.
    let program = program(150);
    // The 10 s budget, then the rest of symbolization and the outputs: within the bound.
    let (run, folded, line) =
        profile_planted(&program, &program.libs, &program.ids[0], &slow_404(), &[]);
    assert!(line.contains("budget for debuginfod was spent"), "{line}");
    assert!(folded.total() > 0, "{}", run.transcript());
}

#[test]
fn whole_host_with_a_slow_404_for_every_build_id_ends_within_the_budget() {
    if !prerequisites() {
        return;
    }
    // nobody runs the program; root profiles the whole host, as in the issue.
    let program = program(150);
    let url = slow_404();
    let planted = plant(&program.ids[0]);
    let before = planted.before();
    let mut args = vec!["8".to_owned()];
    args.extend(program.libs.iter().map(|l| l.to_str().unwrap().to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Started once it has loaded its libraries.
    let app = Attacker::start(program.dir.path(), &program.app, &args);
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let mut cmd = profiler_command(&["-d", "3s", "-F", "999", "--format", "pprof,folded"]);
    cmd.arg("-o").arg(&out).env_remove("DEBUGINFOD_CACHE_PATH");
    for (key, value) in planted.env(&url) {
        cmd.env(key, value);
    }
    let run = run_command(cmd);
    drop(app);
    run.assert_success();
    let line = planted.check(&before, &run);
    assert!(line.contains("budget for debuginfod was spent"), "{line}");
    assert!(
        Folded::load(&out).with_comm("app").total() > 0,
        "{}",
        run.transcript()
    );
}
