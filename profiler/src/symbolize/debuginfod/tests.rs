//! The client against HTTP servers on loopback whose answers the tests choose.

use super::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A minimal ELF64 file whose sections are a GNU build-ID note of `id` and the section
/// names.
fn elf_with_build_id(id: &[u8]) -> Vec<u8> {
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&u32::try_from(id.len()).unwrap().to_le_bytes());
    note.extend_from_slice(&object::elf::NT_GNU_BUILD_ID.to_le_bytes());
    note.extend_from_slice(b"GNU\0");
    note.extend_from_slice(id);
    let note_size = note.len() as u64;
    note.resize(note.len().next_multiple_of(8), 0);
    let names = b"\0.note.gnu.build-id\0.shstrtab\0\0\0\0\0";
    let shoff = 64 + (note.len() + names.len()) as u64;
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: executable
    elf.extend_from_slice(&62u16.to_le_bytes()); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&[0; 16]); // e_entry, e_phoff
    elf.extend_from_slice(&shoff.to_le_bytes());
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 0, 64, 3, 2] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&note);
    elf.extend_from_slice(names);
    elf.extend_from_slice(&[0; 64]); // the null section
    let sections = [
        (1u32, object::elf::SHT_NOTE, 2u64, 64u64, note_size, 4u64),
        (
            20,
            object::elf::SHT_STRTAB,
            0,
            64 + note.len() as u64,
            30,
            1,
        ),
    ];
    for (name, kind, flags, offset, size, align) in sections {
        elf.extend_from_slice(&name.to_le_bytes());
        elf.extend_from_slice(&kind.to_le_bytes());
        for word in [flags, 0, offset, size] {
            elf.extend_from_slice(&word.to_le_bytes());
        }
        elf.extend_from_slice(&[0; 8]); // sh_link, sh_info
        elf.extend_from_slice(&align.to_le_bytes());
        elf.extend_from_slice(&0u64.to_le_bytes()); // sh_entsize
    }
    elf
}

#[test]
fn the_crafted_file_has_its_build_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("elf");
    std::fs::write(&path, elf_with_build_id(&ID)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    assert_eq!(cache::build_id_of(&file), Some(ID.to_vec()));
}

/// The requests a test server answered.
#[derive(Default)]
struct Load {
    requests: AtomicU64,
}

/// An HTTP server on loopback answering every request on a thread of its own with
/// `answer(request path, stream)`; its URL and its load. It lives as long as the test.
fn serve(answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> (String, Arc<Load>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    let load = Arc::new(Load::default());
    let counts = Arc::clone(&load);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (answer, load) = (Arc::clone(&answer), Arc::clone(&counts));
            std::thread::spawn(move || {
                load.requests.fetch_add(1, Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                answer(&path, &mut stream);
            });
        }
    });
    (url, load)
}

/// Writes a response of `status` with `body` and its length.
fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

/// The build ID a request path asks for.
fn asked_id(path: &str) -> Vec<u8> {
    let hex = path.split('/').nth(2).unwrap_or_default();
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// A server with the debug file of every build ID asked for.
fn honest_server() -> (String, Arc<Load>) {
    serve(|path, stream| respond(stream, "200 OK", &elf_with_build_id(&asked_id(path))))
}

/// Files in `dir` and below (not directories), as paths relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                dirs.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    found
}

const ID: [u8; 20] = [0xab; 20];
const HEX: &str = "abababababababababababababababababababab";

#[test]
fn fetches_into_the_cache_checks_it_and_reads_it_back() {
    let cache = tempfile::tempdir().unwrap();
    let (url, load) = honest_server();
    let client = Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    let path = client.fetch(&ID).unwrap();
    assert_eq!(path, cache.path().join(HEX).join("debuginfo"));
    assert_eq!(std::fs::read(&path).unwrap(), elf_with_build_id(&ID));
    // Nothing else was left beside it.
    assert_eq!(
        files_under(cache.path()),
        [Path::new(HEX).join("debuginfo")]
    );
    // Asked again, this process remembers; another client reads the cache.
    assert_eq!(client.fetch(&ID), Some(path.clone()));
    let again = Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    assert_eq!(again.fetch(&ID), Some(path));
    assert_eq!(load.requests.load(Ordering::SeqCst), 1);
    let activity = client.activity();
    let bytes = elf_with_build_id(&ID).len() as u64;
    assert_eq!((activity.fetched, activity.bytes), (1, bytes));
    assert_eq!(again.activity().cached, 1);
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
    let (url, _) = serve(|_, stream| respond(stream, "404 Not Found", b""));
    let client = Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    assert_eq!(client.fetch(&[1, 2, 3, 4]), None);
    assert_eq!(client.activity().missing, 1);
    assert!(client.activity().gave_up.is_none());
    // Nothing listens on this one.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = format!("http://{port}");
    let client = Debuginfod::new(&gone, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    assert_eq!(client.fetch(&[5, 6, 7, 8]), None);
    assert_eq!(client.fetch(&[9, 9, 9, 9]), None);
    let activity = client.activity();
    assert!(activity.gave_up.is_some());
    assert_eq!(activity.not_asked, 1);
    assert!(files_under(cache.path()).is_empty());
}

#[test]
fn a_body_over_the_cap_is_refused_by_its_length() {
    let cache = tempfile::tempdir().unwrap();
    // Says 6 GiB, sends a little and hangs up.
    let (url, _) = serve(|_, stream| {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            6u64 << 30
        );
        let _ = stream.write_all(&[0; 4096]);
    });
    let client = Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    assert_eq!(client.fetch(&ID), None);
    let activity = client.activity();
    assert_eq!((activity.too_large, activity.fetched), (1, 0));
    assert!(activity.gave_up.is_none(), "{activity:?}");
    assert!(files_under(cache.path()).is_empty());
    assert!(
        activity
            .summary(&url)
            .unwrap()
            .contains("refused 1 over the size cap")
    );
}

#[test]
fn a_streamed_body_over_the_cap_is_refused_and_deleted() {
    let cache = tempfile::tempdir().unwrap();
    let cap = 1 << 20;
    // No length: the body ends when the connection does, after more than the cap.
    let (url, _) = serve(move |path, stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let mut body = elf_with_build_id(&asked_id(path));
        body.resize(cap as usize + 1, 0);
        let _ = stream.write_all(&body);
    });
    let client = Debuginfod::build(&url, cache.path(), Duration::from_secs(5), cap, None).unwrap();
    assert_eq!(client.fetch(&ID), None);
    assert_eq!(client.activity().too_large, 1);
    assert!(files_under(cache.path()).is_empty());
}

#[test]
fn a_file_of_another_build_id_is_not_kept() {
    let cache = tempfile::tempdir().unwrap();
    let (url, _) = serve(|_, stream| respond(stream, "200 OK", &elf_with_build_id(&[7; 20])));
    let client = Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    assert_eq!(client.fetch(&ID), None);
    let activity = client.activity();
    assert_eq!((activity.wrong_build_id, activity.fetched), (1, 0));
    assert!(std::fs::read_dir(cache.path()).unwrap().next().is_none());
    assert!(
        activity
            .summary(&url)
            .unwrap()
            .contains("1 with another build ID (deleted)")
    );
    // Nor is a cached file of another build ID taken: it is deleted and fetched again.
    let (honest, _) = honest_server();
    std::fs::create_dir(cache.path().join(HEX)).unwrap();
    std::fs::write(
        cache.path().join(HEX).join("debuginfo"),
        elf_with_build_id(&[7; 20]),
    )
    .unwrap();
    let client = Debuginfod::new(&honest, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    let path = client.fetch(&ID).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), elf_with_build_id(&ID));
    assert_eq!(client.activity().wrong_build_id, 1);
}

#[test]
fn links_planted_in_the_cache_are_never_followed() {
    let cache = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // The entry of one build ID is a link to another directory; the file of another a
    // link to a file.
    std::os::unix::fs::symlink(elsewhere.path(), cache.path().join(HEX)).unwrap();
    let other = [0xcd; 20];
    let other_hex: String = other.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir(cache.path().join(&other_hex)).unwrap();
    std::os::unix::fs::symlink(&victim, cache.path().join(&other_hex).join("debuginfo")).unwrap();
    let (url, _) = honest_server();
    let client = Debuginfod::new(&url, cache.path().to_owned(), Duration::from_secs(5)).unwrap();
    for (id, hex) in [(&ID, HEX), (&other, other_hex.as_str())] {
        let path = client.fetch(id).unwrap();
        assert_eq!(path, cache.path().join(hex).join("debuginfo"));
        assert!(
            std::fs::symlink_metadata(cache.path().join(hex))
                .unwrap()
                .is_dir()
        );
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(files_under(elsewhere.path()), [PathBuf::from("victim")]);
    assert_eq!(client.activity().fetched, 2);
}

#[test]
fn the_runs_budget_bounds_all_requests_together() {
    let cache = tempfile::tempdir().unwrap();
    let (url, _) = serve(|_, stream| {
        std::thread::sleep(Duration::from_millis(100));
        respond(stream, "404 Not Found", b"");
    });
    let deadline = now_ms() + 1000;
    let client = Debuginfod::build(
        &url,
        cache.path(),
        Duration::from_secs(30),
        MAX_BYTES,
        Some(deadline),
    )
    .unwrap();
    let started = Instant::now();
    for i in 0..100u32 {
        client.fetch(&i.to_be_bytes());
    }
    // A hundred requests of 100 ms each would take 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let activity = client.activity();
    assert!(
        activity.missing >= 1 && activity.missing < 100,
        "{activity:?}"
    );
    assert_eq!(activity.missing + activity.over_budget, 100, "{activity:?}");
    assert!(activity.gave_up.is_none());
    assert!(
        activity
            .summary(&url)
            .unwrap()
            .contains("not fetched: the run's 10s budget for debuginfod was spent")
    );
}

#[test]
fn a_request_is_cut_to_what_remains_of_the_budget() {
    let cache = tempfile::tempdir().unwrap();
    // Never answers.
    let (url, _) = serve(|_, _| std::thread::sleep(Duration::from_secs(60)));
    let client = Debuginfod::build(
        &url,
        cache.path(),
        Duration::from_secs(30),
        MAX_BYTES,
        Some(now_ms() + 500),
    )
    .unwrap();
    let started = Instant::now();
    assert_eq!(client.fetch(&ID), None);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let activity = client.activity();
    assert_eq!(activity.over_budget, 1, "{activity:?}");
    // The budget, not the server, ended it: the server is not given up on.
    assert!(activity.gave_up.is_none());
}

#[test]
fn settings_carry_the_runs_deadline_to_another_client() {
    let cache = tempfile::tempdir().unwrap();
    let client = Debuginfod::new(
        "http://127.0.0.1:9",
        cache.path().to_owned(),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    let settings = client.settings();
    let deadline = settings.deadline_unix_ms.unwrap();
    assert!(deadline > now_ms() && deadline <= now_ms() + 10_000);
    let worker = Debuginfod::from_settings(&settings).unwrap();
    assert_eq!(worker.settings(), settings);
    let mut merged = Activity {
        missing: 1,
        ..Activity::default()
    };
    merged.merge(&Activity {
        too_large: 2,
        wrong_build_id: 3,
        over_budget: 4,
        ..Activity::default()
    });
    assert_eq!(
        (
            merged.missing,
            merged.too_large,
            merged.wrong_build_id,
            merged.over_budget
        ),
        (1, 2, 3, 4)
    );
}

#[test]
fn root_keeps_its_own_cache_whatever_the_environment_says() {
    let user_env = |name: &str| match name {
        "HOME" => Some("/home/alice".into()),
        "XDG_CACHE_HOME" => Some("/home/alice/.cache".into()),
        _ => None,
    };
    let root_home = || PathBuf::from("/root");
    let never = |_: &Path| -> Result<(), String> { panic!("nothing to check") };
    let own = PathBuf::from("/root/.cache/debuginfod_client");
    let chosen = cache::choose(0, user_env, root_home, never).unwrap();
    assert_eq!((chosen.path, chosen.refused), (own.clone(), None));
    // Another user's: as elfutils would.
    let chosen = cache::choose(1000, user_env, root_home, never).unwrap();
    assert_eq!(
        chosen.path,
        Path::new("/home/alice/.cache/debuginfod_client")
    );
    // Root with DEBUGINFOD_CACHE_PATH: taken only when the directory is root's alone.
    let dirs = tempfile::tempdir().unwrap();
    let mine = dirs.path().join("mine");
    let theirs = dirs.path().join("theirs");
    std::fs::create_dir(&mine).unwrap();
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let with_path = |dir: &Path| {
        let dir = dir.as_os_str().to_owned();
        move |name: &str| (name == "DEBUGINFOD_CACHE_PATH").then(|| dir.clone())
    };
    let chosen = cache::choose(0, with_path(&mine), root_home, cache::trusted_for_root).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!((chosen.path, chosen.refused), (mine.clone(), None));
    }
    let chosen = cache::choose(0, with_path(&theirs), root_home, cache::trusted_for_root).unwrap();
    assert_eq!(chosen.path, own);
    let why = chosen.refused.unwrap();
    assert!(why.contains("writable by others"), "{why}");
    let link = dirs.path().join("link");
    std::os::unix::fs::symlink(&mine, &link).unwrap();
    let chosen = cache::choose(0, with_path(&link), root_home, cache::trusted_for_root).unwrap();
    assert!(chosen.refused.unwrap().contains("symbolic link"));
    let chosen = cache::choose(
        0,
        with_path(Path::new("rel")),
        root_home,
        cache::trusted_for_root,
    )
    .unwrap();
    assert!(chosen.refused.unwrap().contains("absolute"));
}

#[test]
fn without_servers_there_is_no_client() {
    let cache = tempfile::tempdir().unwrap();
    assert!(Debuginfod::new("  ", cache.path().to_owned(), DEFAULT_TIMEOUT).is_none());
    assert_eq!(Activity::default().summary("x"), None);
}
