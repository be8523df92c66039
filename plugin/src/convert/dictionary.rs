//! Which string columns of a file to write without a dictionary, judged from the file's
//! first batch (`WriterDictionaryAdaptive`).
//!
//! The parquet crate dictionary-encodes a column until its dictionary reaches the page
//! limit (1 MiB), whatever the values. For values that never repeat (free text, random
//! ids, addresses) that is pure cost: every value is hashed and stored twice over, and
//! the pages carry indices on top of the values. In the many small files a flusher
//! writes (one per key, a few thousand rows each) the limit is never reached, so such a
//! column pays for the dictionary over the whole file. Parquet-mr drops a dictionary
//! after its first page when it does not pay, and DuckDB keeps one only under a ratio
//! of distinct values; this does the same from a sample, before the first value is
//! written, since the parquet crate cannot change its mind mid-chunk.
//!
//! The sample is a fifth of the file's rows. If values are drawn from `D` kinds, a
//! sample of `s` shows `D(1 - e^(-s/D))` distinct; nine in ten distinct means `D` is
//! about `4.8 s`, so with `s` a fifth of the rows it means about as many kinds as rows,
//! where a dictionary saves nothing. A fixed sample would take a few thousand users
//! repeating over a large file for ids that never repeat.

use arrow_array::cast::AsArray;
use arrow_array::types::{BinaryType, ByteArrayType, LargeBinaryType, LargeUtf8Type, Utf8Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::{ColumnPath, SchemaDescriptor};

/// The most values sampled per column (a batch holds 8192 rows): for a file of more
/// than five times as many rows, values that repeat less often than one in this many
/// are taken for unique, and a dictionary would save little on them.
const MAX_SAMPLE: usize = 8192;

/// Values looked at first: a column that repeats shows it within these, and most do,
/// so most columns cost no more than this.
const FIRST_LOOK: usize = 64;

/// A column whose sample is at least this share distinct (in tenths) gets no dictionary.
const DISTINCT_TENTHS: usize = 9;

/// The columns of a file layout that may be written without a dictionary, found once
/// per layout rather than for each file: top-level string or binary columns, and lists
/// of them, that the layout's settings give a dictionary.
#[derive(Debug, Clone, Default)]
pub(crate) struct Candidates(Vec<Candidate>);

#[derive(Debug, Clone)]
struct Candidate {
    /// Its position among the batch's columns.
    index: usize,
    /// Its only Parquet leaf (a list's sits under its repeated group).
    leaf: ColumnPath,
}

impl Candidates {
    /// The candidates of files of `arrow`, written with the Parquet schema `parquet`
    /// and the settings `props`. A struct or a map has several leaves, and is left
    /// alone, as is a column `props` already writes without a dictionary.
    pub(crate) fn of(arrow: &Schema, parquet: &SchemaDescriptor, props: &WriterProperties) -> Self {
        let mut out = Vec::new();
        for (index, field) in arrow.fields().iter().enumerate() {
            let values = match field.data_type() {
                DataType::List(item) => item.data_type(),
                t => t,
            };
            if !is_bytes(values) {
                continue;
            }
            let mut leaves = parquet
                .columns()
                .iter()
                .map(|c| c.path())
                .filter(|p| p.parts().first().is_some_and(|top| top == field.name()));
            if let (Some(leaf), None) = (leaves.next(), leaves.next())
                && props.dictionary_enabled(leaf)
            {
                out.push(Candidate {
                    index,
                    leaf: leaf.clone(),
                });
            }
        }
        Candidates(out)
    }

    /// The candidates whose values in `batch`, the first batch of a file of `rows` rows
    /// (`None`: not known), rarely repeat: at least [`FIRST_LOOK`] non-null values in
    /// the batch and nine in ten of the sample distinct. Columns with fewer values keep
    /// their dictionary: too few to judge, and too few to matter. Except when the batch
    /// is the whole file and a column has no value in it: its dictionary would be an
    /// empty page, and in the many small files of upstream's defaults most of the log
    /// schema's columns are empty.
    pub(crate) fn rarely_repeating(
        &self,
        batch: &RecordBatch,
        rows: Option<usize>,
    ) -> Vec<ColumnPath> {
        let sample = rows.map_or(MAX_SAMPLE, |r| (r / 5).clamp(FIRST_LOOK, MAX_SAMPLE));
        let whole = rows == Some(batch.num_rows());
        let mut out = Vec::new();
        for c in &self.0 {
            let Some(column) = batch.columns().get(c.index) else {
                continue;
            };
            // A list's elements are judged.
            let values = match column.as_list_opt::<i32>() {
                Some(list) => list.values(),
                None => column,
            };
            let empty = values.null_count() == values.len();
            if (whole && empty) || mostly_distinct(values.as_ref(), sample) {
                out.push(c.leaf.clone());
            }
        }
        out
    }
}

/// Whether values of type `t` are judged: strings and binaries, whose bytes are hashed.
fn is_bytes(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
    )
}

/// Whether the first non-null values of a string or binary array are nearly all
/// distinct (false for any other type).
fn mostly_distinct(values: &dyn Array, sample: usize) -> bool {
    match values.data_type() {
        DataType::Utf8 => bytes_distinct::<Utf8Type>(values, sample),
        DataType::LargeUtf8 => bytes_distinct::<LargeUtf8Type>(values, sample),
        DataType::Binary => bytes_distinct::<BinaryType>(values, sample),
        DataType::LargeBinary => bytes_distinct::<LargeBinaryType>(values, sample),
        _ => false,
    }
}

/// [`distinct_share`] of an array of byte type `T` (strings are judged by their bytes).
fn bytes_distinct<T: ByteArrayType>(values: &dyn Array, sample: usize) -> bool {
    let values = values.as_bytes::<T>().iter();
    distinct_share(values.map(|v| v.map(|v| v.as_ref())), sample)
}

/// Hashes the first [`FIRST_LOOK`] non-null values, then up to `sample` if those
/// were nearly all distinct, and tells whether nine in ten of them were.
fn distinct_share<'a>(values: impl Iterator<Item = Option<&'a [u8]>>, sample: usize) -> bool {
    let mut values = values.flatten();
    // Room for the first look only: most columns stop there.
    let mut hashes: Vec<u64> = Vec::with_capacity(FIRST_LOOK);
    for limit in [FIRST_LOOK, sample.max(FIRST_LOOK)] {
        let wanted = limit - hashes.len();
        hashes.extend(
            values
                .by_ref()
                .take(wanted)
                .map(twox_hash::XxHash3_64::oneshot),
        );
        if hashes.len() < FIRST_LOOK || !nearly_all_distinct(&mut hashes) {
            return false;
        }
        if hashes.len() < limit {
            // The batch has no more values to look at.
            break;
        }
    }
    true
}

/// Whether at least nine in ten of `hashes` differ (sorts them).
fn nearly_all_distinct(hashes: &mut [u64]) -> bool {
    hashes.sort_unstable();
    let distinct = 1 + hashes.windows(2).filter(|w| w[0] != w[1]).count();
    distinct * 10 >= hashes.len() * DISTINCT_TENTHS
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use parquet::arrow::ArrowSchemaConverter;
    use std::sync::Arc;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> (RecordBatch, SchemaDescriptor) {
        let b = RecordBatch::try_from_iter(columns).unwrap();
        let parquet = ArrowSchemaConverter::new().convert(&b.schema()).unwrap();
        (b, parquet)
    }

    fn strings(n: usize, f: impl Fn(usize) -> Option<String>) -> ArrayRef {
        Arc::new(StringArray::from_iter((0..n).map(f)))
    }

    fn names(paths: Vec<ColumnPath>) -> Vec<String> {
        paths.iter().map(|p| p.string()).collect()
    }

    /// The columns found with every column given a dictionary, in a file of the batch's
    /// rows.
    fn found(b: &RecordBatch, p: &SchemaDescriptor) -> Vec<ColumnPath> {
        rarely_repeating(b, p, &WriterProperties::default(), Some(b.num_rows()))
    }

    /// The columns of `b` judged to rarely repeat, for a layout of its schema.
    fn rarely_repeating(
        b: &RecordBatch,
        p: &SchemaDescriptor,
        props: &WriterProperties,
        rows: Option<usize>,
    ) -> Vec<ColumnPath> {
        Candidates::of(&b.schema(), p, props).rarely_repeating(b, rows)
    }

    #[test]
    fn unique_columns_are_named_and_repeating_ones_are_not() {
        let (b, p) = batch(vec![
            ("id", strings(2000, |i| Some(format!("id-{i:08x}")))),
            (
                "level",
                strings(2000, |i| Some(["INFO", "WARN", "ERROR"][i % 3].into())),
            ),
            // 200 values, each seen ten times in no order.
            (
                "host",
                strings(2000, |i| Some(format!("host-{}", (i * 7) % 200))),
            ),
            (
                "n",
                Arc::new(Int64Array::from_iter_values(0..2000)) as ArrayRef,
            ),
        ]);
        assert_eq!(names(found(&b, &p)), ["id"]);
    }

    #[test]
    fn nulls_are_skipped_and_too_few_values_keep_the_dictionary() {
        let (b, p) = batch(vec![
            // Unique where set, one row in ten set: 200 values to judge by.
            (
                "trace",
                strings(2000, |i| (i % 10 == 0).then(|| format!("t{i}"))),
            ),
            // Unique but only 50 values: too few to judge.
            (
                "rare",
                strings(2000, |i| (i % 40 == 0).then(|| format!("r{i}"))),
            ),
            ("none", strings(2000, |_| None)),
        ]);
        // In a larger file, the column without values may get some later.
        let more = Some(b.num_rows() + 1);
        let props = WriterProperties::default();
        assert_eq!(names(rarely_repeating(&b, &p, &props, more)), ["trace"]);
        // In a file of only this batch, its dictionary would stay empty.
        assert_eq!(names(found(&b, &p)), ["trace", "none"]);
    }

    #[test]
    fn a_short_batch_is_judged_on_what_it_has() {
        let (b, p) = batch(vec![
            ("unique", strings(100, |i| Some(format!("u{i}")))),
            ("twice", strings(100, |i| Some(format!("t{}", i / 2)))),
        ]);
        assert_eq!(names(found(&b, &p)), ["unique"]);
    }

    #[test]
    fn the_sample_grows_with_the_file() {
        // 2000 kinds of value in no order: the first 400 values (a fifth of a file of
        // 2000 rows) look unique, the first 8192 (a file of 100k) do not.
        let (b, p) = batch(vec![(
            "user",
            strings(8192, |i| Some(format!("u{}", i * 7919 % 2000))),
        )]);
        let props = WriterProperties::default();
        assert_eq!(
            names(rarely_repeating(&b, &p, &props, Some(2000))),
            ["user"]
        );
        assert!(rarely_repeating(&b, &p, &props, Some(100_000)).is_empty());
        // A file of unknown size (kept open for more batches) samples the most.
        assert!(rarely_repeating(&b, &p, &props, None).is_empty());
    }

    #[test]
    fn a_column_that_repeats_only_after_the_first_look_keeps_the_dictionary() {
        // The first 64 differ, then the same 64 come round again and again.
        let (b, p) = batch(vec![(
            "cycle",
            strings(2000, |i| Some(format!("c{}", i % 64))),
        )]);
        assert!(found(&b, &p).is_empty());
    }

    #[test]
    fn columns_already_without_a_dictionary_are_not_sampled() {
        let (b, p) = batch(vec![
            ("a", strings(500, |i| Some(format!("a{i}")))),
            ("b", strings(500, |i| Some(format!("b{i}")))),
        ]);
        let props = WriterProperties::builder()
            .set_column_dictionary_enabled(ColumnPath::from("a"), false)
            .build();
        assert_eq!(names(rarely_repeating(&b, &p, &props, Some(500))), ["b"]);
    }

    /// Lists with no element in a file of one batch, null or empty, get no dictionary;
    /// a list with one element in the file keeps it.
    #[test]
    fn lists_without_elements_in_the_whole_file_go_without() {
        let mut empty = ListBuilder::new(StringBuilder::new());
        let mut one = ListBuilder::new(StringBuilder::new());
        for i in 0..100 {
            empty.append(i % 2 == 0);
            if i == 50 {
                one.values().append_value("x");
            }
            one.append(true);
        }
        let (b, p) = batch(vec![
            ("empty", Arc::new(empty.finish()) as ArrayRef),
            ("one", Arc::new(one.finish()) as ArrayRef),
        ]);
        let found = found(&b, &p);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].parts().first().map(String::as_str), Some("empty"));
    }

    #[test]
    fn list_elements_are_judged_and_name_the_list_leaf() {
        let mut unique = ListBuilder::new(StringBuilder::new());
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..500 {
            unique
                .values()
                .append_value(format!("10.0.{}.{}", i / 256, i % 256));
            unique.append(true);
            tags.values().append_value(format!("tag{}", i % 5));
            tags.values().append_value(format!("tag{}", i % 7));
            tags.append(true);
        }
        let (b, p) = batch(vec![
            ("ips", Arc::new(unique.finish()) as ArrayRef),
            ("tags", Arc::new(tags.finish()) as ArrayRef),
        ]);
        let found = found(&b, &p);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].parts().first().map(String::as_str), Some("ips"));
        assert!(
            p.columns().iter().any(|c| c.path() == &found[0]),
            "a leaf of the file's schema"
        );
    }
}
