//! Files kept open across flushes (`FileMaxAge`), so a file's size is not bounded by
//! what the buffer holds.
//!
//! Without it, each flush of a key is one file, so an analytics-sized file (64–512 MB)
//! needs that many bytes of *records* in the buffer first: several times the file,
//! as records take several times more memory than their Parquet encoding. With it,
//! every flush appends its records to the key's open file as Arrow batches; the
//! Parquet writer closes row groups by encoded size (`WriterRowGroupSize`), so an open
//! file holds its finished, compressed row groups and one row group in progress. The
//! file is finished (footer written) and handed back for writing once it reaches
//! `FileTargetSize`, once it has been open `FileMaxAge`, when open files together pass
//! their memory budget (the largest first), and on an explicit flush or at exit.
//!
//! Where the finished row groups go is the writer's choice ([`Store`]): the file
//! writer grows the file in its output folder under a hidden name, the S3 writer in
//! FileSpoolPath, so that memory holds only each file's row group in progress; with
//! `FileSpoolPath memory` the S3 writer's open files stay in memory, within the budget.
//!
//! One slot per key, output folder and record type, shared by every writer thread:
//! batches of a key written by two threads still land in one file (the slot's lock
//! orders them). Records in an open file have left the buffer, so this is for the
//! mem buffer only, which loses them in a crash either way. With Redis, records wait
//! in Redis instead, and a batch too large to hold at once is written through a
//! private set of open files of its own (`Flusher::flush_paged`), one per folder, that
//! lives as long as the batch's write.

use crate::convert::dynamic::{DType, arrow_schema, dynamic_batches};
use crate::convert::log::LogLayout;
use crate::convert::{ConvertError, FileLayout, FileStart, ParquetOptions, ParquetSink};
use crate::partition::PartitionKey;
use crate::record::{DynRecord, LogRecord};
use crate::writer::file::WriteBehind;
use arrow_array::RecordBatch;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Where an open file's rows belong: its key, its folder and its record type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slot {
    pub key: PartitionKey,
    pub folder: String,
    pub is_log: bool,
}

/// An open file's bytes in memory, in blocks of 1 MiB: a `Vec` that doubles as it grows
/// would hold up to twice the file (and copy it at every doubling) for as long as the
/// file stays open, which is what the budget is meant to bound.
#[derive(Default)]
pub struct Blocks {
    blocks: Vec<Vec<u8>>,
    len: usize,
}

/// The size of a [`Blocks`] block.
const BLOCK: usize = 1 << 20;

impl std::io::Write for Blocks {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let room = match self.blocks.last() {
                Some(b) if b.len() < BLOCK => BLOCK - b.len(),
                _ => {
                    self.blocks.push(Vec::with_capacity(BLOCK));
                    BLOCK
                }
            };
            let (now, rest) = buf.split_at(room.min(buf.len()));
            if let Some(b) = self.blocks.last_mut() {
                b.extend_from_slice(now);
            }
            buf = rest;
        }
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Blocks {
    /// The file as one buffer, for the writer (one copy, when the file is done).
    fn into_vec(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for b in self.blocks {
            out.extend_from_slice(&b);
        }
        out
    }
}

/// Where an open file's bytes go as its row groups are finished.
pub enum Store {
    /// In memory: what the budget bounds.
    Memory(Blocks),
    /// A local file at a path the writer chose (`Writer::spool_path`), handed back to it
    /// by that path when finished.
    Spool {
        path: PathBuf,
        file: BufWriter<WriteBehind>,
    },
}

/// The write buffer of a spool: page-sized writes of the Parquet writer go to the
/// file in large ones.
const SPOOL_BUFFER: usize = 256 << 10;

impl Store {
    pub fn memory() -> Store {
        Store::Memory(Blocks::default())
    }

    /// A spool created at `path`.
    pub fn spool(path: PathBuf) -> std::io::Result<Store> {
        let file = BufWriter::with_capacity(SPOOL_BUFFER, WriteBehind::new(File::create(&path)?));
        Ok(Store::Spool { path, file })
    }

    /// The bytes of a finished file, or where they are.
    fn finish(self) -> Result<Body, String> {
        match self {
            Store::Memory(b) => Ok(Body::Memory(b.into_vec())),
            Store::Spool { path, file } => match file.into_inner() {
                Ok(_) => Ok(Body::Spooled(path)),
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    Err(format!("write {}: {}", path.display(), e.error()))
                }
            },
        }
    }
}

impl Write for Store {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Store::Memory(b) => b.write(buf),
            Store::Spool { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Store::Memory(b) => b.flush(),
            Store::Spool { file, .. } => file.flush(),
        }
    }
}

/// A finished file: its bytes, or the spool that holds them.
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    Spooled(PathBuf),
}

struct OpenFile {
    sink: ParquetSink<Store>,
    /// A dynamic file's schema (a file has one; a change opens the next file).
    schema: Option<(DType, bool)>,
    /// The id of the batch that opened it: the file is named after it.
    id: ulid::Ulid,
    opened: Instant,
    rows: usize,
}

impl OpenFile {
    /// The file's encoded size so far: its finished row groups plus what the one in
    /// progress is expected to take. What `FileTargetSize` is compared with.
    fn size(&self) -> u64 {
        (self.sink.bytes_written() + self.sink.in_progress_size()) as u64
    }

    /// The memory it holds: the writer's state for the row group in progress, which is
    /// more than that row group will take once encoded, and its finished row groups
    /// unless they are spooled. What the budget is compared with.
    fn memory(&self) -> u64 {
        let done = match self.sink.inner() {
            Store::Memory(_) => self.sink.bytes_written(),
            Store::Spool { .. } => SPOOL_BUFFER,
        };
        (done + self.sink.memory_size()) as u64
    }
}

/// A file taken out of its slot and finished: to be written under the name its slot
/// and id make, or, when finishing failed, the rows it held and why.
#[derive(Debug)]
pub struct Finished {
    pub slot: Slot,
    pub id: ulid::Ulid,
    pub rows: usize,
    pub bytes: Result<Body, String>,
}

/// What an append did: the files finished on the way (this one, once it reached the
/// target, or another slot's over the budget), how many of its records are in the
/// file, and, if not all, why.
#[derive(Debug)]
pub struct Appended {
    pub finished: Vec<Finished>,
    pub written: usize,
    pub result: Result<(), ConvertError>,
}

/// See [`OpenFiles::stats`].
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenStats {
    pub files: usize,
    pub bytes: u64,
    pub oldest: Duration,
}

type Entry = Arc<Mutex<Option<OpenFile>>>;

/// Locks, taking over a lock whose holder panicked: the holder's file is then dropped
/// by [`OpenFiles::append`] (it may be half-written), never reused.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open files of every slot, and when to finish them.
pub struct OpenFiles {
    slots: Mutex<HashMap<Slot, Entry>>,
    max_age: Duration,
    target: Option<u64>,
    budget: u64,
}

impl OpenFiles {
    /// Files finished at `target` bytes (if any) or `max_age`, open files together
    /// holding at most `budget` bytes.
    pub fn new(max_age: Duration, target: Option<u64>, budget: u64) -> OpenFiles {
        OpenFiles {
            slots: Mutex::new(HashMap::new()),
            max_age,
            target,
            budget,
        }
    }

    fn entry(&self, slot: &Slot) -> Entry {
        lock(&self.slots).entry(slot.clone()).or_default().clone()
    }

    /// Appends log records to the slot's file (opening it under `id`, its bytes going to
    /// `store()`, if none is open).
    pub fn append_log(
        &self,
        slot: &Slot,
        id: ulid::Ulid,
        recs: &[&LogRecord],
        layout: &LogLayout,
        store: impl FnOnce() -> Store,
    ) -> Appended {
        self.append(
            slot,
            id,
            None,
            |start| layout.sink_for(store(), start),
            layout.batches(recs),
        )
    }

    /// Appends dynamic records of schema `t` to the slot's file; a file opened with
    /// another schema is finished first, and a new one opened.
    pub fn append_dynamic(
        &self,
        slot: &Slot,
        id: ulid::Ulid,
        recs: &[&DynRecord],
        (t, fixed): (&DType, bool),
        opts: &ParquetOptions,
        store: impl FnOnce() -> Store,
    ) -> Appended {
        let open = |start: FileStart<'_>| {
            FileLayout::for_arrow(arrow_schema(t, fixed), opts)?.sink_for(store(), start)
        };
        let batches = dynamic_batches(recs, t, fixed);
        self.append(slot, id, Some((t.clone(), fixed)), open, batches)
    }

    /// The common part of the appends: finish an open file of another schema, open
    /// one with `open` if none is (told the first batch, whose values choose the
    /// columns without a dictionary), write the batches as they are built, and finish the
    /// file at the target size. A batch that cannot be built stops the append, and the
    /// file stays usable. A write that fails (the parquet writer itself failing)
    /// leaves the file unusable: it is finished as far as it got, which may include
    /// part of the failed batch (then those rows are also dead-lettered: kept twice
    /// rather than lost).
    fn append(
        &self,
        slot: &Slot,
        id: ulid::Ulid,
        schema: Option<(DType, bool)>,
        open: impl FnOnce(FileStart<'_>) -> Result<ParquetSink<Store>, ConvertError>,
        batches: impl Iterator<Item = Result<RecordBatch, ConvertError>>,
    ) -> Appended {
        let entry = self.entry(slot);
        let mut guard = lock(&entry);
        let mut out = Appended {
            finished: Vec::new(),
            written: 0,
            result: Ok(()),
        };
        if entry.is_poisoned() {
            // A panic while this file was written: finish it as far as it got, if the
            // writer still can, rather than drop the rows appended before; it is not
            // appended to again.
            let f = guard.take();
            entry.clear_poison();
            if let Ok(Some(done)) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish(slot, f)))
            {
                out.finished.push(done);
            }
        }
        if guard.as_ref().is_some_and(|f| f.schema != schema) {
            out.finished.extend(finish(slot, guard.take()));
        }
        let mut batches = batches.peekable();
        let file = match &mut *guard {
            Some(f) => f,
            None => match open(FileStart {
                // Not known: later appends add to the file.
                rows: None,
                first: batches.peek().and_then(|b| b.as_ref().ok()),
            }) {
                Ok(sink) => guard.insert(OpenFile {
                    sink,
                    schema,
                    id,
                    opened: Instant::now(),
                    rows: 0,
                }),
                Err(e) => {
                    out.result = Err(e);
                    return out;
                }
            },
        };
        for b in batches {
            let written = b.and_then(|b| file.sink.write(&b).map(|()| b.num_rows()));
            match written {
                Ok(n) => {
                    file.rows += n;
                    out.written += n;
                }
                Err(e) => {
                    if matches!(e, ConvertError::Parquet(_)) {
                        out.finished.extend(finish(slot, guard.take()));
                    }
                    out.result = Err(e);
                    break;
                }
            }
        }
        if let Some(f) = &*guard
            && self.target.is_some_and(|t| f.size() >= t)
        {
            out.finished.extend(finish(slot, guard.take()));
        }
        drop(guard);
        out.finished.extend(self.over_budget());
        out
    }

    /// Finishes the files open for `max_age` or longer.
    pub fn take_due(&self) -> Vec<Finished> {
        self.take(|f| f.opened.elapsed() >= self.max_age)
    }

    /// Finishes every open file (an explicit flush, or exit).
    pub fn take_all(&self) -> Vec<Finished> {
        self.take(|_| true)
    }

    /// The open files in one pass over the slots (the gauges read all three every
    /// 200 ms): how many, the memory they hold (finished row groups and the ones in
    /// progress), and how long the oldest has been open (zero when none is).
    pub fn stats(&self) -> OpenStats {
        let mut st = OpenStats::default();
        for (_, e) in self.entries() {
            if let Some(f) = lock(&e).as_ref() {
                st.files += 1;
                st.bytes += f.memory();
                st.oldest = st.oldest.max(f.opened.elapsed());
            }
        }
        st
    }

    pub fn bytes(&self) -> u64 {
        self.stats().bytes
    }

    pub fn oldest(&self) -> Duration {
        self.stats().oldest
    }

    pub fn len(&self) -> usize {
        self.stats().files
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entries(&self) -> Vec<(Slot, Entry)> {
        lock(&self.slots)
            .iter()
            .map(|(s, e)| (s.clone(), e.clone()))
            .collect()
    }

    fn take(&self, pick: impl Fn(&OpenFile) -> bool) -> Vec<Finished> {
        let mut out = Vec::new();
        for (slot, entry) in self.entries() {
            let mut g = lock(&entry);
            if g.as_ref().is_some_and(&pick) {
                out.extend(finish(&slot, g.take()));
            }
        }
        // Slots of keys that went quiet are dropped with their last file.
        lock(&self.slots).retain(|_, e| Arc::strong_count(e) > 1 || lock(e).is_some());
        out
    }

    /// Finishes the largest open files until the rest fit the budget. A file being
    /// appended to elsewhere is skipped (it is checked again after its append).
    fn over_budget(&self) -> Vec<Finished> {
        let mut sizes: Vec<(u64, Slot, Entry)> = self
            .entries()
            .into_iter()
            .filter_map(|(s, e)| {
                let size = e.try_lock().ok()?.as_ref()?.memory();
                Some((size, s, e))
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|(n, ..)| n).sum();
        let mut out = Vec::new();
        sizes.sort_by_key(|(n, ..)| std::cmp::Reverse(*n));
        for (size, slot, entry) in sizes {
            if total <= self.budget {
                break;
            }
            let mut g = lock(&entry);
            out.extend(finish(&slot, g.take()));
            total = total.saturating_sub(size);
        }
        out
    }
}

/// A file's footer written, and the file handed back with its slot.
fn finish(slot: &Slot, f: Option<OpenFile>) -> Option<Finished> {
    let f = f?;
    let spool = match f.sink.inner() {
        Store::Spool { path, .. } => Some(path.clone()),
        Store::Memory(_) => None,
    };
    let bytes = match f.sink.finish() {
        Ok(store) => store.finish(),
        Err(e) => {
            // Half a file, of no use to anyone: not left for the sweep.
            if let Some(p) = spool {
                let _ = std::fs::remove_file(p);
            }
            Err(e.to_string())
        }
    };
    Some(Finished {
        slot: slot.clone(),
        id: f.id,
        rows: f.rows,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readback::bytes_rows;
    use crate::record::log::{LogBuilder, Str};

    fn recs(from: usize, n: usize) -> Vec<LogRecord> {
        (from..from + n)
            .map(|i| {
                let mut b = LogBuilder::new();
                b.set(Str::Message, &format!("m{i}"));
                b.finish()
            })
            .collect()
    }

    fn slot(key: &str) -> Slot {
        Slot {
            key: PartitionKey::from_text(key),
            folder: "f".into(),
            is_log: true,
        }
    }

    fn layout() -> LogLayout {
        let opts = ParquetOptions::from_config(&crate::config::Config::default());
        LogLayout::new(&opts).unwrap()
    }

    fn append(open: &OpenFiles, key: &str, from: usize, n: usize) -> Vec<Finished> {
        let recs = recs(from, n);
        let refs: Vec<&LogRecord> = recs.iter().collect();
        let id = ulid::Ulid(from as u128);
        let a = open.append_log(&slot(key), id, &refs, &layout(), Store::memory);
        a.result.unwrap();
        assert_eq!(a.written, n);
        a.finished
    }

    fn messages(f: &Finished) -> Vec<String> {
        let bytes = match f.bytes.as_ref().unwrap() {
            Body::Memory(b) => b.clone(),
            Body::Spooled(p) => std::fs::read(p).unwrap(),
        };
        let bytes = bytes::Bytes::from(bytes);
        bytes_rows(bytes)
            .unwrap()
            .iter()
            .map(|r| r["message"].as_str().unwrap().to_string())
            .collect()
    }

    fn names(from: usize, n: usize) -> Vec<String> {
        (from..from + n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn appends_make_one_file_per_slot_named_after_its_first_batch() {
        let open = OpenFiles::new(Duration::from_secs(3600), None, u64::MAX);
        for (key, from) in [("a", 0), ("b", 10), ("a", 20), ("a", 30)] {
            assert!(append(&open, key, from, 10).is_empty());
        }
        assert_eq!(open.len(), 2);
        assert!(open.take_due().is_empty(), "none is an hour old");
        assert!(open.oldest() > Duration::ZERO && open.oldest() < Duration::from_secs(60));
        let mut done = open.take_all();
        done.sort_by_key(|f| f.id);
        assert_eq!(done.len(), 2);
        assert_eq!(
            (done[0].slot.key.as_str(), done[0].id.0, done[0].rows),
            ("a", 0, 30)
        );
        let mut want = names(0, 10);
        want.extend(names(20, 20));
        assert_eq!(messages(&done[0]), want);
        assert_eq!(messages(&done[1]), names(10, 10));
        assert!(open.is_empty() && open.take_all().is_empty());
        assert_eq!(open.oldest(), Duration::ZERO);
    }

    /// An open file is opened with its first append's first batch, so its dictionaries
    /// are chosen from it (WriterDictionaryAdaptive): a message column that never
    /// repeats gets none, one that repeats keeps it, and later appends follow.
    #[test]
    fn an_open_file_chooses_its_dictionaries_from_its_first_batch() {
        let open = OpenFiles::new(Duration::from_secs(3600), None, u64::MAX);
        let make = |n: usize, f: &dyn Fn(usize) -> String| -> Vec<LogRecord> {
            (0..n)
                .map(|i| {
                    let mut b = LogBuilder::new();
                    b.set(Str::Message, &f(i));
                    b.finish()
                })
                .collect()
        };
        let unique = |i: usize| format!("request {i}");
        let repeating = |i: usize| format!("retry {}", i % 3);
        for (key, f) in [
            ("u", &unique as &dyn Fn(usize) -> String),
            ("r", &repeating),
        ] {
            for part in [0, 1] {
                let recs = make(200, &|i| f(part * 200 + i));
                let refs: Vec<&LogRecord> = recs.iter().collect();
                let a = open.append_log(
                    &slot(key),
                    ulid::Ulid(part as u128),
                    &refs,
                    &layout(),
                    Store::memory,
                );
                a.result.unwrap();
            }
        }
        let done = open.take_all();
        assert_eq!(done.len(), 2);
        for file in done {
            let Some(Body::Memory(bytes)) = file.bytes.as_ref().ok() else {
                panic!("an in-memory file");
            };
            let bytes = bytes::Bytes::from(bytes.clone());
            let reader =
                parquet::file::serialized_reader::SerializedFileReader::new(bytes).unwrap();
            use parquet::file::reader::FileReader;
            let message = reader
                .metadata()
                .row_group(0)
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "message")
                .map(|c| c.dictionary_page_offset().is_some());
            let (want_dictionary, value): (bool, &dyn Fn(usize) -> String) =
                match file.slot.key.as_str() {
                    "u" => (false, &unique),
                    _ => (true, &repeating),
                };
            assert_eq!(
                message,
                Some(want_dictionary),
                "key {}",
                file.slot.key.as_str()
            );
            assert_eq!(messages(&file), (0..400).map(value).collect::<Vec<_>>());
        }
    }

    #[test]
    fn files_past_the_budget_are_finished_largest_first() {
        let open = OpenFiles::new(Duration::from_secs(3600), None, 1);
        // Any file is over a budget of one byte: each append finishes its own file.
        let done = append(&open, "a", 0, 10);
        assert_eq!(done.len(), 1);
        assert_eq!(messages(&done[0]), names(0, 10));
        assert!(open.is_empty());
        // Of two files over a budget that holds either alone, the larger goes.
        let sizes = OpenFiles::new(Duration::from_secs(3600), None, u64::MAX);
        append(&sizes, "s", 100, 2);
        let small = sizes.bytes();
        append(&sizes, "b", 200, 300);
        let both = sizes.bytes();
        assert!(both > 2 * small, "{small} {both}");
        let open = OpenFiles::new(Duration::from_secs(3600), None, both - 1);
        assert!(append(&open, "s", 100, 2).is_empty());
        let done = append(&open, "b", 200, 300);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].slot.key.as_str(), "b");
        assert_eq!((open.len(), open.bytes()), (1, small));
    }

    #[test]
    fn blocks_keep_the_bytes_in_order_across_block_ends() {
        use std::io::Write;
        let mut b = Blocks::default();
        let data: Vec<u8> = (0..(2 * BLOCK + 77)).map(|i| (i % 251) as u8).collect();
        for part in data.chunks(BLOCK / 3 + 5) {
            b.write_all(part).unwrap();
        }
        assert_eq!(b.blocks.len(), 3);
        assert!(b.blocks.iter().all(|x| x.capacity() == BLOCK));
        assert_eq!(b.into_vec(), data);
    }

    #[test]
    fn a_spooled_file_holds_its_row_groups_on_disk_not_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        // A row group per append, finished by the writer as the next one begins.
        let cfg = crate::config::Config {
            writer_row_group_size: 1,
            ..Default::default()
        };
        let layout = LogLayout::new(&ParquetOptions::from_config(&cfg)).unwrap();
        let spooled = OpenFiles::new(Duration::from_secs(3600), None, u64::MAX);
        let in_memory = OpenFiles::new(Duration::from_secs(3600), None, u64::MAX);
        let path = dir.path().join("spool");
        for from in (0..4000).step_by(200) {
            // Ids that do not compress, so the spool passes its write buffer.
            let recs: Vec<LogRecord> = (from..from + 200)
                .map(|i| {
                    let mut b = LogBuilder::new();
                    b.set(Str::Message, &format!("m{i}"));
                    let id: String = (0..8)
                        .map(|k| {
                            format!(
                                "{:016x}",
                                (i as u64 * 8 + k).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                            )
                        })
                        .collect();
                    b.set(Str::CorrelationId, &id);
                    b.finish()
                })
                .collect();
            let refs: Vec<&LogRecord> = recs.iter().collect();
            let id = ulid::Ulid(7);
            let spool = || Store::spool(path.clone()).unwrap();
            let a = spooled.append_log(&slot("a"), id, &refs, &layout, spool);
            assert_eq!(a.written, 200);
            let b = in_memory.append_log(&slot("a"), id, &refs, &layout, Store::memory);
            assert_eq!(b.written, 200);
        }
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert!(on_disk > SPOOL_BUFFER as u64, "{on_disk}");
        // Both hold the row group in progress; the spooled one, its write buffer
        // besides, where the other holds every finished row group.
        let (spool_mem, mem) = (spooled.bytes(), in_memory.bytes());
        assert!(
            mem + SPOOL_BUFFER as u64 - spool_mem >= on_disk,
            "{spool_mem} {mem} {on_disk}"
        );
        let done = spooled.take_all();
        assert!(matches!(&done[0].bytes, Ok(Body::Spooled(p)) if p == &path));
        assert_eq!(done[0].rows, 4000);
        assert_eq!(messages(&done[0]), names(0, 4000));
        assert_eq!(messages(&in_memory.take_all()[0]), names(0, 4000));
    }

    #[test]
    fn an_aged_file_is_due() {
        let open = OpenFiles::new(Duration::ZERO, None, u64::MAX);
        assert!(append(&open, "a", 0, 3).is_empty());
        let done = open.take_due();
        assert_eq!(done.len(), 1);
        assert_eq!(messages(&done[0]), names(0, 3));
    }

    #[test]
    fn a_file_at_the_target_size_is_finished_by_its_append() {
        let open = OpenFiles::new(Duration::from_secs(3600), Some(1), u64::MAX);
        let done = append(&open, "a", 0, 5);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].rows, 5);
        assert!(open.is_empty());
    }
}
