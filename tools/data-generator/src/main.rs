//! data-generator: realistic log records for benchmarks and soak tests, sent to every
//! entry point of the system, and a verifier that checks what arrived.
//!
//! ```text
//! data-generator [--count N] [--seed S] [-o FILE]            NDJSON (stdout by default)
//! data-generator chunks --out-dir DIR [--chunk-bytes 2MB]     Fluent Bit msgpack chunk files
//! data-generator http --url URL [--batch 1000] [--concurrency 8]
//! ```
//!
//! Every record carries a unique `id` (`<seed hex>-<sequence>`), so a run can be verified.

mod send;

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
    /// POST NDJSON batches to http-server's /records.
    Http {
        /// Base URL, e.g. http://127.0.0.1:8080
        #[arg(long)]
        url: String,
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
    },
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
            batch,
            concurrency,
            token,
            pregenerate,
        }) => send::http(
            &cli.args,
            &url,
            batch,
            concurrency,
            token.as_deref(),
            pregenerate,
        ),
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
    Ok(())
}
