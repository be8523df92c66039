//! The upstream log schema as Arrow, and log records to Arrow batches.

use super::{ConvertError, FileLayout, FileStart, ParquetOptions, ParquetSink};
use crate::record::log::{COLUMNS, Col, ColKind, LogRecord, N_STR, Str};
use crate::record::prefetch::prefetched;
use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, ListBuilder, MapBuilder, MapFieldNames,
    StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::SchemaDescriptor;
use std::sync::{Arc, OnceLock};

fn map_value_type(utf8: bool) -> DataType {
    if utf8 {
        DataType::Utf8
    } else {
        DataType::Binary
    }
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

/// The Parquet schema of log files, written out exactly as upstream's parquet-go
/// produced it: root `parquet_go_root`, MAP groups with a `key_value` (MAP_KEY_VALUE)
/// repeated group, 3-level LISTs with `element`, UTF8 strings. Built once per variant:
/// with upstream's default BufferSize of 100 a file is written every 100 records, and
/// parsing the schema text for each one cost 6 % of the plugin's instructions.
pub fn log_parquet_schema(map_values_utf8: bool) -> Result<SchemaDescriptor, ConvertError> {
    static PLAIN: OnceLock<SchemaDescriptor> = OnceLock::new();
    static UTF8: OnceLock<SchemaDescriptor> = OnceLock::new();
    let cell = if map_values_utf8 { &UTF8 } else { &PLAIN };
    if let Some(s) = cell.get() {
        return Ok(s.clone());
    }
    let built = build_log_parquet_schema(map_values_utf8)?;
    Ok(cell.get_or_init(|| built).clone())
}

fn build_log_parquet_schema(map_values_utf8: bool) -> Result<SchemaDescriptor, ConvertError> {
    let mut text = String::from("message parquet_go_root {\n");
    let value = if map_values_utf8 {
        "required binary value (UTF8);"
    } else {
        "required binary value;"
    };
    for c in COLUMNS {
        let n = c.name();
        match c.kind() {
            ColKind::ReqStr => text.push_str(&format!("required binary {n} (UTF8);\n")),
            ColKind::OptStr => text.push_str(&format!("optional binary {n} (UTF8);\n")),
            ColKind::OptBool => text.push_str(&format!("optional boolean {n};\n")),
            ColKind::Map => text.push_str(&format!(
                "required group {n} (MAP) {{ repeated group key_value (MAP_KEY_VALUE) {{ required binary key (UTF8); {value} }} }}\n"
            )),
            ColKind::List => text.push_str(&format!(
                "required group {n} (LIST) {{ repeated group list {{ required binary element (UTF8); }} }}\n"
            )),
        }
    }
    text.push('}');
    let t = parse_message_type(&text)?;
    Ok(SchemaDescriptor::new(Arc::new(t)))
}

/// Sizes per row of the last batch [`log_batch`] built on this thread, which the next
/// one's builders start with: one thread builds the batches of one stream (the
/// plugin's writer, a json2parquet parse thread), whose records look alike from batch
/// to batch. Starting every text column at 16 bytes a row instead grew the long ones
/// (messages, ids) three or four times, each time copying what was built so far.
#[derive(Clone, Copy)]
struct Widths {
    /// Text bytes per row of each scalar column.
    scalar: [u32; N_STR],
    /// Entries, key (or element) bytes and value bytes per row of args, extra fields,
    /// tags and trace-ip.
    nested: [[u32; 3]; 4],
}

impl Widths {
    /// Room for `n` rows of `per_row` each (see [`super::with_headroom`]).
    fn room(n: usize, per_row: u32) -> usize {
        super::with_headroom(n.saturating_mul(per_row as usize))
    }

    /// The sizes of a batch of `n` rows just built; a scalar column outside `filled`
    /// (set by no row) keeps its last size, and an empty batch changes nothing.
    fn learn(
        mut self,
        n: usize,
        strs: &[StringBuilder],
        filled: u32,
        maps: [&mut MapBuilder<StringBuilder, BinaryBuilder>; 2],
        lists: [&mut ListBuilder<StringBuilder>; 2],
    ) -> Widths {
        if n == 0 {
            return self;
        }
        let per_row = |bytes: usize| u32::try_from(bytes.div_ceil(n)).unwrap_or(u32::MAX);
        for (i, b) in strs.iter().enumerate() {
            if filled & (1 << i) != 0 {
                self.scalar[i] = per_row(b.values_slice().len());
            }
        }
        let [args, extra] = maps.map(|m| {
            [
                per_row(ArrayBuilder::len(m.keys())),
                per_row(m.keys().values_slice().len()),
                per_row(m.values().values_slice().len()),
            ]
        });
        let [tags, trace] = lists.map(|l| {
            [
                per_row(ArrayBuilder::len(l.values())),
                per_row(l.values().values_slice().len()),
                0,
            ]
        });
        self.nested = [args, extra, tags, trace];
        self
    }
}

thread_local! {
    static LAST_WIDTHS: std::cell::Cell<Widths> = const {
        std::cell::Cell::new(Widths {
            scalar: [16; N_STR],
            nested: [[1, 8, 8]; 4],
        })
    };
}

/// Builds one Arrow batch from log records, in one pass over their data: each record
/// is read once while it is in cache, and each column builder is appended in sequence.
/// The records' column masks are read first: a column no record sets (most of the 28,
/// for a typical source) becomes one null array instead of a null appended per row.
pub fn log_batch(recs: &[&LogRecord], map_values_utf8: bool) -> Result<RecordBatch, ConvertError> {
    let n = recs.len();
    let last = LAST_WIDTHS.get();
    let required = Str::ALL
        .iter()
        .enumerate()
        .filter(|(_, c)| c.required())
        .fold(0u32, |m, (i, _)| m | 1 << i);
    let wanted = recs.iter().fold(required, |m, r| m | r.scalar_mask());
    let is_filled = |i: usize| wanted & (1 << i) != 0;
    let filled: Vec<(usize, Str)> = Str::ALL
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| is_filled(*i))
        .collect();
    let mut strs: Vec<StringBuilder> = (0..N_STR)
        .map(|i| match is_filled(i) {
            true => StringBuilder::with_capacity(n, Widths::room(n, last.scalar[i])),
            false => StringBuilder::new(),
        })
        .collect();
    let mut audit = BooleanBuilder::with_capacity(n);
    let mut auto_index = BooleanBuilder::with_capacity(n);
    let names = || MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    // Values are built as binary and re-typed afterwards when UTF8 is wanted.
    let (kf, vf) = entry_fields(false);
    let strings =
        |w: [u32; 3]| StringBuilder::with_capacity(Widths::room(n, w[0]), Widths::room(n, w[1]));
    let binary =
        |w: [u32; 3]| BinaryBuilder::with_capacity(Widths::room(n, w[0]), Widths::room(n, w[2]));
    let [args_w, extra_w, tags_w, trace_w] = last.nested;
    let mut args_b = MapBuilder::with_capacity(Some(names()), strings(args_w), binary(args_w), n)
        .with_keys_field(kf.clone())
        .with_values_field(vf.clone());
    let mut extra_b =
        MapBuilder::with_capacity(Some(names()), strings(extra_w), binary(extra_w), n)
            .with_keys_field(kf)
            .with_values_field(vf);
    let mut tags_b = ListBuilder::with_capacity(strings(tags_w), n).with_field(element_field());
    let mut trace_b = ListBuilder::with_capacity(strings(trace_w), n).with_field(element_field());
    for r in prefetched(recs) {
        for &(i, col) in &filled {
            match r.get(col) {
                Some(v) => strs[i].append_value(v),
                None if col.required() => strs[i].append_value(""),
                None => strs[i].append_null(),
            }
        }
        audit.append_option(r.audit());
        auto_index.append_option(r.auto_index());
        for (k, v) in r.args() {
            args_b.keys().append_value(k);
            args_b.values().append_value(v.as_bytes());
        }
        args_b.append(true)?;
        for (k, v) in r.extra_fields() {
            extra_b.keys().append_value(k);
            extra_b.values().append_value(v.as_bytes());
        }
        extra_b.append(true)?;
        for v in r.tags() {
            tags_b.values().append_value(v);
        }
        tags_b.append(true);
        for v in r.trace_ip() {
            trace_b.values().append_value(v);
        }
        trace_b.append(true);
    }
    LAST_WIDTHS.set(last.learn(
        n,
        &strs,
        wanted,
        [&mut args_b, &mut extra_b],
        [&mut tags_b, &mut trace_b],
    ));
    let mut strs: Vec<Option<ArrayRef>> = strs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| match is_filled(i) {
            true => Some(Arc::new(b.finish()) as ArrayRef),
            false => Some(new_null_array(&DataType::Utf8, n)),
        })
        .collect();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for c in COLUMNS {
        cols.push(match c {
            Col::S(s) => strs[s as usize]
                .take()
                .ok_or_else(|| ConvertError::Other("column used twice".into()))?,
            Col::Audit => Arc::new(audit.finish()),
            Col::AutoIndex => Arc::new(auto_index.finish()),
            Col::Args => utf8_values(Arc::new(args_b.finish()), map_values_utf8)?,
            Col::ExtraFields => utf8_values(Arc::new(extra_b.finish()), map_values_utf8)?,
            Col::Tags => Arc::new(tags_b.finish()),
            Col::TraceIp => Arc::new(trace_b.finish()),
        });
    }
    Ok(RecordBatch::try_new(log_schema(map_values_utf8), cols)?)
}

/// Map values are built as binary; with `WriterMapValuesUtf8` they are re-typed as
/// UTF8 (a cast of the same buffers: the bytes came from `&str`, so they are valid).
fn utf8_values(map: ArrayRef, utf8: bool) -> Result<ArrayRef, ConvertError> {
    if !utf8 {
        return Ok(map);
    }
    let target = log_schema(true)
        .field_with_name("args")?
        .data_type()
        .clone();
    arrow_cast_map(map, &target)
}

fn arrow_cast_map(map: ArrayRef, target: &DataType) -> Result<ArrayRef, ConvertError> {
    use arrow_array::{Array, BinaryArray, MapArray, StringArray, StructArray};
    let m = map
        .as_any()
        .downcast_ref::<MapArray>()
        .ok_or_else(|| ConvertError::Other("expected a map array".into()))?;
    let DataType::Map(field, sorted) = target else {
        return Err(ConvertError::Other("expected a map type".into()));
    };
    let DataType::Struct(fields) = field.data_type() else {
        return Err(ConvertError::Other("expected map entries".into()));
    };
    let entries = m.entries();
    let vals = entries
        .column(1)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| ConvertError::Other("expected binary map values".into()))?;
    let (offsets, values, nulls) = vals.clone().into_parts();
    let strings: ArrayRef = Arc::new(StringArray::try_new(offsets, values, nulls)?);
    let entries = StructArray::try_new(
        fields.clone(),
        vec![entries.column(0).clone(), strings],
        None,
    )?;
    Ok(Arc::new(MapArray::try_new(
        field.clone(),
        m.offsets().clone(),
        entries,
        m.nulls().cloned(),
        *sorted,
    )?))
}

/// A streaming writer of log records into one Parquet file.
pub struct LogFileWriter<W: std::io::Write + Send> {
    sink: ParquetSink<W>,
    utf8: bool,
}

/// Log files as the options make them: built once (by the flusher, for every file it
/// writes) rather than for each file.
#[derive(Debug, Clone)]
pub struct LogLayout {
    file: FileLayout,
    utf8: bool,
}

impl LogLayout {
    pub fn new(opts: &ParquetOptions) -> Result<LogLayout, ConvertError> {
        let utf8 = opts.map_values_utf8;
        Ok(LogLayout {
            file: FileLayout::new(log_schema(utf8), log_parquet_schema(utf8)?, opts)?,
            utf8,
        })
    }

    /// A new log file written to `out`.
    pub fn writer<W: std::io::Write + Send>(
        &self,
        out: W,
    ) -> Result<LogFileWriter<W>, ConvertError> {
        Ok(LogFileWriter {
            sink: self.file.sink(out)?,
            utf8: self.utf8,
        })
    }

    /// A new log file written to `out`, fed Arrow batches (see [`LogLayout::batches`]),
    /// with its settings fitted to what `start` tells of it.
    pub fn sink_for<W: std::io::Write + Send>(
        &self,
        out: W,
        start: FileStart<'_>,
    ) -> Result<ParquetSink<W>, ConvertError> {
        self.file.sink_for(out, start)
    }

    /// Log records as Arrow batches of at most `BATCH_ROWS` (8192) rows, built one at a
    /// time as they are written (which bounds the Arrow copy of them in memory).
    pub fn batches<'a>(
        &'a self,
        recs: &'a [&'a LogRecord],
    ) -> impl Iterator<Item = Result<RecordBatch, ConvertError>> + 'a {
        recs.chunks(BATCH_ROWS).map(|c| log_batch(c, self.utf8))
    }

    /// Encodes log records as one in-memory Parquet file.
    pub fn encode<'r, I>(&self, recs: I) -> Result<Vec<u8>, ConvertError>
    where
        I: IntoIterator<Item = &'r LogRecord>,
        I::IntoIter: ExactSizeIterator,
    {
        let mut recs = recs.into_iter();
        let rows = recs.len();
        // The first batch is built before the file is opened: its values choose the
        // columns written without a dictionary.
        let first: Vec<&LogRecord> = recs.by_ref().take(BATCH_ROWS).collect();
        let first = log_batch(&first, self.utf8)?;
        let start = FileStart {
            rows: Some(rows),
            first: Some(&first),
        };
        let mut w = LogFileWriter {
            sink: self.file.sink_for(Vec::new(), start)?,
            utf8: self.utf8,
        };
        w.sink.write(&first)?;
        // Not held while the rest is converted: one batch at a time, as before.
        drop(first);
        w.write(recs)?;
        w.finish()
    }
}

/// A Parquet file with the log schema, for batches built with [`log_batch`] (e.g. on
/// other threads).
pub fn log_sink<W: std::io::Write + Send>(
    out: W,
    opts: &ParquetOptions,
) -> Result<ParquetSink<W>, ConvertError> {
    LogLayout::new(opts)?.file.sink(out)
}

/// Records converted to Arrow at a time: bounds the Arrow copy of the data in memory.
const BATCH_ROWS: usize = 8192;

impl<W: std::io::Write + Send> LogFileWriter<W> {
    pub fn write<'r>(
        &mut self,
        recs: impl IntoIterator<Item = &'r LogRecord>,
    ) -> Result<(), ConvertError> {
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

    /// Writes a batch built with [`log_batch`] (e.g. on another thread).
    pub fn write_arrow(&mut self, b: &RecordBatch) -> Result<(), ConvertError> {
        self.sink.write(b)
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

/// Encodes a batch of log records as one in-memory Parquet file (see [`LogLayout`] to
/// write many).
pub fn encode_log<'r, I>(recs: I, opts: &ParquetOptions) -> Result<Vec<u8>, ConvertError>
where
    I: IntoIterator<Item = &'r LogRecord>,
    I::IntoIter: ExactSizeIterator,
{
    LogLayout::new(opts)?.encode(recs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Codec;
    use crate::record::log::{LogBuilder, Str};
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, MapArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::schema::printer::print_schema;

    #[test]
    fn every_file_carries_its_schema_fingerprint() {
        let fingerprint = |recs: &[LogRecord], utf8: bool| {
            let o = ParquetOptions {
                map_values_utf8: utf8,
                ..ParquetOptions::plain(Codec::Snappy, 1 << 20)
            };
            let bytes = bytes::Bytes::from(encode_log(recs, &o).unwrap());
            let reader = SerializedFileReader::new(bytes).unwrap();
            let kv = reader
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .unwrap();
            let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
            assert!(
                get("ARROW:schema").is_none(),
                "the log schema reads back without the Arrow schema hint"
            );
            get(crate::convert::SCHEMA_FINGERPRINT_KEY).expect("a fingerprint")
        };
        let a = fingerprint(&[rec(1)], false);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(
            a,
            fingerprint(&[rec(2), rec(3)], false),
            "same schema, other rows"
        );
        assert_eq!(
            a,
            crate::convert::schema_fingerprint(&log_parquet_schema(false).unwrap())
        );
        assert_ne!(
            a,
            fingerprint(&[rec(1)], true),
            "UTF8 map values are another schema"
        );
    }

    fn rec(i: usize) -> LogRecord {
        let mut b = LogBuilder::new();
        b.set(Str::Time, &format!("2026-01-01T00:00:{:02}Z", i % 60));
        b.set(Str::Message, &format!("message {i} {}", "x".repeat(i % 50)));
        b.set(Str::BusinessCapability, "cap");
        if i.is_multiple_of(3) {
            b.set(Str::Region, "eu-west-1");
        }
        b.add_arg("k", &i.to_string());
        if i.is_multiple_of(2) {
            b.add_extra("e", "é\u{1}");
        }
        b.add_tag("t");
        b.set_audit(if i.is_multiple_of(5) {
            None
        } else {
            Some(i.is_multiple_of(2))
        });
        b.finish()
    }

    #[test]
    fn schema_matches_upstream() {
        let r = rec(1);
        let bytes = encode_log([&r], &ParquetOptions::plain(Codec::Snappy, 128 << 20)).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let mut out = Vec::new();
        print_schema(&mut out, reader.metadata().file_metadata().schema());
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("message parquet_go_root {\n  REQUIRED BYTE_ARRAY time (UTF8);"),
            "{s}"
        );
        assert!(s.contains(
            "  REQUIRED group args (MAP) {\n    REPEATED group key_value (MAP_KEY_VALUE) {\n      REQUIRED BYTE_ARRAY key (UTF8);\n      REQUIRED BYTE_ARRAY value;\n    }\n  }"
        ), "{s}");
        assert!(s.contains(
            "  REQUIRED group tags (LIST) {\n    REPEATED group list {\n      REQUIRED BYTE_ARRAY element (UTF8);\n    }\n  }"
        ), "{s}");
        assert!(
            s.contains("  OPTIONAL BOOLEAN audit;\n  OPTIONAL BOOLEAN auto-index;"),
            "{s}"
        );
        assert!(s.contains("  REQUIRED BYTE_ARRAY hmac (UTF8);"), "{s}");
        assert_eq!(s.matches(";\n").count(), 28 + 2 + 2 * 2 + 2, "{s}");
    }

    /// WriterCompressionType with WriterCompressionLevel, and WriterBloomFilterFpp, reach
    /// the writer as configured (a file does not record the level, so the properties the
    /// files are written with are what is checked).
    #[test]
    fn configured_level_and_bloom_rate_reach_the_writer() {
        let props = |kv: &[(&str, &str)]| {
            ParquetOptions::from_config(&crate::config::Config::from_pairs(kv).unwrap())
                .writer_properties(&log_parquet_schema(false).unwrap())
                .unwrap()
        };
        let message = parquet::schema::types::ColumnPath::from("message");
        let p = props(&[
            ("WriterCompressionType", "zstd"),
            ("WriterCompressionLevel", "9"),
            ("WriterBloomFilterColumns", "message"),
            ("WriterBloomFilterFpp", "0.001"),
        ]);
        assert_eq!(
            p.compression(&message),
            parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(9).unwrap())
        );
        let bloom = p.bloom_filter_properties(&message).expect("a bloom filter");
        assert_eq!(bloom.fpp(), 0.001);
        let p = props(&[
            ("WriterCompressionType", "gzip"),
            ("WriterCompressionLevel", "2"),
        ]);
        assert_eq!(
            p.compression(&message),
            parquet::basic::Compression::GZIP(parquet::basic::GzipLevel::try_new(2).unwrap())
        );
        assert!(p.bloom_filter_properties(&message).is_none());
    }

    #[test]
    fn every_codec_round_trips_content() {
        let recs: Vec<_> = (0..3000).map(rec).collect();
        for codec in [
            Codec::Snappy,
            Codec::Gzip,
            Codec::Zstd,
            Codec::Lz4,
            Codec::Brotli,
            Codec::None,
        ] {
            let bytes = encode_log(&recs, &ParquetOptions::plain(codec, 128 << 20)).unwrap();
            let bytes = bytes::Bytes::from(bytes);
            let meta = SerializedFileReader::new(bytes.clone()).unwrap();
            let col = meta.metadata().row_group(0).column(0);
            let want = ParquetOptions {
                codec,
                ..ParquetOptions::plain(codec, 1)
            }
            .compression()
            .unwrap();
            assert_eq!(
                std::mem::discriminant(&col.compression()),
                std::mem::discriminant(&want),
                "{codec:?}"
            );
            assert!(
                col.dictionary_page_offset().is_some(),
                "dictionary encoding is on"
            );
            assert!(col.statistics().is_some(), "statistics are on");
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap();
            let mut i = 0;
            for batch in reader {
                let batch = batch.unwrap();
                let msg = batch.column_by_name("message").unwrap().as_string::<i32>();
                let region = batch.column_by_name("region").unwrap().as_string::<i32>();
                let audit = batch.column_by_name("audit").unwrap().as_boolean();
                let args = batch
                    .column_by_name("args")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<MapArray>()
                    .unwrap();
                let extra = batch
                    .column_by_name("extra-fields")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<MapArray>()
                    .unwrap();
                for row in 0..batch.num_rows() {
                    let r = &recs[i];
                    assert_eq!(msg.value(row), r.req(Str::Message));
                    assert_eq!(
                        region.is_valid(row).then(|| region.value(row)),
                        r.get(Str::Region)
                    );
                    assert_eq!(audit.is_valid(row).then(|| audit.value(row)), r.audit());
                    let a = args.value(row);
                    let (k, v) = (
                        a.column(0).as_string::<i32>(),
                        a.column(1).as_binary::<i32>(),
                    );
                    let got: Vec<(&str, &[u8])> =
                        (0..a.len()).map(|j| (k.value(j), v.value(j))).collect();
                    let want: Vec<(&str, &[u8])> =
                        r.args().map(|(k, v)| (k, v.as_bytes())).collect();
                    assert_eq!(got, want);
                    assert_eq!(extra.value(row).len(), r.extra_fields().len());
                    i += 1;
                }
            }
            assert_eq!(i, recs.len(), "{codec:?}");
        }
    }

    #[test]
    fn columns_set_by_some_or_no_records_keep_every_value() {
        use arrow_array::{Array, StringArray};
        // Region is set in records 0 and 3 only, SessionId in none, and a required
        // column set by none (Level) still gets its default in every row.
        let mut recs: Vec<_> = (0..4).map(rec).collect();
        let mut b = LogBuilder::new();
        b.set(Str::Message, "m");
        b.set(Str::Region, "r");
        b.set_null(Str::Region);
        recs.push(b.finish());
        let refs: Vec<&LogRecord> = recs.iter().collect();
        let batch = log_batch(&refs, false).unwrap();
        let col = |name: &str| {
            let a = batch.column_by_name(name).unwrap();
            let s = a.as_any().downcast_ref::<StringArray>().unwrap();
            (0..s.len())
                .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
                .collect::<Vec<_>>()
        };
        let eu = Some("eu-west-1".to_string());
        assert_eq!(col("region"), [eu.clone(), None, None, eu, None]);
        assert_eq!(col("session-id"), [None, None, None, None, None]);
        assert_eq!(col("level"), vec![Some("info".to_string()); 5]);
        assert_eq!(col("message")[4], Some("m".to_string()));
    }

    /// Each batch's builders start at the sizes of the one before on this thread: a
    /// batch of rows much longer (or with more map entries) than those still holds
    /// every value, an empty batch leaves the sizes alone, and the sizes are per row.
    #[test]
    fn batches_start_at_the_last_ones_sizes_and_still_grow() {
        use arrow_array::{Array, MapArray, StringArray};
        let batch_of = |len: usize, args: usize| {
            let recs: Vec<LogRecord> = (0..300)
                .map(|i| {
                    let mut b = LogBuilder::new();
                    b.set(Str::Message, &format!("{i:0len$}"));
                    for a in 0..args {
                        b.add_arg(&format!("k{a}"), &"v".repeat(len));
                    }
                    b.finish()
                })
                .collect();
            let refs: Vec<&LogRecord> = recs.iter().collect();
            let batch = log_batch(&refs, false).unwrap();
            let messages = batch.column_by_name("message").unwrap();
            let messages = messages.as_any().downcast_ref::<StringArray>().unwrap();
            let args_col = batch.column_by_name("args").unwrap();
            let maps = args_col.as_any().downcast_ref::<MapArray>().unwrap();
            for i in 0..300 {
                assert_eq!(messages.value(i), format!("{i:0len$}"));
                assert_eq!(maps.value(i).len(), args, "row {i}");
            }
            LAST_WIDTHS.get()
        };
        let short = batch_of(10, 1);
        assert_eq!(short.scalar[Str::Message as usize], 10);
        assert_eq!(
            short.nested[0],
            [1, 2, 10],
            "args: entries, key and value bytes"
        );
        let long = batch_of(1000, 6);
        assert_eq!(long.scalar[Str::Message as usize], 1000);
        assert_eq!(long.nested[0], [6, 12, 6000]);
        assert!(log_batch(&[], false).unwrap().num_rows() == 0);
        assert_eq!(LAST_WIDTHS.get().nested[0], [6, 12, 6000]);
        batch_of(10, 0);
    }

    /// Excluded columns (any spelling, nested ones through their top-level name) lose
    /// their statistics or dictionary; every other column keeps both, and every value
    /// reads back unchanged.
    #[test]
    fn columns_can_go_without_statistics_or_dictionary() {
        let recs: Vec<_> = (0..50)
            .map(|i| {
                let mut b = LogBuilder::new();
                b.set(Str::Time, &format!("2026-01-01T00:00:{:02}Z", i % 60));
                b.set(Str::Message, &format!("message {i} {}", "x".repeat(i % 50)));
                b.set(Str::BusinessCapability, "cap");
                b.set(Str::CorrelationId, &format!("id-{}", i % 7));
                b.add_arg("k", &i.to_string());
                b.finish()
            })
            .collect();
        let o = ParquetOptions {
            statistics_exclude: crate::config::FieldSet::parse("Message, args"),
            dictionary_exclude: crate::config::FieldSet::parse("correlation_id"),
            ..ParquetOptions::plain(Codec::Snappy, 1 << 20)
        };
        let bytes = bytes::Bytes::from(encode_log(&recs, &o).unwrap());
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let rg = reader.metadata().row_group(0);
        let col = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name}"))
        };
        for name in ["message", "args.key_value.key", "args.key_value.value"] {
            assert!(col(name).statistics().is_none(), "{name} has statistics");
        }
        for name in ["time", "correlation-id", "business-capability"] {
            assert!(
                col(name).statistics().is_some(),
                "{name} lost its statistics"
            );
        }
        let dictionary = |name: &str| col(name).dictionary_page_offset().is_some();
        assert!(!dictionary("correlation-id"));
        assert!(dictionary("message") && dictionary("time"));

        let strings = |name: &str| first_batch_strings(&bytes, name);
        let want = |f: &dyn Fn(usize) -> String| (0..50).map(f).collect::<Vec<_>>();
        assert_eq!(
            strings("correlation-id"),
            want(&|i| format!("id-{}", i % 7))
        );
        assert_eq!(
            strings("message"),
            want(&|i| format!("message {i} {}", "x".repeat(i % 50)))
        );
    }

    /// WriterPageSize reaches the writer: the same records make more, smaller pages
    /// under a small page size, and read back the same.
    #[test]
    fn the_page_size_setting_sizes_the_pages() {
        let recs: Vec<_> = (0..5000)
            .map(|i| {
                let mut b = LogBuilder::new();
                b.set(Str::Message, &format!("{i:06} {}", "m".repeat(100)));
                b.finish()
            })
            .collect();
        let pages_and_rows = |page_bytes: u64| {
            let o = ParquetOptions {
                page_bytes,
                dictionary_exclude: crate::config::FieldSet::parse("message"),
                ..ParquetOptions::plain(Codec::Snappy, 1 << 30)
            };
            let bytes = bytes::Bytes::from(encode_log(&recs, &o).unwrap());
            let opts = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
            let b =
                ParquetRecordBatchReaderBuilder::try_new_with_options(bytes.clone(), opts).unwrap();
            let message = b
                .parquet_schema()
                .columns()
                .iter()
                .position(|c| c.path().string() == "message")
                .unwrap();
            let pages = b
                .metadata()
                .page_index_for_row_group(0)
                .page_locations(message)
                .unwrap()
                .len();
            (pages, first_batch_strings(&bytes, "message"))
        };
        let (big_pages, big_rows) = pages_and_rows(1 << 20);
        let (small_pages, small_rows) = pages_and_rows(8 * 1024);
        // 5000 rows of 107 bytes: one page at 1 MiB; at 8 KiB the writer cuts a page
        // after each batch of 1024 values it finds over the limit.
        assert_eq!(big_pages, 1);
        assert!(small_pages >= 4, "{small_pages} pages");
        assert_eq!(big_rows, small_rows);
        assert_eq!(big_rows[1023], format!("001023 {}", "m".repeat(100)));
    }

    /// The values of string column `name` in the first batch of a file.
    fn first_batch_strings(file: &bytes::Bytes, name: &str) -> Vec<String> {
        use arrow_array::{Array, StringArray};
        let batch = ParquetRecordBatchReaderBuilder::try_new(file.clone())
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let a = batch.column_by_name(name).unwrap();
        let s = a.as_any().downcast_ref::<StringArray>().unwrap();
        (0..s.len()).map(|i| s.value(i).to_string()).collect()
    }

    /// WriterDictionaryExclude's default leaves the dictionary out of the event time and
    /// the per-event ids only; the rows read back the same.
    #[test]
    fn by_default_only_time_and_ids_go_without_a_dictionary() {
        let recs: Vec<_> = (0..40)
            .map(|i| {
                let mut b = LogBuilder::new();
                b.set(Str::Time, &format!("2026-01-01T00:00:{:02}Z", i % 60));
                b.set(Str::Level, ["INFO", "WARN"][i % 2]);
                b.set(Str::Message, &format!("message {}", i % 3));
                b.set(Str::CorrelationId, &format!("id-{i}"));
                b.set(Str::SessionId, &format!("s-{i}"));
                b.finish()
            })
            .collect();
        let o = ParquetOptions::from_config(&crate::config::Config::default());
        let bytes = bytes::Bytes::from(encode_log(&recs, &o).unwrap());
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let rg = reader.metadata().row_group(0);
        let dictionary = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .dictionary_page_offset()
                .is_some()
        };
        for name in ["time", "correlation-id", "session-id"] {
            assert!(!dictionary(name), "{name} has a dictionary");
        }
        for name in ["level", "message"] {
            assert!(dictionary(name), "{name} has no dictionary");
        }
        let strings = |name: &str| first_batch_strings(&bytes, name);
        let want = |f: &dyn Fn(usize) -> String| (0..40).map(f).collect::<Vec<_>>();
        assert_eq!(strings("correlation-id"), want(&|i| format!("id-{i}")));
        assert_eq!(strings("message"), want(&|i| format!("message {}", i % 3)));
        assert_eq!(
            strings("time"),
            want(&|i| format!("2026-01-01T00:00:{:02}Z", i % 60))
        );
    }

    /// WriterDictionaryAdaptive (on by default): in a file whose first batch shows a
    /// string column's values never repeat, that column has no dictionary, whatever its
    /// name; repeating columns keep theirs. Off, every column not excluded by name has
    /// one. Either way every row of every batch reads back the same.
    #[test]
    fn columns_whose_values_never_repeat_go_without_a_dictionary() {
        // More than one batch (8192 rows), so the rest follows the batch that chose.
        let n = 9000;
        let recs: Vec<_> = (0..n)
            .map(|i| {
                let mut b = LogBuilder::new();
                b.set(Str::Level, ["INFO", "WARN", "ERROR"][i % 3]);
                b.set(Str::Message, &format!("request {i} served"));
                b.set(Str::UserId, &format!("user-{}", i * 7919 % 100_003));
                b.set(Str::BusinessCapability, &format!("cap-{}", i % 40));
                b.add_trace_ip(&format!("10.0.{}.{}", i / 256, i % 256));
                b.add_tag(["a", "b"][i % 2]);
                b.finish()
            })
            .collect();
        let all_strings = |bytes: &bytes::Bytes, name: &str| -> Vec<String> {
            let rows = crate::readback::bytes_rows(bytes.clone()).unwrap();
            rows.iter()
                .map(|r| r[name].as_str().unwrap().to_string())
                .collect()
        };
        let with_dictionary = |adaptive: bool| {
            let o = ParquetOptions {
                dictionary_adaptive: adaptive,
                ..ParquetOptions::from_config(&crate::config::Config::default())
            };
            let bytes = bytes::Bytes::from(encode_log(&recs, &o).unwrap());
            let want = |f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>();
            assert_eq!(
                all_strings(&bytes, "message"),
                want(&|i| format!("request {i} served"))
            );
            assert_eq!(
                all_strings(&bytes, "user-id"),
                want(&|i| format!("user-{}", i * 7919 % 100_003))
            );
            assert_eq!(
                all_strings(&bytes, "level"),
                want(&|i| ["INFO", "WARN", "ERROR"][i % 3].to_string())
            );
            let reader = SerializedFileReader::new(bytes).unwrap();
            let rg = reader.metadata().row_group(0);
            assert_eq!(rg.num_rows(), n as i64);
            [
                "message",
                "user-id",
                "trace-ip",
                "level",
                "business-capability",
                "tags",
            ]
            .map(|name| {
                rg.columns()
                    .iter()
                    .find(|c| c.column_path().parts()[0] == name)
                    .unwrap_or_else(|| panic!("no column {name}"))
                    .dictionary_page_offset()
                    .is_some()
            })
        };
        assert_eq!(
            with_dictionary(true),
            [false, false, false, true, true, true]
        );
        assert_eq!(with_dictionary(false), [true; 6]);
    }

    /// WriterPageIndex: `auto` leaves the page index (column and offset index) out of a
    /// file known to hold at most one writer batch of rows, `always` and `never` do as
    /// they say; every file keeps its chunk statistics and reads back the same.
    #[test]
    fn small_files_go_without_a_page_index() {
        use crate::config::PageIndex;
        use parquet::file::statistics::Statistics;
        let recs = |n: usize| -> Vec<LogRecord> {
            (0..n)
                .map(|i| {
                    let mut b = LogBuilder::new();
                    b.set(Str::Level, ["INFO", "WARN"][i % 2]);
                    b.set(Str::Message, &format!("m{i:05}"));
                    b.finish()
                })
                .collect()
        };
        // Whether the file has a page index, after checking its rows and statistics.
        let written = |page_index: PageIndex, n: usize| {
            let o = ParquetOptions {
                page_index,
                ..ParquetOptions::from_config(&crate::config::Config::default())
            };
            let bytes = bytes::Bytes::from(encode_log(&recs(n), &o).unwrap());
            // Every row, not only the reader's first batch: the larger files are read
            // across more than one.
            let rows = crate::readback::bytes_rows(bytes.clone()).unwrap();
            let got: Vec<(String, String)> = rows
                .iter()
                .map(|r| (r["level"].to_string(), r["message"].to_string()))
                .collect();
            let want: Vec<(String, String)> = (0..n)
                .map(|i| {
                    (
                        format!("{:?}", ["INFO", "WARN"][i % 2]),
                        format!("\"m{i:05}\""),
                    )
                })
                .collect();
            assert_eq!(got, want);
            let reader = SerializedFileReader::new(bytes).unwrap();
            let rg = reader.metadata().row_group(0);
            assert_eq!(rg.num_rows(), n as i64);
            let indexes: Vec<(bool, bool)> = rg
                .columns()
                .iter()
                .map(|c| {
                    (
                        c.column_index_offset().is_some(),
                        c.offset_index_offset().is_some(),
                    )
                })
                .collect();
            let message = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "message")
                .unwrap();
            let Some(Statistics::ByteArray(st)) = message.statistics() else {
                panic!("no statistics on message: {:?}", message.statistics());
            };
            let text = |b: Option<&parquet::data_type::ByteArray>| {
                String::from_utf8(b.unwrap().data().to_vec()).unwrap()
            };
            assert_eq!(text(st.min_opt()), "m00000");
            assert_eq!(text(st.max_opt()), format!("m{:05}", n - 1));
            assert_eq!(st.null_count_opt(), Some(0));
            // Every column alike: both indexes, or neither.
            let has = indexes[0].0;
            assert!(
                indexes.iter().all(|&(c, o)| c == has && o == has),
                "{indexes:?}"
            );
            has
        };
        assert!(!written(PageIndex::Auto, 100));
        assert!(!written(PageIndex::Auto, 1024));
        assert!(written(PageIndex::Auto, 1025));
        assert!(written(PageIndex::Always, 100));
        assert!(!written(PageIndex::Never, 2000));
    }

    /// WriterBloomFilterColumns: the named columns (nested ones through their top-level
    /// name) get a bloom filter that holds every value written, rules out most others,
    /// and is folded down to the file's size; other columns get none.
    #[test]
    fn named_columns_get_bloom_filters() {
        use parquet::file::properties::ReaderProperties;
        use parquet::file::serialized_reader::ReadOptionsBuilder;
        let recs: Vec<_> = (0..2000)
            .map(|i| {
                let mut b = LogBuilder::new();
                b.set(Str::Time, "2026-01-01T00:00:00Z");
                b.set(Str::CorrelationId, &format!("corr-{i}"));
                b.set(Str::Level, "info");
                b.add_arg("user", &format!("u{}", i % 10));
                b.finish()
            })
            .collect();
        let o = ParquetOptions {
            bloom_filter: crate::config::FieldSet::parse("Correlation_Id args"),
            bloom_fpp: 0.01,
            ..ParquetOptions::plain(Codec::Snappy, 1 << 20)
        };
        let bytes = bytes::Bytes::from(encode_log(&recs, &o).unwrap());
        let reader = SerializedFileReader::new_with_options(
            bytes,
            ReadOptionsBuilder::new()
                .with_reader_properties(
                    ReaderProperties::builder()
                        .set_read_bloom_filter(true)
                        .build(),
                )
                .build(),
        )
        .unwrap();
        let meta = reader.metadata().row_group(0).clone();
        let rg = reader.get_row_group(0).unwrap();
        let index = |name: &str| {
            meta.columns()
                .iter()
                .position(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name}"))
        };
        let filter = |name: &str| rg.get_column_bloom_filter(index(name));
        let corr = filter("correlation-id").expect("a filter on correlation-id");
        assert!((0..2000).all(|i| corr.check(format!("corr-{i}").as_str())));
        let false_hits = (2000..12000)
            .filter(|i| corr.check(format!("corr-{i}").as_str()))
            .count();
        assert!(
            false_hits < 300,
            "{false_hits} of 10000 absent ids pass at fpp 0.01"
        );
        let user = filter("args.key_value.value").expect("a filter on args values");
        assert!((0..10).all(|i| user.check(format!("u{i}").as_bytes())));
        assert!(filter("args.key_value.key").is_some());
        for name in ["level", "time", "message"] {
            assert!(filter(name).is_none(), "{name} has a filter");
        }
        // Folded to the rows written: 2000 values at 1 % need about 2.4 KB, not the
        // megabyte a million-row filter takes.
        let len = meta.column(index("correlation-id")).bloom_filter_length();
        assert!(len.is_some_and(|l| l <= 8192), "{len:?}");
    }

    #[test]
    fn map_values_can_be_utf8() {
        let recs: Vec<_> = (0..10).map(rec).collect();
        let o = ParquetOptions {
            map_values_utf8: true,
            ..ParquetOptions::plain(Codec::Snappy, 1 << 20)
        };
        let bytes = encode_log(&recs, &o).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
        let mut out = Vec::new();
        print_schema(&mut out, reader.metadata().file_metadata().schema());
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s.matches("      REQUIRED BYTE_ARRAY value (UTF8);").count(),
            2,
            "args and extra-fields: {s}"
        );
        let rows = crate::readback::bytes_rows(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(rows[3]["args"]["k"], "3");
        assert_eq!(rows[2]["extra-fields"]["e"], "é\u{1}");
        // Every entry reads back as the string that went in.
        assert_eq!(rows.len(), recs.len());
        for (row, r) in rows.iter().zip(&recs) {
            let strings = |kv: Vec<(&str, &str)>| -> serde_json::Map<String, serde_json::Value> {
                kv.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
            };
            assert_eq!(
                row["args"],
                serde_json::Value::Object(strings(r.args().collect()))
            );
            assert_eq!(
                row["extra-fields"],
                serde_json::Value::Object(strings(r.extra_fields().collect()))
            );
        }
    }

    #[test]
    fn row_groups_close_by_encoded_size() {
        let recs: Vec<_> = (0..20_000).map(rec).collect();
        let limit = 64 * 1024;
        let bytes = encode_log(&recs, &ParquetOptions::plain(Codec::None, limit)).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let groups = reader.metadata().row_groups();
        assert!(groups.len() > 5, "{} row groups", groups.len());
        let total: i64 = groups.iter().map(|g| g.num_rows()).sum();
        assert_eq!(total, 20_000);
        for g in &groups[..groups.len() - 1] {
            let size = g.compressed_size() as u64;
            assert!(
                size >= limit / 2 && size <= limit * 2,
                "row group of {size} bytes for a {limit} limit"
            );
        }
    }
}
