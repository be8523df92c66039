//! The Redis buffer: durable, shared by many receivers, one flusher per key.
//!
//! Key names follow upstream (`upstream.md` §6.3): records in the list
//! `<RedisDataPrefix>:<key>`, the set of keys `<RedisKeys>`, the flush lock
//! `<RedisLockPrefix>:<key>`, dead letters in `<RedisDLQPrefix>:<key>`. Added: the batch in
//! flight `<RedisDataPrefix>-inflight:<key>` with its id in `<RedisDataPrefix>-inflight-id:<key>`,
//! failure counts in the hash `<RedisRecoveryKey>:<key>`, the schema of a key of
//! dynamic records in `<RedisDataPrefix>-schema:<key>` (kept 30 days after its last file),
//! the `FileTargetSize` estimate of a key in `<RedisDataPrefix>-size:<key>` (likewise),
//! the marker of a receive whose reply was lost, `<RedisDataPrefix>-push:<id>`, and the
//! answer to an HTTP request with an idempotency key, `<RedisDataPrefix>-idem:<hash>`.
//!
//! Protocol (fixing upstream's D-R1, D-R2, D-RC4, D-B3):
//! - **Receive**: RPUSH of every group, SADD of its key and a marker of the push's id
//!   `<RedisDataPrefix>-push:<id>` in one MULTI; acknowledged only after EXEC succeeded.
//!   A push whose reply is lost (Redis killed after its AOF write; a timeout with the push
//!   still in Redis's input buffer) answers FLB_RETRY, and may or may not be stored. The
//!   retried chunk settles it first: it kills the failed attempt's connection (CLIENT
//!   KILL, so a push still queued there can never run), then looks for the marker, and
//!   stores the records only if it is absent. A retry never stores a chunk twice.
//! - **Lock**: `SET lock NX PX ttl` with an owner token `<instance name>-<ULID>`, refreshed
//!   while the batch is being written, released by compare-and-delete (Lua).
//! - **Take**: a Lua script, fenced by the lock, moves the oldest N records (or all) from the
//!   data list to the in-flight list atomically and records the batch id. If an in-flight
//!   batch already exists (its owner crashed, or its write failed), it is taken again, with
//!   its id. Redis runs nothing else meanwhile, so the script moves the smaller part: a
//!   batch of at least half the list renames the list and hands the rest back. A take of
//!   350k 1 KB records blocked Redis 1.29 s when moved record by record, which a
//!   `FileTargetSize` batch or an interval flush of a busy key can ask for.
//! - **Read**: a batch of up to 10,000 records and about 16 MiB (`MEMORY USAGE`) is
//!   read at the take; a larger one (a `FileTargetSize` batch, or a key that waited
//!   `FileMaxAge`) is read by the writer thread a page at a time as its file grows
//!   (`Pages`), over a connection of its own. Each page is read in one transaction
//!   with the batch's in-flight id and must be whole, so a node that lost the lock
//!   meanwhile fails rather than read another batch.
//! - **Ack**: only after the file is written, a fenced Lua script deletes the in-flight
//!   list. File names derive from the batch id, so a batch written twice (crash between
//!   the write and the delete) overwrites the same file: no duplicate rows.
//! - **Discovery**: the keys set is read at start and swept periodically, so data left
//!   by crashed or receive-only nodes is flushed; empty keys leave the set atomically.

mod dlq;
mod names;
mod pages;
mod push;

pub use dlq::RedisDlq;
pub use names::Names;
use pages::{RedisPages, read_range, records_per_page};
use push::{GroupPusher, RedisPusher};

use super::key_census::KeyCensus;
use super::{Batch, BatchInfo, Buffer, BufferError, Groups, Pusher, PusherFactory, Refused, Usage};
use crate::config::RedisConfig;
use crate::dlq::DlqEntry;
use crate::partition::PartitionKey;
use crate::redis_conn::{RedisConn, is_transport};
use redis::{RedisError, Script};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ulid::Ulid;

const TAKE: &str = r#"
-- KEYS: data, inflight, inflight_id, lock; ARGV: max, new batch id, token
if redis.call('GET', KEYS[4]) ~= ARGV[3] then return {-1, ''} end
local cur = redis.call('LLEN', KEYS[2])
if cur > 0 then
  return {cur, redis.call('GET', KEYS[3]) or ''}
end
local len = redis.call('LLEN', KEYS[1])
local want = math.min(tonumber(ARGV[1]), len)
if want == 0 then return {0, ''} end
if want * 2 >= len then
  -- Most of the list: rename it (O(1)) and hand the newest records back, in order.
  redis.call('RENAME', KEYS[1], KEYS[2])
  local back = len - want
  while back > 0 do
    local n = math.min(back, 4000)
    local items = redis.call('LRANGE', KEYS[2], -n, -1)
    local rev = {}
    for i = #items, 1, -1 do rev[#rev + 1] = items[i] end
    redis.call('LPUSH', KEYS[1], unpack(rev))
    redis.call('LTRIM', KEYS[2], 0, -n - 1)
    back = back - n
  end
else
  local moved = 0
  while moved < want do
    local n = math.min(want - moved, 4000)
    local items = redis.call('LRANGE', KEYS[1], 0, n - 1)
    redis.call('RPUSH', KEYS[2], unpack(items))
    redis.call('LTRIM', KEYS[1], n, -1)
    moved = moved + n
  end
end
redis.call('SET', KEYS[3], ARGV[2])
return {want, ARGV[2]}
"#;

const ACK: &str = r#"
-- KEYS: inflight, inflight_id, lock, keys set, data, schema, size estimate;
-- ARGV: token, batch id, key, schema, size estimate
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -2 end
-- UNLINK frees the list off Redis's main thread (DEL of 350k records held it 10 ms).
redis.call('UNLINK', KEYS[1], KEYS[2])
if ARGV[4] ~= '' then redis.call('SET', KEYS[6], ARGV[4], 'EX', 2592000) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[7], ARGV[5], 'EX', 2592000) end
if redis.call('LLEN', KEYS[5]) == 0 then redis.call('SREM', KEYS[4], ARGV[3]) end
return 1
"#;

const REFRESH: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const FORGET_IF_EMPTY: &str = r#"
-- KEYS: keys set, data, inflight; ARGV: key
if redis.call('LLEN', KEYS[2]) == 0 and redis.call('LLEN', KEYS[3]) == 0 then
  return redis.call('SREM', KEYS[1], ARGV[1])
end
return 0
"#;

/// Sorts a Redis error by what the caller can do about it: out of memory is a full
/// buffer; a lost connection, or an answer that says to come back (LOADING after a
/// restart, MASTERDOWN, TRYAGAIN), is unavailability worth a short wait; any other
/// answer (WRONGTYPE, NOPERM) will not change by waiting.
pub(crate) fn classify(e: &RedisError) -> BufferError {
    let text = e.to_string();
    if text.contains("OOM") {
        BufferError::Full(format!("Redis is out of memory: {text}"))
    } else if e.is_timeout() {
        // The OS words a read timeout as "Resource temporarily unavailable".
        BufferError::Unavailable(format!("Redis did not answer within RedisTimeout ({text})"))
    } else if is_transport(e) || says_come_back(e) {
        BufferError::Unavailable(format!("Redis: {text}"))
    } else {
        BufferError::Rejected(format!("Redis: {text}"))
    }
}

/// Whether Redis answered "not now": loading its data after a restart, a replica
/// without its master, a cluster resharding. Inside a MULTI such an answer aborts the
/// transaction, so the queued commands' own errors are looked at too.
fn says_come_back(e: &RedisError) -> bool {
    use redis::ServerErrorKind as K;
    matches!(e.retry_method(), redis::RetryMethod::WaitAndRetry)
        || e.clone().into_server_errors().is_some_and(|errs| {
            errs.iter().any(|(_, s)| {
                matches!(
                    s.kind(),
                    Some(K::BusyLoading | K::TryAgain | K::MasterDown | K::ClusterDown)
                )
            })
        })
}

struct Held {
    id: Ulid,
    refreshed: Instant,
}

pub struct RedisBuffer {
    conn: RedisConn,
    pusher: GroupPusher,
    cfg: RedisConfig,
    token: String,
    skip_flush: bool,
    take_script: Script,
    ack_script: Script,
    refresh_script: Script,
    release_script: Script,
    forget_script: Script,
    /// When each key was first seen with pending records (interval flushes).
    first_seen: HashMap<PartitionKey, Instant>,
    /// Pending and in-flight counts from the last sweep.
    counts: HashMap<PartitionKey, (usize, usize)>,
    last_sweep: Option<Instant>,
    sweep_every: Duration,
    /// Keys whose lock this node holds with a batch in flight.
    held: HashMap<PartitionKey, Held>,
    /// Records that could not be decoded from Redis, for the DLQ.
    undecodable: Vec<DlqEntry>,
}

impl RedisBuffer {
    /// Connects and checks that Redis answers (no silent fallback to memory, D-B5).
    pub fn connect(
        cfg: &RedisConfig,
        flush_interval: Duration,
    ) -> Result<RedisBuffer, BufferError> {
        let mut conn = RedisConn::new(cfg)
            .map_err(|e| BufferError::Unavailable(format!("Redis {}: {e}", cfg.host)))?;
        conn.ping().map_err(|e| {
            BufferError::Unavailable(format!("Redis {} does not answer: {e}", conn.addr))
        })?;
        Ok(RedisBuffer {
            conn,
            pusher: GroupPusher::new(cfg, Arc::default(), Arc::default()),
            cfg: cfg.clone(),
            token: format!("{}-{}", cfg.lock_instance_name, Ulid::generate()),
            skip_flush: cfg.skip_flush,
            take_script: Script::new(TAKE),
            ack_script: Script::new(ACK),
            refresh_script: Script::new(REFRESH),
            release_script: Script::new(RELEASE),
            forget_script: Script::new(FORGET_IF_EMPTY),
            first_seen: HashMap::new(),
            counts: HashMap::new(),
            last_sweep: None,
            sweep_every: (flush_interval / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5)),
            held: HashMap::new(),
            undecodable: Vec::new(),
        })
    }

    /// Limits the keys Redis holds (`BufferMaxKeys`), counted as this node last read them.
    pub fn with_max_keys(self, max: Option<std::num::NonZeroUsize>) -> Self {
        *self.pusher.census() = KeyCensus::new(max);
        self
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn ttl_ms(&self) -> u64 {
        self.cfg.lock_ttl.as_millis().max(1) as u64
    }

    /// Reads the keys set and the lengths of every key's lists.
    fn sweep(&mut self) -> Result<(), RedisError> {
        let names = Names::new(&self.cfg);
        let keys_name = names.keys().to_string();
        let keys: Vec<String> = self
            .conn
            .with(|c| redis::cmd("SMEMBERS").arg(&keys_name).query(c))?;
        let keys: Vec<PartitionKey> = keys.iter().map(|k| PartitionKey::from_text(k)).collect();
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("LLEN")
                .arg(names.data(k))
                .cmd("LLEN")
                .arg(names.inflight(k));
        }
        let lens: Vec<usize> = if keys.is_empty() {
            Vec::new()
        } else {
            self.conn.with(|c| pipe.query(c))?
        };
        let now = Instant::now();
        self.counts.clear();
        for (i, k) in keys.into_iter().enumerate() {
            let (p, f) = (lens[2 * i], lens[2 * i + 1]);
            if p == 0 && f == 0 {
                self.first_seen.remove(&k);
                let (d, fl) = (names.data(&k), names.inflight(&k));
                let script = &self.forget_script;
                let _ = self.conn.with(|c| {
                    script
                        .key(&keys_name)
                        .key(&d)
                        .key(&fl)
                        .arg(k.as_str())
                        .invoke::<i64>(c)
                });
                continue;
            }
            if p > 0 {
                self.first_seen.entry(k.clone()).or_insert(now);
            }
            self.counts.insert(k, (p, f));
        }
        let held = self.counts.keys().map(|k| k.as_str().to_string());
        self.pusher.census().replace(held, now);
        self.last_sweep = Some(now);
        Ok(())
    }

    fn acquire(&mut self, k: &PartitionKey) -> Result<bool, RedisError> {
        let lock = Names::new(&self.cfg).lock(k);
        let (token, ttl) = (self.token.clone(), self.ttl_ms());
        let got: Option<String> = self.conn.with(|c| {
            redis::cmd("SET")
                .arg(&lock)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query(c)
        })?;
        if got.is_some() {
            return Ok(true);
        }
        let owner: Option<String> = self.conn.with(|c| redis::cmd("GET").arg(&lock).query(c))?;
        Ok(owner.as_deref() == Some(token.as_str()))
    }

    fn release(&mut self, k: &PartitionKey) {
        let lock = Names::new(&self.cfg).lock(k);
        let (script, token) = (&self.release_script, self.token.clone());
        let _ = self
            .conn
            .with(|c| script.key(&lock).arg(&token).invoke::<i64>(c));
    }

    /// Records Redis could not decode (corrupt elements), for the caller's DLQ.
    pub fn take_undecodable(&mut self) -> Vec<DlqEntry> {
        std::mem::take(&mut self.undecodable)
    }
}

impl Buffer for RedisBuffer {
    fn push(&mut self, groups: Groups) -> Result<Vec<(PartitionKey, usize)>, Refused> {
        let pushed = self.pusher.push(&mut self.conn, &groups, None);
        // This path has no close to clean up at: forget the push marker now.
        self.pusher.delete_markers(&mut self.conn);
        match pushed {
            Ok(lens) => {
                let now = Instant::now();
                for (k, _) in &lens {
                    self.first_seen.entry(k.clone()).or_insert(now);
                }
                Ok(lens)
            }
            Err(error) => Err(Refused { error, groups }),
        }
    }

    fn pusher_factory(&self) -> Option<PusherFactory> {
        let shared = self.pusher.share();
        Some(std::sync::Arc::new(move || -> Box<dyn Pusher> {
            Box::new(RedisPusher::new(shared.share()))
        }))
    }

    fn noted(&mut self, key: &PartitionKey, _len: usize) {
        self.first_seen
            .entry(key.clone())
            .or_insert_with(Instant::now);
    }

    fn due(&mut self, now: Instant, interval: Duration) -> Vec<PartitionKey> {
        if self.skip_flush {
            return Vec::new();
        }
        if self
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= self.sweep_every)
            && self.sweep().is_err()
        {
            return Vec::new();
        }
        self.counts
            .iter()
            .filter(|(k, (p, f))| {
                !self.held.contains_key(*k)
                    && (*f > 0
                        || (*p > 0
                            && self
                                .first_seen
                                .get(*k)
                                .is_some_and(|s| now.duration_since(*s) >= interval)))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn may_hold_records(&mut self) -> bool {
        if self.skip_flush {
            return false;
        }
        match self.sweep() {
            Ok(()) => self.counts.values().any(|(p, f)| p + f > 0),
            Err(_) => true,
        }
    }

    fn keys(&mut self) -> Vec<PartitionKey> {
        if self.skip_flush || self.sweep().is_err() {
            return Vec::new();
        }
        self.counts.keys().cloned().collect()
    }

    fn pending(&mut self, key: &PartitionKey) -> usize {
        if self.skip_flush || self.held.contains_key(key) {
            return 0;
        }
        let names = Names::new(&self.cfg);
        let (d, f) = (names.data(key), names.inflight(key));
        self.conn
            .with(|c| {
                redis::pipe()
                    .cmd("LLEN")
                    .arg(&d)
                    .cmd("LLEN")
                    .arg(&f)
                    .query::<(usize, usize)>(c)
            })
            .map(|(p, f)| p + f)
            .unwrap_or(0)
    }

    fn take(&mut self, key: &PartitionKey, max: usize) -> Result<Option<Batch>, BufferError> {
        if self.skip_flush || max == 0 || self.held.contains_key(key) {
            return Ok(None);
        }
        if !self.acquire(key).map_err(|e| classify(&e))? {
            return Ok(None);
        }
        let names = Names::new(&self.cfg);
        let (d, f, fid, lock) = (
            names.data(key),
            names.inflight(key),
            names.inflight_id(key),
            names.lock(key),
        );
        let new_id = Ulid::generate().to_string();
        let (script, token) = (&self.take_script, self.token.clone());
        let (n, id): (i64, String) = self
            .conn
            .with(|c| {
                script
                    .key(&d)
                    .key(&f)
                    .key(&fid)
                    .key(&lock)
                    .arg(max)
                    .arg(&new_id)
                    .arg(&token)
                    .invoke(c)
            })
            .map_err(|e| classify(&e))?;
        if n <= 0 {
            self.release(key);
            return Ok(None);
        }
        let sk = names.schema(key);
        let schema: Option<String> = self
            .conn
            .with(|c| redis::cmd("GET").arg(&sk).query(c))
            .map_err(|e| classify(&e))?;
        // An in-flight batch left without an id (never by our scripts) gets the new one.
        let id = Ulid::from_string(&id)
            .unwrap_or_else(|_| Ulid::from_string(&new_id).unwrap_or_else(|_| Ulid::generate()));
        let taken = n as usize;
        // A batch of more than a page is read where it is written, a page at a time
        // (see `Pages`): a `FileTargetSize` batch of 350k 1 KB records would otherwise
        // take over a GB here, and hold the buffer thread for seconds. The page's size
        // comes from MEMORY USAGE, which samples a few of the list's nodes: O(1),
        // unlike summing the records' lengths.
        let bytes: Option<u64> = self
            .conn
            .with(|c| {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&f)
                    .arg("SAMPLES")
                    .arg(5)
                    .query(c)
            })
            .ok()
            .flatten();
        let page = records_per_page(taken, bytes);
        let (records, pages) = if taken > page {
            let pages: Arc<dyn super::Pages> = Arc::new(RedisPages::new(
                &self.cfg,
                (f.clone(), key.clone()),
                taken,
                page,
                (fid.clone(), id.to_string()),
            ));
            (Vec::new(), Some(pages))
        } else {
            let (records, bad) = read_range(&mut self.conn, (&f, key), None, 0, taken)?;
            self.undecodable.extend(bad);
            (records, None)
        };
        let bytes = records.iter().map(|r| r.mem_size() as u64).sum();
        self.held.insert(
            key.clone(),
            Held {
                id,
                refreshed: Instant::now(),
            },
        );
        self.first_seen.remove(key);
        // Until the next sweep the counts follow what this node moved: the batch is in
        // flight now, and that many records left the pending list.
        let (p, f) = self.counts.entry(key.clone()).or_default();
        *p = p.saturating_sub(taken);
        *f = taken;
        Ok(Some(Batch {
            id,
            key: key.clone(),
            records,
            bytes,
            taken_at: Instant::now(),
            schema: schema.map(Arc::from),
            pages,
        }))
    }

    /// Read once per key and process (the caller remembers it asked). Redis being away
    /// only means sizing starts from `BufferSize`, as without a shared estimate.
    fn size_note(&mut self, key: &PartitionKey) -> Option<String> {
        let name = Names::new(&self.cfg).size(key);
        self.conn
            .with(|c| redis::cmd("GET").arg(&name).query::<Option<String>>(c))
            .ok()
            .flatten()
    }

    fn ack(&mut self, batch: &BatchInfo) {
        let Some(h) = self.held.remove(&batch.key) else {
            return;
        };
        if h.id != batch.id {
            return;
        }
        let names = Names::new(&self.cfg);
        let k = &batch.key;
        let (f, fid, lock, keys, d, sk, size) = (
            names.inflight(k),
            names.inflight_id(k),
            names.lock(k),
            names.keys().to_string(),
            names.data(k),
            names.schema(k),
            names.size(k),
        );
        let schema = batch.schema.as_deref().unwrap_or("");
        let size_note = batch.size_note.as_deref().unwrap_or("");
        let (script, token) = (&self.ack_script, self.token.clone());
        let id = batch.id.to_string();
        // If this fails (Redis down, lock lost), the batch stays in flight and is written
        // again later under the same file name: no loss, no duplicate.
        let acked = self.conn.with(|c| {
            script
                .key(&f)
                .key(&fid)
                .key(&lock)
                .key(&keys)
                .key(&d)
                .key(&sk)
                .key(&size)
                .arg(&token)
                .arg(&id)
                .arg(k.as_str())
                .arg(schema)
                .arg(size_note)
                .invoke::<i64>(c)
        });
        if matches!(acked, Ok(1))
            && let Some((p, f)) = self.counts.get_mut(k)
        {
            *f = 0;
            if *p == 0 {
                self.counts.remove(k);
            }
        }
        let rec = names.recovery(k);
        let _ = self
            .conn
            .with(|c| redis::cmd("DEL").arg(&rec).query::<i64>(c));
        self.release(k);
    }

    fn partly_written(&mut self, _written: &BatchInfo, unwritten: Batch) {
        // The in-flight list holds the whole batch; acknowledging the written part would
        // delete it all. It is written again whole, and the files already written are
        // overwritten under their same names.
        self.nack(unwritten);
    }

    fn nack(&mut self, batch: Batch) {
        // The records stay in the in-flight list; note the failure for operators.
        let names = Names::new(&self.cfg);
        let rec = names.recovery(&batch.key);
        let id = batch.id.to_string();
        let _ = self.conn.with(|c| {
            redis::pipe()
                .cmd("HINCRBY")
                .arg(&rec)
                .arg("failures")
                .arg(1)
                .ignore()
                .cmd("HSET")
                .arg(&rec)
                .arg("batch")
                .arg(&id)
                .ignore()
                .query::<()>(c)
        });
        self.held.remove(&batch.key);
        self.release(&batch.key);
    }

    fn usage(&self) -> Usage {
        let n: usize = self.counts.values().map(|(p, f)| p + f).sum();
        Usage {
            records: n as u64,
            bytes: 0,
            keys: self.counts.values().filter(|(p, _)| *p > 0).count() as u64,
        }
    }

    fn oldest_pending(&self) -> Option<Instant> {
        self.counts
            .iter()
            .filter(|(_, (p, _))| *p > 0)
            .filter_map(|(k, _)| self.first_seen.get(k))
            .min()
            .copied()
    }

    fn durable(&self) -> bool {
        true
    }

    fn maintain(&mut self, now: Instant) {
        let every = Duration::from_millis(self.ttl_ms() / 3);
        let due: Vec<PartitionKey> = self
            .held
            .iter()
            .filter(|(_, h)| now.duration_since(h.refreshed) >= every)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let lock = Names::new(&self.cfg).lock(&k);
            let (script, token, ttl) = (&self.refresh_script, self.token.clone(), self.ttl_ms());
            if self
                .conn
                .with(|c| script.key(&lock).arg(&token).arg(ttl).invoke::<i64>(c))
                .is_ok()
                && let Some(h) = self.held.get_mut(&k)
            {
                h.refreshed = now;
            }
        }
    }

    fn take_rejected(&mut self) -> Vec<DlqEntry> {
        self.take_undecodable()
    }
}
