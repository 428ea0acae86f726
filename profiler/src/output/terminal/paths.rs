//! Call paths in a bounded width, for every terminal line that prints one: the root-most
//! frame or two, the frames nearest the leaf, and `…` for the middle. Paths listed together
//! (a table, a list of findings) keep as many leaf-side frames as it takes to tell them
//! apart: cut from the root, a server's waiting stacks all read `_start > … > main > lo…`.

use std::collections::BTreeSet;

use crate::output::strings::escape_terminal;

/// Widest a path is printed, in characters.
pub const PATH_WIDTH: usize = 120;

const SEPARATOR: &str = " > ";
const ELLIPSIS: &str = "…";
/// Root-most frames kept when there is room: the program's entry says which program this
/// is; more of the root side says little.
const ROOT_FRAMES: usize = 2;
/// Shortest a frame name is cut to when even the frames that tell paths apart do not fit.
const MIN_NAME: usize = 8;

/// Each of `paths` (root first) escaped for the terminal and fitted in `width` characters:
/// whole when it fits, else its root-most frame(s), `…`, and the frames nearest the leaf,
/// among them the first frame from the leaf where it differs from each other path.
pub fn fit<P: AsRef<[S]>, S: AsRef<str>>(paths: &[P], width: usize) -> Vec<String> {
    let frames: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            p.as_ref()
                .iter()
                .map(|f| escape_terminal(f.as_ref()))
                .collect()
        })
        .collect();
    let telling = telling_positions(&frames);
    frames
        .iter()
        .zip(&telling)
        .map(|(path, telling)| fit_path(path, telling, width))
        .collect()
}

/// Per path, the positions (counted from the leaf, 0 being the leaf) that tell it apart
/// from every other path: where it first differs from each, from the leaf; its root when
/// another path ends with all of it.
///
/// Sorted leaf first, the longest common leaf-side run of two paths is the smallest of
/// the runs of the neighbours between them, so each path walks outwards until its leaf
/// differs rather than comparing with every other: a long list stays linear in practice.
fn telling_positions(paths: &[Vec<String>]) -> Vec<BTreeSet<usize>> {
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by(|&a, &b| paths[a].iter().rev().cmp(paths[b].iter().rev()));
    let common = |a: &[String], b: &[String]| {
        a.iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
    };
    // between[k]: common leaf-side run of order[k] and order[k + 1].
    let between: Vec<usize> = order
        .windows(2)
        .map(|w| common(&paths[w[0]], &paths[w[1]]))
        .collect();
    let mut out = vec![BTreeSet::new(); paths.len()];
    for (k, &i) in order.iter().enumerate() {
        let own = paths[i].len();
        let mut note = |run: usize, other: usize| {
            if run < own {
                out[i].insert(run);
            } else if paths[other].len() > own && own > 0 {
                // The other path ends with all of this one: this one shows its root.
                out[i].insert(own - 1);
            }
        };
        let mut run = usize::MAX;
        for (j, &gap) in between.iter().enumerate().skip(k) {
            run = run.min(gap);
            note(run, order[j + 1]);
            if run == 0 {
                break;
            }
        }
        let mut run = usize::MAX;
        for j in (0..k).rev() {
            run = run.min(between[j]);
            note(run, order[j]);
            if run == 0 {
                break;
            }
        }
    }
    out
}

/// One path in `width`: whole; else the root side, `…` and a run of leaf-side frames
/// reaching every telling position; else the telling positions alone with gaps; else
/// those with their names cut.
fn fit_path(path: &[String], telling: &BTreeSet<usize>, width: usize) -> String {
    let n = path.len();
    let whole = path.join(SEPARATOR);
    if whole.chars().count() <= width {
        return whole;
    }
    let fits = |shown: &BTreeSet<usize>| render(path, shown, None).chars().count() <= width;
    let leaf_run = telling.last().map_or(1, |&deepest| deepest + 1);
    let root = |frames: usize| (n.saturating_sub(frames)..n).collect::<BTreeSet<usize>>();

    // A run of leaf-side frames with the root's, the run as long as the width allows.
    for roots in [1, 0] {
        let mut shown: BTreeSet<usize> = (0..leaf_run).collect();
        shown.extend(root(roots));
        if shown.len() >= n || !fits(&shown) {
            continue;
        }
        return grow(path, shown, roots, &fits);
    }
    // Only the telling frames and the leaf, with gaps between them.
    let mut shown: BTreeSet<usize> = telling.clone();
    shown.insert(0);
    if fits(&shown) {
        let roots = usize::from({
            let mut with_root = shown.clone();
            with_root.extend(root(1));
            fits(&with_root)
        });
        shown.extend(root(roots));
        return grow(path, shown, roots, &fits);
    }
    // Names too long for even that: each cut to an equal share of the width.
    let names = shown.len();
    let overhead = (names * 2) * SEPARATOR.len() + names;
    let budget = (width.saturating_sub(overhead) / names.max(1)).max(MIN_NAME);
    let cut = render(path, &shown, Some(budget));
    if cut.chars().count() <= width {
        return cut;
    }
    let mut hard: String = cut.chars().take(width.saturating_sub(1)).collect();
    hard.push_str(ELLIPSIS);
    hard
}

/// `shown` with more leaf-side frames, nearest the leaf first, while they fit; then a
/// second root frame if it fits too.
fn grow(
    path: &[String],
    mut shown: BTreeSet<usize>,
    roots: usize,
    fits: &dyn Fn(&BTreeSet<usize>) -> bool,
) -> String {
    let n = path.len();
    for position in 1..n {
        if shown.contains(&position) {
            continue;
        }
        shown.insert(position);
        if !fits(&shown) {
            shown.remove(&position);
            break;
        }
    }
    if roots > 0 && roots < ROOT_FRAMES && n > ROOT_FRAMES {
        let second = n - ROOT_FRAMES;
        if shown.insert(second) && !fits(&shown) {
            shown.remove(&second);
        }
    }
    render(path, &shown, None)
}

/// The frames at `shown` (positions from the leaf) root first, each run of frames left out
/// as one `…`; names cut to `cut` characters if given.
fn render(path: &[String], shown: &BTreeSet<usize>, cut: Option<usize>) -> String {
    let n = path.len();
    let mut tokens: Vec<String> = Vec::new();
    let mut gap = false;
    for (index, name) in path.iter().enumerate() {
        if shown.contains(&(n - 1 - index)) {
            if gap {
                tokens.push(ELLIPSIS.to_owned());
                gap = false;
            }
            tokens.push(match cut {
                Some(max) if name.chars().count() > max => {
                    let mut short: String = name.chars().take(max.saturating_sub(1)).collect();
                    short.push_str(ELLIPSIS);
                    short
                }
                _ => name.clone(),
            });
        } else {
            gap = true;
        }
    }
    if gap {
        tokens.push(ELLIPSIS.to_owned());
    }
    tokens.join(SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `path` fitted alone.
    fn fit_one<S: AsRef<str>>(path: &[S], width: usize) -> String {
        fit(&[path], width).pop().unwrap_or_default()
    }

    fn path(frames: &str) -> Vec<&str> {
        frames.split(' ').collect()
    }

    /// PostgreSQL's waiting backends, as issue 25 saw them: one long shared root side.
    fn postgres() -> Vec<Vec<String>> {
        let root = "_start __libc_start_main main PostmasterMain ServerLoop BackendStartup \
                    postmaster_child_launch BackendMain PostgresMain";
        [
            "exec_simple_query PortalRun ExecutorRun heap_getnext LWLockAcquire \
             PGSemaphoreLock futex_wait",
            "exec_simple_query PortalRun ExecutorRun heap_insert LWLockAcquire \
             PGSemaphoreLock futex_wait",
            "ReadCommand pq_getbyte secure_read WaitEventSetWait epoll_wait",
            "exec_simple_query finish_xact_command CommitTransaction XLogFlush \
             LWLockAcquire PGSemaphoreLock futex_wait",
            "exec_simple_query PortalRun ExecutorRun heap_getnext ReadBuffer \
             LWLockAcquire PGSemaphoreLock futex_wait",
        ]
        .iter()
        .map(|leaf| {
            format!("{root} {leaf}")
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect()
    }

    #[test]
    fn a_path_that_fits_is_printed_whole() {
        assert_eq!(fit_one(&path("main a b"), 120), "main > a > b");
        assert_eq!(fit_one(&path("main a b"), 12), "main > a > b");
        let none: [&str; 0] = [];
        assert_eq!(fit_one(&none, 10), "");
    }

    #[test]
    fn a_long_path_keeps_its_root_and_leaf_side() {
        let p: Vec<String> = (0..40).map(|i| format!("frame_{i}")).collect();
        let text = fit_one(&p, 60);
        assert!(text.chars().count() <= 60, "{text}");
        assert!(text.starts_with("frame_0 > "), "{text}");
        assert!(text.ends_with(" > frame_38 > frame_39"), "{text}");
        assert_eq!(text.matches(ELLIPSIS).count(), 1, "{text}");
    }

    #[test]
    fn listed_paths_stay_distinct_within_the_width() {
        let paths = postgres();
        for width in [40, 60, 80, 120] {
            let fitted = fit(&paths, width);
            let distinct: BTreeSet<&String> = fitted.iter().collect();
            assert_eq!(distinct.len(), paths.len(), "width {width}: {fitted:#?}");
            for (text, p) in fitted.iter().zip(&paths) {
                assert!(text.chars().count() <= width, "width {width}: {text}");
                assert!(text.ends_with(p.last().unwrap().as_str()), "{text}");
            }
        }
        // With room, the first frame from the leaf where two differ shows in both.
        let fitted = fit(&paths, 120);
        assert!(
            fitted[0].contains("heap_getnext > LWLockAcquire"),
            "{fitted:#?}"
        );
        assert!(
            fitted[1].contains("heap_insert > LWLockAcquire"),
            "{fitted:#?}"
        );
        assert!(fitted[0].starts_with("_start > "), "{fitted:#?}");
    }

    #[test]
    fn a_deep_difference_shows_even_when_the_run_to_it_does_not_fit() {
        let shared: Vec<String> = (0..30).map(|i| format!("shared_frame_{i}")).collect();
        let with = |top: &str| {
            let mut p = vec!["main".to_owned(), top.to_owned()];
            p.extend(shared.iter().cloned());
            p
        };
        let paths = [with("left"), with("right")];
        let fitted = fit(&paths, 70);
        assert!(
            fitted[0].contains("left") && fitted[1].contains("right"),
            "{fitted:#?}"
        );
        for text in &fitted {
            assert!(text.chars().count() <= 70, "{text}");
            assert!(text.ends_with("shared_frame_29"), "{text}");
        }
    }

    #[test]
    fn a_path_that_ends_another_shows_where_it_starts() {
        let short: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
        let mut long = vec!["outer".to_owned()];
        long.extend(short.iter().cloned());
        let fitted = fit(&[short, long], 30);
        assert_ne!(fitted[0], fitted[1], "{fitted:#?}");
        assert!(fitted[0].starts_with("f00"), "{fitted:#?}");
        assert!(fitted[1].starts_with("outer"), "{fitted:#?}");
    }

    #[test]
    fn long_names_are_cut_and_the_width_holds() {
        let p = vec!["x".repeat(300), "y".repeat(300), "z".repeat(300)];
        let text = fit_one(&p, 50);
        assert!(text.chars().count() <= 50, "{text}");
        assert!(text.contains('z'), "{text}");
        for width in 0..12 {
            assert!(fit_one(&p, width).chars().count() <= width.max(1));
        }
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(fit_one(&["a\x1b[2J", "b"], 120), "a\\x1b[2J > b");
    }
}
