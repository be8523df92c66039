//! How many records of a key make one batch, and so one Parquet file: `BufferSize`, or
//! with `FileTargetSize` as many as should encode to about that many bytes.
//!
//! Why an estimate: a file's encoded size is known only once it is written, and the
//! buffers count records, not encoded bytes (a Redis buffer's records may come from
//! other nodes). So every written file teaches how many bytes a row of its key takes in
//! Parquet, and the key's next batch takes as many rows as should fill the target. The
//! size is measured on encoded bytes, not on records in memory, which Parquet shrinks
//! several fold: sizing on memory gives files far below the configured size
//! (vectordotdev/vector#3829).
//!
//! A file's footer does not grow with its rows, so it is left out of the bytes per row;
//! otherwise a small first file would overstate them. Until a file of at least half the
//! target has been written, size triggers take one batch at a time (a probe) and wait
//! for what it teaches, rather than cut a burst into many files from a rough guess.
//!
//! A durable buffer shared by several nodes also shares the estimates: each written
//! file's estimate is stored with the batch's ack, and a node asks for a key's estimate
//! the first time it needs one. So a node that restarts, or flushes a key for the first
//! time, sizes its files from what any node learned, instead of probing again.

use crate::flush::Written;
use crate::partition::PartitionKey;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use ulid::Ulid;

/// Most keys with an estimate of their own. Keys come and go (an hourly partition is a
/// new key every hour); past this many, the per-key estimates start again and new keys
/// use the latest estimate of any key until their first file.
const MAX_KEYS: usize = 4096;

/// What a written file taught.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimate {
    /// Column data per row.
    bytes_per_row: f64,
    /// Footer per file.
    footer: f64,
    /// The file's rows and bytes (per file, when a batch made several).
    rows: usize,
    bytes: u64,
}

/// The version tag of a stored estimate, so a later format is ignored rather than
/// misread by an older node.
const NOTE_VERSION: &str = "v1";

impl Estimate {
    /// The form stored in a shared buffer: `v1 <bytes per row> <footer> <rows> <bytes>`.
    fn note(&self) -> String {
        format!(
            "{NOTE_VERSION} {} {} {} {}",
            self.bytes_per_row, self.footer, self.rows, self.bytes
        )
    }

    /// Reads a stored estimate; anything malformed or out of range is no estimate.
    fn from_note(note: &str) -> Option<Estimate> {
        let mut it = note.split(' ');
        if it.next()? != NOTE_VERSION {
            return None;
        }
        let e = Estimate {
            bytes_per_row: it.next()?.parse().ok()?,
            footer: it.next()?.parse().ok()?,
            rows: it.next()?.parse().ok()?,
            bytes: it.next()?.parse().ok()?,
        };
        let sane = e.bytes_per_row.is_finite()
            && e.bytes_per_row > 0.0
            && e.footer.is_finite()
            && e.footer >= 0.0
            && e.rows > 0
            && it.next().is_none();
        sane.then_some(e)
    }
}

#[derive(Debug)]
pub(super) struct FileSizing {
    target: Option<NonZeroU64>,
    /// BufferSize: the batch size without a target, or before any file taught one.
    buffer_size: usize,
    per_key: HashMap<PartitionKey, Estimate>,
    /// The latest estimate of any key, for keys without a file yet.
    latest: Option<Estimate>,
    /// A size-triggered batch taken while the estimate is rough: until it is written,
    /// further size triggers wait for what it teaches.
    probe: Option<Ulid>,
    /// Keys whose shared estimate was asked for (asked once; bounded like `per_key`).
    asked: HashSet<PartitionKey>,
}

impl FileSizing {
    pub(super) fn new(target: Option<NonZeroU64>, buffer_size: usize) -> FileSizing {
        FileSizing {
            target,
            buffer_size: buffer_size.max(1),
            per_key: HashMap::new(),
            latest: None,
            probe: None,
            asked: HashSet::new(),
        }
    }

    /// Whether `key`'s shared estimate should be asked for: sizing is on, the key has
    /// no estimate of its own, and it was not asked for yet.
    pub(super) fn wants_shared(&self, key: &PartitionKey) -> bool {
        self.target.is_some() && !self.per_key.contains_key(key) && !self.asked.contains(key)
    }

    /// Takes what a shared buffer held for `key` (`None`: nothing, or unreadable).
    /// Marks the key as asked either way, so it is asked once.
    pub(super) fn adopt(&mut self, key: &PartitionKey, note: Option<&str>) {
        if self.asked.len() >= MAX_KEYS {
            self.asked.clear();
        }
        self.asked.insert(key.clone());
        if let Some(e) = note.and_then(Estimate::from_note) {
            self.insert(key, e);
            if self.latest.is_none() {
                self.latest = Some(e);
            }
        }
    }

    /// The key's estimate in its stored form, to share after a file of the key was
    /// written (None without a target or an estimate).
    pub(super) fn note(&self, key: &PartitionKey) -> Option<String> {
        self.target?;
        self.per_key.get(key).map(Estimate::note)
    }

    fn insert(&mut self, key: &PartitionKey, e: Estimate) {
        if self.per_key.len() >= MAX_KEYS && !self.per_key.contains_key(key) {
            self.per_key.clear();
        }
        self.per_key.insert(key.clone(), e);
    }

    fn estimate(&self, key: &PartitionKey) -> Option<&Estimate> {
        self.per_key.get(key).or(self.latest.as_ref())
    }

    /// Whether `key`'s estimate comes from a file of at least half the target.
    fn settled(&self, key: &PartitionKey, target: NonZeroU64) -> bool {
        self.estimate(key)
            .is_some_and(|e| e.bytes.saturating_mul(2) >= target.get())
    }

    /// Records of `key` that make a batch (at least 1).
    pub(super) fn rows(&self, key: &PartitionKey) -> usize {
        let Some(target) = self.target else {
            return self.buffer_size;
        };
        match self.estimate(key) {
            Some(e) => {
                // At least half the target is left for data, whatever the footer.
                let data = (target.get() as f64 - e.footer).max(target.get() as f64 / 2.0);
                // The float-to-int cast saturates, so a tiny estimate cannot overflow.
                ((data / e.bytes_per_row) as usize).max(1)
            }
            None => self.buffer_size,
        }
    }

    /// Whether a size trigger may take a batch of `key` now.
    pub(super) fn ready(&self, key: &PartitionKey) -> bool {
        match self.target {
            None => true,
            Some(t) => self.probe.is_none() || self.settled(key, t),
        }
    }

    /// A size trigger took batch `id` of `key`.
    pub(super) fn taken(&mut self, key: &PartitionKey, id: Ulid) {
        if let Some(t) = self.target
            && !self.settled(key, t)
        {
            self.probe = Some(id);
        }
    }

    /// Batch `id` is written, or failed: either way it no longer holds triggers back.
    /// Returns whether it was the probe, whose end may let waiting keys go.
    pub(super) fn finished(&mut self, id: Ulid) -> bool {
        let was = self.probe == Some(id);
        if was {
            self.probe = None;
        }
        was
    }

    /// A batch of `key` was written.
    ///
    /// A file much smaller than the one behind the current estimate does not replace
    /// it: the few rows of an interval flush compress worse than a full file's, so the
    /// next size-triggered file would come out small.
    pub(super) fn learn(&mut self, key: &PartitionKey, w: &Written) {
        let Some(target) = self.target else {
            return;
        };
        let files = w.files.len().max(1);
        if w.rows == 0 || w.bytes == 0 {
            return;
        }
        let data = w.bytes.saturating_sub(w.footer_bytes).max(1);
        let new = Estimate {
            bytes_per_row: data as f64 / w.rows as f64,
            footer: w.footer_bytes as f64 / files as f64,
            rows: w.rows / files,
            bytes: w.bytes / files as u64,
        };
        let near_target = new.bytes.saturating_mul(4) >= target.get();
        let better = |old: Option<&Estimate>| match old {
            None => true,
            Some(old) => near_target || new.rows >= old.rows,
        };
        if better(self.per_key.get(key)) {
            self.insert(key, new);
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

    /// One file of `rows` rows in `bytes` bytes, `footer` of them its footer.
    fn file(rows: usize, bytes: u64, footer: u64) -> Written {
        Written {
            files: vec!["f".into()],
            rows,
            bytes,
            footer_bytes: footer,
            ..Written::default()
        }
    }

    #[test]
    fn without_a_target_a_batch_is_buffer_size_records() {
        let mut s = sizing(0);
        s.learn(&key("a"), &file(1000, 10_000, 0));
        assert_eq!(s.rows(&key("a")), 100);
    }

    #[test]
    fn a_written_file_sets_the_rows_of_the_next_batch() {
        let mut s = sizing(1_000_000);
        assert_eq!(s.rows(&key("a")), 100, "BufferSize until a file is written");
        // 100 rows in 50,000 bytes: 500 bytes per row, so 2,000 rows per MB.
        s.learn(&key("a"), &file(100, 50_000, 0));
        assert_eq!(s.rows(&key("a")), 2000);
        // A key without a file of its own uses the latest estimate of any key.
        assert_eq!(s.rows(&key("b")), 2000);
        s.learn(&key("b"), &file(4000, 1_000_000, 0));
        assert_eq!(s.rows(&key("b")), 4000);
        assert_eq!(s.rows(&key("a")), 2000, "each key keeps its own estimate");
        assert_eq!(s.rows(&key("c")), 4000);
    }

    #[test]
    fn the_footer_is_not_counted_per_row() {
        let mut s = sizing(1_000_000);
        // 100 rows of 200 bytes and a 10,000-byte footer: (1 MB - 10 KB) / 200.
        s.learn(&key("a"), &file(100, 30_000, 10_000));
        assert_eq!(s.rows(&key("a")), 4950);
        // Two files in one batch: per file.
        let mut two = file(200, 60_000, 20_000);
        two.files.push("g".into());
        s.learn(&key("b"), &two);
        assert_eq!(s.rows(&key("b")), 4950);
        // A footer larger than the target still leaves half of it to data.
        s.learn(&key("c"), &file(100, 2_000_000, 1_990_000));
        assert_eq!(s.rows(&key("c")), 5000);
    }

    #[test]
    fn size_triggers_probe_one_batch_at_a_time_until_a_file_is_near_the_target() {
        let mut s = sizing(1_000_000);
        let (a, b) = (key("a"), key("b"));
        assert!(s.ready(&a));
        let probe = Ulid::from(1u128);
        s.taken(&a, probe);
        assert!(!s.ready(&a) && !s.ready(&b), "nothing learnt yet");
        assert!(!s.finished(Ulid::from(2u128)));
        assert!(!s.ready(&a), "another batch does not end the wait");
        assert!(s.finished(probe));
        assert!(s.ready(&a), "a failed probe does not stop size triggers");
        // A small file teaches a rough estimate: the next trigger is a probe again.
        s.taken(&a, probe);
        s.learn(&a, &file(100, 50_000, 0));
        s.finished(probe);
        assert!(s.ready(&b));
        s.taken(&b, Ulid::from(3u128));
        assert!(!s.ready(&a) && !s.ready(&b), "still probing");
        s.learn(&b, &file(2000, 600_000, 0));
        s.finished(Ulid::from(3u128));
        s.taken(&b, Ulid::from(4u128));
        assert!(s.ready(&a) && s.ready(&b), "half the target: settled");
        let mut s = sizing(0);
        s.taken(&a, probe);
        assert!(s.ready(&a), "without a target, BufferSize alone");
    }

    #[test]
    fn a_small_file_does_not_replace_a_better_estimate() {
        let mut s = sizing(1_000_000);
        s.learn(&key("a"), &file(4000, 1_000_000, 0));
        // An interval flush of 3 rows: its footer makes 3,000 bytes per row.
        s.learn(&key("a"), &file(3, 9_000, 0));
        assert_eq!(s.rows(&key("a")), 4000);
        // A file near the target always teaches, even with fewer rows.
        s.learn(&key("a"), &file(2000, 800_000, 0));
        assert_eq!(s.rows(&key("a")), 2500);
    }

    #[test]
    fn tiny_rows_and_empty_files_stay_in_range() {
        let mut s = sizing(u64::MAX);
        s.learn(&key("a"), &file(0, 100, 0));
        s.learn(&key("a"), &file(10, 0, 0));
        assert_eq!(s.rows(&key("a")), 100, "nothing learnt from an empty write");
        s.learn(&key("a"), &file(usize::MAX, 1, 0));
        assert_eq!(s.rows(&key("a")), usize::MAX, "saturates");
        let mut s = sizing(1);
        s.learn(&key("a"), &file(1, 1_000_000, 0));
        assert_eq!(s.rows(&key("a")), 1, "at least one record");
    }

    #[test]
    fn estimates_are_shared_in_a_stored_form_and_asked_for_once() {
        let mut a = sizing(1_000_000);
        assert_eq!(a.note(&key("k")), None, "nothing learned yet");
        a.learn(&key("k"), &file(4000, 1_000_000, 10_000));
        let note = a.note(&key("k")).unwrap();
        // Another node: asks once, then sizes the key as the first node would.
        let mut b = sizing(1_000_000);
        assert!(b.wants_shared(&key("k")));
        b.adopt(&key("k"), Some(&note));
        assert!(!b.wants_shared(&key("k")));
        assert_eq!(b.rows(&key("k")), a.rows(&key("k")));
        assert_eq!(b.rows(&key("k")), 4000);
        // Near the target already: no probe on the new node.
        b.taken(&key("k"), Ulid(1));
        assert!(b.ready(&key("k")));
        assert_eq!(b.note(&key("k")), Some(note), "the same form back");
        // Nothing stored, or something unreadable: asked once, sized from BufferSize.
        for bad in [
            None,
            Some("v2 1 2 3 4"),
            Some("v1 0 0 1 1"),
            Some("v1 nan 0 1 1"),
            Some("v1 1 2 3"),
        ] {
            let mut c = sizing(1_000_000);
            c.adopt(&key("k"), bad);
            assert!(!c.wants_shared(&key("k")), "{bad:?}");
            assert_eq!(c.rows(&key("k")), 100, "{bad:?}");
        }
        // Without a target nothing is asked for or shared.
        let mut d = sizing(0);
        assert!(!d.wants_shared(&key("k")));
        d.learn(&key("k"), &file(4000, 1_000_000, 0));
        assert_eq!(d.note(&key("k")), None);
    }

    #[test]
    fn many_keys_start_their_estimates_again() {
        let mut s = sizing(1_000_000);
        for i in 0..MAX_KEYS + 10 {
            s.learn(&key(&format!("k{i}")), &file(1000, 1_000_000, 0));
        }
        assert!(s.per_key.len() <= MAX_KEYS);
        assert_eq!(s.rows(&key("k0")), 1000, "the latest estimate stands in");
    }
}
