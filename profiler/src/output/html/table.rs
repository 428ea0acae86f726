//! A profile's function table: self and total per function, as the terminal summary counts
//! them.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::strings::Strings;
use crate::profile::Profile;

/// At most this many functions are listed in a profile's table, the largest first.
pub const MAX_FUNCTIONS: usize = 2000;

/// A row of a function table: `[name, [self per type], [total per type]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionRow(pub u32, pub Vec<i64>, pub Vec<i64>);

/// Per function, self (stacks it is the innermost frame of) and total (stacks it appears in,
/// once per stack even when recursive) for every sample type, as the terminal summary
/// counts them; the largest total (by the default type, then the others) first.
pub(super) fn function_rows(profile: &Profile, strings: &mut Strings) -> (Vec<FunctionRow>, usize) {
    let types = profile.sample_types.len();
    let mut rows: HashMap<&str, (Vec<i64>, Vec<i64>)> = HashMap::new();
    for sample in &profile.samples {
        let leaf = profile.stacks[sample.stack]
            .first()
            .and_then(|&l| profile.locations[l].lines.first())
            .map_or("[unknown]", |l| l.function.as_str());
        let functions: BTreeSet<&str> = profile.stack_functions(sample.stack).into_iter().collect();
        let value = |t: usize| sample.values.get(t).copied().unwrap_or(0);
        let row = rows
            .entry(leaf)
            .or_insert_with(|| (vec![0; types], vec![0; types]));
        for t in 0..types {
            row.0[t] = row.0[t].saturating_add(value(t));
        }
        for f in functions {
            let row = rows
                .entry(f)
                .or_insert_with(|| (vec![0; types], vec![0; types]));
            for t in 0..types {
                row.1[t] = row.1[t].saturating_add(value(t));
            }
        }
    }
    let index = profile.default_sample_type;
    let mut all: Vec<(&str, Vec<i64>, Vec<i64>)> = rows
        .into_iter()
        .filter(|(_, (s, t))| s.iter().chain(t).any(|&v| v != 0))
        .map(|(name, (s, t))| (name, s, t))
        .collect();
    all.sort_by(|a, b| {
        let key = |r: &(&str, Vec<i64>, Vec<i64>)| r.2.get(index).copied().unwrap_or(0);
        key(b)
            .cmp(&key(a))
            .then_with(|| b.2.cmp(&a.2))
            .then(a.0.cmp(b.0))
    });
    let omitted = all.len().saturating_sub(MAX_FUNCTIONS);
    all.truncate(MAX_FUNCTIONS);
    let rows = all
        .into_iter()
        .map(|(name, s, t)| FunctionRow(strings.intern(name), s, t))
        .collect();
    (rows, omitted)
}
