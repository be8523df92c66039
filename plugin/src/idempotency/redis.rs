//! Answers kept in Redis, for the Redis buffer: shared by every node, so a resend that a
//! load balancer sends elsewhere is still recognised, and written with the records (see
//! the module above).
//!
//! One string per key, `<RedisDataPrefix>-idem:<sha256 of the key>` (hashed, so any
//! client key makes a tidy Redis key), holding `P <print> <token>` while a node
//! processes the request and `D <print> <status> <body>` once it was answered.

use super::{Begin, IdempotencyError, IdempotencyStore, Outcome, Print, Seal, Ticket, hex};
use crate::buffer::redis::{Names, classify};
use crate::config::RedisConfig;
use crate::receiver::{RETRY_PAUSE_FIRST, RETRY_PAUSE_MAX};
use crate::redis_conn::RedisConn;
use redis::{RedisError, Script};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Deletes a claim only if it is still the one this node made.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

pub struct RedisStore {
    cfg: RedisConfig,
    ttl: Duration,
    pending_ttl: Duration,
    /// BufferFullWait: how long a Redis restart is ridden out, as pushes do.
    wait: Duration,
    /// Idle connections; a request takes one for its few commands.
    conns: Mutex<Vec<RedisConn>>,
    release: Script,
}

enum Stored {
    Pending(Print),
    Done(Print, Outcome),
}

fn parse_print(s: &str) -> Option<Print> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Print(out))
}

fn parse(v: &str) -> Option<Stored> {
    let mut it = v.splitn(4, ' ');
    let (kind, print) = (it.next()?, parse_print(it.next()?)?);
    match kind {
        "P" => Some(Stored::Pending(print)),
        "D" => {
            let status = it.next()?.parse().ok()?;
            let body = it.next().unwrap_or("").to_string();
            Some(Stored::Done(print, Outcome { status, body }))
        }
        _ => None,
    }
}

fn unavailable(e: RedisError) -> IdempotencyError {
    IdempotencyError::Unavailable(format!("Redis: {e}"))
}

impl RedisStore {
    pub fn new(
        cfg: &RedisConfig,
        ttl: Duration,
        pending_ttl: Duration,
        wait: Duration,
    ) -> RedisStore {
        RedisStore {
            cfg: cfg.clone(),
            ttl,
            pending_ttl,
            wait,
            conns: Mutex::new(Vec::new()),
            release: Script::new(RELEASE),
        }
    }

    /// Runs `f` on a pooled connection (a new one if none is idle). A failure that may
    /// pass (Redis restarting or loading) is retried within BufferFullWait, as the
    /// records' own push is: the key must not turn a ridden-out outage into a 503.
    fn with<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        let give_up = Instant::now() + self.wait;
        let mut pause = RETRY_PAUSE_FIRST;
        loop {
            let idle = self.conns.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut c = match idle {
                Some(c) => c,
                None => RedisConn::new(&self.cfg)?,
            };
            let r = c.with(&mut f);
            self.conns.lock().unwrap_or_else(|p| p.into_inner()).push(c);
            let now = Instant::now();
            match r {
                Err(e) if classify(&e).transient() && now < give_up => {
                    std::thread::sleep(pause.min(give_up - now));
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                }
                r => return r,
            }
        }
    }

    fn slot(&self, key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        Names::new(&self.cfg).idempotency(&hex(&digest))
    }

    fn done_value(ticket: &Ticket, o: &Outcome) -> String {
        format!("D {} {} {}", ticket.print.hex(), o.status, o.body)
    }

    /// The write that keeps a ticket's answer for HttpIdempotencyTtl.
    fn answer(&self, ticket: &Ticket, outcome: &Outcome) -> Seal {
        Seal {
            key: ticket.slot.clone(),
            value: RedisStore::done_value(ticket, outcome),
            ttl: self.ttl,
        }
    }

    fn pending_value(ticket: &Ticket) -> String {
        format!("P {} {}", ticket.print.hex(), ticket.token)
    }
}

impl IdempotencyStore for RedisStore {
    fn begin(&self, key: &str, print: Print) -> Result<Begin, IdempotencyError> {
        let ticket = Ticket {
            slot: self.slot(key),
            print,
            token: ulid::Ulid::generate().to_string(),
        };
        let claim = RedisStore::pending_value(&ticket);
        let px = self.pending_ttl.as_millis() as u64;
        // Claimed, or read what is there; twice, in case what was there just expired.
        for _ in 0..2 {
            let (claimed, current): (Option<String>, Option<String>) = self
                .with(|c| {
                    let mut p = redis::pipe();
                    p.cmd("SET")
                        .arg(&ticket.slot)
                        .arg(&claim)
                        .arg("NX")
                        .arg("PX")
                        .arg(px);
                    p.cmd("GET").arg(&ticket.slot);
                    p.query(c)
                })
                .map_err(unavailable)?;
            if claimed.is_some() {
                return Ok(Begin::Fresh(ticket));
            }
            let Some(v) = current else { continue };
            return match parse(&v) {
                Some(Stored::Pending(p) | Stored::Done(p, _)) if p != print => Ok(Begin::Mismatch),
                Some(Stored::Pending(_)) => Ok(Begin::InProgress),
                Some(Stored::Done(_, o)) => Ok(Begin::Replay(o)),
                None => Err(IdempotencyError::Corrupt(ticket.slot)),
            };
        }
        Err(IdempotencyError::Unavailable(
            "the key's entry kept changing".into(),
        ))
    }

    fn seal(&self, ticket: &Ticket, outcome: &Outcome) -> Option<Seal> {
        Some(self.answer(ticket, outcome))
    }

    fn finish(
        &self,
        ticket: Ticket,
        outcome: &Outcome,
        sealed: bool,
    ) -> Result<(), IdempotencyError> {
        if sealed {
            return Ok(());
        }
        let seal = self.answer(&ticket, outcome);
        self.with(|c| seal.command().query::<()>(c))
            .map_err(unavailable)
    }

    fn abandon(&self, ticket: Ticket) {
        let claim = RedisStore::pending_value(&ticket);
        // Best effort: a claim left behind expires after HttpRequestTimeout.
        let _ = self.with(|c| self.release.key(&ticket.slot).arg(&claim).invoke::<i64>(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back() {
        let t = Ticket {
            slot: "s".into(),
            print: Print::of(&[b"x"]),
            token: "tok".into(),
        };
        let o = Outcome {
            status: 200,
            body: "{\"accepted\": 1, \"note\": \"a b c\"}".into(),
        };
        match parse(&RedisStore::done_value(&t, &o)) {
            Some(Stored::Done(p, got)) => assert_eq!((p, got), (t.print, o)),
            _ => panic!("done"),
        }
        assert!(matches!(
            parse(&RedisStore::pending_value(&t)),
            Some(Stored::Pending(p)) if p == t.print
        ));
        assert!(parse("X 00").is_none());
        assert!(parse(&format!("D {} notanumber", t.print.hex())).is_none());
    }
}
