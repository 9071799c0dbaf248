//! A mergeable quantile sketch with relative accuracy (DDSketch, Masson,
//! Rim and Lee, VLDB 2019), for latencies kept per hour in the rollups
//! (docs/lake.md, "Rollups"). Any quantile read from a sketch is within
//! [`RELATIVE_ACCURACY`] of the true value at that rank, and the sketch of
//! two sets of values is the sum of their sketches, so hours merge into
//! days and months without the values.
//!
//! A positive value `x` is counted in bucket `ceil(ln x / ln γ)` with
//! `γ = (1 + α) / (1 - α)`; the bucket answers `2 γ^i / (γ + 1)`, within `α`
//! of every value it holds. Zeros (and values too small to tell from zero)
//! have a bucket of their own; negative values are not counted.
//!
//! The binary form, stored in the rollups: a version byte (1), then as
//! LEB128 varints the count of zeros, the index of the first bucket
//! (zigzag) and the number of buckets, each bucket's count, then the least
//! and greatest value counted as little-endian `f64`.

/// The relative error of every quantile a sketch answers.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Values below this count as zero.
const MIN_POSITIVE: f64 = 1e-9;
/// The most buckets a sketch keeps: at 1 % they span 1 ms to beyond 10^17
/// ms. Past it the lowest buckets fold into one (their quantiles lose the
/// guarantee, the high ones, which latency objectives read, keep it).
const MAX_BUCKETS: usize = 4096;
const VERSION: u8 = 1;

/// What can go wrong reading a stored sketch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    #[error("sketch: unknown version {0}")]
    Version(u8),
    #[error("sketch: cut short or malformed")]
    Malformed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DdSketch {
    zeros: u64,
    /// The index of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
    min: f64,
    max: f64,
}

impl Default for DdSketch {
    fn default() -> Self {
        DdSketch {
            zeros: 0,
            offset: 0,
            counts: Vec::new(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn bucket_of(value: f64) -> i32 {
    (value.ln() / gamma().ln()).ceil() as i32
}

fn value_of(bucket: i32) -> f64 {
    let gamma = gamma();
    2.0 * gamma.powi(bucket) / (gamma + 1.0)
}

impl DdSketch {
    pub fn new() -> DdSketch {
        DdSketch::default()
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.zeros + self.counts.iter().sum::<u64>()
    }

    /// Memory the buckets take.
    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Counts `value`; negative values and NaN are not counted.
    pub fn add(&mut self, value: f64) {
        if value.is_nan() || value < 0.0 {
            return;
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value < MIN_POSITIVE {
            self.zeros += 1;
            return;
        }
        // An infinite value counts in the highest bucket (its stored min or
        // max keeps it), so no bucket lies past what a merge can cover.
        self.add_to_bucket(bucket_of(value.min(f64::MAX)), 1);
    }

    fn add_to_bucket(&mut self, bucket: i32, count: u64) {
        self.cover(bucket, 1);
        let index = (bucket - self.offset) as usize;
        self.counts[index] += count;
        self.collapse();
    }

    /// Grows the buckets to hold the `len` buckets from `first` on.
    fn cover(&mut self, first: i32, len: usize) {
        if len == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.offset = first;
            self.counts.resize(len, 0);
            return;
        }
        if first < self.offset {
            let grow = (self.offset - first) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = first;
        }
        let end = (first - self.offset) as usize + len;
        if end > self.counts.len() {
            self.counts.resize(end, 0);
        }
    }

    /// Folds the lowest buckets into one while there are too many.
    fn collapse(&mut self) {
        if self.counts.len() <= MAX_BUCKETS {
            return;
        }
        let fold = self.counts.len() - MAX_BUCKETS;
        let folded: u64 = self.counts.drain(..fold).sum();
        self.counts[0] += folded;
        self.offset += fold as i32;
    }

    /// Adds `other`'s values to this sketch.
    pub fn merge(&mut self, other: &DdSketch) {
        self.zeros += other.zeros;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        for (index, &count) in other.counts.iter().enumerate() {
            if count > 0 {
                self.add_to_bucket(other.offset + index as i32, count);
            }
        }
    }

    /// Adds the values of the sketch stored as `bytes` (see
    /// [`DdSketch::to_bytes`]) without building it first: merging stored
    /// hours reads millions of these, and a sketch each was most of the
    /// work. On an error this sketch is left part merged.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<(), SketchError> {
        let (&version, mut rest) = bytes.split_first().ok_or(SketchError::Malformed)?;
        if version != VERSION {
            return Err(SketchError::Version(version));
        }
        let zeros = read_varint(&mut rest)?;
        let offset = unzigzag(read_varint(&mut rest)?)?;
        let buckets = bucket_count(offset, read_varint(&mut rest)?)?;
        if buckets > 0 {
            self.cover(offset, buckets);
            let start = (offset - self.offset) as usize;
            for slot in &mut self.counts[start..start + buckets] {
                *slot += read_varint(&mut rest)?;
            }
        }
        if rest.len() != 16 {
            return Err(SketchError::Malformed);
        }
        let (min, max) = rest.split_at(8);
        self.zeros += zeros;
        self.min = self.min.min(f64_of(min)?);
        self.max = self.max.max(f64_of(max)?);
        self.collapse();
        Ok(())
    }

    /// The value at quantile `q` (0 to 1) as SQL's `percentile_cont`
    /// computes it: between the values at ranks `floor(q × (count - 1))` and
    /// the next, in proportion. Each of those is within the relative
    /// accuracy, so their blend is too. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * (count - 1) as f64;
        let below = rank.floor();
        let low = self.value_at_rank(below as u64)?;
        let fraction = rank - below;
        if fraction == 0.0 {
            return Some(low);
        }
        let high = self.value_at_rank(below as u64 + 1)?;
        Some(low + (high - low) * fraction)
    }

    /// The value of the `rank`-th smallest counted value (from 0).
    fn value_at_rank(&self, rank: u64) -> Option<f64> {
        if rank >= self.count() {
            return None;
        }
        if rank < self.zeros {
            return Some(0.0_f64.max(self.min));
        }
        let mut seen = self.zeros;
        for (index, &bucket_count) in self.counts.iter().enumerate() {
            seen += bucket_count;
            if seen > rank {
                let value = value_of(self.offset + index as i32);
                return Some(value.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(24 + self.counts.len() * 2);
        bytes.push(VERSION);
        write_varint(&mut bytes, self.zeros);
        write_varint(&mut bytes, zigzag(self.offset));
        write_varint(&mut bytes, self.counts.len() as u64);
        for &count in &self.counts {
            write_varint(&mut bytes, count);
        }
        bytes.extend_from_slice(&self.min.to_le_bytes());
        bytes.extend_from_slice(&self.max.to_le_bytes());
        bytes
    }

    /// The sketch stored as `bytes` (see [`DdSketch::to_bytes`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<DdSketch, SketchError> {
        let mut sketch = DdSketch::new();
        sketch.merge_bytes(bytes)?;
        Ok(sketch)
    }
}

/// The number of stored buckets from `offset` on, when they all lie where
/// a value can fall (zero excluded, up to `f64::MAX`): a sketch read from
/// bad bytes must not make a merge grow without bound.
fn bucket_count(offset: i32, stored: u64) -> Result<usize, SketchError> {
    let lowest = bucket_of(MIN_POSITIVE);
    let highest = bucket_of(f64::MAX);
    usize::try_from(stored)
        .ok()
        .filter(|&n| n <= MAX_BUCKETS)
        .filter(|&n| {
            n == 0 || (offset >= lowest && i64::from(offset) + n as i64 - 1 <= i64::from(highest))
        })
        .ok_or(SketchError::Malformed)
}

fn f64_of(bytes: &[u8]) -> Result<f64, SketchError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| SketchError::Malformed)?;
    Ok(f64::from_le_bytes(array))
}

fn zigzag(value: i32) -> u64 {
    u64::from(((value << 1) ^ (value >> 31)) as u32)
}

fn unzigzag(value: u64) -> Result<i32, SketchError> {
    let value = u32::try_from(value).map_err(|_| SketchError::Malformed)?;
    Ok(((value >> 1) as i32) ^ -((value & 1) as i32))
}

fn write_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, SketchError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(SketchError::Malformed)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SketchError::Malformed)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `percentile_cont(q)` of `values`.
    fn exact(values: &[f64], q: f64) -> f64 {
        let mut sorted: Vec<f64> = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = q * (sorted.len() - 1) as f64;
        let below = rank.floor() as usize;
        let above = (below + 1).min(sorted.len() - 1);
        sorted[below] + (sorted[above] - sorted[below]) * (rank - rank.floor())
    }

    fn close(estimate: f64, truth: f64) -> bool {
        (estimate - truth).abs() <= RELATIVE_ACCURACY * truth + 1e-9
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_relative_accuracy(
            values in prop::collection::vec(0.0f64..600_000.0, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut sketch = DdSketch::new();
            values.iter().for_each(|&v| sketch.add(v));
            let estimate = sketch.quantile(q).expect("not empty");
            let truth = exact(&values, q);
            prop_assert!(close(estimate, truth), "q {q}: {estimate} vs {truth}");
        }

        #[test]
        fn merged_sketches_equal_the_sketch_of_all_values(
            left in prop::collection::vec(0.0f64..100_000.0, 0..200),
            right in prop::collection::vec(0.0f64..100_000.0, 0..200),
        ) {
            let sketch_of = |values: &[f64]| {
                let mut sketch = DdSketch::new();
                values.iter().for_each(|&v| sketch.add(v));
                sketch
            };
            let mut merged = sketch_of(&left);
            merged.merge(&sketch_of(&right));
            let all: Vec<f64> = left.iter().chain(&right).copied().collect();
            let whole = sketch_of(&all);
            prop_assert_eq!(merged.count(), whole.count());
            for q in [0.0, 0.5, 0.9, 0.95, 0.99, 1.0] {
                prop_assert_eq!(merged.quantile(q), whole.quantile(q));
            }
            let read = DdSketch::from_bytes(&merged.to_bytes()).expect("round trip");
            prop_assert_eq!(read.quantile(0.99), merged.quantile(0.99));
        }

        #[test]
        fn merging_stored_bytes_equals_merging_the_sketch(
            left in prop::collection::vec(0.0f64..1e7, 0..200),
            right in prop::collection::vec(prop_oneof![Just(0.0), 1e-12f64..1e-3, 0.5f64..1e12], 0..200),
        ) {
            let sketch_of = |values: &[f64]| {
                let mut sketch = DdSketch::new();
                values.iter().for_each(|&v| sketch.add(v));
                sketch
            };
            let mut by_sketch = sketch_of(&left);
            by_sketch.merge(&sketch_of(&right));
            let mut by_bytes = sketch_of(&left);
            by_bytes.merge_bytes(&sketch_of(&right).to_bytes()).expect("merges");
            prop_assert_eq!(by_bytes.to_bytes(), by_sketch.to_bytes());
        }

        #[test]
        fn any_bytes_merge_or_are_an_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut sketch = DdSketch::new();
            sketch.add(12.0);
            if sketch.merge_bytes(&bytes).is_ok() {
                prop_assert!(sketch.count() >= 1);
            }
        }

        #[test]
        fn any_bytes_read_as_a_sketch_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = DdSketch::from_bytes(&bytes);
        }
    }

    #[test]
    fn zeros_negatives_and_empty_sketches() {
        let mut sketch = DdSketch::new();
        assert_eq!(sketch.quantile(0.5), None);
        sketch.add(-5.0);
        sketch.add(f64::NAN);
        assert!(sketch.is_empty());
        for value in [0.0, 0.0, 10.0, 1000.0] {
            sketch.add(value);
        }
        assert_eq!(sketch.quantile(0.0), Some(0.0));
        assert_eq!(sketch.quantile(1.0 / 3.0), Some(0.0));
        assert_eq!(sketch.quantile(1.0), Some(1000.0));
        assert_eq!(
            DdSketch::from_bytes(&[2]),
            Err(SketchError::Version(2)),
            "a newer format is named, not misread"
        );
    }

    #[test]
    fn a_sketch_of_a_million_latencies_stays_small() {
        let values: Vec<f64> = (0..1_000_000u64)
            .map(|i| 1.0 + (i % 120_000) as f64)
            .collect();
        let mut sketch = DdSketch::new();
        values.iter().for_each(|&v| sketch.add(v));
        let bytes = sketch.to_bytes();
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
        for q in [0.5, 0.95, 0.99] {
            assert!(close(
                sketch.quantile(q).expect("quantile"),
                exact(&values, q)
            ));
        }
    }
}
