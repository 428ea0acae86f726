//! The string table: each distinct string stored once, "" at index 0, as pprof requires
//! and the report's page data uses ("0 means none").

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

impl<I: StringIndex> Default for StringTable<I> {
    fn default() -> Self {
        Self::new()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
