//! Counters shared by the pipeline, rendered in Prometheus text format by the HTTP
//! server and summarised by the tools. Plain atomics: recording is a relaxed add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the flush-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Debug)]
pub struct Metrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub records_rejected: AtomicU64,
    pub dlq_records: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub write_failures: AtomicU64,
    pub upload_retries: AtomicU64,
    pub recovery_stored: AtomicU64,
    pub recovery_resent: AtomicU64,
    pub backpressure: AtomicU64,
    pub full_waits: AtomicU64,
    pub unavailable_waits: AtomicU64,
    pub buffer_records: AtomicU64,
    pub buffer_bytes: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    pub fn observe_flush(&self, secs: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut s = String::new();
        let counters: [(&str, &str, &AtomicU64); 13] = [
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
                "d2p_recovery_stored_total",
                "Batches kept in the recovery store after failed writes.",
                &self.recovery_stored,
            ),
            (
                "d2p_recovery_resent_total",
                "Batches written later from the recovery store.",
                &self.recovery_resent,
            ),
            (
                "d2p_backpressure_total",
                "Submissions refused because the buffer was full or unavailable.",
                &self.backpressure,
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
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
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
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        }
        let name = "d2p_flush_latency_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time from taking a batch from the buffer to its file being written.\n# TYPE {name} histogram"
        );
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "{name}_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "{name}_count {count}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        Metrics::add(&m.records_in, 3);
        m.observe_flush(0.02);
        m.observe_flush(3.0);
        let t = m.render_prometheus();
        assert!(t.contains("d2p_records_in_total 3\n"));
        assert!(t.contains("d2p_flush_latency_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(t.contains("d2p_flush_latency_seconds_bucket{le=\"5\"} 2\n"));
        assert!(t.contains("d2p_flush_latency_seconds_count 2\n"));
    }
}
