//! Self and total values per function, as the terminal summary and the report's function
//! table both rank them.

use std::collections::{HashMap, HashSet};

use profiler_model::{Profile, StackId};

/// One function's values, one per sample type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionValues {
    /// Of the stacks the function is the innermost frame of.
    pub self_values: Vec<i64>,
    /// Of the stacks it appears in, once per stack even when recursive.
    pub total_values: Vec<i64>,
}

/// Per function name, its self and total value of every sample type.
pub fn function_values(profile: &Profile) -> HashMap<&str, FunctionValues> {
    let types = profile.sample_types.len();
    let zero = || FunctionValues {
        self_values: vec![0; types],
        total_values: vec![0; types],
    };
    // Summed by stack first, so each distinct stack is walked once however many samples
    // (threads, processes, labels) share it: a file can repeat one deep stack in every
    // sample.
    let mut by_stack: HashMap<StackId, Vec<i64>> = HashMap::new();
    for sample in &profile.samples {
        let sums = by_stack
            .entry(sample.stack)
            .or_insert_with(|| vec![0; types]);
        for (t, slot) in sums.iter_mut().enumerate() {
            *slot = slot.saturating_add(sample.value(t));
        }
    }
    let mut rows: HashMap<&str, FunctionValues> = HashMap::new();
    for (stack, values) in by_stack {
        let value = |t: usize| values[t];
        // The innermost line of the leaf location is the function actually running;
        // frames inlined around it are its callers.
        let leaf = profile
            .stack(stack)
            .first()
            .and_then(|&l| profile.location(l).lines.first())
            .map_or("[unknown]", |l| l.function.as_str());
        // Saturating throughout: values read from a file can add up past i64::MAX.
        let row = rows.entry(leaf).or_insert_with(zero);
        for (t, slot) in row.self_values.iter_mut().enumerate() {
            *slot = slot.saturating_add(value(t));
        }
        // A set, so a recursive function is counted once per stack: otherwise its total
        // could exceed the profile's.
        let functions: HashSet<&str> = profile.stack_functions(stack).into_iter().collect();
        for f in functions {
            let row = rows.entry(f).or_insert_with(zero);
            for (t, slot) in row.total_values.iter_mut().enumerate() {
                *slot = slot.saturating_add(value(t));
            }
        }
    }
    rows
}
