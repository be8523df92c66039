//! A Parquet file whose columns are encoded on several threads.
//!
//! With one writer thread, everything the Parquet writer does per value (dictionary
//! hashing, statistics, levels, compression) happens on that one thread, however many
//! threads decode the input: json2parquet's single file was bound by it (on the dynamic
//! bench the writer thread took 3.2 s of CPU in a 4.1 s run while the two parse threads
//! waited for it). Here each top-level column of a row group belongs to one encoder
//! thread, which keeps that column's writer; the caller's thread only hands out the
//! batches and splices the finished column chunks into the file, in schema order, so
//! the file is the one [`ParquetSink`](super::ParquetSink) would write (same schema,
//! properties, pages and row groups, closed by estimated encoded size).

use super::{ConvertError, SLICE_ROWS};
use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;
use crossbeam_channel::{Receiver, Sender, bounded};
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::errors::ParquetError;
use parquet::file::writer::SerializedFileWriter;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// Jobs an encoder can have queued: enough to keep it busy while the caller prepares
/// the next, few enough that the batches waiting stay a small part of memory.
const QUEUE: usize = 4;

/// The column chunks of one encoder's columns, each with its leaf position in the file.
type Chunks = Result<Vec<(usize, ArrowColumnChunk)>, ParquetError>;

/// What an encoder is asked to do.
enum Job {
    /// Take the writers of a new row group: per owned top-level column, its index in
    /// the schema, the position of its first leaf and one writer per leaf.
    Start(Vec<Owned>),
    /// Encode the owned columns of these rows.
    Write(RecordBatch),
    /// Close the row group's writers and send back their chunks.
    Close,
}

/// One top-level column an encoder owns in the open row group.
struct Owned {
    field: usize,
    first_leaf: usize,
    writers: Vec<ArrowColumnWriter>,
}

/// An encoder thread and the way to it.
struct Encoder {
    jobs: Option<Sender<Job>>,
    chunks: Receiver<Chunks>,
    /// Its columns' estimated encoded size in the open row group, and the rows of it
    /// encoded, after the last batch it finished.
    progress: Arc<Progress>,
    /// Set when a write failed; the error comes with the row group's chunks.
    failed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Encoder {
    fn spawn(schema: SchemaRef, n: usize) -> Result<Encoder, ConvertError> {
        let (jobs, rx) = bounded(QUEUE);
        let (done, chunks) = bounded(1);
        let progress = Arc::new(Progress::default());
        let failed = Arc::new(AtomicBool::new(false));
        let (s, f) = (progress.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name(format!("parquet-encode-{n}"))
            .spawn(move || encode(schema, rx, done, s, f))
            .map_err(|e| ConvertError::Other(format!("cannot start an encoder thread: {e}")))?;
        Ok(Encoder {
            jobs: Some(jobs),
            chunks,
            progress,
            failed,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<(), ConvertError> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(stopped)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How far an encoder is with the open row group.
#[derive(Default)]
struct Progress {
    /// Estimated encoded size of its columns.
    bytes: AtomicUsize,
    /// Rows encoded.
    rows: AtomicUsize,
}

fn stopped() -> ConvertError {
    ConvertError::Other("internal: a Parquet encoder thread stopped".into())
}

/// An encoder's loop. After a failed write it skips the rest of the row group's
/// batches and reports the error when the row group is closed.
fn encode(
    schema: SchemaRef,
    jobs: Receiver<Job>,
    done: Sender<Chunks>,
    progress: Arc<Progress>,
    flag: Arc<AtomicBool>,
) {
    let mut owned: Vec<Owned> = Vec::new();
    let mut failed: Option<ParquetError> = None;
    for job in jobs {
        match job {
            Job::Start(o) => owned = o,
            Job::Write(batch) => {
                if failed.is_some() {
                    continue;
                }
                if let Err(e) = write_owned(&schema, &batch, &mut owned) {
                    failed = Some(e);
                    flag.store(true, Ordering::Relaxed);
                }
                let bytes = owned
                    .iter()
                    .flat_map(|o| &o.writers)
                    .map(ArrowColumnWriter::get_estimated_total_bytes)
                    .sum();
                progress.bytes.store(bytes, Ordering::Relaxed);
                progress.rows.fetch_add(batch.num_rows(), Ordering::Relaxed);
            }
            Job::Close => {
                let writers = std::mem::take(&mut owned);
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => close_owned(writers),
                };
                progress.bytes.store(0, Ordering::Relaxed);
                progress.rows.store(0, Ordering::Relaxed);
                flag.store(false, Ordering::Relaxed);
                if done.send(result).is_err() {
                    return;
                }
            }
        }
    }
}

fn write_owned(
    schema: &SchemaRef,
    batch: &RecordBatch,
    owned: &mut [Owned],
) -> Result<(), ParquetError> {
    for o in owned {
        let leaves = compute_leaves(schema.field(o.field), batch.column(o.field))?;
        for (w, leaf) in o.writers.iter_mut().zip(&leaves) {
            w.write(leaf)?;
        }
    }
    Ok(())
}

fn close_owned(owned: Vec<Owned>) -> Chunks {
    let mut out = Vec::new();
    for o in owned {
        for (i, w) in o.writers.into_iter().enumerate() {
            out.push((o.first_leaf + i, w.close()?));
        }
    }
    Ok(out)
}

/// A Parquet file being written with its columns encoded on several threads; the
/// same interface as [`ParquetSink`](super::ParquetSink).
pub struct ParallelSink<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    encoders: Vec<Encoder>,
    /// Leaves per top-level column, to find each one's writers.
    leaves: Vec<usize>,
    /// Row groups started so far (the open one included).
    groups: usize,
    /// Rows in the open row group; 0 when none is open.
    group_rows: usize,
    /// Estimated encoded bytes per row of the last row group closed.
    row_bytes: f64,
    rows: u64,
    max_bytes: usize,
}

impl<W: Write + Send> ParallelSink<W> {
    /// Takes over a [`ParquetSink`](super::ParquetSink)'s file (its schema,
    /// properties and the `rows` it holds), with `threads` encoder threads (at least
    /// one).
    pub(super) fn new(
        file: SerializedFileWriter<W>,
        factory: ArrowRowGroupWriterFactory,
        schema: SchemaRef,
        threads: usize,
        rows: u64,
    ) -> Result<Self, ConvertError> {
        let leaves = leaves_per_column(&file, &schema)?;
        let groups = file.flushed_row_groups().len();
        let max_bytes = file
            .properties()
            .max_row_group_bytes()
            .unwrap_or(usize::MAX);
        let encoders = (0..threads.max(1))
            .map(|n| Encoder::spawn(schema.clone(), n))
            .collect::<Result<_, _>>()?;
        Ok(ParallelSink {
            file,
            factory,
            encoders,
            leaves,
            groups,
            group_rows: 0,
            row_bytes: 0.0,
            rows,
            max_bytes: max_bytes.max(1),
        })
    }

    /// Writes a batch, slice by slice, so row groups close near the byte limit.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        if batch.num_columns() != self.leaves.len() {
            return Err(ConvertError::Other(format!(
                "a batch of {} columns for a file of {}",
                batch.num_columns(),
                self.leaves.len()
            )));
        }
        // An encoder that failed reports why when its row group closes: close it now
        // rather than queue more rows behind the error.
        if self
            .encoders
            .iter()
            .any(|e| e.failed.load(Ordering::Relaxed))
        {
            return Err(match self.collect() {
                Err(e) => e,
                Ok(_) => stopped(),
            });
        }
        let n = batch.num_rows();
        let mut at = 0;
        while at < n {
            let mut len = SLICE_ROWS.min(n - at);
            let mut done = None;
            if self.group_rows > 0 {
                // As the one-thread writer does: the rows that still fit at the
                // average row size, and a new row group once none do.
                let estimated = self.estimated();
                let per_row = estimated as f64 / self.group_rows as f64;
                let fit = match self.max_bytes.checked_sub(estimated) {
                    None | Some(0) => 0,
                    Some(_) if per_row <= 0.0 => usize::MAX,
                    Some(room) => (room as f64 / per_row) as usize,
                };
                if fit == 0 {
                    done = Some(self.collect()?);
                } else {
                    len = len.min(fit);
                }
            }
            let slice = batch.slice(at, len);
            if self.group_rows == 0 {
                self.start(&slice)?;
            }
            self.group_rows += len;
            self.rows += len as u64;
            for e in &self.encoders {
                e.send(Job::Write(slice.clone()))?;
            }
            // The finished row group goes into the file while the encoders start on
            // the next one.
            if let Some(chunks) = done {
                self.append(chunks)?;
            }
            at += len;
        }
        Ok(())
    }

    /// The open row group's estimated encoded size. Encoders report their size after
    /// the batches they finished; the rows still queued are counted at the average
    /// size of those, as the one-thread writer splits batches by average row size.
    /// Until every encoder has finished a batch of the row group, the average row
    /// size of the previous one stands in.
    fn estimated(&self) -> usize {
        let mut sum = 0usize;
        let mut all_reported = true;
        let mut reported = 0usize;
        for e in &self.encoders {
            let bytes = e.progress.bytes.load(Ordering::Relaxed);
            let rows = e.progress.rows.load(Ordering::Relaxed);
            reported += bytes;
            if rows == 0 {
                all_reported = false;
                continue;
            }
            let queued = self.group_rows.saturating_sub(rows);
            sum += bytes + (bytes as f64 / rows as f64 * queued as f64) as usize;
        }
        if all_reported {
            sum
        } else {
            reported.max((self.row_bytes * self.group_rows as f64) as usize)
        }
    }

    /// Opens a row group: new column writers, each top-level column given to an
    /// encoder so that their shares of `first`'s bytes are about equal (the heaviest
    /// column first, each to the least loaded encoder).
    fn start(&mut self, first: &RecordBatch) -> Result<(), ConvertError> {
        let mut writers = self.factory.create_column_writers(self.groups)?.into_iter();
        self.groups += 1;
        // Each column with its weight: the Arrow bytes of its first slice, plus one
        // per row for what every value costs whatever its size.
        let mut owned: Vec<(usize, Owned)> = Vec::with_capacity(self.leaves.len());
        let mut first_leaf = 0;
        for (field, &n) in self.leaves.iter().enumerate() {
            let c = first.column(field);
            let weight = c.to_data().get_slice_memory_size().unwrap_or(0) + c.len();
            let writers = writers.by_ref().take(n).collect();
            owned.push((
                weight,
                Owned {
                    field,
                    first_leaf,
                    writers,
                },
            ));
            first_leaf += n;
        }
        owned.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
        let mut load = vec![0usize; self.encoders.len()];
        let mut shares: Vec<Vec<Owned>> = (0..self.encoders.len()).map(|_| Vec::new()).collect();
        for (weight, o) in owned {
            let e = (0..load.len()).min_by_key(|&e| load[e]).unwrap_or(0);
            load[e] += weight;
            shares[e].push(o);
        }
        for (e, share) in self.encoders.iter().zip(shares) {
            e.send(Job::Start(share))?;
        }
        Ok(())
    }

    /// Closes the open row group on every encoder and gathers its chunks.
    fn collect(&mut self) -> Result<Vec<(usize, ArrowColumnChunk)>, ConvertError> {
        let estimated = self.estimated();
        self.row_bytes = estimated as f64 / self.group_rows.max(1) as f64;
        for e in &self.encoders {
            e.send(Job::Close)?;
        }
        let mut chunks = Vec::new();
        let mut failed = None;
        // Every encoder answers before an error is returned, so none is left with a
        // reply that the next row group would take for its own.
        for e in &self.encoders {
            match e.chunks.recv() {
                Ok(Ok(c)) => chunks.extend(c),
                Ok(Err(err)) => failed = failed.or(Some(err.into())),
                Err(_) => failed = failed.or(Some(stopped())),
            }
        }
        self.group_rows = 0;
        match failed {
            Some(e) => Err(e),
            None => Ok(chunks),
        }
    }

    /// Writes a finished row group's chunks in the schema's leaf order.
    fn append(&mut self, mut chunks: Vec<(usize, ArrowColumnChunk)>) -> Result<(), ConvertError> {
        chunks.sort_unstable_by_key(|(leaf, _)| *leaf);
        let mut rg = self.file.next_row_group()?;
        for (_, c) in chunks {
            c.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the last row group and the footer, and gives the output back.
    pub fn finish(mut self) -> Result<W, ConvertError> {
        if self.group_rows > 0 {
            let chunks = self.collect()?;
            self.append(chunks)?;
        }
        self.encoders.clear();
        Ok(self.file.into_inner()?)
    }
}

/// The number of leaf columns under each top-level column, in the Parquet schema the
/// factory makes one writer per leaf for.
fn leaves_per_column<W: Write + Send>(
    file: &SerializedFileWriter<W>,
    schema: &SchemaRef,
) -> Result<Vec<usize>, ConvertError> {
    let descr = file.schema_descr();
    let mut per = vec![0usize; schema.fields().len()];
    for leaf in 0..descr.num_columns() {
        match per.get_mut(descr.get_column_root_idx(leaf)) {
            Some(n) => *n += 1,
            None => {
                return Err(ConvertError::Other(
                    "internal: the Parquet schema has more top-level columns than the Arrow schema"
                        .into(),
                ));
            }
        }
    }
    Ok(per)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Codec;
    use crate::convert::{FileLayout, ParquetOptions};
    use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn schema() -> SchemaRef {
        let st = vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Float64, true),
        ];
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("st", DataType::Struct(st.into()), true),
            Field::new_list("l", Field::new_list_field(DataType::Int64, true), true),
            Field::new("u", DataType::Utf8, false),
        ]))
    }

    /// Rows `from..from + n`: nulls, repeated and unique strings, a struct and lists.
    fn batch(from: i64, n: i64) -> RecordBatch {
        let ids = from..from + n;
        let ints: Int64Array = ids.clone().map(|i| (i % 7 != 0).then_some(i)).collect();
        let strs: StringArray = ids
            .clone()
            .map(|i| (i % 5 != 0).then(|| format!("level-{}", i % 4)))
            .collect();
        let a: StringArray = ids.clone().map(|i| Some(format!("a{}", i % 100))).collect();
        let b: Float64Array = ids.clone().map(|i| Some(i as f64 / 3.0)).collect();
        let Ok(DataType::Struct(fields)) = schema()
            .field_with_name("st")
            .map(|f| f.data_type().clone())
        else {
            unreachable!()
        };
        let st = StructArray::new(
            fields,
            vec![Arc::new(a) as ArrayRef, Arc::new(b)],
            Some(ids.clone().map(|i| i % 3 != 0).collect()),
        );
        let mut l = ListBuilder::new(Int64Builder::new());
        for i in ids.clone() {
            if i % 11 == 0 {
                l.append_null();
            } else {
                for k in 0..i % 4 {
                    l.values().append_value(i * 10 + k);
                }
                l.append(true);
            }
        }
        let mut u = StringBuilder::new();
        for i in ids {
            u.append_value(format!("unique-{i:08}-{}", i * 7919 % 1000003));
        }
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(ints),
                Arc::new(strs),
                Arc::new(st),
                Arc::new(l.finish()),
                Arc::new(u.finish()),
            ],
        )
        .unwrap()
    }

    /// Uneven sizes, larger and smaller than a slice.
    const SIZES: [i64; 7] = [30000, 1, 10240, 7770, 50000, 20480, 10];

    /// The rows of [`all`] in batches of [`SIZES`].
    fn batches() -> Vec<RecordBatch> {
        let mut out = Vec::new();
        let mut at = 0;
        for n in SIZES {
            out.push(batch(at, n));
            at += n;
        }
        out
    }

    fn all() -> RecordBatch {
        batch(0, SIZES.iter().sum())
    }

    fn options() -> ParquetOptions {
        ParquetOptions::plain(Codec::Snappy, 512 << 10)
    }

    /// The file's rows, in one batch, and its metadata.
    fn read(bytes: Vec<u8>) -> (Vec<RecordBatch>, SerializedFileReader<Bytes>) {
        let bytes = Bytes::from(bytes);
        let rows = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .with_batch_size(1 << 20)
            .build()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (rows, SerializedFileReader::new(bytes).unwrap())
    }

    #[test]
    fn the_file_holds_the_rows_and_layout_of_the_one_thread_writer() {
        let layout = FileLayout::for_arrow(schema(), &options()).unwrap();
        let mut one = layout.sink(Vec::new()).unwrap();
        for b in batches() {
            one.write(&b).unwrap();
        }
        let (want, serial) = read(one.finish().unwrap());
        assert_eq!(want, vec![all()], "the serial file reads back as written");
        for threads in [1, 2, 3, 8] {
            let mut sink = layout.sink(Vec::new()).unwrap().parallel(threads).unwrap();
            for b in batches() {
                sink.write(&b).unwrap();
            }
            assert_eq!(sink.rows(), all().num_rows() as u64);
            let (got, file) = read(sink.finish().unwrap());
            assert_eq!(got, want, "{threads} threads: rows and types");
            let (m, s) = (file.metadata(), serial.metadata());
            assert_eq!(
                m.file_metadata().schema_descr().root_schema(),
                s.file_metadata().schema_descr().root_schema()
            );
            assert_eq!(
                m.file_metadata().key_value_metadata(),
                s.file_metadata().key_value_metadata(),
                "schema hint and fingerprint"
            );
            // Row groups close by size as the serial writer's do, give or take the
            // slices queued when the limit was reached: at most five per encoder,
            // about 300 KB here.
            let groups = m.num_row_groups();
            assert!(
                groups >= 2 && groups.abs_diff(s.num_row_groups()) <= s.num_row_groups() / 4,
                "{threads} threads: {groups} row groups, serial {}",
                s.num_row_groups()
            );
            for g in m.row_groups() {
                let order: Vec<_> = g
                    .columns()
                    .iter()
                    .map(|c| c.column_path().string())
                    .collect();
                let serial: Vec<_> = s
                    .row_group(0)
                    .columns()
                    .iter()
                    .map(|c| c.column_path().string())
                    .collect();
                assert_eq!(order, serial, "chunks in schema order");
                assert!(g.columns().iter().all(|c| c.statistics().is_some()));
            }
        }
    }

    #[test]
    fn an_empty_file_is_still_a_parquet_file() {
        let layout = FileLayout::for_arrow(schema(), &options()).unwrap();
        let sink = layout.sink(Vec::new()).unwrap().parallel(2).unwrap();
        let (rows, file) = read(sink.finish().unwrap());
        assert!(rows.iter().all(|b| b.num_rows() == 0));
        assert_eq!(file.metadata().num_row_groups(), 0);
    }

    #[test]
    fn a_batch_that_does_not_fit_the_schema_is_an_error_not_a_hang() {
        let layout = FileLayout::for_arrow(schema(), &options()).unwrap();
        let mut sink = layout.sink(Vec::new()).unwrap().parallel(2).unwrap();
        sink.write(&batch(0, 100)).unwrap();
        // Same column count, but `n` holds text.
        let mut cols = batch(100, 10).columns().to_vec();
        cols[0] = Arc::new(StringArray::from(vec!["x"; 10]));
        let fields: Vec<Field> = schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match i {
                0 => Field::new("n", DataType::Utf8, true),
                _ => f.as_ref().clone(),
            })
            .collect();
        let wrong = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let first = sink.write(&wrong);
        let err = match first {
            Err(e) => e,
            // The encoder may not have failed yet: the error comes at the latest
            // with the row group.
            Ok(()) => sink.finish().expect_err("the file must not be finished"),
        };
        assert!(err.to_string().to_lowercase().contains("type"), "{err}");

        let mut sink = layout.sink(Vec::new()).unwrap().parallel(2).unwrap();
        let short = batch(0, 5).project(&[0, 1]).unwrap();
        let err = sink.write(&short).unwrap_err();
        assert!(
            err.to_string().contains("2 columns for a file of 5"),
            "{err}"
        );
    }
}
