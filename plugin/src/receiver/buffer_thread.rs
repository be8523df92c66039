//! The buffer thread: the only owner of the buffer. It stores submissions, decides
//! flushes (size, age, request, close), hands batches to the writer threads, and
//! acknowledges or keeps their records by the result. Being the single owner is what
//! makes the buffer need no lock, and what orders every decision about one key.

use super::file_size::FileSizing;
use super::{
    ABANDONED, CLAIMED, Done, FlushReport, Job, Msg, PARKED, PENDING, Push, Report, SubmitError,
};
use crate::buffer::{Batch, Buffer, BufferError, Reason, Refused};
use crate::config::Config;
use crate::flush::Shared;
use crate::log_at;
use crate::logging::Level;
use crate::metrics::Metrics;
use crate::partition::PartitionKey;
use crossbeam_channel::{Receiver as Rx, Sender as Tx, TrySendError, select};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Waiter {
    done: Tx<FlushReport>,
    ids: HashSet<ulid::Ulid>,
    report: FlushReport,
    /// Its request to finish the open files (FileMaxAge) was made: it is answered
    /// once that is done too.
    finishing: bool,
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

pub(super) struct BufferThread {
    buffer: Box<dyn Buffer>,
    shared: Arc<Shared>,
    /// Records per batch, per key: BufferSize, or what FileTargetSize asks for.
    sizing: FileSizing,
    interval: Duration,
    /// How often the buffer looks for due keys and keeps its locks.
    tick: Duration,
    job_tx: Option<Tx<Job>>,
    capacity: usize,
    queue: VecDeque<Batch>,
    in_flight: HashSet<ulid::Ulid>,
    waiters: Vec<Waiter>,
    closing: Option<Closing>,
    workers: Vec<JoinHandle<()>>,
    parked: VecDeque<Push>,
    /// Files are kept open across flushes (FileMaxAge): a flush finishes them too.
    open_files: bool,
    /// Requests to finish the open files, not yet handed to a writer thread.
    finish_requests: VecDeque<ulid::Ulid>,
    /// With open files, the keys with a batch at a writer thread: a key's next batch
    /// waits for it, so its rows are appended in the order they came, whatever the
    /// number of writer threads.
    busy: HashSet<PartitionKey>,
}

impl BufferThread {
    pub(super) fn new(
        cfg: &Config,
        buffer: Box<dyn Buffer>,
        shared: Arc<Shared>,
        job_tx: Tx<Job>,
        workers: Vec<JoinHandle<()>>,
        per_worker: usize,
    ) -> BufferThread {
        BufferThread {
            buffer,
            shared,
            // With files kept open, FileTargetSize is where a file is finished, not
            // how many records a flush takes.
            sizing: FileSizing::new(
                cfg.file_target_size
                    .filter(|_| cfg.open_file_age().is_none()),
                cfg.buffer_size,
            ),
            interval: cfg.key_interval(),
            // Redis locks are refreshed on ticks, every third of their TTL: ticks come
            // often enough for that whatever the interval.
            tick: (cfg.key_interval() / 10)
                .min(cfg.redis.lock_ttl / 4)
                .clamp(Duration::from_millis(20), Duration::from_millis(500)),
            job_tx: Some(job_tx),
            capacity: workers.len() * per_worker,
            queue: VecDeque::new(),
            in_flight: HashSet::new(),
            waiters: Vec::new(),
            closing: None,
            workers,
            parked: VecDeque::new(),
            open_files: cfg.open_file_age().is_some(),
            finish_requests: VecDeque::new(),
            busy: HashSet::new(),
        }
    }

    pub(super) fn run(mut self, rx: Rx<Msg>, done_rx: Rx<Report>) {
        let tick = self.tick;
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
                recv(done_rx) -> d => match d {
                    Ok(Report::Batch(d)) => self.on_done(d),
                    Ok(Report::Finished(id, w)) => self.on_finished(id, w),
                    Err(_) => {}
                },
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
            if self.closing.is_some()
                && self.queue.is_empty()
                && self.in_flight.is_empty()
                && self.finish_requests.is_empty()
            {
                if self.redrain() {
                    continue;
                }
                self.finish_close(&done_rx);
                return;
            }
        }
    }

    fn publish_usage(&self) {
        let u = self.buffer.usage();
        let m = &self.shared.metrics;
        m.buffer_records.store(u.records, Ordering::Relaxed);
        m.buffer_bytes.store(u.bytes, Ordering::Relaxed);
        m.buffer_keys.store(u.keys, Ordering::Relaxed);
        if u.records == 0 {
            // Nothing waits: no lag, without waiting for the next tick to say so.
            m.buffer_oldest_ms.store(0, Ordering::Relaxed);
        }
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
                // Producers that gave up hold no place in the line.
                self.parked
                    .retain(|q| q.state.load(Ordering::Acquire) != ABANDONED);
                if !self.parked.is_empty() && p.wait {
                    // Keep arrival order among waiting producers.
                    self.park(p, None);
                    return;
                }
                self.push(p, true);
            }
            Msg::Pushed(lens) => {
                if self.closing.is_none() {
                    for (key, len) in lens {
                        self.buffer.noted(&key, len);
                        if len >= self.rows(&key) {
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
                self.waiters.push(Waiter {
                    done,
                    ids,
                    report: FlushReport::default(),
                    finishing: false,
                });
                self.answer_waiters();
            }
            Msg::Close { done } => self.start_close(Some(done)),
        }
    }

    /// Stores a submission, parks it when full and it may wait, or answers Full. A full
    /// buffer with nothing queued for writing writes what it holds, with `make_room`.
    fn push(&mut self, p: Push, make_room: bool) {
        let n: usize = p.groups.iter().map(|(_, r)| r.len()).sum();
        match self.buffer.push(p.groups) {
            Ok(lens) => {
                Metrics::add(&self.shared.metrics.records_in, n as u64);
                let _ = p.reply.send(Ok(()));
                for (key, len) in lens {
                    if len >= self.rows(&key) {
                        self.take_key(&key, Reason::Size, false);
                    }
                }
            }
            Err(Refused { error, groups }) => {
                if matches!(error, BufferError::Full(_) | BufferError::TooManyKeys(_)) {
                    // Make room: write what is pending rather than wait for triggers.
                    if make_room && self.queue.is_empty() {
                        self.take_all(Reason::Pressure);
                    }
                    if p.wait {
                        self.park(Push { groups, ..p }, Some(error));
                        return;
                    }
                    super::count_refusal(&self.shared.metrics, Some(&error));
                }
                let _ = p.reply.send(Err(error.into()));
            }
        }
        self.publish_usage();
    }

    /// Keeps a submission until room is made. Its producer may give up meanwhile
    /// (BufferFullWait), so it is released to be cancelled.
    /// `cause` is why the buffer refused it; one parked behind others (`None`) shares
    /// the cause of the first in line.
    fn park(&mut self, mut p: Push, cause: Option<BufferError>) {
        let cause = cause.or_else(|| {
            self.parked
                .front()
                .and_then(|q| q.cause.lock().unwrap_or_else(|e| e.into_inner()).clone())
        });
        if let Some(c) = cause {
            *p.cause.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        }
        if !p.waited {
            p.waited = true;
            Metrics::add(&self.shared.metrics.full_waits, 1);
        }
        p.state.store(PARKED, Ordering::Release);
        self.parked.push_back(p);
    }

    /// Retries parked submissions, in order, after a write finished; those whose producer
    /// gave up are dropped unstored. `make_room` is false after a failed write: writing
    /// again at once would only spin on the same failure while producers wait.
    fn unpark(&mut self, make_room: bool) {
        while let Some(p) = self.parked.pop_front() {
            if p.state
                .compare_exchange(PARKED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let before = self.parked.len();
            self.push(p, make_room);
            if self.parked.len() > before {
                // Still full: it went back to the end; restore its place at the front.
                if let Some(back) = self.parked.pop_back() {
                    self.parked.push_front(back);
                }
                break;
            }
        }
    }

    /// Records of `key` that make a batch; the first time a key is sized, what the
    /// buffer keeps of other nodes' estimates is asked for.
    fn rows(&mut self, key: &PartitionKey) -> usize {
        if self.sizing.wants_shared(key) {
            let note = self.buffer.size_note(key);
            self.sizing.adopt(key, note.as_deref());
        }
        self.sizing.rows(key)
    }

    /// Takes batches of `key`: whole batches (see [`FileSizing`]), or everything with
    /// `all`.
    fn take_key(&mut self, key: &PartitionKey, reason: Reason, all: bool) {
        let rows = self.rows(key);
        loop {
            let pending = self.buffer.pending(key);
            if pending == 0 || (!all && (pending < rows || !self.sizing.ready(key))) {
                break;
            }
            match self.buffer.take(key, rows) {
                Ok(Some(b)) => {
                    if !all {
                        self.sizing.taken(key, b.id);
                    }
                    log_at!(
                        self.shared.log,
                        Level::Debug,
                        "flush {} ({}): {} records",
                        b.key,
                        reason.name(),
                        b.len()
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
        // The Redis buffer learns its usage from its sweeps, which run here; producers
        // push past the buffer thread, so no other message would publish it.
        self.publish_usage();
        let lag = self
            .buffer
            .oldest_pending()
            .map_or(0, |t| t.elapsed().as_millis() as u64);
        self.shared
            .metrics
            .buffer_oldest_ms
            .store(lag, Ordering::Relaxed);
    }

    fn dispatch(&mut self) {
        while self.in_flight.len() < self.capacity {
            let Some(tx) = &self.job_tx else {
                break;
            };
            // A finish request goes first: the batches it waited for are written, and
            // the queue holds only later ones.
            let next = match self.open_files {
                true => self.queue.iter().position(|b| !self.busy.contains(&b.key)),
                false => (!self.queue.is_empty()).then_some(0),
            };
            let job = match self.finish_requests.pop_front() {
                Some(id) => Job::FinishOpen(id),
                None => match next.and_then(|i| self.queue.remove(i)) {
                    Some(batch) => Job::Write(batch),
                    None => break,
                },
            };
            let id = job.id();
            let key = match (&job, self.open_files) {
                (Job::Write(b), true) => Some(b.key.clone()),
                _ => None,
            };
            match tx.try_send(job) {
                Ok(()) => {
                    self.in_flight.insert(id);
                    self.busy.extend(key);
                }
                Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => {
                    match j {
                        Job::Write(batch) => self.queue.push_front(batch),
                        Job::FinishOpen(id) => self.finish_requests.push_front(id),
                    }
                    break;
                }
            }
        }
    }

    /// Open files finished: on a waiter's request (`id`), or by a writer thread
    /// stopping at close (`None`; see [`BufferThread::finish_close`]).
    fn on_finished(&mut self, id: Option<ulid::Ulid>, w: super::Written) {
        if let Some(id) = id {
            self.in_flight.remove(&id);
        }
        for waiter in &mut self.waiters {
            if id.is_some_and(|id| waiter.ids.remove(&id)) {
                waiter.report.add(&w);
            }
        }
        if let Some(c) = &mut self.closing {
            c.report.add(&w);
        }
        self.answer_waiters();
    }

    /// Answers the flushes whose batches are all written. With files kept open
    /// (FileMaxAge) a flush first asks for them to be finished, and is answered when
    /// that is done.
    fn answer_waiters(&mut self) {
        let mut i = 0;
        while i < self.waiters.len() {
            let w = &mut self.waiters[i];
            if !w.ids.is_empty() {
                i += 1;
            } else if self.open_files && !w.finishing && self.closing.is_none() {
                let id = ulid::Ulid::generate();
                w.finishing = true;
                w.ids.insert(id);
                self.finish_requests.push_back(id);
                i += 1;
            } else {
                let w = self.waiters.swap_remove(i);
                let _ = w.done.send(w.report);
            }
        }
    }

    fn on_done(&mut self, d: Done) {
        let Done {
            id,
            written: mut acked,
            result,
        } = d;
        self.in_flight.remove(&id);
        self.busy.remove(&acked.key);
        let probed = self.sizing.finished(id);
        let mut lost = 0;
        let (written, error) = match result {
            Ok(w) => {
                self.sizing.learn(&acked.key, &w);
                acked.size_note = self.sizing.note(&acked.key);
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
                (*f.partial, Some(f.error))
            }
        };
        // Keys held back while the probe was written go now, rather than at their next
        // push or interval (probes are only the first few batches of a run).
        if probed && self.closing.is_none() {
            for key in self.buffer.keys() {
                self.take_key(&key, Reason::Size, false);
            }
        }
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
        // The gauges first: a caller whose flush is answered may read them at once, and
        // must not see the records of the batch it just waited for.
        self.publish_usage();
        self.answer_waiters();
        self.unpark(error.is_none());
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

    fn finish_close(&mut self, done_rx: &Rx<Report>) {
        // Dropping the job channel stops the writer threads, which first finish the
        // files kept open across flushes (FileMaxAge) and report them here.
        self.job_tx = None;
        while let Ok(r) = done_rx.recv() {
            if let Report::Finished(None, w) = r {
                self.on_finished(None, w);
            }
        }
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
        let records = self.buffer.usage().records;
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
