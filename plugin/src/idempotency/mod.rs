//! Idempotency keys for request-based ingest (the HTTP server's `Idempotency-Key`).
//!
//! A client whose reply was lost (a timeout, a dropped connection, a server restart)
//! cannot know whether its records were stored: resending them risks duplicates, giving
//! up risks loss. With a key, a resend gets the first answer again and nothing is stored
//! twice. A store remembers, per key, a fingerprint of the request and the answer it was
//! given, for `HttpIdempotencyTtl`:
//! - [`mem::MemStore`] in this process, as the mem buffer keeps its records;
//! - [`redis::RedisStore`] in Redis, shared by every node behind a load balancer. Its
//!   answer is written in the same MULTI as the records (a [`Seal`]), so records and
//!   answer are stored together or not at all, and a resend after a lost reply finds
//!   the answer exactly when the records are there.
//!
//! The protocol for one request, whatever the store:
//! 1. [`IdempotencyStore::begin`] claims the key ([`Begin::Fresh`]), or says it was
//!    answered before ([`Begin::Replay`]), is being processed now
//!    ([`Begin::InProgress`]), or was used for another request ([`Begin::Mismatch`]);
//! 2. the request is decoded and its records are submitted, with
//!    [`IdempotencyStore::seal`] riding along when the store can;
//! 3. once stored, [`IdempotencyStore::finish`] keeps the answer; if nothing was
//!    stored, [`IdempotencyStore::abandon`] frees the key for a retry. A submission whose
//!    fate is unknown (a lost Redis reply) does neither: the claim expires after
//!    `HttpRequestTimeout`, and by then a sealed answer is there if the records are.

pub mod mem;
pub mod redis;

use crate::config::{BufferType, Config};
use std::time::Duration;

/// The longest key accepted, as in the IETF draft's examples and Stripe's API.
pub const MAX_KEY_LEN: usize = 255;

/// A request's fingerprint: a 128-bit XXH3 of what makes it this request (route,
/// content type, body), so a key reused for another request is told apart from a
/// resend. Not a cryptographic hash: a client can only confuse its own key, and XXH3
/// (a published algorithm, so every node and version agrees) costs a tenth of a
/// millisecond per megabyte of body where SHA-256 costs half a millisecond.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Print(pub [u8; 16]);

impl Print {
    pub fn of(parts: &[&[u8]]) -> Print {
        let mut h = twox_hash::xxhash3_128::Hasher::new();
        for p in parts {
            // Lengths first, so ("ab", "c") and ("a", "bc") differ.
            h.write(&(p.len() as u64).to_le_bytes());
            h.write(p);
        }
        Print(h.finish_128().to_le_bytes())
    }

    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The answer given to a request, given again to its resends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub body: String,
}

/// What to do with a request whose key was checked in.
#[derive(Debug)]
pub enum Begin {
    /// First sight of the key: process the request, then finish or abandon the ticket.
    Fresh(Ticket),
    /// Answered before, for the same request: answer this again, store nothing.
    Replay(Outcome),
    /// The same request is being processed right now (HTTP 409).
    InProgress,
    /// The key was used for a different request (HTTP 422).
    Mismatch,
}

/// A claim on a key while its request is processed.
#[derive(Debug)]
pub struct Ticket {
    /// The key as the store files it.
    slot: String,
    print: Print,
    /// Tells this claim from a later one on the same key, so a late `abandon` or
    /// `finish` never touches a claim it does not own.
    token: String,
}

/// A write for the buffer to run atomically with the records' push: the key's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub key: String,
    pub value: String,
    pub ttl: Duration,
}

impl Seal {
    /// Its Redis `SET`.
    pub fn command(&self) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&self.key)
            .arg(&self.value)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64);
        cmd
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    /// The store could not be asked (Redis down): retryable, HTTP 503.
    #[error("idempotency store unavailable: {0}")]
    Unavailable(String),
    /// The store holds something this version cannot read.
    #[error("idempotency store holds an unreadable entry for this key: {0}")]
    Corrupt(String),
}

pub trait IdempotencyStore: Send + Sync {
    /// Checks a key in; see [`Begin`].
    fn begin(&self, key: &str, print: Print) -> Result<Begin, IdempotencyError>;

    /// The write to bundle with the records' push, if this store's answers live next to
    /// the records (Redis).
    fn seal(&self, _ticket: &Ticket, _outcome: &Outcome) -> Option<Seal> {
        None
    }

    /// The request was processed: keep its answer. `sealed` says the buffer already
    /// stored it with the records.
    fn finish(
        &self,
        ticket: Ticket,
        outcome: &Outcome,
        sealed: bool,
    ) -> Result<(), IdempotencyError>;

    /// Nothing was stored: free the key, so a retry is processed afresh.
    fn abandon(&self, ticket: Ticket);
}

/// Checks a client's key: 1 to 255 visible ASCII characters. A Structured Field string
/// (`"abc"`, as the IETF draft writes it) is taken without its quotes.
pub fn validate_key(raw: &str) -> Result<&str, String> {
    let k = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    if k.is_empty() || k.len() > MAX_KEY_LEN {
        return Err(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters, not {}",
            k.len()
        ));
    }
    if let Some(c) = k.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
        return Err(format!(
            "Idempotency-Key may hold only visible ASCII characters, not byte {c:#04x}"
        ));
    }
    Ok(k)
}

/// The store that goes with the configured buffer: answers live where records do.
pub fn store_for(cfg: &Config) -> Box<dyn IdempotencyStore> {
    let pending = cfg.http_request_timeout + Duration::from_secs(5);
    match cfg.buffer_type {
        BufferType::Mem => Box::new(mem::MemStore::new(cfg.http_idempotency_ttl, pending)),
        BufferType::Redis => Box::new(redis::RedisStore::new(
            &cfg.redis,
            cfg.http_idempotency_ttl,
            pending,
            cfg.buffer_full_wait,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(validate_key("abc-123"), Ok("abc-123"));
        assert_eq!(validate_key("\"quoted\""), Ok("quoted"));
        assert!(validate_key("").unwrap_err().contains("1 to 255"));
        assert!(validate_key("\"\"").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key("a b").unwrap_err().contains("0x20"));
        assert!(validate_key("é").is_err());
    }

    #[test]
    fn prints_tell_part_boundaries_apart() {
        assert_eq!(Print::of(&[b"ab", b"c"]), Print::of(&[b"ab", b"c"]));
        assert_ne!(Print::of(&[b"ab", b"c"]), Print::of(&[b"a", b"bc"]));
        assert_eq!(Print::of(&[b""]).hex().len(), 32);
    }

    /// Prints are kept (in Redis, across restarts and upgrades) and compared with
    /// those of resends, so the function must not change: pinned for a short part and
    /// for a long one, which takes XXH3's SIMD path where the CPU has one. The values
    /// agree with the reference XXH3 (Python's `xxhash`) over the same bytes.
    #[test]
    fn prints_are_stable() {
        let long: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let got = [
            Print::of(&[b"/records", b"application/x-ndjson", b"{}"]).hex(),
            Print::of(&[b"/records", &long]).hex(),
        ];
        assert_eq!(
            got,
            [
                "1eaf5e60f642fdc2851153896b29b743",
                "2e359bd83648969a7e54ff24b8dcd883"
            ]
        );
    }
}
