//! The FLARE efficiency figures computed from memory samples taken at a fixed interval.

use std::collections::HashMap;

/// Share of the samples a value must exceed to count for the robust maximum (FLARE: 2%).
pub const ROBUST_MAX_FRACTION: f64 = 0.02;

/// Memory below this many MB is free in FLARE22's area-under-the-curve figure.
pub const AREA_FREE_MB: u64 = 2048;

/// FLARE's "robust maximum": the largest value that occurs in more than `fraction` of the
/// samples (`fraction` = [`ROBUST_MAX_FRACTION`] in the challenge), so that a value seen in one
/// stray sample does not count. `None` when no value is frequent enough (or no samples).
pub fn robust_max(samples: &[u64], fraction: f64) -> Option<u64> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for &s in samples {
        *counts.entry(s).or_default() += 1;
    }
    let n = samples.len() as f64;
    counts
        .into_iter()
        .filter(|&(_, c)| c as f64 / n > fraction)
        .map(|(v, _)| v)
        .max()
}

/// Area under the memory-time curve in MB·s: `sum(samples) * interval_s`, as FLARE computes it.
pub fn area_mb_s(samples_mb: &[u64], interval_s: f64) -> f64 {
    samples_mb.iter().map(|&m| m as f64).sum::<f64>() * interval_s
}

/// Area between the memory-time curve and the `threshold_mb` line where the curve lies above
/// it (FLARE22 counted only memory above 2048 MB): `sum(max(0, m - threshold)) * interval_s`.
pub fn area_above_mb_s(samples_mb: &[u64], threshold_mb: u64, interval_s: f64) -> f64 {
    samples_mb
        .iter()
        .map(|&m| m.saturating_sub(threshold_mb) as f64)
        .sum::<f64>()
        * interval_s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_max_ignores_rare_peaks() {
        // 100 samples: 1000 MB 60 times, 3000 MB 37 times, 9000 MB twice (2%, not more), 9999 once.
        let mut s = vec![1000; 60];
        s.extend(vec![3000; 37]);
        s.extend([9000, 9000, 9999]);
        assert_eq!(robust_max(&s, ROBUST_MAX_FRACTION), Some(3000));
        // A third sample of 9000 MB makes it 3% of 101 samples (> 2%): it now counts.
        s.push(9000);
        assert_eq!(robust_max(&s, ROBUST_MAX_FRACTION), Some(9000));
    }

    #[test]
    fn robust_max_of_few_samples_is_the_max() {
        // With fewer than 50 samples a single occurrence is already more than 2%.
        assert_eq!(robust_max(&[5, 7, 6], ROBUST_MAX_FRACTION), Some(7));
        assert_eq!(robust_max(&[], ROBUST_MAX_FRACTION), None);
        // 50 distinct values: each is exactly 2%, none is more.
        let s: Vec<u64> = (0..50).collect();
        assert_eq!(robust_max(&s, ROBUST_MAX_FRACTION), None);
    }

    #[test]
    fn areas_follow_the_flare_formulas() {
        let s = [0, 1000, 2048, 3048, 4096, 2000];
        // sum = 12192 MB over samples 0.1 s apart.
        assert!((area_mb_s(&s, 0.1) - 1219.2).abs() < 1e-9);
        // Above 2048: 0 + 0 + 0 + 1000 + 2048 + 0 = 3048 MB.
        assert!((area_above_mb_s(&s, AREA_FREE_MB, 0.1) - 304.8).abs() < 1e-9);
        assert_eq!(area_mb_s(&[], 0.1), 0.0);
        assert!((area_mb_s(&[500; 20], 0.5) - 5000.0).abs() < 1e-9);
    }
}
