//! Per-key series: rows, files and bytes written and records rejected for each partition
//! key, and when it was last written, so one quiet or failing source shows among many
//! (the totals hide it). A time series per key is what a metrics store pays for, so
//! only the first `MetricsKeys` keys get their own; the rest are summed under
//! `key="_other"`, which also says that the cap was reached.

use super::Labels;
use crate::partition::PartitionKey;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

/// The label value that sums the keys beyond the cap.
pub const OTHER: &str = "_other";

/// The cap before the configuration sets it (MetricsKeys' default).
pub const DEFAULT_CAP: usize = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    rows: u64,
    files: u64,
    bytes: u64,
    rejected: u64,
    /// Milliseconds since the epoch of the last file written; 0 before any.
    last_write_ms: u64,
}

#[derive(Debug, Default)]
struct Table {
    keys: HashMap<PartitionKey, Counts>,
    /// Keys beyond the cap, summed; `None` until one comes.
    other: Option<Counts>,
}

impl Table {
    /// The counts `key` adds to: its own while there is room, else the sum of the rest.
    fn slot(&mut self, key: &PartitionKey, cap: usize) -> &mut Counts {
        if !self.keys.contains_key(key) && self.keys.len() >= cap {
            return self.other.get_or_insert_with(Counts::default);
        }
        self.keys.entry(key.clone()).or_default()
    }
}

/// Counters by partition key, with a cap on how many keys get their own.
#[derive(Debug)]
pub struct KeyMetrics {
    cap: AtomicUsize,
    table: Mutex<Table>,
}

impl Default for KeyMetrics {
    fn default() -> Self {
        KeyMetrics {
            cap: AtomicUsize::new(DEFAULT_CAP),
            table: Mutex::default(),
        }
    }
}

impl KeyMetrics {
    /// How many keys get series of their own; 0 turns per-key series off.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Relaxed);
    }

    /// Runs `f` on `key`'s counts (off with a cap of 0). Called once per file or
    /// rejected batch, never per record, so a lock is cheap enough.
    fn update(&self, key: &PartitionKey, f: impl FnOnce(&mut Counts)) {
        let cap = self.cap.load(Relaxed);
        if cap == 0 {
            return;
        }
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        f(t.slot(key, cap));
    }

    /// A file of `rows` rows and `bytes` bytes of `key` was written at `at`.
    pub fn file_written(&self, key: &PartitionKey, rows: usize, bytes: usize, at: SystemTime) {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.update(key, |c| {
            c.rows += rows as u64;
            c.files += 1;
            c.bytes += bytes as u64;
            c.last_write_ms = c.last_write_ms.max(ms);
        });
    }

    /// `n` records of `key` were rejected after buffering (conversion failed, or the
    /// write at shutdown), and sent to the dead-letter queue.
    pub fn rejected(&self, key: &PartitionKey, n: usize) {
        self.update(key, |c| c.rejected += n as u64);
    }

    /// The per-key families, keys in order, `_other` last; nothing when off or empty.
    pub(super) fn render(&self, s: &mut String, labels: &Labels) {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&str, &Counts)> = t.keys.iter().map(|(k, c)| (k.as_str(), c)).collect();
        rows.sort_unstable_by_key(|(k, _)| *k);
        rows.extend(t.other.as_ref().map(|c| (OTHER, c)));
        if rows.is_empty() {
            return;
        }
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&Counts) -> String,
        );
        let families: [Family; 5] = [
            (
                "d2p_key_rows_written_total",
                "counter",
                "Rows written to Parquet files, by partition key (the first MetricsKeys keys; the rest summed under key=\"_other\").",
                |c| c.rows.to_string(),
            ),
            (
                "d2p_key_files_written_total",
                "counter",
                "Parquet files written, by partition key.",
                |c| c.files.to_string(),
            ),
            (
                "d2p_key_bytes_written_total",
                "counter",
                "Parquet bytes written, by partition key.",
                |c| c.bytes.to_string(),
            ),
            (
                "d2p_key_records_rejected_total",
                "counter",
                "Buffered records of the key rejected (conversion failed, or the write at shutdown) and sent to the dead-letter queue.",
                |c| c.rejected.to_string(),
            ),
            (
                "d2p_key_last_write_timestamp_seconds",
                "gauge",
                "When a file of the key was last written (Unix time; 0 before any): time() minus it is how long a source has been quiet.",
                |c| format!("{:.3}", c.last_write_ms as f64 / 1000.0),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (key, c) in &rows {
                let l = labels.with("key", key);
                let _ = writeln!(s, "{name}{l} {}", value(c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(s: &str) -> PartitionKey {
        PartitionKey::from_text(s)
    }

    #[test]
    fn keys_past_the_cap_are_summed_under_other() {
        let m = KeyMetrics::default();
        m.set_cap(2);
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        m.file_written(&key("b:x"), 10, 100, at);
        m.file_written(&key("a:\"q\""), 1, 50, at);
        m.file_written(&key("c"), 5, 7, at);
        m.file_written(&key("d"), 6, 8, at);
        m.file_written(&key("b:x"), 2, 20, at + Duration::from_secs(1));
        m.rejected(&key("d"), 3);
        let mut s = String::new();
        m.render(&mut s, &Labels::new(&[("output", "o")]));
        for want in [
            "d2p_key_rows_written_total{output=\"o\",key=\"a:\\\"q\\\"\"} 1\n",
            "d2p_key_rows_written_total{output=\"o\",key=\"b:x\"} 12\n",
            "d2p_key_rows_written_total{output=\"o\",key=\"_other\"} 11\n",
            "d2p_key_files_written_total{output=\"o\",key=\"b:x\"} 2\n",
            "d2p_key_files_written_total{output=\"o\",key=\"_other\"} 2\n",
            "d2p_key_bytes_written_total{output=\"o\",key=\"_other\"} 15\n",
            "d2p_key_records_rejected_total{output=\"o\",key=\"_other\"} 3\n",
            "d2p_key_records_rejected_total{output=\"o\",key=\"b:x\"} 0\n",
            "d2p_key_last_write_timestamp_seconds{output=\"o\",key=\"b:x\"} 1700000001.500\n",
            "# TYPE d2p_key_last_write_timestamp_seconds gauge\n",
        ] {
            assert!(s.contains(want), "{want} in\n{s}");
        }
        // Three keys' samples per family: a, b and _other; c and d have none of their own.
        assert_eq!(s.lines().filter(|l| !l.starts_with('#')).count(), 15);
        assert!(!s.contains("key=\"c\"") && !s.contains("key=\"d\""));
    }

    #[test]
    fn a_cap_of_zero_turns_them_off() {
        let m = KeyMetrics::default();
        m.set_cap(0);
        m.file_written(&key("a"), 1, 1, SystemTime::now());
        m.rejected(&key("a"), 1);
        let mut s = String::new();
        m.render(&mut s, &Labels::default());
        assert!(s.is_empty(), "{s}");
    }
}
