//! SVG flame graphs, drawn by `inferno` from the folded stacks.

use crate::output::strings::escape_html as escape;
use std::io::Write;

use anyhow::Context;
use inferno::flamegraph::color::{BasicPalette, Palette};
use inferno::flamegraph::{self, Options};

use super::folded;
use crate::profile::{Profile, ProfileKind};

/// Renders `profile` as an SVG flame graph into `out`; an empty profile gets a small SVG
/// that says "no samples".
pub fn write(profile: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
    let svg = render(profile).context("cannot draw the flame graph")?;
    Ok(out.write_all(&svg)?)
}

/// The SVG document for `profile`.
fn render(profile: &Profile) -> std::io::Result<Vec<u8>> {
    let lines = folded::lines(profile);
    let title = title(profile);
    if lines.is_empty() {
        // inferno refuses empty input, and an empty file would look like a crash.
        return Ok(empty_svg(&title).into_bytes());
    }
    let mut options = Options::default();
    options.title = title;
    options.count_name = count_name(profile);
    options.colors = palette(profile.kind);
    options.subtitle = Some(format!(
        "{} over {:.1} s",
        profile
            .sample_types
            .get(profile.default_sample_type)
            .map_or("samples", |t| &t.kind),
        profile.duration.as_secs_f64()
    ));
    // Color by function name, so a function keeps its color across runs and graphs.
    options.hash = true;
    // folded::lines is already sorted.
    options.no_sort = true;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)?;
    Ok(svg)
}

/// "CPU profile", "IO profile", ...: the profile's name as a heading.
fn title(profile: &Profile) -> String {
    format!("{} profile", profile.kind.name().to_uppercase())
}

/// What one unit of width stands for, as shown in the tooltips ("123 samples").
fn count_name(profile: &Profile) -> String {
    match profile.sample_types.get(profile.default_sample_type) {
        // A bare count is named by what is counted; a measured quantity by its unit, since
        // "123 cpu" reads worse than "123 nanoseconds".
        Some(t) if t.unit == "count" || t.unit.is_empty() => t.kind.clone(),
        Some(t) => t.unit.clone(),
        None => "samples".to_owned(),
    }
}

/// Flame graph colors by profile kind: warm for CPU, blues for I/O, cooler for waiting,
/// greens for memory.
fn palette(kind: ProfileKind) -> Palette {
    Palette::Basic(match kind {
        ProfileKind::Cpu => BasicPalette::Hot,
        ProfileKind::Io => BasicPalette::Io,
        ProfileKind::Block => BasicPalette::Blue,
        ProfileKind::Heap => BasicPalette::Mem,
    })
}

/// A minimal valid SVG with the title and "no samples".
fn empty_svg(title: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="90" viewBox="0 0 1200 90" xmlns="http://www.w3.org/2000/svg">"#,
            "\n",
            r#"<rect x="0" y="0" width="100%" height="100%" fill="rgb(238,238,238)"/>"#,
            "\n",
            r#"<text x="600" y="30" text-anchor="middle" font-family="Verdana" font-size="17">{}</text>"#,
            "\n",
            r#"<text x="600" y="65" text-anchor="middle" font-family="Verdana" font-size="14">no samples</text>"#,
            "\n</svg>\n"
        ),
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixture;
    use crate::profile::ValueType;

    #[test]
    fn svg_names_the_functions() {
        let mut out = Vec::new();
        write(&fixture::profile(), &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        for name in ["main", "run", "app", "CPU profile", "nanoseconds"] {
            assert!(svg.contains(name), "no {name} in the SVG");
        }
        // `a` and `b` are too short to search for alone; their tooltips name them.
        assert!(svg.contains("<title>a ("), "no frame for a");
        assert!(svg.contains("<title>b ("), "no frame for b");
    }

    #[test]
    fn empty_profile_still_writes_an_svg() {
        let mut out = Vec::new();
        write(&fixture::empty(), &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("<svg") && svg.contains("no samples") && svg.contains("CPU profile"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn only_zero_samples_is_empty_too() {
        let mut p = fixture::profile();
        for s in &mut p.samples {
            s.values = vec![0, 0];
        }
        let svg = String::from_utf8(render(&p).unwrap()).unwrap();
        assert!(svg.contains("no samples"));
    }

    #[test]
    fn counts_are_named_sensibly() {
        let mut p = fixture::profile();
        assert_eq!(count_name(&p), "nanoseconds");
        p.default_sample_type = 0;
        assert_eq!(count_name(&p), "samples");
        p.sample_types = vec![ValueType::new("requests", "")];
        assert_eq!(count_name(&p), "requests");
        assert_eq!(escape(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
