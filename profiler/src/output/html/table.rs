//! A profile's function table: self and total per function, as the terminal summary counts
//! them, a file's unnamed addresses on one row.

use crate::analysis::functions;
use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use profiler_model::Profile;
use profiler_model::StringTable;

/// At most this many functions are listed in a profile's table, the largest first.
pub const MAX_FUNCTIONS: usize = 2000;

/// A row of a function table: `[name, [self per type], [total per type]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionRow(pub u32, pub Vec<i64>, pub Vec<i64>);

/// Per function, self (stacks it is the innermost frame of) and total (stacks it appears in,
/// once per stack even when recursive) for every sample type, as the terminal summary
/// counts them; the largest total (by the default type, then the others) first.
pub(super) fn function_rows(
    profile: &Profile,
    strings: &mut StringTable<u32>,
) -> (Vec<FunctionRow>, usize) {
    let rows: HashMap<Cow<'_, str>, (Vec<i64>, Vec<i64>)> = functions::function_values(profile)
        .into_iter()
        .map(|(name, v)| (name.label(), (v.self_values, v.total_values)))
        .collect();
    let index = profile.default_sample_type;
    let mut all: Vec<(Cow<'_, str>, Vec<i64>, Vec<i64>)> = rows
        .into_iter()
        .filter(|(_, (s, t))| s.iter().chain(t).any(|&v| v != 0))
        .map(|(name, (s, t))| (name, s, t))
        .collect();
    all.sort_by(|a, b| {
        let key = |r: &(Cow<'_, str>, Vec<i64>, Vec<i64>)| r.2.get(index).copied().unwrap_or(0);
        key(b)
            .cmp(&key(a))
            .then_with(|| b.2.cmp(&a.2))
            .then_with(|| a.0.cmp(&b.0))
    });
    let omitted = all.len().saturating_sub(MAX_FUNCTIONS);
    all.truncate(MAX_FUNCTIONS);
    let rows = all
        .into_iter()
        .map(|(name, s, t)| FunctionRow(strings.intern(&name), s, t))
        .collect();
    (rows, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::functions::tests::stripped_library;

    #[test]
    fn a_files_unnamed_addresses_are_one_row() {
        let mut strings = StringTable::new();
        let (rows, omitted) = function_rows(&stripped_library(), &mut strings);
        let names: Vec<&str> = rows
            .iter()
            .map(|r| strings.table[r.0 as usize].as_str())
            .collect();
        assert_eq!(names, ["main", "libhot.so (no symbols)"]);
        assert_eq!((&rows[1].1, &rows[1].2), (&vec![10], &vec![10]));
        assert_eq!(omitted, 0);
    }
}
