//! Labels the profiled program put on its own work, as it set them: Go's profiler labels
//! (`pprof.Do`, `SetGoroutineLabels`). Their keys are the program's, so they live beside
//! the profiler's own [`crate::LabelKey`]s, not among them; a pprof file holds both as
//! string labels, as Go's own CPU profile holds them (`go tool pprof -tagfocus`).

use std::sync::Arc;

/// A program's label set, sorted by key; cheap to clone and compare, empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProgramLabels(Option<Arc<[(String, String)]>>);

impl ProgramLabels {
    /// No labels.
    pub const NONE: Self = Self(None);

    /// The set of `pairs`, sorted by key (Go keeps one value per key).
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        if pairs.is_empty() {
            return Self::NONE;
        }
        pairs.sort();
        Self(Some(pairs.into()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Each (key, value), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|pairs| pairs.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `key`, if the set has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find_map(|(k, v)| (k == key).then_some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_sorted_and_empty_is_none() {
        let set = ProgramLabels::new(vec![
            ("z".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ]);
        assert_eq!(set.iter().collect::<Vec<_>>(), [("a", "2"), ("z", "1")]);
        assert_eq!(set.get("z"), Some("1"));
        assert!(ProgramLabels::new(Vec::new()).is_empty());
        assert_eq!(ProgramLabels::new(Vec::new()), ProgramLabels::NONE);
    }
}
