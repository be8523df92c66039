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

use super::key_census::KeyCensus;
use super::{Batch, BatchInfo, Buffer, BufferError, Groups, Pusher, PusherFactory, Refused, Usage};
use crate::config::RedisConfig;
use crate::dlq::{DlqEntry, DlqError, DlqSink};
use crate::idempotency::Seal;
use crate::partition::PartitionKey;
use crate::record::Record;
use crate::redis_conn::{ClientIdentity, RedisConn, is_transport};
use redis::{RedisError, Script};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// Records read back per LRANGE, at most.
const READ_PAGE: usize = 10_000;

/// The bytes of stored records read at a time, about: a batch of more than this is
/// read in pages, however few its records (peers' users report records of 1 MiB and
/// more; 10,000 of those at once would be 10 GB).
const PAGE_BYTES: u64 = 16 << 20;

/// Records per read of a list of `n` records taking about `bytes` in Redis (`None`
/// where Redis does not say, as with a `MEMORY` command an ACL forbids): as many as
/// make [`PAGE_BYTES`], at most [`READ_PAGE`].
fn records_per_page(n: usize, bytes: Option<u64>) -> usize {
    match bytes {
        Some(b) if b > 0 => {
            let fit = (n as u128 * u128::from(PAGE_BYTES) / u128::from(b)) as usize;
            fit.clamp(1, READ_PAGE)
        }
        _ => READ_PAGE,
    }
}

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

/// Redis key names for one partition key.
pub struct Names<'c> {
    cfg: &'c RedisConfig,
}

impl<'c> Names<'c> {
    pub fn new(cfg: &'c RedisConfig) -> Self {
        Names { cfg }
    }
    pub fn data(&self, k: &PartitionKey) -> String {
        format!("{}:{}", self.cfg.data_prefix, k)
    }
    pub fn inflight(&self, k: &PartitionKey) -> String {
        format!("{}-inflight:{}", self.cfg.data_prefix, k)
    }
    pub fn inflight_id(&self, k: &PartitionKey) -> String {
        format!("{}-inflight-id:{}", self.cfg.data_prefix, k)
    }
    pub fn lock(&self, k: &PartitionKey) -> String {
        format!("{}:{}", self.cfg.lock_prefix, k)
    }
    pub fn dlq(&self, k: &str) -> String {
        format!("{}:{}", self.cfg.dlq_prefix, k)
    }
    pub fn schema(&self, k: &PartitionKey) -> String {
        format!("{}-schema:{}", self.cfg.data_prefix, k)
    }
    pub fn size(&self, k: &PartitionKey) -> String {
        format!("{}-size:{}", self.cfg.data_prefix, k)
    }
    pub fn push_marker(&self, id: &str) -> String {
        format!("{}-push:{}", self.cfg.data_prefix, id)
    }
    /// An idempotency key's answer (see [`crate::idempotency`]).
    pub fn idempotency(&self, hashed_key: &str) -> String {
        format!("{}-idem:{}", self.cfg.data_prefix, hashed_key)
    }
    pub fn recovery(&self, k: &PartitionKey) -> String {
        format!("{}:{}", self.cfg.recovery_key, k)
    }
    pub fn keys(&self) -> &str {
        &self.cfg.keys
    }
}

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
        let cfg = self.cfg.clone();
        let unsettled = self.pusher.unsettled.clone();
        let census = self.pusher.census.clone();
        Some(std::sync::Arc::new(move || -> Box<dyn Pusher> {
            Box::new(RedisPusher {
                conn: RedisConn::new(&cfg).ok(),
                cfg: cfg.clone(),
                pusher: GroupPusher::new(&cfg, unsettled.clone(), census.clone()),
            })
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
            let pages: Arc<dyn super::Pages> = Arc::new(RedisPages {
                cfg: self.cfg.clone(),
                conn: Mutex::new(None),
                list: f.clone(),
                key: key.clone(),
                total: taken,
                page,
                id_key: fid.clone(),
                id: id.to_string(),
            });
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

/// Reads the records at `from..from + n` of the list `list` (of `key`), in pages:
/// Redis answers nothing else while it builds a reply, and one LRANGE of 350k 1 KB
/// records took it 471 ms. Decoding page by page also keeps at most one page of raw
/// bytes in memory next to the records. Records that cannot be decoded come back as
/// dead letters, named by their place in the list.
///
/// With a `fence` (the in-flight id's key and the batch's id), each page is read in one
/// transaction with the id, and must be whole: a reader without the key's lock (the
/// writer thread of a paged batch) then fails rather than read another batch's records,
/// should its node have lost the lock and another node written and acknowledged the
/// batch meanwhile.
fn read_range(
    conn: &mut RedisConn,
    (list, key): (&str, &PartitionKey),
    fence: Option<(&str, &str)>,
    from: usize,
    n: usize,
) -> Result<(Vec<Record>, Vec<DlqEntry>), BufferError> {
    let (mut records, mut bad) = (Vec::with_capacity(n.min(READ_PAGE)), Vec::new());
    let (mut start, end) = (from, from + n);
    while start < end {
        let last = (start + READ_PAGE).min(end) - 1;
        let raw: Vec<Vec<u8>> = match fence {
            None => conn
                .with(|c| redis::cmd("LRANGE").arg(list).arg(start).arg(last).query(c))
                .map_err(|e| classify(&e))?,
            Some((id_key, id)) => {
                let (now, raw): (Option<String>, Vec<Vec<u8>>) = conn
                    .with(|c| {
                        redis::pipe()
                            .atomic()
                            .cmd("GET")
                            .arg(id_key)
                            .cmd("LRANGE")
                            .arg(list)
                            .arg(start)
                            .arg(last)
                            .query(c)
                    })
                    .map_err(|e| classify(&e))?;
                if now.as_deref() != Some(id) || raw.len() != last + 1 - start {
                    return Err(BufferError::Unavailable(format!(
                        "batch {id} of {key} is no longer in flight in {list}: another node took it over"
                    )));
                }
                raw
            }
        };
        if raw.is_empty() {
            break;
        }
        for (j, r) in raw.iter().enumerate() {
            match Record::decode(r) {
                Ok(rec) => records.push(rec),
                Err(e) => {
                    let mut entry = DlqEntry::new(
                        format!("{list}[{}]", start + j),
                        format!("cannot decode a buffered record: {e}"),
                        r,
                    );
                    entry.key = Some(key.to_string());
                    bad.push(entry);
                }
            }
        }
        start += raw.len();
    }
    Ok((records, bad))
}

/// A batch's in-flight list, read by the writer thread over a connection of its own.
/// It reads without the key's lock, so each read is fenced by the batch's in-flight
/// id (see [`read_range`]).
struct RedisPages {
    cfg: RedisConfig,
    conn: Mutex<Option<RedisConn>>,
    list: String,
    key: PartitionKey,
    total: usize,
    /// Records per read ([`records_per_page`]).
    page: usize,
    /// The in-flight id's key, and the batch's id: what each read is fenced by.
    id_key: String,
    id: String,
}

impl std::fmt::Debug for RedisPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisPages({}, {} records)", self.list, self.total)
    }
}

impl super::Pages for RedisPages {
    fn total(&self) -> usize {
        self.total
    }

    fn page(&self) -> usize {
        self.page
    }

    fn read(&self, from: usize, n: usize) -> Result<(Vec<Record>, Vec<DlqEntry>), BufferError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match &mut *guard {
            Some(c) => c,
            None => guard.insert(RedisConn::new(&self.cfg).map_err(|e| classify(&e))?),
        };
        let n = n.min(self.total.saturating_sub(from));
        let fence = (self.id_key.as_str(), self.id.as_str());
        read_range(conn, (&self.list, &self.key), Some(fence), from, n)
    }
}

/// How long a push marker lives if its push is never settled (its retry never came).
const MARKER_TTL: Duration = Duration::from_secs(24 * 3600);

/// Unsettled submissions remembered at most; the oldest is forgotten first.
const UNSETTLED_MAX: usize = 4096;

/// Markers queued for deletion at most, per pusher.
const FORGET_MAX: usize = 256;

/// A submission whose push failed after it may have been sent.
#[derive(Clone)]
struct Attempts {
    /// The push id, kept by every retry.
    id: String,
    /// The connections each failed attempt went out on, to be killed before a retry.
    conns: Vec<ClientIdentity>,
    since: Instant,
}

/// Unsettled submissions by fingerprint, shared by every pusher of a buffer (a retried
/// chunk may come in on another thread). Only failed pushes are remembered, so the
/// happy path hashes nothing.
#[derive(Default)]
struct Unsettled {
    by_print: HashMap<u64, Attempts>,
}

impl Unsettled {
    fn failed(&mut self, print: u64, id: &str, conn: Option<ClientIdentity>, now: Instant) {
        self.by_print
            .retain(|_, a| now.duration_since(a.since) < MARKER_TTL);
        if self.by_print.len() >= UNSETTLED_MAX
            && !self.by_print.contains_key(&print)
            && let Some(oldest) = self
                .by_print
                .iter()
                .min_by_key(|(_, a)| a.since)
                .map(|(k, _)| *k)
        {
            self.by_print.remove(&oldest);
        }
        let a = self.by_print.entry(print).or_insert_with(|| Attempts {
            id: id.to_string(),
            conns: Vec::new(),
            since: now,
        });
        a.conns.extend(conn);
    }
}

/// Stores submissions, for one connection's user.
struct GroupPusher {
    cfg: RedisConfig,
    unsettled: Arc<Mutex<Unsettled>>,
    /// The keys Redis holds, for `BufferMaxKeys`; shared by the node's pushers and
    /// refreshed by its sweeps.
    census: Arc<Mutex<KeyCensus>>,
    /// Markers of pushes that were acknowledged, deleted with the next push: only an
    /// unsettled push needs its marker.
    forget: Vec<String>,
    buf: Vec<u8>,
}

impl GroupPusher {
    fn new(
        cfg: &RedisConfig,
        unsettled: Arc<Mutex<Unsettled>>,
        census: Arc<Mutex<KeyCensus>>,
    ) -> GroupPusher {
        GroupPusher {
            cfg: cfg.clone(),
            unsettled,
            census,
            forget: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Unsettled> {
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn census(&self) -> std::sync::MutexGuard<'_, KeyCensus> {
        self.census.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a push whose new keys would pass `BufferMaxKeys`, reading the keys set
    /// again when the count kept here says so.
    fn admit(
        &self,
        conn: &mut RedisConn,
        groups: &Groups,
        names: &Names,
    ) -> Result<(), BufferError> {
        let read = || {
            conn.with(|c| {
                redis::cmd("SMEMBERS")
                    .arg(names.keys())
                    .query::<Vec<String>>(c)
            })
        };
        self.census()
            .admit(groups, Instant::now(), read)
            .map_err(|e| classify(&e))?
    }

    /// Stores every group and returns each key's length after the push; or answers why
    /// not, in which case a retry of the same submission settles what happened.
    fn push(
        &mut self,
        conn: &mut RedisConn,
        groups: &Groups,
        seal: Option<&Seal>,
    ) -> Result<Vec<(PartitionKey, usize)>, BufferError> {
        let any = !self.known().by_print.is_empty();
        let print = any.then(|| fingerprint(groups, &mut self.buf));
        // A retry: the fingerprint and the failed attempts it settles.
        let retry = print.and_then(|p| self.known().by_print.get(&p).cloned().map(|a| (p, a)));
        let id = match &retry {
            Some((_, a)) => a.id.clone(),
            None => Ulid::generate().to_string(),
        };
        let names = Names::new(&self.cfg);
        let marker = names.push_marker(&id);
        if let Some((p, a)) = &retry {
            let stored = settle(conn, a, &marker, groups, &names).map_err(|e| classify(&e))?;
            if let Some(lens) = stored {
                // Stored by an earlier attempt, whose seal may have been another
                // request's (the same records under another idempotency key): this
                // submission's answer is written now.
                if let Some(seal) = seal {
                    conn.with(|c| seal.command().query::<()>(c))
                        .map_err(|e| classify(&e))?;
                }
                self.known().by_print.remove(p);
                self.forget_marker(marker);
                self.census().pushed(groups);
                return Ok(lens);
            }
        }
        self.admit(conn, groups, &names)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SET")
            .arg(&marker)
            .arg(1)
            .arg("PX")
            .arg(MARKER_TTL.as_millis() as u64)
            .ignore();
        for (k, recs) in groups {
            let mut cmd = redis::cmd("RPUSH");
            cmd.arg(names.data(k));
            for r in recs {
                self.buf.clear();
                r.encode(&mut self.buf);
                cmd.arg(&self.buf[..]);
            }
            pipe.add_command(cmd);
            pipe.cmd("SADD").arg(names.keys()).arg(k.as_str()).ignore();
        }
        if let Some(seal) = seal {
            pipe.add_command(seal.command()).ignore();
        }
        if !self.forget.is_empty() {
            pipe.cmd("DEL").arg(&self.forget).ignore();
        }
        // Dial first: a push that never got a connection was never sent.
        conn.get().map_err(|e| classify(&e))?;
        let sent_on = conn.identity();
        match conn.with(|c| pipe.query::<Vec<usize>>(c)) {
            Ok(lens) => {
                self.census().pushed(groups);
                self.forget.clear();
                self.forget.push(marker);
                if let Some((p, _)) = &retry {
                    self.known().by_print.remove(p);
                }
                Ok(groups.iter().map(|(k, _)| k.clone()).zip(lens).collect())
            }
            Err(e) if is_transport(&e) => {
                let print = print.unwrap_or_else(|| fingerprint(groups, &mut self.buf));
                self.known().failed(print, &id, sent_on, Instant::now());
                Err(classify(&e))
            }
            Err(e) => {
                // Redis answered with an error: the push ran in part (a command failed
                // inside EXEC, e.g. WRONGTYPE) or not at all. Either way its marker must
                // not pass the retry off as stored: the retry is a new push.
                if let Some((p, _)) = &retry {
                    self.known().by_print.remove(p);
                }
                self.forget_marker(marker);
                Err(classify(&e))
            }
        }
    }

    /// Queues a marker for deletion with the next push. While pushes keep failing the
    /// queue is capped, the oldest left to their TTL.
    fn forget_marker(&mut self, marker: String) {
        if self.forget.len() >= FORGET_MAX {
            self.forget.remove(0);
        }
        self.forget.push(marker);
    }

    /// Deletes the markers of acknowledged receives now, rather than with a next push.
    fn delete_markers(&mut self, conn: &mut RedisConn) {
        if self.forget.is_empty() {
            return;
        }
        let forget = &self.forget;
        if conn
            .with(|c| redis::cmd("DEL").arg(forget).query::<i64>(c))
            .is_ok()
        {
            self.forget.clear();
        }
    }
}

/// Settles an unsettled submission before its retry: kills the connections its failed
/// attempts went out on, so none of them can still run, then reads its marker. Returns
/// the keys' lengths if it was stored, `None` if it was not (and now never will be).
fn settle(
    conn: &mut RedisConn,
    attempts: &Attempts,
    marker: &str,
    groups: &Groups,
    names: &Names<'_>,
) -> Result<Option<Vec<(PartitionKey, usize)>>, RedisError> {
    for who in &attempts.conns {
        let mut kill = redis::cmd("CLIENT");
        kill.arg("KILL").arg("ID").arg(who.id);
        if let Some(addr) = &who.addr {
            kill.arg("ADDR").arg(addr);
        }
        match conn.with(|c| kill.query::<i64>(c)) {
            Ok(_) => {}
            Err(e) if is_transport(&e) => return Err(e),
            // CLIENT refused (an ACL): the fence is best effort then; the marker still
            // catches every attempt that ran before now.
            Err(_) => {}
        }
    }
    let mut pipe = redis::pipe();
    pipe.cmd("EXISTS").arg(marker);
    for (k, _) in groups {
        pipe.cmd("LLEN").arg(names.data(k));
    }
    let out: Vec<usize> = conn.with(|c| pipe.query(c))?;
    Ok(match out.split_first() {
        Some((1.., lens)) => Some(
            groups
                .iter()
                .map(|(k, _)| k.clone())
                .zip(lens.iter().copied())
                .collect(),
        ),
        _ => None,
    })
}

/// Identifies a submission by its keys and encoded records: a retried chunk decodes to
/// the same records, hence the same fingerprint.
fn fingerprint(groups: &Groups, buf: &mut Vec<u8>) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    for (k, recs) in groups {
        h.write(k.as_str().as_bytes());
        h.write_usize(recs.len());
        for r in recs {
            buf.clear();
            r.encode(buf);
            h.write_usize(buf.len());
            h.write(buf);
        }
    }
    h.finish()
}

/// A producer thread's own connection for direct pushes.
struct RedisPusher {
    conn: Option<RedisConn>,
    cfg: RedisConfig,
    pusher: GroupPusher,
}

impl Pusher for RedisPusher {
    fn push(
        &mut self,
        groups: &Groups,
        seal: Option<&Seal>,
    ) -> Result<Vec<(PartitionKey, usize)>, BufferError> {
        if self.conn.is_none() {
            self.conn = Some(RedisConn::new(&self.cfg).map_err(|e| classify(&e))?);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| BufferError::Unavailable("no Redis connection".into()))?;
        self.pusher.push(conn, groups, seal)
    }

    fn close(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            self.pusher.delete_markers(conn);
        }
    }
}

/// Appends dead letters to their lists, each list up to a size. The size is what
/// `MEMORY USAGE` estimates (from a sample of the list's entries, so it costs the same
/// for any length); a server without the command (an error inside `pcall`) gets no
/// limit rather than no DLQ.
const DLQ_PUSH: &str = r#"
-- KEYS: one list per entry; ARGV: max bytes (0 = no limit), then one entry per key
local max = tonumber(ARGV[1])
local kept = 0
for i, key in ipairs(KEYS) do
  local entry = ARGV[i + 1]
  local used = 0
  if max > 0 then
    local ok, n = pcall(redis.call, 'MEMORY', 'USAGE', key)
    if ok and n then used = n end
  end
  if max == 0 or used + #entry <= max then
    redis.call('RPUSH', key, entry)
    kept = kept + 1
  end
end
return kept
"#;

/// The Redis dead-letter queue: one list per key, `<RedisDLQPrefix>:<key>`, of JSON
/// entries; records without a key go to `<RedisDLQPrefix>:_unkeyed`. Each list holds
/// at most `DLQMaxBytes` (see `DLQ_PUSH`).
pub struct RedisDlq {
    conn: Mutex<RedisConn>,
    cfg: RedisConfig,
    /// Most bytes per list (0: no limit).
    max_bytes: u64,
    script: Script,
}

impl RedisDlq {
    pub fn new(cfg: &RedisConfig, max_bytes: u64) -> Result<RedisDlq, BufferError> {
        Ok(RedisDlq {
            conn: Mutex::new(
                RedisConn::new(cfg).map_err(|e| BufferError::Unavailable(e.to_string()))?,
            ),
            cfg: cfg.clone(),
            max_bytes,
            script: Script::new(DLQ_PUSH),
        })
    }
}

impl DlqSink for RedisDlq {
    fn push(&self, entries: &[DlqEntry]) -> Result<usize, DlqError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let names = Names::new(&self.cfg);
        let mut call = self.script.prepare_invoke();
        call.arg(self.max_bytes);
        for e in entries {
            call.key(names.dlq(e.key.as_deref().unwrap_or("_unkeyed")))
                .arg(e.to_json());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.with(|c| call.invoke::<usize>(c))
            .map_err(|e| DlqError {
                path: format!("redis {}", self.describe()),
                source: std::io::Error::other(e.to_string()),
            })
    }

    fn describe(&self) -> String {
        format!("{}:<key> lists", self.cfg.dlq_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's key names by default (`upstream.md` §10), and each prefix key renames
    /// its own keys only.
    #[test]
    fn key_names_follow_upstream_and_their_prefix_keys() {
        let names_of = |kv: &[(&str, &str)]| {
            let mut b = crate::config::ConfigBuilder::new();
            b.set("BufferType", "redis").unwrap();
            b.set("RedisHost", "127.0.0.1:6379").unwrap();
            b.set_all(kv).unwrap();
            let cfg = b.build().unwrap().redis;
            let k = PartitionKey::from_text("cap:dom:svc:app");
            let n = Names::new(&cfg);
            [
                n.keys().to_string(),
                n.data(&k),
                n.lock(&k),
                n.dlq("cap:dom:svc:app"),
                n.recovery(&k),
            ]
        };
        assert_eq!(
            names_of(&[]),
            [
                "keys",
                "data:cap:dom:svc:app",
                "lock:cap:dom:svc:app",
                "dlq:cap:dom:svc:app",
                "recovery:cap:dom:svc:app"
            ]
        );
        assert_eq!(
            names_of(&[
                ("RedisKeys", "k2"),
                ("RedisDataPrefix", "d2"),
                ("RedisLockPrefix", "l2"),
                ("RedisDLQPrefix", "q2"),
                ("RedisRecoveryKey", "r2"),
            ]),
            [
                "k2",
                "d2:cap:dom:svc:app",
                "l2:cap:dom:svc:app",
                "q2:cap:dom:svc:app",
                "r2:cap:dom:svc:app"
            ]
        );
    }

    fn who(id: u64) -> Option<ClientIdentity> {
        Some(ClientIdentity { id, addr: None })
    }

    #[test]
    fn unsettled_pushes_keep_their_id_and_every_connection() {
        let mut u = Unsettled::default();
        let t = Instant::now();
        u.failed(7, "first", who(1), t);
        u.failed(7, "second", who(2), t);
        u.failed(7, "third", None, t);
        let a = &u.by_print[&7];
        assert_eq!(a.id, "first");
        assert_eq!(a.conns, [who(1).unwrap(), who(2).unwrap()]);
    }

    /// Pages hold about 16 MiB of stored records, and at most 10,000 of them.
    #[test]
    fn pages_are_bounded_by_bytes_and_by_records() {
        use super::records_per_page as per;
        let mib = 1u64 << 20;
        assert_eq!(per(300, Some(60 * mib)), 80, "records of 200 KiB");
        assert_eq!(
            per(1_000_000, Some(1_000 * mib)),
            10_000,
            "records of 1 KiB"
        );
        assert_eq!(
            per(50, Some(500 * mib)),
            1,
            "records of 10 MiB: one at a time"
        );
        assert_eq!(per(50, None), 10_000, "Redis did not say");
        assert_eq!(per(50, Some(0)), 10_000);
    }

    #[test]
    fn unsettled_pushes_are_bounded_in_number_and_age() {
        let mut u = Unsettled::default();
        let t = Instant::now();
        for i in 0..UNSETTLED_MAX as u64 {
            u.failed(i, "id", None, t + Duration::from_millis(i));
        }
        u.failed(u64::MAX, "id", None, t + Duration::from_secs(10));
        assert_eq!(u.by_print.len(), UNSETTLED_MAX);
        assert!(!u.by_print.contains_key(&0), "the oldest went first");
        u.failed(1, "id", None, t + MARKER_TTL + Duration::from_secs(11));
        assert_eq!(u.by_print.len(), 1, "all but the newest had expired");
    }
}
