//! The metrics as a Prometheus text file, rewritten every few seconds and at close
//! (`MetricsFile`). A Fluent Bit plugin has no HTTP endpoint of its own; this is how its
//! counters reach Prometheus, through node_exporter's textfile collector or any agent
//! that reads such files. Every sample carries `output="<file stem>"`, so several
//! instances can share one collector folder.

use super::Labels;
use crate::flush::Shared;
use crate::log_at;
use crate::logging::Level;
use crate::writer::file::write_atomic;
use crossbeam_channel::{RecvTimeoutError, Sender as Tx, bounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the file is rewritten: a scrape interval's worth of staleness at most.
pub const EVERY: Duration = Duration::from_secs(10);

/// The thread that keeps the file current; [`MetricsFile::stop`] writes a last snapshot.
pub struct MetricsFile {
    stop: Option<Tx<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsFile {
    pub fn start(path: &Path, shared: Arc<Shared>) -> std::io::Result<MetricsFile> {
        let path = path.to_path_buf();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let labels = Labels::new(&[("output", &stem)]);
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("d2p-metrics".into())
            .spawn(move || {
                let mut snapshot = Snapshot {
                    path,
                    labels,
                    shared,
                    failing: false,
                };
                loop {
                    snapshot.write();
                    match stopped.recv_timeout(EVERY) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
                snapshot.write();
            })?;
        Ok(MetricsFile {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Writes a last snapshot (after the final flush, so it holds the whole run) and
    /// stops the thread. Idempotent.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsFile {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Snapshot {
    path: PathBuf,
    labels: Labels,
    shared: Arc<Shared>,
    /// Reported once when writing starts failing, and once when it works again.
    failing: bool,
}

impl Snapshot {
    fn write(&mut self) {
        let text = self.shared.metrics.render_prometheus_with(&self.labels);
        match write_atomic(&self.path, text.as_bytes(), false) {
            Ok(()) if self.failing => {
                self.failing = false;
                log_at!(self.shared.log, Level::Info, "MetricsFile written again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                log_at!(
                    self.shared.log,
                    Level::Warn,
                    "cannot write MetricsFile: {e}"
                );
            }
            Err(_) => {}
        }
    }
}
