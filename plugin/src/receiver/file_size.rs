//! How many records of a key make one batch, and so one Parquet file: `BufferSize`, or
//! with `FileTargetSize` as many as should encode to about that many bytes.
//!
//! Why an estimate: a file's encoded size is known only once it is written, and the
//! buffers count records, not encoded bytes (a Redis buffer's records may come from
//! other nodes). So every written file teaches how many bytes a row of its key takes in
//! Parquet, and the key's next batch takes `target / bytes per row` rows. The size is
//! measured on encoded bytes, not on records in memory, which Parquet shrinks several
//! fold: sizing on memory gives files far below the configured size (vectordotdev/vector
//! #3829).

use crate::partition::PartitionKey;
use std::collections::HashMap;
use std::num::NonZeroU64;
use ulid::Ulid;

/// Most keys with an estimate of their own. Keys come and go (an hourly partition is a
/// new key every hour); past this many, the per-key estimates start again and new keys
/// use the latest estimate of any key until their first file.
const MAX_KEYS: usize = 4096;

/// Parquet bytes per row, and how many rows the file that taught it had.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimate {
    bytes_per_row: f64,
    rows: usize,
}

#[derive(Debug)]
pub(super) struct FileSizing {
    target: Option<NonZeroU64>,
    /// BufferSize: the batch size without a target, or before any file taught one.
    buffer_size: usize,
    per_key: HashMap<PartitionKey, Estimate>,
    /// The latest estimate of any key, for keys without a file yet.
    latest: Option<Estimate>,
    /// The first size-triggered batch, while no file has taught anything: until it is
    /// written, further size triggers wait for what it teaches, rather than cut more
    /// BufferSize batches from a burst.
    probe: Option<Ulid>,
}

impl FileSizing {
    pub(super) fn new(target: Option<NonZeroU64>, buffer_size: usize) -> FileSizing {
        FileSizing {
            target,
            buffer_size: buffer_size.max(1),
            per_key: HashMap::new(),
            latest: None,
            probe: None,
        }
    }

    fn estimate(&self, key: &PartitionKey) -> Option<&Estimate> {
        self.per_key.get(key).or(self.latest.as_ref())
    }

    /// Whether a size trigger may take a batch of `key` now.
    pub(super) fn ready(&self, key: &PartitionKey) -> bool {
        self.target.is_none() || self.probe.is_none() || self.estimate(key).is_some()
    }

    /// A size trigger took batch `id` of `key`.
    pub(super) fn taken(&mut self, key: &PartitionKey, id: Ulid) {
        if self.target.is_some() && self.estimate(key).is_none() {
            self.probe = Some(id);
        }
    }

    /// Batch `id` is written, or failed: either way it no longer holds triggers back.
    pub(super) fn finished(&mut self, id: Ulid) {
        if self.probe == Some(id) {
            self.probe = None;
        }
    }

    /// Records of `key` that make a batch (at least 1).
    pub(super) fn rows(&self, key: &PartitionKey) -> usize {
        let Some(target) = self.target else {
            return self.buffer_size;
        };
        match self.estimate(key) {
            // The float-to-int cast saturates, so a tiny estimate cannot overflow.
            Some(e) => ((target.get() as f64 / e.bytes_per_row) as usize).max(1),
            None => self.buffer_size,
        }
    }

    /// A batch of `key` was written as `rows` rows in `bytes` bytes of Parquet.
    ///
    /// A file much smaller than the one behind the current estimate does not replace
    /// it: a file's footer and column headers cost the same whatever its rows, so the
    /// few rows of an interval flush would overstate the bytes per row, and the next
    /// size-triggered file would come out small.
    pub(super) fn learn(&mut self, key: &PartitionKey, rows: usize, bytes: u64) {
        let Some(target) = self.target else {
            return;
        };
        if rows == 0 || bytes == 0 {
            return;
        }
        let new = Estimate {
            bytes_per_row: bytes as f64 / rows as f64,
            rows,
        };
        let near_target = bytes.saturating_mul(4) >= target.get();
        let better = |old: Option<&Estimate>| match old {
            None => true,
            Some(old) => near_target || rows >= old.rows,
        };
        if better(self.per_key.get(key)) {
            if self.per_key.len() >= MAX_KEYS && !self.per_key.contains_key(key) {
                self.per_key.clear();
            }
            self.per_key.insert(key.clone(), new);
        }
        if better(self.latest.as_ref()) {
            self.latest = Some(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> PartitionKey {
        PartitionKey::from_text(s)
    }

    fn sizing(target: u64) -> FileSizing {
        FileSizing::new(NonZeroU64::new(target), 100)
    }

    #[test]
    fn without_a_target_a_batch_is_buffer_size_records() {
        let mut s = sizing(0);
        s.learn(&key("a"), 1000, 10_000);
        assert_eq!(s.rows(&key("a")), 100);
    }

    #[test]
    fn a_written_file_sets_the_rows_of_the_next_batch() {
        let mut s = sizing(1_000_000);
        assert_eq!(s.rows(&key("a")), 100, "BufferSize until a file is written");
        // 100 rows in 50,000 bytes: 500 bytes per row, so 2,000 rows per MB.
        s.learn(&key("a"), 100, 50_000);
        assert_eq!(s.rows(&key("a")), 2000);
        // A key without a file of its own uses the latest estimate of any key.
        assert_eq!(s.rows(&key("b")), 2000);
        s.learn(&key("b"), 4000, 1_000_000);
        assert_eq!(s.rows(&key("b")), 4000);
        assert_eq!(s.rows(&key("a")), 2000, "each key keeps its own estimate");
        assert_eq!(s.rows(&key("c")), 4000);
    }

    #[test]
    fn the_first_batch_holds_size_triggers_until_it_is_written() {
        let mut s = sizing(1_000_000);
        let (a, b) = (key("a"), key("b"));
        assert!(s.ready(&a));
        let probe = Ulid::from(1u128);
        s.taken(&a, probe);
        assert!(!s.ready(&a) && !s.ready(&b), "nothing learnt yet");
        s.finished(Ulid::from(2u128));
        assert!(!s.ready(&a), "another batch does not end the wait");
        s.finished(probe);
        assert!(s.ready(&a), "a failed probe does not stop size triggers");
        s.taken(&a, probe);
        s.learn(&a, 100, 50_000);
        assert!(s.ready(&b), "an estimate lets every key go");
        s.taken(&b, Ulid::from(3u128));
        assert!(s.ready(&b), "later batches are not probes");
        let mut s = sizing(0);
        s.taken(&a, probe);
        assert!(s.ready(&a), "without a target, BufferSize alone");
    }

    #[test]
    fn a_small_file_does_not_replace_a_better_estimate() {
        let mut s = sizing(1_000_000);
        s.learn(&key("a"), 4000, 1_000_000);
        // An interval flush of 3 rows: its footer makes 3,000 bytes per row.
        s.learn(&key("a"), 3, 9_000);
        assert_eq!(s.rows(&key("a")), 4000);
        // A file near the target always teaches, even with fewer rows.
        s.learn(&key("a"), 2000, 800_000);
        assert_eq!(s.rows(&key("a")), 2500);
    }

    #[test]
    fn tiny_rows_and_empty_files_stay_in_range() {
        let mut s = sizing(u64::MAX);
        s.learn(&key("a"), 0, 100);
        s.learn(&key("a"), 10, 0);
        assert_eq!(s.rows(&key("a")), 100, "nothing learnt from an empty write");
        s.learn(&key("a"), usize::MAX, 1);
        assert_eq!(s.rows(&key("a")), usize::MAX, "saturates");
        let mut s = sizing(1);
        s.learn(&key("a"), 1, 1_000_000);
        assert_eq!(s.rows(&key("a")), 1, "at least one record");
    }

    #[test]
    fn many_keys_start_their_estimates_again() {
        let mut s = sizing(1_000_000);
        for i in 0..MAX_KEYS + 10 {
            s.learn(&key(&format!("k{i}")), 1000, 1_000_000);
        }
        assert!(s.per_key.len() <= MAX_KEYS);
        assert_eq!(s.rows(&key("k0")), 1000, "the latest estimate stands in");
    }
}
