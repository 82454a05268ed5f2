//! A latency histogram in microseconds with bounded memory and ~1.6 % precision, so a run of a
//! hundred million records keeps a few kilobytes of counts instead of every sample.
//!
//! Buckets are log-linear, like HdrHistogram's: values below 128 µs have a bucket each; above,
//! every power of two is split into 64 equal buckets. A value is reported as the middle of its
//! bucket, so a percentile is off by at most half a bucket (1/128 of the value). The maximum
//! is kept exactly.

/// Exact buckets below this value.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const SUB_BUCKETS: u64 = 64;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (LINEAR + 57 * SUB_BUCKETS) as usize;

/// Counts of latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// One count per bucket, indexed by [`bucket_of`].
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    // The top 7 bits of the value select the bucket within its power of two.
    let msb = 63 - value.leading_zeros() as u64;
    let shift = msb - 6;
    let top = value >> shift; // in [64, 128)
    (LINEAR + (shift - 1) * SUB_BUCKETS + (top - SUB_BUCKETS)) as usize
}

/// The middle of a bucket's value range.
fn value_of(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR {
        return bucket;
    }
    let shift = (bucket - LINEAR) / SUB_BUCKETS + 1;
    let top = (bucket - LINEAR) % SUB_BUCKETS + SUB_BUCKETS;
    (top << shift) + (1 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `q` (0..=1) of the samples lie; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return value_of(bucket).min(self.max);
            }
        }
        self.max
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact_and_large_ones_within_two_percent() {
        for v in [
            0u64,
            1,
            5,
            127,
            128,
            129,
            1000,
            4999,
            65_537,
            1 << 40,
            u64::MAX / 3,
        ] {
            let mut h = Histogram::default();
            h.record(v);
            let got = value_of(bucket_of(v));
            if v < LINEAR {
                assert_eq!(got, v);
            } else {
                let err = (got as f64 - v as f64).abs() / v as f64;
                assert!(err < 0.02, "{v} reads as {got}");
            }
            assert_eq!(h.quantile(0.5), got.min(v));
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_follow_the_samples_and_max_is_exact() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 10);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.02, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.02, "p99 {p99}");
        assert_eq!(h.max(), 10_000);
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.len(), 1000);
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(30);
        b.record(20);
        a.merge(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.quantile(0.5), 20);
        assert_eq!(a.max(), 30);
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }
}
