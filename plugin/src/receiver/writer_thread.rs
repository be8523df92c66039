//! A writer thread: converts and writes the batches the buffer thread hands it, and
//! reports each result back. Writes run here, off the buffer thread, so that a slow
//! destination (S3) never delays the acknowledgement of new records.

use super::{Done, Job};
use crate::buffer::BatchInfo;
use crate::flush::{FlushFailure, Flusher, Shared};
use crate::log_at;
use crate::logging::Level;
use crate::writer::recovery::Pass;
use crossbeam_channel::{Receiver as Rx, Sender as Tx};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `auto_recover`: how often to retry the recovery store (TryAutoRecover), if at all.
/// The store is retried at start, every `auto_recover` whether or not batches keep
/// coming, and once more at close, so files kept during an outage are delivered before
/// the process ends if the destination is back.
pub(super) fn writer_loop(
    mut f: Flusher,
    jobs: Rx<Job>,
    done: Tx<Done>,
    auto_recover: Option<Duration>,
    shared: Arc<Shared>,
) {
    let every = auto_recover.unwrap_or(Duration::MAX);
    let auto_recover = auto_recover.is_some();
    if auto_recover {
        f.resend_recovery(Pass::Periodic);
    }
    let mut last_resend = Instant::now();
    loop {
        // Checked on every turn, not only when idle: a steady stream of batches must not
        // keep the store waiting until the next restart.
        if auto_recover && last_resend.elapsed() >= every {
            f.resend_recovery(Pass::Periodic);
            last_resend = Instant::now();
        }
        let job = match jobs.recv_timeout(Duration::from_secs(1)) {
            Ok(j) => j,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                if auto_recover {
                    f.resend_recovery(Pass::UntilFailure);
                }
                break;
            }
        };
        let mut batch = job.batch;
        let id = batch.id;
        let result = match catch_unwind(AssertUnwindSafe(|| f.flush(&batch))) {
            Ok(r) => r,
            Err(_) => {
                log_at!(
                    shared.log,
                    Level::Error,
                    "flush of batch {id} panicked; its records stay buffered"
                );
                Err(FlushFailure {
                    error: "flush panicked".into(),
                    unwritten: (0..batch.records.len()).collect(),
                    partial: Box::default(),
                })
            }
        };
        let msg = match result {
            Ok(w) => Done {
                id,
                written: BatchInfo {
                    schema: w.schema.clone(),
                    ..batch.info()
                },
                result: Ok(w),
            },
            Err(failure) => {
                let unwritten = batch.split_off(&failure.unwritten);
                Done {
                    id,
                    written: BatchInfo {
                        schema: failure.partial.schema.clone(),
                        ..batch.info()
                    },
                    result: Err((failure, unwritten)),
                }
            }
        };
        if done.send(msg).is_err() {
            break;
        }
        // The written records are freed here, off the buffer thread.
        drop(batch);
    }
}
