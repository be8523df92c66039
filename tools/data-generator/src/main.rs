//! data-generator: realistic log records for benchmarks and soak tests, sent to every
//! entry point of the system, and a verifier that checks what arrived.
//!
//! ```text
//! data-generator [--count N] [--seed S] [-o FILE]            NDJSON (stdout by default)
//! data-generator chunks --out-dir DIR [--chunk-bytes 2MB]     Fluent Bit msgpack chunk files
//! data-generator http --url URL [--batch 1000] [--concurrency 8] [--ca-file PEM]
//! data-generator forward --addr HOST:PORT [--ack] [--packed]  Fluent forward protocol
//! data-generator host --plugin libdata2parquet.so --prop K=V  the plugin, loaded directly
//! data-generator verify (--dir DIR | --s3 -c CONFIG) --seed S --count N
//! ```
//!
//! Every record carries a unique `id` (`<seed hex>-<sequence>`), so a run can be verified.
//! `--rate`, `--duration`, `--count` and `--seed` apply to every output; each output
//! prints a JSON report of what was sent and acknowledged on stdout.

mod forward;
mod host;
mod send;
mod verify;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Parser, Subcommand};
use datagen::Generator;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "data-generator",
    version,
    about = "Generate deterministic, realistic log records and send them"
)]
struct Cli {
    #[command(flatten)]
    args: GenArgs,
    /// NDJSON output file (without a subcommand; default stdout).
    #[arg(short, long, value_name = "FILE", global = true)]
    output: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// What to generate, shared by every output.
#[derive(ClapArgs, Debug, Clone)]
pub struct GenArgs {
    /// Number of records (with --duration, the most to send).
    #[arg(short = 'n', long, default_value_t = 1000, global = true)]
    pub count: u64,
    /// Seed: the same seed gives the same records and ids.
    #[arg(long, default_value_t = 1, global = true)]
    pub seed: u64,
    /// Records per second (0: as fast as possible).
    #[arg(long, default_value_t = 0, global = true)]
    pub rate: u64,
    /// Stop after this long (e.g. 10m, 30s), even before --count.
    #[arg(long, value_parser = parse_duration, global = true)]
    pub duration: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("bad duration `{s}`"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Fluent Bit flush chunks (v5 events, EventTime), one file per chunk.
    Chunks {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Target chunk size (Fluent Bit's are about 2 MB).
        #[arg(long, default_value = "2000000")]
        chunk_bytes: usize,
    },
    /// POST NDJSON batches to http-server's /records (or HEC events, with --hec).
    Http {
        /// Base URL, e.g. `http://127.0.0.1:8080` or `https://logs.example:8443`
        #[arg(long)]
        url: String,
        /// With https://, trust only the CA certificates in this PEM file (a private
        /// CA) instead of the public roots.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Bearer token (HttpAuthToken).
        #[arg(long)]
        token: Option<String>,
        /// Generate every batch before sending, so generation does not compete with the
        /// server for CPU during the measurement.
        #[arg(long)]
        pregenerate: bool,
        /// Send every body gzip-compressed (Content-Encoding: gzip), as log shippers do.
        #[arg(long)]
        gzip: bool,
        /// Send Splunk HEC events to /services/collector/event (each record an event's
        /// `event` object, the token as `Splunk <token>`) instead of NDJSON.
        #[arg(long)]
        hec: bool,
    },
    /// Send over the Fluent forward protocol (Fluent Bit's in_forward, Fluentd).
    Forward {
        /// host:port of the forward input.
        #[arg(long, default_value = "127.0.0.1:24224")]
        addr: String,
        #[arg(long, default_value = "data-generator")]
        tag: String,
        /// Most records per message.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Ask for acknowledgements (the `chunk` option) and resend what is not acked.
        #[arg(long)]
        ack: bool,
        /// PackedForward mode (entries as one binary) instead of Forward mode.
        #[arg(long)]
        packed: bool,
        /// Seconds to wait for an ack before sending again.
        #[arg(long, default_value_t = 30)]
        ack_timeout: u64,
    },
    /// Load the plugin with the test host (as Fluent Bit does) and flush chunks into it.
    Host {
        /// Path of libdata2parquet.so.
        #[arg(long)]
        plugin: PathBuf,
        /// A property of the plugin's OUTPUT section, KEY=VALUE (repeatable).
        #[arg(long = "prop", value_name = "KEY=VALUE", value_parser = parse_prop)]
        props: Vec<(String, String)>,
        #[arg(long, default_value = "data-generator")]
        tag: String,
        /// Chunk size; a chunk is also flushed after a second, as with Fluent Bit's Flush 1.
        #[arg(long, default_value_t = 2_000_000)]
        chunk_bytes: usize,
        /// Retries of a chunk the plugin answers FLB_RETRY (Fluent Bit's Retry_Limit).
        #[arg(long, default_value_t = 1000)]
        retry_limit: u32,
        /// Milliseconds between retries.
        #[arg(long, default_value_t = 500)]
        retry_delay_ms: u64,
        /// Plugin log level debug instead of warn.
        #[arg(long)]
        verbose: bool,
    },
    /// Check that every record of a run (--seed, --count) arrived exactly once.
    Verify {
        /// Folder of Parquet files (searched recursively; `_dlq`, `_recovery` skipped).
        #[arg(long, conflicts_with = "s3")]
        dir: Option<PathBuf>,
        /// Read the bucket of the S3 writer settings (--config and D2P_* variables).
        #[arg(long)]
        s3: bool,
        /// JSON config with the S3 settings (snake_case keys).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

fn parse_prop(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Paces a sender to `rate` records per second and stops at `duration`.
pub struct Pacer {
    start: Instant,
    rate: u64,
    duration: Option<Duration>,
}

impl Pacer {
    pub fn new(g: &GenArgs) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate: g.rate,
            duration: g.duration,
        }
    }

    /// Waits until record number `sent` may go; false when time is up.
    pub fn wait(&self, sent: u64) -> bool {
        if let Some(d) = self.duration
            && self.start.elapsed() >= d
        {
            return false;
        }
        if self.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
            let now = self.start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        true
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        None => ndjson(&cli.args, cli.output.as_ref()),
        Some(Cmd::Chunks {
            out_dir,
            chunk_bytes,
        }) => send::chunks(&cli.args, &out_dir, chunk_bytes),
        Some(Cmd::Http {
            url,
            ca_file,
            batch,
            concurrency,
            token,
            pregenerate,
            gzip,
            hec,
        }) => send::http(
            &cli.args,
            &send::HttpOptions {
                url: &url,
                ca_file: ca_file.as_deref(),
                batch,
                concurrency,
                token: token.as_deref(),
                pregenerate,
                gzip,
                hec,
            },
        ),
        Some(Cmd::Forward {
            addr,
            tag,
            batch,
            ack,
            packed,
            ack_timeout,
        }) => forward::forward(
            &cli.args,
            &forward::ForwardOpts {
                addr,
                tag,
                batch: batch.max(1),
                ack,
                packed,
                ack_timeout: Duration::from_secs(ack_timeout.max(1)),
            },
        ),
        Some(Cmd::Host {
            plugin,
            props,
            tag,
            chunk_bytes,
            retry_limit,
            retry_delay_ms,
            verbose,
        }) => host::host(
            &cli.args,
            &host::HostOpts {
                plugin,
                props,
                tag,
                chunk_bytes,
                retry_limit,
                retry_delay: Duration::from_millis(retry_delay_ms),
                verbose,
            },
        ),
        Some(Cmd::Verify { dir, s3, config }) => {
            let source = match (dir.as_deref(), s3) {
                (Some(d), false) => verify::Source::Dir(d),
                (None, true) => {
                    let mut b = data2parquet::config::ConfigBuilder::new();
                    if let Some(p) = &config {
                        b.merge_json_file(p)?;
                    }
                    b.apply_env(std::env::vars())?;
                    verify::Source::S3(Box::new(b.build()?))
                }
                _ => anyhow::bail!("verify needs --dir DIR or --s3"),
            };
            let tally = verify::scan(&source, cli.args.seed, cli.args.count)?;
            let (report, ok) = tally.report();
            println!("{report}");
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn ndjson(g: &GenArgs, output: Option<&PathBuf>) -> Result<()> {
    let out: Box<dyn Write> = match output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut gen_ = Generator::new(g.seed);
    let pacer = Pacer::new(g);
    let mut buf = String::with_capacity(1 << 20);
    let mut n = 0;
    while n < g.count && pacer.wait(n) {
        gen_.write_json(&mut buf);
        buf.push('\n');
        n += 1;
        if buf.len() >= 1 << 20 || g.rate > 0 {
            out.write_all(buf.as_bytes())?;
            buf.clear();
        }
    }
    out.write_all(buf.as_bytes())?;
    out.flush()?;
    // The records are on stdout (or in the file): the report goes to stderr.
    eprintln!(
        "{}",
        serde_json::json!({"output": "ndjson", "seed": g.seed, "sent": n})
    );
    Ok(())
}
