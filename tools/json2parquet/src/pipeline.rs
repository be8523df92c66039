//! One pass over the inputs: a reader thread cuts them into blocks of whole records,
//! parse threads decode each block into what the [`Mode`] asks for, and the caller gets
//! the results back in input order.

use crate::input::Input;
use anyhow::Result;
use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender, bounded};
use data2parquet::convert::dynamic::{DType, DynBatchBuilder};
use data2parquet::convert::log::log_batch;
use data2parquet::decode::frame::{Block, Framer, Layout, Piece};
use data2parquet::dlq::DlqEntry;
use data2parquet::ingest::{Decoder, IngestSpec, KeyedBatch};
use data2parquet::record::{LogRecord, Record};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What parse threads make of a block.
#[derive(Clone)]
pub enum Mode {
    /// Keyed records for the partitioned pipeline.
    Keyed,
    /// Arrow batches of the log schema (single-file output).
    LogArrow { utf8: bool },
    /// Only the schema of the dynamic records (first pass of a single dynamic file).
    DynInfer { nested_json: bool },
    /// Arrow batches of dynamic records with a known schema; with `infer` (the
    /// `nested_json` setting) the records' own schema is inferred too, to check that the
    /// known one covered them.
    DynArrow {
        schema: Arc<DType>,
        fixed: bool,
        infer: Option<bool>,
    },
}

/// What a parse thread hands on.
pub enum Payload {
    Keyed(KeyedBatch),
    Arrow {
        batches: Vec<RecordBatch>,
        records: usize,
        rejected: Vec<DlqEntry>,
        /// The schema of the block's records (DynArrow with `infer`).
        schema: Option<DType>,
    },
    Schema(DType),
}

pub struct Parsed {
    pub payload: Payload,
    /// Input bytes of the block.
    pub bytes: u64,
}

/// A block of one input, numbered for in-order reassembly.
struct Work {
    seq: u64,
    input: Arc<str>,
    block: Block,
}

/// Settings of a pass.
pub struct Pass<'a> {
    pub inputs: &'a [Input],
    pub layout: Layout,
    pub max_record: usize,
    pub threads: usize,
    pub spec: Arc<IngestSpec>,
    /// What each framed record is: a record, a DLQ entry or an OTLP request.
    pub lines: Lines,
    pub mode: Mode,
    /// Stop after this many blocks (a sample).
    pub max_blocks: Option<u64>,
}

impl Pass<'_> {
    /// Runs the pass, calling `on` for every block in input order. Stops consuming at
    /// the first error of `on` (and returns it); read errors are returned as messages.
    pub fn run(&self, mut on: impl FnMut(Parsed) -> Result<()>) -> Result<Vec<String>> {
        let threads = self.threads.max(1);
        let (work_tx, work_rx) = bounded::<Work>(threads * 2);
        let (parsed_tx, parsed_rx) = bounded::<(u64, Parsed)>(threads * 2);
        let (err_tx, err_rx) = crossbeam_channel::unbounded::<String>();
        let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(threads * 2 + 2);
        let inputs = self.inputs.to_vec();
        let (layout, max_record) = (self.layout, self.max_record);
        let limit = self.max_blocks.unwrap_or(u64::MAX);
        let reader = std::thread::Builder::new()
            .name("j2p-read".into())
            .spawn(move || {
                read(
                    inputs, layout, max_record, limit, work_tx, recycle_rx, err_tx,
                )
            })?;
        let mut parsers = Vec::new();
        for i in 0..threads {
            let (spec, rx, tx, rc, mode, lines) = (
                self.spec.clone(),
                work_rx.clone(),
                parsed_tx.clone(),
                recycle_tx.clone(),
                self.mode.clone(),
                self.lines,
            );
            parsers.push(
                std::thread::Builder::new()
                    .name(format!("j2p-parse-{i}"))
                    .spawn(move || parse(spec, lines, mode, rx, tx, rc))?,
            );
        }
        drop((recycle_tx, work_rx, parsed_tx));

        let mut pending: BTreeMap<u64, Parsed> = BTreeMap::new();
        let mut next = 0u64;
        let mut failed: Option<anyhow::Error> = None;
        for (seq, p) in parsed_rx.iter() {
            pending.insert(seq, p);
            while let Some(p) = pending.remove(&next) {
                next += 1;
                if failed.is_none()
                    && let Err(e) = on(p)
                {
                    failed = Some(e);
                }
            }
        }
        let _ = reader.join();
        for p in parsers {
            let _ = p.join();
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(err_rx.try_iter().collect()),
        }
    }
}

fn read(
    inputs: Vec<Input>,
    layout: Layout,
    max_record: usize,
    limit: u64,
    tx: Sender<Work>,
    recycled: Receiver<Vec<u8>>,
    errors: Sender<String>,
) {
    let mut seq = 0;
    for input in inputs {
        if seq >= limit {
            break;
        }
        let reader = match input.open() {
            Ok(r) => r,
            Err(e) => {
                let _ = errors.send(format!("{}: {e:#}", input.name));
                continue;
            }
        };
        let mut framer = Framer::new(reader, layout, 1 << 20, max_record);
        while seq < limit {
            for v in recycled.try_iter() {
                framer.recycle(v);
            }
            match framer.next_block() {
                Ok(Some(block)) => {
                    let w = Work {
                        seq,
                        input: input.name.clone(),
                        block,
                    };
                    if tx.send(w).is_err() {
                        return;
                    }
                    seq += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = errors.send(format!("{}: read error: {e}", input.name));
                    break;
                }
            }
        }
    }
}

/// What each record the framer finds is (`--input-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A record.
    Records,
    /// A dead-letter entry whose `raw` is decoded again (`dlq`).
    DlqEntries,
    /// An OTLP/JSON logs request, each of whose log records is a record (`otlp`).
    OtlpRequests,
}

impl Lines {
    pub fn of(layout: Layout) -> Lines {
        match layout {
            Layout::Dlq => Lines::DlqEntries,
            Layout::Otlp => Lines::OtlpRequests,
            _ => Lines::Records,
        }
    }
}

/// Decodes every record of a block (rejected ones become DLQ entries that name the
/// input and line).
fn decode_block(dec: &mut Decoder<'_>, w: &mut Work, lines: Lines) -> KeyedBatch {
    let mut batch = KeyedBatch::new();
    let input = w.input.clone();
    if lines == Lines::Records {
        dec.json_block(
            &mut w.block,
            |line| format!("{input}:line {line}"),
            &mut batch,
        );
        return batch;
    }
    for piece in std::mem::take(&mut w.block.pieces) {
        match piece {
            Piece::Record {
                start, end, line, ..
            } => {
                let text = w.block.data.get(start..end).unwrap_or_default();
                let read = match lines {
                    // `--input-format dlq`: each entry's `raw` is decoded again.
                    Lines::DlqEntries => data2parquet::dlq::raw_of_entry(text).map(|mut raw| {
                        dec.json(
                            &mut raw,
                            || format!("{input}:line {line} (re-driven)"),
                            &mut batch,
                        );
                    }),
                    // `--input-format otlp`: each line's log records.
                    Lines::Records | Lines::OtlpRequests => dec.otlp_logs(
                        text,
                        data2parquet::decode::otlp::Encoding::Json,
                        |at| format!("{input}:line {line} {at}"),
                        &mut batch,
                    ),
                };
                if let Err(e) = read {
                    batch.reject(DlqEntry::new(format!("{input}:line {line}"), e, text));
                }
            }
            Piece::Error {
                line, reason, raw, ..
            } => {
                batch.reject(DlqEntry::new(format!("{input}:line {line}"), reason, &raw));
            }
        }
    }
    batch
}

fn logs(recs: &[Record]) -> Vec<&LogRecord> {
    recs.iter().filter_map(Record::as_log).collect()
}

/// Turns a decoded block of log records into Arrow batches. A conversion error (which valid records
/// cannot cause) sends the records to the DLQ rather than dropping them.
fn log_arrow(mut batch: KeyedBatch, utf8: bool, input: &str) -> Payload {
    let records = batch.len();
    let mut rejected = std::mem::take(&mut batch.rejected);
    let mut batches = Vec::new();
    for (_, recs) in batch.take_groups() {
        match log_batch(&logs(&recs), utf8) {
            Ok(b) => batches.push(b),
            Err(e) => rejected.extend(recs.iter().map(|r| {
                DlqEntry::new(
                    input.to_string(),
                    format!("conversion failed: {e}"),
                    r.to_json().as_bytes(),
                )
            })),
        }
    }
    Payload::Arrow {
        batches,
        records,
        rejected,
        schema: None,
    }
}

fn parse(
    spec: Arc<IngestSpec>,
    lines: Lines,
    mode: Mode,
    rx: Receiver<Work>,
    tx: Sender<(u64, Parsed)>,
    recycle: Sender<Vec<u8>>,
) {
    let mut dec = Decoder::new(&spec);
    match &mode {
        Mode::Keyed => {}
        Mode::LogArrow { .. } => dec = dec.unkeyed(),
        Mode::DynInfer { nested_json } => dec = dec.unkeyed().inferring(*nested_json),
        Mode::DynArrow {
            schema,
            fixed,
            infer,
        } => match DynBatchBuilder::new(schema, *fixed) {
            Ok(b) => {
                dec = dec.unkeyed().building(b);
                if let Some(nested_json) = infer {
                    dec = dec.inferring(*nested_json);
                }
            }
            // Only a non-object schema fails here, which inference never makes.
            Err(_) => return,
        },
    }
    for mut w in rx {
        let mut batch = decode_block(&mut dec, &mut w, lines);
        let _ = recycle.try_send(std::mem::take(&mut w.block.data));
        let payload = match &mode {
            Mode::Keyed => Payload::Keyed(batch),
            Mode::DynInfer { .. } => Payload::Schema(dec.take_schema().unwrap_or(DType::Null)),
            Mode::DynArrow { .. } => {
                let records = batch.len();
                let mut rejected = std::mem::take(&mut batch.rejected);
                let batches = match dec.take_batch() {
                    Ok(b) => b.into_iter().collect(),
                    Err(e) => {
                        // Valid records cannot cause this; say so rather than drop silently.
                        rejected.push(DlqEntry::new(
                            w.input.to_string(),
                            format!("conversion failed for {records} records of this block: {e}"),
                            b"",
                        ));
                        Vec::new()
                    }
                };
                Payload::Arrow {
                    batches,
                    records,
                    rejected,
                    schema: dec.take_schema(),
                }
            }
            Mode::LogArrow { utf8 } => log_arrow(batch, *utf8, &w.input),
        };
        let parsed = Parsed {
            payload,
            bytes: w.block.input_bytes,
        };
        if tx.send((w.seq, parsed)).is_err() {
            return;
        }
    }
}
