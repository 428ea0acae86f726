//! Folded stacks, the line format flame-graph tools (`flamegraph.pl`, inferno, speedscope)
//! read: `comm;root;...;leaf count`, one line per distinct stack; an off-CPU wait with its
//! waker's stack goes on as `;--;waker leaf;...;waker root;waker comm`.

use std::collections::BTreeMap;
use std::io::Write;

use profiler_model::LabelKey;
use profiler_model::{Profile, Sample};

/// The folded lines of `profile`, sorted, weighted by the default sample type.
///
/// Each line starts with the process's command name (or its pid, or `[unknown]`), then the
/// frames root first with inlined frames expanded. Equal lines are merged and lines whose
/// weight sums to zero or less are dropped, since flame graphs cannot draw them.
pub fn lines(profile: &Profile) -> Vec<String> {
    let mut weights: BTreeMap<String, i64> = BTreeMap::new();
    for sample in &profile.samples {
        let Some(&weight) = sample.values.get(profile.default_sample_type) else {
            continue;
        };
        let mut key = process_frame(sample);
        for frame in profile.stack_frame_labels(sample.stack) {
            key.push(';');
            key.push_str(&frame_name(&frame));
        }
        if let Some(waker) = &sample.waker {
            // As bcc's offwaketime folds them: the waker's stack above a `--` frame, leaf
            // first, and its process on top.
            key.push_str(";--");
            for frame in profile.stack_frame_labels(waker.stack).iter().rev() {
                key.push(';');
                key.push_str(&frame_name(frame));
            }
            key.push(';');
            key.push_str(&frame_name(&waker.comm));
        }
        let slot = weights.entry(key).or_default();
        *slot = slot.saturating_add(weight);
    }
    // BTreeMap iterates in key order, which gives the sorted output tools expect.
    weights
        .into_iter()
        .filter(|&(_, w)| w > 0)
        .map(|(key, w)| format!("{key} {w}"))
        .collect()
}

/// Writes the folded lines of `profile` to `out`, one per line.
pub fn write(profile: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
    for line in lines(profile) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A frame name made safe for the folded format.
///
/// The format has no escaping: `;` separates frames, the last whitespace separates the
/// count, a newline ends the record, and readers trim each line. So a `;` inside a name
/// (Rust's `[u8; 4]`, C++ lambdas) would split one frame into two, and a newline would split
/// the record. `;` becomes `:`, and each whitespace run (including newlines) becomes one
/// space, trimmed at the ends, which keeps names readable and lines intact.
pub fn frame_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| if c == ';' { ':' } else { c }));
    }
    if out.is_empty() {
        "[unknown]".to_owned()
    } else {
        out
    }
}

/// The first frame of a sample's stack in every flame graph (folded, SVG, HTML,
/// speedscope): its command name, else its pid, else `[unknown]`, as [`write`] writes it.
pub fn process_frame(sample: &Sample) -> String {
    let name = match (
        sample.label_str(LabelKey::Comm),
        sample.label_num(LabelKey::Pid),
    ) {
        (Some(comm), _) => frame_name(comm),
        (None, Some(pid)) => pid.to_string(),
        (None, None) => String::new(),
    };
    if name.is_empty() {
        "[unknown]".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use profiler_model::fixture::{self, PERIOD};
    use profiler_model::{Label, ProfileBuilder, ValueType};

    use super::*;

    #[test]
    fn fixture_lines() {
        assert_eq!(
            lines(&fixture::profile()),
            [
                format!("200;main;run;b {}", 6 * PERIOD),
                format!("app;main;a {}", 3 * PERIOD),
                format!("app;main;run;b;a {}", PERIOD),
            ]
        );
    }

    #[test]
    fn default_sample_type_picks_the_weight() {
        let mut p = fixture::profile();
        p.default_sample_type = 0;
        assert_eq!(
            lines(&p),
            ["200;main;run;b 6", "app;main;a 3", "app;main;run;b;a 1"]
        );
    }

    #[test]
    fn merges_drops_and_sanitizes() {
        let mut b = ProfileBuilder::with_sample_types(
            profiler_model::ProfileKind::Io,
            vec![ValueType::new("bytes", "bytes")],
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        );
        let odd = b.location(fixture::location(
            1,
            None,
            vec![fixture::line("f<[u8; 4]>\n  ::g")],
        ));
        let leaf = b.location(fixture::location(2, None, vec![fixture::line("leaf")]));
        let s = b.stack(vec![leaf, odd]);
        let zero = b.stack(vec![odd]);
        // Two threads of one process: different labels, one folded line.
        b.add_sample(
            s,
            &[5],
            vec![
                Label::str(LabelKey::Comm, "my proc;x"),
                Label::num(LabelKey::Tid, 1),
            ],
        );
        b.add_sample(
            s,
            &[7],
            vec![
                Label::str(LabelKey::Comm, "my proc;x"),
                Label::num(LabelKey::Tid, 2),
            ],
        );
        b.add_sample(zero, &[0], vec![]);
        b.add_sample(s, &[1], vec![]);
        assert_eq!(
            lines(&b.build()),
            [
                "[unknown];f<[u8: 4]> ::g;leaf 1",
                "my proc:x;f<[u8: 4]> ::g;leaf 12"
            ]
        );
    }

    #[test]
    fn writes_one_line_each() {
        let mut out = Vec::new();
        write(&fixture::profile(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
        let mut out = Vec::new();
        write(&fixture::empty(), &mut out).unwrap();
        assert!(out.is_empty());
    }
}
