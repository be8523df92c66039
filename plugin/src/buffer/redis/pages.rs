//! Reading a batch's records back from Redis a page at a time, so that neither Redis
//! (which answers nothing else while it builds a reply) nor this process holds a large
//! batch at once.

use super::classify;
use crate::buffer::BufferError;
use crate::config::RedisConfig;
use crate::dlq::DlqEntry;
use crate::partition::PartitionKey;
use crate::record::Record;
use crate::redis_conn::RedisConn;
use std::sync::Mutex;

/// Records read back per LRANGE, at most.
const READ_PAGE: usize = 10_000;

/// The bytes of stored records read at a time, about: a batch of more than this is
/// read in pages, however few its records (peers' users report records of 1 MiB and
/// more; 10,000 of those at once would be 10 GB).
const PAGE_BYTES: u64 = 16 << 20;

/// Records per read of a list of `n` records taking about `bytes` in Redis (`None`
/// where Redis does not say, as with a `MEMORY` command an ACL forbids): as many as
/// make [`PAGE_BYTES`], at most [`READ_PAGE`].
pub(super) fn records_per_page(n: usize, bytes: Option<u64>) -> usize {
    match bytes {
        Some(b) if b > 0 => {
            let fit = (n as u128 * u128::from(PAGE_BYTES) / u128::from(b)) as usize;
            fit.clamp(1, READ_PAGE)
        }
        _ => READ_PAGE,
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
pub(super) fn read_range(
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
pub(super) struct RedisPages {
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

impl RedisPages {
    /// The `total` records of the in-flight list `list` of `key`, read `page` at a
    /// time, each read fenced by the batch's id `id` under `id_key`.
    pub(super) fn new(
        cfg: &RedisConfig,
        (list, key): (String, PartitionKey),
        total: usize,
        page: usize,
        (id_key, id): (String, String),
    ) -> RedisPages {
        RedisPages {
            cfg: cfg.clone(),
            conn: Mutex::new(None),
            list,
            key,
            total,
            page,
            id_key,
            id,
        }
    }
}

impl std::fmt::Debug for RedisPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisPages({}, {} records)", self.list, self.total)
    }
}

impl crate::buffer::Pages for RedisPages {
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

#[cfg(test)]
mod tests {
    use super::records_per_page as per;

    /// Pages hold about 16 MiB of stored records, and at most 10,000 of them.
    #[test]
    fn pages_are_bounded_by_bytes_and_by_records() {
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
}
