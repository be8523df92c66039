//! Batches too large to hold at once (see [`Pages`]): read a page at a time and
//! appended to files that grow in the writer's spool.

use super::{FlushFailure, Flusher, Written, discard};
use crate::buffer::{Batch, Pages};
use crate::convert::dynamic::DType;
use crate::dlq::DlqEntry;
use crate::metrics::Metrics;
use crate::open_files::{OpenFiles, Slot};
use crate::record::{DynRecord, Record};
use std::time::Duration;

impl Flusher {
    /// Converts and writes a batch too large to hold at once (see [`Pages`]): its
    /// records are read a page at a time and appended to one file per folder and
    /// record type, which grows in the writer's spool (FileSpoolPath), so memory holds
    /// a page and each file's row group in progress, whatever the files' size. Files
    /// are named as a batch's are, from the batch id and the order in which the
    /// batch's records first reach each file, so a batch written again overwrites the
    /// same files. Any file that cannot be written fails the whole batch, which its
    /// buffer keeps (Redis keeps the in-flight list whole).
    pub(super) fn flush_paged(
        &mut self,
        batch: &Batch,
        pages: &dyn Pages,
    ) -> Result<Written, FlushFailure> {
        Metrics::add(&self.shared.metrics.batches_paged, 1);
        let mut out = Written::default();
        let open = OpenFiles::new(Duration::MAX, None, u64::MAX);
        let result = self.write_pages(batch, pages, &open, &mut out);
        // What a failure left unwritten is not kept: the batch is written again whole.
        for f in open.take_all() {
            discard(f);
        }
        match result {
            Ok(()) => Ok(out),
            Err(error) => Err(FlushFailure {
                error,
                unwritten: (0..batch.len()).collect(),
                partial: Box::new(out),
            }),
        }
    }

    /// One page of a paged batch, as a batch of its own (same id, key and schema);
    /// records that could not be read back go to the DLQ here.
    fn read_page(&self, batch: &Batch, pages: &dyn Pages, from: usize) -> Result<Batch, String> {
        let (records, bad) = read_at(batch, pages, from)?;
        self.shared.reject(&bad).map_err(|e| {
            format!(
                "records of batch {} could not be dead-lettered: {e}",
                batch.id
            )
        })?;
        Ok(Batch {
            id: batch.id,
            key: batch.key.clone(),
            records,
            bytes: 0,
            taken_at: batch.taken_at,
            schema: batch.schema.clone(),
            pages: None,
        })
    }

    /// The schema of every dynamic record of a paged batch, read through once before
    /// any is written, so that each of the batch's files has one schema.
    fn paged_schema(
        &self,
        batch: &Batch,
        pages: &dyn Pages,
    ) -> Result<Result<(DType, bool), String>, String> {
        let mut seen = None;
        for from in (0..pages.total()).step_by(pages.page().max(1)) {
            let (records, _) = read_at(batch, pages, from)?;
            let recs: Vec<&DynRecord> = records.iter().filter_map(Record::as_dynamic).collect();
            if !recs.is_empty() {
                seen = match self.infer_more(seen, &recs) {
                    Ok(t) => t,
                    Err(reason) => return Ok(Err(reason)),
                };
            }
        }
        Ok(self.settle_schema(batch, seen))
    }

    /// The work of [`Flusher::flush_paged`]; `Err` when the batch must be written again.
    fn write_pages(
        &mut self,
        batch: &Batch,
        pages: &dyn Pages,
        open: &OpenFiles,
        out: &mut Written,
    ) -> Result<(), String> {
        let now_ns = batch.id.timestamp_ms() as i64 * 1_000_000;
        // Read through first only once a dynamic record shows up: log records need no
        // schema, and a batch of them is then read once.
        let mut dynamic: Option<Result<Option<(DType, bool)>, String>> = None;
        let mut slots: Vec<(String, bool)> = Vec::new();
        for from in (0..pages.total()).step_by(pages.page().max(1)) {
            let part = self.read_page(batch, pages, from)?;
            if dynamic.is_none() && part.records.iter().any(|r| r.as_dynamic().is_some()) {
                let settled = self.paged_schema(batch, pages)?;
                if let (Ok((t, _)), true) = (&settled, self.shape.evolves()) {
                    out.schema = Some(t.to_json().into());
                }
                dynamic = Some(settled.map(Some));
            }
            let schema = dynamic.clone().unwrap_or(Ok(None));
            for (folder, is_log, idx) in self.plan(&part, now_ns) {
                let gi = match slots.iter().position(|s| s.0 == folder && s.1 == is_log) {
                    Some(i) => i,
                    None => {
                        slots.push((folder.clone(), is_log));
                        slots.len() - 1
                    }
                };
                let id = ulid::Ulid(batch.id.0.wrapping_add(gi as u128));
                let slot = Slot {
                    key: batch.key.clone(),
                    folder,
                    is_log,
                };
                let (finished, appended) = self.append(open, &part, &slot, id, &idx, &schema);
                // Files are finished early only when their writer failed: a second file
                // in the slot would take the first's name.
                if !finished.is_empty() {
                    finished.into_iter().for_each(discard);
                    return Err(format!(
                        "a file of batch {} failed while it was written",
                        batch.id
                    ));
                }
                if let Err((taken, reason)) = appended {
                    let (mut unwritten, mut error) = (Vec::new(), String::new());
                    let rest = &idx[taken.min(idx.len())..];
                    self.dead_letter(&part, rest, &reason, out, &mut unwritten, &mut error);
                    if !unwritten.is_empty() {
                        return Err(error);
                    }
                }
            }
        }
        // Every file is tried, as a batch's are: those written now are overwritten
        // under the same names when the batch is written again.
        let mut failed = Ok(());
        for f in open.take_all() {
            let delivered = match &f.bytes {
                Ok(body) => self.deliver((&f.slot.folder, f.id, &f.slot.key), body, f.rows, out),
                Err(e) => Err(format!(
                    "finishing a file of batch {} failed: {e}",
                    batch.id
                )),
            };
            if let Err(e) = delivered {
                discard(f);
                failed = Err(e);
            }
        }
        failed
    }
}

/// The page of `batch` that starts at record `from`, with its undecodable records.
fn read_at(
    batch: &Batch,
    pages: &dyn Pages,
    from: usize,
) -> Result<(Vec<Record>, Vec<DlqEntry>), String> {
    pages
        .read(from, pages.page())
        .map_err(|e| format!("reading records {from}.. of batch {}: {e}", batch.id))
}
