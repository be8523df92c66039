//! The fixed upstream "log" record (`RecordType=log`).
//!
//! A [`LogRecord`] keeps all of its text in one arena and refers to it with spans, so a
//! record costs two allocations however many fields it has. That matters because the
//! plugin and `json2parquet` move hundreds of thousands of records per second through
//! the buffer. The column set, order and nullability follow upstream exactly
//! (`upstream.md` §3.2); [`COLUMNS`] is the single description the converter uses.

use std::fmt;

mod builder;
mod schema;
pub mod wire;

pub use builder::LogBuilder;
pub use schema::{COLUMNS, Col, ColKind, N_STR, Str};

/// A byte range in a record's arena. `off == u32::MAX` means null.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Span {
    off: u32,
    len: u32,
}

impl Span {
    pub(crate) const NULL: Span = Span {
        off: u32::MAX,
        len: 0,
    };
    fn is_null(self) -> bool {
        self.off == u32::MAX
    }
}

/// One log record. Build it with [`LogBuilder`]; read it with the accessors.
///
/// Small on purpose (48 bytes): records are moved through channels and buffers by
/// value. Everything else lives in one heap block, because the buffer holds hundreds of
/// thousands of records and each block is allocated on a decoding thread and freed on a
/// writer thread, which costs more than the copy into it.
#[derive(Clone, PartialEq)]
pub struct LogRecord {
    /// The items as 8-byte spans (little-endian `off`, `len`; see [`Span`]), then the
    /// text they point into. Only [`LogRecord::from_parts`] builds it.
    data: Box<[u8]>,
    audit: Option<bool>,
    auto_index: Option<bool>,
    /// Items: the 28 scalar columns, then args pairs, extra-fields pairs, tags and
    /// trace-ip.
    n_items: u32,
    n_args: u32,
    n_extra: u32,
    n_tags: u32,
    /// Bit `col as usize` is set when that scalar column is not null. A batch reads
    /// these first and leaves out the columns no record sets, which are most of the 28
    /// for a typical source.
    scalars: u32,
    /// Event time in nanoseconds since the epoch, when known (used for record-time
    /// partitioning); `i64::MIN` when unknown.
    event_ns: i64,
}

const _: () = assert!(N_STR <= u32::BITS as usize, "one bit per scalar column");

/// Bytes per stored span.
const SPAN_BYTES: usize = 8;

/// Which of the first [`N_STR`] spans (the scalar columns) are not null.
fn scalar_mask(items: &[Span]) -> u32 {
    let mut m = 0u32;
    for (i, s) in items.iter().take(N_STR).enumerate() {
        m |= u32::from(!s.is_null()) << i;
    }
    m
}

/// A record's parts other than its spans and text.
struct Parts {
    /// [`scalar_mask`] of the spans (the builder keeps it up to date as it goes).
    scalars: u32,
    audit: Option<bool>,
    auto_index: Option<bool>,
    n_args: u32,
    n_extra: u32,
    n_tags: u32,
    event_ns: i64,
}

impl LogRecord {
    /// The only constructor: `text` is copied from a `&str`, which is what makes
    /// [`LogRecord::text`] sound.
    fn from_parts(items: &[Span], text: &str, p: Parts) -> LogRecord {
        let spans = items.len() * SPAN_BYTES;
        let mut data = Vec::with_capacity(spans + text.len());
        // Sized first, then filled in place: no capacity check per span.
        data.resize(spans, 0);
        for (out, s) in data.chunks_exact_mut(SPAN_BYTES).zip(items) {
            out[..4].copy_from_slice(&s.off.to_le_bytes());
            out[4..].copy_from_slice(&s.len.to_le_bytes());
        }
        data.extend_from_slice(text.as_bytes());
        debug_assert_eq!(p.scalars, scalar_mask(items));
        LogRecord {
            data: data.into_boxed_slice(),
            audit: p.audit,
            auto_index: p.auto_index,
            n_items: items.len() as u32,
            n_args: p.n_args,
            n_extra: p.n_extra,
            n_tags: p.n_tags,
            scalars: p.scalars,
            event_ns: p.event_ns,
        }
    }

    /// The scalar columns that are set: bit `col as usize` for each one not null.
    pub fn scalar_mask(&self) -> u32 {
        self.scalars
    }

    fn text_at(&self) -> usize {
        self.n_items as usize * SPAN_BYTES
    }

    /// The record's text arena.
    fn text(&self) -> &str {
        let bytes = self.data.get(self.text_at()..).unwrap_or_default();
        // SAFETY: `data` is written once, by `from_parts`, as the spans followed by the
        // bytes of a `&str` (so they are valid UTF-8), and never changed afterwards;
        // `text_at` is the length of the spans part.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    fn span(&self, i: usize) -> Span {
        let word = |at: usize| {
            let mut b = [0u8; 4];
            if let Some(src) = self.data.get(at..at + 4) {
                b.copy_from_slice(src);
            }
            u32::from_le_bytes(b)
        };
        Span {
            off: word(i * SPAN_BYTES),
            len: word(i * SPAN_BYTES + 4),
        }
    }

    fn spans(&self, from: usize, to: usize) -> impl ExactSizeIterator<Item = Span> + '_ {
        (from..to).map(|i| self.span(i))
    }

    /// A span's text. Spans are made by the builder from the text's own pieces, or
    /// checked by the wire decoder, so the fallback is never taken.
    fn slice(&self, s: Span) -> &str {
        let (off, len) = (s.off as usize, s.len as usize);
        self.text().get(off..off + len).unwrap_or_default()
    }

    /// A scalar string column; `None` is null.
    pub fn get(&self, col: Str) -> Option<&str> {
        let s = self.span(col as usize);
        (!s.is_null()).then(|| self.slice(s))
    }

    /// A required column: "" when unset.
    pub fn req(&self, col: Str) -> &str {
        self.get(col).unwrap_or("")
    }

    pub fn audit(&self) -> Option<bool> {
        self.audit
    }

    pub fn auto_index(&self) -> Option<bool> {
        self.auto_index
    }

    fn pairs(&self, from: usize, n: usize) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        let at = N_STR + from;
        (0..n).map(move |i| {
            let kv = at + 2 * i;
            (self.slice(self.span(kv)), self.slice(self.span(kv + 1)))
        })
    }

    pub fn args(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.pairs(0, self.n_args as usize)
    }

    pub fn extra_fields(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.pairs(2 * self.n_args as usize, self.n_extra as usize)
    }

    pub fn tags(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let from = N_STR + 2 * (self.n_args + self.n_extra) as usize;
        self.spans(from, from + self.n_tags as usize)
            .map(|s| self.slice(s))
    }

    pub fn trace_ip(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let from = N_STR + 2 * (self.n_args + self.n_extra) as usize + self.n_tags as usize;
        self.spans(from, self.n_items as usize)
            .map(|s| self.slice(s))
    }

    pub fn event_ns(&self) -> Option<i64> {
        (self.event_ns != i64::MIN).then_some(self.event_ns)
    }

    /// Approximate heap plus inline footprint, for buffer accounting.
    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.data.len()
    }

    /// The record as a JSON object with the schema's column names (nulls omitted),
    /// used for DLQ entries, debugging and tests.
    pub fn to_json(&self) -> String {
        use crate::value::write_json_str;
        let mut out = String::from("{");
        let mut first = true;
        let mut key = |out: &mut String, k: &str| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            write_json_str(k, out);
            out.push(':');
        };
        for col in COLUMNS {
            match col {
                Col::S(s) => {
                    if let Some(v) = self.get(s) {
                        key(&mut out, s.name());
                        write_json_str(v, &mut out);
                    }
                }
                Col::Audit | Col::AutoIndex => {
                    let v = if col == Col::Audit {
                        self.audit
                    } else {
                        self.auto_index
                    };
                    if let Some(b) = v {
                        key(&mut out, col.name());
                        out.push_str(if b { "true" } else { "false" });
                    }
                }
                Col::Args | Col::ExtraFields => {
                    key(&mut out, col.name());
                    out.push('{');
                    let it: Box<dyn Iterator<Item = (&str, &str)>> = if col == Col::Args {
                        Box::new(self.args())
                    } else {
                        Box::new(self.extra_fields())
                    };
                    for (i, (k, v)) in it.enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write_json_str(k, &mut out);
                        out.push(':');
                        write_json_str(v, &mut out);
                    }
                    out.push('}');
                }
                Col::Tags | Col::TraceIp => {
                    key(&mut out, col.name());
                    out.push('[');
                    let it: Box<dyn Iterator<Item = &str>> = if col == Col::Tags {
                        Box::new(self.tags())
                    } else {
                        Box::new(self.trace_ip())
                    };
                    for (i, v) in it.enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write_json_str(v, &mut out);
                    }
                    out.push(']');
                }
            }
        }
        out.push('}');
        out
    }
}

impl super::prefetch::Prefetch for LogRecord {
    fn prefetch(&self) {
        super::prefetch::lines(&self.data);
    }
}

impl fmt::Debug for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LogRecord {
        let mut b = LogBuilder::new();
        b.set(Str::Message, "hello");
        b.set(Str::BusinessCapability, "cap");
        b.set(Str::Region, "eu");
        b.add_arg("k", "v");
        assert!(!b.add_arg("k", "other"));
        b.add_extra("x", "1");
        b.add_extra("x", "2");
        b.add_tag("t1");
        b.add_trace_ip("10.0.0.1");
        b.set_audit(None);
        b.finish()
    }

    #[test]
    fn builder_defaults_and_accessors() {
        let r = sample();
        assert_eq!(r.req(Str::Level), "info");
        assert_eq!(r.req(Str::Time), "");
        assert_eq!(r.get(Str::Region), Some("eu"));
        assert_eq!(r.get(Str::Az), None);
        assert_eq!(r.args().collect::<Vec<_>>(), [("k", "v")]);
        assert_eq!(
            r.extra_fields().collect::<Vec<_>>(),
            [("x", "1"), ("x~2", "2")]
        );
        assert_eq!(r.tags().collect::<Vec<_>>(), ["t1"]);
        assert_eq!(r.trace_ip().collect::<Vec<_>>(), ["10.0.0.1"]);
        assert_eq!(r.audit(), None);
        assert_eq!(r.auto_index(), Some(false));
    }

    #[test]
    fn wire_round_trip() {
        let r = sample();
        let mut buf = Vec::new();
        wire::encode(&r, &mut buf);
        assert_eq!(wire::decode(&buf).unwrap(), r);
        // Every truncation is rejected, never panics.
        for n in 0..buf.len() {
            assert!(wire::decode(&buf[..n]).is_err());
        }
    }

    #[test]
    fn one_block_holds_spans_and_multibyte_text() {
        let mut b = LogBuilder::new();
        b.set(Str::Message, "grüße 日本 🚀");
        b.add_extra("ключ", "значение");
        b.add_tag("é");
        let r = b.finish();
        assert_eq!(r.get(Str::Message), Some("grüße 日本 🚀"));
        assert_eq!(r.extra_fields().collect::<Vec<_>>(), [("ключ", "значение")]);
        assert_eq!(r.tags().collect::<Vec<_>>(), ["é"]);
        assert_eq!(r.trace_ip().count(), 0);
        // 48 bytes by value; spans and text share one heap block.
        assert_eq!(std::mem::size_of::<LogRecord>(), 48);
        assert_eq!(r.mem_size(), 48 + r.data.len());
        let mut buf = Vec::new();
        wire::encode(&r, &mut buf);
        assert_eq!(wire::decode(&buf).unwrap(), r);
    }

    #[test]
    fn wire_rejects_spans_outside_the_text_or_inside_a_character() {
        let mut b = LogBuilder::new();
        b.set(Str::Message, "é");
        let r = b.finish();
        let mut buf = Vec::new();
        wire::encode(&r, &mut buf);
        // The message span is item 2; spans start after magic, text length, text, two
        // flag bytes and four counts.
        let text_len = r.text().len();
        let at = 2 + 4 + text_len + 2 + 16 + 2 * 8;
        let msg = r.span(Str::Message as usize);
        for (off, len) in [(msg.off, 1u32), (msg.off + 1, 1), (text_len as u32, 1)] {
            let mut bad = buf.clone();
            bad[at..at + 4].copy_from_slice(&off.to_le_bytes());
            bad[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
            assert!(wire::decode(&bad).is_err(), "span {off}+{len} accepted");
        }
    }

    #[test]
    fn columns_match_upstream_order() {
        let names: Vec<_> = COLUMNS.iter().map(|c| c.name()).collect();
        assert_eq!(names[0..3], ["time", "level", "message"]);
        assert_eq!(names[8], "args");
        assert_eq!(names[17], "extra-fields");
        assert_eq!(names[18], "hmac");
        assert_eq!(names[33], "user-id");
        assert_eq!(Col::S(Str::Hmac).kind(), ColKind::ReqStr);
        assert_eq!(Col::S(Str::Az).kind(), ColKind::OptStr);
    }
}
