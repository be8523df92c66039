//! Building a [`LogRecord`] field by field, as the decoders find the fields.

use super::{LogRecord, N_STR, Parts, Span, Str};

/// Reusable builder. Holding one per decoding thread keeps its scratch vectors warm, so
/// building a record allocates only the record's own arena and item list.
#[derive(Default)]
pub struct LogBuilder {
    text: String,
    spans: Vec<Span>,
    /// [`scalar_mask`](super::scalar_mask) of `spans`, kept as columns are set.
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
