//! Builds the Go fixtures (`fixtures/*.go`) with each Go toolchain the tests cover.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{GoToolchain, Running, go_toolchains};

/// Builds `fixtures/NAME.go` with `toolchain` into the test target directory and returns
/// the binary; Go's build cache (one per toolchain) makes a rebuild quick.
pub fn build(toolchain: &GoToolchain, name: &str) -> PathBuf {
    build_with(toolchain, name, "", name)
}

/// Like [`build`], with linker flags (`-w`: no DWARF), into a binary named `out_name`.
pub fn build_with(toolchain: &GoToolchain, name: &str, ldflags: &str, out_name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go");
    let out_dir = root.join(&toolchain.version);
    std::fs::create_dir_all(&out_dir).expect("create the Go fixture directory");
    let out = out_dir.join(out_name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("{name}.go"));
    let output = Command::new(&toolchain.go)
        .arg("build")
        .arg(format!("-ldflags={ldflags}"))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .env("GOCACHE", root.join(format!("cache-{}", toolchain.version)))
        .env("GOPATH", root.join("gopath"))
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", toolchain.go.display()));
    assert!(
        output.status.success(),
        "go {} build of {} failed:\n{}",
        toolchain.version,
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// Runs `f` for every toolchain and fails once, listing every toolchain that failed, so
/// one release's failure does not hide another's.
pub fn for_each_toolchain(what: &str, mut f: impl FnMut(&GoToolchain) -> Result<String, String>) {
    let mut failures = Vec::new();
    for toolchain in go_toolchains() {
        match f(&toolchain) {
            Ok(summary) => eprintln!("{what}: Go {}: {summary}", toolchain.version),
            Err(why) => failures.push(format!("Go {}: {why}", toolchain.version)),
        }
    }
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n\n"));
}

/// Starts a Go server fixture (`go_http`, `go_service`) that listens on a free loopback
/// port and writes it to the file it is given, with `env` added to its environment; waits
/// until it listens and returns it with its port.
pub fn start_server(binary: &Path, dir: &Path, env: &[(&str, &str)]) -> (Running, u16) {
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let mut cmd = Command::new(binary);
    cmd.arg(&port_file).envs(env.iter().copied());
    let server = Running::spawn(cmd);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let port = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if let Some(port) = port {
            return (server, port);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} wrote no port within 30 s",
            binary.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether `toolchain`'s runtime names the wait reason `reason` (its
/// `runtime.waitReasonStrings` has it): the reasons the runtime gives a wait changed
/// between releases (Go 1.19 parks every semaphore wait as `semacquire`).
pub fn runtime_has_reason(toolchain: &GoToolchain, reason: &str) -> bool {
    let go = std::fs::canonicalize(&toolchain.go).unwrap_or_else(|_| toolchain.go.clone());
    let goroot = go
        .parent()
        .and_then(Path::parent)
        .expect("go is in GOROOT/bin");
    let runtime2 = goroot.join("src/runtime/runtime2.go");
    let text = std::fs::read_to_string(&runtime2)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", runtime2.display()));
    text.contains(&format!("\"{reason}\""))
}

/// The body of `GET path` from a server on loopback `port`, asked in HTTP/1.0 so that the
/// body is not chunked.
pub fn http_get(port: u16, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the Go server");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send a request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    response.split_off(at + 4)
}

/// Where the tests' load generator is.
pub const AB: &str = "/usr/bin/ab";

/// Whether `ab` is missing, saying so: a test that loads a server then skips.
pub fn ab_missing() -> bool {
    let missing = !Path::new(AB).is_file();
    if missing {
        eprintln!("skipping: {AB} is not installed (`cargo xtask setup --for-tests`)");
    }
    missing
}

/// One row of `go tool pprof -top`: a function's flat value as printed (with its unit,
/// `12345B`, `0.52s`) and its cumulative share of the samples in percent.
pub struct TopRow {
    /// The function.
    pub function: String,
    /// The flat value, as printed.
    pub flat: String,
    /// The cumulative share, 0 to 100.
    pub cum_percent: f64,
}

/// The rows of `go tool pprof -top ARGS` (`-nodecount=100000` added, so no function is
/// left out).
pub fn pprof_top(args: &[String]) -> Vec<TopRow> {
    let mut all = vec!["-top".to_owned(), "-nodecount=100000".to_owned()];
    all.extend_from_slice(args);
    let run = integration_tests::pprof(&all);
    run.assert_success();
    run.stdout
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.get(1)?.strip_suffix('%')?;
            let cum_percent = words.get(4)?.strip_suffix('%')?.parse().ok()?;
            Some(TopRow {
                function: words[5..].join(" "),
                flat: words[0].to_owned(),
                cum_percent,
            })
        })
        .collect()
}
