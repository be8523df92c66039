//! The in-memory buffer: fast, bounded, not durable.

use super::{Batch, BatchInfo, Buffer, BufferError, Groups, Refused, Usage, key_limit};
use crate::partition::PartitionKey;
use crate::record::Record;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

struct Pending {
    records: VecDeque<Record>,
    bytes: u64,
    /// Arrival of the oldest record still pending.
    since: Option<Instant>,
}

pub struct MemBuffer {
    /// Keys with pending records only: a key is dropped when its last record is taken,
    /// so the map's length is what `BufferMaxKeys` limits.
    keys: HashMap<PartitionKey, Pending>,
    max_bytes: u64,
    max_keys: Option<NonZeroUsize>,
    records: u64,
    bytes: u64,
}

impl MemBuffer {
    /// `max_bytes` bounds pending plus in-flight memory; beyond it `push` says Full.
    pub fn new(max_bytes: u64) -> Self {
        MemBuffer {
            keys: HashMap::new(),
            max_bytes,
            max_keys: None,
            records: 0,
            bytes: 0,
        }
    }

    /// Limits the keys with pending records (`BufferMaxKeys`); beyond it `push` says Full.
    pub fn with_max_keys(mut self, max_keys: Option<NonZeroUsize>) -> Self {
        self.max_keys = max_keys;
        self
    }
}

fn size(recs: &[Record]) -> u64 {
    recs.iter().map(|r| r.mem_size() as u64).sum()
}

impl Buffer for MemBuffer {
    fn push(&mut self, groups: Groups) -> Result<Vec<(PartitionKey, usize)>, Refused> {
        let sizes: Vec<u64> = groups.iter().map(|(_, r)| size(r)).collect();
        let add: u64 = sizes.iter().sum();
        // An empty buffer takes any single submission, so one large chunk can never be
        // refused forever.
        if self.bytes > 0 && self.bytes + add > self.max_bytes {
            return Err(Refused {
                error: BufferError::Full(format!(
                    "{} bytes buffered, limit BufferMaxBytes={}",
                    self.bytes, self.max_bytes
                )),
                groups,
            });
        }
        let held = |k: &PartitionKey| self.keys.contains_key(k);
        if let Err(error) = key_limit(self.keys.len(), &groups, self.max_keys, held) {
            return Err(Refused { error, groups });
        }
        let now = Instant::now();
        let mut lens = Vec::with_capacity(groups.len());
        for ((key, recs), bytes) in groups.into_iter().zip(sizes) {
            let n = recs.len() as u64;
            let p = self.keys.entry(key.clone()).or_insert_with(|| Pending {
                records: VecDeque::new(),
                bytes: 0,
                since: None,
            });
            if p.records.is_empty() {
                p.since = Some(now);
            }
            p.records.extend(recs);
            p.bytes += bytes;
            self.records += n;
            self.bytes += bytes;
            lens.push((key, p.records.len()));
        }
        Ok(lens)
    }

    fn due(&mut self, now: Instant, interval: Duration) -> Vec<PartitionKey> {
        self.keys
            .iter()
            .filter(|(_, p)| p.since.is_some_and(|s| now.duration_since(s) >= interval))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn keys(&mut self) -> Vec<PartitionKey> {
        self.keys
            .iter()
            .filter(|(_, p)| !p.records.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn pending(&mut self, key: &PartitionKey) -> usize {
        self.keys.get(key).map_or(0, |p| p.records.len())
    }

    fn take(&mut self, key: &PartitionKey, max: usize) -> Result<Option<Batch>, BufferError> {
        let Some(p) = self.keys.get_mut(key) else {
            return Ok(None);
        };
        if p.records.is_empty() || max == 0 {
            return Ok(None);
        }
        let n = max.min(p.records.len());
        let records: Vec<Record> = if n == p.records.len() {
            Vec::from(std::mem::take(&mut p.records))
        } else {
            p.records.drain(..n).collect()
        };
        let bytes = size(&records);
        p.bytes -= bytes.min(p.bytes);
        if p.records.is_empty() {
            // Drop idle keys so memory does not grow with key cardinality (D-RC7).
            self.keys.remove(key);
        }
        Ok(Some(Batch {
            id: ulid::Ulid::generate(),
            key: key.clone(),
            records,
            bytes,
            taken_at: Instant::now(),
            // Schemas of dynamic records live in the pipeline's registry, which has the
            // same lifetime as this buffer.
            schema: None,
            pages: None,
        }))
    }

    fn ack(&mut self, batch: &BatchInfo) {
        self.records -= (batch.records as u64).min(self.records);
        self.bytes -= batch.bytes.min(self.bytes);
    }

    fn nack(&mut self, batch: Batch) {
        let bytes = batch.bytes;
        let p = self
            .keys
            .entry(batch.key.clone())
            .or_insert_with(|| Pending {
                records: VecDeque::new(),
                bytes: 0,
                since: None,
            });
        for r in batch.records.into_iter().rev() {
            p.records.push_front(r);
        }
        p.bytes += bytes;
        p.since = Some(batch.taken_at.min(p.since.unwrap_or(batch.taken_at)));
    }

    fn usage(&self) -> Usage {
        Usage {
            records: self.records,
            bytes: self.bytes,
            keys: self.keys.len() as u64,
        }
    }

    fn oldest_pending(&self) -> Option<Instant> {
        self.keys
            .values()
            .filter(|p| !p.records.is_empty())
            .filter_map(|p| p.since)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LogBuilder;
    use crate::record::log::Str;

    fn recs(n: usize, tag: &str) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let mut b = LogBuilder::new();
                b.set(Str::Message, &format!("{tag}{i}"));
                Record::Log(b.finish())
            })
            .collect()
    }

    fn msgs(b: &Batch) -> Vec<String> {
        b.records
            .iter()
            .map(|r| match r {
                Record::Log(l) => l.req(Str::Message).to_string(),
                Record::Dynamic(d) => d.to_json(),
            })
            .collect()
    }

    #[test]
    fn take_ack_nack_keep_order_and_accounting() {
        let mut m = MemBuffer::new(1 << 30);
        let k = PartitionKey::from_text("a");
        assert_eq!(
            m.push(vec![(k.clone(), recs(5, "x"))]).unwrap(),
            vec![(k.clone(), 5)]
        );
        let b1 = m.take(&k, 3).unwrap().unwrap();
        assert_eq!(msgs(&b1), ["x0", "x1", "x2"]);
        assert_eq!(m.pending(&k), 2);
        assert_eq!(m.usage().records, 5, "in-flight records still count");
        m.nack(b1);
        let b2 = m.take(&k, 10).unwrap().unwrap();
        assert_eq!(msgs(&b2), ["x0", "x1", "x2", "x3", "x4"]);
        m.ack(&b2.info());
        assert_eq!(m.usage(), Usage::default());
        assert!(m.take(&k, 10).unwrap().is_none());
    }

    #[test]
    fn full_is_all_or_nothing() {
        let one = size(&recs(1, "x"));
        let mut m = MemBuffer::new(one * 3);
        m.push(vec![(PartitionKey::from_text("a"), recs(2, "x"))])
            .unwrap();
        let e = m
            .push(vec![
                (PartitionKey::from_text("a"), recs(1, "y")),
                (PartitionKey::from_text("b"), recs(5, "y")),
            ])
            .unwrap_err();
        assert!(matches!(e.error, BufferError::Full(_)));
        assert_eq!(e.groups.len(), 2, "the records come back");
        assert_eq!(m.usage().records, 2, "nothing of the refused push was kept");
        assert_eq!(m.pending(&PartitionKey::from_text("b")), 0);
    }

    #[test]
    fn new_keys_past_buffer_max_keys_are_refused_whole_and_known_keys_still_fit() {
        let k = |i: usize| PartitionKey::from_text(&format!("k{i}"));
        let mut m = MemBuffer::new(1 << 30).with_max_keys(NonZeroUsize::new(3));
        // An empty buffer takes any submission, even one with more keys than the limit.
        let first: Groups = (0..4).map(|i| (k(i), recs(1, "a"))).collect();
        m.push(first).unwrap();
        let b = m.take(&k(0), 10).unwrap().unwrap();
        m.ack(&b.info());
        let b = m.take(&k(1), 10).unwrap().unwrap();
        m.ack(&b.info());
        // Two keys held: one new key fits, two do not, and nothing of that push is kept.
        let e = m
            .push(vec![
                (k(2), recs(1, "b")),
                (k(8), recs(1, "b")),
                (k(9), recs(1, "b")),
            ])
            .unwrap_err();
        let BufferError::TooManyKeys(why) = &e.error else {
            panic!("{:?}", e.error)
        };
        assert!(
            why.contains("BufferMaxKeys=3") && why.contains("2 more"),
            "{why}"
        );
        assert_eq!(e.groups.len(), 3, "the records come back");
        assert_eq!((m.usage().keys, m.usage().records), (2, 2));
        m.push(vec![(k(2), recs(5, "c")), (k(8), recs(1, "c"))])
            .unwrap();
        assert_eq!((m.usage().keys, m.pending(&k(2))), (3, 6));
        // At the limit, records of held keys are still taken.
        m.push(vec![(k(3), recs(1, "d"))]).unwrap();
        assert!(m.push(vec![(k(9), recs(1, "d"))]).is_err());
        // Without a limit, any number of keys.
        let mut free = MemBuffer::new(1 << 30).with_max_keys(None);
        for i in 0..50 {
            free.push(vec![(k(i), recs(1, "e"))]).unwrap();
        }
        assert_eq!(free.usage().keys, 50);
    }

    #[test]
    fn oldest_pending_is_the_longest_wait() {
        let mut m = MemBuffer::new(1 << 30);
        let (a, b) = (PartitionKey::from_text("a"), PartitionKey::from_text("b"));
        assert_eq!(m.oldest_pending(), None);
        let before = Instant::now();
        m.push(vec![(a.clone(), recs(1, "x"))]).unwrap();
        let first = m.oldest_pending().expect("a record waits");
        assert!(first >= before);
        m.push(vec![(b.clone(), recs(1, "y"))]).unwrap();
        assert_eq!(m.oldest_pending(), Some(first), "the oldest key's start");
        m.take(&a, 10).unwrap().unwrap();
        assert!(m.oldest_pending().is_some_and(|t| t >= first), "b's start");
        m.take(&b, 10).unwrap().unwrap();
        assert_eq!(m.oldest_pending(), None, "in flight is not pending");
    }

    #[test]
    fn due_by_oldest_record() {
        let mut m = MemBuffer::new(1 << 30);
        let k = PartitionKey::from_text("a");
        m.push(vec![(k.clone(), recs(1, "x"))]).unwrap();
        let now = Instant::now();
        assert!(m.due(now, Duration::from_secs(60)).is_empty());
        assert_eq!(
            m.due(now + Duration::from_secs(61), Duration::from_secs(60)),
            vec![k]
        );
    }
}
