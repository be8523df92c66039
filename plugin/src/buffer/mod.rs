//! Buffers: where records wait, per partition key, between decoding and conversion.
//!
//! Every buffer follows one lease protocol, so the receiver treats them alike and a
//! failed write never loses data:
//! 1. `push` stores a whole submission or nothing (a retried Fluent Bit chunk must not
//!    be half in the buffer);
//! 2. `take` moves up to N records of a key into an in-flight [`Batch`];
//! 3. `ack` forgets a batch once its file is written; `nack` puts it back in front.

pub mod key_census;
pub mod mem;
pub mod redis;

use crate::dlq::DlqEntry;
use crate::idempotency::Seal;
use crate::partition::PartitionKey;
use crate::record::Record;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ulid::Ulid;

/// Records of one key taken out for conversion and writing.
#[derive(Debug)]
pub struct Batch {
    /// Unique per batch; file names derive from it, so a retried batch keeps its names.
    pub id: Ulid,
    pub key: PartitionKey,
    pub records: Vec<Record>,
    /// Approximate memory of the records (buffer accounting).
    pub bytes: u64,
    /// When it was taken (flush-latency metric).
    pub taken_at: Instant,
    /// The key's stored schema (dynamic records), as the converter last left it.
    pub schema: Option<Arc<str>>,
    /// A batch too large to hold at once (a Redis batch of more than a page): its
    /// records are read where they are written, a page at a time, and `records` is
    /// empty.
    pub pages: Option<Arc<dyn Pages>>,
}

/// The records of a batch read in pages where it is written, so that memory holds one
/// page whatever the batch's size. The order is the batch's, and a read of the same
/// range gives the same records, so a batch written again makes the same files.
pub trait Pages: Send + Sync + std::fmt::Debug {
    /// Records in the whole batch.
    fn total(&self) -> usize;

    /// Records to read at a time: what keeps a page's bytes bounded.
    fn page(&self) -> usize;

    /// The records at `from..from + n` (fewer at the end), and those that could not be
    /// decoded, as dead letters.
    fn read(&self, from: usize, n: usize) -> Result<(Vec<Record>, Vec<DlqEntry>), BufferError>;
}

impl Batch {
    /// Records in the batch, held or in pages.
    pub fn len(&self) -> usize {
        self.pages
            .as_ref()
            .map_or(self.records.len(), |p| p.total())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn info(&self) -> BatchInfo {
        BatchInfo {
            id: self.id,
            key: self.key.clone(),
            records: self.len(),
            bytes: self.bytes,
            schema: None,
            size_note: None,
        }
    }

    /// Splits off the records at `indexes` (sorted or not) into a batch of their own,
    /// with the same id and key; `self` keeps the rest.
    pub fn split_off(&mut self, indexes: &[usize]) -> Batch {
        let set: std::collections::HashSet<usize> = indexes.iter().copied().collect();
        let (mut keep, mut rest) = (Vec::new(), Vec::new());
        for (i, r) in std::mem::take(&mut self.records).into_iter().enumerate() {
            if set.contains(&i) {
                rest.push(r);
            } else {
                keep.push(r);
            }
        }
        let rest_bytes: u64 = rest.iter().map(|r| r.mem_size() as u64).sum();
        self.records = keep;
        self.bytes = self.bytes.saturating_sub(rest_bytes);
        Batch {
            id: self.id,
            key: self.key.clone(),
            records: rest,
            bytes: rest_bytes,
            taken_at: self.taken_at,
            schema: self.schema.clone(),
            pages: None,
        }
    }
}

/// What the buffer needs to forget a written batch, without its records (which the
/// writer thread drops, so freeing them costs the buffer thread nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub id: Ulid,
    pub key: PartitionKey,
    pub records: usize,
    pub bytes: u64,
    /// The key's schema after this batch (dynamic records), to be stored with the ack.
    pub schema: Option<Arc<str>>,
    /// The key's `FileTargetSize` estimate after this batch, to be stored with the ack
    /// where other nodes can read it.
    pub size_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    /// Over its limits: the caller should retry later (FLB_RETRY, HTTP 429).
    #[error("buffer full: {0}")]
    Full(String),
    /// The submission's new partition keys would pass `BufferMaxKeys`: refused like
    /// `Full`, and told apart so the metrics and the final answer can name the limit.
    #[error("buffer full: {0}")]
    TooManyKeys(String),
    /// The store cannot be reached, or says to come back (Redis down, restarting or
    /// loading its data): retryable, and worth a short wait before answering.
    #[error("buffer unavailable: {0}")]
    Unavailable(String),
    /// The store answered with an error that waiting will not cure (a data key of the
    /// wrong type, a command an ACL forbids). Still retryable once an operator fixes
    /// it, but answered at once.
    #[error("buffer refused the records: {0}")]
    Rejected(String),
}

impl BufferError {
    /// What the store or the limit said, without the kind's prefix.
    pub fn reason(&self) -> &str {
        match self {
            BufferError::Full(s)
            | BufferError::TooManyKeys(s)
            | BufferError::Unavailable(s)
            | BufferError::Rejected(s) => s,
        }
    }

    /// Whether a retry in a moment may succeed: worth waiting for within
    /// `BufferFullWait` before answering.
    pub fn transient(&self) -> bool {
        !matches!(self, BufferError::Rejected(_))
    }
}

/// The refusal for `groups` pushed to a buffer that holds `held` keys (`is_held` tells
/// which), when their new keys would pass `BufferMaxKeys`. The new keys are looked up
/// only when the sum could pass it, so the common push costs no lookups. An empty
/// buffer takes any submission, so progress is always possible. Keys are a resource
/// like bytes: each is at least one file at the next flush, and a partition field with
/// a value per record would otherwise make a file per record and a buffer that grows
/// with every key.
pub fn key_limit(
    held: usize,
    groups: &Groups,
    max: Option<std::num::NonZeroUsize>,
    is_held: impl Fn(&PartitionKey) -> bool,
) -> Result<(), BufferError> {
    let Some(max) = max.filter(|m| held > 0 && held + groups.len() > m.get()) else {
        return Ok(());
    };
    let new = groups.iter().filter(|(k, _)| !is_held(k)).count();
    if held + new <= max.get() {
        return Ok(());
    }
    Err(BufferError::TooManyKeys(format!(
        "{held} partition keys buffered and {new} more would pass BufferMaxKeys={max} \
         (does PartitionFields name a field with a value per record?)"
    )))
}

/// Why a key is being flushed (logged, and used by the receiver's decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Size,
    Interval,
    Request,
    /// The buffer is full: write what is pending to make room.
    Pressure,
    Close,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Size => "buffer-size",
            Reason::Interval => "interval",
            Reason::Request => "request",
            Reason::Pressure => "pressure",
            Reason::Close => "close",
        }
    }
}

/// What a buffer holds (the `d2p_buffer_*` gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Records, pending and in flight.
    pub records: u64,
    /// Their approximate memory (0 where the records live elsewhere, as in Redis).
    pub bytes: u64,
    /// Partition keys with pending records: each is at least one file at the next
    /// flush, so a count in the thousands means many small files.
    pub keys: u64,
}

/// Makes a direct pusher for a producer thread.
pub type PusherFactory = std::sync::Arc<dyn Fn() -> Box<dyn Pusher> + Send + Sync>;

/// Records grouped by partition key, as submitted.
pub type Groups = Vec<(PartitionKey, Vec<Record>)>;

/// A refused push hands the records back, so the caller can wait and retry.
#[derive(Debug)]
pub struct Refused {
    pub error: BufferError,
    pub groups: Groups,
}

/// Stores submissions without going through the buffer thread. Buffers backed by a
/// server (Redis) hand one to each producer thread, so pushes run in parallel over
/// their own connections; the buffer thread is only told the new lengths.
pub trait Pusher: Send {
    /// Stores every group, or nothing; returns each key's pending count after the push.
    /// A `seal` (an idempotency key's answer) is stored in the same transaction, so it
    /// exists exactly when the records do.
    fn push(
        &mut self,
        groups: &Groups,
        seal: Option<&Seal>,
    ) -> Result<Vec<(PartitionKey, usize)>, BufferError>;

    /// The receiver is closing: clear the pusher's own bookkeeping from the store.
    fn close(&mut self) {}
}

pub trait Buffer: Send {
    /// A factory of direct pushers, if this buffer supports them.
    fn pusher_factory(&self) -> Option<PusherFactory> {
        None
    }

    /// A direct pusher stored records under `key` (it now holds `len`).
    fn noted(&mut self, _key: &PartitionKey, _len: usize) {}

    /// Stores every group, or nothing. Returns each key's pending count after the push.
    fn push(&mut self, groups: Groups) -> Result<Vec<(PartitionKey, usize)>, Refused>;

    /// Keys with pending records whose oldest pending record has waited `interval`.
    fn due(&mut self, now: Instant, interval: Duration) -> Vec<PartitionKey>;

    /// Every key with pending records.
    fn keys(&mut self) -> Vec<PartitionKey>;

    fn pending(&mut self, key: &PartitionKey) -> usize;

    /// Moves up to `max` of the oldest pending records of `key` into a batch.
    fn take(&mut self, key: &PartitionKey, max: usize) -> Result<Option<Batch>, BufferError>;

    /// The `FileTargetSize` estimate stored for `key` with an earlier ack, by this node
    /// or another (a shared buffer); `None` where the buffer keeps none.
    fn size_note(&mut self, _key: &PartitionKey) -> Option<String> {
        None
    }

    /// The batch's file is written: forget it.
    fn ack(&mut self, batch: &BatchInfo);

    /// The batch could not be written: keep it, ahead of newer records.
    fn nack(&mut self, batch: Batch);

    /// Part of a batch was written (`written`, possibly no records) and the rest
    /// (`unwritten`) was not. By default the written part is forgotten and the rest kept.
    /// A buffer that writes a kept batch again whole, under the same file names (Redis,
    /// whose in-flight list is all or nothing), keeps it all instead.
    fn partly_written(&mut self, written: &BatchInfo, unwritten: Batch) {
        self.ack(written);
        self.nack(unwritten);
    }

    /// What the buffer holds, pending and in flight.
    fn usage(&self) -> Usage;

    /// Since when the longest-waiting pending record has waited (the start of its
    /// key's FlushInterval), if any record is pending: the pipeline's lag. Computed
    /// over every key, so it is asked once per tick, not per push.
    fn oldest_pending(&self) -> Option<Instant>;

    /// Whether records survive this process (Redis). Then a batch that cannot be written
    /// at shutdown simply stays stored, and nothing left in the buffer is lost.
    fn durable(&self) -> bool {
        false
    }

    /// Whether records may still be stored, read afresh. A durable buffer that cannot be
    /// read right now answers yes: a close then looks again rather than stop early.
    fn may_hold_records(&mut self) -> bool {
        self.usage().records > 0
    }

    /// Periodic upkeep (lock refreshes), called on every tick of the buffer thread.
    fn maintain(&mut self, _now: Instant) {}

    /// Stored records that turned out to be unreadable, for the DLQ.
    fn take_rejected(&mut self) -> Vec<crate::dlq::DlqEntry> {
        Vec::new()
    }
}
