//! `report.html`: one self-contained page with every profile of a run (an interactive flame
//! graph and a function table each) and the findings, which works offline from a file.
//!
//! The page is `template.html` with `report.css`, `report.js` and the data inlined; the
//! data ([`data`]) is built from the same profiles the pprof and folded files are written
//! from. Nothing is fetched at run time, and the page's Content-Security-Policy forbids it.

mod data;
mod facts;
mod findings;
mod io_sites;
mod processes;
mod table;
mod tree;

use crate::output::strings::escape_html as escape;
use std::path::PathBuf;

use anyhow::Context;
use profiler_model::{Profile, RunFacts};

use super::OutputDir;
use crate::analysis::findings::Analysis;

use facts::Header;

const TEMPLATE: &str = include_str!("template.html");
const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// The report's file name in the output directory.
pub const FILE_NAME: &str = "report.html";

/// The page for `profiles` and what `analysis` found in them.
///
/// The header's run facts come from the `run:` comment the profiles carry; `fallback` fills
/// what that lacks (the live host's facts for a run that just ended), and `source` says
/// where the data came from.
pub fn render(
    profiles: &[Profile],
    analysis: &Analysis,
    fallback: RunFacts,
    source: &str,
) -> anyhow::Result<String> {
    let header = Header::of(profiles, fallback, source);
    let facts = &header.facts;
    let title = match (&facts.host, &facts.target) {
        (Some(host), Some(target)) => format!("Profile of {target} on {host}"),
        (Some(host), None) => format!("Profile on {host}"),
        _ => "Profile report".to_owned(),
    };
    let data = data::build(profiles, analysis, header);
    let json = serde_json::to_string(&data).context("cannot encode the report's data")?;
    // '<' only occurs inside JSON strings, where \u003c means the same; without it a
    // function name containing "</script>" would end the data block early.
    let json = json.replace('<', "\\u003c");
    // The inlined parts hold no placeholders, so the order of these replacements is safe.
    Ok(TEMPLATE
        .replacen("@TITLE@", &escape(&title), 1)
        .replacen("/*@CSS@*/", CSS, 1)
        .replacen("/*@JS@*/", JS, 1)
        .replacen("@DATA@", &json, 1))
}

/// Renders the report and writes it to `dir/report.html`, handed to the sudo user; returns
/// its path.
///
/// # Errors
/// `cannot write DIR/report.html: reason`, with nothing left at that name.
pub fn write(
    profiles: &[Profile],
    analysis: &Analysis,
    fallback: RunFacts,
    source: &str,
    dir: &OutputDir,
) -> anyhow::Result<PathBuf> {
    dir.write(FILE_NAME, |out| {
        let page = render(profiles, analysis, fallback, source)?;
        Ok(out.write_all(page.as_bytes())?)
    })
}

/// Where a live run's report says its data came from.
pub const LIVE_SOURCE: &str = "this run";

/// The facts of the machine the profiler runs on now: for a live run's report only, since a
/// report of earlier files may be rendered elsewhere.
pub fn live_facts() -> RunFacts {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    RunFacts {
        host: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        cpus: u64::try_from(cpus).ok().filter(|&n| n > 0),
        ..RunFacts::default()
    }
}

#[cfg(test)]
mod tests {
    use profiler_model::{Comment, fixture};

    use super::*;
    use crate::config::SmallIo;

    #[test]
    fn template_has_each_placeholder_once() {
        for placeholder in ["@TITLE@", "/*@CSS@*/", "/*@JS@*/", "@DATA@"] {
            assert_eq!(TEMPLATE.matches(placeholder).count(), 1, "{placeholder}");
            assert!(!CSS.contains(placeholder) && !JS.contains(placeholder));
        }
    }

    #[test]
    fn page_is_self_contained_and_carries_the_data() {
        let mut p = fixture::profile();
        p.comments.insert(
            0,
            Comment::read(
                "run: host box, kernel 6.1, 4 CPUs; target: the whole host; window: 2.00s from \
             2023-11-14T22:13:20Z; the duration elapsed"
                    .to_owned(),
            ),
        );
        // A hostile name must not end the data block.
        p.locations[0].lines[0].function = "main</script><b>".to_owned();
        let analysis = Analysis::of(std::slice::from_ref(&p), SmallIo::default());
        let page = render(&[p], &analysis, RunFacts::default(), "test").unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>Profile of the whole host on box</title>"));
        assert!(!page.contains("@DATA@") && !page.contains("/*@JS@*/"));
        assert_eq!(page.matches("</script>").count(), 2, "only the page's own");
        // Nothing is loaded from elsewhere.
        for outside in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!page.contains(outside), "{outside}");
        }
        assert!(page.contains("default-src 'none'"));

        let start = page.find("type=\"application/json\">").unwrap() + 24;
        let end = start + page[start..].find("</script>").unwrap();
        let data: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["run"]["host"], "box");
        assert_eq!(data["run"]["cpus"], 4);
        assert_eq!(data["profiles"][0]["name"], "cpu");
        assert_eq!(data["profiles"][0]["totals"][0], 10);
        let strings = data["profiles"][0]["strings"].as_array().unwrap();
        assert!(strings.iter().any(|s| s == "main</script><b>"));
    }

    #[test]
    fn live_facts_describe_this_machine() {
        let f = live_facts();
        assert!(f.host.is_some() && f.kernel.is_some(), "{f:?}");
        assert!(f.cpus.unwrap_or(0) >= 1);
    }
}
