//! The receiver: the pipeline's background threads behind a bounded channel.
//!
//! - One **buffer thread** owns the buffer. Producers send it whole submissions through a
//!   bounded crossbeam channel and wait for its acknowledgement; a producer that finds
//!   the channel full gets [`SubmitError::Full`] at once and is never blocked forever.
//!   It decides flushes: by size (a key reaches BufferSize), by age (a key's oldest
//!   record has waited FlushInterval), on request, and on close (everything).
//! - **Writer threads** (FlushWorkers, default 1) convert batches and write them. They
//!   are separate so that a slow write (S3) never delays acknowledgements.
//!
//! A submission is acknowledged only once it is in the buffer. If the producer gives up
//! waiting, the submission is cancelled atomically: either the buffer thread had already
//! claimed it (the producer then waits for the result) or it never will, so a retried
//! submission is never stored twice.

use crate::buffer::mem::MemBuffer;
use crate::buffer::{
    Batch, BatchInfo, Buffer, BufferError, Groups, Pusher, PusherFactory, Reason, Refused,
};
use crate::config::Config;
use crate::dlq::{DlqSink, FileDlq, NoDlq};
use crate::flush::{FlushFailure, Flusher, Shared, Written};
use crate::ingest::KeyedBatch;
use crate::log_at;
use crate::logging::{Level, SharedLogger};
use crate::metrics::Metrics;
use crate::partition::PartitionKey;
use crate::writer::Writer;
use crossbeam_channel::{Receiver as Rx, Sender as Tx, TrySendError, bounded, select};
use std::collections::{HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

impl From<BufferError> for SubmitError {
    fn from(e: BufferError) -> Self {
        match e {
            BufferError::Full(s) => SubmitError::Full(s),
            BufferError::Unavailable(s) => SubmitError::Unavailable(s),
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
    }
}

const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;

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
    reply: Tx<Result<(), SubmitError>>,
    /// Wait for room instead of answering Full (json2parquet's flow control).
    wait: bool,
}

struct Job {
    batch: Batch,
}

/// A finished job. On success the writer thread keeps (and frees) the records; on
/// failure the unwritten ones come back to be kept in the buffer.
struct Done {
    id: ulid::Ulid,
    /// The part that was written (or dead-lettered): to be acknowledged.
    written: BatchInfo,
    result: Result<Written, (FlushFailure, Batch)>,
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
    submit_timeout: Duration,
    closed: Mutex<Option<FlushReport>>,
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
            crate::config::BufferType::Mem => Box::new(MemBuffer::new(cfg.buffer_max_bytes)),
            crate::config::BufferType::Redis => Box::new(
                crate::buffer::redis::RedisBuffer::connect(&cfg.redis, cfg.flush_interval)
                    .map_err(|e| ReceiverError::Other(e.to_string()))?,
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
            (true, crate::config::BufferType::Mem) => Arc::new(FileDlq::in_dir(&cfg.dlq_path)),
            (true, crate::config::BufferType::Redis) => Arc::new(
                crate::buffer::redis::RedisDlq::new(&cfg.redis)
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
        let shared = Arc::new(Shared {
            metrics: Metrics::default(),
            log,
            dlq: parts.dlq,
            use_dlq: cfg.use_dlq,
            schemas: Default::default(),
        });
        let mut flushers = Vec::new();
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
        let (done_tx, done_rx) = bounded::<Done>(flushers.len() * 2 + 1);
        let mut workers = Vec::new();
        for (i, f) in flushers.into_iter().enumerate() {
            let jr = job_rx.clone();
            let dt = done_tx.clone();
            let auto = (cfg.try_auto_recover && i == 0).then_some(cfg.recovery_interval);
            let sh = shared.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("d2p-writer-{i}"))
                    .spawn(move || writer_loop(f, jr, dt, auto, sh))
                    .map_err(|e| {
                        ReceiverError::Other(format!("cannot start writer thread: {e}"))
                    })?,
            );
        }
        drop(done_tx);
        let state = BufferThread {
            buffer: parts.buffer,
            shared: shared.clone(),
            buffer_size: cfg.buffer_size,
            interval: cfg.flush_interval,
            job_tx: Some(job_tx),
            capacity: workers.len() * 2,
            queue: VecDeque::new(),
            in_flight: HashSet::new(),
            waiters: Vec::new(),
            closing: None,
            workers,
            parked: VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name("d2p-buffer".into())
            .spawn(move || state.run(rx, done_rx))
            .map_err(|e| ReceiverError::Other(format!("cannot start buffer thread: {e}")))?;
        Ok(Receiver {
            tx,
            direct,
            closing: std::sync::atomic::AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
            shared,
            submit_timeout: Duration::from_secs(30),
            closed: Mutex::new(None),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// How long [`Receiver::submit`] waits for the buffer's acknowledgement.
    pub fn set_submit_timeout(&mut self, t: Duration) {
        self.submit_timeout = t;
    }

    /// Dead-letters the batch's rejected records, then stores its records in the buffer.
    /// Returns only when the buffer holds them (or with the reason it does not); a full
    /// buffer is an immediate [`SubmitError::Full`].
    pub fn submit(&self, batch: KeyedBatch) -> Result<Accepted, SubmitError> {
        self.submit_inner(batch, false)
    }

    /// Like [`Receiver::submit`], but waits for room when the buffer is full: the
    /// buffer writes what it holds to make space. For batch tools, not for Fluent Bit.
    pub fn submit_wait(&self, batch: KeyedBatch) -> Result<Accepted, SubmitError> {
        self.submit_inner(batch, true)
    }

    fn submit_inner(&self, mut batch: KeyedBatch, wait: bool) -> Result<Accepted, SubmitError> {
        let rejected = batch.rejected.len();
        if rejected > 0 {
            self.shared
                .reject(&batch.rejected)
                .map_err(|e| SubmitError::Unavailable(e.to_string()))?;
            batch.rejected.clear();
        }
        let records = batch.len();
        if records == 0 {
            return Ok(Accepted { records, rejected });
        }
        let groups = batch.take_groups();
        if let Some((factory, pool)) = &self.direct {
            return self.push_direct(factory, pool, groups, records, rejected);
        }
        let state = Arc::new(AtomicU8::new(PENDING));
        let (reply_tx, reply_rx) = bounded(1);
        let msg = Msg::Push(Push {
            groups,
            state: state.clone(),
            reply: reply_tx,
            wait,
        });
        if wait {
            self.tx.send(msg).map_err(|_| SubmitError::Closed)?;
            return match reply_rx.recv() {
                Ok(r) => r.map(|()| Accepted { records, rejected }),
                Err(_) => Err(SubmitError::Closed),
            };
        }
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                Metrics::add(&self.shared.metrics.backpressure, 1);
                return Err(SubmitError::Full("receiver queue is full".into()));
            }
            Err(TrySendError::Disconnected(_)) => return Err(SubmitError::Closed),
        }
        let res = match reply_rx.recv_timeout(self.submit_timeout) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if state
                    .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(SubmitError::Timeout);
                }
                // Already claimed: the result is on its way.
                reply_rx.recv().unwrap_or(Err(SubmitError::Closed))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(SubmitError::Closed),
        };
        res.map(|()| Accepted { records, rejected })
    }

    /// Stores records through a producer-side connection, then tells the buffer thread.
    fn push_direct(
        &self,
        factory: &PusherFactory,
        pool: &PusherPool,
        groups: Groups,
        records: usize,
        rejected: usize,
    ) -> Result<Accepted, SubmitError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let taken = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut p = taken.unwrap_or_else(|| factory());
        let res = p.push(&groups);
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        match res {
            Ok(lens) => {
                Metrics::add(&self.shared.metrics.records_in, records as u64);
                // Only a hint for size flushes; periodic sweeps find the data anyway.
                let _ = self.tx.try_send(Msg::Pushed(lens));
                Ok(Accepted { records, rejected })
            }
            Err(e) => {
                Metrics::add(&self.shared.metrics.backpressure, 1);
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
        *closed = Some(report.clone());
        report
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
    }
}

/// `auto_recover`: how often to retry the recovery store (TryAutoRecover), if at all.
fn writer_loop(
    mut f: Flusher,
    jobs: Rx<Job>,
    done: Tx<Done>,
    auto_recover: Option<Duration>,
    shared: Arc<Shared>,
) {
    let every = auto_recover.unwrap_or(Duration::MAX);
    let auto_recover = auto_recover.is_some();
    if auto_recover {
        f.resend_recovery();
    }
    let mut last_resend = Instant::now();
    loop {
        let job = match jobs.recv_timeout(Duration::from_secs(1)) {
            Ok(j) => j,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if auto_recover && last_resend.elapsed() >= every {
                    f.resend_recovery();
                    last_resend = Instant::now();
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
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
                    partial: Written::default(),
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

struct Waiter {
    done: Tx<FlushReport>,
    ids: HashSet<ulid::Ulid>,
    report: FlushReport,
}

struct Closing {
    done: Option<Tx<FlushReport>>,
    report: FlushReport,
    /// Further looks at a durable buffer that still holds records after the drain.
    redrains_left: u32,
}

/// How often, and how far apart, a close looks again at a durable buffer that still
/// holds records (see [`BufferThread::redrain`]).
const CLOSE_REDRAINS: u32 = 5;
const REDRAIN_PAUSE: Duration = Duration::from_millis(100);

struct BufferThread {
    buffer: Box<dyn Buffer>,
    shared: Arc<Shared>,
    buffer_size: usize,
    interval: Duration,
    job_tx: Option<Tx<Job>>,
    capacity: usize,
    queue: VecDeque<Batch>,
    in_flight: HashSet<ulid::Ulid>,
    waiters: Vec<Waiter>,
    closing: Option<Closing>,
    workers: Vec<JoinHandle<()>>,
    parked: VecDeque<Push>,
}

impl BufferThread {
    fn run(mut self, rx: Rx<Msg>, done_rx: Rx<Done>) {
        let tick =
            (self.interval / 10).clamp(Duration::from_millis(20), Duration::from_millis(500));
        let mut next_tick = Instant::now() + tick;
        let mut rx = Some(rx);
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            let never = crossbeam_channel::never();
            let msgs = rx.as_ref().unwrap_or(&never);
            select! {
                recv(msgs) -> m => match m {
                    Ok(m) => self.on_msg(m),
                    // Every handle dropped without close(): close anyway.
                    Err(_) => {
                        rx = None;
                        if self.closing.is_none() {
                            self.start_close(None);
                        }
                    }
                },
                recv(done_rx) -> d => if let Ok(d) = d { self.on_done(d) },
                default(timeout) => {}
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + tick;
                self.buffer.maintain(Instant::now());
                if self.closing.is_none() {
                    self.on_tick();
                }
            }
            self.dispatch();
            if self.closing.is_some() && self.queue.is_empty() && self.in_flight.is_empty() {
                if self.redrain() {
                    continue;
                }
                self.finish_close();
                return;
            }
        }
    }

    fn publish_usage(&self) {
        let (r, b) = self.buffer.usage();
        let m = &self.shared.metrics;
        m.buffer_records.store(r, Ordering::Relaxed);
        m.buffer_bytes.store(b, Ordering::Relaxed);
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Push(p) => {
                if p.state
                    .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    return; // the producer gave up; it will retry
                }
                if self.closing.is_some() {
                    let _ = p.reply.send(Err(SubmitError::Closed));
                    return;
                }
                if !self.parked.is_empty() && p.wait {
                    // Keep arrival order among waiting producers.
                    self.parked.push_back(p);
                    return;
                }
                self.push(p);
            }
            Msg::Pushed(lens) => {
                if self.closing.is_none() {
                    for (key, len) in lens {
                        self.buffer.noted(&key, len);
                        if len >= self.buffer_size {
                            self.take_key(&key, Reason::Size, false);
                        }
                    }
                }
            }
            Msg::Flush { done } => {
                self.take_all(Reason::Request);
                let ids: HashSet<_> = self
                    .queue
                    .iter()
                    .map(|b| b.id)
                    .chain(self.in_flight.iter().copied())
                    .collect();
                if ids.is_empty() {
                    let _ = done.send(FlushReport::default());
                } else {
                    self.waiters.push(Waiter {
                        done,
                        ids,
                        report: FlushReport::default(),
                    });
                }
            }
            Msg::Close { done } => self.start_close(Some(done)),
        }
    }

    /// Stores a submission, parks it when full and it may wait, or answers Full.
    fn push(&mut self, p: Push) {
        let n: usize = p.groups.iter().map(|(_, r)| r.len()).sum();
        match self.buffer.push(p.groups) {
            Ok(lens) => {
                Metrics::add(&self.shared.metrics.records_in, n as u64);
                let _ = p.reply.send(Ok(()));
                for (key, len) in lens {
                    if len >= self.buffer_size {
                        self.take_key(&key, Reason::Size, false);
                    }
                }
            }
            Err(Refused { error, groups }) => {
                if matches!(error, BufferError::Full(_)) {
                    // Make room: write what is pending rather than wait for triggers.
                    if self.queue.is_empty() {
                        self.take_all(Reason::Pressure);
                    }
                    if p.wait {
                        self.parked.push_back(Push { groups, ..p });
                        return;
                    }
                    Metrics::add(&self.shared.metrics.backpressure, 1);
                }
                let _ = p.reply.send(Err(error.into()));
            }
        }
        self.publish_usage();
    }

    /// Retries parked submissions, in order, after room was made.
    fn unpark(&mut self) {
        while let Some(p) = self.parked.pop_front() {
            let before = self.parked.len();
            self.push(p);
            if self.parked.len() > before {
                // Still full: it went back to the end; restore its place at the front.
                if let Some(back) = self.parked.pop_back() {
                    self.parked.push_front(back);
                }
                break;
            }
        }
    }

    /// Takes batches of `key`: whole BufferSize batches, or everything with `all`.
    fn take_key(&mut self, key: &PartitionKey, reason: Reason, all: bool) {
        loop {
            let pending = self.buffer.pending(key);
            if pending == 0 || (!all && pending < self.buffer_size) {
                break;
            }
            match self.buffer.take(key, self.buffer_size) {
                Ok(Some(b)) => {
                    log_at!(
                        self.shared.log,
                        Level::Debug,
                        "flush {} ({}): {} records",
                        b.key,
                        reason.name(),
                        b.records.len()
                    );
                    self.queue.push_back(b);
                    self.dead_letter_unreadable();
                }
                Ok(None) => break,
                Err(e) => {
                    log_at!(
                        self.shared.log,
                        Level::Warn,
                        "cannot take a batch of {key}: {e}"
                    );
                    break;
                }
            }
        }
    }

    fn take_all(&mut self, reason: Reason) {
        for key in self.buffer.keys() {
            self.take_key(&key, reason, true);
        }
    }

    /// Stored records the buffer could not read back go to the DLQ.
    fn dead_letter_unreadable(&mut self) {
        let bad = self.buffer.take_rejected();
        if !bad.is_empty() && self.shared.reject(&bad).is_err() {
            log_at!(
                self.shared.log,
                Level::Error,
                "{} unreadable buffered records could not be dead-lettered",
                bad.len()
            );
        }
    }

    fn on_tick(&mut self) {
        for key in self.buffer.due(Instant::now(), self.interval) {
            self.take_key(&key, Reason::Interval, true);
        }
    }

    fn dispatch(&mut self) {
        while self.in_flight.len() < self.capacity {
            let Some(batch) = self.queue.pop_front() else {
                break;
            };
            let Some(tx) = &self.job_tx else {
                self.queue.push_front(batch);
                break;
            };
            let id = batch.id;
            match tx.try_send(Job { batch }) {
                Ok(()) => {
                    self.in_flight.insert(id);
                }
                Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => {
                    self.queue.push_front(j.batch);
                    break;
                }
            }
        }
    }

    fn on_done(&mut self, d: Done) {
        let Done {
            id,
            written: acked,
            result,
        } = d;
        self.in_flight.remove(&id);
        let mut lost = 0;
        let (written, error) = match result {
            Ok(w) => {
                self.buffer.ack(&acked);
                (w, None)
            }
            Err((f, unwritten)) => {
                log_at!(
                    self.shared.log,
                    Level::Error,
                    "batch {} of {} not written: {} ({} records kept)",
                    id,
                    acked.key,
                    f.error,
                    f.unwritten.len()
                );
                if self.closing.is_some() && !self.buffer.durable() {
                    self.buffer.ack(&acked);
                    lost = self.dead_letter_at_close(unwritten, &f.error);
                } else {
                    self.buffer.partly_written(&acked, unwritten);
                }
                (f.partial, Some(f.error))
            }
        };
        // Buffers that hand out one batch per key at a time (Redis) are drained batch by
        // batch while a close or an explicit flush is waiting.
        let draining = self.closing.is_some() || self.waiters.iter().any(|w| w.ids.contains(&id));
        if draining && error.is_none() {
            let before: HashSet<ulid::Ulid> = self.queue.iter().map(|b| b.id).collect();
            let reason = if self.closing.is_some() {
                Reason::Close
            } else {
                Reason::Request
            };
            self.take_key(&acked.key, reason, true);
            let new: Vec<ulid::Ulid> = self
                .queue
                .iter()
                .map(|b| b.id)
                .filter(|i| !before.contains(i))
                .collect();
            for w in &mut self.waiters {
                if w.ids.contains(&id) {
                    w.ids.extend(new.iter().copied());
                }
            }
        }
        let mut reports: Vec<&mut FlushReport> = Vec::new();
        for w in &mut self.waiters {
            if w.ids.remove(&id) {
                reports.push(&mut w.report);
            }
        }
        if let Some(c) = &mut self.closing {
            reports.push(&mut c.report);
        }
        for r in reports {
            r.batches += 1;
            r.add(&written);
            r.lost += lost;
            if let Some(e) = &error {
                r.errors.push(e.clone());
            }
        }
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].ids.is_empty() {
                let w = self.waiters.swap_remove(i);
                let _ = w.done.send(w.report);
            } else {
                i += 1;
            }
        }
        self.publish_usage();
        self.unpark();
    }

    /// At close a batch that cannot be written goes to the DLQ, so it can be re-driven;
    /// returns the records that could not be kept anywhere.
    fn dead_letter_at_close(&mut self, b: Batch, error: &str) -> usize {
        let entries: Vec<_> = b
            .records
            .iter()
            .map(|r| {
                let mut e = crate::dlq::DlqEntry::new(
                    format!("batch {} at shutdown", b.id),
                    format!("write failed at shutdown: {error}"),
                    r.to_json().as_bytes(),
                );
                e.key = Some(b.key.to_string());
                e
            })
            .collect();
        let n = entries.len();
        self.buffer.ack(&b.info());
        match self.shared.reject(&entries) {
            Ok(()) => 0,
            Err(e) => {
                log_at!(
                    self.shared.log,
                    Level::Error,
                    "{n} records lost at shutdown: {error}; DLQ: {e}"
                );
                n
            }
        }
    }

    fn start_close(&mut self, done: Option<Tx<FlushReport>>) {
        for p in self.parked.drain(..) {
            let _ = p.reply.send(Err(SubmitError::Closed));
        }
        self.take_all(Reason::Close);
        self.closing = Some(Closing {
            done,
            report: FlushReport::default(),
            redrains_left: CLOSE_REDRAINS,
        });
    }

    /// A durable buffer can still hold records after the close's drain: a Redis call that
    /// failed or timed out on the way reads as "nothing there" (an empty key sweep, a
    /// zero length). Look again a few times, [`REDRAIN_PAUSE`] apart, before leaving the
    /// records to another flusher. Records under another live flusher's lock also end up
    /// here; they cost the close at most half a second.
    fn redrain(&mut self) -> bool {
        let Some(c) = &mut self.closing else {
            return false;
        };
        // A failed write is not retried here: its records stay stored, and another look
        // would only repeat the write's own retries and back-off.
        if !self.buffer.durable() || c.redrains_left == 0 || !c.report.errors.is_empty() {
            return false;
        }
        c.redrains_left -= 1;
        if !self.buffer.may_hold_records() {
            return false;
        }
        std::thread::sleep(REDRAIN_PAUSE);
        self.take_all(Reason::Close);
        true
    }

    fn finish_close(&mut self) {
        self.job_tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        for w in self.waiters.drain(..) {
            let _ = w.done.send(w.report);
        }
        let Some(Closing {
            done, mut report, ..
        }) = self.closing.take()
        else {
            return;
        };
        if self.buffer.durable() {
            let _ = self.buffer.keys(); // refresh the counts before reporting them
        }
        let (records, _) = self.buffer.usage();
        if records > 0 && self.buffer.durable() {
            log_at!(
                self.shared.log,
                Level::Info,
                "{records} records stay in the durable buffer for another flusher"
            );
        } else if records > 0 {
            report.lost += records as usize;
            report.errors.push(format!(
                "{records} records were still buffered when the receiver stopped"
            ));
        }
        self.publish_usage();
        log_at!(
            self.shared.log,
            Level::Info,
            "closed: the final flush wrote {} files, {} rows ({} recovered, {} lost); the run wrote {} files, {} rows",
            report.files,
            report.rows,
            report.recovered,
            report.lost,
            Metrics::get(&self.shared.metrics.files_written),
            Metrics::get(&self.shared.metrics.records_out),
        );
        if let Some(done) = done {
            let _ = done.send(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;
    use crate::ingest::{Decoder, IngestSpec};
    use crate::logging::NullLogger;
    use crate::readback::{file_rows, parquet_files};
    use std::path::Path;

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

    #[test]
    fn full_buffer_refuses_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(
            dir.path(),
            &[
                ("BufferMaxBytes", "4096"),
                ("FlushInterval", "3600"),
                ("BufferSize", "100000"),
            ],
        );
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
        let shared = Arc::new(Shared {
            metrics: Metrics::default(),
            log: Arc::new(NullLogger),
            dlq: Arc::new(NoDlq),
            use_dlq: false,
            schemas: Default::default(),
        });
        let mut f = Flusher::new(&c, crate::writer::open(&c).unwrap(), shared, true).unwrap();
        assert_eq!(f.resend_recovery(), (1, 0));
        assert_eq!(written(dir.path()), expect(0, 30));
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
                rejected: 2
            }
        );
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
