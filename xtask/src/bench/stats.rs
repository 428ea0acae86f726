//! Order statistics for the bench: medians and spreads, per-pair ratios, a line fit.
//!
//! Benchmarks on a shared VM are noisy and skewed (an occasional run is much slower),
//! so every figure is a median with its min–max, never a mean. Overheads are taken from
//! paired runs: each profiled run is divided by the unprofiled run next to it, and the
//! median of those ratios is reported, so drift over the bench (thermal, other tenants)
//! cancels within a pair instead of leaking into the comparison.

/// A median with the smallest and largest value it was taken from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none (or any is NaN, which would
    /// make the order meaningless).
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.iter().any(|v| v.is_nan()) {
            return None;
        }
        Some(Spread {
            median: median(values)?,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// The same spread with every value transformed (e.g. a ratio into a percentage);
    /// `f` must be increasing so min stays min.
    pub fn map(self, f: impl Fn(f64) -> f64) -> Spread {
        Spread {
            median: f(self.median),
            min: f(self.min),
            max: f(self.max),
        }
    }
}

/// The median; for an even count, the mean of the two middle values.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// `b / a` for every `(a, b)` pair: how much slower (or bigger) the B run was than the
/// A run next to it. Pairs with a non-positive `a` are skipped, having no ratio.
pub fn pair_ratios(pairs: &[(f64, f64)]) -> Vec<f64> {
    pairs
        .iter()
        .filter(|(a, _)| *a > 0.0)
        .map(|(a, b)| b / a)
        .collect()
}

/// The median and spread of the per-pair ratios `b / a`.
pub fn ratio_of_pairs(pairs: &[(f64, f64)]) -> Option<Spread> {
    Spread::of(&pair_ratios(pairs))
}

/// Least-squares line `y = slope * x + intercept` through the points; `None` with fewer
/// than two distinct x values.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, mean_y - slope * mean_x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn spread_has_min_median_max() {
        let s = Spread::of(&[2.0, 9.0, 1.0, 4.0, 3.0]).unwrap();
        assert_eq!(
            s,
            Spread {
                median: 3.0,
                min: 1.0,
                max: 9.0
            }
        );
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[1.0, f64::NAN]), None);
        let pct = s.map(|r| (r - 1.0) * 100.0);
        assert_eq!((pct.min, pct.median, pct.max), (0.0, 200.0, 800.0));
    }

    #[test]
    fn ratios_are_taken_within_pairs() {
        // A slow drift (the second pair is slower overall) must not show up as overhead:
        // each pair has B 10% slower than its A.
        let pairs = [(1.0, 1.1), (2.0, 2.2), (1.5, 1.65)];
        let r = ratio_of_pairs(&pairs).unwrap();
        assert!((r.median - 1.1).abs() < 1e-12);
        assert!((r.min - 1.1).abs() < 1e-12 && (r.max - 1.1).abs() < 1e-12);
        // Whereas comparing medians across runs would not give 1.1 in general.
        assert_eq!(pair_ratios(&[(0.0, 1.0), (2.0, 3.0)]), vec![1.5]);
    }

    #[test]
    fn line_fit() {
        let (slope, intercept) = linear_fit(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((slope - 2.0).abs() < 1e-12 && (intercept - 1.0).abs() < 1e-12);
        assert_eq!(linear_fit(&[(1.0, 1.0)]), None);
        assert_eq!(linear_fit(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
