//! Turning one buffered batch into files: group by folder, convert, name, write, retry.
//!
//! A batch becomes one file per folder (one folder with flush-time partitioning; one per
//! hour seen with record-time partitioning). File ids derive from the batch id, so a
//! batch written twice (a retry, or a Redis in-flight batch re-processed after a crash)
//! lands on the same names instead of duplicating rows.
//!
//! A write is attempted `1 + RecoveryAttempts` times with exponential backoff. When all
//! attempts fail, the finished file goes to the local recovery store; only if that fails
//! too is the batch reported as failed, and the buffer keeps its records.
//!
//! Small batches waiting together may be flushed as a group whose files are made
//! durable together (`group`): the same files, fewer journal commits.

mod file_facts;
mod group;
pub use group::{GROUP_BATCHES, GROUP_RECORDS};
mod paged;

use crate::buffer::Batch;
use crate::config::{Config, PartitionTime};
use crate::convert::dynamic::{DType, SchemaRegistry, Shape, encode_dynamic, infer};
use crate::convert::log::LogLayout;
use crate::convert::{ConvertError, ParquetOptions};
use crate::dlq::{DlqEntry, DlqSink};
use crate::log_at;
use crate::logging::{Level, SharedLogger};
use crate::metrics::Metrics;
use crate::open_files::{Body, Finished, OpenFiles, Slot, Store};
use crate::partition::{PathTemplate, object_name};
use crate::record::{DynRecord, LogRecord, Record};
use crate::writer::Writer;
use crate::writer::recovery::{Pass, RecoveryStore};
use file_facts::facts;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the pipeline's background threads share.
pub struct Shared {
    pub metrics: Metrics,
    pub log: SharedLogger,
    pub dlq: Arc<dyn DlqSink>,
    pub use_dlq: bool,
    /// Per-key schemas of dynamic records.
    pub schemas: SchemaRegistry,
    /// Files kept open across flushes (FileMaxAge), shared by the writer threads.
    pub open_files: Option<OpenFiles>,
}

impl Shared {
    /// Sends rejected records to the DLQ (or only counts and logs them, UseDLQ=false).
    pub fn reject(&self, entries: &[DlqEntry]) -> Result<(), crate::dlq::DlqError> {
        if entries.is_empty() {
            return Ok(());
        }
        Metrics::add(&self.metrics.records_rejected, entries.len() as u64);
        // Entries of one batch share their key: one count per run of it.
        for run in entries.chunk_by(|a, b| a.key == b.key) {
            if let Some(key) = &run[0].key {
                let key = crate::partition::PartitionKey::from_text(key);
                self.metrics.per_key.rejected(&key, run.len());
            }
        }
        for e in entries.iter().take(3) {
            log_at!(self.log, Level::Warn, "rejected {}: {}", e.source, e.reason);
        }
        if entries.len() > 3 {
            log_at!(
                self.log,
                Level::Warn,
                "... and {} more rejected records",
                entries.len() - 3
            );
        }
        if !self.use_dlq {
            return Ok(());
        }
        let kept = self.dlq.push(entries)?;
        Metrics::add(&self.metrics.dlq_records, kept as u64);
        let dropped = (entries.len() - kept.min(entries.len())) as u64;
        if dropped > 0 {
            // Said once at error level; the counter and the warnings above tell the rest.
            if self
                .metrics
                .dlq_dropped
                .fetch_add(dropped, Ordering::Relaxed)
                == 0
            {
                log_at!(
                    self.log,
                    Level::Error,
                    "the dead-letter queue ({}) is at DLQMaxBytes: rejected records are now counted (d2p_dlq_dropped_total) and logged, not kept",
                    self.dlq.describe()
                );
            }
        }
        Ok(())
    }
}

/// The result of flushing one batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<String>,
    pub rows: usize,
    pub bytes: u64,
    /// Of `bytes`, what the files' footers take (the part of a file that does not grow
    /// with its rows), for `FileTargetSize`'s estimate.
    pub footer_bytes: u64,
    /// Files kept in the recovery store instead of written.
    pub recovered: usize,
    /// Records sent to the DLQ because they could not be converted.
    pub dead_lettered: usize,
    /// The key's schema after this batch (dynamic records), for the buffer to keep.
    pub schema: Option<Arc<str>>,
    /// Rows of open files (FileMaxAge) that could be neither written nor kept in the
    /// recovery store: their records had left the buffer.
    pub lost: usize,
}

/// A batch (or part of it) that could not be written or kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushFailure {
    pub error: String,
    /// Indexes (into the batch) of the records that are not stored anywhere.
    pub unwritten: Vec<usize>,
    /// What did get written before the failure (boxed: it is the large part, and a
    /// `Result` carries the failure on every flush's return).
    pub partial: Box<Written>,
}

/// What a caught panic said.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Test hook: `D2P_FAULT=convert-panic` makes conversion panic, to prove that a panic in
/// the pipeline is contained (the plugin must never let one reach Fluent Bit).
fn fault_convert_panic() -> bool {
    std::env::var("D2P_FAULT").is_ok_and(|v| v == "convert-panic")
}

pub struct Flusher {
    writer: Box<dyn Writer>,
    opts: ParquetOptions,
    /// Built once: every log file has the same layout.
    log_layout: LogLayout,
    template: PathTemplate,
    time_source: PartitionTime,
    use_hash: bool,
    attempts: u32,
    backoff: Duration,
    /// `None` with a durable buffer: a batch that cannot be written stays there.
    recovery: Option<RecoveryStore>,
    shared: Arc<Shared>,
    inject_panic: bool,
    /// How dynamic records become columns.
    shape: Shape,
    /// The files staged so far while a group of batches is flushed (see `group`).
    group: Option<group::Group>,
}

/// A finished file's object name and size.
struct Named {
    name: String,
    len: u64,
    footer: u64,
}

impl Flusher {
    /// `local_recovery` keeps failed files on local disk; it is off with a durable
    /// buffer (Redis), where the batch itself stays stored for any node to retry.
    pub fn new(
        cfg: &Config,
        writer: Box<dyn Writer>,
        shared: Arc<Shared>,
        local_recovery: bool,
    ) -> Result<Flusher, String> {
        let opts = ParquetOptions::from_config(cfg);
        Ok(Flusher {
            writer,
            log_layout: LogLayout::new(&opts).map_err(|e| e.to_string())?,
            opts,
            template: PathTemplate::parse(&cfg.partition_path, &cfg.partition_fields)?
                .in_zone(cfg.partition_timezone.clone()),
            time_source: cfg.partition_time,
            use_hash: cfg.use_hash,
            attempts: 1 + cfg.recovery_attempts,
            backoff: Duration::from_millis(100),
            recovery: local_recovery.then(|| RecoveryStore::new(&cfg.recovery_path)),
            shared,
            inject_panic: fault_convert_panic(),
            shape: Shape::of(cfg),
            group: None,
        })
    }

    pub fn writer_mut(&mut self) -> &mut dyn Writer {
        &mut *self.writer
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn recovery(&self) -> Option<&RecoveryStore> {
        self.recovery.as_ref()
    }

    /// Groups record indexes by output folder, and by record type (a Redis buffer shared
    /// with nodes configured differently may hold both; each type gets its own file).
    /// The order is deterministic, so a batch written again gets the same file ids.
    fn plan(&self, batch: &Batch, now_ns: i64) -> Vec<(String, bool, Vec<usize>)> {
        let values = batch.key.values();
        let mut groups: BTreeMap<(String, bool), Vec<usize>> = BTreeMap::new();
        let flush_folder = self.template.render(&values, now_ns);
        for (i, r) in batch.records.iter().enumerate() {
            let folder = match self.time_source {
                PartitionTime::Flush => flush_folder.clone(),
                PartitionTime::Record => self
                    .template
                    .render(&values, r.event_ns().unwrap_or(now_ns)),
            };
            let is_log = matches!(r, Record::Log(_));
            groups.entry((folder, is_log)).or_default().push(i);
        }
        groups
            .into_iter()
            .map(|((folder, is_log), idx)| (folder, is_log, idx))
            .collect()
    }

    /// Runs one conversion, turning an error or a panic into a reason.
    fn encode(
        &self,
        convert: impl FnOnce() -> Result<Vec<u8>, ConvertError>,
    ) -> Result<Vec<u8>, String> {
        let inject = self.inject_panic;
        match catch_unwind(AssertUnwindSafe(|| {
            if inject {
                panic!("injected fault: conversion panic (D2P_FAULT=convert-panic)");
            }
            convert()
        })) {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(format!("conversion failed: {e}")),
            Err(p) => Err(format!("conversion panicked: {}", panic_text(&*p))),
        }
    }

    fn put_with_retries(&mut self, name: &str, body: &Body) -> Result<(), String> {
        let started = std::time::Instant::now();
        let done = self.put_attempts(name, body);
        let m = &self.shared.metrics;
        m.write_latency.observe(started.elapsed().as_secs_f64());
        done
    }

    fn put_attempts(&mut self, name: &str, body: &Body) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                Metrics::add(&self.shared.metrics.upload_retries, 1);
                std::thread::sleep(
                    (self.backoff * 2u32.saturating_pow(attempt - 1)).min(Duration::from_secs(5)),
                );
            }
            let put = match body {
                Body::Memory(bytes) => self.writer.put(name, bytes),
                Body::Spooled(path) => self.writer.put_spooled(name, path),
            };
            match put {
                Ok(()) => return Ok(()),
                Err(e) => {
                    Metrics::add(&self.shared.metrics.write_failures, 1);
                    last = e.to_string();
                    log_at!(
                        self.shared.log,
                        Level::Warn,
                        "write of {name} failed (attempt {}/{}): {last}",
                        attempt + 1,
                        self.attempts
                    );
                }
            }
        }
        Err(last)
    }

    /// The schema of the batch's dynamic records: the key's stored one widened by them
    /// (or the fixed one). `Err` holds the reason no dynamic record can be converted.
    fn dynamic_schema(&self, batch: &Batch) -> Result<Option<(DType, bool)>, String> {
        let recs: Vec<&DynRecord> = batch
            .records
            .iter()
            .filter_map(Record::as_dynamic)
            .collect();
        if recs.is_empty() {
            return Ok(None);
        }
        self.settle_schema(batch, self.infer_more(None, &recs)?)
            .map(Some)
    }

    /// `prior` widened by the types of `recs`; `None` with a fixed schema, which needs
    /// no inference.
    fn infer_more(
        &self,
        prior: Option<DType>,
        recs: &[&DynRecord],
    ) -> Result<Option<DType>, String> {
        match self.shape.inference() {
            None => Ok(None),
            Some(nested_json) => infer(recs, prior.as_ref(), nested_json)
                .map(Some)
                .map_err(|e| format!("schema inference failed: {e}")),
        }
    }

    /// The schema of a batch's files: the fixed one, or what its records showed (`seen`)
    /// widened with the key's stored and registered schemas (and pinned to the fixed
    /// one's columns). The flag says whether the files have `_extra`.
    fn settle_schema(&self, batch: &Batch, seen: Option<DType>) -> Result<(DType, bool), String> {
        let t = match self.shape.evolves() {
            true => self.widen_key(batch, seen),
            false => DType::Null,
        };
        Ok((self.shape.file_schema(t), self.shape.has_extra()))
    }

    /// `seen` widened with the key's stored and registered schemas, the change logged
    /// and counted; of each, only the part the shape evolves.
    fn widen_key(&self, batch: &Batch, seen: Option<DType>) -> DType {
        let seen = self
            .shape
            .evolving_part(seen.unwrap_or(DType::Struct { fields: Vec::new() }));
        // A stored schema that does not parse (written by another version) is
        // only a hint: the data's own schema still covers every value.
        let stored = batch
            .schema
            .as_deref()
            .and_then(|s| DType::from_json(s).ok())
            .map(|t| self.shape.evolving_part(t));
        let (t, changed) = self.shared.schemas.widen(&batch.key, stored, seen);
        if !changed.is_empty() {
            Metrics::add(&self.shared.metrics.schema_changes, 1);
            log_at!(
                self.shared.log,
                Level::Info,
                "key {}: the schema of its files changed: {}",
                batch.key,
                changed.join("; ")
            );
        }
        t
    }

    /// Converts and writes one batch, held or in pages.
    pub fn flush(&mut self, batch: &Batch) -> Result<Written, FlushFailure> {
        let done = match &batch.pages {
            Some(pages) => self.flush_paged(batch, &**pages),
            None => self.flush_held(batch),
        };
        self.shared
            .metrics
            .flush_latency
            .observe(batch.taken_at.elapsed().as_secs_f64());
        done
    }

    /// Converts and writes a batch whose records are held.
    fn flush_held(&mut self, batch: &Batch) -> Result<Written, FlushFailure> {
        // The "flush time" is the batch id's time (when it was taken), not the clock: a
        // batch written again after a crash lands in the same folder under the same name.
        let now_ns = batch.id.timestamp_ms() as i64 * 1_000_000;
        let mut out = Written::default();
        let mut unwritten = Vec::new();
        let mut error = String::new();
        let dynamic = self.dynamic_schema(batch);
        if let (Ok(Some((t, _))), true) = (&dynamic, self.shape.evolves()) {
            out.schema = Some(t.to_json().into());
        }
        for (gi, (folder, is_log, idx)) in self.plan(batch, now_ns).into_iter().enumerate() {
            let id = ulid::Ulid(batch.id.0.wrapping_add(gi as u128));
            let shared = self.shared.clone();
            if let Some(open) = &shared.open_files {
                let slot = Slot {
                    key: batch.key.clone(),
                    folder,
                    is_log,
                };
                let (finished, appended) = self.append(open, batch, &slot, id, &idx, &dynamic);
                self.deliver_finished(finished, &mut out);
                if let Err((taken, reason)) = appended {
                    let rest = &idx[taken.min(idx.len())..];
                    self.dead_letter(batch, rest, &reason, &mut out, &mut unwritten, &mut error);
                }
                continue;
            }
            let encoded = if is_log {
                let recs: Vec<&LogRecord> = idx
                    .iter()
                    .filter_map(|&i| batch.records[i].as_log())
                    .collect();
                self.encode(|| self.log_layout.encode(recs.iter().copied()))
            } else {
                let recs: Vec<&DynRecord> = idx
                    .iter()
                    .filter_map(|&i| batch.records[i].as_dynamic())
                    .collect();
                match &dynamic {
                    Ok(Some((t, fixed))) => {
                        self.encode(|| encode_dynamic(&recs, t, *fixed, &self.opts))
                    }
                    Ok(None) => Err("internal: no schema for dynamic records".into()),
                    Err(reason) => Err(reason.clone()),
                }
            };
            let bytes = match encoded {
                Ok(b) => b,
                Err(reason) => {
                    // Conversion can never succeed for these records: dead-letter them.
                    self.dead_letter(batch, &idx, &reason, &mut out, &mut unwritten, &mut error);
                    continue;
                }
            };
            let file = (folder.as_str(), id, &batch.key);
            // In a group (see `group`), the file is made durable with the group's.
            let Some(body) = self.stage(file, bytes, &idx) else {
                continue;
            };
            if let Err(e) = self.deliver(file, &body, idx.len(), &mut out) {
                error = e;
                unwritten.extend(idx);
            }
        }
        if unwritten.is_empty() {
            Ok(out)
        } else {
            // Files written with a widened schema still count: keep it.
            Err(FlushFailure {
                error,
                unwritten,
                partial: Box::new(out),
            })
        }
    }

    /// Sends records that can never be converted to the DLQ; if even that fails, they
    /// stay unwritten (in the buffer) with the reason.
    fn dead_letter(
        &self,
        batch: &Batch,
        idx: &[usize],
        reason: &str,
        out: &mut Written,
        unwritten: &mut Vec<usize>,
        error: &mut String,
    ) {
        log_at!(
            self.shared.log,
            Level::Error,
            "batch {} ({}): {reason}",
            batch.id,
            batch.key
        );
        let entries: Vec<DlqEntry> = idx
            .iter()
            .map(|&i| {
                let mut e = DlqEntry::new(
                    format!("batch {} of key {}", batch.id, batch.key),
                    reason,
                    batch.records[i].to_json().as_bytes(),
                );
                e.key = Some(batch.key.to_string());
                e
            })
            .collect();
        match self.shared.reject(&entries) {
            Ok(()) => out.dead_lettered += entries.len(),
            Err(e) => {
                *error = format!("{reason}; and the DLQ failed: {e}");
                unwritten.extend_from_slice(idx);
            }
        }
    }

    /// Writes one finished file, `(folder, id, key)` naming it, with retries; when
    /// every attempt fails, keeps it in the recovery store. `Err` when it is in
    /// neither place.
    fn deliver(
        &mut self,
        file: (&str, ulid::Ulid, &crate::partition::PartitionKey),
        body: &Body,
        rows: usize,
        out: &mut Written,
    ) -> Result<(), String> {
        let named = self.name(file, body)?;
        self.deliver_named(&named, file.2, body, rows, out)
    }

    /// The object name of a finished file, `(folder, id, key)` naming it, with its size.
    fn name(
        &self,
        (folder, id, key): (&str, ulid::Ulid, &crate::partition::PartitionKey),
        body: &Body,
    ) -> Result<Named, String> {
        let (len, footer, md5) = facts(body, self.use_hash)
            .map_err(|e| format!("reading the finished file failed: {e}"))?;
        Ok(Named {
            name: object_name(folder, &id.to_string(), key, md5.as_deref()),
            len,
            footer,
        })
    }

    /// Counts a written file in `out` and the metrics.
    fn count_written(
        &self,
        named: &Named,
        key: &crate::partition::PartitionKey,
        rows: usize,
        out: &mut Written,
    ) {
        out.files.push(named.name.clone());
        out.rows += rows;
        out.bytes += named.len;
        out.footer_bytes += named.footer;
        let m = &self.shared.metrics;
        Metrics::add(&m.files_written, 1);
        Metrics::add(&m.bytes_written, named.len);
        m.file_size.observe(named.len as f64);
        m.file_rows.observe(rows as f64);
        Metrics::add(&m.records_out, rows as u64);
        m.per_key
            .file_written(key, rows, named.len as usize, std::time::SystemTime::now());
    }

    /// [`Flusher::deliver`] of a named file.
    fn deliver_named(
        &mut self,
        named: &Named,
        key: &crate::partition::PartitionKey,
        body: &Body,
        rows: usize,
        out: &mut Written,
    ) -> Result<(), String> {
        let name = &named.name;
        let e = match self.put_with_retries(name, body) {
            Ok(()) => {
                self.count_written(named, key, rows, out);
                return Ok(());
            }
            Err(e) => e,
        };
        // A spool is read back whole only here, to keep it in the recovery store.
        let keep = |r: &RecoveryStore| match body {
            Body::Memory(bytes) => r.store(name, bytes),
            Body::Spooled(path) => std::fs::read(path)
                .map_err(|e| crate::writer::WriteError::io("read", path, e))
                .and_then(|bytes| r.store(name, &bytes))
                .map(|()| {
                    let _ = std::fs::remove_file(path);
                }),
        };
        let error = match self
            .recovery
            .as_ref()
            .map(|r| (keep(r), r.dir().display().to_string()))
        {
            Some((Ok(()), dir)) => {
                log_at!(
                    self.shared.log,
                    Level::Error,
                    "could not write {name} ({e}); kept in {dir} for retry"
                );
                Metrics::add(&self.shared.metrics.recovery_stored, 1);
                out.recovered += 1;
                return Ok(());
            }
            Some((Err(re), _)) => {
                format!("write of {name} failed: {e}; recovery store failed too: {re}")
            }
            None => format!("write of {name} failed: {e}; the batch stays in the buffer"),
        };
        log_at!(self.shared.log, Level::Error, "{error}");
        Err(error)
    }

    /// Appends a group of the batch to its slot's file in `open`, and hands back the
    /// files finished on the way, to be written. `Err` holds how many of the group's
    /// records were taken, and why the rest could not be (they go to the DLQ, as in a
    /// file of their own).
    fn append(
        &mut self,
        open: &OpenFiles,
        batch: &Batch,
        slot: &Slot,
        id: ulid::Ulid,
        idx: &[usize],
        dynamic: &Result<Option<(DType, bool)>, String>,
    ) -> (Vec<Finished>, Result<(), (usize, String)>) {
        let inject = self.inject_panic;
        let (writer, log) = (&mut self.writer, self.shared.log.clone());
        // A new open file grows where the writer says (its spool), else in memory; a
        // spool that cannot be made is logged, and the file kept in memory instead.
        let store = || match writer.spool_path(&slot.folder).and_then(|p| {
            p.map(|p| {
                Store::spool(p.clone()).map_err(|e| crate::writer::WriteError::io("create", &p, e))
            })
            .transpose()
        }) {
            Ok(Some(s)) => s,
            Ok(None) => Store::memory(),
            Err(e) => {
                log_at!(log, Level::Warn, "open file kept in memory: {e}");
                Store::memory()
            }
        };
        let appended = catch_unwind(AssertUnwindSafe(|| {
            if inject {
                panic!("injected fault: conversion panic (D2P_FAULT=convert-panic)");
            }
            if slot.is_log {
                let recs: Vec<&LogRecord> = idx
                    .iter()
                    .filter_map(|&i| batch.records[i].as_log())
                    .collect();
                Ok(open.append_log(slot, id, &recs, &self.log_layout, store))
            } else {
                let recs: Vec<&DynRecord> = idx
                    .iter()
                    .filter_map(|&i| batch.records[i].as_dynamic())
                    .collect();
                match dynamic {
                    Ok(Some((t, fixed))) => {
                        Ok(open.append_dynamic(slot, id, &recs, (t, *fixed), &self.opts, store))
                    }
                    Ok(None) => Err("internal: no schema for dynamic records".to_string()),
                    Err(reason) => Err(reason.clone()),
                }
            }
        }));
        let a = match appended {
            Ok(Ok(a)) => a,
            Ok(Err(reason)) => return (Vec::new(), Err((0, reason))),
            Err(p) => {
                let reason = format!("conversion panicked: {}", panic_text(&*p));
                return (Vec::new(), Err((0, reason)));
            }
        };
        let result = a
            .result
            .map_err(|e| (a.written, format!("conversion failed: {e}")));
        (a.finished, result)
    }

    /// Writes files taken out of their slots. One that cannot be written or kept is
    /// lost, its records having left the buffer: counted and logged as such.
    fn deliver_finished(&mut self, files: Vec<Finished>, out: &mut Written) {
        for f in files {
            let delivered = match &f.bytes {
                Ok(body) => self.deliver((&f.slot.folder, f.id, &f.slot.key), body, f.rows, out),
                Err(e) => Err(format!("finishing the file failed: {e}")),
            };
            if let Ok(Body::Spooled(path)) = &f.bytes
                && delivered.is_err()
            {
                // Neither written nor kept: its rows are counted as lost below.
                let _ = std::fs::remove_file(path);
            }
            if let Err(e) = delivered {
                log_at!(
                    self.shared.log,
                    Level::Error,
                    "{} rows of key {} lost: {e}",
                    f.rows,
                    f.slot.key
                );
                out.lost += f.rows;
                Metrics::add(&self.shared.metrics.records_lost, f.rows as u64);
            }
        }
    }

    /// Finishes and writes the open files (FileMaxAge) that are due, or all of them
    /// (an explicit flush, exit).
    pub fn finish_open(&mut self, all: bool) -> Written {
        let mut out = Written::default();
        let shared = self.shared.clone();
        let Some(open) = &shared.open_files else {
            return out;
        };
        let files = match catch_unwind(AssertUnwindSafe(|| match all {
            true => open.take_all(),
            false => open.take_due(),
        })) {
            Ok(files) => files,
            Err(p) => {
                log_at!(
                    self.shared.log,
                    Level::Error,
                    "finishing open files panicked: {}",
                    panic_text(&*p)
                );
                return out;
            }
        };
        self.deliver_finished(files, &mut out);
        let m = &shared.metrics;
        let st = open.stats();
        m.open_files.store(st.files as u64, Ordering::Relaxed);
        m.open_file_bytes.store(st.bytes, Ordering::Relaxed);
        let oldest = st.oldest.as_millis().min(u128::from(u64::MAX)) as u64;
        m.open_file_oldest_ms.store(oldest, Ordering::Relaxed);
        out
    }

    /// Removes what interrupted writes left at the destination (see
    /// [`Writer::sweep_leftovers`]) and in the recovery store, counting and logging it.
    /// A failure is logged only: a sweep is housekeeping, and a missing permission for
    /// it must not stop writing.
    pub fn sweep_leftovers(&mut self) {
        match self.writer.sweep_leftovers() {
            Ok(swept) => self.report_swept(&swept),
            Err(e) => log_at!(
                self.shared.log,
                Level::Warn,
                "could not look for what interrupted writes left at the destination: {e}"
            ),
        }
        if let Some(store) = &self.recovery {
            let swept = store.sweep(std::time::SystemTime::now());
            self.report_swept(&swept);
        }
    }

    fn report_swept(&self, swept: &crate::writer::Swept) {
        let first = |v: &[String]| {
            let more = if v.len() > 3 { ", ..." } else { "" };
            format!("{}{more}", v[..v.len().min(3)].join(", "))
        };
        let (gone, failed, kind) = (&swept.removed, &swept.failed, swept.kind);
        if !gone.is_empty() {
            Metrics::add(&self.shared.metrics.leftovers_removed, gone.len() as u64);
            log_at!(
                self.shared.log,
                Level::Warn,
                "removed {} {kind} left by interrupted writes: {}",
                gone.len(),
                first(gone)
            );
        }
        if !failed.is_empty() {
            log_at!(
                self.shared.log,
                Level::Warn,
                "could not remove {} {kind} left by interrupted writes: {}",
                failed.len(),
                first(failed)
            );
        }
    }

    /// Retries files kept in the recovery store; returns (written, still kept).
    pub fn resend_recovery(&mut self, pass: Pass) -> (usize, usize) {
        let Some(recovery) = &self.recovery else {
            return (0, 0);
        };
        let (ok, failed) = recovery.resend(&mut *self.writer, pass);
        if ok > 0 {
            Metrics::add(&self.shared.metrics.recovery_resent, ok as u64);
            log_at!(
                self.shared.log,
                Level::Info,
                "wrote {ok} files from the recovery store"
            );
        }
        if failed > 0 {
            log_at!(
                self.shared.log,
                Level::Warn,
                "{failed} files still in the recovery store"
            );
        }
        (ok, failed)
    }
}

/// Removes what a finished file left in its spool, when it is not to be written.
fn discard(f: Finished) {
    if let Ok(Body::Spooled(path)) = f.bytes {
        let _ = std::fs::remove_file(path);
    }
}
