//! Several batches' files made durable together (group commit).
//!
//! At upstream's default BufferSize a batch is 100 records and its file about 13 KB,
//! and with WriterFsync each file paid for two syncs: the file, then its folder after
//! the rename, each a journal commit on ext4 or XFS. On a journaled ext4 those commits
//! were most of the plugin's cost at the defaults: 39–60k records/s, against 230–256k
//! without fsync, on `ci/bench-plugin`'s input.
//!
//! When the writer thread finds several batches waiting, it flushes them as a group
//! ([`Flusher::flush_group`]): each file is written under its temporary name with its
//! writeback started ([`Writer::stage`](crate::writer::Writer::stage)), and once the
//! group's files are all written (or [`GROUP_BYTES`] of them are waiting) they are
//! synced, renamed, and each folder synced once
//! ([`Writer::commit_staged`](crate::writer::Writer::commit_staged)): the group's
//! files share their journal commits instead of paying two each (each fsync still
//! flushes the device's cache, so the gain is less than the number of files).
//! Durability is unchanged: a batch is reported written only after that commit, and a
//! file appears under its name only once its bytes are on disk. If the commit fails,
//! each of its files is written again alone, with the usual retries and recovery
//! store.

use super::{FlushFailure, Flusher, Named, Written};
use crate::buffer::Batch;
use crate::log_at;
use crate::logging::Level;
use crate::metrics::Metrics;
use crate::open_files::Body;
use crate::partition::PartitionKey;
use std::time::Instant;

/// The most batches the writer thread takes for one group. On a journaled ext4 (a
/// loop device on this project's CI VM), 1,000 files of 13 KB took 4.8–5.5 s written
/// one at a time, 2.2 s in groups of 4, 1.1–1.2 s in groups of 16, 0.96 s in groups of
/// 32 and 0.83 s in groups of 64; CPU fell from 1.1–1.4 s to 0.26 s at 32. In the
/// plugin at the defaults, groups of up to 64 batches (and 8,192 records) were 0–9 %
/// faster than these over four alternated pairs: not enough to make a batch wait for
/// twice as many others.
pub const GROUP_BATCHES: usize = 32;

/// The most records a group gathers: a batch is reported written only when its group
/// is, so a group of large batches would hold their records, and the buffer space they
/// take, for the time of several large files; and large files gain little from a
/// group, their fsyncs being a small part of their cost. At upstream's default
/// BufferSize (100) a group is [`GROUP_BATCHES`] batches; from BufferSize 4096 on, one.
/// On `ci/bench-plugin` with BufferSize 100000, groups without this limit took the
/// wall time from 0.82–0.85 s to 0.98–1.05 s (300k records, three alternated pairs).
pub const GROUP_RECORDS: usize = 4096;

/// The most bytes of staged files a group holds before it commits them: the files are
/// kept in memory until then, to be written again if the commit fails. Large files
/// gain little from a group anyway: their fsyncs are a small part of their cost.
pub const GROUP_BYTES: usize = 32 << 20;

/// The files staged while a group of batches is flushed.
#[derive(Default)]
pub(super) struct Group {
    /// The batch being flushed, as an index into the group.
    batch: usize,
    files: Vec<StagedFile>,
    bytes: usize,
}

/// A file written under its temporary name, waiting for the group's commit.
struct StagedFile {
    batch: usize,
    named: Named,
    key: PartitionKey,
    body: Body,
    /// The batch's records in the file.
    idx: Vec<usize>,
    /// The time its stage took; with the group's commit, its `d2p_write_seconds`.
    staging: f64,
}

impl Flusher {
    /// Whether batches are best flushed in groups: the writer makes a group durable
    /// for less than its files one by one, and batches become files of their own
    /// (files kept open across flushes gain nothing from it).
    pub fn groups(&self) -> bool {
        self.writer.stages() && self.shared.open_files.is_none()
    }

    /// Flushes `batches` as [`Flusher::flush`] does each, their files made durable
    /// together; each result is final only once they are.
    pub fn flush_group(&mut self, batches: &[Batch]) -> Vec<Result<Written, FlushFailure>> {
        if !self.groups() || batches.len() < 2 {
            return batches.iter().map(|b| self.flush(b)).collect();
        }
        let mut results = Vec::with_capacity(batches.len());
        self.group = Some(Group::default());
        for (i, b) in batches.iter().enumerate() {
            if let Some(g) = self.group.as_mut() {
                g.batch = i;
            }
            results.push(self.flush(b));
            if self.group.as_ref().is_some_and(|g| g.bytes >= GROUP_BYTES) {
                self.commit_group(&mut results);
            }
        }
        self.commit_group(&mut results);
        self.group = None;
        results
    }

    /// Drops what a group cut short (by a panic) had staged.
    pub fn abandon_group(&mut self) {
        self.group = None;
        self.writer.discard_staged();
    }

    /// In a group: stages the file for the group's commit (`None`). Otherwise, or when
    /// it cannot be staged, hands it back to be delivered alone.
    pub(super) fn stage(
        &mut self,
        file: (&str, ulid::Ulid, &PartitionKey),
        bytes: Vec<u8>,
        idx: &[usize],
    ) -> Option<Body> {
        let body = Body::Memory(bytes);
        let Some(batch) = self.group.as_ref().map(|g| g.batch) else {
            return Some(body);
        };
        let Ok(named) = self.name(file, &body) else {
            return Some(body);
        };
        let Body::Memory(bytes) = &body else {
            return Some(body);
        };
        let (len, started) = (bytes.len(), Instant::now());
        if let Err(e) = self.writer.stage(&named.name, bytes) {
            Metrics::add(&self.shared.metrics.write_failures, 1);
            log_at!(
                self.shared.log,
                Level::Warn,
                "write of {} failed ({e}); writing it alone",
                named.name
            );
            return Some(body);
        }
        let g = self.group.get_or_insert_with(Group::default);
        g.bytes += len;
        g.files.push(StagedFile {
            batch,
            named,
            key: file.2.clone(),
            body,
            idx: idx.to_vec(),
            staging: started.elapsed().as_secs_f64(),
        });
        None
    }

    /// Commits the staged files and counts each in its batch's result; if the commit
    /// fails, writes each of them alone.
    fn commit_group(&mut self, results: &mut [Result<Written, FlushFailure>]) {
        let files = match self.group.as_mut() {
            Some(g) => {
                g.bytes = 0;
                std::mem::take(&mut g.files)
            }
            None => return,
        };
        if files.is_empty() {
            return;
        }
        let started = Instant::now();
        let committed = self.writer.commit_staged();
        let commit = started.elapsed().as_secs_f64();
        Metrics::add(&self.shared.metrics.write_groups, 1);
        if let Err(e) = &committed {
            Metrics::add(&self.shared.metrics.write_failures, 1);
            log_at!(
                self.shared.log,
                Level::Warn,
                "making a group of {} files durable failed ({e}); writing them one by one",
                files.len()
            );
        }
        for f in files {
            let Some(result) = results.get_mut(f.batch) else {
                continue;
            };
            let out = match result {
                Ok(w) => w,
                Err(failure) => &mut *failure.partial,
            };
            let rows = f.idx.len();
            if committed.is_ok() {
                let m = &self.shared.metrics;
                m.write_latency.observe(f.staging + commit);
                self.count_written(&f.named, &f.key, rows, out);
                continue;
            }
            let Err(error) = self.deliver_named(&f.named, &f.key, &f.body, rows, out) else {
                continue;
            };
            match result {
                Ok(w) => {
                    *result = Err(FlushFailure {
                        error,
                        unwritten: f.idx,
                        partial: Box::new(std::mem::take(w)),
                    })
                }
                Err(failure) => {
                    failure.error = error;
                    failure.unwritten.extend(f.idx);
                }
            }
        }
    }
}
