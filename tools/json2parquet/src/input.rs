//! Inputs: files, folders of files, or stdin; gzip and zstd detected by their magic
//! bytes (not the name), as archives of shipped logs (Fluent Bit's `out_s3`, S3
//! exports, rotated files) are often named without an extension.

use anyhow::{Context, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// How an input is packed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    Plain,
    Gzip,
    Zstd,
}

impl Packing {
    fn of(head: &[u8]) -> Packing {
        if head.starts_with(&[0x1f, 0x8b]) {
            Packing::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Packing::Zstd
        } else {
            Packing::Plain
        }
    }
}

pub fn open(path: Option<&Path>) -> Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = match path {
        Some(p) => Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?),
        None => Box::new(std::io::stdin()),
    };
    // Small on purpose: it only has to hold the bytes that are sniffed for the packing.
    // The framer reads megabytes at a time, and a read larger than this buffer goes
    // straight into the framer's block instead of being copied through it.
    let mut r = BufReader::with_capacity(64 << 10, raw);
    let head = r.fill_buf().context("cannot read input")?;
    Ok(match Packing::of(head) {
        // Both decoders go on across concatenated members / frames, as `cat a.gz b.gz`
        // and rotated-and-appended archives make them.
        Packing::Gzip => Box::new(MultiGzDecoder::new(r)),
        Packing::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r).context("cannot start zstd decoding")?,
        ),
        Packing::Plain => Box::new(r),
    })
}

/// Whether a file starts like a compressed one (its size then says nothing of its
/// records).
fn packed(path: &Path) -> bool {
    let mut head = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    Packing::of(&head[..n]) != Packing::Plain
}

/// Total bytes of the inputs when every one is a plain file, for the progress bar;
/// `None` when unknown (stdin, compressed input).
pub fn total_size(inputs: &[crate::pipeline::Input]) -> Option<u64> {
    if inputs.is_empty() {
        return None;
    }
    let mut total = 0;
    for i in inputs {
        let p = i.path.as_deref()?;
        if packed(p) {
            return None;
        }
        total += std::fs::metadata(p).ok()?.len();
    }
    Some(total)
}

/// The inputs: none or `-` is stdin, a folder is every file under it, in path order.
/// In folders, names starting with `.` or `_` are skipped (temporary files, `_dlq`,
/// `_recovery`, `_SUCCESS`, as Spark and Hive skip them), and so are Parquet files and
/// the paths in `skip` (this run's own output and DLQ), so that a folder holding an
/// earlier run's output can be given again.
pub fn list(paths: &[PathBuf], skip: &[PathBuf]) -> Result<Vec<crate::pipeline::Input>> {
    let stdin = || crate::pipeline::Input {
        path: None,
        name: "stdin".into(),
    };
    if paths.is_empty() {
        return Ok(vec![stdin()]);
    }
    let skip: Vec<PathBuf> = skip.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let file = |p: PathBuf| crate::pipeline::Input {
        name: p.display().to_string().into(),
        path: Some(p),
    };
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(stdin());
        } else if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &skip, &mut found)?;
            out.extend(found.into_iter().map(file));
        } else {
            // A missing or unreadable file is reported when it is opened, with the
            // other read errors, and the rest is still read.
            out.push(file(p.clone()));
        }
    }
    Ok(out)
}

/// The files under `dir`, depth first in name order. Symbolic links to files are
/// followed, links to folders are not (they could loop).
fn walk(dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = e.path();
        let kind = e
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if kind.is_dir() {
            walk(&path, skip, out)?;
        } else if (kind.is_file() || (kind.is_symlink() && path.is_file()))
            && !name.ends_with(".parquet")
            && !path.canonicalize().is_ok_and(|c| skip.contains(&c))
        {
            out.push(path);
        }
    }
    Ok(())
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
