//! Strings of the outputs: the string table (each distinct string stored once, "" at
//! index 0, as pprof requires and the report's page data uses: "0 means none"), and
//! escaping for HTML and SVG, and for the terminal.

use std::collections::HashMap;

/// An index type of a string table: pprof's `i64`, the page data's `u32`.
pub trait StringIndex: Copy + TryFrom<usize> {
    /// What an index too large for the type becomes (never reached: inputs are bounded).
    const MAX: Self;
}

impl StringIndex for i64 {
    const MAX: Self = i64::MAX;
}

impl StringIndex for u32 {
    const MAX: Self = u32::MAX;
}

/// Interned strings, indexed by `I`; index 0 is "".
pub struct StringTable<I> {
    /// The strings, in index order.
    pub table: Vec<String>,
    index: HashMap<String, I>,
}

impl<I: StringIndex> StringTable<I> {
    /// A table holding only "" (at index 0).
    pub fn new() -> Self {
        let mut strings = Self {
            table: Vec::new(),
            index: HashMap::new(),
        };
        strings.intern("");
        strings
    }

    /// The index of `text`, added to the table the first time it is seen.
    pub fn intern(&mut self, text: &str) -> I {
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        let i = I::try_from(self.table.len()).unwrap_or(I::MAX);
        self.table.push(text.to_owned());
        self.index.insert(text.to_owned(), i);
        i
    }
}

/// `text` with the characters that mean something in HTML and XML escaped, for the SVG
/// flame graph and the report page.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `text` safe to print to a terminal: every control character (C0, DEL and C1, newline
/// and tab included) and every bidirectional override shown as an escape (`\x1b`,
/// `\u{202e}`); printable Unicode is kept.
///
/// Names, comm strings, paths and comments come from the targets (or from a file given to
/// `profiler report`); printed raw, an ESC or OSC sequence in one would drive root's
/// terminal (retitle it, clear it, fake output), and a bidi override would reorder it.
pub fn escape_terminal(text: &str) -> String {
    escape_controls(text, false)
}

/// [`escape_terminal`] for a whole block of text made of lines: newlines are kept, every
/// other control character is escaped; the last safeguard before a summary is printed.
pub fn escape_terminal_lines(text: &str) -> String {
    escape_controls(text, true)
}

/// Whether `c` must not reach a terminal as is.
fn unsafe_for_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_controls(text: &str, keep_newlines: bool) -> String {
    use std::fmt::Write;
    let kept = |c: char| keep_newlines && c == '\n';
    if !text.chars().any(|c| unsafe_for_terminal(c) && !kept(c)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_for_terminal(c) || kept(c) {
            out.push(c);
            continue;
        }
        let code = u32::from(c);
        if code <= 0xff {
            let _ = write!(out, "\\x{code:02x}");
        } else {
            let _ = write!(out, "\\u{{{code:x}}}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_control_characters_and_keeps_unicode() {
        assert_eq!(
            escape_terminal("a\x1b]0;pwned\x07b\x1b[2J"),
            "a\\x1b]0;pwned\\x07b\\x1b[2J"
        );
        assert_eq!(escape_terminal("f\u{9b}31m"), "f\\x9b31m");
        assert_eq!(escape_terminal("x\ny\t\x7f"), "x\\x0ay\\x09\\x7f");
        assert_eq!(escape_terminal("ab\u{202e}cd"), "ab\\u{202e}cd");
        assert_eq!(escape_terminal("größe_λ::main"), "größe_λ::main");
        assert_eq!(escape_terminal_lines("a\x1b[2J\nb"), "a\\x1b[2J\nb");
    }

    #[test]
    fn empty_string_first_and_each_string_once() {
        let mut s = StringTable::<i64>::new();
        assert_eq!(s.intern(""), 0);
        assert_eq!(s.intern("a"), 1);
        assert_eq!(s.intern("b"), 2);
        assert_eq!(s.intern("a"), 1);
        assert_eq!(s.table, ["", "a", "b"]);
    }
}
