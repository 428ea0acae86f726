//! SVG flame graphs, drawn by `inferno` from the folded stacks.

use crate::output::strings::escape_html as escape;
use std::io::Write;

use anyhow::Context;
use inferno::flamegraph::color::{BasicPalette, Palette};
use inferno::flamegraph::{self, Options};
use profiler_model::{Profile, ProfileKind};

use super::folded;

/// Renders `profile` as an SVG flame graph into `out`; an empty profile gets a small SVG
/// that says "no samples".
pub fn write(profile: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
    let svg = render(profile).context("cannot draw the flame graph")?;
    Ok(out.write_all(&svg)?)
}

/// The most frames an SVG flame graph draws: deeper frames are cut at the depth that keeps
/// the graph's tree within this, and said in its subtitle. A few hundred bytes each, this
/// keeps a flame graph of any run to tens of megabytes (a 600-deep recursion through a
/// 100-deep inline chain drew half a gigabyte).
pub const MAX_SVG_FRAMES: usize = 60_000;
/// The most frames of one stack an SVG flame graph draws (16 pixels each, beyond this the
/// graph is taller than anyone scrolls).
pub const MAX_SVG_DEPTH: usize = 2048;
/// The most characters of a frame's name an SVG flame graph shows (in its tooltip; the
/// label is cut to the frame's width anyway): with [`MAX_SVG_FRAMES`], it bounds the
/// file's size whatever names a target gives its functions.
pub const MAX_SVG_NAME_CHARS: usize = 256;
/// The frame standing for the frames cut below it.
const ELIDED_FRAME: &str = "[deeper frames elided]";

/// The SVG document for `profile`.
fn render(profile: &Profile) -> std::io::Result<Vec<u8>> {
    let lines = short_names(folded::lines(profile), MAX_SVG_NAME_CHARS);
    let (lines, cut) = within_budget(lines, MAX_SVG_FRAMES, MAX_SVG_DEPTH);
    let title = title(profile);
    if lines.is_empty() {
        // inferno refuses empty input, and an empty file would look like a crash.
        return Ok(empty_svg(&title).into_bytes());
    }
    let mut options = Options::default();
    options.title = title;
    options.count_name = count_name(profile);
    options.colors = palette(profile.kind);
    let mut subtitle = format!(
        "{} over {:.1} s",
        profile
            .sample_types
            .get(profile.default_sample_type)
            .map_or("samples", |t| &t.kind),
        profile.duration.as_secs_f64()
    );
    if let Some(cut) = cut {
        subtitle.push_str(&format!(
            "; frames deeper than {} cut ({} frames of {} stacks), to stay under \
             {MAX_SVG_FRAMES} frames: the HTML report and the pprof file have them all",
            cut.depth, cut.frames, cut.stacks
        ));
    }
    options.subtitle = Some(subtitle);
    // Color by function name, so a function keeps its color across runs and graphs.
    options.hash = true;
    // The lines are sorted (folded::lines sorts, within_budget sorts what it cuts).
    options.no_sort = true;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)?;
    Ok(svg)
}

/// Folded `lines` (sorted) with every frame name over `max_chars` characters cut to that
/// with an ellipsis, merged and sorted again when any was.
fn short_names(lines: Vec<String>, max_chars: usize) -> Vec<String> {
    let too_long = |line: &String| {
        line.rsplit_once(' ')
            .is_some_and(|(stack, _)| stack.split(';').any(|f| f.chars().count() > max_chars))
    };
    if !lines.iter().any(too_long) {
        return lines;
    }
    let mut merged: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for line in &lines {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let frames: Vec<String> = stack
            .split(';')
            .map(|f| {
                if f.chars().count() > max_chars {
                    let mut short: String = f.chars().take(max_chars - 1).collect();
                    short.push('…');
                    short
                } else {
                    f.to_owned()
                }
            })
            .collect();
        let slot = merged.entry(frames.join(";")).or_default();
        *slot = slot.saturating_add(count.parse().unwrap_or(0));
    }
    merged
        .into_iter()
        .map(|(key, count)| format!("{key} {count}"))
        .collect()
}

/// What [`within_budget`] cut: the depth kept, and the frames and stacks cut below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    depth: usize,
    frames: usize,
    stacks: usize,
}

/// Folded `lines` (sorted) cut to the greatest depth at which their merged tree, one
/// elision frame under each cut path included, has at most `max_frames` frames and no
/// path is deeper than `max_depth`; with what was cut, if anything.
///
/// The tree a flame graph draws has a frame per distinct path prefix; sorted by frames,
/// a stack adds the frames past the prefix it shares with the one before it, so its size
/// at every depth is counted in one pass per depth tried (a binary search on the depth).
fn within_budget(
    lines: Vec<String>,
    max_frames: usize,
    max_depth: usize,
) -> (Vec<String>, Option<Cut>) {
    let parsed: Vec<(Vec<&str>, &str)> = lines
        .iter()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').unwrap_or((line, "0"));
            (stack.split(';').collect(), count)
        })
        .collect();
    let mut order: Vec<usize> = (0..parsed.len()).collect();
    order.sort_by(|&a, &b| parsed[a].0.cmp(&parsed[b].0));
    // (frames, frames shared with the stack before) per stack, in frame order.
    let shapes: Vec<(usize, usize)> = order
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let frames = &parsed[at].0;
            let shared = i.checked_sub(1).map_or(0, |prev| {
                let before = &parsed[order[prev]].0;
                frames
                    .iter()
                    .zip(before)
                    .take_while(|(a, b)| a == b)
                    .count()
            });
            (frames.len(), shared)
        })
        .collect();
    // Frames of the tree cut at `depth`, elision frames included.
    let size = |depth: usize| -> usize {
        shapes
            .iter()
            .map(|&(frames, shared)| {
                let kept = frames.min(depth).saturating_sub(shared.min(depth));
                // A cut stack ends in an elision frame, new unless the stack before shares
                // its whole kept path (then it was cut too, or ends there: one frame off).
                let elision = usize::from(frames > depth && shared < depth);
                kept + elision
            })
            .sum()
    };
    let deepest = shapes.iter().map(|&(frames, _)| frames).max().unwrap_or(0);
    if deepest <= max_depth && size(deepest) <= max_frames {
        return (lines, None);
    }
    // The greatest depth within budget; the size grows with the depth.
    let (mut low, mut high) = (1, deepest.min(max_depth));
    while low < high {
        let mid = (low + high).div_ceil(2);
        if size(mid) <= max_frames {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let depth = low;
    let mut cut = Cut {
        depth,
        frames: 0,
        stacks: 0,
    };
    let mut merged: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for (frames, count) in &parsed {
        let count: i64 = count.parse().unwrap_or(0);
        let mut key = if frames.len() > depth {
            cut.frames += frames.len() - depth;
            cut.stacks += 1;
            let mut key = frames[..depth].join(";");
            key.push(';');
            key.push_str(ELIDED_FRAME);
            key
        } else {
            frames.join(";")
        };
        let slot = merged.entry(std::mem::take(&mut key)).or_default();
        *slot = slot.saturating_add(count);
    }
    let lines = merged
        .into_iter()
        .map(|(key, count)| format!("{key} {count}"))
        .collect();
    (lines, Some(cut))
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
        ProfileKind::OffCpu => BasicPalette::Aqua,
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
    use profiler_model::ValueType;
    use profiler_model::fixture;

    use super::*;

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
    fn deep_stacks_are_cut_to_the_budget_and_said() {
        // 40 stacks of 1,000 frames, sharing only their first 10.
        let lines: Vec<String> = (0..40)
            .map(|s| {
                let frames: Vec<String> = (0..1000)
                    .map(|d| {
                        if d < 10 {
                            format!("f{d}")
                        } else {
                            format!("s{s}_{d}")
                        }
                    })
                    .collect();
                format!("{} 1", frames.join(";"))
            })
            .collect();
        let mut sorted = lines.clone();
        sorted.sort();
        let (kept, cut) = within_budget(sorted.clone(), 1000, MAX_SVG_DEPTH);
        let cut = cut.expect("over budget");
        // 10 shared frames, then 40 paths and their elisions:
        // 10 + 40 * (depth - 10 + 1) <= 1000.
        assert_eq!(cut.depth, 33, "{cut:?}");
        assert_eq!((cut.stacks, cut.frames), (40, 40 * (1000 - 33)));
        assert_eq!(kept.len(), 40);
        assert!(
            kept.iter()
                .all(|l| l.ends_with(&format!(";{ELIDED_FRAME} 1")))
        );
        assert!(kept.windows(2).all(|w| w[0] <= w[1]), "still sorted");
        // Within budget, nothing changes.
        let (same, none) = within_budget(sorted.clone(), 1_000_000, MAX_SVG_DEPTH);
        assert_eq!((same, none), (sorted.clone(), None));
        // Too deep for the graph, however few frames.
        let (_, cut) = within_budget(sorted, 1_000_000, 100);
        assert_eq!(cut.unwrap().depth, 100);
    }

    #[test]
    fn long_names_are_cut_for_the_graph() {
        let long = "n".repeat(10_000);
        let lines = vec![format!("app;{long}a;leaf 2"), format!("app;{long}b;leaf 3")];
        let short = short_names(lines, 100);
        let cut = format!("{}…", "n".repeat(99));
        assert_eq!(short, [format!("app;{cut};leaf 5")], "merged once cut");
        let fine = vec!["app;main 1".to_owned()];
        assert_eq!(short_names(fine.clone(), 100), fine);
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
