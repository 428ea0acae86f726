//! The HTML report end to end: one command-mode run of a fixture that burns CPU, churns
//! the allocator, makes tiny reads and contends for a lock, then `report.html` opened in
//! headless Chromium (no network) and driven with real clicks and typing: every tab draws
//! its flame graph with the fixture's functions, a click zooms, search highlights and shows
//! a share, and the findings lead to their frames. Also `profiler report DIR` without root,
//! and the speedscope files.
//!
//! Chromium is Debian's `chromium`, installed by `cargo xtask setup --for-tests`; as root
//! without it the browser test fails rather than skips, since CI must run it.

#[path = "../browser/json.rs"]
mod json;

#[path = "../browser/cdp.rs"]
mod cdp;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::{
    FixtureResult, Run, fixture, prerequisites, profiler_bin, run_command, run_profiler, set_mode,
    setpriv_nobody, temp_dir, workspace_dir,
};

use cdp::Browser;
use json::{Items, Json, quote};

/// The report of a 30 s whole-host run must stay under this; a command run is far smaller.
const MAX_REPORT_BYTES: u64 = 2 * 1024 * 1024;

/// Where the screenshots of each tab go, for people to look at.
fn screenshot_dir() -> PathBuf {
    workspace_dir().join("target/report-screenshots")
}

/// A finished profiler run of report_mix: its output directory and what it printed.
struct MixRun {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    run: Run,
    measured: FixtureResult,
}

/// Profiles one run of report_mix (a second of CPU burn, half a second of allocation,
/// 20,000 1-byte reads, 4 threads on one mutex) with every profile, `formats` and `top`
/// rows per summary table.
fn profile_report_mix(formats: &str, top: &str) -> MixRun {
    let tmp = temp_dir();
    let exe = fixture("report_mix");
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let args: Vec<&OsStr> = vec![
        "-F".as_ref(),
        "499".as_ref(),
        "--duration".as_ref(),
        "60s".as_ref(),
        "--format".as_ref(),
        formats.as_ref(),
        "--top".as_ref(),
        top.as_ref(),
        "--".as_ref(),
        exe.as_os_str(),
        "1".as_ref(),
        result.as_os_str(),
    ];
    let run = run_profiler(&args, &out);
    run.assert_success();
    let measured = FixtureResult::read(&result);
    MixRun {
        _tmp: tmp,
        out,
        run,
        measured,
    }
}

/// The summary part of a run's stdout, from the run facts to the findings count, as
/// sorted lines: the I/O table orders call sites with equal counts arbitrarily (so which
/// of them make the top N varies too), and the profiled command's own output may come
/// first.
fn summary(stdout: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("run: "))
        .take_while(|l| !l.starts_with("Findings: "))
        .collect();
    assert!(!lines.is_empty(), "no summary in\n{stdout}");
    lines.extend(stdout.lines().find(|l| l.starts_with("Findings: ")));
    lines.sort_unstable();
    lines
}

/// The JSON data embedded in a report page.
fn report_data(page: &Path) -> Json {
    let html = std::fs::read_to_string(page)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
    let open = "<script id=\"report-data\" type=\"application/json\">";
    let start = html.find(open).expect("the report embeds its data") + open.len();
    let end = start
        + html[start..]
            .find("</script>")
            .expect("the data block ends");
    json::parse(&html[start..end]).expect("the embedded data is JSON")
}

fn chromium_or_fail() -> PathBuf {
    cdp::find_chromium().unwrap_or_else(|| {
        panic!(
            "Chromium is not installed (looked for $CHROMIUM, /usr/bin/chromium and chromium, \
             chromium-browser, google-chrome on PATH): the report's browser test needs it. \
             Run `cargo xtask setup --for-tests`, which installs Debian's `chromium`."
        )
    })
}

/// The visible panel's flame graph.
const GRAPH: &str = ".panel:not([hidden]) .graph";

#[test]
fn report_shows_every_profile_and_finding_in_a_browser() {
    if !prerequisites() {
        return;
    }
    let chromium = chromium_or_fail();
    let mix = profile_report_mix("pprof,folded,svg,html", "5");
    let stdout = &mix.run.stdout;
    for wanted in [
        "* pread64 in tiny_reads: ",
        "waited in contend_lock (",
        "* allocation: ",
        "report.html",
    ] {
        assert!(
            stdout.contains(wanted),
            "the summary lacks {wanted:?}\n{}",
            mix.run.transcript()
        );
    }
    let page = mix.out.join("report.html");
    let size = std::fs::metadata(&page)
        .expect("report.html was written")
        .len();
    assert!(
        size > 0 && size < MAX_REPORT_BYTES,
        "report.html is {size} bytes"
    );

    let shots = screenshot_dir();
    let mut b = Browser::launch(&chromium, 1400, 1000);
    let url = format!("file://{}", page.display());
    b.open(
        &url,
        "document.body && document.body.dataset.ready === 'true'",
    );

    // The header: the run's facts and one card per profile with what was received and lost.
    let facts = b.eval("document.getElementById('run-facts').textContent");
    let facts = facts.as_str().unwrap_or_default().to_owned();
    for key in [
        "host: ",
        "kernel: ",
        "CPUs: ",
        "target: command",
        "report_mix",
        "window: ",
    ] {
        assert!(
            facts.contains(key),
            "the header's facts lack {key:?}: {facts}"
        );
    }
    let cards =
        b.eval("[...document.querySelectorAll('.card')].map(c => c.textContent).join('\\n')");
    let cards = cards.as_str().unwrap_or_default().to_owned();
    for key in ["CPU", "I/O", "Blocking", "499 Hz", "received: ", "lost: "] {
        assert!(
            cards.contains(key),
            "the profile cards lack {key:?}: {cards}"
        );
    }

    // Findings first: the tiny reads, the contended mutex and the allocator churn.
    assert_eq!(
        b.eval("document.body.dataset.tab").as_str(),
        Some("findings")
    );
    let findings = b.eval(
        "[...document.querySelectorAll('#findings .finding')].map(f => \
         [f.dataset.kind, f.textContent])",
    );
    let has = |kind: &str, text: &str| {
        findings.items().iter().position(|f| {
            f[0].as_str() == Some(kind) && f[1].as_str().is_some_and(|t| t.contains(text))
        })
    };
    let small_io = has("small-io", "tiny_reads");
    let contention = has("contention", "waited in contend_lock");
    let allocation = has("allocation", "churn_alloc");
    assert!(
        small_io.is_some() && contention.is_some() && allocation.is_some(),
        "the findings panel should list the tiny reads, the contended lock and the allocation \
         churn; it lists {findings:?}"
    );
    b.screenshot(&shots.join("findings.png"));

    // Every tab draws its flame graph with the fixture's functions, and their table rows.
    for (tab, function) in [
        ("cpu", "burn_cpu"),
        ("io", "tiny_reads"),
        ("block", "contend_lock"),
    ] {
        b.click(&format!("#tab-{tab}"));
        let frame = format!(
            "{GRAPH}[data-profile={tab}] .frame[data-name={}]",
            quote(function)
        );
        b.wait_for(
            &format!("document.querySelector({})", quote(&frame)),
            Duration::from_secs(5),
        );
        let row = format!(
            ".panel:not([hidden]) table.top tr[data-name={}]",
            quote(function)
        );
        assert!(
            b.eval(&format!("!!document.querySelector({})", quote(&row)))
                .as_bool()
                == Some(true),
            "the {tab} table has no row for {function}"
        );
        b.screenshot(&shots.join(format!("{tab}.png")));
    }

    // Hover shows the full name, file:line and the values.
    b.click("#tab-cpu");
    let burn = format!("{GRAPH} .frame[data-name=\"burn_cpu\"]");
    b.hover(&burn);
    let tip = b.eval("document.getElementById('tooltip').hidden ? '' : document.getElementById('tooltip').textContent");
    let tip = tip.as_str().unwrap_or_default().to_owned();
    assert!(
        tip.contains("burn_cpu") && tip.contains("report_mix.c:") && tip.contains("samples: "),
        "hovering burn_cpu shows {tip:?}"
    );

    // A click zooms: the clicked frame becomes the full width.
    let width = |b: &mut Browser, selector: &str| {
        b.eval(&format!(
            "document.querySelector({}).getBoundingClientRect().width",
            quote(selector)
        ))
        .as_f64()
        .unwrap_or(0.0)
    };
    let graph_width = width(&mut b, GRAPH);
    let before = width(&mut b, &burn);
    assert!(
        before < graph_width * 0.98,
        "burn_cpu is already {before} of {graph_width} px wide"
    );
    b.click(&burn);
    b.wait_for(
        &format!(
            "document.querySelector({}).dataset.zoomName === 'burn_cpu'",
            quote(GRAPH)
        ),
        Duration::from_secs(5),
    );
    let after = width(&mut b, &format!("{GRAPH} .frame.zoomed"));
    assert!(
        (after - graph_width).abs() <= 3.0,
        "after the click burn_cpu is {after} px wide, the graph {graph_width} px"
    );
    b.screenshot(&shots.join("cpu-zoomed.png"));
    b.click(".panel:not([hidden]) .reset");
    b.wait_for(
        &format!(
            "document.querySelector({}).dataset.zoom === '0'",
            quote(GRAPH)
        ),
        Duration::from_secs(5),
    );

    // Search highlights the matching frames and shows their share.
    b.click("#tab-io");
    b.click(".panel:not([hidden]) input.search");
    b.type_text("tiny_r");
    b.wait_for(
        &format!(
            "document.querySelector({}) !== null",
            quote(&format!("{GRAPH} .frame.match"))
        ),
        Duration::from_secs(5),
    );
    let matched = b.eval(&format!(
        "[...document.querySelectorAll({})].map(f => f.dataset.name)",
        quote(&format!("{GRAPH} .frame.match"))
    ));
    assert!(
        !matched.items().is_empty()
            && matched
                .items()
                .iter()
                .all(|n| n.as_str().is_some_and(|n| n.contains("tiny_r"))),
        "highlighted frames: {matched:?}"
    );
    let share = b.eval("document.querySelector('.panel:not([hidden]) .match-share').textContent");
    let share_pct = b
        .eval("Number(document.querySelector('.panel:not([hidden]) .match-share').dataset.share)")
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        share.as_str().is_some_and(|s| s.contains('%')) && share_pct > 50.0,
        "the search share says {share:?} ({share_pct}%); tiny_reads makes nearly every call"
    );
    b.screenshot(&shots.join("io-search.png"));

    // Each finding leads to its tab, zoomed to its function, highlighted.
    for (index, tab, function) in [
        (contention, "block", Some("contend_lock")),
        (small_io, "io", Some("tiny_reads")),
        (allocation, "cpu", None),
    ] {
        let index = index.expect("checked above") + 1;
        b.click("#tab-findings");
        b.click(&format!(
            "#findings .finding:nth-of-type({index}) button.show"
        ));
        b.wait_for(
            &format!("document.body.dataset.tab === {}", quote(tab)),
            Duration::from_secs(5),
        );
        let zoomed = b.eval(&format!(
            "document.querySelector({}).dataset.zoomName",
            quote(GRAPH)
        ));
        let zoomed = zoomed.as_str().unwrap_or_default().to_owned();
        match function {
            Some(f) => assert_eq!(zoomed, f, "the {tab} finding zooms to {zoomed:?}"),
            // The allocator's heaviest frame: malloc or free under one of glibc's names.
            None => assert!(
                zoomed.contains("malloc") || zoomed.contains("free"),
                "the allocation finding zooms to {zoomed:?}"
            ),
        }
        let highlighted = b.eval(&format!(
            "document.querySelectorAll({}).length",
            quote(&format!("{GRAPH} .frame.match"))
        ));
        assert!(
            highlighted.as_f64().unwrap_or(0.0) >= 1.0,
            "the {tab} finding highlights no frame"
        );
        b.screenshot(&shots.join(format!("finding-{tab}.png")));
    }

    // Offline: the page fetched nothing but itself, and threw nothing.
    let fetched: Vec<String> = b
        .requested_urls()
        .into_iter()
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:") && !u.starts_with("about:"))
        .collect();
    assert!(fetched.is_empty(), "the report requested {fetched:?}");
    let thrown: Vec<&Json> = b
        .events
        .iter()
        .filter(|e| e["method"].as_str() == Some("Runtime.exceptionThrown"))
        .collect();
    assert!(thrown.is_empty(), "the page threw: {thrown:?}");
    eprintln!(
        "report.html: {size} bytes; screenshots in {}; fixture measured {:?}",
        shots.display(),
        mix.measured.0
    );
}

/// `profiler report --top 1000 DIR` as user nobody, with a copy of the binary nobody can
/// run.
fn report_as_nobody(dir: &Path, scratch: &Path) -> Run {
    let bin = scratch.join("profiler");
    if !bin.exists() {
        std::fs::copy(profiler_bin(), &bin).expect("copy the profiler binary");
        set_mode(&bin, 0o755);
    }
    let mut cmd = setpriv_nobody();
    cmd.arg(&bin)
        .args(["report", "--top", "1000"])
        .arg(dir)
        .current_dir(scratch);
    run_command(cmd)
}

#[test]
fn report_subcommand_rerenders_from_pprof_without_root() {
    if !prerequisites() {
        return;
    }
    // Tables long enough to hold every row, so that ties cannot change what is shown.
    let mix = profile_report_mix("pprof,html,speedscope", "1000");

    // The speedscope files speedscope.app opens: frames, root-first samples, weights.
    for name in ["cpu", "io", "block"] {
        let path = mix.out.join(format!("{name}.speedscope.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc = json::parse(&text).expect("speedscope JSON");
        assert_eq!(
            doc["$schema"].as_str(),
            Some("https://www.speedscope.app/file-format-schema.json")
        );
        let profile = &doc["profiles"][0];
        assert_eq!(profile["type"].as_str(), Some("sampled"));
        assert_eq!(
            profile["samples"].items().len(),
            profile["weights"].items().len()
        );
        assert!(!profile["samples"].items().is_empty(), "{name}: no samples");
    }
    assert!(
        !mix.out.join("cpu.folded").exists(),
        "--format left out folded"
    );

    // Re-rendered by an unprivileged user from a copy of the pprof files.
    let scratch = temp_dir();
    set_mode(scratch.path(), 0o755);
    let dir = scratch.path().join("again");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o777);
    for name in ["cpu.pb.gz", "io.pb.gz", "block.pb.gz"] {
        std::fs::copy(mix.out.join(name), dir.join(name)).unwrap();
    }
    let again = report_as_nobody(&dir, scratch.path());
    again.assert_success();
    // The same numbers and findings as at the end of the run.
    assert_eq!(
        summary(&again.stdout),
        summary(&mix.run.stdout),
        "`profiler report` summarizes the files differently from the run"
    );
    let live = report_data(&mix.out.join("report.html"));
    let rerendered = report_data(&dir.join("report.html"));
    assert_eq!(live["profiles"], rerendered["profiles"]);
    assert_eq!(live["findings"], rerendered["findings"]);
    assert_eq!(live["run"]["host"], rerendered["run"]["host"]);

    // A file that is not a profile is one clear error naming it.
    let bad = scratch.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    set_mode(&bad, 0o777);
    std::fs::write(bad.join("cpu.pb.gz"), b"\x1f\x8b\x08\x00garbage").unwrap();
    report_as_nobody(&bad, scratch.path()).assert_error_mentioning(&["cpu.pb.gz"]);
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    report_as_nobody(&empty, scratch.path()).assert_error_mentioning(&["pb.gz"]);
}
