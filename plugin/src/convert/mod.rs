//! Records to Parquet (arrow + parquet crates).
//!
//! Every file is written with dictionary encoding and page statistics on (so column
//! and offset indexes are written too), except for the columns the configuration
//! excludes and, for a dictionary, the string columns whose values in the file's first
//! batch rarely repeat (see the `dictionary` module). With `WriterPageIndex auto` a file
//! known to be small has statistics per column chunk only, as each of its columns has
//! one page (see [`FileLayout::sink_for`]). It has the configured codec, and
//! row groups closed by encoded size (`WriterRowGroupSize`, bytes) rather than by row
//! count. Batches are fed to the writer in slices of [`SLICE_ROWS`] rows so the byte
//! limit is honoured closely even when it is small.

mod dictionary;
pub mod dynamic;
pub mod jsonschema;
pub mod log;
pub mod parallel;

use crate::config::{Codec, Config, FieldSet, PageIndex};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};
use parquet::schema::types::{ColumnPath, SchemaDescriptor};
use std::io::Write;

/// Rows handed to the Parquet writer at a time.
pub const SLICE_ROWS: usize = 1024;

/// The root group name upstream's files carry.
pub const SCHEMA_ROOT: &str = "parquet_go_root";

/// The file metadata key of [`schema_fingerprint`].
pub const SCHEMA_FINGERPRINT_KEY: &str = "data2parquet.schema_fingerprint";

/// 16 hex digits, the same for files of one Parquet schema and different when the
/// schema differs (names, types, repetition, logical types, order), stored in every
/// file's key/value metadata: files of one schema can be grouped, and a schema change
/// found, without comparing schemas (DuckDB: `parquet_kv_metadata`). It hashes (xxh3)
/// the schema as the parquet crate prints it, so it is the same on every machine; a
/// release built on a parquet crate that prints schemas differently may give other
/// values for the same schema.
pub fn schema_fingerprint(columns: &SchemaDescriptor) -> String {
    let mut text = Vec::new();
    parquet::schema::printer::print_schema(&mut text, columns.root_schema());
    let h = twox_hash::xxhash3_128::Hasher::oneshot(&text);
    format!("{:016x}", (h >> 64) as u64)
}

/// A conversion failure. Per-record problems are caught at decoding; what is left here
/// is the writer itself failing (or a bug), which fails the whole batch.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("parquet writer: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Other(String),
}

/// Room for `n` items or bytes and an eighth more, for a builder sized from the last
/// batch of a stream: rows of one source look alike, and an average over thousands
/// of rows moves little, so the eighth absorbs a batch that runs a little longer and a
/// longer one still grows as before.
pub(crate) fn with_headroom(n: usize) -> usize {
    n.saturating_add(n / 8).saturating_add(64)
}

/// The Parquet settings taken from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ParquetOptions {
    pub codec: Codec,
    pub level: Option<u32>,
    pub row_group_bytes: u64,
    /// Target bytes of a data page (WriterPageSize).
    pub page_bytes: u64,
    pub map_values_utf8: bool,
    /// Top-level columns without statistics (WriterStatisticsExclude).
    pub statistics_exclude: FieldSet,
    /// Top-level columns without a dictionary (WriterDictionaryExclude).
    pub dictionary_exclude: FieldSet,
    /// String columns whose values in a file's first batch rarely repeat are written
    /// without a dictionary (WriterDictionaryAdaptive).
    pub dictionary_adaptive: bool,
    /// Which files get page statistics and a page index (WriterPageIndex).
    pub page_index: PageIndex,
    /// Top-level columns with a bloom filter (WriterBloomFilterColumns), and its
    /// false-positive rate.
    pub bloom_filter: FieldSet,
    pub bloom_fpp: f64,
}

impl ParquetOptions {
    pub fn from_config(c: &Config) -> Self {
        ParquetOptions {
            codec: c.codec,
            level: c.compression_level,
            row_group_bytes: c.writer_row_group_size,
            page_bytes: c.writer_page_size,
            map_values_utf8: c.map_values_utf8,
            statistics_exclude: c.statistics_exclude.clone(),
            dictionary_exclude: c.dictionary_exclude.clone(),
            dictionary_adaptive: c.dictionary_adaptive,
            page_index: c.page_index,
            bloom_filter: c.bloom_filter_columns.clone(),
            bloom_fpp: c.bloom_filter_fpp,
        }
    }

    /// Settings with nothing excluded and no bloom filter, which tests start from and
    /// change a field or two of.
    #[cfg(test)]
    pub(crate) fn plain(codec: Codec, row_group_bytes: u64) -> Self {
        ParquetOptions {
            codec,
            level: None,
            row_group_bytes,
            page_bytes: 128 * 1024,
            map_values_utf8: false,
            statistics_exclude: Default::default(),
            dictionary_exclude: Default::default(),
            dictionary_adaptive: false,
            page_index: PageIndex::Always,
            bloom_filter: Default::default(),
            bloom_fpp: 0.05,
        }
    }

    /// The parquet crate's compression setting. Levels were range-checked with the
    /// config, so construction cannot fail here; a bad level still maps to an error.
    pub fn compression(&self) -> Result<Compression, ConvertError> {
        let bad = |e: parquet::errors::ParquetError| {
            ConvertError::Other(format!("compression level: {e}"))
        };
        Ok(match self.codec {
            Codec::Snappy => Compression::SNAPPY,
            Codec::Gzip => Compression::GZIP(match self.level {
                Some(l) => GzipLevel::try_new(l).map_err(bad)?,
                None => GzipLevel::default(),
            }),
            Codec::Zstd => Compression::ZSTD(match self.level {
                Some(l) => ZstdLevel::try_new(l as i32).map_err(bad)?,
                None => ZstdLevel::default(),
            }),
            Codec::Brotli => Compression::BROTLI(match self.level {
                Some(l) => BrotliLevel::try_new(l).map_err(bad)?,
                None => BrotliLevel::default(),
            }),
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::None => Compression::UNCOMPRESSED,
        })
    }

    /// The writer's settings for a file of `columns`: the per-column exclusions name
    /// top-level columns, and apply to every leaf column under them.
    pub fn writer_properties(
        &self,
        columns: &SchemaDescriptor,
    ) -> Result<WriterProperties, ConvertError> {
        let mut b = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(self.compression()?)
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_size_limit(self.page_bytes.max(1) as usize)
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(Some(self.row_group_bytes.max(1) as usize))
            .set_created_by(format!(
                "data2parquet version {}",
                env!("CARGO_PKG_VERSION")
            ))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                SCHEMA_FINGERPRINT_KEY.to_string(),
                schema_fingerprint(columns),
            )]));
        if self.page_index == PageIndex::Never {
            b = without_page_index(b);
        }
        for col in leaves_under(&self.statistics_exclude, columns) {
            b = b.set_column_statistics_enabled(col, EnabledStatistics::None);
        }
        for col in leaves_under(&self.dictionary_exclude, columns) {
            b = b.set_column_dictionary_enabled(col, false);
        }
        for col in leaves_under(&self.bloom_filter, columns) {
            b = b
                .set_column_bloom_filter_enabled(col.clone(), true)
                .set_column_bloom_filter_fpp(col, self.bloom_fpp);
        }
        Ok(b.build())
    }
}

/// Settings without a page index (`WriterPageIndex never`, and `auto`'s small files):
/// statistics per column chunk only, which still let readers skip files and row
/// groups, and no offset index. Columns set to keep no statistics keep none.
fn without_page_index(b: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
    b.set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
}

/// The leaf columns under the top-level columns `names` holds (matched as the
/// configured names are normalised: case, `_` as `-`).
fn leaves_under(names: &FieldSet, columns: &SchemaDescriptor) -> Vec<ColumnPath> {
    if names.is_empty() {
        return Vec::new();
    }
    columns
        .columns()
        .iter()
        .map(|c| c.path())
        .filter(|p| {
            p.parts()
                .first()
                .is_some_and(|top| names.contains(&top.to_lowercase().replace('_', "-")))
        })
        .cloned()
        .collect()
}

/// The most distinct values a bloom filter is sized for before it is folded down: a
/// row group of a million rows, as the parquet crate assumes by default.
const BLOOM_MAX_NDV: u64 = 1 << 20;

/// What the writer needs for files of one schema, built once and reused for each file:
/// the schema fingerprint and the Arrow schema hint (`ARROW:schema`) are the same for
/// every file of a schema. With small files (upstream's default BufferSize is 100
/// records) building them for every file took about 4 % of the plugin's CPU.
#[derive(Debug, Clone)]
pub struct FileLayout {
    arrow: SchemaRef,
    parquet: SchemaDescriptor,
    props: WriterProperties,
    /// The leaf columns with a bloom filter, sized per file by [`FileLayout::sink_for`].
    bloom: Vec<ColumnPath>,
    /// With WriterDictionaryAdaptive, the columns whose dictionary each file chooses
    /// in [`FileLayout::sink_for`]; none without it.
    candidates: dictionary::Candidates,
    /// With `WriterPageIndex auto`: files known to hold at most this many rows, and
    /// the settings they are written with, which have no page index (see
    /// [`FileLayout::sink_for`]).
    small: Option<(usize, WriterProperties)>,
}

/// What is known of a file before it is opened, which its settings are fitted to.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileStart<'a> {
    /// The rows it will hold, when known: its bloom filters are sized for them rather
    /// than for a million, which would cost a megabyte of memory to clear and fold per
    /// column for each of the many small files upstream's defaults make; and with
    /// `WriterPageIndex auto`, a file of at most one writer batch of rows goes without
    /// a page index.
    pub rows: Option<usize>,
    /// Its first batch, when at hand: with WriterDictionaryAdaptive, the string
    /// columns whose values in it rarely repeat are written without a dictionary (see
    /// the `dictionary` module).
    pub first: Option<&'a RecordBatch>,
}

impl FileLayout {
    /// Files of `arrow` written with the Parquet schema `parquet`.
    pub fn new(
        arrow: SchemaRef,
        parquet: SchemaDescriptor,
        opts: &ParquetOptions,
    ) -> Result<FileLayout, ConvertError> {
        let props = opts.writer_properties(&parquet)?;
        let bloom = leaves_under(&opts.bloom_filter, &parquet);
        Ok(FileLayout::with_hint(arrow, parquet, props, bloom, opts))
    }

    /// Files of `arrow`, with the Parquet schema derived from it under upstream's root
    /// name. (The fingerprint is taken before the root is renamed, as it always was,
    /// so files of one schema keep theirs across releases.)
    pub fn for_arrow(arrow: SchemaRef, opts: &ParquetOptions) -> Result<FileLayout, ConvertError> {
        let props = opts.writer_properties(&ArrowSchemaConverter::new().convert(&arrow)?)?;
        let parquet = ArrowSchemaConverter::new()
            .schema_root(SCHEMA_ROOT)
            .convert(&arrow)?;
        let bloom = leaves_under(&opts.bloom_filter, &parquet);
        Ok(FileLayout::with_hint(arrow, parquet, props, bloom, opts))
    }

    /// Adds the Arrow schema hint (`ARROW:schema`) where it is needed: where the
    /// Parquet schema alone would not read back as `arrow` (a dictionary, a large
    /// string, a time zone other than UTC). The log schema reads back exactly without
    /// it, and leaving out its 2.8 KB matters in the small files upstream's defaults
    /// make (about 13 KB at 100 records); upstream's files never had one.
    fn with_hint(
        arrow: SchemaRef,
        parquet: SchemaDescriptor,
        mut props: WriterProperties,
        bloom: Vec<ColumnPath>,
        opts: &ParquetOptions,
    ) -> FileLayout {
        let exact = parquet::arrow::parquet_to_arrow_schema(&parquet, None)
            .is_ok_and(|back| back.fields() == arrow.fields());
        if !exact {
            parquet::arrow::add_encoded_arrow_schema_to_metadata(&arrow, &mut props);
        }
        let candidates = if opts.dictionary_adaptive {
            dictionary::Candidates::of(&arrow, &parquet, &props)
        } else {
            dictionary::Candidates::default()
        };
        // The parquet writer checks a page's size after each batch of
        // `write_batch_size` values, so a file of no more rows has one data page per
        // column (unless a column's values pass the page size), and a page index
        // would repeat the chunk statistics: about 2 KB of a 100-row file.
        let small = (opts.page_index == PageIndex::Auto).then(|| {
            let rows = props.write_batch_size();
            (
                rows,
                without_page_index(props.clone().into_builder()).build(),
            )
        });
        FileLayout {
            arrow,
            parquet,
            props,
            bloom,
            candidates,
            small,
        }
    }

    /// A new file of this layout, written to `out`, of any number of rows, with the
    /// layout's settings as they are.
    pub fn sink<W: Write + Send>(&self, out: W) -> Result<ParquetSink<W>, ConvertError> {
        self.sink_for(out, FileStart::default())
    }

    /// A new file of this layout, written to `out`, with its settings fitted to what
    /// `start` tells of it.
    pub fn sink_for<W: Write + Send>(
        &self,
        out: W,
        start: FileStart<'_>,
    ) -> Result<ParquetSink<W>, ConvertError> {
        let ndv = start
            .rows
            .filter(|_| !self.bloom.is_empty())
            .map(|rows| (rows as u64).clamp(1, BLOOM_MAX_NDV));
        let plain = match start.first {
            Some(first) => self.candidates.rarely_repeating(first, start.rows),
            None => Vec::new(),
        };
        let base = match &self.small {
            Some((rows, props)) if start.rows.is_some_and(|r| r <= *rows) => props,
            _ => &self.props,
        };
        let props = if ndv.is_none() && plain.is_empty() {
            base.clone()
        } else {
            let mut b = base.clone().into_builder();
            if let Some(n) = ndv {
                for col in &self.bloom {
                    b = b.set_column_bloom_filter_max_ndv(col.clone(), n);
                }
            }
            for col in plain {
                b = b.set_column_dictionary_enabled(col, false);
            }
            b.build()
        };
        let options = ArrowWriterOptions::new()
            .with_properties(props)
            .with_parquet_schema(self.parquet.clone())
            .with_skip_arrow_metadata(true);
        Ok(ParquetSink {
            writer: ArrowWriter::try_new_with_options(out, self.arrow.clone(), options)?,
            schema: self.arrow.clone(),
            rows: 0,
        })
    }
}

/// A Parquet file being written, with row groups closed by encoded size.
pub struct ParquetSink<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    rows: u64,
}

impl<W: Write + Send> ParquetSink<W> {
    /// A file of `schema`, with the Parquet schema derived from it (see
    /// [`FileLayout::for_arrow`]; keep the layout to write many files of one schema).
    pub fn new(out: W, schema: SchemaRef, opts: &ParquetOptions) -> Result<Self, ConvertError> {
        FileLayout::for_arrow(schema, opts)?.sink(out)
    }

    /// Writes a batch, slice by slice, so row groups close near the byte limit.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        let n = batch.num_rows();
        let mut at = 0;
        while at < n {
            let len = SLICE_ROWS.min(n - at);
            self.writer.write(&batch.slice(at, len))?;
            at += len;
        }
        self.rows += n as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written to the output so far (row groups already closed).
    pub fn bytes_written(&self) -> usize {
        self.writer.bytes_written()
    }

    /// The encoded size the open row group is expected to take.
    pub fn in_progress_size(&self) -> usize {
        self.writer.in_progress_size()
    }

    /// Memory the writer holds for the open row group: its encoders' state
    /// (dictionaries, values not yet in a page) and its finished pages. Several
    /// times [`ParquetSink::in_progress_size`] while dictionaries are large.
    pub fn memory_size(&self) -> usize {
        self.writer.memory_size()
    }

    /// Where the file goes.
    pub fn inner(&self) -> &W {
        self.writer.inner()
    }

    pub fn finish(self) -> Result<W, ConvertError> {
        Ok(self.writer.into_inner()?)
    }

    /// The same file with its columns encoded on `threads` threads (see
    /// [`parallel`]), for one large file written from many decoding threads. Call it
    /// before the first batch: rows already written stay in a row group of their own.
    pub fn parallel(self, threads: usize) -> Result<parallel::ParallelSink<W>, ConvertError> {
        let (file, factory) = self.writer.into_serialized_writer()?;
        parallel::ParallelSink::new(file, factory, self.schema, threads, self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int32Type;
    use arrow_array::{
        ArrayRef, DictionaryArray, Int64Array, LargeStringArray, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow_schema::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    /// The Arrow schema hint is written only where the Parquet schema alone would read
    /// back as another Arrow schema; either way a reader gets the batch written, with
    /// its types.
    #[test]
    fn the_arrow_schema_hint_is_written_where_it_is_needed() {
        let strings = [Some("a"), None, Some("c")];
        let utc =
            TimestampMicrosecondArray::from(vec![Some(1), None, Some(3)]).with_timezone("UTC");
        let dict: DictionaryArray<Int32Type> = strings.into_iter().collect();
        for (column, hinted) in [
            (
                Arc::new(StringArray::from(strings.to_vec())) as ArrayRef,
                false,
            ),
            (
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                false,
            ),
            (Arc::new(utc), false),
            (Arc::new(dict), true),
            (Arc::new(LargeStringArray::from(strings.to_vec())), true),
        ] {
            let kind = column.data_type().to_string();
            let field = Field::new("c", column.data_type().clone(), true);
            let schema = Arc::new(Schema::new(vec![field]));
            let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
            let opts = ParquetOptions::plain(Codec::Snappy, 1 << 20);
            let mut sink = FileLayout::for_arrow(schema, &opts)
                .unwrap()
                .sink(Vec::new())
                .unwrap();
            sink.write(&batch).unwrap();
            let file = bytes::Bytes::from(sink.finish().unwrap());
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            let has_hint = reader
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .is_some_and(|kv| kv.iter().any(|e| e.key == "ARROW:schema"));
            assert_eq!(has_hint, hinted, "{kind}");
            let back: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
            assert_eq!(back, [batch], "{kind}");
        }
    }
}
