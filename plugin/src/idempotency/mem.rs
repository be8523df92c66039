//! Answers kept in this process, for the mem buffer: they live as long as its records
//! do (a restart forgets both), bounded in count and bytes so a client minting a key per
//! request cannot grow the process without end.

use super::{Begin, IdempotencyError, IdempotencyStore, Outcome, Print, Ticket};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Answers kept at most; the oldest is forgotten first.
const MAX_ENTRIES: usize = 100_000;
/// Bytes of answer bodies kept at most (answers listing many rejected lines are large).
const MAX_BYTES: usize = 64 << 20;

enum State {
    Pending { token: u64 },
    Done(Outcome),
}

struct Entry {
    print: Print,
    state: State,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Finished keys in the order they finish (hence expire), for expiry and eviction.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
    next_token: u64,
}

impl Inner {
    /// Forgets the oldest answer if `order`'s front still names it.
    fn pop_oldest(&mut self) {
        let Some((expires, key)) = self.order.pop_front() else {
            return;
        };
        let current = matches!(
            self.map.get(&key),
            Some(Entry { state: State::Done(_), expires: e, .. }) if *e == expires
        );
        if current
            && let Some(Entry {
                state: State::Done(o),
                ..
            }) = self.map.remove(&key)
        {
            self.bytes -= o.body.len();
        }
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(e, _)| *e <= now) {
            self.pop_oldest();
        }
    }
}

pub struct MemStore {
    ttl: Duration,
    pending_ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

impl MemStore {
    pub fn new(ttl: Duration, pending_ttl: Duration) -> MemStore {
        MemStore::with_limits(ttl, pending_ttl, MAX_ENTRIES, MAX_BYTES)
    }

    fn with_limits(
        ttl: Duration,
        pending_ttl: Duration,
        max_entries: usize,
        max_bytes: usize,
    ) -> MemStore {
        MemStore {
            ttl,
            pending_ttl,
            max_entries,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn token(t: &Ticket) -> u64 {
        t.token.parse().unwrap_or(u64::MAX)
    }
}

impl IdempotencyStore for MemStore {
    fn begin(&self, key: &str, print: Print) -> Result<Begin, IdempotencyError> {
        let now = Instant::now();
        let mut g = self.inner();
        g.expire(now);
        if let Some(e) = g.map.get(key).filter(|e| e.expires > now) {
            return Ok(match &e.state {
                _ if e.print != print => Begin::Mismatch,
                State::Pending { .. } => Begin::InProgress,
                State::Done(o) => Begin::Replay(o.clone()),
            });
        }
        g.next_token += 1;
        let token = g.next_token;
        // An expired answer may still be filed under the key: its bytes go with it.
        let old = g.map.insert(
            key.to_string(),
            Entry {
                print,
                state: State::Pending { token },
                expires: now + self.pending_ttl,
            },
        );
        if let Some(Entry {
            state: State::Done(o),
            ..
        }) = old
        {
            g.bytes -= o.body.len();
        }
        Ok(Begin::Fresh(Ticket {
            slot: key.to_string(),
            print,
            token: token.to_string(),
        }))
    }

    fn finish(
        &self,
        ticket: Ticket,
        outcome: &Outcome,
        _sealed: bool,
    ) -> Result<(), IdempotencyError> {
        let now = Instant::now();
        let token = MemStore::token(&ticket);
        let mut g = self.inner();
        let Some(e) = g.map.get_mut(&ticket.slot) else {
            return Ok(());
        };
        if !matches!(e.state, State::Pending { token: t } if t == token) {
            return Ok(());
        }
        let expires = now + self.ttl;
        e.state = State::Done(outcome.clone());
        e.expires = expires;
        g.bytes += outcome.body.len();
        g.order.push_back((expires, ticket.slot));
        g.expire(now);
        while g.order.len() > self.max_entries || g.bytes > self.max_bytes {
            g.pop_oldest();
        }
        Ok(())
    }

    fn abandon(&self, ticket: Ticket) {
        let token = MemStore::token(&ticket);
        let mut g = self.inner();
        if g.map
            .get(&ticket.slot)
            .is_some_and(|e| matches!(e.state, State::Pending { token: t } if t == token))
        {
            g.map.remove(&ticket.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Outcome {
        Outcome {
            status: 200,
            body: body.to_string(),
        }
    }

    fn fresh(s: &MemStore, key: &str, print: Print) -> Ticket {
        match s.begin(key, print).unwrap() {
            Begin::Fresh(t) => t,
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn a_resend_is_answered_again_and_a_reuse_is_refused() {
        let s = MemStore::new(Duration::from_secs(60), Duration::from_secs(30));
        let (a, b) = (Print::of(&[b"a"]), Print::of(&[b"b"]));
        let t = fresh(&s, "k", a);
        assert!(matches!(s.begin("k", a).unwrap(), Begin::InProgress));
        assert!(matches!(s.begin("k", b).unwrap(), Begin::Mismatch));
        s.finish(t, &ok("first"), false).unwrap();
        assert!(matches!(s.begin("k", a).unwrap(), Begin::Replay(o) if o == ok("first")));
        assert!(matches!(s.begin("k", b).unwrap(), Begin::Mismatch));
        // another key is its own
        let t2 = fresh(&s, "k2", b);
        s.abandon(t2);
        let t2 = fresh(&s, "k2", b);
        s.finish(t2, &ok("second"), false).unwrap();
        assert!(matches!(s.begin("k2", b).unwrap(), Begin::Replay(o) if o.body == "second"));
    }

    #[test]
    fn answers_and_claims_expire() {
        let s = MemStore::new(Duration::from_millis(30), Duration::from_millis(30));
        let p = Print::of(&[b"x"]);
        let stale = fresh(&s, "k", p);
        std::thread::sleep(Duration::from_millis(40));
        // the claim expired: a retry claims the key anew, and the stale ticket is void
        let t = fresh(&s, "k", p);
        s.abandon(stale);
        assert!(matches!(s.begin("k", p).unwrap(), Begin::InProgress));
        s.finish(t, &ok("x"), false).unwrap();
        assert!(matches!(s.begin("k", p).unwrap(), Begin::Replay(_)));
        std::thread::sleep(Duration::from_millis(40));
        let t = fresh(&s, "k", p);
        s.abandon(t);
        let g = s.inner();
        assert_eq!((g.map.len(), g.bytes), (0, 0));
    }

    #[test]
    fn the_oldest_answers_go_first_beyond_the_limits() {
        let s = MemStore::with_limits(Duration::from_secs(60), Duration::from_secs(60), 3, 10);
        let p = Print::of(&[b"p"]);
        for k in ["a", "b", "c", "d"] {
            let t = fresh(&s, k, p);
            s.finish(t, &ok("12"), false).unwrap();
        }
        assert!(
            matches!(s.begin("a", p).unwrap(), Begin::Fresh(_)),
            "a evicted"
        );
        assert!(matches!(s.begin("d", p).unwrap(), Begin::Replay(_)));
        // bytes: a 9-byte answer leaves room for nothing else
        let t = fresh(&s, "big", p);
        s.finish(t, &ok("123456789"), false).unwrap();
        let g = s.inner();
        assert!(g.bytes <= 10, "{}", g.bytes);
        assert!(g.map.contains_key("big"));
    }
}
