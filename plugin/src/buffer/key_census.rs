//! `BufferMaxKeys` for the shared (Redis) buffer: which partition keys the store holds,
//! as this node last read them, plus the keys it pushed since.
//!
//! Reading the keys set on every push would cost each push a round trip, so the count
//! is kept here and read again only when it says a push would pass the limit. Between
//! reads other nodes may add keys this node does not see, so nodes together may pass
//! the limit by what they add in that time: the limit guards against a partition field
//! with a value per record, where the count runs far past it, not against one key more.

use super::{BufferError, Groups, key_limit};
use crate::partition::PartitionKey;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// How old the last reading may be before a refusal reads the set again. Producers
/// retry a refused push within `BufferFullWait`, so this bounds the reads a full
/// buffer costs Redis.
pub const REREAD_AFTER: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub struct KeyCensus {
    max: Option<NonZeroUsize>,
    keys: HashSet<String>,
    read_at: Option<Instant>,
}

impl KeyCensus {
    pub fn new(max: Option<NonZeroUsize>) -> Self {
        KeyCensus {
            max,
            ..KeyCensus::default()
        }
    }

    /// Whether `groups` may be pushed. When the count says no and was not read within
    /// [`REREAD_AFTER`], `read` fetches the store's keys and the count is redone on
    /// them. The outer error is the read's.
    pub fn admit<E>(
        &mut self,
        groups: &Groups,
        now: Instant,
        read: impl FnOnce() -> Result<Vec<String>, E>,
    ) -> Result<Result<(), BufferError>, E> {
        let verdict = self.count(groups);
        if verdict.is_ok() || self.read_at.is_some_and(|t| now - t < REREAD_AFTER) {
            return Ok(verdict);
        }
        self.replace(read()?, now);
        Ok(self.count(groups))
    }

    fn count(&self, groups: &Groups) -> Result<(), BufferError> {
        let held = |k: &PartitionKey| self.keys.contains(k.as_str());
        key_limit(self.keys.len(), groups, self.max, held)
    }

    /// `groups` were stored: their keys are held now.
    pub fn pushed(&mut self, groups: &Groups) {
        if self.max.is_none() {
            return;
        }
        for (k, _) in groups {
            if !self.keys.contains(k.as_str()) {
                self.keys.insert(k.as_str().to_string());
            }
        }
    }

    /// A fresh reading of the store's keys (a push's, or a sweep's).
    pub fn replace(&mut self, keys: impl IntoIterator<Item = String>, now: Instant) {
        if self.max.is_none() {
            return;
        }
        self.keys.clear();
        self.keys.extend(keys);
        self.read_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(names: &[&str]) -> Groups {
        names
            .iter()
            .map(|n| (PartitionKey::from_text(n), Vec::new()))
            .collect()
    }

    fn set(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_refusal_reads_the_keys_again_at_most_every_reread_after() {
        let mut c = KeyCensus::new(NonZeroUsize::new(2));
        let t0 = Instant::now();
        let never = || -> Result<Vec<String>, ()> { panic!("no read expected") };
        // Under the limit by the local count: no read.
        c.admit(&groups(&["a", "b"]), t0, never).unwrap().unwrap();
        c.pushed(&groups(&["a", "b"]));
        // Over it: the set is read, and still holds both keys.
        let mut reads = 0;
        let v = c.admit(&groups(&["c"]), t0, || {
            reads += 1;
            Ok::<_, ()>(set(&["a", "b"]))
        });
        assert!(
            matches!(v, Ok(Err(BufferError::TooManyKeys(ref w))) if w.contains("BufferMaxKeys=2"))
        );
        assert_eq!(reads, 1);
        // Refused again at once, without a read; a held key is still taken.
        assert!(c.admit(&groups(&["c"]), t0, never).unwrap().is_err());
        c.admit(&groups(&["b"]), t0, never).unwrap().unwrap();
        // Later, another node's flush has drained `a`: the read lets `c` in.
        let later = t0 + REREAD_AFTER;
        c.admit(&groups(&["c"]), later, || Ok::<_, ()>(set(&["b"])))
            .unwrap()
            .unwrap();
        // A failed read is the caller's error.
        c.pushed(&groups(&["c"]));
        let much_later = later + REREAD_AFTER;
        assert_eq!(
            c.admit(&groups(&["d"]), much_later, || Err("down")),
            Err("down")
        );
    }

    #[test]
    fn an_empty_store_takes_any_push_and_no_limit_counts_nothing() {
        let mut c = KeyCensus::new(NonZeroUsize::new(1));
        let many = groups(&["a", "b", "c"]);
        c.admit(&many, Instant::now(), || Ok::<_, ()>(Vec::new()))
            .unwrap()
            .unwrap();
        let mut free = KeyCensus::new(None);
        free.pushed(&many);
        assert!(free.keys.is_empty(), "nothing is counted without a limit");
        free.admit(&many, Instant::now(), || -> Result<Vec<String>, ()> {
            panic!("no read without a limit")
        })
        .unwrap()
        .unwrap();
    }
}
