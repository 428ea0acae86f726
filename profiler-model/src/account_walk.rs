//! The walk that both writes an account's words and reads them back: each account walks
//! its words and fields once, in order ([`crate::Account`]), and the same walk either
//! appends them to a string or takes them off one, so the words are written in one place
//! and the reader cannot drift from the writer.

use std::fmt::Write as _;

/// Writes an account's words, or reads its fields back from them.
pub(crate) struct Walk<'a> {
    /// The words written so far (writing).
    out: String,
    /// The words not read yet (reading).
    rest: &'a str,
    reading: bool,
    /// Whether everything read so far matched.
    ok: bool,
}

impl<'a> Walk<'a> {
    /// A walk that writes.
    pub(crate) fn writing() -> Self {
        Self {
            out: String::new(),
            rest: "",
            reading: false,
            ok: true,
        }
    }

    /// A walk that reads `text`.
    pub(crate) fn reading(text: &'a str) -> Self {
        Self {
            out: String::new(),
            rest: text,
            reading: true,
            ok: true,
        }
    }

    /// The words written.
    pub(crate) fn written(self) -> String {
        self.out
    }

    /// Whether the reading matched every word and left nothing over.
    pub(crate) fn read_all(&self) -> bool {
        self.ok && self.rest.is_empty()
    }

    /// Fixed words.
    pub(crate) fn lit(&mut self, words: &str) {
        if !self.reading {
            self.out.push_str(words);
        } else if self.ok && self.rest.starts_with(words) {
            self.rest = &self.rest[words.len()..];
        } else {
            self.ok = false;
        }
    }

    /// A count.
    pub(crate) fn num(&mut self, n: &mut u64) {
        if !self.reading {
            let _ = write!(self.out, "{n}");
        } else if let Some(v) = self
            .take(|c| c.is_ascii_digit())
            .and_then(|s| s.parse().ok())
        {
            *n = v;
        } else {
            self.ok = false;
        }
    }

    /// A figure shown with `precision` decimals.
    pub(crate) fn float(&mut self, x: &mut f64, precision: usize) {
        if !self.reading {
            let _ = write!(self.out, "{x:.precision$}");
        } else if let Some(v) = self
            .take(|c| c.is_ascii_digit() || c == '.')
            .and_then(|s| s.parse().ok())
        {
            *x = v;
        } else {
            self.ok = false;
        }
    }

    /// Free words, read up to the first `until` (to the end if `until` is empty).
    pub(crate) fn text(&mut self, s: &mut String, until: &str) {
        if !self.reading {
            self.out.push_str(s);
            return;
        }
        let end = if until.is_empty() {
            Some(self.rest.len())
        } else {
            self.rest.find(until)
        };
        match end {
            Some(end) if self.ok && end > 0 => {
                *s = self.rest[..end].to_owned();
                self.rest = &self.rest[end..];
            }
            _ => self.ok = false,
        }
    }

    /// Words said only when `on`.
    pub(crate) fn flag(&mut self, on: &mut bool, words: &str) {
        if !self.reading {
            if *on {
                self.out.push_str(words);
            }
        } else {
            *on = self.ok && self.rest.starts_with(words);
            if *on {
                self.rest = &self.rest[words.len()..];
            }
        }
    }

    /// One of `options`, each walked by `walk`: reading takes the first that matches.
    pub(crate) fn choice<T: Clone>(
        &mut self,
        value: &mut T,
        options: &[T],
        walk: fn(&mut T, &mut Walk<'a>),
    ) {
        if !self.reading {
            walk(value, self);
            return;
        }
        let start = self.rest;
        for option in options {
            if !self.ok {
                break;
            }
            let mut candidate = option.clone();
            walk(&mut candidate, self);
            if self.ok {
                *value = candidate;
                return;
            }
            self.rest = start;
            self.ok = true;
        }
        self.ok = false;
    }

    /// Items walked by `walk` and joined by `separator`; reading takes at least one.
    pub(crate) fn list<T: Default>(
        &mut self,
        items: &mut Vec<T>,
        separator: &str,
        walk: fn(&mut T, &mut Walk<'a>),
    ) {
        if !self.reading {
            for (i, item) in items.iter_mut().enumerate() {
                if i > 0 {
                    self.out.push_str(separator);
                }
                walk(item, self);
            }
            return;
        }
        items.clear();
        loop {
            let before = self.rest;
            if !items.is_empty() {
                self.lit(separator);
            }
            let mut item = T::default();
            walk(&mut item, self);
            if !self.ok {
                // The separator began the next words, not another item.
                self.ok = !items.is_empty();
                self.rest = before;
                return;
            }
            items.push(item);
        }
    }

    /// The longest run of leading characters that `keep`, if any.
    fn take(&mut self, keep: impl Fn(char) -> bool) -> Option<&'a str> {
        if !self.ok {
            return None;
        }
        let end = self.rest.find(|c| !keep(c)).unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        (end > 0).then_some(taken)
    }
}
