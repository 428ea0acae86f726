//! report.html's I/O table is by call site: io_siblings writes from two sibling functions
//! through one libc `write` (one leaf function, two call sites), and the report must list
//! them as two rows, each with the calls and bytes its function counted, where a table by
//! function has one row for the leaf. Then the page, in headless Chromium at 1400 px: the
//! two rows are in the table, the table fits the width, its numbers are right-aligned, and
//! a row opens to its whole path.

#[path = "../browser/json.rs"]
mod json;

// The report test drives more of the page than this one, which leaves part of the driver
// unused here.
#[allow(dead_code)]
#[path = "../browser/cdp.rs"]
mod cdp;

use std::path::Path;
use std::time::Duration;

use integration_tests::{FixtureResult, fixture, prerequisites, run_profiler, temp_dir};

use cdp::Browser;
use json::{Items, Json, quote};

/// The two writers of io_siblings: each calls write(2) from its own frame.
const WRITERS: [&str; 2] = ["write_header", "write_records"];

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

/// A call-site row of the report's data, with its names resolved.
#[derive(Debug)]
struct Site {
    process: String,
    syscall: String,
    caller: String,
    path: Vec<String>,
    calls: u64,
    bytes: u64,
}

fn sites(data: &Json) -> Vec<Site> {
    let table = &data["io_sites"];
    let strings: Vec<&str> = table["strings"]
        .items()
        .iter()
        .map(|s| s.as_str().unwrap_or_default())
        .collect();
    let name = |v: &Json| {
        let i = usize::try_from(v.as_u64().expect("a string index")).expect("an index");
        strings.get(i).copied().unwrap_or_default().to_owned()
    };
    table["rows"]
        .items()
        .iter()
        .map(|r| Site {
            process: name(&r["process"]),
            syscall: r["syscall"].as_str().unwrap_or_default().to_owned(),
            caller: name(&r["caller"]),
            path: r["path"].items().iter().map(name).collect(),
            calls: r["calls"].as_u64().unwrap_or(0),
            bytes: r["bytes"].as_u64().unwrap_or(0),
        })
        .collect()
}

#[test]
fn io_table_has_a_row_per_call_site_of_one_leaf_function() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("io_siblings");
    // A pause first, so that its exec is seen before its writes (see the I/O tests).
    let run = run_profiler(
        &[
            "--profiles".as_ref(),
            "io".as_ref(),
            "--format".as_ref(),
            "html".as_ref(),
            "--duration".as_ref(),
            "60s".as_ref(),
            "--".as_ref(),
            exe.as_os_str(),
            "500".as_ref(),
            result.as_os_str(),
        ],
        &out,
    );
    run.assert_success();
    let measured = FixtureResult::read(&result);
    let page = out.join("report.html");
    let all = sites(&report_data(&page));

    let mut leaves = Vec::new();
    for writer in WRITERS {
        let rows: Vec<&Site> = all
            .iter()
            .filter(|s| s.syscall == "write" && s.path.iter().any(|f| f == writer))
            .collect();
        let [row] = rows[..] else {
            panic!(
                "{writer} should be one call-site row of the report's I/O table, it is in {}: \
                 {rows:#?}\nall rows: {all:#?}",
                rows.len()
            );
        };
        assert_eq!(
            (row.process.as_str(), row.caller.as_str()),
            ("io_siblings", writer),
            "{row:#?}"
        );
        assert_eq!(
            (row.calls, row.bytes),
            (
                measured.u64(&format!("{writer}_calls")),
                measured.u64(&format!("{writer}_bytes"))
            ),
            "{writer}'s row does not have the calls and bytes it counted: {row:#?}"
        );
        leaves.push(row.path.last().cloned().unwrap_or_default());
    }
    // The point of rows by site: both end in the same function, which a table by function
    // would have made one row.
    assert_eq!(
        leaves[0], leaves[1],
        "the two sites end in different functions, so this run does not show sites of one \
         leaf apart"
    );

    // The page at 1400 px: the rows are there, the table fits, its numbers align right,
    // and a row opens to its path.
    let Some(chromium) = cdp::find_chromium() else {
        panic!(
            "Chromium is not installed: this test needs it (`cargo xtask setup --for-tests` \
             installs Debian's `chromium`)"
        );
    };
    let mut b = Browser::launch(&chromium, 1400, 900);
    b.open(
        &format!("file://{}", page.display()),
        "document.body && document.body.dataset.ready === 'true'",
    );
    b.click("#tab-io");
    let table = ".panel:not([hidden]) table.sites";
    b.wait_for(
        &format!("document.querySelector({}) !== null", quote(table)),
        Duration::from_secs(5),
    );
    for writer in WRITERS {
        let row = format!("{table} tr.site[data-name={}]", quote(writer));
        let count = b.eval(&format!(
            "document.querySelectorAll({}).length",
            quote(&row)
        ));
        assert_eq!(
            count.as_u64(),
            Some(1),
            "rows of {writer} in the page's table"
        );
    }
    let overflow = b.eval(&format!(
        "(() => {{ const t = document.querySelector({}); \
         return [t.scrollWidth, t.parentElement.clientWidth, document.documentElement.scrollWidth, window.innerWidth]; }})()",
        quote(table)
    ));
    let widths: Vec<u64> = overflow
        .items()
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::MAX) as u64)
        .collect();
    assert!(
        widths.len() == 4 && widths[0] <= widths[1] && widths[2] <= widths[3],
        "the call-site table does not fit 1400 px: [table, panel, page, window] widths {widths:?}"
    );
    let aligned = b.eval(&format!(
        "[...document.querySelectorAll({})].map(td => getComputedStyle(td).textAlign)",
        quote(&format!("{table} tr.site td:nth-child(n+4)"))
    ));
    assert!(
        !aligned.items().is_empty() && aligned.items().iter().all(|a| a == "right"),
        "the numbers' alignment: {aligned:?}"
    );
    b.click(&format!("{table} tr.site[data-name=\"write_records\"]"));
    b.wait_for(
        &format!(
            "document.querySelector({}) !== null",
            quote(&format!("{table} tr.site-path"))
        ),
        Duration::from_secs(5),
    );
    let path = b.eval(&format!(
        "[...document.querySelectorAll({})].map(li => li.textContent)",
        quote(&format!("{table} tr.site-path .frames li"))
    ));
    let path: Vec<&str> = path.items().iter().filter_map(Json::as_str).collect();
    assert!(
        path.contains(&"write_records") && path.contains(&"main"),
        "the opened row shows the path {path:?}"
    );
    let shots = integration_tests::workspace_dir().join("target/report-screenshots");
    b.screenshot(&shots.join("io-sites.png"));
}
