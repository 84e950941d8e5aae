//! Summary statistics of the bench: percentiles by nearest rank, means, maxima.
//!
//! Nearest rank (the smallest sample with at least p% of the samples at or below it) is used
//! rather than interpolation so that every reported figure is a latency some transaction really
//! had, and so that p50 ≤ p95 ≤ p99 ≤ max holds by construction.

use serde::Serialize;

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending) by nearest rank; `None` when
/// there are no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // rank = ceil(p/100 × n), at least 1; the float product is exact enough for n < 2^52.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied()
}

/// Mean of `values`; `None` when empty.
pub fn mean(values: &[u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: u128 = values.iter().map(|&v| u128::from(v)).sum();
    Some(sum as f64 / values.len() as f64)
}

/// Submit → commit latency of the committed transactions, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    /// Committed transactions the figures are taken over.
    pub samples: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl LatencyMs {
    /// Summarises latencies given in microseconds (sorted here, in place).
    pub fn from_micros(micros: &mut [u64]) -> LatencyMs {
        micros.sort_unstable();
        let ms = |v: Option<u64>| v.map(|us| round1(us as f64 / 1_000.0));
        LatencyMs {
            samples: micros.len() as u64,
            mean: mean(micros).map(|us| round1(us / 1_000.0)),
            p50: ms(percentile(micros, 50.0)),
            p95: ms(percentile(micros, 95.0)),
            p99: ms(percentile(micros, 99.0)),
            max: ms(micros.last().copied()),
        }
    }
}

/// Mean, median and maximum of a set of intervals in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IntervalMs {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub max: Option<f64>,
}

impl IntervalMs {
    /// Summarises intervals in milliseconds (sorted here, in place).
    pub fn from_ms(ms: &mut [u64]) -> IntervalMs {
        ms.sort_unstable();
        IntervalMs {
            mean: mean(ms).map(round1),
            p50: percentile(ms, 50.0).map(|v| v as f64),
            max: ms.last().map(|&v| v as f64),
        }
    }
}

/// `v` rounded to one decimal: the JSON report carries no false precision.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1), "p0 is the minimum");
        // Small sets: every percentile is a real sample, p99 of 10 samples is the maximum.
        let v: Vec<u64> = (1..=10).map(|x| x * 10).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 51.0), Some(60));
        assert_eq!(percentile(&v, 95.0), Some(100));
        assert_eq!(percentile(&v, 99.0), Some(100));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // Out-of-range p is clamped rather than indexing out of bounds.
        assert_eq!(percentile(&[1, 2], 250.0), Some(2));
        assert_eq!(percentile(&[1, 2], -5.0), Some(1));
    }

    #[test]
    fn latency_summary_is_ordered_and_in_ms() {
        // Unsorted input, microseconds.
        let mut us: Vec<u64> = (0..1000u64).rev().map(|i| i * 1_000 + 500).collect();
        let l = LatencyMs::from_micros(&mut us);
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50, Some(499.5));
        assert_eq!(l.p95, Some(949.5));
        assert_eq!(l.p99, Some(989.5));
        assert_eq!(l.max, Some(999.5));
        assert_eq!(l.mean, Some(500.0));
        let empty = LatencyMs::from_micros(&mut []);
        assert_eq!(empty.samples, 0);
        assert_eq!(empty.p50, None);
    }

    #[test]
    fn interval_summary_and_mean() {
        let mut ms = vec![300, 100, 200, 1_000];
        let i = IntervalMs::from_ms(&mut ms);
        assert_eq!(i.mean, Some(400.0));
        assert_eq!(i.p50, Some(200.0));
        assert_eq!(i.max, Some(1_000.0));
        assert_eq!(IntervalMs::from_ms(&mut []), IntervalMs::default());
        assert_eq!(
            mean(&[u64::MAX, u64::MAX]),
            Some(u64::MAX as f64),
            "no overflow"
        );
        assert_eq!(round1(1.25), 1.3);
    }
}
