//! Dynamic records to Parquet: a schema inferred from every record (not a sample), widened
//! in a fixed order, kept per key so that files of one key stay compatible.
//!
//! **Widening order**: null → boolean → integer → float → string. A field seen as an
//! integer and later as a float becomes a float; as anything and later a string, or as
//! a scalar and later an object or array (or the reverse), a string holding each value's
//! JSON text. Booleans widened to numbers are 0/1. Integers beyond 64-bit signed range
//! count as floats. Objects become structs (their fields merged the same way), or JSON
//! text with `DynamicNested=json`; arrays become lists of their merged item type.
//!
//! Every key ever seen is a column; columns keep their first-seen order and new ones are
//! appended (nullable). The event time is the first column, `_event_time`,
//! TIMESTAMP(MICROS, UTC).

use super::{ConvertError, FileLayout, FileStart, ParquetOptions};
use crate::partition::PartitionKey;
use crate::record::dynamic::DynRecord;
use crate::record::prefetch::prefetched;
use crate::value::{Doc, Kind, ValRef};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use std::sync::Arc;

mod columns;
mod dtype;
mod unplaced;

use columns::{Col, Matcher};
pub use dtype::DType;

/// The event-time column every dynamic file starts with.
pub const EVENT_TIME: &str = "_event_time";
/// Keys outside a JSON Schema, as one JSON object.
pub const EXTRA: &str = "_extra";

/// How records are turned into columns.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Inferred from the data and widened over time.
    Inferred { nested_json: bool },
    /// Fixed by a JSON Schema; other keys go to `_extra`.
    Fixed(Arc<super::jsonschema::Fixed>),
    /// The JSON Schema's columns with their types, then a column for each other key,
    /// inferred as [`Shape::Inferred`] does (`JsonSchemaUnknownKeys=columns`).
    /// Keys inside the schema's objects that it does not name still go to `_extra`.
    Pinned {
        schema: Arc<super::jsonschema::Fixed>,
        nested_json: bool,
    },
}

impl Shape {
    /// The shape the configuration asks for (`JsonSchemaPath`, `JsonSchemaUnknownKeys`,
    /// `DynamicNested`): the one place the plugin, the server and json2parquet decide it.
    pub fn of(cfg: &crate::config::Config) -> Shape {
        let nested_json = cfg.dynamic_nested == crate::config::DynamicNested::Json;
        match &cfg.json_schema {
            Some(f) if cfg.json_schema_unknown_keys == crate::config::UnknownKeys::Columns => {
                Shape::Pinned {
                    schema: f.clone(),
                    nested_json,
                }
            }
            Some(f) => Shape::Fixed(f.clone()),
            None => Shape::Inferred { nested_json },
        }
    }

    /// Whether the schema changes with the data, and is therefore kept per key.
    pub fn evolves(&self) -> bool {
        !matches!(self, Shape::Fixed(_))
    }

    /// How inference types nested objects, when the shape infers at all.
    pub fn inference(&self) -> Option<bool> {
        match self {
            Shape::Fixed(_) => None,
            Shape::Inferred { nested_json } | Shape::Pinned { nested_json, .. } => {
                Some(*nested_json)
            }
        }
    }

    /// Whether files have the `_extra` column.
    pub fn has_extra(&self) -> bool {
        !matches!(self, Shape::Inferred { .. })
    }

    /// The part of an inferred schema that is kept and widened per key: all of it, or
    /// with a pinning schema only the columns it does not fix.
    pub fn evolving_part(&self, inferred: DType) -> DType {
        match self {
            Shape::Pinned { schema, .. } => schema.unpinned(inferred),
            _ => inferred,
        }
    }

    /// The schema of the files, from what inference made of the records (unused when
    /// the schema is fixed).
    pub fn file_schema(&self, inferred: DType) -> DType {
        match self {
            Shape::Fixed(f) => f.dtype.clone(),
            Shape::Inferred { .. } => inferred,
            Shape::Pinned { schema, .. } => schema.pin(&inferred),
        }
    }
}

/// The schema of a batch: the key's stored schema widened by every record of the batch.
pub fn infer(
    records: &[&DynRecord],
    prior: Option<&DType>,
    nested_json: bool,
) -> Result<DType, ConvertError> {
    let mut t = prior
        .cloned()
        .unwrap_or(DType::Struct { fields: Vec::new() });
    if !matches!(t, DType::Struct { .. }) {
        t = DType::Struct { fields: Vec::new() };
    }
    let mut doc = Doc::new();
    for r in prefetched(records) {
        r.decode_into(&mut doc).map_err(ConvertError::Other)?;
        if let Some(root) = doc.root() {
            t.absorb_fields(root, nested_json);
        }
        doc = doc.recycle();
    }
    Ok(t)
}

/// The Arrow schema of a dynamic file.
pub fn arrow_schema(t: &DType, extra: bool) -> Arc<Schema> {
    let mut fields = vec![Field::new(EVENT_TIME, DType::Timestamp.arrow(), false)];
    if let DType::Struct { fields: f } = t {
        for (n, ty) in f {
            if n != EVENT_TIME {
                fields.push(Field::new(n, ty.arrow(), true));
            }
        }
    }
    if extra {
        fields.push(Field::new(EXTRA, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// Builds Arrow batches of one schema from record values, row by row. json2parquet feeds
/// it parsed documents directly; the flusher feeds stored records.
pub struct DynBatchBuilder {
    /// Columns of the schema, without the event time.
    fields: Vec<(String, DType)>,
    time: Col,
    cols: Vec<Col>,
    /// `_extra` (fixed schemas only).
    extra: Option<Col>,
    /// The columns whose values can hold keys their type does not name (fixed schemas
    /// only): what they leave out goes to `_extra` too.
    nested: Vec<usize>,
    schema: Arc<Schema>,
    scratch: String,
    rows: usize,
    matcher: Matcher,
}

impl DynBatchBuilder {
    pub fn new(t: &DType, fixed: bool) -> Result<DynBatchBuilder, ConvertError> {
        let DType::Struct { fields } = t else {
            return Err(ConvertError::Other(
                "a dynamic schema must be an object".into(),
            ));
        };
        let fields: Vec<(String, DType)> = fields
            .iter()
            .filter(|(n, _)| n != EVENT_TIME)
            .cloned()
            .collect();
        Ok(DynBatchBuilder {
            matcher: Matcher::new(&fields),
            time: Col::new(&DType::Timestamp),
            cols: fields.iter().map(|(_, t)| Col::new(t)).collect(),
            extra: fixed.then(|| Col::new(&DType::Str)),
            nested: match fixed {
                true => (0..fields.len())
                    .filter(|&i| unplaced::can_hold_unnamed(&fields[i].1))
                    .collect(),
                false => Vec::new(),
            },
            schema: arrow_schema(t, fixed),
            fields,
            scratch: String::new(),
            rows: 0,
        })
    }

    pub fn schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one record (a map; anything else is a row of nulls).
    pub fn push(&mut self, event_ns: i64, root: Option<ValRef<'_, '_>>) {
        self.append(event_ns, root, false);
    }

    /// Appends one record and says whether it fits the builder's schema: whether
    /// [`DType::absorb_fields`] with `nested_json` would leave that schema as it is.
    /// json2parquet then infers only from the records that do not fit (inference is
    /// otherwise a second walk over every record's keys, matched to the same columns).
    /// A key without a column, a duplicate key or the event time's own name is
    /// taken not to fit.
    pub fn push_fits(&mut self, event_ns: i64, root: ValRef<'_, '_>, nested_json: bool) -> bool {
        self.append(event_ns, Some(root), nested_json)
    }

    fn append(&mut self, event_ns: i64, root: Option<ValRef<'_, '_>>, nested_json: bool) -> bool {
        self.rows += 1;
        self.time.push_micros(event_ns.div_euclid(1000));
        let Some(root) = root.filter(|r| r.kind() == Kind::Map) else {
            self.cols.iter_mut().for_each(|c| {
                c.push(None, nested_json);
            });
            if let Some(x) = self.extra.as_mut() {
                x.push_text(None);
            }
            return false;
        };
        // Keys the schema does not know go to `_extra`, as one JSON object (never
        // dropped), at any depth; without a fixed schema every key has a column.
        let s = &mut self.scratch;
        s.clear();
        let keep_extra = self.extra.is_some();
        let fits = self
            .matcher
            .fill(&self.fields, root, &mut self.cols, nested_json, |k, v| {
                if keep_extra && k != EVENT_TIME {
                    s.push(if s.is_empty() { '{' } else { ',' });
                    crate::value::write_json_str(k, s);
                    s.push(':');
                    v.write_json(s);
                }
            });
        for &i in &self.nested {
            let (name, t) = &self.fields[i];
            if let Some(v) = root.get(name) {
                let mark = s.len();
                s.push(if s.is_empty() { '{' } else { ',' });
                crate::value::write_json_str(name, s);
                s.push(':');
                if !unplaced::write_unplaced(t, v, s) {
                    s.truncate(mark);
                }
            }
        }
        if let Some(x) = self.extra.as_mut() {
            if s.is_empty() {
                x.push_text(None);
            } else {
                s.push('}');
                x.push_text(Some(s));
            }
        }
        fits
    }

    /// The rows pushed so far, as a batch; the builder starts over empty.
    pub fn finish(&mut self) -> Result<RecordBatch, ConvertError> {
        self.rows = 0;
        let fresh = |c: &mut Col, t: &DType| {
            let next = c.fresh(t);
            std::mem::replace(c, next).finish()
        };
        let mut arrays = vec![fresh(&mut self.time, &DType::Timestamp)?];
        for ((_, t), c) in self.fields.iter().zip(self.cols.iter_mut()) {
            arrays.push(fresh(c, t)?);
        }
        if let Some(x) = self.extra.as_mut() {
            arrays.push(fresh(x, &DType::Str)?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// Builds a batch of `records` with the columns of `t` (plus `_extra` for a fixed schema).
pub fn dynamic_batch(
    records: &[&DynRecord],
    t: &DType,
    fixed: bool,
) -> Result<RecordBatch, ConvertError> {
    let mut b = DynBatchBuilder::new(t, fixed)?;
    let mut doc = Doc::new();
    for r in prefetched(records) {
        r.decode_into(&mut doc).map_err(ConvertError::Other)?;
        b.push(r.event_ns(), doc.root());
        doc = doc.recycle();
    }
    b.finish()
}

/// Records converted at a time, bounding the Arrow copy in memory.
const BATCH_ROWS: usize = 8192;

/// The schema of every key of dynamic records this process has written, shared by the
/// writer threads. Several batches of one key can be in flight at once (a close, or a
/// burst larger than BufferSize); widening the key's schema here, in the order the files
/// are encoded, makes every file of a key carry at least the columns of the files before
/// it. Durable buffers also store the schema (Redis), for restarts and other nodes.
#[derive(Default)]
pub struct SchemaRegistry {
    keys: std::sync::Mutex<std::collections::HashMap<PartitionKey, DType>>,
}

impl SchemaRegistry {
    /// Widens the key's schema by the buffer's stored one and by `seen` (the schema of
    /// a batch), and returns the result with how it differs from the key's schema
    /// before (see [`changes`]; nothing for a key's first schema).
    pub fn widen(
        &self,
        key: &PartitionKey,
        stored: Option<DType>,
        seen: DType,
    ) -> (DType, Vec<String>) {
        // A panic elsewhere cannot leave a half-merged type: merges build new values.
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let known = match (keys.remove(key), stored) {
            (Some(t), Some(s)) => Some(t.merge(s)),
            (t, s) => t.or(s),
        };
        let t = known
            .clone()
            .unwrap_or(DType::Struct { fields: Vec::new() })
            .merge(seen);
        keys.insert(key.clone(), t.clone());
        let changed = known.map(|k| changes(&k, &t)).unwrap_or_default();
        (t, changed)
    }
}

/// How schema `after` (a widening of `before`) differs from it, a line per field: a new
/// field with its type, or a field whose type was widened (`n: int → float`). Nested
/// fields are named by their dotted path, list items by `[]`.
pub fn changes(before: &DType, after: &DType) -> Vec<String> {
    fn walk(before: &DType, after: &DType, path: &str, out: &mut Vec<String>) {
        if before == after {
            return;
        }
        match (before, after) {
            (DType::Struct { fields: b }, DType::Struct { fields: a }) => {
                for (name, at) in a {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    match b.iter().find(|(n, _)| n == name) {
                        Some((_, bt)) => walk(bt, at, &p, out),
                        None => out.push(format!("new field `{p}` ({})", at.name())),
                    }
                }
            }
            (DType::List { item: b }, DType::List { item: a }) => {
                walk(b, a, &format!("{path}[]"), out)
            }
            _ => out.push(format!("`{path}` {} → {}", before.name(), after.name())),
        }
    }
    let mut out = Vec::new();
    walk(before, after, "", &mut out);
    out
}

/// Encodes dynamic records as one Parquet file with the columns of `t`.
pub fn encode_dynamic(
    records: &[&DynRecord],
    t: &DType,
    fixed: bool,
    opts: &ParquetOptions,
) -> Result<Vec<u8>, ConvertError> {
    let mut batches = dynamic_batches(records, t, fixed);
    // The first batch is built before the file is opened: its values choose the
    // columns written without a dictionary.
    let first = batches.next().transpose()?;
    let start = FileStart {
        rows: Some(records.len()),
        first: first.as_ref(),
    };
    let mut sink =
        FileLayout::for_arrow(arrow_schema(t, fixed), opts)?.sink_for(Vec::new(), start)?;
    for batch in first.into_iter().map(Ok).chain(batches) {
        sink.write(&batch?)?;
    }
    sink.finish()
}

/// Records of schema `t` as Arrow batches of at most `BATCH_ROWS` (8192) rows, built one at
/// a time as they are written (which bounds the Arrow copy of them in memory).
pub fn dynamic_batches<'a>(
    records: &'a [&'a DynRecord],
    t: &'a DType,
    fixed: bool,
) -> impl Iterator<Item = Result<RecordBatch, ConvertError>> + 'a {
    records
        .chunks(BATCH_ROWS)
        .map(move |chunk| dynamic_batch(chunk, t, fixed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Codec;
    use crate::decode::json::JsonParser;

    /// The file of `records` under `t`, inferred (not fixed), with the plain settings.
    fn encode(records: &[&DynRecord], t: &DType) -> Vec<u8> {
        encode_dynamic(
            records,
            t,
            false,
            &ParquetOptions::plain(Codec::Snappy, 1 << 20),
        )
        .unwrap()
    }

    fn recs(lines: &[&str]) -> Vec<DynRecord> {
        let mut p = JsonParser::new();
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut b = l.as_bytes().to_vec();
                let d = p.parse(&mut b).unwrap();
                DynRecord::new(
                    d.root().unwrap(),
                    1_700_000_000_000_000_000 + i as i64 * 1_000_000,
                )
            })
            .collect()
    }

    /// A generated record's JSON line.
    fn json_line(m: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
        serde_json::Value::Object(m.clone().into_iter().collect()).to_string()
    }

    /// The records of generated maps, as [`recs`] makes them from lines.
    fn recs_of(maps: &[std::collections::BTreeMap<String, serde_json::Value>]) -> Vec<DynRecord> {
        let lines: Vec<String> = maps.iter().map(json_line).collect();
        recs(&lines.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn widening_order() {
        use DType::*;
        assert_eq!(Null.merge(Bool), Bool);
        assert_eq!(Bool.merge(Int), Int);
        assert_eq!(Int.merge(Float), Float);
        assert_eq!(Float.merge(Str), Str);
        assert_eq!(
            Int.merge(List {
                item: Box::new(Int)
            }),
            Str
        );
        assert_eq!(
            List {
                item: Box::new(Int)
            }
            .merge(List {
                item: Box::new(Float)
            }),
            List {
                item: Box::new(Float)
            }
        );
        let s = |f: &[(&str, DType)]| Struct {
            fields: f.iter().map(|(n, t)| (n.to_string(), t.clone())).collect(),
        };
        assert_eq!(
            s(&[("a", Int)]).merge(s(&[("b", Str), ("a", Float)])),
            s(&[("a", Float), ("b", Str)])
        );
    }

    /// Bloom filters name top-level columns of dynamic records too, and cover the
    /// leaves of a struct column.
    #[test]
    fn dynamic_columns_get_bloom_filters() {
        use parquet::file::reader::FileReader;
        let rs = recs(&[
            r#"{"trace": "t1", "user": {"id": "u1", "n": 1}, "msg": "a"}"#,
            r#"{"trace": "t2", "user": {"id": "u2", "n": 2}, "msg": "b"}"#,
        ]);
        let refs: Vec<_> = rs.iter().collect();
        let t = infer(&refs, None, false).unwrap();
        let o = ParquetOptions {
            bloom_filter: crate::config::FieldSet::parse("trace,user"),
            ..ParquetOptions::plain(Codec::Snappy, 1 << 20)
        };
        let bytes = encode_dynamic(&refs, &t, false, &o).unwrap();
        let r =
            parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(bytes))
                .unwrap();
        let with: Vec<String> = r
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .filter(|c| c.bloom_filter_offset().is_some())
            .map(|c| c.column_path().string())
            .collect();
        assert_eq!(with, ["trace", "user.id", "user.n"]);
    }

    /// A record field's value for the property test below: scalars of each type, and
    /// objects and arrays whose keys repeat, so that types meet and widen at every level.
    fn any_field() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (i64::MAX as u64..=u64::MAX).prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z0-9 ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Checks a value read back from Parquet against the value that went in, under the
    /// column type the batch widened it to (README, "Dynamic records").
    fn check(
        got: &serde_json::Value,
        put: Option<&serde_json::Value>,
        t: &DType,
    ) -> Result<(), String> {
        use serde_json::Value;
        let bad = || Err(format!("{t:?}: put {put:?}, got {got}"));
        let put = match put {
            None | Some(Value::Null) => return if got.is_null() { Ok(()) } else { bad() },
            Some(v) => v,
        };
        let as_f64 = |v: &Value| match v {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            v => v.as_f64(),
        };
        let ok = match t {
            DType::Null => false,
            DType::Bool => got == put,
            DType::Int => match put {
                Value::Bool(b) => got.as_i64() == Some(i64::from(*b)),
                v => got.as_i64().is_some() && got.as_i64() == v.as_i64(),
            },
            DType::Float => got.as_f64().is_some_and(|g| Some(g) == as_f64(put)),
            DType::Str => match (put, got.as_str()) {
                (Value::String(p), Some(g)) => p == g,
                (p, Some(g)) => serde_json::from_str::<Value>(g).is_ok_and(|g| &g == p),
                _ => false,
            },
            DType::Struct { fields } if fields.is_empty() => got.as_str() == Some("{}"),
            DType::Struct { fields } => {
                let (Value::Object(p), Value::Object(_)) = (put, got) else {
                    return bad();
                };
                for (name, ft) in fields {
                    check(&got[name], p.get(name), ft)?;
                }
                true
            }
            DType::List { item } => {
                let (Value::Array(p), Value::Array(g)) = (put, got) else {
                    return bad();
                };
                if p.len() != g.len() {
                    return bad();
                }
                for (pv, gv) in p.iter().zip(g) {
                    check(gv, Some(pv), item)?;
                }
                true
            }
            DType::Timestamp => false,
        };
        if ok { Ok(()) } else { bad() }
    }

    proptest::proptest! {
        /// Any records, whose fields change type from record to record at any depth,
        /// are written and read back with every value kept under the widened type, and
        /// each record's event time to the microsecond.
        #[test]
        fn any_records_read_back_under_the_widened_schema(
            fields in proptest::collection::vec(
                proptest::collection::btree_map("[a-d]", any_field(), 0..4),
                1..10,
            ),
            nested_json: bool,
        ) {
            let rs = recs_of(&fields);
            let refs: Vec<_> = rs.iter().collect();
            let t = infer(&refs, None, nested_json).unwrap();
            let bytes = encode(&refs, &t);
            let rows = crate::readback::bytes_rows(bytes::Bytes::from(bytes)).unwrap();
            proptest::prop_assert_eq!(rows.len(), fields.len());
            let DType::Struct { fields: cols } = &t else {
                panic!("not a struct: {t:?}");
            };
            for (i, (row, put)) in rows.iter().zip(&fields).enumerate() {
                let ns = 1_700_000_000_000_000_000 + i as i64 * 1_000_000;
                let when = crate::timeutil::format_rfc3339_nanos(ns);
                proptest::prop_assert_eq!(row[EVENT_TIME].as_str(), Some(when.as_str()));
                for (name, ct) in cols {
                    let got = row.get(name).cloned().unwrap_or_default();
                    if let Err(e) = check(&got, put.get(name), ct) {
                        proptest::prop_assert!(false, "record {i} field {name}: {e}");
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// A builder says a record fits its schema exactly when inference would leave
        /// that schema as it is, at any depth and in either nested mode: json2parquet
        /// skips inference for the records that fit, so a wrong "fits" would let a
        /// record that needs a wider type into the file unseen.
        #[test]
        fn a_record_fits_the_schema_exactly_when_inference_leaves_it_alone(
            sample in proptest::collection::vec(
                proptest::collection::btree_map("[a-d]", any_field(), 0..4),
                0..4,
            ),
            later in proptest::collection::btree_map("[a-e]", any_field(), 0..4),
            nested_json: bool,
        ) {
            let rs = recs_of(&sample);
            let t = infer(&rs.iter().collect::<Vec<_>>(), None, nested_json).unwrap();
            let mut b = DynBatchBuilder::new(&t, false).unwrap();
            let mut text = json_line(&later).into_bytes();
            let doc = JsonParser::new().parse(&mut text).unwrap();
            let v = doc.root().unwrap();
            let fits = b.push_fits(0, v, nested_json);
            let mut widened = t.clone();
            widened.absorb_fields(v, nested_json);
            proptest::prop_assert_eq!(fits, widened == t, "schema {:?}, record {}", t, json_line(&later));
            // The row is written under the schema either way.
            proptest::prop_assert_eq!(b.finish().unwrap().num_rows(), 1);
        }
    }

    /// json2parquet reuses one builder for every block, and each batch's columns start
    /// sized like the last batch's: the batches must be the ones a new builder makes,
    /// whatever was built before, and the sizing must reach nested columns.
    #[test]
    fn a_reused_builder_makes_the_batches_a_new_one_does_and_starts_with_room() {
        let first = recs(&[
            r#"{"s":"a long message of some length","n":1,"o":{"l":[1,2,3],"t":"x"},"e":{}}"#,
            r#"{"s":"another long message","n":2,"o":{"l":[4],"t":null},"f":1.5}"#,
            r#"{"s":null,"o":null,"e":{},"f":2}"#,
        ]);
        let second = recs(&[
            r#"{"s":"short","n":3,"o":{"l":[],"t":"y"},"f":0.5}"#,
            r#"{"n":4}"#,
        ]);
        let all: Vec<&DynRecord> = first.iter().chain(&second).collect();
        let t = infer(&all, None, false).unwrap();
        let mut reused = DynBatchBuilder::new(&t, false).unwrap();
        for part in [&first, &second, &first] {
            let mut doc = Doc::new();
            for r in part.iter() {
                r.decode_into(&mut doc).unwrap();
                reused.push(r.event_ns(), doc.root());
                doc = doc.recycle();
            }
            let got = reused.finish().unwrap();
            let want = dynamic_batch(&part.iter().collect::<Vec<_>>(), &t, false).unwrap();
            assert_eq!(got, want);
        }
        // After a batch larger than Arrow's default room (1024 values), the next one
        // starts with room for as many.
        let lines: Vec<String> = (0..1500)
            .map(|i| format!(r#"{{"s":"m{i}","n":{i},"o":{{"l":[{i},{i}],"t":"x"}}}}"#))
            .collect();
        let big = recs(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        let mut doc = Doc::new();
        for r in &big {
            r.decode_into(&mut doc).unwrap();
            reused.push(r.event_ns(), doc.root());
            doc = doc.recycle();
        }
        assert_eq!(reused.finish().unwrap().num_rows(), 1500);
        let room = |c: &Col| match c {
            Col::Struct { children, .. } => children.iter().find_map(|c| match c {
                Col::List { child, .. } => match child.as_ref() {
                    Col::Int(b) => Some(b.capacity()),
                    _ => None,
                },
                _ => None,
            }),
            _ => None,
        };
        let o = reused.fields.iter().position(|(n, _)| n == "o").unwrap();
        assert!(room(&reused.cols[o]).unwrap() >= 3000);
        let n = reused.fields.iter().position(|(n, _)| n == "n").unwrap();
        assert!(matches!(&reused.cols[n], Col::Int(b) if b.capacity() >= 1500));
    }

    #[test]
    fn fits_is_not_claimed_for_what_inference_would_widen() {
        let rs = recs(&[r#"{"n":1,"o":{"a":"x"},"l":[1],"e":{}}"#]);
        let t = infer(&rs.iter().collect::<Vec<_>>(), None, false).unwrap();
        let fits = |line: &str| {
            let mut text = line.as_bytes().to_vec();
            let doc = JsonParser::new().parse(&mut text).unwrap();
            DynBatchBuilder::new(&t, false)
                .unwrap()
                .push_fits(0, doc.root().unwrap(), false)
        };
        assert!(fits(r#"{"n":true,"o":{"a":1},"l":[],"e":{}}"#));
        assert!(fits(r#"{"o":null}"#));
        assert!(!fits(r#"{"n":1.5}"#), "int widens to float");
        assert!(!fits(r#"{"o":{"b":1}}"#), "a new nested key");
        assert!(!fits(r#"{"l":[1.5]}"#), "a wider list item");
        assert!(
            !fits(r#"{"e":{"k":1}}"#),
            "a key in an object only seen empty"
        );
        assert!(!fits(r#"{"z":1}"#), "a new column");
        assert!(
            !fits(r#"{"n":1,"n":2}"#),
            "a duplicate key is taken not to fit"
        );
        assert!(!fits(&format!(r#"{{"{EVENT_TIME}":1}}"#)));
    }

    #[test]
    fn every_value_survives_widening() {
        let rs = recs(&[
            r#"{"n": 1, "obj": {"a": 1}, "l": [1, 2]}"#,
            r#"{"n": 2.5, "obj": {"b": "x"}, "late": true}"#,
            r#"{"n": "three", "l": [3.5], "obj": {"a": 7}}"#,
            r#"{"n": null, "l": ["s"], "obj": "scalar now"}"#,
        ]);
        let refs: Vec<_> = rs.iter().collect();
        let t = infer(&refs, None, false).unwrap();
        let bytes = encode(&refs, &t);
        let DType::Struct { fields } = &t else {
            panic!()
        };
        let names: Vec<_> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["n", "obj", "l", "late"]);
        assert_eq!(fields[0].1, DType::Str);
        assert_eq!(fields[1].1, DType::Str, "object then scalar: JSON text");
        assert_eq!(
            fields[2].1,
            DType::List {
                item: Box::new(DType::Str)
            }
        );
        let rows = crate::readback::bytes_rows(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(rows[0]["n"], "1");
        assert_eq!(rows[1]["n"], "2.5");
        assert_eq!(rows[2]["n"], "three");
        assert!(rows[3]["n"].is_null());
        assert_eq!(rows[0]["obj"], r#"{"a":1}"#);
        assert_eq!(rows[3]["obj"], "scalar now");
        assert_eq!(rows[2]["l"], serde_json::json!(["3.5"]));
        assert_eq!(rows[1]["late"], true);
        assert!(rows[0]["late"].is_null());
        assert_eq!(rows[0][EVENT_TIME], "2023-11-14T22:13:20.000000000Z");
    }

    #[test]
    fn structs_and_numbers_keep_their_types() {
        let rs = recs(&[
            r#"{"i": 1, "o": {"x": 1, "y": [true]}}"#,
            r#"{"i": 2.0, "o": {"x": 2.5}}"#,
        ]);
        let refs: Vec<_> = rs.iter().collect();
        let t = infer(&refs, None, false).unwrap();
        let bytes = encode(&refs, &t);
        let rows = crate::readback::bytes_rows(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(rows[0]["i"], 1.0);
        assert_eq!(rows[1]["o"]["x"], 2.5);
        assert_eq!(rows[0]["o"]["y"], serde_json::json!([true]));
        assert!(rows[1]["o"]["y"].is_null());
        // A later batch widens the stored schema, never narrows it.
        let more = recs(&[r#"{"i": 5}"#]);
        let refs: Vec<_> = more.iter().collect();
        let t2 = infer(&refs, Some(&t), false).unwrap();
        assert_eq!(t2, t);
        assert_eq!(DType::from_json(&t.to_json()).unwrap(), t);
    }

    /// Each value lands in its own column whatever the order of a record's keys and
    /// whichever keys it lacks: the matcher tries the columns just after the last
    /// one first, then the name, and both ways must find the same column.
    #[test]
    fn entries_find_their_columns_in_any_key_order() {
        let rs = recs(&[
            r#"{"a": 1, "b": "x", "c": true, "d": 1.5, "e": "y", "f": 2, "g": "z"}"#,
            // Reversed, with gaps.
            r#"{"g": "r", "e": "s", "c": false, "a": 3}"#,
            // A gap wider than the look-ahead, then back to the start.
            r#"{"a": 4, "g": "t", "b": "u"}"#,
            // Only the last column, then the second.
            r#"{"f": 5, "b": "v"}"#,
        ]);
        let refs: Vec<_> = rs.iter().collect();
        let t = infer(&refs, None, false).unwrap();
        let rows = crate::readback::bytes_rows(bytes::Bytes::from(encode(&refs, &t))).unwrap();
        let want = [
            serde_json::json!({"a": 1, "b": "x", "c": true, "d": 1.5, "e": "y", "f": 2, "g": "z"}),
            serde_json::json!({"a": 3, "b": null, "c": false, "d": null, "e": "s", "f": null, "g": "r"}),
            serde_json::json!({"a": 4, "b": "u", "c": null, "d": null, "e": null, "f": null, "g": "t"}),
            serde_json::json!({"a": null, "b": "v", "c": null, "d": null, "e": null, "f": 5, "g": null}),
        ];
        assert_eq!(rows.len(), want.len());
        for (i, (row, want)) in rows.iter().zip(&want).enumerate() {
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(&row[k.as_str()], v, "row {i}, column {k}");
            }
        }
    }

    #[test]
    fn registry_widens_in_encoding_order() {
        let reg = SchemaRegistry::default();
        let k = PartitionKey::from_text("k");
        let col = |n: &str, t: DType| DType::Struct {
            fields: vec![(n.to_string(), t)],
        };
        // Two batches taken together: the second file gets the first one's column too.
        // A key's first schema is no change; each widening after it is.
        assert_eq!(
            reg.widen(&k, None, col("a", DType::Int)),
            (col("a", DType::Int), vec![])
        );
        let (t, changed) = reg.widen(&k, None, col("b", DType::Str));
        assert_eq!(
            t.to_json(),
            r#"{"type":"struct","fields":[["a",{"type":"int"}],["b",{"type":"str"}]]}"#
        );
        assert_eq!(changed, ["new field `b` (string)"]);
        // A stored schema (Redis, another node) widens it too.
        let (t, changed) = reg.widen(
            &k,
            Some(col("a", DType::Float)),
            DType::Struct { fields: vec![] },
        );
        assert_eq!(
            t.to_json(),
            r#"{"type":"struct","fields":[["a",{"type":"float"}],["b",{"type":"str"}]]}"#
        );
        assert!(changed.is_empty(), "the stored schema was already known");
        assert!(reg.widen(&k, None, col("a", DType::Int)).1.is_empty());
        // A key met first through its stored schema compares with that.
        let k2 = PartitionKey::from_text("k2");
        let (_, changed) = reg.widen(&k2, Some(col("a", DType::Int)), col("a", DType::Float));
        assert_eq!(changed, ["`a` int64 → double"]);
    }

    #[test]
    fn changes_name_new_and_widened_fields_by_path() {
        let rs = recs(&[
            r#"{"n": 1, "user": {"id": 1}, "tags": [1]}"#,
            r#"{"n": 1.5, "user": {"id": 2, "email": "a@b"}, "tags": ["x"], "late": true}"#,
        ]);
        let first = infer(&[&rs[0]], None, false).unwrap();
        let both = infer(&[&rs[0], &rs[1]], None, false).unwrap();
        assert_eq!(
            changes(&first, &both),
            [
                "`n` int64 → double",
                "new field `user.email` (string)",
                "`tags[]` int64 → string",
                "new field `late` (boolean)",
            ]
        );
        assert!(changes(&both, &both).is_empty());
    }

    #[test]
    fn nested_as_json_text() {
        let rs = recs(&[r#"{"o": {"a": [1]}, "l": [1]}"#]);
        let refs: Vec<_> = rs.iter().collect();
        let t = infer(&refs, None, true).unwrap();
        let bytes = encode(&refs, &t);
        let rows = crate::readback::bytes_rows(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(rows[0]["o"], r#"{"a":[1]}"#);
        assert_eq!(rows[0]["l"], "[1]");
    }

    /// A fixed schema's struct columns keep the keys they name; `_extra` keeps the rest
    /// at the same path, so that no key of a valid record is lost.
    #[test]
    fn a_fixed_schema_keeps_unnamed_nested_keys_in_extra() {
        let f = crate::convert::jsonschema::Fixed::parse_str(
            r#"{"type": "object", "properties": {
                "id": {"type": "integer"},
                "user": {"type": "object", "properties": {"name": {"type": "string"}}},
                "items": {"type": "array", "items": {"type": "object",
                          "properties": {"sku": {"type": "string"}}}}}}"#,
        )
        .unwrap();
        let rs = recs(&[
            r#"{"id": 1, "user": {"name": "a", "team": "t"}, "items": [{"sku": "s1"}, {"sku": "s2", "qty": 2}], "host": "h"}"#,
            r#"{"id": 2, "user": {"name": "b"}, "items": []}"#,
            r#"{"id": 3, "id": 4, "user": null}"#,
        ]);
        let refs: Vec<_> = rs.iter().collect();
        let opts = ParquetOptions::plain(Codec::Snappy, 1 << 20);
        let bytes = encode_dynamic(&refs, &f.dtype, true, &opts).unwrap();
        let rows: Vec<serde_json::Value> = crate::readback::bytes_rows(bytes::Bytes::from(bytes))
            .unwrap()
            .into_iter()
            .map(|mut r| {
                r.remove(EVENT_TIME);
                serde_json::Value::Object(r)
            })
            .collect();
        assert_eq!(
            rows,
            [
                serde_json::json!({"id": 1, "user": {"name": "a"}, "items": [{"sku": "s1"}, {"sku": "s2"}],
                    "_extra": r#"{"host":"h","user":{"team":"t"},"items":[null,{"qty":2}]}"#}),
                serde_json::json!({"id": 2, "user": {"name": "b"}, "items": [], "_extra": null}),
                serde_json::json!({"id": 3, "user": null, "items": null, "_extra": r#"{"id":4}"#}),
            ]
        );
    }

    /// A JSON Schema node for the property test below: strings, and objects (alone or
    /// as the items of arrays) with at least one named key.
    #[derive(Debug, Clone)]
    enum SchemaNode {
        Str,
        Obj(Vec<(String, SchemaNode)>),
        ListOfObj(Vec<(String, SchemaNode)>),
    }

    fn any_schema_node() -> impl proptest::strategy::Strategy<Value = SchemaNode> {
        use proptest::prelude::*;
        let props = |inner: BoxedStrategy<SchemaNode>| {
            proptest::collection::btree_map("[a-d]", inner, 1..3)
                .prop_map(|m| m.into_iter().collect::<Vec<_>>())
        };
        Just(SchemaNode::Str).prop_recursive(3, 12, 3, move |inner| {
            prop_oneof![
                props(inner.clone()).prop_map(SchemaNode::Obj),
                props(inner).prop_map(SchemaNode::ListOfObj),
            ]
        })
    }

    fn schema_json(n: &SchemaNode) -> serde_json::Value {
        let obj = |props: &[(String, SchemaNode)]| {
            let p: serde_json::Map<String, serde_json::Value> = props
                .iter()
                .map(|(k, v)| (k.clone(), schema_json(v)))
                .collect();
            serde_json::json!({"type": "object", "properties": p})
        };
        match n {
            SchemaNode::Str => serde_json::json!({"type": "string"}),
            SchemaNode::Obj(p) => obj(p),
            SchemaNode::ListOfObj(p) => serde_json::json!({"type": "array", "items": obj(p)}),
        }
    }

    /// A value that fits `n`: each named key present or not, and keys the schema does
    /// not name (`x`–`z`, strings or objects) besides.
    fn value_for(n: &SchemaNode) -> proptest::strategy::BoxedStrategy<serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        match n {
            SchemaNode::Str => "[a-z]{0,4}".prop_map(Value::String).boxed(),
            SchemaNode::Obj(props) => {
                let named: Vec<BoxedStrategy<Option<(String, Value)>>> = props
                    .iter()
                    .map(|(k, v)| {
                        let k = k.clone();
                        proptest::option::of(value_for(v))
                            .prop_map(move |v| v.map(|v| (k.clone(), v)))
                            .boxed()
                    })
                    .collect();
                let free = prop_oneof![
                    "[a-z]{0,3}".prop_map(Value::String),
                    proptest::collection::btree_map("[a-b]", "[a-z]{0,3}", 0..2).prop_map(|m| {
                        Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
                    }),
                ];
                let unnamed = proptest::collection::btree_map("[x-z]", free, 0..2);
                (named, unnamed)
                    .prop_map(|(named, unnamed)| {
                        let mut m: serde_json::Map<String, Value> =
                            named.into_iter().flatten().collect();
                        m.extend(unnamed);
                        Value::Object(m)
                    })
                    .boxed()
            }
            SchemaNode::ListOfObj(props) => {
                proptest::collection::vec(value_for(&SchemaNode::Obj(props.clone())), 0..3)
                    .prop_map(serde_json::Value::Array)
                    .boxed()
            }
        }
    }

    /// `extra` laid over `row` by path, as a reader merges `_extra` back.
    fn lay_over(row: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match (row, extra) {
            (row, Value::Null) => row,
            (Value::Object(mut r), Value::Object(x)) => {
                for (k, v) in x {
                    let under = r.remove(&k).unwrap_or(Value::Null);
                    r.insert(k, lay_over(under, v));
                }
                Value::Object(r)
            }
            (Value::Array(r), Value::Array(x)) if r.len() == x.len() => {
                Value::Array(r.into_iter().zip(x).map(|(r, x)| lay_over(r, x)).collect())
            }
            (_, x) => x,
        }
    }

    /// Without the nulls a row reads back with for keys a record did not have.
    fn without_nulls(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, without_nulls(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
            v => v,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Under a fixed schema no key of a valid record is lost: the columns and
        /// `_extra`, laid over each other by path, give every record back.
        #[test]
        fn a_fixed_schemas_columns_and_extra_give_every_record_back(
            (schema, records) in proptest::strategy::Strategy::prop_flat_map(
                proptest::collection::btree_map("[a-d]", any_schema_node(), 1..4),
                |props| {
                    let node = SchemaNode::Obj(props.into_iter().collect());
                    let records = proptest::collection::vec(value_for(&node), 1..6);
                    (proptest::strategy::Just(node), records)
                })
        ) {
            let f = crate::convert::jsonschema::Fixed::parse_str(&schema_json(&schema).to_string())
                .unwrap();
            let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
            let rs = recs(&lines.iter().map(String::as_str).collect::<Vec<_>>());
            let refs: Vec<_> = rs.iter().collect();
            let opts = ParquetOptions::plain(Codec::Snappy, 1 << 20);
            let bytes = encode_dynamic(&refs, &f.dtype, true, &opts).unwrap();
            let rows = crate::readback::bytes_rows(bytes::Bytes::from(bytes)).unwrap();
            proptest::prop_assert_eq!(rows.len(), records.len());
            for (mut row, put) in rows.into_iter().zip(&records) {
                row.remove(EVENT_TIME);
                let extra = match row.remove(EXTRA) {
                    Some(serde_json::Value::String(s)) => serde_json::from_str(&s).unwrap(),
                    _ => serde_json::Value::Null,
                };
                let got = without_nulls(lay_over(serde_json::Value::Object(row), extra));
                proptest::prop_assert_eq!(&got, put);
            }
        }
    }
}
