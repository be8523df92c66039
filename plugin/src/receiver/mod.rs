//! The receiver: the pipeline's background threads behind a bounded channel.
//!
//! - One **buffer thread** (`buffer_thread.rs`) owns the buffer. Producers send it
//!   whole submissions through a bounded crossbeam channel and wait for its
//!   acknowledgement. A full channel or buffer holds a producer for `BufferFullWait`
//!   at most, then answers [`SubmitError::Full`], so no producer is blocked forever
//!   (only json2parquet waits as long as it takes). The buffer thread decides flushes:
//!   by size (a key reaches BufferSize), by age (a key's oldest record has waited
//!   FlushInterval), on request, and on close (everything).
//! - **Writer threads** (`writer_thread.rs`; FlushWorkers, default 1) convert batches
//!   and write them. They are separate so that a slow write (S3) never delays
//!   acknowledgements.
//!
//! A submission is acknowledged only once it is in the buffer. If the producer gives up
//! waiting, the submission is cancelled atomically: either the buffer thread had already
//! claimed it (the producer then waits for the result) or it never will, so a retried
//! submission is never stored twice.
//!
//! This module is the producers' side: submissions, explicit flushes and close.

mod buffer_thread;
mod file_size;
mod writer_thread;

use crate::buffer::mem::MemBuffer;
use crate::buffer::{Batch, BatchInfo, Buffer, BufferError, Groups, Pusher, PusherFactory};
use crate::config::Config;
use crate::dlq::{DlqSink, FileDlq, NoDlq};
use crate::flush::{FlushFailure, Flusher, Shared, Written};
use crate::idempotency::Seal;
use crate::ingest::KeyedBatch;
use crate::log_at;
use crate::logging::{Level, SharedLogger};
use crate::metrics::Metrics;
use crate::metrics::file::MetricsFile;
use crate::open_files::OpenFiles;
use crate::partition::PartitionKey;
use crate::writer::Writer;
use buffer_thread::BufferThread;
use crossbeam_channel::{RecvTimeoutError, SendTimeoutError, Sender as Tx, TrySendError, bounded};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use writer_thread::{Chores, writer_loop};

/// Why a submission was not accepted. All but `Closed` are worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("buffer full: {0}")]
    Full(String),
    #[error("buffer unavailable: {0}")]
    Unavailable(String),
    #[error("timed out waiting for the buffer")]
    Timeout,
    #[error("receiver is closed")]
    Closed,
}

/// Counts a submission refused for lack of room (or an unavailable store), and, apart,
/// those refused for `BufferMaxKeys`: an operator who sees backpressure needs to know
/// which limit to look at.
fn count_refusal(m: &Metrics, cause: Option<&BufferError>) {
    Metrics::add(&m.backpressure, 1);
    if let Some(BufferError::TooManyKeys(_)) = cause {
        Metrics::add(&m.key_limit_refusals, 1);
    }
}

impl From<BufferError> for SubmitError {
    fn from(e: BufferError) -> Self {
        match e {
            BufferError::Full(s) | BufferError::TooManyKeys(s) => SubmitError::Full(s),
            BufferError::Unavailable(s) | BufferError::Rejected(s) => SubmitError::Unavailable(s),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("writer: {0}")]
    Writer(#[from] crate::writer::WriteError),
    #[error("{0}")]
    Other(String),
}

/// What a submission did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    pub records: usize,
    pub rejected: usize,
    /// The submission's [`Seal`] was stored with its records (a direct push to Redis).
    pub sealed: bool,
}

/// Totals of a flush or close.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub batches: usize,
    pub files: usize,
    pub rows: usize,
    pub bytes: u64,
    pub recovered: usize,
    pub dead_lettered: usize,
    /// Records that could not be stored anywhere (close only: at runtime they stay
    /// buffered and are retried).
    pub lost: usize,
    pub errors: Vec<String>,
}

impl FlushReport {
    fn add(&mut self, w: &Written) {
        self.files += w.files.len();
        self.rows += w.rows;
        self.bytes += w.bytes;
        self.recovered += w.recovered;
        self.dead_lettered += w.dead_lettered;
        self.lost += w.lost;
    }
}

// The life of a submission. The producer may cancel it (ABANDONED) only while the buffer
// thread does not hold it: in the channel (PENDING) or waiting for room (PARKED).
const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;
const PARKED: u8 = 3;

/// How long a producer that may not wait for room (`BufferFullWait 0`) waits for the
/// buffer thread to take its submission at all.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a producer whose wait is over looks again, while the buffer thread holds its
/// submission for a moment (it answers or parks it right away).
const RECHECK: Duration = Duration::from_millis(5);

/// The first and the longest pause between retries of a direct push (Redis) that
/// failed for a reason that may pass.
pub(crate) const RETRY_PAUSE_FIRST: Duration = Duration::from_millis(20);
pub(crate) const RETRY_PAUSE_MAX: Duration = Duration::from_millis(250);

/// How long a producer waits for room in a full buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// Refused at once (`BufferFullWait 0`).
    Never,
    /// Up to this long (`BufferFullWait`), then refused.
    Upto(Duration),
    /// Until room is made (batch tools).
    Forever,
}

enum Msg {
    Push(Push),
    /// A direct pusher stored records: their keys' new lengths.
    Pushed(Vec<(PartitionKey, usize)>),
    Flush {
        done: Tx<FlushReport>,
    },
    Close {
        done: Tx<FlushReport>,
    },
}

struct Push {
    groups: Groups,
    state: Arc<AtomicU8>,
    /// Why it was last parked: the answer its producer gives if it stops waiting names
    /// the limit (BufferMaxBytes or BufferMaxKeys), not only that the buffer was full.
    cause: Arc<Mutex<Option<BufferError>>>,
    reply: Tx<Result<(), SubmitError>>,
    /// May wait for room (parked) instead of being answered Full at once.
    wait: bool,
    /// Has been parked (counted once in the metrics, however often it is parked).
    waited: bool,
}

enum Job {
    Write(Batch),
    /// Finish and write every file kept open across flushes (FileMaxAge): an explicit
    /// flush, once the batches it took are in them.
    FinishOpen(ulid::Ulid),
}

impl Job {
    fn id(&self) -> ulid::Ulid {
        match self {
            Job::Write(b) => b.id,
            Job::FinishOpen(id) => *id,
        }
    }
}

/// A finished job. On success the writer thread keeps (and frees) the records; on
/// failure the unwritten ones come back to be kept in the buffer.
struct Done {
    id: ulid::Ulid,
    /// The part that was written (or dead-lettered): to be acknowledged.
    written: BatchInfo,
    result: Result<Written, (FlushFailure, Batch)>,
}

/// What a writer thread reports.
enum Report {
    Batch(Done),
    /// Open files finished: on request (the job's id), or when the writer stops at
    /// close (`None`).
    Finished(Option<ulid::Ulid>, Written),
}

/// Idle direct pushers, one per producer thread that has pushed.
type PusherPool = Mutex<Vec<Box<dyn Pusher>>>;

pub struct Receiver {
    tx: Tx<Msg>,
    /// Direct pushes (Redis): a pool of producer-side connections.
    direct: Option<(PusherFactory, PusherPool)>,
    closing: std::sync::atomic::AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    /// BufferFullWait.
    full_wait: Duration,
    closed: Mutex<Option<FlushReport>>,
    /// MetricsFile's writer, stopped after the final flush.
    metrics_file: Mutex<Option<MetricsFile>>,
    /// Where files go and with what settings, for the start-up log line.
    writer_description: String,
}

/// The pieces a receiver runs on; [`Receiver::start`] builds them from the config.
pub struct Parts {
    pub buffer: Box<dyn Buffer>,
    pub writers: Vec<Box<dyn Writer>>,
    pub dlq: Arc<dyn DlqSink>,
}

impl Parts {
    /// The configured buffer, writers and DLQ.
    pub fn from_config(cfg: &Config) -> Result<Parts, ReceiverError> {
        let buffer: Box<dyn Buffer> = match cfg.buffer_type {
            crate::config::BufferType::Mem => {
                Box::new(MemBuffer::new(cfg.buffer_max_bytes).with_max_keys(cfg.buffer_max_keys))
            }
            crate::config::BufferType::Redis => Box::new(
                crate::buffer::redis::RedisBuffer::connect(&cfg.redis, cfg.flush_interval)
                    .map_err(|e| ReceiverError::Other(e.to_string()))?
                    .with_max_keys(cfg.buffer_max_keys),
            ),
        };
        let mut writers = Vec::new();
        for _ in 0..cfg.flush_workers {
            writers.push(crate::writer::open(cfg)?);
        }
        // Fail at start, with a clear message, rather than at the first flush.
        if let Some(w) = writers.first_mut() {
            w.check()?;
        }
        let dlq: Arc<dyn DlqSink> = match (cfg.use_dlq, cfg.buffer_type) {
            (false, _) => Arc::new(NoDlq),
            (true, crate::config::BufferType::Mem) => Arc::new(
                FileDlq::in_dir(&cfg.dlq_path)
                    .with_limit(cfg.dlq_max_bytes)
                    .with_fsync(cfg.writer_fsync),
            ),
            (true, crate::config::BufferType::Redis) => Arc::new(
                crate::buffer::redis::RedisDlq::new(&cfg.redis, cfg.dlq_max_bytes)
                    .map_err(|e| ReceiverError::Other(e.to_string()))?,
            ),
        };
        Ok(Parts {
            buffer,
            writers,
            dlq,
        })
    }
}

impl Receiver {
    pub fn start(cfg: &Config, log: SharedLogger) -> Result<Receiver, ReceiverError> {
        Self::start_with(cfg, log, Parts::from_config(cfg)?)
    }

    pub fn start_with(
        cfg: &Config,
        log: SharedLogger,
        parts: Parts,
    ) -> Result<Receiver, ReceiverError> {
        crate::alloc::tune();
        let metrics = Metrics::default();
        metrics.per_key.set_cap(cfg.metrics_keys);
        let shared = Arc::new(Shared {
            metrics,
            log,
            dlq: parts.dlq,
            use_dlq: cfg.use_dlq,
            schemas: Default::default(),
            open_files: cfg.open_file_age().map(|age| {
                OpenFiles::new(
                    age,
                    cfg.file_target_size.map(|n| n.get()),
                    cfg.buffer_max_bytes,
                )
            }),
        });
        let mut flushers = Vec::new();
        let writer_description = parts
            .writers
            .first()
            .map(|w| w.describe())
            .unwrap_or_default();
        let local_recovery = !parts.buffer.durable();
        for w in parts.writers {
            flushers.push(
                Flusher::new(cfg, w, shared.clone(), local_recovery)
                    .map_err(ReceiverError::Config)?,
            );
        }
        if flushers.is_empty() {
            return Err(ReceiverError::Config(
                "at least one writer is needed".into(),
            ));
        }
        let direct = parts
            .buffer
            .pusher_factory()
            .map(|f| (f, Mutex::new(Vec::new())));
        let (tx, rx) = bounded::<Msg>(cfg.queue_capacity);
        // Batches handed to each writer thread at once: two keep it busy; a writer that
        // makes groups durable together takes as many as a group holds.
        let per_worker = match flushers[0].groups() {
            true => crate::flush::GROUP_BATCHES,
            false => 2,
        };
        let (job_tx, job_rx) = bounded::<Job>(flushers.len() * per_worker);
        let (done_tx, done_rx) = bounded::<Report>(flushers.len() * 2 + 1);
        let mut workers = Vec::new();
        for (i, f) in flushers.into_iter().enumerate() {
            let jr = job_rx.clone();
            let dt = done_tx.clone();
            let chores = match i {
                0 => Chores {
                    auto_recover: cfg.try_auto_recover.then_some(cfg.recovery_interval),
                    sweep: true,
                },
                _ => Chores::default(),
            };
            let sh = shared.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("d2p-writer-{i}"))
                    .spawn(move || writer_loop(f, jr, dt, chores, sh))
                    .map_err(|e| {
                        ReceiverError::Other(format!("cannot start writer thread: {e}"))
                    })?,
            );
        }
        drop(done_tx);
        let state = BufferThread::new(
            cfg,
            parts.buffer,
            shared.clone(),
            job_tx,
            workers,
            per_worker,
        );
        let thread = std::thread::Builder::new()
            .name("d2p-buffer".into())
            .spawn(move || state.run(rx, done_rx))
            .map_err(|e| ReceiverError::Other(format!("cannot start buffer thread: {e}")))?;
        let metrics_file = match &cfg.metrics_file {
            Some(path) => Some(MetricsFile::start(path, shared.clone()).map_err(|e| {
                ReceiverError::Other(format!("cannot start the MetricsFile thread: {e}"))
            })?),
            None => None,
        };
        Ok(Receiver {
            tx,
            direct,
            closing: std::sync::atomic::AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
            shared,
            full_wait: cfg.buffer_full_wait,
            closed: Mutex::new(None),
            metrics_file: Mutex::new(metrics_file),
            writer_description,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The writer's own account of where files go (`S3 writer to s3://...`), for the
    /// front ends' start-up line.
    pub fn writer_description(&self) -> &str {
        &self.writer_description
    }

    /// Dead-letters the batch's rejected records, then stores its records in the buffer.
    /// Returns only when the buffer holds them (or with the reason it does not). A full
    /// buffer gets `BufferFullWait` to make room (a write usually is), then the answer is
    /// [`SubmitError::Full`]; records refused so are never stored later.
    pub fn submit(&self, batch: KeyedBatch) -> Result<Accepted, SubmitError> {
        self.submit_inner(batch, self.patience(), None)
    }

    /// `BufferFullWait`, as a submission's patience.
    fn patience(&self) -> Patience {
        if self.full_wait.is_zero() {
            Patience::Never
        } else {
            Patience::Upto(self.full_wait)
        }
    }

    /// Like [`Receiver::submit`], with an idempotency key's answer to store in the same
    /// transaction as the records where the buffer can ([`Accepted::sealed`] says
    /// whether it did; otherwise the caller stores it after).
    pub fn submit_sealed(&self, batch: KeyedBatch, seal: &Seal) -> Result<Accepted, SubmitError> {
        self.submit_inner(batch, self.patience(), Some(seal))
    }

    /// Like [`Receiver::submit`], but waits for room as long as it takes: the buffer
    /// writes what it holds to make space. For batch tools, not for Fluent Bit.
    pub fn submit_wait(&self, batch: KeyedBatch) -> Result<Accepted, SubmitError> {
        self.submit_inner(batch, Patience::Forever, None)
    }

    fn submit_inner(
        &self,
        mut batch: KeyedBatch,
        patience: Patience,
        seal: Option<&Seal>,
    ) -> Result<Accepted, SubmitError> {
        let rejected = batch.rejected.len();
        if rejected > 0 {
            self.shared
                .reject(&batch.rejected)
                .map_err(|e| SubmitError::Unavailable(e.to_string()))?;
            batch.rejected.clear();
        }
        let records = batch.len();
        let accepted = |sealed| Accepted {
            records,
            rejected,
            sealed,
        };
        if records == 0 {
            return Ok(accepted(false));
        }
        let groups = batch.take_groups();
        let started = Instant::now();
        if let Some((factory, pool)) = &self.direct {
            let give_up = match patience {
                Patience::Never => None,
                Patience::Upto(d) => Some(started + d),
                // A store that is down may stay down: batch tools get the same
                // bounded wait as everyone else rather than hanging.
                Patience::Forever => Some(started + self.full_wait),
            };
            return self
                .push_direct(factory, pool, &groups, seal, records, give_up)
                .map(|()| accepted(seal.is_some()));
        }
        let state = Arc::new(AtomicU8::new(PENDING));
        let cause = Arc::new(Mutex::new(None));
        let (reply_tx, reply_rx) = bounded(1);
        let msg = Msg::Push(Push {
            groups,
            state: state.clone(),
            cause: cause.clone(),
            reply: reply_tx,
            wait: patience != Patience::Never,
            waited: false,
        });
        let give_up = match patience {
            Patience::Never => started + SUBMIT_TIMEOUT,
            Patience::Upto(d) => started + d,
            Patience::Forever => {
                self.tx.send(msg).map_err(|_| SubmitError::Closed)?;
                return match reply_rx.recv() {
                    Ok(r) => r.map(|()| accepted(false)),
                    Err(_) => Err(SubmitError::Closed),
                };
            }
        };
        let sent = match patience {
            Patience::Upto(_) => self.tx.send_deadline(msg, give_up).map_err(|e| match e {
                SendTimeoutError::Timeout(_) => self.refused("receiver queue stayed full", None),
                SendTimeoutError::Disconnected(_) => SubmitError::Closed,
            }),
            _ => self.tx.try_send(msg).map_err(|e| match e {
                TrySendError::Full(_) => self.refused("receiver queue is full", None),
                TrySendError::Disconnected(_) => SubmitError::Closed,
            }),
        };
        sent?;
        let mut until = give_up;
        let res = loop {
            match reply_rx.recv_deadline(until) {
                Ok(r) => break r,
                Err(RecvTimeoutError::Disconnected) => break Err(SubmitError::Closed),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(e) = self.abandon(&state, &cause, patience) {
                        break Err(e);
                    }
                    // The buffer thread holds it this very moment: it answers or parks it
                    // right away.
                    until = Instant::now() + RECHECK;
                }
            }
        };
        res.map(|()| accepted(false))
    }

    /// Cancels a submission the buffer thread does not hold, so it can never be stored;
    /// the reason to give the producer, or `None` if it is held right now.
    fn abandon(
        &self,
        state: &AtomicU8,
        cause: &Mutex<Option<BufferError>>,
        patience: Patience,
    ) -> Option<SubmitError> {
        let cancel = |from| {
            state
                .compare_exchange(from, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        match patience {
            Patience::Upto(d) if cancel(PARKED) => {
                let cause = cause.lock().unwrap_or_else(|p| p.into_inner()).take();
                let why = match &cause {
                    Some(c) => format!("the buffer stayed full for {d:?}: {}", c.reason()),
                    None => format!("the buffer stayed full for {d:?}"),
                };
                Some(self.refused(&why, cause.as_ref()))
            }
            Patience::Upto(_) if cancel(PENDING) => {
                Some(self.refused("receiver queue is busy", None))
            }
            Patience::Never if cancel(PENDING) => Some(SubmitError::Timeout),
            _ => None,
        }
    }

    /// A refusal for lack of room, counted as backpressure.
    fn refused(&self, why: &str, cause: Option<&BufferError>) -> SubmitError {
        count_refusal(&self.shared.metrics, cause);
        SubmitError::Full(why.to_string())
    }

    /// Stores records through a producer-side connection, then tells the buffer thread.
    /// A failure that may pass (Redis restarting, out of memory until a flush drains
    /// it) is retried until `give_up`, with growing pauses. Each retry goes through the
    /// pusher's settlement, so an attempt whose reply was lost is never stored twice.
    fn push_direct(
        &self,
        factory: &PusherFactory,
        pool: &PusherPool,
        groups: &Groups,
        seal: Option<&Seal>,
        records: usize,
        give_up: Option<Instant>,
    ) -> Result<(), SubmitError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let taken = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut p = taken.unwrap_or_else(|| factory());
        let mut pause = RETRY_PAUSE_FIRST;
        // The first failure and when it happened, once the push has had to wait.
        let mut waited: Option<(BufferError, Instant)> = None;
        let res = loop {
            let e = match p.push(groups, seal) {
                Ok(lens) => break Ok(lens),
                Err(e) => e,
            };
            let now = Instant::now();
            let closing = self.closing.load(Ordering::Acquire);
            let Some(until) = give_up.filter(|&t| t > now && e.transient() && !closing) else {
                break Err(e);
            };
            if waited.is_none() {
                let m = &self.shared.metrics;
                let counter = match e {
                    BufferError::Full(_) | BufferError::TooManyKeys(_) => &m.full_waits,
                    _ => &m.unavailable_waits,
                };
                Metrics::add(counter, 1);
                waited = Some((e, now));
            }
            std::thread::sleep(pause.min(until - now));
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        };
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        match res {
            Ok(lens) => {
                if let Some((e, since)) = waited {
                    // Plugin users have no /metrics: the log is where an outage that
                    // was ridden out shows.
                    log_at!(
                        self.shared.log,
                        Level::Warn,
                        "stored {records} records after retrying for {:?}: {e}",
                        since.elapsed()
                    );
                }
                Metrics::add(&self.shared.metrics.records_in, records as u64);
                // Only a hint for size flushes; periodic sweeps find the data anyway.
                let _ = self.tx.try_send(Msg::Pushed(lens));
                Ok(())
            }
            Err(e) => {
                count_refusal(&self.shared.metrics, Some(&e));
                Err(e.into())
            }
        }
    }

    /// Flushes everything buffered now and waits for the files.
    pub fn flush(&self) -> Result<FlushReport, SubmitError> {
        let (done, rx) = bounded(1);
        self.tx
            .send(Msg::Flush { done })
            .map_err(|_| SubmitError::Closed)?;
        rx.recv().map_err(|_| SubmitError::Closed)
    }

    /// Flushes all pending data of every key, stops the threads and joins them.
    /// Idempotent: later calls return the first report.
    pub fn close(&self) -> FlushReport {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &*closed {
            return r.clone();
        }
        self.closing.store(true, Ordering::Release);
        let (done, rx) = bounded(1);
        let report = match self.tx.send(Msg::Close { done }) {
            Ok(()) => rx.recv().unwrap_or_default(),
            Err(_) => FlushReport::default(),
        };
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        if let Some((_, pool)) = &self.direct {
            for mut p in pool.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                p.close();
            }
        }
        if let Some(mut m) = self
            .metrics_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            m.stop();
        }
        *closed = Some(report.clone());
        report
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
