//! Strings of the outputs: escaping for HTML and SVG, and for the terminal. (The string
//! table pprof and the report's page data share is the model's,
//! [`profiler_model::StringTable`].)

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
}
