//! Opening inputs: files or stdin, gzip detected by its magic bytes (not the name).

use anyhow::{Context, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub fn open(path: Option<&Path>) -> Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = match path {
        Some(p) => Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?),
        None => Box::new(std::io::stdin()),
    };
    // Small on purpose: it only has to hold the bytes that are sniffed for gzip. The
    // framer reads megabytes at a time, and a read larger than this buffer goes straight
    // into the framer's block instead of being copied through it.
    let mut r = BufReader::with_capacity(64 << 10, raw);
    let head = r.fill_buf().context("cannot read input")?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(r)))
    } else {
        Ok(Box::new(r))
    }
}

/// Total bytes of plain (uncompressed) file inputs, for the progress bar; `None` when
/// unknown (stdin, gzip).
pub fn total_size(inputs: &[PathBuf]) -> Option<u64> {
    if inputs.is_empty() {
        return None;
    }
    let mut total = 0;
    for p in inputs {
        if p.as_os_str() == "-" || p.extension().is_some_and(|e| e == "gz") {
            return None;
        }
        total += std::fs::metadata(p).ok()?.len();
    }
    Some(total)
}

/// The inputs as given: none or `-` is stdin.
pub fn list(paths: &[PathBuf]) -> Vec<crate::pipeline::Input> {
    let stdin = || crate::pipeline::Input {
        path: None,
        name: "stdin".into(),
    };
    if paths.is_empty() {
        return vec![stdin()];
    }
    paths
        .iter()
        .map(|p| {
            if p.as_os_str() == "-" {
                stdin()
            } else {
                crate::pipeline::Input {
                    path: Some(p.clone()),
                    name: p.display().to_string().into(),
                }
            }
        })
        .collect()
}

/// Stdin copied to a temporary file (removed when dropped), for inputs read twice.
pub struct Spool {
    path: PathBuf,
}

impl Spool {
    pub fn stdin(dir: &Path) -> Result<Spool> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!(".json2parquet-stdin.{}.tmp", std::process::id()));
        let spool = Spool { path };
        let mut f = File::create(&spool.path)
            .with_context(|| format!("creating {}", spool.path.display()))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut f).context("reading stdin")?;
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
