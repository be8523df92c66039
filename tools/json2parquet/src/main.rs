//! json2parquet: backfill JSON log records into Parquet.
//!
//! Inputs are NDJSON, a JSON array, or the upstream `{"logs": [...]}` document, from
//! files or stdin, gzip-compressed or not. Records flow through the same library as the
//! Fluent Bit plugin: a reader thread cuts the input into blocks of whole records,
//! worker threads decode and map them, and the main thread either writes one Parquet
//! file (`-o`) or submits them to the partitioned pipeline (`--out-dir`). Bad records go
//! to a DLQ file with their line number and the reason; the rest is written.

mod input;
mod progress;

use anyhow::{Context, Result, bail};
use arrow_array::RecordBatch;
use clap::Parser;
use crossbeam_channel::{Receiver, Sender, bounded};
use data2parquet::config::{Config, ConfigBuilder};
use data2parquet::convert::ParquetOptions;
use data2parquet::convert::log::{LogFileWriter, log_batch};
use data2parquet::decode::frame::{Block, Framer, Layout, Piece};
use data2parquet::dlq::DlqEntry;
use data2parquet::dlq::{DlqSink, FileDlq};
use data2parquet::ingest::{Decoder, IngestSpec, KeyedBatch};
use data2parquet::logging::{Level, Logger, StderrLogger};
use data2parquet::receiver::Receiver as Pipeline;
use data2parquet::record::Record;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "json2parquet",
    version,
    about = "Convert JSON log records (NDJSON, JSON array or {\"logs\": [...]}, optionally .gz) to Parquet",
    after_help = "Configuration keys (see README) come from --config, then D2P_* environment variables, then these options.\n\
                  Exit status: 0 on success; 1 when nothing could be read; 2 with --fail-on-error when any record was rejected, or when data could not be written."
)]
struct Args {
    /// Input files; none or `-` reads stdin. `.gz` input is detected and decompressed.
    inputs: Vec<PathBuf>,
    /// JSON config file (snake_case keys).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write the partitioned layout (capability=/year=/...) under DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    out_dir: Option<PathBuf>,
    /// Write everything to this one Parquet file.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Parquet codec: snappy, gzip, zstd, lz4, brotli, none.
    #[arg(long, value_name = "CODEC")]
    compression: Option<String>,
    /// Record type: log or dynamic.
    #[arg(long, value_name = "TYPE")]
    record_type: Option<String>,
    /// Input layout: auto, ndjson, array, logs, or dlq (re-drive dead-letter entries:
    /// each line's `raw` is processed again).
    #[arg(long, default_value = "auto", value_name = "LAYOUT")]
    input_format: Layout,
    /// DLQ file for rejected records (default: next to the output).
    #[arg(long, value_name = "FILE")]
    dlq: Option<PathBuf>,
    /// Decoding threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Exit with status 2 when any record is rejected.
    #[arg(long)]
    fail_on_error: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// A block of one input, numbered for in-order reassembly.
struct Work {
    seq: u64,
    input: Arc<str>,
    block: Block,
}

/// What a parse thread hands on: keyed records for the pipeline, or ready Arrow batches
/// for the single-file writer (built here so conversion runs on every core).
enum Payload {
    Keyed(KeyedBatch),
    Arrow {
        batches: Vec<RecordBatch>,
        records: usize,
        rejected: Vec<DlqEntry>,
    },
}

struct Parsed {
    seq: u64,
    payload: Payload,
    bytes: u64,
}

fn build_config(args: &Args) -> Result<Config> {
    let mut b = ConfigBuilder::new();
    if let Some(p) = &args.config {
        b.merge_json_file(p)?;
    }
    b.apply_env(std::env::vars())?;
    if let Some(c) = &args.compression {
        b.set("WriterCompressionType", c)?;
    }
    if let Some(t) = &args.record_type {
        b.set("RecordType", t)?;
    }
    if let Some(d) = &args.out_dir {
        b.set("WriterFilePath", &d.to_string_lossy())?;
    }
    Ok(b.build()?)
}

/// Where rejected records go: `--dlq`, else next to the output.
fn dlq_path(args: &Args, cfg: &Config) -> PathBuf {
    if let Some(p) = &args.dlq {
        return p.clone();
    }
    let base = match &args.output {
        Some(o) => o.clone(),
        None => cfg.writer_file_path.clone(),
    };
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let stem = name.strip_suffix(".parquet").unwrap_or(&name).to_string();
    base.with_file_name(format!("{stem}.dlq.ndjson"))
}

fn reader_thread(
    inputs: Vec<PathBuf>,
    layout: Layout,
    max_record: usize,
    tx: Sender<Work>,
    recycled: Receiver<Vec<u8>>,
    errors: Sender<String>,
) {
    let mut seq = 0;
    let list: Vec<Option<PathBuf>> = if inputs.is_empty() {
        vec![None]
    } else {
        inputs
            .into_iter()
            .map(|p| (p.as_os_str() != "-").then_some(p))
            .collect()
    };
    for path in list {
        let name: Arc<str> = path
            .as_ref()
            .map_or("stdin".into(), |p| p.display().to_string().into());
        let reader = match input::open(path.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                let _ = errors.send(format!("{name}: {e:#}"));
                continue;
            }
        };
        let mut framer = Framer::new(reader, layout, 1 << 20, max_record);
        loop {
            for v in recycled.try_iter() {
                framer.recycle(v);
            }
            match framer.next_block() {
                Ok(Some(block)) => {
                    if tx
                        .send(Work {
                            seq,
                            input: name.clone(),
                            block,
                        })
                        .is_err()
                    {
                        return;
                    }
                    seq += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = errors.send(format!("{name}: read error: {e}"));
                    break;
                }
            }
        }
    }
}

fn parse_thread(
    spec: Arc<IngestSpec>,
    redrive: bool,
    arrow: Option<bool>,
    rx: Receiver<Work>,
    tx: Sender<Parsed>,
    recycle: Sender<Vec<u8>>,
) {
    let mut dec = Decoder::new(&spec);
    if arrow.is_some() {
        dec = dec.unkeyed();
    }
    for mut w in rx {
        let mut batch = KeyedBatch::new();
        let input = w.input.clone();
        for piece in std::mem::take(&mut w.block.pieces) {
            match piece {
                Piece::Record {
                    start, end, line, ..
                } if redrive => match data2parquet::dlq::raw_of_entry(&w.block.data[start..end]) {
                    Ok(mut raw) => {
                        dec.json(
                            &mut raw,
                            || format!("{input}:line {line} (re-driven)"),
                            &mut batch,
                        );
                    }
                    Err(e) => batch.reject(DlqEntry::new(
                        format!("{input}:line {line}"),
                        e,
                        &w.block.data[start..end],
                    )),
                },
                Piece::Record {
                    start, end, line, ..
                } => {
                    dec.json(
                        &mut w.block.data[start..end],
                        || format!("{input}:line {line}"),
                        &mut batch,
                    );
                }
                Piece::Error {
                    line, reason, raw, ..
                } => {
                    batch.reject(DlqEntry::new(format!("{input}:line {line}"), reason, &raw));
                }
            }
        }
        let _ = recycle.try_send(std::mem::take(&mut w.block.data));
        let payload = match arrow {
            None => Payload::Keyed(batch),
            Some(utf8) => {
                let records = batch.len();
                let rejected = std::mem::take(&mut batch.rejected);
                let mut batches = Vec::new();
                for (_, recs) in batch.take_groups() {
                    let refs: Vec<_> = recs
                        .iter()
                        .map(|r| match r {
                            Record::Log(l) => l,
                        })
                        .collect();
                    match log_batch(&refs, utf8) {
                        Ok(b) => batches.push(b),
                        Err(e) => {
                            // Cannot happen for valid records; keep them rather than drop.
                            let entries = refs.iter().map(|r| {
                                DlqEntry::new(
                                    format!("{input}"),
                                    format!("conversion failed: {e}"),
                                    r.to_json().as_bytes(),
                                )
                            });
                            batch.rejected.extend(entries);
                        }
                    }
                }
                let mut rejected = rejected;
                rejected.append(&mut batch.rejected);
                Payload::Arrow {
                    batches,
                    records,
                    rejected,
                }
            }
        };
        if tx
            .send(Parsed {
                seq: w.seq,
                payload,
                bytes: w.block.input_bytes,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Where the decoded records go.
enum Sink {
    File {
        writer: Box<LogFileWriter<std::io::BufWriter<std::fs::File>>>,
        tmp: PathBuf,
        dest: PathBuf,
    },
    Pipeline(Pipeline),
}

#[derive(Default)]
struct Totals {
    records: u64,
    rejected: u64,
    bytes: u64,
}

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("json2parquet: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run() -> Result<i32> {
    let args = Args::parse();
    let cfg = build_config(&args)?;
    let log: Arc<StderrLogger> = StderrLogger::new("json2parquet", cfg.debug, cfg.log_formatter);
    let spec = Arc::new(IngestSpec::from_config(&cfg)?);
    let dlq_file = dlq_path(&args, &cfg);
    let dlq = FileDlq::at_file(&dlq_file);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);

    let mut sink = match &args.output {
        Some(out) => {
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let tmp = out.with_file_name(format!(
                ".{}.{}.tmp",
                out.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let writer = LogFileWriter::new(
                std::io::BufWriter::with_capacity(1 << 20, f),
                &ParquetOptions::from_config(&cfg),
            )?;
            Sink::File {
                writer: Box::new(writer),
                tmp,
                dest: out.clone(),
            }
        }
        None => {
            let mut c = cfg.clone();
            c.dlq_path = dlq_file.parent().map(Path::to_path_buf).unwrap_or_default();
            Sink::Pipeline(Pipeline::start(&c, log.clone())?)
        }
    };

    let started = Instant::now();
    let (work_tx, work_rx) = bounded::<Work>(threads * 2);
    let (parsed_tx, parsed_rx) = bounded::<Parsed>(threads * 2);
    let (err_tx, err_rx) = crossbeam_channel::unbounded::<String>();
    let inputs = args.inputs.clone();
    let layout = args.input_format;
    let max_record = cfg.max_record_bytes;
    let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(threads * 2 + 2);
    let reader = std::thread::Builder::new()
        .name("j2p-read".into())
        .spawn(move || reader_thread(inputs, layout, max_record, work_tx, recycle_rx, err_tx))?;
    let arrow = matches!(sink, Sink::File { .. }).then_some(cfg.map_values_utf8);
    let redrive = args.input_format == Layout::Dlq;
    let mut parsers = Vec::new();
    for i in 0..threads {
        let (s, rx, tx, rc) = (
            spec.clone(),
            work_rx.clone(),
            parsed_tx.clone(),
            recycle_tx.clone(),
        );
        parsers.push(
            std::thread::Builder::new()
                .name(format!("j2p-parse-{i}"))
                .spawn(move || parse_thread(s, redrive, arrow, rx, tx, rc))?,
        );
    }
    drop(recycle_tx);
    drop(work_rx);
    drop(parsed_tx);

    let total_input = input::total_size(&args.inputs);
    let mut bar = progress::Progress::new(!args.quiet, total_input);
    let mut totals = Totals::default();
    let mut pending: BTreeMap<u64, Parsed> = BTreeMap::new();
    let mut next = 0u64;
    let mut write_error: Option<anyhow::Error> = None;
    for p in parsed_rx.iter() {
        pending.insert(p.seq, p);
        while let Some(p) = pending.remove(&next) {
            next += 1;
            if write_error.is_none()
                && let Err(e) = consume(&mut sink, p, &dlq, &mut totals)
            {
                write_error = Some(e);
            }
            bar.update(totals.records, totals.bytes);
        }
    }
    let _ = reader.join();
    for p in parsers {
        let _ = p.join();
    }
    let read_errors: Vec<String> = err_rx.try_iter().collect();
    for e in &read_errors {
        log.log(Level::Error, e);
    }

    let (files, rows, out_bytes, lost) = match sink {
        Sink::File { writer, tmp, dest } => {
            if write_error.is_none() && totals.records > 0 {
                let rows = writer.rows();
                let mut w = writer.finish()?;
                use std::io::Write;
                w.flush()?;
                let f = w
                    .into_inner()
                    .map_err(|e| anyhow::anyhow!("flushing {}: {}", tmp.display(), e.error()))?;
                f.sync_all()?;
                drop(f);
                std::fs::rename(&tmp, &dest)
                    .with_context(|| format!("renaming to {}", dest.display()))?;
                let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
                (1, rows, size, 0)
            } else {
                drop(writer);
                let _ = std::fs::remove_file(&tmp);
                (0, 0, 0, 0)
            }
        }
        Sink::Pipeline(p) => {
            let rep = p.close();
            for e in &rep.errors {
                log.log(Level::Error, e);
            }
            (rep.files, rep.rows as u64, rep.bytes, rep.lost)
        }
    };
    bar.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "json2parquet: {} records read ({:.1} MB) in {:.2}s: {:.0} records/s, {:.1} MB/s; wrote {} rows to {} file(s) ({:.1} MB); rejected {}{}",
        totals.records,
        totals.bytes as f64 / 1e6,
        secs,
        totals.records as f64 / secs,
        totals.bytes as f64 / 1e6 / secs,
        rows,
        files,
        out_bytes as f64 / 1e6,
        totals.rejected,
        if totals.rejected > 0 {
            format!(" (see {})", dlq.path().display())
        } else {
            String::new()
        }
    );
    if let Some(e) = write_error {
        bail!(e);
    }
    if lost > 0 {
        log.log(
            Level::Error,
            &format!("{lost} records could not be written"),
        );
        return Ok(2);
    }
    if totals.records == 0 {
        log.log(Level::Error, "nothing could be read");
        return Ok(1);
    }
    if args.fail_on_error && (totals.rejected > 0 || !read_errors.is_empty()) {
        return Ok(2);
    }
    Ok(0)
}

/// Sends one decoded block on: rejected entries to the DLQ, records to the sink.
fn consume(sink: &mut Sink, p: Parsed, dlq: &FileDlq, totals: &mut Totals) -> Result<()> {
    totals.bytes += p.bytes;
    match (sink, p.payload) {
        (
            Sink::File { writer, .. },
            Payload::Arrow {
                batches,
                records,
                rejected,
            },
        ) => {
            totals.records += records as u64;
            totals.rejected += rejected.len() as u64;
            dlq.push(&rejected)?;
            for b in &batches {
                writer.write_arrow(b)?;
            }
        }
        (Sink::Pipeline(p), Payload::Keyed(mut batch)) => {
            totals.records += batch.len() as u64;
            totals.rejected += batch.rejected.len() as u64;
            dlq.push(&batch.rejected)?;
            batch.rejected.clear();
            // A full buffer means the writers are behind: wait for them, never drop.
            p.submit_wait(batch)
                .map_err(|e| anyhow::anyhow!("pipeline: {e}"))?;
        }
        _ => bail!("internal: payload does not match the output mode"),
    }
    Ok(())
}
