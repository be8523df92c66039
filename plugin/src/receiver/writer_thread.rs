//! A writer thread: converts and writes the batches the buffer thread hands it, and
//! reports each result back. Writes run here, off the buffer thread, so that a slow
//! destination (S3) never delays the acknowledgement of new records.

use super::{Done, Job, Report};
use crate::buffer::Batch;
use crate::buffer::BatchInfo;
use crate::flush::{FlushFailure, Flusher, GROUP_BATCHES, GROUP_RECORDS, Shared, Written};
use crate::log_at;
use crate::logging::Level;
use crate::writer::SWEEP_EVERY;
use crate::writer::recovery::Pass;
use crossbeam_channel::{Receiver as Rx, Sender as Tx};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The housekeeping one writer thread does besides writing batches (the first one;
/// the others only write).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Chores {
    /// How often to retry the recovery store (TryAutoRecover), if at all. The store is
    /// retried at start, every so often whether or not batches keep coming, and once
    /// more at close, so files kept during an outage are delivered before the process
    /// ends if the destination is back.
    pub auto_recover: Option<Duration>,
    /// Whether to sweep what interrupted writes left at the destination, at start and
    /// every [`SWEEP_EVERY`].
    pub sweep: bool,
}

/// How often a writer thread looks for open files that reached FileMaxAge.
const AGE_CHECK_EVERY: Duration = Duration::from_millis(200);

pub(super) fn writer_loop(
    mut f: Flusher,
    jobs: Rx<Job>,
    done: Tx<Report>,
    chores: Chores,
    shared: Arc<Shared>,
) {
    let every = chores.auto_recover.unwrap_or(Duration::MAX);
    let auto_recover = chores.auto_recover.is_some();
    if chores.sweep {
        f.sweep_leftovers();
    }
    if auto_recover {
        f.resend_recovery(Pass::Periodic);
    }
    let (mut last_resend, mut last_sweep) = (Instant::now(), Instant::now());
    let mut last_age_check = Instant::now();
    // A job taken while gathering a group, to run after it.
    let mut next: Option<Job> = None;
    loop {
        // Files kept open across flushes are written once they are FileMaxAge old,
        // whether or not batches keep coming (metrics and the log tell of them).
        if last_age_check.elapsed() >= AGE_CHECK_EVERY {
            f.finish_open(false);
            last_age_check = Instant::now();
        }
        // Checked on every turn, not only when idle: a steady stream of batches must not
        // keep the store waiting until the next restart.
        if auto_recover && last_resend.elapsed() >= every {
            f.resend_recovery(Pass::Periodic);
            last_resend = Instant::now();
        }
        if chores.sweep && last_sweep.elapsed() >= SWEEP_EVERY {
            f.sweep_leftovers();
            last_sweep = Instant::now();
        }
        let job = match next
            .take()
            .map_or_else(|| jobs.recv_timeout(AGE_CHECK_EVERY), Ok)
        {
            Ok(j) => j,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                // The receiver is closing: every batch is written; now the open files.
                let last = f.finish_open(true);
                let _ = done.send(Report::Finished(None, last));
                if auto_recover {
                    f.resend_recovery(Pass::UntilFailure);
                }
                break;
            }
        };
        let mut batches = match job {
            Job::Write(b) => vec![b],
            Job::FinishOpen(id) => {
                let w = f.finish_open(true);
                if done.send(Report::Finished(Some(id), w)).is_err() {
                    break;
                }
                continue;
            }
        };
        // The batches already waiting go with it, to be made durable together (see
        // `flush::group`); a job of another kind waits for the group.
        let mut records = batches[0].len();
        while f.groups() && batches.len() < GROUP_BATCHES && records < GROUP_RECORDS {
            match jobs.try_recv() {
                Ok(Job::Write(b)) => {
                    records += b.len();
                    batches.push(b);
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let results = match catch_unwind(AssertUnwindSafe(|| f.flush_group(&batches))) {
            Ok(r) => r,
            Err(_) => {
                // Files of the group already made durable (a group past GROUP_BYTES
                // commits on the way) are written again under the same names when
                // their records, still buffered, are flushed next.
                f.abandon_group();
                batches
                    .iter()
                    .map(|batch| {
                        log_at!(
                            shared.log,
                            Level::Error,
                            "flush of batch {} panicked; its records stay buffered",
                            batch.id
                        );
                        Err(FlushFailure {
                            error: "flush panicked".into(),
                            unwritten: (0..batch.records.len()).collect(),
                            partial: Box::default(),
                        })
                    })
                    .collect()
            }
        };
        for (batch, result) in batches.into_iter().zip(results) {
            if !report(batch, result, &done) {
                return;
            }
        }
    }
}

/// Reports a batch's result to the buffer thread, and frees its written records here,
/// off the buffer thread. `false` once the buffer thread is gone.
fn report(mut batch: Batch, result: Result<Written, FlushFailure>, done: &Tx<Report>) -> bool {
    let id = batch.id;
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
    let sent = done.send(Report::Batch(msg)).is_ok();
    drop(batch);
    sent
}
