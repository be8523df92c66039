//! The fixed upstream "log" record (`RecordType=log`).
//!
//! A [`LogRecord`] keeps all of its text in one arena and refers to it with spans, so a
//! record costs two allocations however many fields it has. That matters because the
//! plugin and `json2parquet` move hundreds of thousands of records per second through
//! the buffer. The column set, order and nullability follow upstream exactly
//! (`upstream.md` §3.2); [`COLUMNS`] is the single description the converter uses.

use std::fmt;

/// The kind of a log column in the Parquet schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// UTF8 string, REQUIRED.
    ReqStr,
    /// UTF8 string, OPTIONAL.
    OptStr,
    /// BOOLEAN, OPTIONAL.
    OptBool,
    /// MAP<string, bytes>, REQUIRED group.
    Map,
    /// `LIST<string>`, REQUIRED group.
    List,
}

/// Scalar string columns, in schema order. The discriminant indexes [`LogRecord`] spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Str {
    Time,
    Level,
    Message,
    CorrelationId,
    BusinessCapability,
    BusinessDomain,
    BusinessService,
    ApplicationService,
    Az,
    CloudProvider,
    DeviceId,
    Duration,
    Error,
    ErrorCode,
    Hmac,
    HttpResponse,
    LoggerName,
    MessageId,
    PersonId,
    Region,
    ResourceType,
    SessionId,
    SourceId,
    StackTrace,
    ThreadName,
    TransactionMessageReference,
    Ttl,
    UserId,
}

pub const N_STR: usize = 28;

impl Str {
    pub const ALL: [Str; N_STR] = [
        Str::Time,
        Str::Level,
        Str::Message,
        Str::CorrelationId,
        Str::BusinessCapability,
        Str::BusinessDomain,
        Str::BusinessService,
        Str::ApplicationService,
        Str::Az,
        Str::CloudProvider,
        Str::DeviceId,
        Str::Duration,
        Str::Error,
        Str::ErrorCode,
        Str::Hmac,
        Str::HttpResponse,
        Str::LoggerName,
        Str::MessageId,
        Str::PersonId,
        Str::Region,
        Str::ResourceType,
        Str::SessionId,
        Str::SourceId,
        Str::StackTrace,
        Str::ThreadName,
        Str::TransactionMessageReference,
        Str::Ttl,
        Str::UserId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Str::Time => "time",
            Str::Level => "level",
            Str::Message => "message",
            Str::CorrelationId => "correlation-id",
            Str::BusinessCapability => "business-capability",
            Str::BusinessDomain => "business-domain",
            Str::BusinessService => "business-service",
            Str::ApplicationService => "application-service",
            Str::Az => "az",
            Str::CloudProvider => "cloud-provider",
            Str::DeviceId => "device-id",
            Str::Duration => "duration",
            Str::Error => "error",
            Str::ErrorCode => "error-code",
            Str::Hmac => "hmac",
            Str::HttpResponse => "http-response",
            Str::LoggerName => "logger-name",
            Str::MessageId => "message-id",
            Str::PersonId => "person-id",
            Str::Region => "region",
            Str::ResourceType => "resource-type",
            Str::SessionId => "session-id",
            Str::SourceId => "source-id",
            Str::StackTrace => "stack-trace",
            Str::ThreadName => "thread-name",
            Str::TransactionMessageReference => "transaction-message-reference",
            Str::Ttl => "ttl",
            Str::UserId => "user-id",
        }
    }

    /// Required columns are never null: they default to "" (or "info" for level).
    pub fn required(self) -> bool {
        matches!(
            self,
            Str::Time
                | Str::Level
                | Str::Message
                | Str::BusinessCapability
                | Str::BusinessDomain
                | Str::BusinessService
                | Str::ApplicationService
                | Str::Hmac
        )
    }

    pub fn from_name(name: &str) -> Option<Str> {
        Str::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// A column of the log schema, in upstream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    S(Str),
    Args,
    Audit,
    AutoIndex,
    ExtraFields,
    Tags,
    TraceIp,
}

impl Col {
    pub fn name(self) -> &'static str {
        match self {
            Col::S(s) => s.name(),
            Col::Args => "args",
            Col::Audit => "audit",
            Col::AutoIndex => "auto-index",
            Col::ExtraFields => "extra-fields",
            Col::Tags => "tags",
            Col::TraceIp => "trace-ip",
        }
    }

    pub fn kind(self) -> ColKind {
        match self {
            Col::S(s) if s.required() => ColKind::ReqStr,
            Col::S(_) => ColKind::OptStr,
            Col::Audit | Col::AutoIndex => ColKind::OptBool,
            Col::Args | Col::ExtraFields => ColKind::Map,
            Col::Tags | Col::TraceIp => ColKind::List,
        }
    }
}

/// The 34 columns of the upstream log schema, in file order (`upstream.md` §3.2).
pub const COLUMNS: [Col; 34] = [
    Col::S(Str::Time),
    Col::S(Str::Level),
    Col::S(Str::Message),
    Col::S(Str::CorrelationId),
    Col::S(Str::BusinessCapability),
    Col::S(Str::BusinessDomain),
    Col::S(Str::BusinessService),
    Col::S(Str::ApplicationService),
    Col::Args,
    Col::Audit,
    Col::AutoIndex,
    Col::S(Str::Az),
    Col::S(Str::CloudProvider),
    Col::S(Str::DeviceId),
    Col::S(Str::Duration),
    Col::S(Str::Error),
    Col::S(Str::ErrorCode),
    Col::ExtraFields,
    Col::S(Str::Hmac),
    Col::S(Str::HttpResponse),
    Col::S(Str::LoggerName),
    Col::S(Str::MessageId),
    Col::S(Str::PersonId),
    Col::S(Str::Region),
    Col::S(Str::ResourceType),
    Col::S(Str::SessionId),
    Col::S(Str::SourceId),
    Col::S(Str::StackTrace),
    Col::Tags,
    Col::S(Str::ThreadName),
    Col::TraceIp,
    Col::S(Str::TransactionMessageReference),
    Col::S(Str::Ttl),
    Col::S(Str::UserId),
];

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

/// Reusable builder. Holding one per decoding thread keeps its scratch vectors warm, so
/// building a record allocates only the record's own arena and item list.
#[derive(Default)]
pub struct LogBuilder {
    text: String,
    spans: Vec<Span>,
    /// [`scalar_mask`] of `spans`, kept as columns are set.
    scalars: u32,
    audit: Option<bool>,
    auto_index: Option<bool>,
    args: Vec<(Span, Span)>,
    extra: Vec<(Span, Span)>,
    tags: Vec<Span>,
    trace: Vec<Span>,
    /// Scratch for [`LogBuilder::finish`]: every span in record order.
    items: Vec<Span>,
    event_ns: i64,
}

impl LogBuilder {
    pub fn new() -> Self {
        let mut b = LogBuilder::default();
        b.reset();
        b
    }

    pub fn reset(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.spans.resize(N_STR, Span::NULL);
        self.scalars = 0;
        self.audit = Some(false);
        self.auto_index = Some(false);
        self.args.clear();
        self.extra.clear();
        self.tags.clear();
        self.trace.clear();
        self.event_ns = i64::MIN;
    }

    fn intern(&mut self, s: &str) -> Span {
        let off = self.text.len() as u32;
        self.text.push_str(s);
        Span {
            off,
            len: s.len() as u32,
        }
    }

    fn slice(&self, s: Span) -> &str {
        &self.text[s.off as usize..(s.off + s.len) as usize]
    }

    pub fn get(&self, col: Str) -> Option<&str> {
        let s = self.spans[col as usize];
        (!s.is_null()).then(|| self.slice(s))
    }

    pub fn is_set(&self, col: Str) -> bool {
        !self.spans[col as usize].is_null()
    }

    pub fn set(&mut self, col: Str, v: &str) {
        self.spans[col as usize] = self.intern(v);
        self.scalars |= 1 << col as u32;
    }

    pub fn set_null(&mut self, col: Str) {
        self.spans[col as usize] = Span::NULL;
        self.scalars &= !(1 << col as u32);
    }

    pub fn set_audit(&mut self, v: Option<bool>) {
        self.audit = v;
    }

    pub fn set_auto_index(&mut self, v: Option<bool>) {
        self.auto_index = v;
    }

    pub fn set_event_ns(&mut self, ns: i64) {
        self.event_ns = ns;
    }

    pub fn has_arg(&self, k: &str) -> bool {
        self.args.iter().any(|(ks, _)| self.slice(*ks) == k)
    }

    /// Adds an args entry. Returns false (and adds nothing) when the key is already
    /// there, so the caller can keep the displaced value elsewhere.
    pub fn add_arg(&mut self, k: &str, v: &str) -> bool {
        if self.has_arg(k) {
            return false;
        }
        let ks = self.intern(k);
        let vs = self.intern(v);
        self.args.push((ks, vs));
        true
    }

    /// Adds an extra-fields entry. A key seen before gets a `~N` suffix: map keys stay
    /// unique and no value is dropped.
    pub fn add_extra(&mut self, k: &str, v: &str) {
        let taken = |b: &Self, key: &str| b.extra.iter().any(|(ks, _)| b.slice(*ks) == key);
        let ks = if taken(self, k) {
            let mut n = 2;
            loop {
                let cand = format!("{k}~{n}");
                if !taken(self, &cand) {
                    break self.intern(&cand);
                }
                n += 1;
            }
        } else {
            self.intern(k)
        };
        let vs = self.intern(v);
        self.extra.push((ks, vs));
    }

    pub fn add_tag(&mut self, v: &str) {
        let s = self.intern(v);
        self.tags.push(s);
    }

    pub fn add_trace_ip(&mut self, v: &str) {
        let s = self.intern(v);
        self.trace.push(s);
    }

    pub fn arg(&self, k: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(ks, _)| self.slice(*ks) == k)
            .map(|(_, vs)| self.slice(*vs))
    }

    /// Removes an args entry (its text stays in the arena; only the span goes).
    pub fn remove_arg(&mut self, k: &str) -> Option<String> {
        let pos = self.args.iter().position(|(ks, _)| self.slice(*ks) == k)?;
        let (_, vs) = self.args.remove(pos);
        Some(self.slice(vs).to_owned())
    }

    pub fn audit(&self) -> Option<bool> {
        self.audit
    }

    pub fn auto_index(&self) -> Option<bool> {
        self.auto_index
    }

    pub fn args(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.args
            .iter()
            .map(|(k, v)| (self.slice(*k), self.slice(*v)))
    }

    pub fn extra_fields(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.extra
            .iter()
            .map(|(k, v)| (self.slice(*k), self.slice(*v)))
    }

    pub fn tags(&self) -> impl Iterator<Item = &str> + '_ {
        self.tags.iter().map(|s| self.slice(*s))
    }

    pub fn trace_ip(&self) -> impl Iterator<Item = &str> + '_ {
        self.trace.iter().map(|s| self.slice(*s))
    }

    /// Finishes the record: required columns get their defaults, then the arena is
    /// compacted into the record.
    pub fn finish(&mut self) -> LogRecord {
        for col in Str::ALL {
            if col.required() && self.spans[col as usize].is_null() {
                let d = if col == Str::Level { "info" } else { "" };
                self.set(col, d);
            }
        }
        let mut items = std::mem::take(&mut self.items);
        items.clear();
        items.extend_from_slice(&self.spans);
        for (k, v) in self.args.iter().chain(self.extra.iter()) {
            items.push(*k);
            items.push(*v);
        }
        items.extend_from_slice(&self.tags);
        items.extend_from_slice(&self.trace);
        let rec = LogRecord::from_parts(
            &items,
            &self.text,
            Parts {
                scalars: self.scalars,
                audit: self.audit,
                auto_index: self.auto_index,
                n_args: self.args.len() as u32,
                n_extra: self.extra.len() as u32,
                n_tags: self.tags.len() as u32,
                event_ns: self.event_ns,
            },
        );
        self.items = items;
        self.reset();
        rec
    }
}

/// Compact binary form of a record, used by durable buffers (Redis). Layout
/// (little-endian): magic `L1`, u32 text length, text, audit and auto-index as one byte
/// each (0 false, 1 true, 2 null), u32 counts of args, extra-fields and tags, u32 item
/// count, items as (u32 off, u32 len) (the 28 scalar columns first, null as
/// off = u32::MAX), i64 event time.
pub mod wire {
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
            if end > text.len()
                || !text.is_char_boundary(s.off as usize)
                || !text.is_char_boundary(end)
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
