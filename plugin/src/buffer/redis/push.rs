//! The receive path: storing submissions in one MULTI each, and settling a submission
//! whose reply was lost before its retry, so that a retry never stores a chunk twice.

use super::{Names, classify};
use crate::buffer::key_census::KeyCensus;
use crate::buffer::{BufferError, Groups, Pusher};
use crate::config::RedisConfig;
use crate::idempotency::Seal;
use crate::partition::PartitionKey;
use crate::redis_conn::{ClientIdentity, RedisConn, is_transport};
use redis::RedisError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ulid::Ulid;

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
pub(super) struct Unsettled {
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
pub(super) struct GroupPusher {
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
    pub(super) fn new(
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

    /// A pusher for another thread, sharing this one's unsettled submissions (a
    /// retried chunk may come in on any thread) and its count of keys.
    pub(super) fn share(&self) -> GroupPusher {
        GroupPusher::new(&self.cfg, self.unsettled.clone(), self.census.clone())
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Unsettled> {
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn census(&self) -> std::sync::MutexGuard<'_, KeyCensus> {
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
    pub(super) fn push(
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
    pub(super) fn delete_markers(&mut self, conn: &mut RedisConn) {
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
pub(super) struct RedisPusher {
    conn: Option<RedisConn>,
    cfg: RedisConfig,
    pusher: GroupPusher,
}

impl RedisPusher {
    /// A producer thread's pusher; it dials now, and again at its first push if
    /// Redis did not answer.
    pub(super) fn new(pusher: GroupPusher) -> RedisPusher {
        RedisPusher {
            conn: RedisConn::new(&pusher.cfg).ok(),
            cfg: pusher.cfg.clone(),
            pusher,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
