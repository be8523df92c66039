//! The upstream log schema as Arrow, and log records to Arrow batches.

use super::{ConvertError, ParquetOptions, ParquetSink};
use crate::record::log::{COLUMNS, Col, ColKind, LogRecord};
use arrow_array::builder::{BinaryBuilder, BooleanBuilder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::sync::{Arc, OnceLock};

fn map_value_type(utf8: bool) -> DataType {
    if utf8 { DataType::Utf8 } else { DataType::Binary }
}

fn entry_fields(utf8: bool) -> (Field, Field) {
    (
        Field::new("key", DataType::Utf8, false),
        Field::new("value", map_value_type(utf8), false),
    )
}

fn element_field() -> Field {
    Field::new("element", DataType::Utf8, false)
}

/// The Arrow form of upstream's log schema (`upstream.md` §3.2). Map values are plain
/// binary like upstream's, or UTF8 with `WriterMapValuesUtf8`.
pub fn log_schema(map_values_utf8: bool) -> SchemaRef {
    static PLAIN: OnceLock<SchemaRef> = OnceLock::new();
    static UTF8: OnceLock<SchemaRef> = OnceLock::new();
    let cell = if map_values_utf8 { &UTF8 } else { &PLAIN };
    cell.get_or_init(|| {
        let fields: Vec<Field> = COLUMNS
            .iter()
            .map(|c| match c.kind() {
                ColKind::ReqStr => Field::new(c.name(), DataType::Utf8, false),
                ColKind::OptStr => Field::new(c.name(), DataType::Utf8, true),
                ColKind::OptBool => Field::new(c.name(), DataType::Boolean, true),
                ColKind::Map => {
                    let (k, v) = entry_fields(map_values_utf8);
                    Field::new_map(c.name(), "key_value", k, v, false, false)
                }
                ColKind::List => Field::new_list(c.name(), element_field(), false),
            })
            .collect();
        Arc::new(Schema::new(fields))
    })
    .clone()
}

fn string_column<'r>(recs: &[&'r LogRecord], f: impl Fn(&'r LogRecord) -> Option<&'r str>) -> ArrayRef {
    let bytes: usize = recs.iter().map(|r| f(r).map_or(0, str::len)).sum();
    let mut b = StringBuilder::with_capacity(recs.len(), bytes);
    for r in recs {
        b.append_option(f(r));
    }
    Arc::new(b.finish())
}

fn map_column<'r, I>(recs: &[&'r LogRecord], utf8: bool, f: impl Fn(&'r LogRecord) -> I) -> Result<ArrayRef, ConvertError>
where
    I: Iterator<Item = (&'r str, &'r str)>,
{
    let names = MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let (kf, vf) = entry_fields(utf8);
    if utf8 {
        let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
            .with_keys_field(kf)
            .with_values_field(vf);
        for r in recs {
            for (k, v) in f(r) {
                b.keys().append_value(k);
                b.values().append_value(v);
            }
            b.append(true)?;
        }
        Ok(Arc::new(b.finish()))
    } else {
        let mut b = MapBuilder::new(Some(names), StringBuilder::new(), BinaryBuilder::new())
            .with_keys_field(kf)
            .with_values_field(vf);
        for r in recs {
            for (k, v) in f(r) {
                b.keys().append_value(k);
                b.values().append_value(v.as_bytes());
            }
            b.append(true)?;
        }
        Ok(Arc::new(b.finish()))
    }
}

fn list_column<'r, I>(recs: &[&'r LogRecord], f: impl Fn(&'r LogRecord) -> I) -> ArrayRef
where
    I: Iterator<Item = &'r str>,
{
    let mut b = ListBuilder::new(StringBuilder::new()).with_field(element_field());
    for r in recs {
        for v in f(r) {
            b.values().append_value(v);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

/// Builds one Arrow batch from log records.
pub fn log_batch(recs: &[&LogRecord], map_values_utf8: bool) -> Result<RecordBatch, ConvertError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for c in COLUMNS {
        cols.push(match c {
            Col::S(s) if s.required() => string_column(recs, |r| Some(r.req(s))),
            Col::S(s) => string_column(recs, |r| r.get(s)),
            Col::Audit | Col::AutoIndex => {
                let mut b = BooleanBuilder::with_capacity(recs.len());
                for r in recs {
                    b.append_option(if c == Col::Audit { r.audit() } else { r.auto_index() });
                }
                Arc::new(b.finish())
            }
            Col::Args => map_column(recs, map_values_utf8, |r| r.args())?,
            Col::ExtraFields => map_column(recs, map_values_utf8, |r| r.extra_fields())?,
            Col::Tags => list_column(recs, |r| r.tags()),
            Col::TraceIp => list_column(recs, |r| r.trace_ip()),
        });
    }
    Ok(RecordBatch::try_new(log_schema(map_values_utf8), cols)?)
}

/// A streaming writer of log records into one Parquet file.
pub struct LogFileWriter<W: std::io::Write + Send> {
    sink: ParquetSink<W>,
    utf8: bool,
}

/// Records converted to Arrow at a time: bounds the Arrow copy of the data in memory.
const BATCH_ROWS: usize = 8192;

impl<W: std::io::Write + Send> LogFileWriter<W> {
    pub fn new(out: W, opts: &ParquetOptions) -> Result<Self, ConvertError> {
        Ok(LogFileWriter {
            sink: ParquetSink::new(out, log_schema(opts.map_values_utf8), opts)?,
            utf8: opts.map_values_utf8,
        })
    }

    pub fn write<'r>(&mut self, recs: impl IntoIterator<Item = &'r LogRecord>) -> Result<(), ConvertError> {
        let mut chunk: Vec<&LogRecord> = Vec::with_capacity(BATCH_ROWS);
        for r in recs {
            chunk.push(r);
            if chunk.len() == BATCH_ROWS {
                self.sink.write(&log_batch(&chunk, self.utf8)?)?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            self.sink.write(&log_batch(&chunk, self.utf8)?)?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.sink.rows()
    }

    pub fn bytes_written(&self) -> usize {
        self.sink.bytes_written()
    }

    pub fn finish(self) -> Result<W, ConvertError> {
        self.sink.finish()
    }
}

/// Encodes a batch of log records as one in-memory Parquet file.
pub fn encode_log<'r>(recs: impl IntoIterator<Item = &'r LogRecord>, opts: &ParquetOptions) -> Result<Vec<u8>, ConvertError> {
    let mut w = LogFileWriter::new(Vec::new(), opts)?;
    w.write(recs)?;
    w.finish()
}
