//! Order statistics of a series of durations.

use std::time::Duration;

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, 95th percentile (nearest rank), min and max.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// 95th percentile, nearest-rank (the 19th of 20).
    pub p95: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Of `values` (empty: all zero).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Summary::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Summary {
            median,
            p95: v[rank - 1],
            min: v[0],
            max: v[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_nearest_rank_p95_of_twenty() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.median, s.p95, s.min, s.max), (10.5, 19.0, 1.0, 20.0));
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).median, 2.0);
    }
}
