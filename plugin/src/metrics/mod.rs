//! Counters shared by the pipeline, rendered in Prometheus text format by the HTTP
//! server and into `MetricsFile` ([`mod@file`]), and summarised by the tools. Plain
//! atomics: recording is a relaxed add.

pub mod file;
pub mod per_key;

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The buckets of one histogram, fixed at compile time.
pub trait Buckets {
    const NAME: &'static str;
    const HELP: &'static str;
    /// Upper bounds, ascending; at most [`MAX_BUCKETS`].
    const BOUNDS: &'static [f64];
    /// Sums are kept as integers of `1 / UNIT` (microseconds for seconds).
    const UNIT: f64;
}

/// The most buckets a histogram has (its array is this long).
pub const MAX_BUCKETS: usize = 16;

/// A Prometheus histogram of plain atomics: observing is a few relaxed adds.
#[derive(Debug)]
pub struct Histogram<B: Buckets> {
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    sum_units: AtomicU64,
    kind: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        Histogram {
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_units: AtomicU64::new(0),
            kind: PhantomData,
        }
    }
}

impl<B: Buckets> Histogram<B> {
    pub fn observe(&self, v: f64) {
        for (i, b) in B::BOUNDS.iter().enumerate() {
            if v <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_units.fetch_add((v * B::UNIT) as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, s: &mut String, labels: &Labels) {
        let name = B::NAME;
        let _ = writeln!(s, "# HELP {name} {}\n# TYPE {name} histogram", B::HELP);
        for (i, b) in B::BOUNDS.iter().enumerate() {
            let le = labels.with("le", &b.to_string());
            let _ = writeln!(s, "{name}_bucket{le} {}", self.buckets[i].load(Relaxed));
        }
        let count = self.count();
        let le = labels.with("le", "+Inf");
        let _ = writeln!(s, "{name}_bucket{le} {count}");
        let sum = self.sum_units.load(Relaxed) as f64 / B::UNIT;
        let l = labels.plain();
        let _ = writeln!(s, "{name}_sum{l} {sum}\n{name}_count{l} {count}");
    }
}

/// Label pairs put on every sample, already escaped for the exposition format.
#[derive(Debug, Clone, Default)]
pub struct Labels(String);

impl Labels {
    /// `pairs` as `name="value"`; values are escaped (`\\`, `"`, newline).
    pub fn new(pairs: &[(&str, &str)]) -> Labels {
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{k}=\"{v}\"")
            })
            .collect();
        Labels(body.join(","))
    }

    /// `{...}`, or nothing without labels.
    fn plain(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", self.0)
        }
    }

    /// The labels plus `name="value"` (a histogram bucket's `le`, a partition key), the
    /// value escaped.
    fn with(&self, name: &str, value: &str) -> String {
        let extra = Labels::new(&[(name, value)]).0;
        if self.0.is_empty() {
            format!("{{{extra}}}")
        } else {
            format!("{{{},{extra}}}", self.0)
        }
    }
}

/// Time from taking a batch from the buffer to its files being written.
#[derive(Debug)]
pub enum FlushLatency {}

impl Buckets for FlushLatency {
    const NAME: &'static str = "d2p_flush_latency_seconds";
    const HELP: &'static str =
        "Time from taking a batch from the buffer to its file being written.";
    const BOUNDS: &'static [f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    const UNIT: f64 = 1e6;
}

/// Time to store one finished file at the destination, retries included: tells a slow
/// or throttling destination (S3 503s, a saturated disk) from slow conversion, which
/// [`FlushLatency`] mixes in.
#[derive(Debug)]
pub enum WriteLatency {}

impl Buckets for WriteLatency {
    const NAME: &'static str = "d2p_write_seconds";
    const HELP: &'static str = "Time to store one finished file at the destination (write and rename, or PutObject or multipart upload), retries included, whether it succeeded or not.";
    const BOUNDS: &'static [f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    const UNIT: f64 = 1e6;
}

/// The size of each written Parquet file: shows at a glance whether files are
/// analytics-sized or many small ones (BufferSize and FlushInterval set that).
#[derive(Debug)]
pub enum FileSize {}

impl Buckets for FileSize {
    const NAME: &'static str = "d2p_file_size_bytes";
    const HELP: &'static str = "Size of each Parquet file written.";
    const BOUNDS: &'static [f64] = &[
        16384.0,
        65536.0,
        262144.0,
        1048576.0,
        4194304.0,
        16777216.0,
        67108864.0,
        134217728.0,
        268435456.0,
        536870912.0,
        1073741824.0,
    ];
    const UNIT: f64 = 1.0;
}

/// The rows of each written Parquet file: with the size, tells a key of few large
/// records from one of many small files.
#[derive(Debug)]
pub enum FileRows {}

impl Buckets for FileRows {
    const NAME: &'static str = "d2p_file_rows";
    const HELP: &'static str = "Rows of each Parquet file written.";
    const BOUNDS: &'static [f64] = &[100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0];
    const UNIT: f64 = 1.0;
}

#[derive(Default, Debug)]
pub struct Metrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub records_rejected: AtomicU64,
    pub dlq_records: AtomicU64,
    /// Rejected records not kept because the DLQ was at DLQMaxBytes.
    pub dlq_dropped: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub write_failures: AtomicU64,
    pub upload_retries: AtomicU64,
    /// Groups of files made durable together (see `flush::group`).
    pub write_groups: AtomicU64,
    pub recovery_stored: AtomicU64,
    pub recovery_resent: AtomicU64,
    /// Rows of files kept open across flushes (FileMaxAge) that could be neither
    /// written nor kept in the recovery store: they had left the buffer.
    pub records_lost: AtomicU64,
    /// Batches too large to hold at once (a Redis batch of more than a page), read a
    /// page at a time where they are written.
    pub batches_paged: AtomicU64,
    /// What interrupted writes left (incomplete uploads, temporary files), removed by
    /// the writer's sweep.
    pub leftovers_removed: AtomicU64,
    /// Times a key's inferred schema of dynamic records grew.
    pub schema_changes: AtomicU64,
    pub backpressure: AtomicU64,
    /// Of `backpressure`, submissions refused for BufferMaxKeys.
    pub key_limit_refusals: AtomicU64,
    pub full_waits: AtomicU64,
    pub unavailable_waits: AtomicU64,
    pub buffer_records: AtomicU64,
    pub buffer_bytes: AtomicU64,
    pub buffer_keys: AtomicU64,
    /// Files kept open across flushes (FileMaxAge), and the memory they hold.
    pub open_files: AtomicU64,
    pub open_file_bytes: AtomicU64,
    /// How long the oldest open file has been open, in milliseconds: its first
    /// records have waited that long since they left the buffer.
    pub open_file_oldest_ms: AtomicU64,
    /// How long the longest-waiting pending record has waited, in milliseconds.
    pub buffer_oldest_ms: AtomicU64,
    pub flush_latency: Histogram<FlushLatency>,
    pub write_latency: Histogram<WriteLatency>,
    pub file_size: Histogram<FileSize>,
    pub file_rows: Histogram<FileRows>,
    /// Series by partition key, capped at MetricsKeys keys.
    pub per_key: per_key::KeyMetrics,
}

impl Metrics {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        self.render_prometheus_with(&Labels::default())
    }

    /// The same, with `labels` on every sample (to tell instances apart in one
    /// collector).
    pub fn render_prometheus_with(&self, labels: &Labels) -> String {
        let mut s = String::new();
        let l = labels.plain();
        let counters: [(&str, &str, &AtomicU64); 20] = [
            (
                "d2p_records_in_total",
                "Records accepted into the buffer.",
                &self.records_in,
            ),
            (
                "d2p_records_out_total",
                "Records written to Parquet files.",
                &self.records_out,
            ),
            (
                "d2p_records_rejected_total",
                "Records rejected as invalid.",
                &self.records_rejected,
            ),
            (
                "d2p_dlq_records_total",
                "Records sent to the dead-letter queue.",
                &self.dlq_records,
            ),
            (
                "d2p_dlq_dropped_total",
                "Rejected records not kept because the dead-letter queue was at DLQMaxBytes.",
                &self.dlq_dropped,
            ),
            (
                "d2p_files_written_total",
                "Parquet files written.",
                &self.files_written,
            ),
            (
                "d2p_bytes_written_total",
                "Parquet bytes written.",
                &self.bytes_written,
            ),
            (
                "d2p_write_failures_total",
                "Failed write attempts.",
                &self.write_failures,
            ),
            (
                "d2p_upload_retries_total",
                "Write or upload retries.",
                &self.upload_retries,
            ),
            (
                "d2p_write_groups_total",
                "Groups of small files made durable together (the file writer with WriterFsync); a batch written alone is not counted.",
                &self.write_groups,
            ),
            (
                "d2p_recovery_stored_total",
                "Batches kept in the recovery store after failed writes.",
                &self.recovery_stored,
            ),
            (
                "d2p_records_lost_total",
                "Rows of open files (FileMaxAge) neither written nor kept in the recovery store.",
                &self.records_lost,
            ),
            (
                "d2p_batches_paged_total",
                "Batches too large to hold at once, read a page at a time as they were written (Redis batches of more than 10,000 records or about 16 MiB).",
                &self.batches_paged,
            ),
            (
                "d2p_recovery_resent_total",
                "Batches written later from the recovery store.",
                &self.recovery_resent,
            ),
            (
                "d2p_leftovers_removed_total",
                "What interrupted writes left, removed: incomplete S3 uploads aborted (S3AbortIncompleteAfter), temporary files of the file writer and the recovery store deleted.",
                &self.leftovers_removed,
            ),
            (
                "d2p_schema_changes_total",
                "Times the inferred schema of a key of dynamic records grew (a new field or a wider type), so its next files have a different schema.",
                &self.schema_changes,
            ),
            (
                "d2p_backpressure_total",
                "Submissions refused because the buffer was full or unavailable.",
                &self.backpressure,
            ),
            (
                "d2p_key_limit_refusals_total",
                "Of d2p_backpressure_total, submissions refused because their new partition keys would pass BufferMaxKeys.",
                &self.key_limit_refusals,
            ),
            (
                "d2p_buffer_full_waits_total",
                "Submissions that found the buffer full and waited for room (BufferFullWait).",
                &self.full_waits,
            ),
            (
                "d2p_buffer_unavailable_waits_total",
                "Submissions that found Redis unreachable or restarting and retried within BufferFullWait.",
                &self.unavailable_waits,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{l} {}",
                v.load(Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "d2p_buffer_records",
                "Records waiting in the buffer (pending and in flight).",
                &self.buffer_records,
            ),
            (
                "d2p_buffer_bytes",
                "Approximate memory held by buffered records.",
                &self.buffer_bytes,
            ),
            (
                "d2p_buffer_keys",
                "Partition keys with pending records: each is at least one file at the next flush.",
                &self.buffer_keys,
            ),
            (
                "d2p_open_files",
                "Files kept open across flushes (FileMaxAge), not yet written.",
                &self.open_files,
            ),
            (
                "d2p_open_file_bytes",
                "Memory held by the files kept open across flushes (their encoded row groups).",
                &self.open_file_bytes,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{l} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP d2p_buffer_oldest_record_seconds How long the longest-waiting pending record has waited for its key's flush (0 when none waits): the pipeline's lag; far above FlushInterval, writing is stuck or behind.\n# TYPE d2p_buffer_oldest_record_seconds gauge\nd2p_buffer_oldest_record_seconds{l} {:.3}",
            self.buffer_oldest_ms.load(Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(
            s,
            "# HELP d2p_open_file_oldest_seconds How long the oldest file kept open across flushes (FileMaxAge) has been open (0 when none is): with FileMaxAge, records wait this long besides the buffer's lag; far above FileMaxAge, writing is stuck.\n# TYPE d2p_open_file_oldest_seconds gauge\nd2p_open_file_oldest_seconds{l} {:.3}",
            self.open_file_oldest_ms.load(Relaxed) as f64 / 1000.0
        );
        self.flush_latency.render(&mut s, labels);
        self.write_latency.render(&mut s, labels);
        self.file_size.render(&mut s, labels);
        self.file_rows.render(&mut s, labels);
        self.per_key.render(&mut s, labels);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_go_on_every_sample_escaped() {
        let m = Metrics::default();
        Metrics::add(&m.files_written, 2);
        m.file_size.observe(100.0);
        let t = m.render_prometheus_with(&Labels::new(&[("output", "a\"b")]));
        assert!(
            t.contains("d2p_files_written_total{output=\"a\\\"b\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("d2p_file_size_bytes_bucket{output=\"a\\\"b\",le=\"16384\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("d2p_file_size_bytes_count{output=\"a\\\"b\"} 1\n"),
            "{t}"
        );
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("{output="), "{line}");
        }
    }

    #[test]
    fn bucket_tables_fit_and_ascend() {
        fn check<B: Buckets>() {
            assert!(B::BOUNDS.len() <= MAX_BUCKETS, "{}", B::NAME);
            assert!(B::BOUNDS.windows(2).all(|w| w[0] < w[1]), "{}", B::NAME);
        }
        check::<FlushLatency>();
        check::<FileSize>();
    }

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        Metrics::add(&m.records_in, 3);
        m.flush_latency.observe(0.02);
        m.flush_latency.observe(3.0);
        m.file_size.observe(40_000.0);
        let t = m.render_prometheus();
        assert!(t.contains("d2p_records_in_total 3\n"));
        assert!(t.contains("d2p_flush_latency_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(t.contains("d2p_flush_latency_seconds_bucket{le=\"5\"} 2\n"));
        assert!(t.contains("d2p_flush_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(t.contains("d2p_flush_latency_seconds_sum 3.02\n"));
        assert!(t.contains("d2p_flush_latency_seconds_count 2\n"));
        assert!(t.contains("d2p_file_size_bytes_bucket{le=\"16384\"} 0\n"));
        assert!(t.contains("d2p_file_size_bytes_bucket{le=\"65536\"} 1\n"));
        assert!(t.contains("d2p_file_size_bytes_sum 40000\n"));
        assert!(t.contains("d2p_file_size_bytes_count 1\n"));
    }
}
