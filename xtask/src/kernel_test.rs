//! `cargo xtask test --kernel VERSION`: the integration tests, built here, run inside
//! one of Debian's kernels booted in a VM ([`crate::vm`]), with a result per test.
//!
//! The guest sees this machine's files read-only, so the tests run from where cargo
//! built them. What they write goes to the guest's /tmp, except the few directories
//! under target/ the tests keep between runs (Go's build caches, the report's
//! screenshots), which are shared back writable, and the results directory
//! `target/kernel-tests/VERSION/`, where the guest leaves each test binary's output.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build_cmd;
use crate::kernel_image::KernelName;
use crate::kernel_subset::{self, Pick, Subset};
use crate::libtest_output::{self, Outcome};
use crate::setup;
use crate::test_cmd;
use crate::util::{self, host_target_dir, workspace_root};
use crate::vm::{self, Boot, Ended};

/// The kernels CI runs the `ci` subset on (`.ci/run`), which `setup --for-kernels`
/// installs: Debian 12's default and the newer one it ships.
const CI_KERNELS: [&str; 2] = ["6.1", "6.12"];

/// `cargo xtask setup --for-kernels`: the VM's tools and the CI kernels' images.
pub fn setup_kernels() -> Result<()> {
    vm::ensure_tools()?;
    vm::report();
    for name in CI_KERNELS {
        let kernel: KernelName = name.parse().map_err(anyhow::Error::msg)?;
        let (release, image) = kernel.ensure_installed()?;
        println!(
            "xtask: setup: kernel {kernel}: {release} ({})",
            image.display()
        );
    }
    Ok(())
}

/// What `test --kernel` was asked to run.
pub struct KernelTestArgs {
    pub kernel: KernelName,
    /// A named subset ([`kernel_subset`]); the whole suite without one.
    pub subset: Option<String>,
    /// Only these test binaries (`tests/tests/NAME.rs`).
    pub binaries: Vec<String>,
    /// libtest filters passed to every binary run.
    pub filters: Vec<String>,
    /// Kill the VM after this long; the default depends on the subset.
    pub timeout_minutes: Option<u64>,
    /// The guest's CPUs.
    pub cpus: u32,
    /// All vCPUs on one host thread.
    pub tcg_single_thread: bool,
}

/// The hard limit of a CI subset's VM: two kernels must fit in CI's 90 minutes with the
/// host suite (about 15) and setup (about 5), so a guest that hangs costs at most this.
const CI_TIMEOUT_MINUTES: u64 = 32;
/// The hard limit for the whole suite, several times its run under TCG.
const SUITE_TIMEOUT_MINUTES: u64 = 240;

/// How many times longer than on this machine a test lets a profiler run take in the
/// guest (`PROFILER_TEST_TIME_SCALE`, read by `integration_tests::default_timeout`).
const GUEST_TIME_SCALE: &str = "4";

/// The guest's home and Go directories: /root is read-only there.
const GUEST_HOME: &str = "/tmp/xtask-guest-home";

/// One test binary's run in the guest.
struct BinaryRun {
    name: String,
    executable: PathBuf,
    /// The tests asked for by name (a subset), each to be reported even if never run.
    expected: Vec<String>,
    /// libtest arguments after `--test-threads=1`.
    args: Vec<String>,
}

pub fn test_kernel(args: KernelTestArgs) -> Result<u8> {
    let started = Instant::now();
    // Decide what to run before installing or building anything, so a typo fails fast.
    let subset: Option<Subset> = match &args.subset {
        Some(name) => Some(kernel_subset::by_name(name).with_context(|| {
            format!(
                "no subset `{name}`; the subsets are: {}",
                kernel_subset::NAMES.join(", ")
            )
        })?),
        None => None,
    };
    let timeout = Duration::from_secs(
        60 * args.timeout_minutes.unwrap_or(if subset.is_some() {
            CI_TIMEOUT_MINUTES
        } else {
            SUITE_TIMEOUT_MINUTES
        }),
    );

    let route = setup::ensure(true)?;
    vm::ensure_tools()?;
    let (release, image) = args.kernel.ensure_installed()?;
    println!(
        "xtask: kernel {}: {release} ({})",
        args.kernel,
        image.display()
    );
    let profiler = build_cmd::build_with(route, true)?;
    let mut vars = test_cmd::test_vars(profiler);
    let built = build_tests(&vars)?;
    let runs = plan(&built, subset.as_ref().map(|s| s.picks), &args)?;
    if let Some(versions) = subset.as_ref().and_then(|s| s.go_versions) {
        vars.push(("PROFILER_TEST_GO_VERSIONS", versions.into()));
    }
    // Emulated, the profiler's start and end take several times longer, most of all on
    // one vCPU shared with busy fixtures (6.12's guest: a `--pid` run of 3 s took over
    // 60 s there; pinned to one CPU with the same fixtures here it took 4.9 s).
    vars.push(("PROFILER_TEST_TIME_SCALE", GUEST_TIME_SCALE.into()));

    let results = host_target_dir()
        .join("kernel-tests")
        .join(args.kernel.to_string());
    let _ = fs::remove_dir_all(&results);
    fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let mut writable = vec![results.clone()];
    // What the tests write under target/ and keep between runs: the Go fixtures and their
    // build caches (CARGO_TARGET_TMPDIR, target/go-cache) and the report's screenshots.
    for dir in ["tmp", "go-cache", "report-screenshots"] {
        let dir = host_target_dir().join(dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        writable.push(dir);
    }
    let script = results.join("guest.sh");
    fs::write(&script, guest_script(&results, &vars, &runs)?)
        .with_context(|| format!("writing {}", script.display()))?;

    let log = results.join("console.log");
    println!(
        "xtask: booting {release} under TCG ({} test binaries, at most {} min); the guest's \
         output goes to {}",
        runs.len(),
        timeout.as_secs() / 60,
        log.display()
    );
    let boot_started = Instant::now();
    let boot = Boot {
        image: &image,
        writable,
        command: format!("bash {}", quote(&script)?),
        log: &log,
        timeout,
        cpus: args.cpus,
        tcg_single_thread: args.tcg_single_thread,
        show: |line| {
            line.starts_with("xtask-guest:")
                || (line.starts_with("test ") && line.contains(" ... "))
        },
    };
    let mut ended = boot.run()?;
    // A guest that died before its script ended (seen here in about one boot in ten: vng
    // exited with 255 and nothing on the console, once before the script started, once
    // in the middle of a test) is booted once more and runs everything again, within the
    // same timeout; the report says so.
    let mut rebooted = None;
    for attempt in 1..=MAX_REBOOTS {
        let Ended::Exited(status) = &ended else {
            break;
        };
        if results.join("finished").exists() || boot_started.elapsed() >= timeout / 2 {
            break;
        }
        let reached = fs::read_to_string(results.join("status"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        let note = format!(
            "the guest died ({status}) after {reached} of {} test binaries, with nothing on \
             its console; it was booted again and ran them all",
            runs.len()
        );
        println!("xtask: {note}");
        rebooted = Some(note);
        for marker in ["started", "status"] {
            let _ = fs::remove_file(results.join(marker));
        }
        // The dead guest's console (its kernel messages: --verbose) is kept for a look.
        let _ = fs::rename(&log, results.join(format!("console-died-{attempt}.log")));
        ended = Boot {
            timeout: timeout.saturating_sub(boot_started.elapsed()),
            writable: boot.writable.clone(),
            command: boot.command.clone(),
            ..boot
        }
        .run()?;
    }
    let in_vm = boot_started.elapsed();

    let report = Report::read(&results, &runs);
    report.print(&args.kernel, &release);
    let finished = fs::read_to_string(results.join("finished")).ok();
    let mut problems = Vec::new();
    match ended {
        Ended::TimedOut => problems.push(format!(
            "the VM was killed after {} min: the tests after the last one shown did not run",
            timeout.as_secs() / 60
        )),
        Ended::Exited(status) if finished.is_none() => problems.push(format!(
            "the guest stopped before its last test binary finished (vng: {status}; it did \
             not boot, or crashed): see {}",
            log.display()
        )),
        Ended::Exited(_) => {}
    }
    if let Some(booted) = finished.as_deref().map(str::trim)
        && booted != release
    {
        problems.push(format!("the guest ran kernel {booted}, not {release}"));
    }
    println!(
        "xtask: kernel {} took {:.0} s from start to end ({:.0} s in the VM); full output: {}",
        args.kernel,
        started.elapsed().as_secs_f64(),
        in_vm.as_secs_f64(),
        log.display()
    );
    if let Some(note) = &rebooted {
        println!("xtask: note: {note}");
    }
    for problem in &problems {
        println!("xtask: error: {problem}");
    }
    println!(
        "kernel-{}: {} passed, {} failed, {} skipped",
        args.kernel, report.passed, report.failed, report.ignored
    );
    Ok(if report.failed == 0 && problems.is_empty() {
        0
    } else {
        1
    })
}

/// Builds every test binary of the workspace (as `cargo xtask test` would run them) and
/// returns the integration tests' executables by name.
fn build_tests(vars: &[(&str, OsString)]) -> Result<BTreeMap<String, PathBuf>> {
    let mut cmd = util::cargo();
    cmd.current_dir(workspace_root())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args([
            "test",
            "--workspace",
            "--release",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit());
    println!("xtask: running: {}", util::display(&cmd));
    let output = cmd.output().context("could not start cargo")?;
    if !output.status.success() {
        bail!(util::CommandFailed {
            command: util::display(&cmd),
            code: output.status.code().and_then(|c| u8::try_from(c).ok()),
        });
    }
    let manifest = workspace_root().join("tests/Cargo.toml");
    let mut built = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_integration_test = message["reason"] == "compiler-artifact"
            && message["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path())
            && message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        if !is_integration_test {
            continue;
        }
        if let (Some(name), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            built.insert(name.to_string(), PathBuf::from(executable));
        }
    }
    if built.is_empty() {
        bail!("cargo built no integration test binary (tests/tests/*.rs)");
    }
    Ok(built)
}

/// Which binaries run with which arguments.
fn plan(
    built: &BTreeMap<String, PathBuf>,
    subset: Option<&[Pick]>,
    args: &KernelTestArgs,
) -> Result<Vec<BinaryRun>> {
    for name in &args.binaries {
        if !built.contains_key(name) {
            bail!(
                "no test binary `{name}`; the integration tests are: {}",
                built.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let wanted = |name: &str| args.binaries.is_empty() || args.binaries.iter().any(|b| b == name);
    let mut runs = Vec::new();
    match subset {
        None => {
            for (name, executable) in built.iter().filter(|(name, _)| wanted(name)) {
                let mut libtest = Vec::new();
                libtest.extend(args.filters.iter().cloned());
                runs.push(BinaryRun {
                    name: name.clone(),
                    executable: executable.clone(),
                    expected: Vec::new(),
                    args: libtest,
                });
            }
        }
        Some(picks) => {
            println!("xtask: the subset, and what each test is there for:");
            for pick in picks {
                println!("  {}::{}: {}", pick.binary, pick.test, pick.covers);
            }
            for pick in picks {
                if !wanted(pick.binary) {
                    continue;
                }
                if !args.filters.is_empty()
                    && !args.filters.iter().any(|f| pick.test.contains(f.as_str()))
                {
                    continue;
                }
                let Some(executable) = built.get(pick.binary) else {
                    bail!(
                        "the subset names {}::{}, but there is no test binary `{}`: update \
                         xtask/src/kernel_subset.rs",
                        pick.binary,
                        pick.test,
                        pick.binary
                    );
                };
                match runs
                    .iter_mut()
                    .find(|r: &&mut BinaryRun| r.name == pick.binary)
                {
                    Some(run) => run.expected.push(pick.test.to_string()),
                    None => runs.push(BinaryRun {
                        name: pick.binary.to_string(),
                        executable: executable.clone(),
                        expected: vec![pick.test.to_string()],
                        args: Vec::new(),
                    }),
                }
            }
            for run in &mut runs {
                check_listed(run)?;
                run.args.push("--exact".into());
                run.args.extend(run.expected.iter().cloned());
            }
        }
    }
    if runs.is_empty() {
        bail!("nothing to run: no test binary or subset test matches what was asked");
    }
    Ok(runs)
}

/// Fails when a subset names a test its binary does not have (renamed or removed), so
/// the subset never silently runs less than it says.
fn check_listed(run: &BinaryRun) -> Result<()> {
    let listing = util::output_of(Command::new(&run.executable).args(["--list", "--format=terse"]))
        .with_context(|| format!("`{} --list` failed", run.executable.display()))?;
    let listed: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .collect();
    for test in &run.expected {
        if !listed.contains(&test.as_str()) {
            bail!(
                "the subset names {}::{test}, which that binary does not have: update \
                 xtask/src/kernel_subset.rs",
                run.name
            );
        }
    }
    Ok(())
}

/// A path or argument as one shell word.
fn quote(value: impl AsRef<std::ffi::OsStr>) -> Result<String> {
    let value = value.as_ref();
    let text = value
        .to_str()
        .with_context(|| format!("{value:?} is not UTF-8, which the guest's script needs"))?;
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

/// Seconds a test binary runs in the guest before the tasks are snapshotted every minute
/// (the slowest binary takes about 3 minutes on one emulated vCPU).
const HANG_AFTER_S: u32 = 600;

/// The script the guest runs: the host suite's variables, a writable home, and each
/// binary in turn, its output kept in the results directory with its status and time.
fn guest_script(results: &Path, vars: &[(&str, OsString)], runs: &[BinaryRun]) -> Result<String> {
    let mut s = String::new();
    let r = quote(results)?;
    writeln!(s, "#!/bin/bash")?;
    writeln!(
        s,
        "# Written by `cargo xtask test --kernel`; runs as root in the guest."
    )?;
    writeln!(s, "set -u")?;
    writeln!(s, "results={r}")?;
    // /root is read-only in the guest; Go and pprof keep caches under HOME.
    writeln!(s, "export HOME={GUEST_HOME}")?;
    writeln!(
        s,
        "export GOCACHE=$HOME/go-cache GOPATH=$HOME/go XDG_CACHE_HOME=$HOME/cache"
    )?;
    writeln!(s, "mkdir -p \"$HOME\"")?;
    writeln!(s, "touch \"$results/started\"")?;
    for (var, value) in vars {
        writeln!(s, "export {var}={}", quote(value)?)?;
    }
    if !vars.iter().any(|(var, _)| *var == "PATH")
        && let Some(path) = std::env::var_os("PATH")
    {
        writeln!(s, "export PATH={}", quote(path)?)?;
    }
    // cargo runs integration tests from their package's directory.
    writeln!(s, "cd {} || exit 1", quote(workspace_root().join("tests"))?)?;
    writeln!(
        s,
        "echo \"xtask-guest: kernel $(uname -r), $(nproc) CPUs, $(free -m | awk '/^Mem:/ {{print $2}}') MiB\""
    )?;
    writeln!(
        s,
        r#"# What every task is doing, when a binary runs far longer than it should: a hang
# under TCG otherwise shows only as silence until the VM is killed.
snapshot() {{
    {{
        echo "== $(date +%T) after $2 s in $1"
        ps -eo pid,ppid,stat,wchan:32,etime,time,args
        for task in /proc/[0-9]*/task/[0-9]*; do
            state=$(awk '/^State:/ {{print $2}}' "$task/status" 2>/dev/null)
            case $state in R|D)
                echo "-- $task ($state) $(cat "${{task%/task/*}}/comm" 2>/dev/null)"
                cat "$task/stack" 2>/dev/null
            esac
        done
    }} >> "$results/$1.hang" 2>&1
}}
watch_for_hang() {{
    waited=0
    while sleep 60; do
        waited=$((waited + 60))
        if [ "$waited" -ge {HANG_AFTER_S} ]; then
            snapshot "$1" "$waited"
            echo "xtask-guest: $1: still running after $waited s; tasks in $results/$1.hang"
            echo l > /proc/sysrq-trigger 2>/dev/null
        fi
    done
}}
run() {{
    name=$1; shift
    echo "xtask-guest: $name: starting"
    start=$(date +%s%N)
    watch_for_hang "$name" &
    watcher=$!
    "$@" 2>&1 | tee "$results/$name.out"
    rc=${{PIPESTATUS[0]}}
    kill "$watcher" 2>/dev/null
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "$name $rc $ms" >> "$results/status"
    echo "xtask-guest: $name: exit status $rc after $ms ms"
}}"#
    )?;
    for run in runs {
        write!(
            s,
            "run {} {} --test-threads=1",
            quote(&run.name)?,
            quote(&run.executable)?
        )?;
        for arg in &run.args {
            write!(s, " {}", quote(arg)?)?;
        }
        writeln!(s)?;
    }
    writeln!(s, "uname -r > \"$results/finished\"")?;
    Ok(s)
}

/// Boots after a guest died before its script ended (see `test_kernel`).
const MAX_REBOOTS: u32 = 2;

/// The results the guest left, per binary and per test.
struct Report {
    /// (binary, test, outcome) in the order they ran.
    rows: Vec<(String, String, Outcome)>,
    /// (binary, exit status, milliseconds) of each binary that finished.
    binaries: Vec<(String, Option<i32>, Option<u64>)>,
    passed: usize,
    failed: usize,
    ignored: usize,
}

impl Report {
    fn read(results: &Path, runs: &[BinaryRun]) -> Self {
        let status = fs::read_to_string(results.join("status")).unwrap_or_default();
        let mut rows = Vec::new();
        let mut binaries = Vec::new();
        for run in runs {
            let ended = status
                .lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let name = words.next()?;
                    (name == run.name).then(|| {
                        (
                            words.next().and_then(|w| w.parse().ok()),
                            words.next().and_then(|w| w.parse().ok()),
                        )
                    })
                })
                .next();
            let output =
                fs::read_to_string(results.join(format!("{}.out", run.name))).unwrap_or_default();
            let mut tests = libtest_output::parse(&output);
            for expected in &run.expected {
                if !tests.iter().any(|(test, _)| test == expected) {
                    tests.push((expected.clone(), Outcome::NotRun));
                }
            }
            let (code, ms) = ended.unwrap_or((None, None));
            // A binary that failed with no failed test (it crashed, or failed to start)
            // still fails the run.
            if ended.is_some()
                && code != Some(0)
                && !tests.iter().any(|(_, outcome)| outcome.is_failure())
            {
                tests.push(("(the test binary itself)".to_string(), Outcome::Failed));
            }
            if ended.is_none() && tests.is_empty() {
                tests.push(("(the test binary itself)".to_string(), Outcome::NotRun));
            }
            rows.extend(
                tests
                    .into_iter()
                    .map(|(test, outcome)| (run.name.clone(), test, outcome)),
            );
            binaries.push((run.name.clone(), code, ms));
        }
        let count = |pred: fn(Outcome) -> bool| rows.iter().filter(|(_, _, o)| pred(*o)).count();
        Report {
            passed: count(|o| o == Outcome::Passed),
            failed: count(Outcome::is_failure),
            ignored: count(|o| o == Outcome::Ignored),
            rows,
            binaries,
        }
    }

    fn print(&self, kernel: &KernelName, release: &str) {
        let width = |column: fn(&(String, String, Outcome)) -> usize, title: &str| {
            self.rows
                .iter()
                .map(column)
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let (wb, wt) = (width(|r| r.0.len(), "binary"), width(|r| r.1.len(), "test"));
        println!();
        println!("xtask: kernel {kernel} ({release}), per test:");
        println!("  {:wb$}  {:wt$}  result", "binary", "test");
        for (binary, test, outcome) in &self.rows {
            println!("  {binary:wb$}  {test:wt$}  {outcome}");
        }
        println!("xtask: kernel {kernel}, per test binary:");
        for (binary, code, ms) in &self.binaries {
            let time = ms.map_or("did not finish".to_string(), |ms| {
                format!("{:.1} s", ms as f64 / 1000.0)
            });
            let code = code.map_or(String::new(), |c| format!(", exit status {c}"));
            println!("  {binary:wb$}  {time}{code}");
        }
    }
}
