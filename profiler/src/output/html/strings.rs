//! The string table a profile's page data indexes into.

use std::collections::HashMap;

/// Interned strings; index 0 is "" so that 0 can mean "none".
pub(super) struct Strings {
    pub(super) table: Vec<String>,
    index: HashMap<String, u32>,
}

impl Strings {
    pub(super) fn new() -> Self {
        let mut s = Self {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.intern("");
        s
    }

    pub(super) fn intern(&mut self, text: &str) -> u32 {
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        let i = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        self.table.push(text.to_owned());
        self.index.insert(text.to_owned(), i);
        i
    }
}
