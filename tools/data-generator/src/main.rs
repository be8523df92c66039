//! data-generator: realistic log records for benchmarks and soak tests.

use anyhow::{Context, Result};
use clap::Parser;
use datagen::Generator;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "data-generator",
    version,
    about = "Generate deterministic, realistic log records"
)]
struct Args {
    /// Number of records.
    #[arg(short = 'n', long, default_value_t = 1000)]
    count: u64,
    /// Seed: the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let out: Box<dyn Write> = match &args.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut g = Generator::new(args.seed);
    let mut buf = String::with_capacity(1 << 20);
    for _ in 0..args.count {
        g.write_json(&mut buf);
        buf.push('\n');
        if buf.len() >= 1 << 20 {
            out.write_all(buf.as_bytes())?;
            buf.clear();
        }
    }
    out.write_all(buf.as_bytes())?;
    out.flush()?;
    Ok(())
}
