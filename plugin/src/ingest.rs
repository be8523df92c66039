//! The decode stage shared by every front end: input bytes to keyed records, with
//! every rejected input turned into a [`DlqEntry`] that names it and says why.
//!
//! The plugin feeds Fluent Bit chunks, `http-server` request bodies and `json2parquet`
//! file blocks through a [`Decoder`]; all of them get the same mapping rules, the same
//! partition keys and the same error messages.

use crate::config::{Config, ConfigError, FieldSet, FluentMetadata, RecordType};
use crate::convert::ConvertError;
use crate::convert::dynamic::{DType, DynBatchBuilder, EVENT_TIME};
use crate::convert::jsonschema::Fixed;
use crate::decode::flb::{self, ChunkStats, Item};
use crate::decode::frame::{Block, Piece, too_large};
use crate::decode::json::JsonParser;
use crate::decode::otlp;
use crate::dlq::DlqEntry;
use crate::partition::{Context, FieldPath, FieldRef, KeySpec, PartitionKey};
use crate::record::dynamic::{DynRecord, FieldAction, time_ns};
use crate::record::field_rules::FieldRules;
use crate::record::log_map::FastMap;
use crate::record::{LogMapper, LogRules, Record};
use crate::value::{Doc, ValRef};
use arrow_array::RecordBatch;
use std::sync::Arc;

/// Decoding settings, built once per pipeline and shared read-only.
pub struct IngestSpec {
    pub record_type: RecordType,
    pub rules: LogRules,
    pub keyspec: KeySpec,
    pub fluent_metadata: FluentMetadata,
    pub max_record_bytes: usize,
    pub dynamic: DynamicSpec,
}

/// How `RecordType=dynamic` records are kept.
pub struct DynamicSpec {
    /// `IgnoredFields` and `MaskFields`, top-level names and nested paths.
    pub rules: FieldRules,
    /// Whether the rules drop or mask a partition field: keys are then taken from the
    /// record as kept, as for log records, so a masked value never names a folder.
    pub rules_hide_keys: bool,
    /// Fields tried for the event time when the input carries none.
    pub time_keys: Vec<String>,
    /// `JsonSchemaPath`: records that do not fit are rejected.
    pub fixed: Option<Arc<Fixed>>,
}

impl DynamicSpec {
    /// The rules of `IgnoredFields` and `MaskFields`. An entry names a top-level field
    /// (a key with dots in its name included, as sources that flatten nested keys
    /// write them); one with dots, or written as a record accessor
    /// (`$kubernetes['annotations']`), also names the field inside nested maps.
    fn rules(ignored: &FieldSet, masked: &FieldSet) -> Result<FieldRules, ConfigError> {
        let mut rules = FieldRules::new(EVENT_TIME);
        for (set, action, key) in [
            (ignored, FieldAction::Drop, "IgnoredFields"),
            (masked, FieldAction::Mask, "MaskFields"),
        ] {
            for entry in set.iter() {
                if !entry.starts_with('$') {
                    rules.add(std::slice::from_ref(entry), action);
                }
                if entry.starts_with('$') || entry.contains('.') {
                    let path = FieldPath::parse(entry).map_err(|reason| ConfigError::Invalid {
                        key: key.into(),
                        reason,
                    })?;
                    rules.add(path.keys(), action);
                }
            }
        }
        Ok(rules)
    }

    /// The event time: `_event_time` (reserved), the input's own time (Fluent Bit), the
    /// first time key that parses, or now.
    fn event_ns(&self, v: ValRef<'_, '_>, input: Option<i64>) -> Result<i64, String> {
        if let Some(t) = v.get(EVENT_TIME).filter(|t| !t.is_null()) {
            return time_ns(t).ok_or_else(|| {
                format!(
                    "field `{EVENT_TIME}` is reserved for the event time, and {} is not a timestamp",
                    t.to_json()
                )
            });
        }
        Ok(input
            .or_else(|| {
                self.time_keys
                    .iter()
                    .find_map(|k| v.get(k).and_then(time_ns))
            })
            .unwrap_or_else(crate::timeutil::now_ns))
    }
}

impl IngestSpec {
    pub fn from_config(c: &Config) -> Result<IngestSpec, ConfigError> {
        let dynamic = c.record_type == RecordType::Dynamic;
        let keyspec =
            KeySpec::new(&c.partition_fields, dynamic).map_err(|reason| ConfigError::Invalid {
                key: "PartitionFields".into(),
                reason,
            })?;
        let hmac = (c.hmac_key.as_ref()).map(|k| k.expose().as_bytes().to_vec());
        let rules = if dynamic {
            DynamicSpec::rules(&c.ignored_fields, &c.mask_fields)?
        } else {
            FieldRules::new(EVENT_TIME)
        };
        let rules_hide_keys = keyspec
            .record_fields()
            .any(|p| action_on_field(&rules, p) != FieldAction::Keep);
        Ok(IngestSpec {
            record_type: c.record_type,
            rules: LogRules::new(
                c.ignored_fields.clone(),
                c.mask_fields.clone(),
                hmac,
                c.partition_time == crate::config::PartitionTime::Record,
            ),
            keyspec,
            fluent_metadata: c.fluent_metadata,
            max_record_bytes: c.max_record_bytes,
            dynamic: DynamicSpec {
                rules,
                rules_hide_keys,
                time_keys: c.dynamic_time_keys.clone(),
                fixed: c.json_schema.clone(),
            },
        })
    }
}

/// What the rules do to a partition field of dynamic records: at its nested path, or
/// as a top-level key spelled with the dots (which the key takes first).
fn action_on_field(rules: &FieldRules, p: &FieldPath) -> FieldAction {
    match rules.action_on(p.keys()) {
        FieldAction::Keep => rules.action_on(std::slice::from_ref(&p.name().to_string())),
        a => a,
    }
}

impl IngestSpec {
    /// Warnings about the configuration that only the data would show later: a
    /// partition field that IgnoredFields or MaskFields hides has the same value in
    /// every record (the missing-field default, or `*`), so it splits no files.
    pub fn notices(&self) -> Vec<String> {
        self.keyspec
            .fields()
            .filter_map(|(name, f)| {
                let action = match f {
                    FieldRef::Col(c) => self.rules.action_on(c.name()),
                    FieldRef::Arg(a) => self.rules.action_on(a),
                    FieldRef::Field(p) => action_on_field(&self.dynamic.rules, p),
                    FieldRef::Tag | FieldRef::TagPart(_) | FieldRef::Meta(_) => FieldAction::Keep,
                };
                let (by, value) = match action {
                    FieldAction::Keep => return None,
                    FieldAction::Drop => ("dropped by IgnoredFields", "its missing-field default"),
                    FieldAction::Mask => ("masked by MaskFields", "`*`"),
                };
                Some(format!(
                    "PartitionFields `{name}` is {by}: every record's key has {value} there, so it splits no files"
                ))
            })
            .collect()
    }

    /// Logs [`IngestSpec::notices`] as warnings, at start.
    pub fn log_notices(&self, log: &dyn crate::logging::Logger) {
        for n in self.notices() {
            log.log(crate::logging::Level::Warn, &n);
        }
    }
}

/// Records of one submission, grouped by partition key, plus what was rejected.
#[derive(Default, Debug)]
pub struct KeyedBatch {
    pub groups: Vec<(PartitionKey, Vec<Record>)>,
    index: FastMap<Box<str>, usize>,
    /// The group the last record went to: the next one usually goes there too.
    last: usize,
    records: usize,
    bytes: usize,
    pub rejected: Vec<DlqEntry>,
}

impl KeyedBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, key: &str, rec: Record) {
        self.bytes += rec.mem_size();
        self.records += 1;
        // Consecutive records mostly share a key (a whole submission often has one):
        // comparing with the last record's key spares hashing this one.
        if let Some((k, recs)) = self.groups.get_mut(self.last)
            && crate::value::same_key(k.as_str(), key)
        {
            recs.push(rec);
            return;
        }
        match self.index.get(key) {
            Some(&i) => {
                self.last = i;
                self.groups[i].1.push(rec)
            }
            None => {
                self.last = self.groups.len();
                self.index.insert(key.into(), self.groups.len());
                self.groups.push((PartitionKey::from_text(key), vec![rec]));
            }
        }
    }

    pub fn reject(&mut self, e: DlqEntry) {
        self.rejected.push(e);
    }

    /// Counts a record the decoder consumed itself (see [`Decoder::inferring`]).
    pub fn count(&mut self) {
        self.records += 1;
    }

    /// Records accepted for the buffer.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Approximate memory of the records.
    pub fn mem_size(&self) -> usize {
        self.bytes
    }

    /// Appends another batch (used to merge per-thread results in order).
    pub fn append(&mut self, other: KeyedBatch) {
        for (k, recs) in other.groups {
            for r in recs {
                self.push(k.as_str(), r);
            }
        }
        self.rejected.extend(other.rejected);
    }

    /// Takes the grouped records out, leaving rejected entries in place.
    pub fn take_groups(&mut self) -> Vec<(PartitionKey, Vec<Record>)> {
        self.index.clear();
        self.records = 0;
        self.bytes = 0;
        std::mem::take(&mut self.groups)
    }
}

impl DynOut {
    /// Whether records stay in the batch (no inference, no building).
    fn keeps_records(&self) -> bool {
        self.infer.is_none() && self.build.is_none()
    }

    /// Takes one record in. A record that fits the schema being built leaves the
    /// inferred type as it is, so only the others are absorbed into it (json2parquet's
    /// check that its sample's schema covers every record).
    fn take(&mut self, event_ns: i64, v: ValRef<'_, '_>) {
        match (&mut self.infer, &mut self.build) {
            (Some((t, nested_json)), Some(b)) => {
                if !b.push_fits(event_ns, v, *nested_json) {
                    t.absorb_fields(v, *nested_json);
                }
            }
            (Some((t, nested_json)), None) => t.absorb_fields(v, *nested_json),
            (None, Some(b)) => b.push(event_ns, Some(v)),
            (None, None) => {}
        }
    }
}

/// Why one JSON record was rejected.
enum Failure {
    Json(crate::decode::json::JsonError),
    Record(String),
}

/// Where a decoder puts dynamic records: into the batch, as records for the buffer
/// (the default), or, for json2parquet's single file, into a schema being inferred
/// and/or straight into Arrow columns of a known schema (no intermediate record).
#[derive(Default)]
struct DynOut {
    infer: Option<(DType, bool)>,
    build: Option<Box<DynBatchBuilder>>,
}

/// Per-thread decoder with warm buffers.
pub struct Decoder<'s> {
    spec: &'s IngestSpec,
    mapper: LogMapper<'s>,
    json: JsonParser,
    doc: Doc<'static>,
    key: String,
    time: String,
    time_fmt: crate::timeutil::TimeFormatter,
    keyed: bool,
    scratch: Vec<u8>,
    dyn_out: DynOut,
    /// The HEC reader's buffers, made on the first HEC body.
    hec: Option<Box<crate::decode::hec::HecReader>>,
}

impl<'s> Decoder<'s> {
    pub fn new(spec: &'s IngestSpec) -> Self {
        Decoder {
            spec,
            mapper: LogMapper::new(&spec.rules),
            json: JsonParser::new(),
            doc: Doc::new(),
            key: String::new(),
            time: String::new(),
            time_fmt: Default::default(),
            keyed: true,
            scratch: Vec::new(),
            dyn_out: DynOut::default(),
            hec: None,
        }
    }

    /// Files every record under one empty key, keeping input order (single-file output).
    pub fn unkeyed(mut self) -> Self {
        self.keyed = false;
        self
    }

    /// Dynamic records only widen a schema (read it with [`Decoder::take_schema`]);
    /// they are counted in the batch, not kept.
    pub fn inferring(mut self, nested_json: bool) -> Self {
        self.dyn_out.infer = Some((DType::Struct { fields: Vec::new() }, nested_json));
        self
    }

    /// Dynamic records go straight into Arrow columns of `b`'s schema (read them with
    /// [`Decoder::take_batch`]); they are counted in the batch, not kept.
    pub fn building(mut self, b: DynBatchBuilder) -> Self {
        self.dyn_out.build = Some(Box::new(b));
        self
    }

    /// The schema inferred since the last call.
    pub fn take_schema(&mut self) -> Option<DType> {
        let (t, _) = self.dyn_out.infer.as_mut()?;
        Some(std::mem::replace(t, DType::Struct { fields: Vec::new() }))
    }

    /// The rows built since the last call, as one batch.
    pub fn take_batch(&mut self) -> Result<Option<RecordBatch>, ConvertError> {
        match &mut self.dyn_out.build {
            Some(b) if b.rows() > 0 => b.finish().map(Some),
            _ => Ok(None),
        }
    }

    /// Maps one decoded object to a record and files it under its key.
    pub fn value(
        &mut self,
        v: ValRef<'_, '_>,
        ctx: &Context<'_, '_>,
        event_ns: Option<i64>,
        out: &mut KeyedBatch,
    ) -> Result<(), String> {
        match self.spec.record_type {
            RecordType::Dynamic => {
                let d = &self.spec.dynamic;
                if v.kind() != crate::value::Kind::Map {
                    return Err(format!("expected an object, found {}", v.kind().name()));
                }
                if let Some(f) = &d.fixed {
                    f.validate(v)?;
                }
                let ev = d.event_ns(v, event_ns)?;
                if !self.dyn_out.keeps_records() {
                    out.count();
                    if d.rules.is_empty() {
                        self.dyn_out.take(ev, v);
                    } else {
                        let rec = DynRecord::filtered(v, ev, &mut self.scratch, &d.rules);
                        let mut doc = Doc::new();
                        rec.decode_into(&mut doc)?;
                        if let Some(root) = doc.root() {
                            self.dyn_out.take(ev, root);
                        }
                    }
                    return Ok(());
                }
                let rec = DynRecord::filtered(v, ev, &mut self.scratch, &d.rules);
                if self.keyed && d.rules_hide_keys {
                    let mut doc = Doc::new();
                    rec.decode_into(&mut doc)?;
                    if let Some(kept) = doc.root() {
                        self.spec.keyspec.render_dynamic(kept, ctx, &mut self.key);
                    }
                } else if self.keyed {
                    self.spec.keyspec.render_dynamic(v, ctx, &mut self.key);
                } else {
                    self.key.clear();
                }
                out.push(&self.key, Record::Dynamic(rec));
            }
            RecordType::Log => {
                if let Some(tag) = ctx.tag {
                    self.mapper.context_arg("fluent-tag", tag);
                    if let Some(ns) = event_ns {
                        self.time.clear();
                        self.time_fmt.write(ns, &mut self.time);
                        self.mapper.context_arg("fluent-time", &self.time);
                    }
                }
                if let (Some(meta), FluentMetadata::Args) = (ctx.meta, self.spec.fluent_metadata) {
                    self.mapper.context_flatten("meta", meta);
                }
                let rec = match self.mapper.map_object(v, event_ns) {
                    Ok(r) => r,
                    Err(e) => {
                        // Drop any context already added for this record.
                        let _ = self.mapper.finish(None);
                        return Err(e);
                    }
                };
                if self.keyed {
                    self.spec.keyspec.render_log(&rec, ctx, &mut self.key);
                } else {
                    self.key.clear();
                }
                out.push(&self.key, Record::Log(rec));
            }
        }
        Ok(())
    }

    /// Decodes one JSON record. `input` is modified in place (unescaping).
    pub fn json(
        &mut self,
        input: &mut [u8],
        source: impl Fn() -> String,
        out: &mut KeyedBatch,
    ) -> bool {
        let len = input.len();
        self.json_in(input, len, &Context::default(), None, source, out)
    }

    /// [`Decoder::json`] for a record that came with a context: a Fluent Bit event's
    /// tag and time. The record is `buf[..len]`; when at least [`json::PADDING`] bytes
    /// follow it (as in a framed block), it is parsed where it is, without a copy.
    ///
    /// [`json::PADDING`]: crate::decode::json::PADDING
    fn json_in(
        &mut self,
        buf: &mut [u8],
        len: usize,
        ctx: &Context<'_, '_>,
        event_ns: Option<i64>,
        source: impl Fn() -> String,
        out: &mut KeyedBatch,
    ) -> bool {
        let padded = buf.len().saturating_sub(len) >= crate::decode::json::PADDING;
        let Some(input) = buf.get(..len) else {
            out.reject(DlqEntry::new(
                source(),
                "internal: record outside its buffer".to_string(),
                b"",
            ));
            return false;
        };
        if input.len() > self.spec.max_record_bytes {
            out.reject(DlqEntry::new(
                source(),
                too_large(self.spec.max_record_bytes, input.len()),
                &input[..input.len().min(4096)],
            ));
            return false;
        }
        // simd-json unescapes strings in place; without a backslash the input stays as
        // it is, so the copy for the DLQ is only needed when there are escapes.
        let original = memchr::memchr(b'\\', input).map(|_| input.to_vec());
        let result = {
            let mut doc = std::mem::take(&mut self.doc).recycle();
            let parsed = match padded {
                true => self.json.parse_padded_into(&mut *buf, len, &mut doc),
                false => self.json.parse_into(&mut buf[..len], &mut doc),
            };
            let r = match parsed {
                Err(e) => Err(Failure::Json(e)),
                Ok(()) => match doc.root() {
                    Some(root) => self
                        .value(root, ctx, event_ns, out)
                        .map_err(Failure::Record),
                    None => Err(Failure::Record("empty input".to_string())),
                },
            };
            self.doc = doc.recycle();
            r
        };
        match result {
            Ok(()) => true,
            Err(f) => {
                let raw = original.as_deref().unwrap_or(&buf[..len]);
                let reason = match f {
                    Failure::Record(reason) => reason,
                    Failure::Json(e) => e.refine(raw).to_string(),
                };
                out.reject(DlqEntry::new(source(), reason, raw));
                false
            }
        }
    }

    /// Decodes every record of a framed block; framing errors become DLQ entries.
    /// `source` names a record by its line.
    pub fn json_block(
        &mut self,
        block: &mut Block,
        source: impl Fn(u64) -> String,
        out: &mut KeyedBatch,
    ) {
        // Padding after the last record, so that every record is parsed in place; the
        // records after a record are its padding (see `json_in`).
        let data_len = block.data.len();
        block
            .data
            .resize(data_len + crate::decode::json::PADDING, b' ');
        let ctx = Context::default();
        for piece in std::mem::take(&mut block.pieces) {
            match piece {
                Piece::Record {
                    start, end, line, ..
                } => match block.data.get_mut(start..) {
                    Some(rec) if start <= end && end <= data_len => {
                        self.json_in(rec, end - start, &ctx, None, || source(line), out);
                    }
                    _ => out.reject(DlqEntry::new(
                        source(line),
                        "internal: record outside its block".to_string(),
                        b"",
                    )),
                },
                Piece::Error {
                    line, reason, raw, ..
                } => out.reject(DlqEntry::new(source(line), reason, &raw)),
            }
        }
        block.data.truncate(data_len);
    }

    /// The log records of an OTLP `ExportLogsServiceRequest`, each flattened (see
    /// [`crate::decode::otlp`]) and then taken as one JSON record. A record that cannot
    /// be read is rejected under its place in the request; a body that is not an OTLP
    /// request at all is the `Err`, and nothing of it is taken.
    /// `origin` names a record for the DLQ from its place in the request (the
    /// http-server uses the place as it is; json2parquet puts the file and line first).
    pub fn otlp_logs(
        &mut self,
        body: &[u8],
        encoding: crate::decode::otlp::Encoding,
        origin: impl Fn(&str) -> String,
        out: &mut KeyedBatch,
    ) -> Result<(), String> {
        let records = crate::decode::otlp::log_records(body, encoding)?;
        self.flat_records(records, origin, out);
        Ok(())
    }

    /// Decodes a Splunk HEC event body (see [`crate::decode::hec`]): each event becomes
    /// a record, a bad one a DLQ entry named by `origin` of its place (`event[3]`).
    /// `defaults` are the request's metadata, for events that do not set their own.
    /// `Err` when the body holds no event at all.
    pub fn hec_events(
        &mut self,
        body: &[u8],
        defaults: &[(String, String)],
        origin: impl Fn(&str) -> String,
        out: &mut KeyedBatch,
    ) -> Result<(), String> {
        let mut hec = self.hec.take().unwrap_or_default();
        let read = hec.read(body, defaults, |name, text, rec| {
            self.hec_record(origin(name), text, rec, out)
        });
        self.hec = Some(hec);
        read
    }

    /// Decodes a Splunk HEC raw body: each line becomes a record (`message`, with the
    /// request's `meta`), a line that is not UTF-8 a DLQ entry. `Err` when the body
    /// holds no line at all.
    pub fn hec_raw(
        &mut self,
        body: &[u8],
        meta: &[(String, String)],
        origin: impl Fn(&str) -> String,
        out: &mut KeyedBatch,
    ) -> Result<(), String> {
        crate::decode::hec::read_raw(body, meta, |name, text, rec| {
            // A line that is not UTF-8 is dead-lettered as text, its bad bytes replaced.
            let lossy = rec
                .is_err()
                .then(|| String::from_utf8_lossy(text).into_owned());
            let text = lossy.as_deref().map_or(text, str::as_bytes);
            self.hec_record(origin(name), text, rec, out)
        })
    }

    /// Takes one HEC record (an event or a raw line) in as any JSON record is taken:
    /// the size limit, the mapping, and the DLQ with its text for a bad one.
    fn hec_record(
        &mut self,
        source: String,
        text: &[u8],
        rec: Result<ValRef<'_, '_>, String>,
        out: &mut KeyedBatch,
    ) {
        let max = self.spec.max_record_bytes;
        let taken = match rec {
            _ if text.len() > max => Err(too_large(max, text.len())),
            Ok(root) => self.value(root, &Context::default(), None, out),
            Err(reason) => Err(reason),
        };
        if let Err(reason) = taken {
            // As for JSON records: an oversized one keeps only its start.
            let keep = if text.len() > max { 4096 } else { text.len() };
            out.reject(DlqEntry::new(source, reason, &text[..keep.min(text.len())]));
        }
    }

    /// Flat records mapped from another format: each takes the JSON path.
    fn flat_records(
        &mut self,
        records: Vec<crate::decode::FlatRecord>,
        origin: impl Fn(&str) -> String,
        out: &mut KeyedBatch,
    ) {
        for r in records {
            match r.json {
                Ok(json) => {
                    let mut bytes = json.into_bytes();
                    self.json(&mut bytes, || origin(&r.source), out);
                }
                Err(bad) => out.reject(DlqEntry::new(
                    origin(&r.source),
                    bad.reason,
                    bad.raw.as_bytes(),
                )),
            }
        }
    }

    /// Decodes msgpack records: a stream of maps, or arrays of maps (HTTP bodies).
    /// A malformed tail is one rejected entry.
    pub fn msgpack_records(&mut self, bytes: &[u8], out: &mut KeyedBatch) {
        let mut r = crate::decode::msgpack::Reader::new(bytes);
        let mut doc = std::mem::take(&mut self.doc).recycle();
        let mut n = 0;
        let mut failures = Vec::new();
        while !r.is_empty() {
            let start = r.pos();
            doc.clear();
            if let Err(e) = r.value(Some(&mut doc)) {
                failures.push(DlqEntry::new(
                    format!("record {}", n + 1),
                    e.to_string(),
                    &bytes[start..],
                ));
                break;
            }
            let Some(root) = doc.root() else { break };
            let items: Vec<_> = if root.kind() == crate::value::Kind::Array {
                root.items().collect()
            } else {
                vec![root]
            };
            for v in items {
                n += 1;
                if let Err(e) = self.value(v, &Context::default(), None, out) {
                    let mut raw = Vec::new();
                    crate::decode::msgpack::write::value(&mut raw, v);
                    failures.push(DlqEntry::new(format!("record {n}"), e, &raw));
                }
            }
        }
        for f in failures {
            out.reject(f);
        }
        self.doc = doc.recycle();
    }

    /// Decodes a Fluent Bit chunk: good events become records, bad ones DLQ entries.
    pub fn flb_chunk(&mut self, chunk: &[u8], tag: &str, out: &mut KeyedBatch) -> ChunkStats {
        let mut doc = std::mem::take(&mut self.doc).recycle();
        let mut failures: Vec<DlqEntry> = Vec::new();
        let stats = flb::walk(chunk, &mut doc, |item| match item {
            Item::Event(ev) => {
                // An OpenTelemetry log record (in_opentelemetry) becomes the flat record
                // POST /v1/logs makes of it; its metadata is in the record then.
                let otlp = ev.group.and_then(|g| {
                    otlp::fluent_bit_record(g.meta, g.attributes, ev.meta, ev.body, ev.time_ns)
                });
                if let Some(rec) = otlp {
                    let ctx = Context {
                        tag: Some(tag),
                        meta: None,
                    };
                    let source = || format!("event {} of chunk (tag {tag})", ev.index);
                    let mut bytes = rec.into_bytes();
                    let len = bytes.len();
                    self.json_in(&mut bytes, len, &ctx, Some(ev.time_ns), source, out);
                    return;
                }
                let ctx = Context {
                    tag: Some(tag),
                    meta: Some(ev.meta),
                };
                if let Err(e) = self.value(ev.body, &ctx, Some(ev.time_ns), out) {
                    let mut raw = Vec::new();
                    crate::decode::msgpack::write::value(&mut raw, ev.body);
                    failures.push(DlqEntry::new(
                        format!("event {} of chunk (tag {tag})", ev.index),
                        e,
                        &raw,
                    ));
                }
            }
            Item::Bad { reason, raw, .. } => {
                failures.push(DlqEntry::new(format!("chunk (tag {tag})"), reason, raw));
            }
        });
        for f in failures {
            out.reject(f);
        }
        self.doc = doc.recycle();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;

    /// The partition key of one dynamic record under `settings`.
    fn key(settings: &[(&str, &str)], line: &str) -> String {
        let mut b = ConfigBuilder::new();
        b.set("RecordType", "dynamic").unwrap();
        b.set_all(settings).unwrap();
        let spec = IngestSpec::from_config(&b.build().unwrap()).unwrap();
        let mut d = Decoder::new(&spec);
        let mut batch = KeyedBatch::new();
        let mut input = line.as_bytes().to_vec();
        assert!(d.json(&mut input, || "line 1".into(), &mut batch));
        batch.groups[0].0.as_str().to_string()
    }

    /// Records go to their key's group whether or not the key is the last record's,
    /// and a batch emptied by `take_groups` starts its groups over.
    #[test]
    fn records_are_grouped_by_key_in_any_order() {
        use crate::record::log::{LogBuilder, Str};
        let rec = |i: usize| {
            let mut b = LogBuilder::new();
            b.set(Str::Message, &i.to_string());
            Record::Log(b.finish())
        };
        let groups = |batch: &mut KeyedBatch| -> Vec<(String, Vec<String>)> {
            batch
                .take_groups()
                .into_iter()
                .map(|(k, recs)| {
                    let msgs = recs
                        .iter()
                        .map(|r| {
                            r.as_log()
                                .and_then(|l| l.get(Str::Message))
                                .unwrap()
                                .to_string()
                        })
                        .collect();
                    (k.as_str().to_string(), msgs)
                })
                .collect()
        };
        let mut batch = KeyedBatch::new();
        let keys = ["a/1", "a/1", "b/2", "a/1", "c/3", "b/2", "b/2"];
        for (i, k) in keys.iter().enumerate() {
            batch.push(k, rec(i));
        }
        assert_eq!(batch.len(), 7);
        let want = |v: &[(&str, &[usize])]| -> Vec<(String, Vec<String>)> {
            v.iter()
                .map(|(k, is)| (k.to_string(), is.iter().map(|i| i.to_string()).collect()))
                .collect()
        };
        assert_eq!(
            groups(&mut batch),
            want(&[("a/1", &[0, 1, 3]), ("b/2", &[2, 5, 6]), ("c/3", &[4])])
        );
        // The last key is "b/2", but the emptied batch has no group for it.
        batch.push("c/3", rec(7));
        batch.push("b/2", rec(8));
        assert_eq!(groups(&mut batch), want(&[("c/3", &[7]), ("b/2", &[8])]));
    }

    /// A framed block's records are parsed in place, each padded by the records after
    /// it: the records and dead letters are those of parsing each line on its own
    /// (a copy), for escapes, root scalars, bad and cut-off JSON, and a block whose
    /// last record ends exactly at the block's end.
    #[test]
    fn block_records_parsed_in_place_match_lines_parsed_alone() {
        use crate::decode::frame::{Layout, frame_body};
        let lines: [&[u8]; 9] = [
            br#"{"time":"2026-11-29T01:02:03Z","message":"a \"q\" \u00e9\n","level":"warn"}"#,
            br#"{"time":1764378123,"message":"p","n":12345678901234,"f":-1.5e3,"z":null}"#,
            b"7",
            br#""a string""#,
            br#"{"message": "cut off"#,
            br#"{"message":"x"} trailing"#,
            br#"{"nested":{"a":[1,2,{"b":"c\/d"}]},"message":"m","time":"2026-11-29"}"#,
            b"{\"message\":\"bad utf8 \xff\"}",
            br#"{"message":"last","time":"2026-11-29T01:02:03.5+01:00"}"#,
        ];
        for kind in ["log", "dynamic"] {
            let mut b = ConfigBuilder::new();
            b.set("RecordType", kind).unwrap();
            let spec = IngestSpec::from_config(&b.build().unwrap()).unwrap();
            let summary = |batch: &mut KeyedBatch| {
                let rejected: Vec<_> = batch
                    .rejected
                    .iter()
                    .map(|e| (e.source.clone(), e.reason.clone(), e.raw.clone()))
                    .collect();
                let records: Vec<_> = batch
                    .take_groups()
                    .into_iter()
                    .flat_map(|(k, recs)| recs.into_iter().map(move |r| (k.clone(), r.to_json())))
                    .collect();
                (records, rejected)
            };
            let mut alone = KeyedBatch::new();
            let mut d = Decoder::new(&spec);
            for (i, l) in lines.iter().enumerate() {
                let mut bytes = l.to_vec();
                d.json(&mut bytes, || format!("line {}", i + 1), &mut alone);
            }
            let body = lines.join(&b'\n');
            let mut block = frame_body(body.clone(), Layout::Ndjson, 1 << 20);
            let mut framed = KeyedBatch::new();
            let mut d = Decoder::new(&spec);
            d.json_block(&mut block, |line| format!("line {line}"), &mut framed);
            let want = summary(&mut alone);
            assert_eq!((want.0.len(), want.1.len()), (4, 5), "{kind}: {:?}", want.1);
            assert_eq!(summary(&mut framed), want, "{kind}");
            assert_eq!(
                block.data.len(),
                body.len(),
                "the padding is taken off again"
            );
        }
    }

    /// HEC events take the same checks as JSON records: the size limit, the mapping
    /// (here the dynamic time key), and a bad one is dead-lettered by its place with its
    /// text while the others are kept.
    #[test]
    fn hec_events_are_checked_like_json_records() {
        let mut b = ConfigBuilder::new();
        b.set("RecordType", "dynamic").unwrap();
        b.set("MaxRecordBytes", "1024").unwrap();
        let spec = IngestSpec::from_config(&b.build().unwrap()).unwrap();
        let mut d = Decoder::new(&spec);
        let mut batch = KeyedBatch::new();
        let big = format!(r#"{{"event":"{}"}}"#, "x".repeat(2000));
        let body = format!(
            r#"{{"event":{{"a":1}},"time":1.5}} {big} {{"event":{{"_event_time":"never"}}}} {{"event":"ok"}}"#
        );
        d.hec_events(body.as_bytes(), &[], |at| format!("req {at}"), &mut batch)
            .unwrap();
        assert_eq!(batch.len(), 2);
        let dead: Vec<(&str, &str, usize)> = batch
            .rejected
            .iter()
            .map(|e| (e.source.as_str(), e.reason.as_str(), e.raw.len()))
            .collect();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].0, "req event[1]");
        assert!(
            dead[0]
                .1
                .starts_with("record is larger than the limit of 1024 bytes")
        );
        assert_eq!(dead[0].2, big.len(), "under 4 KiB: kept whole");
        assert_eq!(dead[1].0, "req event[2]");
        assert!(dead[1].1.contains("_event_time"), "{}", dead[1].1);
        assert_eq!(dead[1].2, r#"{"event":{"_event_time":"never"}}"#.len());
    }

    #[test]
    fn a_masked_or_dropped_partition_field_never_names_a_folder_with_its_value() {
        let line = r#"{"tenant":"acme","user":{"email":"a@b.c","id":7}}"#;
        let fields = ("PartitionFields", "tenant,user.email");
        assert_eq!(key(&[fields], line), "acme:a@b.c");
        // Masked: `*`, as log records get; dropped (or inside a dropped map): the
        // default of a missing field.
        assert_eq!(key(&[fields, ("MaskFields", "user.email")], line), "acme:*");
        assert_eq!(
            key(&[fields, ("IgnoredFields", "$user['email']")], line),
            "acme:dynamic_user.email"
        );
        assert_eq!(
            key(&[fields, ("IgnoredFields", "user")], line),
            "acme:dynamic_user.email"
        );
        // Rules on other fields leave the key alone.
        assert_eq!(
            key(&[fields, ("MaskFields", "user.id")], line),
            "acme:a@b.c"
        );
    }

    /// UseHMAC with HmacKey reaches the mapping: the `hmac` column is the keyed hash a
    /// consumer recomputes from the stored record; without UseHMAC it stays empty.
    #[test]
    fn use_hmac_fills_the_hmac_column_with_the_configured_key() {
        let hmac_of = |settings: &[(&str, &str)]| {
            let spec = IngestSpec::from_config(&Config::from_pairs(settings).unwrap()).unwrap();
            let mut d = Decoder::new(&spec);
            let mut batch = KeyedBatch::new();
            let mut input = br#"{"message":"m","time":"2026-01-01T00:00:00Z"}"#.to_vec();
            assert!(d.json(&mut input, || "line 1".into(), &mut batch));
            let rec = batch.groups[0].1[0].as_log().unwrap().clone();
            let mut enc = Vec::new();
            crate::record::canonical::encode(&rec, &mut enc);
            (rec.req(crate::record::log::Str::Hmac).to_string(), enc)
        };
        let (hmac, enc) = hmac_of(&[("UseHMAC", "true"), ("HmacKey", "k1")]);
        assert_eq!(hmac, crate::record::canonical::hmac_hex(b"k1", &enc));
        assert_eq!(hmac_of(&[("HmacKey", "k1")]).0, "", "UseHMAC is off");
    }

    /// FluentMetadata: a Fluent Bit event's metadata goes to args as `meta-*` by
    /// default, and nowhere with `drop`, while the record's own fields stay (the smallest
    /// chunk captured from Fluent Bit 5.1.1, metadata `{"mk":"mv","num":5}`).
    #[test]
    fn fluent_metadata_goes_to_args_or_is_dropped() {
        let chunk = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tools/flb-host/fixtures/flb-5.1.1/dummy-metadata-single.chunk"
        ))
        .unwrap();
        let args_of = |setting: Option<&str>| {
            let mut b = ConfigBuilder::new();
            if let Some(v) = setting {
                b.set("FluentMetadata", v).unwrap();
            }
            let spec = IngestSpec::from_config(&b.build().unwrap()).unwrap();
            let mut d = Decoder::new(&spec);
            let mut batch = KeyedBatch::new();
            d.flb_chunk(&chunk, "meta.test", &mut batch);
            assert_eq!(batch.len(), 1);
            let rec = batch.groups[0].1[0].as_log().unwrap().clone();
            assert_eq!(rec.get(crate::record::log::Str::Message), Some("hi"));
            let mut args: Vec<(String, String)> = rec
                .args()
                .filter(|(k, _)| !k.starts_with("fluent-"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            args.sort();
            args
        };
        let meta = vec![
            ("meta-mk".to_string(), "mv".to_string()),
            ("meta-num".to_string(), "5".to_string()),
        ];
        assert_eq!(args_of(None), meta);
        assert_eq!(args_of(Some("args")), meta);
        assert_eq!(args_of(Some("drop")), vec![]);
    }

    fn notices(settings: &[(&str, &str)]) -> Vec<String> {
        IngestSpec::from_config(&Config::from_pairs(settings).unwrap())
            .unwrap()
            .notices()
    }

    /// A hidden partition field is said at start, for either record type; the tag and
    /// fields the rules leave alone are not.
    #[test]
    fn hidden_partition_fields_are_warned_about() {
        assert!(notices(&[]).is_empty());
        let log = notices(&[
            ("PartitionFields", "business_capability,args.user,tag,level"),
            ("MaskFields", "Business-Capability"),
            ("IgnoredFields", "user,message"),
        ]);
        assert_eq!(
            log,
            [
                "PartitionFields `business_capability` is masked by MaskFields: every record's key has `*` there, so it splits no files",
                "PartitionFields `args.user` is dropped by IgnoredFields: every record's key has its missing-field default there, so it splits no files",
            ]
        );
        let dynamic = notices(&[
            ("RecordType", "dynamic"),
            ("PartitionFields", "tenant,user.email,$k8s['ns'],a.b"),
            ("MaskFields", "user.email,a.b"),
            ("IgnoredFields", "k8s"),
        ]);
        assert_eq!(dynamic.len(), 3, "{dynamic:?}");
        assert!(dynamic[0].starts_with("PartitionFields `user.email` is masked"));
        assert!(dynamic[1].starts_with("PartitionFields `$k8s['ns']` is dropped"));
        assert!(dynamic[2].starts_with("PartitionFields `a.b` is masked"));
    }
}
