//! Reading a test binary's libtest output back: which tests ran and how each ended.
//!
//! libtest prints `test NAME ... ok` (or `FAILED`, `ignored`) per test. A test whose child
//! writes to the inherited stdout can split that line (`test NAME ... ` then the child's
//! lines, then the result alone), and the `failures:` list at the end names every failed
//! test again, so both are read.

use std::fmt;

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
    /// Started (`test NAME ... `) but no result followed: the binary crashed, or the
    /// guest died or was killed while it ran.
    Unfinished,
    /// Asked for, but its binary never named it.
    NotRun,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Passed => "ok",
            Outcome::Failed => "FAILED",
            Outcome::Ignored => "ignored",
            Outcome::Unfinished => "UNFINISHED",
            Outcome::NotRun => "NOT RUN",
        })
    }
}

impl Outcome {
    /// Whether this outcome fails the run.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed | Outcome::Unfinished | Outcome::NotRun
        )
    }
}

fn result_word(text: &str) -> Option<Outcome> {
    let text = text.trim();
    match text {
        "ok" => Some(Outcome::Passed),
        "FAILED" => Some(Outcome::Failed),
        _ if text == "ignored" || text.starts_with("ignored, ") => Some(Outcome::Ignored),
        _ => None,
    }
}

/// Every test the output names, in order, with how it ended.
pub fn parse(output: &str) -> Vec<(String, Outcome)> {
    let mut tests: Vec<(String, Outcome)> = Vec::new();
    let mut pending: Option<usize> = None;
    let mut in_failures_list = false;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, after)) = rest.split_once(" ... ")
            && !name.contains(char::is_whitespace)
        {
            in_failures_list = false;
            let outcome = result_word(after);
            tests.push((name.to_string(), outcome.unwrap_or(Outcome::Unfinished)));
            pending = outcome.is_none().then(|| tests.len() - 1);
            continue;
        }
        if let Some(index) = pending
            && let Some(outcome) = result_word(line)
        {
            tests[index].1 = outcome;
            pending = None;
            continue;
        }
        // The list after the failed tests' output: `failures:` then indented names.
        if line == "failures:" {
            in_failures_list = true;
            continue;
        }
        if in_failures_list {
            let name = line.trim();
            if line.starts_with("    ") && !name.is_empty() && !name.contains(' ') {
                match tests.iter_mut().find(|(test, _)| test == name) {
                    Some(test) => test.1 = Outcome::Failed,
                    None => tests.push((name.to_string(), Outcome::Failed)),
                }
            } else if !name.is_empty() {
                in_failures_list = false;
            }
        }
    }
    tests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_on_their_line() {
        let out = "\nrunning 3 tests\ntest a ... ok\ntest b ... FAILED\n\
                   test c ... ignored, needs a thing\n\ntest result: FAILED. 1 passed";
        assert_eq!(
            parse(out),
            vec![
                ("a".into(), Outcome::Passed),
                ("b".into(), Outcome::Failed),
                ("c".into(), Outcome::Ignored),
            ]
        );
    }

    #[test]
    fn a_result_after_a_childs_lines() {
        let out = "test a ... child says hi\nmore\nok\ntest b ... ok\n";
        assert_eq!(
            parse(out),
            vec![("a".into(), Outcome::Passed), ("b".into(), Outcome::Passed)]
        );
    }

    #[test]
    fn a_test_cut_off_is_unfinished() {
        let out = "running 2 tests\ntest a ... ok\ntest b ... ";
        assert_eq!(
            parse(out),
            vec![
                ("a".into(), Outcome::Passed),
                ("b".into(), Outcome::Unfinished)
            ]
        );
    }

    #[test]
    fn the_failures_list_marks_failures() {
        let out = "test a ... output\n\nfailures:\n\n---- a stdout ----\nboom\n\n\
                   failures:\n    a\n\ntest result: FAILED. 0 passed; 1 failed";
        assert_eq!(parse(out), vec![("a".into(), Outcome::Failed)]);
    }
}
