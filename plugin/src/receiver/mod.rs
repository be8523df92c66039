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
        let (job_tx, job_rx) = bounded::<Job>(flushers.len() * 2);
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
        let state = BufferThread::new(cfg, parts.buffer, shared.clone(), job_tx, workers);
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
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;
    use crate::ingest::{Decoder, IngestSpec};
    use crate::logging::NullLogger;
    use crate::readback::{file_rows, parquet_files};
    use crate::writer::recovery::Pass;
    use serde_json::Value;
    use std::path::Path;
    use std::time::Instant;

    fn cfg(dir: &Path, extra: &[(&str, &str)]) -> Config {
        let mut b = ConfigBuilder::new();
        b.set("WriterFilePath", dir.join("out").to_str().unwrap())
            .unwrap();
        b.set("WriterFsync", "false").unwrap();
        for (k, v) in extra {
            b.set(k, v).unwrap();
        }
        b.build().unwrap()
    }

    fn batch(cfg: &Config, from: usize, n: usize, keys: usize) -> KeyedBatch {
        let spec = IngestSpec::from_config(cfg).unwrap();
        let mut d = Decoder::new(&spec);
        let mut out = KeyedBatch::new();
        for i in from..from + n {
            let mut line = format!(
                r#"{{"message":"m{i}","business-capability":"c{}","business-domain":"d","business-service":"s","application-service":"a"}}"#,
                i % keys
            )
            .into_bytes();
            assert!(d.json(&mut line, || format!("line {i}"), &mut out));
        }
        out
    }

    fn written(dir: &Path) -> Vec<String> {
        let mut msgs: Vec<String> = parquet_files(&dir.join("out"))
            .iter()
            .flat_map(|p| file_rows(p).unwrap())
            .map(|r| r["message"].as_str().unwrap().to_string())
            .collect();
        msgs.sort_by_key(|m| m[1..].parse::<usize>().unwrap());
        msgs
    }

    fn expect(from: usize, n: usize) -> Vec<String> {
        (from..from + n).map(|i| format!("m{i}")).collect()
    }

    /// A buffer that one 20-record batch fills, with no size or interval flush to free
    /// it: only the pressure flush of a full buffer makes room.
    fn one_batch_cfg(dir: &Path, wait: &str, extra: &[(&str, &str)]) -> Config {
        let mut kv = vec![
            ("BufferMaxBytes", "4096"),
            ("FlushInterval", "3600"),
            ("BufferSize", "100000"),
            ("BufferFullWait", wait),
        ];
        kv.extend_from_slice(extra);
        cfg(dir, &kv)
    }

    /// Replaces a folder with a plain file, so that writes under it fail.
    fn break_folder(p: &Path) {
        let _ = std::fs::remove_dir_all(p);
        std::fs::write(p, b"not a folder").unwrap();
    }

    #[test]
    fn an_unusable_destination_fails_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out"), b"x").unwrap();
        let c = cfg(dir.path(), &[]);
        let e = Receiver::start(&c, Arc::new(NullLogger))
            .err()
            .expect("start fails");
        assert!(e.to_string().contains("create folder"), "{e}");
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn size_flush_then_close_flushes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[("BufferSize", "10"), ("FlushInterval", "3600")],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 25, 1)).unwrap();
        wait_until("two size-triggered files", || {
            parquet_files(&dir.path().join("out")).len() == 2
        });
        assert_eq!(written(dir.path()).len(), 20);
        let rep = r.close();
        assert_eq!((rep.files, rep.rows, rep.lost), (1, 5, 0));
        assert_eq!(written(dir.path()), expect(0, 25));
        for p in parquet_files(&dir.path().join("out")) {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            assert!(name.ends_with("-c0:d:s:a.parquet"), "{name}");
            assert!(
                p.to_str().unwrap().contains("/capability=c0/year="),
                "{p:?}"
            );
        }
        assert!(matches!(
            r.submit(batch(&c, 0, 1, 1)),
            Err(SubmitError::Closed)
        ));
    }

    /// One burst, then nothing: the first file (a probe) is written on its own, and
    /// its end lets the rest go as target-sized files, without waiting for another
    /// push or the interval.
    #[test]
    fn file_target_size_writes_a_burst_once_the_probe_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferSize", "100"),
                ("FileTargetSize", "64KiB"),
                ("FlushInterval", "3600"),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 60_000, 1)).unwrap();
        wait_until(
            "the probe, the file sized from it and one of the target",
            || parquet_files(&dir.path().join("out")).len() >= 3,
        );
        let mut rows: Vec<usize> = parquet_files(&dir.path().join("out"))
            .iter()
            .map(|p| file_rows(p).unwrap().len())
            .collect();
        rows.sort();
        assert_eq!(rows[0], 100, "the probe is BufferSize records: {rows:?}");
        assert!(rows[1..].iter().all(|&n| n > 100), "{rows:?}");
        r.close();
        assert_eq!(written(dir.path()), expect(0, 60_000));
    }

    #[test]
    fn interval_flush_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[("BufferSize", "1000"), ("FlushInterval", "200ms")],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 3, 1)).unwrap();
        wait_until("an interval flush", || {
            parquet_files(&dir.path().join("out")).len() == 1
        });
        assert_eq!(written(dir.path()), expect(0, 3));
        r.close();
        assert_eq!(
            written(dir.path()),
            expect(0, 3),
            "close wrote nothing more"
        );
    }

    #[test]
    fn close_writes_every_key_in_buffer_size_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferSize", "100"),
                ("FlushInterval", "3600"),
                ("FlushWorkers", "2"),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        for i in 0..10 {
            r.submit(batch(&c, i * 77, 77, 3)).unwrap();
        }
        let rep = r.close();
        assert_eq!(rep.lost, 0);
        assert_eq!(written(dir.path()), expect(0, 770));
        for p in parquet_files(&dir.path().join("out")) {
            assert!(file_rows(&p).unwrap().len() <= 100);
        }
        assert_eq!(Metrics::get(&r.metrics().records_out), 770);
    }

    #[test]
    fn explicit_flush_waits_for_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &[("FlushInterval", "3600")]);
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 42, 2)).unwrap();
        let rep = r.flush().unwrap();
        assert_eq!((rep.rows, rep.files), (42, 2));
        assert_eq!(written(dir.path()), expect(0, 42));
        assert_eq!(r.flush().unwrap(), FlushReport::default());
    }

    /// The rows of each written file, in file order, by file name.
    fn files_rows(dir: &Path) -> Vec<Vec<String>> {
        parquet_files(&dir.join("out"))
            .iter()
            .map(|p| {
                file_rows(p)
                    .unwrap()
                    .iter()
                    .map(|r| r["message"].as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    /// FileMaxAge: a key's flushes append to one open file, in order whatever the
    /// writer threads, which a flush writes whole (and nothing of it is visible
    /// before); the next flushes start the next.
    #[test]
    fn files_kept_open_grow_across_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferSize", "10"),
                ("FlushInterval", "3600"),
                ("FileMaxAge", "3600"),
                ("FlushWorkers", "2"),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        for from in (0..95).step_by(19) {
            r.submit(batch(&c, from, 19, 1)).unwrap();
        }
        wait_until("nine flushes of ten records", || {
            Metrics::get(&r.metrics().buffer_records) == 5
        });
        assert!(parquet_files(&dir.path().join("out")).is_empty());
        let m = r.metrics();
        wait_until("the open-file gauges", || {
            Metrics::get(&m.open_files) == 1
                && Metrics::get(&m.open_file_bytes) > 0
                && Metrics::get(&m.open_file_oldest_ms) > 0
        });
        // The open file grows in its folder, hidden from readers, and is renamed.
        let spools = || {
            let mut found = Vec::new();
            let mut stack = vec![dir.path().join("out")];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    match e.path().is_dir() {
                        true => stack.push(e.path()),
                        false if name.ends_with(".open") => found.push(name),
                        false => {}
                    }
                }
            }
            found
        };
        assert_eq!(spools().len(), 1, "{:?}", spools());
        let rep = r.flush().unwrap();
        assert_eq!((rep.files, rep.rows, rep.lost), (1, 95, 0));
        assert!(spools().is_empty(), "{:?}", spools());
        assert_eq!(Metrics::get(&m.open_files), 0);
        assert!(m.render_prometheus().contains("\nd2p_open_files 0\n"));
        // In the order they came, though two writer threads appended them.
        assert_eq!(files_rows(dir.path()), [expect(0, 95)]);
        assert_eq!(Metrics::get(&r.metrics().records_out), 95);
        r.submit(batch(&c, 95, 30, 2)).unwrap();
        let rep = r.close();
        assert_eq!(
            (rep.files, rep.rows, rep.lost),
            (2, 30, 0),
            "a file per key"
        );
        assert_eq!(written(dir.path()), expect(0, 125));
    }

    /// FileMaxAge: an open file that can be neither written nor kept in the recovery
    /// store (here its folder, spool and all, was removed, and the store is a file) is
    /// reported and counted as lost, never dropped silently.
    #[test]
    fn an_open_file_neither_written_nor_kept_is_counted_lost() {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("rec");
        std::fs::write(&rec, b"x").unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferSize", "10"),
                ("FlushInterval", "3600"),
                ("FileMaxAge", "3600"),
                ("RecoveryPath", rec.to_str().unwrap()),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 20, 1)).unwrap();
        let m = r.metrics();
        wait_until("both flushes appended", || {
            Metrics::get(&m.buffer_records) == 0 && Metrics::get(&m.open_files) == 1
        });
        break_folder(&dir.path().join("out"));
        let rep = r.close();
        assert_eq!((rep.files, rep.rows, rep.lost), (0, 0, 20));
        assert_eq!(Metrics::get(&m.records_lost), 20);
        assert!(
            m.render_prometheus()
                .contains("\nd2p_records_lost_total 20\n")
        );
    }

    /// With one writer thread the rows of a file are in the order they came, and a
    /// file is written once it is FileMaxAge old, without a flush.
    #[test]
    fn a_file_kept_open_is_written_at_file_max_age_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferSize", "10"),
                ("FlushInterval", "3600"),
                ("FileMaxAge", "1s"),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 25, 1)).unwrap();
        wait_until("the aged file", || {
            parquet_files(&dir.path().join("out")).len() == 1
        });
        assert_eq!(files_rows(dir.path()), [expect(0, 20)]);
        let rep = r.close();
        assert_eq!((rep.files, rep.rows), (1, 5));
        assert_eq!(written(dir.path()), expect(0, 25));
    }

    /// FileTargetSize finishes an open file once it is that big.
    #[test]
    fn files_kept_open_are_finished_at_the_target_size() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferSize", "500"),
                ("FlushInterval", "3600"),
                ("FileMaxAge", "3600"),
                ("FileTargetSize", "64KiB"),
                ("WriterRowGroupSize", "16KiB"),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        for from in (0..30_000).step_by(1000) {
            r.submit_wait(batch(&c, from, 1000, 1)).unwrap();
        }
        let rep = r.close();
        assert_eq!((rep.rows > 0, rep.lost), (true, 0));
        assert_eq!(written(dir.path()), expect(0, 30_000));
        let sizes: Vec<u64> = parquet_files(&dir.path().join("out"))
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect();
        assert!(sizes.len() >= 3, "{sizes:?}");
        let full = sizes.iter().filter(|&&n| n >= 48 * 1024).count();
        assert!(
            full >= sizes.len() - 1,
            "all but the last near 64KiB: {sizes:?}"
        );
        assert!(sizes.iter().all(|&n| n < 128 * 1024), "{sizes:?}");
    }

    /// A dynamic key whose schema widens finishes its open file and opens one of the
    /// new schema: a file has one schema.
    #[test]
    fn a_schema_change_finishes_the_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("RecordType", "dynamic"),
                ("BufferSize", "2"),
                ("FlushInterval", "3600"),
                ("FileMaxAge", "3600"),
            ],
        );
        let spec = IngestSpec::from_config(&c).unwrap();
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        for lines in [
            [r#"{"n": 1, "message": "a"}"#, r#"{"n": 2, "message": "b"}"#],
            [r#"{"n": 3, "message": "c"}"#, r#"{"n": 4, "message": "d"}"#],
            [
                r#"{"n": "x", "message": "e"}"#,
                r#"{"n": 5, "message": "f"}"#,
            ],
        ] {
            let mut d = Decoder::new(&spec);
            let mut out = KeyedBatch::new();
            for l in lines {
                assert!(d.json(&mut l.as_bytes().to_vec(), || "line".into(), &mut out));
            }
            r.submit_wait(out).unwrap();
        }
        assert_eq!(r.close().lost, 0);
        let m = r.metrics();
        let written = (Metrics::get(&m.files_written), Metrics::get(&m.records_out));
        assert_eq!(written, (2, 6));
        let mut files: Vec<Vec<Value>> = parquet_files(&dir.path().join("out"))
            .iter()
            .map(|p| {
                file_rows(p)
                    .unwrap()
                    .iter()
                    .map(|r| r["n"].clone())
                    .collect()
            })
            .collect();
        files.sort_by_key(|f| f.len());
        assert_eq!(files[0], [Value::from("x"), Value::from("5")]);
        assert_eq!(files[1].len(), 4);
        assert!(files[1].iter().all(Value::is_i64), "{:?}", files[1]);
    }

    #[test]
    fn full_buffer_refuses_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let c = one_batch_cfg(dir.path(), "0", &[]);
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 20, 1)).unwrap();
        let e = r.submit(batch(&c, 20, 20, 1)).unwrap_err();
        assert!(matches!(e, SubmitError::Full(_)), "{e:?}");
        r.flush().unwrap();
        r.submit(batch(&c, 20, 20, 1)).unwrap();
        r.close();
        assert_eq!(
            written(dir.path()),
            expect(0, 40),
            "nothing lost, nothing twice"
        );
        assert!(Metrics::get(&r.metrics().backpressure) >= 1);
    }

    #[test]
    fn a_full_buffer_makes_room_within_buffer_full_wait() {
        let dir = tempfile::tempdir().unwrap();
        let c = one_batch_cfg(dir.path(), "3s", &[]);
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 20, 1)).unwrap();
        // Full: the buffer writes what it holds, and the second batch gets its room.
        r.submit(batch(&c, 20, 20, 1)).unwrap();
        assert_eq!(Metrics::get(&r.metrics().backpressure), 0);
        assert_eq!(Metrics::get(&r.metrics().full_waits), 1);
        r.close();
        assert_eq!(written(dir.path()), expect(0, 40));
    }

    #[test]
    fn records_refused_after_buffer_full_wait_are_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rec"), b"x").unwrap();
        let c = one_batch_cfg(
            dir.path(),
            "1s",
            &[("RecoveryPath", dir.path().join("rec").to_str().unwrap())],
        );
        let out = dir.path().join("out");
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        // Neither the folder nor the recovery store can take records: no room is made,
        // and the second batch is refused after the wait.
        let refused = |from| {
            let t = Instant::now();
            let e = r.submit(batch(&c, from, 20, 1)).unwrap_err();
            assert!(
                matches!(&e, SubmitError::Full(why) if why.contains("stayed full for 1s") && why.contains("BufferMaxBytes=4096")),
                "{e:?}"
            );
            assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
        };
        r.submit(batch(&c, 0, 20, 1)).unwrap();
        break_folder(&out);
        refused(20);
        // Writes work again. The refused batch must not turn up when room is made: its
        // producer was told it was not stored, and sends it again.
        std::fs::remove_file(&out).unwrap();
        r.flush().unwrap();
        r.submit(batch(&c, 20, 20, 1)).unwrap();
        // The same once more, but the resend comes while the buffer is still full: the
        // abandoned submission must not keep it waiting in line.
        let kept = dir.path().join("kept");
        std::fs::rename(&out, &kept).unwrap();
        break_folder(&out);
        refused(40);
        std::fs::remove_file(&out).unwrap();
        std::fs::rename(&kept, &out).unwrap();
        r.submit(batch(&c, 40, 20, 1)).unwrap();
        assert_eq!(Metrics::get(&r.metrics().backpressure), 2);
        // Refusals for bytes are not counted as key-limit refusals.
        assert_eq!(Metrics::get(&r.metrics().key_limit_refusals), 0);
        r.close();
        assert_eq!(
            written(dir.path()),
            expect(0, 60),
            "nothing lost, nothing twice"
        );
    }

    #[test]
    fn a_refusal_after_the_wait_names_buffer_max_keys_and_is_counted_apart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rec"), b"x").unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferMaxKeys", "1"),
                ("BufferFullWait", "300ms"),
                ("FlushInterval", "3600"),
                ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
            ],
        );
        let out = dir.path().join("out");
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        r.submit(batch(&c, 0, 5, 1)).unwrap();
        // No room can be made, so the second key waits out BufferFullWait; the answer
        // names the limit that refused it, not only that the buffer was full.
        break_folder(&out);
        let e = r.submit(batch(&c, 5, 6, 2)).unwrap_err();
        assert!(
            matches!(&e, SubmitError::Full(why) if why.contains("stayed full for 300ms") && why.contains("BufferMaxKeys=1")),
            "{e:?}"
        );
        let m = r.metrics();
        assert_eq!(Metrics::get(&m.backpressure), 1);
        assert_eq!(Metrics::get(&m.key_limit_refusals), 1);
        std::fs::remove_file(&out).unwrap();
        r.flush().unwrap();
        r.submit(batch(&c, 5, 6, 2)).unwrap();
        r.close();
        assert_eq!(written(dir.path()), expect(0, 11));
        assert!(
            r.metrics()
                .render_prometheus()
                .contains("d2p_key_limit_refusals_total 1\n")
        );
    }

    #[test]
    fn producers_racing_a_short_buffer_full_wait_store_each_batch_once() {
        // Four producers on a buffer that holds one batch, with a wait so short that
        // many give up while parked, at any moment of the buffer thread's work. Each
        // resends a refused batch until it is taken: every record must be written once.
        let dir = tempfile::tempdir().unwrap();
        let c = one_batch_cfg(dir.path(), "2ms", &[]);
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (r, c) = (&r, &c);
                s.spawn(move || {
                    for b in 0..25 {
                        let from = (t * 25 + b) * 20;
                        loop {
                            match r.submit(batch(c, from, 20, 3)) {
                                Ok(_) => break,
                                Err(SubmitError::Full(_)) => continue,
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                    }
                });
            }
        });
        r.close();
        assert_eq!(written(dir.path()), expect(0, 2000));
        assert!(Metrics::get(&r.metrics().backpressure) > 0, "some gave up");
    }

    #[test]
    fn failed_writes_go_to_recovery_and_are_resent() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("RecoveryAttempts", "1"),
                ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
                ("DLQPath", dir.path().join("dlq").to_str().unwrap()),
                ("FlushInterval", "3600"),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        // After start, the output folder becomes a plain file: every write fails for real.
        break_folder(&dir.path().join("out"));
        r.submit(batch(&c, 0, 30, 1)).unwrap();
        let rep = r.flush().unwrap();
        assert_eq!((rep.files, rep.recovered), (0, 1));
        assert_eq!(Metrics::get(&r.metrics().upload_retries), 1);
        r.close();
        // Repair the destination and resend what was kept.
        std::fs::remove_file(dir.path().join("out")).unwrap();
        let mut f = lone_flusher(&c, true);
        assert_eq!(f.resend_recovery(Pass::Periodic), (1, 0));
        assert_eq!(written(dir.path()), expect(0, 30));
    }

    /// A flusher of its own, outside any receiver, on the configured writer, with
    /// (`recovery`) or without a recovery store.
    fn lone_flusher(c: &Config, recovery: bool) -> Flusher {
        let shared = Arc::new(Shared {
            metrics: Metrics::default(),
            log: Arc::new(NullLogger),
            dlq: Arc::new(NoDlq),
            use_dlq: false,
            schemas: Default::default(),
            open_files: None,
        });
        Flusher::new(c, crate::writer::open(c).unwrap(), shared, recovery).unwrap()
    }

    /// A batch's records in a vector, read as a paged batch's are; keeps the largest
    /// read asked for.
    #[derive(Debug)]
    struct VecPages {
        records: Vec<crate::record::Record>,
        largest: std::sync::atomic::AtomicUsize,
    }

    impl crate::buffer::Pages for VecPages {
        fn total(&self) -> usize {
            self.records.len()
        }

        fn page(&self) -> usize {
            10_000
        }

        fn read(
            &self,
            from: usize,
            n: usize,
        ) -> Result<
            (Vec<crate::record::Record>, Vec<crate::dlq::DlqEntry>),
            crate::buffer::BufferError,
        > {
            self.largest.fetch_max(n, Ordering::Relaxed);
            let end = (from + n).min(self.records.len());
            Ok((self.records[from..end].to_vec(), Vec::new()))
        }
    }

    /// A batch too large to hold at once is read a page at a time (10,000 records)
    /// and still makes one file per folder, with every record once, in order, and no
    /// spool left behind; written again, it lands on the same file name.
    #[test]
    fn a_paged_batch_is_read_a_page_at_a_time_into_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &[]);
        let n = 25_001;
        let (key, records) = batch(&c, 0, n, 1).groups.remove(0);
        let pages = Arc::new(VecPages {
            records,
            largest: Default::default(),
        });
        let mut f = lone_flusher(&c, false);
        let b = Batch {
            id: ulid::Ulid::generate(),
            key,
            records: Vec::new(),
            bytes: 0,
            taken_at: Instant::now(),
            schema: None,
            pages: Some(pages.clone()),
        };
        let w = f.flush(&b).unwrap();
        assert_eq!((w.rows, w.files.len()), (n, 1), "{w:?}");
        assert_eq!(pages.largest.load(Ordering::Relaxed), 10_000);
        let out = dir.path().join("out");
        let in_order: Vec<String> = parquet_files(&out)
            .iter()
            .flat_map(|p| file_rows(p).unwrap())
            .map(|r| r["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(in_order, expect(0, n));
        let again = f.flush(&b).unwrap();
        assert_eq!(again.files, w.files);
        assert_eq!(written(dir.path()), expect(0, n));
        fn files(dir: &Path) -> Vec<std::path::PathBuf> {
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .flat_map(|e| match e.path().is_dir() {
                    true => files(&e.path()),
                    false => vec![e.path()],
                })
                .collect()
        }
        let left: Vec<_> = files(&out)
            .into_iter()
            .filter(|p| !p.to_string_lossy().ends_with(".parquet"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Files kept during an outage are resent every RecoveryInterval even while batches
    /// keep the writer busy, and once more at close.
    #[test]
    fn kept_files_are_resent_under_steady_traffic_and_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("RecoveryAttempts", "0"),
                ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
                ("TryAutoRecover", "true"),
                ("RecoveryInterval", "1"),
                ("FlushInterval", "3600"),
            ],
        );
        let out = dir.path().join("out");
        let kept = |r: &Receiver| Metrics::get(&r.metrics().recovery_stored);
        let resent = |r: &Receiver| Metrics::get(&r.metrics().recovery_resent);

        // Under traffic: a batch written every 50 ms, so the writer is never idle for
        // the second its old idle-only check waited for.
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        break_folder(&out);
        r.submit(batch(&c, 0, 10, 1)).unwrap();
        assert_eq!(r.flush().unwrap().recovered, 1);
        std::fs::remove_file(&out).unwrap();
        let t = Instant::now();
        let mut n = 10;
        while resent(&r) == 0 && t.elapsed() < Duration::from_secs(10) {
            r.submit(batch(&c, n, 10, 1)).unwrap();
            r.flush().unwrap();
            n += 10;
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(resent(&r), 1, "resent within {:?}", t.elapsed());
        r.close();
        assert_eq!(written(dir.path()), expect(0, n));

        // At close: a file kept a moment before, long before the next periodic pass,
        // is delivered before close returns once the destination is back.
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        break_folder(&out);
        r.submit(batch(&c, n, 10, 1)).unwrap();
        assert_eq!(r.flush().unwrap().recovered, 1);
        assert_eq!(kept(&r), 1);
        std::fs::remove_file(&out).unwrap();
        r.close();
        assert_eq!(resent(&r), 1, "resent at close");
        assert!(
            std::fs::read_dir(dir.path().join("rec"))
                .unwrap()
                .next()
                .is_none()
        );
        // (Breaking the folder again removed the first part's files.)
        assert_eq!(written(dir.path()), expect(n, 10));
    }

    /// The lag gauge: 0 with nothing pending, growing while records wait for their
    /// key's FlushInterval, 0 again once they are written. (It is read on the buffer
    /// thread's ticks, every 500 ms at most; the waits below span at least two.)
    #[test]
    fn the_oldest_pending_record_is_a_gauge() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[("FlushInterval", "60"), ("BufferSize", "1000")],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        let lag = |r: &Receiver| Metrics::get(&r.metrics().buffer_oldest_ms);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(lag(&r), 0, "nothing pending");
        let submitted = Instant::now();
        r.submit(batch(&c, 0, 10, 2)).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let waited = lag(&r);
        assert!(
            waited > 0 && u128::from(waited) <= submitted.elapsed().as_millis(),
            "{waited} ms"
        );
        assert!(r.metrics().render_prometheus().contains(&format!(
            "d2p_buffer_oldest_record_seconds {:.3}\n",
            waited as f64 / 1000.0
        )));
        r.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(lag(&r), 0, "written");
        r.close();
    }

    /// MetricsFile holds a Prometheus snapshot from the start, and the whole run's
    /// counters after close.
    #[test]
    fn metrics_file_is_kept_current_and_final_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prom").join("d2p-test.prom");
        let c = cfg(dir.path(), &[("MetricsFile", path.to_str().unwrap())]);
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        let t = Instant::now();
        while !path.exists() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = std::fs::read_to_string(&path).expect("written at start");
        assert!(first.contains("d2p_records_out_total{output=\"d2p-test\"} 0\n"));
        r.submit(batch(&c, 0, 30, 2)).unwrap();
        r.close();
        let last = std::fs::read_to_string(&path).unwrap();
        for line in [
            "d2p_records_in_total{output=\"d2p-test\"} 30\n",
            "d2p_records_out_total{output=\"d2p-test\"} 30\n",
            "d2p_files_written_total{output=\"d2p-test\"} 2\n",
            "d2p_file_size_bytes_count{output=\"d2p-test\"} 2\n",
            "d2p_file_rows_bucket{output=\"d2p-test\",le=\"100\"} 2\n",
            "d2p_file_rows_sum{output=\"d2p-test\"} 30\n",
        ] {
            assert!(last.contains(line), "{line}: {last}");
        }
        assert_eq!(written(dir.path()), expect(0, 30));
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["d2p-test.prom"], "no temporary file left");
    }

    #[test]
    fn write_and_recovery_failing_keeps_records_buffered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rec"), b"x").unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
                ("DLQPath", dir.path().join("dlq").to_str().unwrap()),
                ("FlushInterval", "3600"),
            ],
        );
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        break_folder(&dir.path().join("out"));
        r.submit(batch(&c, 0, 12, 2)).unwrap();
        let rep = r.flush().unwrap();
        assert_eq!(rep.files, 0);
        assert_eq!(rep.errors.len(), 2);
        assert_eq!(
            Metrics::get(&r.metrics().buffer_records),
            12,
            "records stay buffered"
        );
        std::fs::remove_file(dir.path().join("out")).unwrap();
        let rep = r.flush().unwrap();
        assert_eq!((rep.files, rep.rows), (2, 12));
        r.close();
        assert_eq!(written(dir.path()), expect(0, 12));
    }

    #[test]
    fn rejected_records_reach_the_dlq() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[("DLQPath", dir.path().join("dlq").to_str().unwrap())],
        );
        let spec = IngestSpec::from_config(&c).unwrap();
        let mut d = Decoder::new(&spec);
        let mut b = KeyedBatch::new();
        assert!(!d.json(&mut b"{\"message\": ".to_vec(), || "line 1".into(), &mut b));
        assert!(!d.json(&mut b"[1]".to_vec(), || "line 2".into(), &mut b));
        assert!(d.json(
            &mut b"{\"message\":\"m0\"}".to_vec(),
            || "line 3".into(),
            &mut b
        ));
        let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
        assert_eq!(
            r.submit(b).unwrap(),
            Accepted {
                records: 1,
                rejected: 2,
                sealed: false
            }
        );
        let m = r.metrics();
        let counts = [&m.records_in, &m.records_rejected, &m.dlq_records].map(Metrics::get);
        assert_eq!(counts, [1, 2, 2], "in, rejected, dead-lettered");
        r.close();
        let dlq: Vec<serde_json::Value> = std::fs::read_dir(dir.path().join("dlq"))
            .unwrap()
            .flat_map(|e| {
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(dlq.len(), 2);
        assert_eq!(dlq[0]["source"], "line 1");
        assert!(
            dlq[0]["reason"].as_str().unwrap().contains("truncated"),
            "{}",
            dlq[0]
        );
        assert_eq!(
            dlq[1]["reason"],
            "expected a JSON object / map, found array"
        );
        assert_eq!(written(dir.path()), ["m0"]);
    }
}
