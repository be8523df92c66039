//! json2parquet: backfill JSON log records into Parquet.
//!
//! Inputs are NDJSON, a JSON array, or the upstream `{"logs": [...]}` document, from
//! files, folders, S3 prefixes or stdin, gzip- or zstd-compressed or not. Records flow through the same library as the
//! Fluent Bit plugin: a reader thread cuts the input into blocks of whole records,
//! worker threads decode and map them, and the main thread either writes one Parquet
//! file (`-o`) or submits them to the partitioned pipeline (`--out-dir`). Bad records go
//! to a DLQ file with their line number and the reason; the rest is written.

mod input;
mod pipeline;
mod progress;

use anyhow::{Context, Result, bail};
use clap::Parser;
use data2parquet::config::{Config, ConfigBuilder, RecordType};
use data2parquet::convert::dynamic::{DType, Shape, arrow_schema};
use data2parquet::convert::log::log_sink;
use data2parquet::convert::parallel::ParallelSink;
use data2parquet::convert::{ParquetOptions, ParquetSink};
use data2parquet::decode::frame::Layout;
use data2parquet::dlq::{DlqSink, FileDlq};
use data2parquet::ingest::IngestSpec;
use data2parquet::logging::{Level, Logger, StderrLogger};
use data2parquet::metrics::Metrics;
use data2parquet::receiver::Receiver as Pipeline;
use data2parquet::writer::file::{WriteBehind, create_dir_durable, folder_of, sync_dir};
use pipeline::{Mode, Parsed, Pass, Payload};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "json2parquet",
    version,
    about = "Convert JSON log records (NDJSON, JSON array or {\"logs\": [...]}, optionally gzip or zstd) to Parquet",
    after_help = "Configuration keys (see README) come from --config, then D2P_* environment variables, then these options.\n\
                  Exit status: 0 on success; 1 when nothing could be read; 2 with --fail-on-error when any record was rejected, or when data could not be written."
)]
struct Args {
    /// Input files, folders (every file under them, in path order, skipping names
    /// that start with `.` or `_` and Parquet files) or `s3://bucket/prefix` (every
    /// object under it, skipped the same way; S3Endpoint, S3Region and the credential
    /// keys apply); none or `-` reads stdin. Gzip and zstd input is detected by its
    /// first bytes and decompressed.
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
    /// Input layout: auto, ndjson, array, logs, dlq (re-drive dead-letter entries:
    /// each line's `raw` is processed again), or otlp (one OTLP/JSON logs request per
    /// line, as the OpenTelemetry collector's file exporter writes them).
    #[arg(long, default_value = "auto", value_name = "LAYOUT")]
    input_format: Layout,
    /// DLQ file for rejected records (default: next to the output).
    #[arg(long, value_name = "FILE")]
    dlq: Option<PathBuf>,
    /// Decoding threads, and with `-o` encoding threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Exit with status 2 when any record is rejected.
    #[arg(long)]
    fail_on_error: bool,
    /// Dynamic records in one file (`-o`): MiB of input read first to infer the schema.
    /// Every record is still checked against it, and the file is written again with a
    /// wider schema if later records need one; a larger sample makes that rarer.
    // The sample is decoded twice, so it is a tax on every run: 16 MiB is about DuckDB's
    // sample of 20,480 records of 1 KB logs; against 64 MiB it saved about 7 % of the
    // wall and CPU time on the 1M-record dynamic bench (five alternated runs each).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    schema_sample_mib: u64,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
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

/// Where the decoded records go.
enum Sink {
    File {
        writer: Box<ParallelSink<BufWriter<WriteBehind>>>,
        tmp: PathBuf,
        dest: PathBuf,
    },
    Pipeline(Box<Pipeline>),
}

#[derive(Default)]
struct Totals {
    records: u64,
    rejected: u64,
    /// Rejected records the DLQ did not keep (over DLQMaxBytes).
    dlq_dropped: u64,
    bytes: u64,
    /// The records' own schema (single dynamic file).
    schema: Option<DType>,
}

fn main() {
    data2parquet::standalone::no_huge_pages();
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
    spec.log_notices(&*log);
    let dlq_file = dlq_path(&args, &cfg);
    let dlq = FileDlq::at_file(&dlq_file).with_limit(cfg.dlq_max_bytes);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let dynamic = cfg.record_type == RecordType::Dynamic;
    let opts = ParquetOptions::from_config(&cfg);

    // A single dynamic file needs its schema before its first row. It is inferred
    // from a sample, checked against every record while the file is written, and in
    // the rare case that later records need more (a new key, a wider type) the file is
    // written again with the widened schema. Stdin is kept in a temporary file, since
    // it may be read more than once.
    let mut spool = None;
    let own: Vec<PathBuf> = std::iter::once(dlq_file.clone())
        .chain(args.output.clone())
        .collect();
    let mut inputs = input::list(&args.inputs, &own, &cfg.s3)?;
    if inputs.is_empty() {
        let given: Vec<String> = args
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        bail!("no input files under {}", given.join(", "));
    }
    // Without a schema, or with one that fixes only some columns, the file's schema
    // needs the inference pass.
    let shape = Shape::of(&cfg);
    let inferring = shape.inference();
    let inferred = dynamic && args.output.is_some() && inferring.is_some();
    let stdin = |i: &input::Input| matches!(i.origin, input::Origin::Stdin);
    if inferred && inputs.iter().any(stdin) {
        let dir = args
            .output
            .as_ref()
            .and_then(|o| o.parent())
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let s = input::Spool::stdin(&dir)?;
        for i in inputs.iter_mut().filter(|i| stdin(i)) {
            i.origin = input::Origin::File(s.path().to_path_buf());
        }
        spool = Some(s);
    }
    let pass = |mode: Mode, max_blocks: Option<u64>| Pass {
        inputs: &inputs,
        layout: args.input_format,
        max_record: cfg.max_record_bytes,
        threads,
        spec: spec.clone(),
        lines: pipeline::Lines::of(args.input_format),
        mode,
        max_blocks,
    };

    let started = Instant::now();
    // The file's schema, and whether it has `_extra`.
    let mut schema = match (&args.output, inferring) {
        (Some(_), None) if dynamic => Some((shape.file_schema(DType::Null), true)),
        (Some(_), Some(nested_json)) if dynamic => {
            let t = infer_schema(pass(
                Mode::DynInfer { nested_json },
                Some(args.schema_sample_mib.max(1)),
            ))?;
            Some((shape.file_schema(t), shape.has_extra()))
        }
        _ => None,
    };
    let total_input = input::total_size(&inputs);
    let mut bar = progress::Progress::new(!args.quiet, total_input);
    let mut dlq_written = false;
    let (sink, totals, read_errors, write_error) = loop {
        let (mut sink, mode) = match (&args.output, &schema) {
            (Some(out), Some((t, fixed))) => (
                open_file(out, Some((t, *fixed)), &opts, threads)?,
                Mode::DynArrow {
                    schema: Arc::new(t.clone()),
                    fixed: *fixed,
                    infer: inferring,
                },
            ),
            (Some(out), None) => (
                open_file(out, None, &opts, threads)?,
                Mode::LogArrow {
                    utf8: cfg.map_values_utf8,
                },
            ),
            (None, _) => {
                let mut c = cfg.clone();
                c.dlq_path = dlq_file.parent().map(Path::to_path_buf).unwrap_or_default();
                (
                    Sink::Pipeline(Box::new(Pipeline::start(&c, log.clone())?)),
                    Mode::Keyed,
                )
            }
        };
        let mut totals = Totals::default();
        let dlq_on = (!dlq_written).then_some(&dlq);
        let (read_errors, write_error) = match pass(mode, None).run(|p| {
            let r = consume(&mut sink, p, dlq_on, &mut totals);
            bar.update(totals.records, totals.bytes);
            r
        }) {
            Ok(errors) => (errors, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        dlq_written = true;
        if let (Some(_), Some((t, extra)), Some(seen), None) =
            (inferring, &schema, &totals.schema, &write_error)
        {
            let wide = shape.file_schema(t.clone().merge(seen.clone()));
            if &wide != t {
                log.log(
                    Level::Info,
                    "records after the schema sample need more columns or wider types; writing the file again with the full schema",
                );
                drop(sink);
                schema = Some((wide, *extra));
                continue;
            }
        }
        break (sink, totals, read_errors, write_error);
    };
    drop(spool);
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
                    .map_err(|e| anyhow::anyhow!("flushing {}: {}", tmp.display(), e.error()))?
                    .into_inner();
                f.sync_all()?;
                drop(f);
                std::fs::rename(&tmp, &dest)
                    .with_context(|| format!("renaming to {}", dest.display()))?;
                // The new name is an entry in the folder: durable once the folder is.
                sync_dir(folder_of(&dest))
                    .with_context(|| format!("syncing the folder of {}", dest.display()))?;
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
            // The close report covers only the final flush; size and interval flushes
            // wrote the rest, and the metrics count the whole run.
            let m = p.metrics();
            (
                Metrics::get(&m.files_written) as usize,
                Metrics::get(&m.records_out),
                Metrics::get(&m.bytes_written),
                rep.lost,
            )
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
        if totals.dlq_dropped > 0 {
            format!(
                " (see {}; {} of them not kept: the file reached DLQMaxBytes)",
                dlq.path().display(),
                totals.dlq_dropped
            )
        } else if totals.rejected > 0 {
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

/// The first pass of a single dynamic file: the schema of every record.
fn infer_schema(pass: Pass<'_>) -> Result<DType> {
    let mut t = DType::Struct { fields: Vec::new() };
    pass.run(|p| {
        if let Payload::Schema(more) = p.payload {
            t = std::mem::replace(&mut t, DType::Null).merge(more);
        }
        Ok(())
    })?;
    Ok(t)
}

/// Creates the single output file (under a temporary name until it is complete).
/// Its columns are encoded on as many threads as decode the input: one writer thread
/// would bound the run, whatever the number of decoding threads.
fn open_file(
    out: &Path,
    schema: Option<(&DType, bool)>,
    opts: &ParquetOptions,
    threads: usize,
) -> Result<Sink> {
    if let Some(dir) = out.parent() {
        create_dir_durable(dir, true).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = out.with_file_name(format!(
        ".{}.{}.tmp",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let w = BufWriter::with_capacity(1 << 20, WriteBehind::new(f));
    let writer = match schema {
        Some((t, fixed)) => ParquetSink::new(w, arrow_schema(t, fixed), opts)?,
        None => log_sink(w, opts)?,
    };
    Ok(Sink::File {
        writer: Box::new(writer.parallel(threads)?),
        tmp,
        dest: out.to_path_buf(),
    })
}

/// Sends one decoded block on: rejected entries to the DLQ, records to the sink.
/// `dlq` is `None` when the input is being read again: its rejects are already there.
fn consume(sink: &mut Sink, p: Parsed, dlq: Option<&FileDlq>, totals: &mut Totals) -> Result<()> {
    totals.bytes += p.bytes;
    match (sink, p.payload) {
        (
            Sink::File { writer, .. },
            Payload::Arrow {
                batches,
                records,
                rejected,
                schema,
            },
        ) => {
            totals.records += records as u64;
            totals.rejected += rejected.len() as u64;
            if let Some(d) = dlq {
                totals.dlq_dropped += (rejected.len() - d.push(&rejected)?) as u64;
            }
            if let Some(s) = schema {
                totals.schema = Some(match totals.schema.take() {
                    Some(t) => t.merge(s),
                    None => s,
                });
            }
            for b in &batches {
                writer.write(b)?;
            }
        }
        (Sink::Pipeline(p), Payload::Keyed(mut batch)) => {
            totals.records += batch.len() as u64;
            totals.rejected += batch.rejected.len() as u64;
            if let Some(d) = dlq {
                totals.dlq_dropped += (batch.rejected.len() - d.push(&batch.rejected)?) as u64;
            }
            batch.rejected.clear();
            // A full buffer means the writers are behind: wait for them, never drop.
            p.submit_wait(batch)
                .map_err(|e| anyhow::anyhow!("pipeline: {e}"))?;
        }
        _ => bail!("internal: payload does not match the output mode"),
    }
    Ok(())
}
