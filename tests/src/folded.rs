//! Reading folded stacks (`cpu.folded` and the like) back into lines of comm, frames and count.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// One line of `cpu.folded`: `comm;root;...;leaf COUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The command name (first field).
    pub comm: String,
    /// The frames, root first.
    pub frames: Vec<String>,
    /// Number of samples.
    pub count: u64,
}

impl Stack {
    /// Whether some frame is exactly `function`.
    pub fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|f| f == function)
    }
}

/// A parsed `cpu.folded` file.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    /// Its lines.
    pub stacks: Vec<Stack>,
}

impl Folded {
    /// Reads `<dir>/cpu.folded`.
    pub fn load(dir: &Path) -> Folded {
        let p = dir.join("cpu.folded");
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        Folded::parse(&text)
    }

    /// Parses folded text; panics on a malformed line.
    pub fn parse(text: &str) -> Folded {
        let mut stacks = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (stack, count) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("folded line without a count: {line:?}"));
            let count: u64 = count
                .parse()
                .unwrap_or_else(|e| panic!("folded line count not a number ({e}): {line:?}"));
            let mut parts = stack.split(';').map(str::to_owned);
            let comm = parts.next().unwrap_or_default();
            stacks.push(Stack {
                comm,
                frames: parts.collect(),
                count,
            });
        }
        Folded { stacks }
    }

    /// Total samples.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|s| s.count).sum()
    }

    /// Samples whose stack has a frame exactly equal to `function`.
    pub fn samples_containing(&self, function: &str) -> u64 {
        self.samples_where(|s| s.has(function))
    }

    /// Samples of the stacks for which `pred` holds.
    pub fn samples_where(&self, pred: impl Fn(&Stack) -> bool) -> u64 {
        self.stacks
            .iter()
            .filter(|s| pred(s))
            .map(|s| s.count)
            .sum()
    }

    /// Only the stacks whose comm is `comm`.
    pub fn with_comm(&self, comm: &str) -> Folded {
        Folded {
            stacks: self
                .stacks
                .iter()
                .filter(|s| s.comm == comm)
                .cloned()
                .collect(),
        }
    }

    /// The distinct comms, with their sample totals.
    pub fn comms(&self) -> Vec<(String, u64)> {
        let mut m: HashMap<&str, u64> = HashMap::new();
        for s in &self.stacks {
            *m.entry(&s.comm).or_default() += s.count;
        }
        let mut v: Vec<_> = m.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The heaviest `n` lines as text, for assertion messages.
    pub fn summary(&self, n: usize) -> String {
        let mut v: Vec<&Stack> = self.stacks.iter().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.count));
        let mut out = format!(
            "{} lines, {} samples; heaviest:\n",
            self.stacks.len(),
            self.total()
        );
        for s in v.into_iter().take(n) {
            let _ = writeln!(out, "  {};{} {}", s.comm, s.frames.join(";"), s.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_parse_into_comm_frames_and_count() {
        let f = Folded::parse(
            "cpu_split;main;burn_alpha 70\ncpu_split;main;burn_beta 30\n\
             other;op (closure) 5\n",
        );
        assert_eq!(f.total(), 105);
        assert_eq!(f.samples_containing("burn_alpha"), 70);
        assert_eq!(f.samples_containing("main"), 100);
        assert_eq!(f.samples_containing("burn"), 0);
        assert_eq!(f.stacks[2].frames, vec!["op (closure)".to_owned()]);
        assert_eq!(f.with_comm("other").total(), 5);
        assert_eq!(f.comms()[0], ("cpu_split".to_owned(), 100));
    }
}
