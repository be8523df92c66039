//! Compact binary form of a record, used by durable buffers (Redis). Layout
//! (little-endian): magic `L1`, u32 text length, text, audit and auto-index as one byte
//! each (0 false, 1 true, 2 null), u32 counts of args, extra-fields and tags, u32 item
//! count, items as (u32 off, u32 len) (the 28 scalar columns first, null as
//! off = u32::MAX), i64 event time.

use super::*;

const MAGIC: &[u8; 2] = b"L1";

fn b2u(b: Option<bool>) -> u8 {
    match b {
        Some(false) => 0,
        Some(true) => 1,
        None => 2,
    }
}

pub fn encode(r: &LogRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    let text = r.text();
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.push(b2u(r.audit));
    out.push(b2u(r.auto_index));
    for n in [r.n_args, r.n_extra, r.n_tags, r.n_items] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    // The spans are stored in this same layout.
    out.extend_from_slice(r.data.get(..r.text_at()).unwrap_or_default());
    out.extend_from_slice(&r.event_ns.to_le_bytes());
}

struct Cur<'a>(&'a [u8]);
impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
}

/// Decodes a record, checking every span against the arena so corrupt input can
/// never cause an out-of-bounds slice later.
pub fn decode(bytes: &[u8]) -> Result<LogRecord, String> {
    let bad = || "corrupt log record encoding".to_string();
    let mut c = Cur(bytes);
    if c.take(2) != Some(MAGIC.as_slice()) {
        return Err("not a log record (bad magic)".into());
    }
    let tlen = c.u32().ok_or_else(bad)? as usize;
    let text = std::str::from_utf8(c.take(tlen).ok_or_else(bad)?)
        .map_err(|_| "log record text is not UTF-8".to_string())?;
    let check = |s: Span| -> Result<Span, String> {
        if s.is_null() {
            return Ok(s);
        }
        let end = s.off as usize + s.len as usize;
        if end > text.len() || !text.is_char_boundary(s.off as usize) || !text.is_char_boundary(end)
        {
            return Err(bad());
        }
        Ok(s)
    };
    let u2b = |u: u8| match u {
        0 => Ok(Some(false)),
        1 => Ok(Some(true)),
        2 => Ok(None),
        _ => Err(bad()),
    };
    let audit = u2b(c.u8().ok_or_else(bad)?)?;
    let auto_index = u2b(c.u8().ok_or_else(bad)?)?;
    let n_args = c.u32().ok_or_else(bad)?;
    let n_extra = c.u32().ok_or_else(bad)?;
    let n_tags = c.u32().ok_or_else(bad)?;
    let n_items = c.u32().ok_or_else(bad)? as usize;
    let needed = N_STR as u64 + 2 * (n_args as u64 + n_extra as u64) + n_tags as u64;
    if needed > n_items as u64 || n_items > bytes.len() {
        return Err(bad());
    }
    let mut items = Vec::with_capacity(n_items);
    for i in 0..n_items {
        let off = c.u32().ok_or_else(bad)?;
        let len = c.u32().ok_or_else(bad)?;
        let s = check(Span { off, len })?;
        // Only optional scalar columns may be null.
        if s.is_null() && (i >= N_STR || Str::ALL[i].required()) {
            return Err(bad());
        }
        items.push(s);
    }
    let ev = i64::from_le_bytes(c.take(8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    if !c.0.is_empty() {
        return Err(bad());
    }
    Ok(LogRecord::from_parts(
        &items,
        text,
        Parts {
            scalars: scalar_mask(&items),
            audit,
            auto_index,
            n_args,
            n_extra,
            n_tags,
            event_ns: ev,
        },
    ))
}
