//! Inputs: files, folders of files, S3 prefixes or stdin; gzip and zstd detected by
//! their magic bytes (not the name), as archives of shipped logs (Fluent Bit's
//! `out_s3`, S3 exports, rotated files) are often named without an extension.

use anyhow::{Context, Result};
use data2parquet::config::S3Config;
use data2parquet::s3_source::{self, S3Source};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// One input: where its bytes come from, and the name used in messages (DLQ sources
/// such as `archive/2025/11/27.gz:line 12`).
#[derive(Clone)]
pub struct Input {
    pub origin: Origin,
    pub name: Arc<str>,
}

/// Where an input's bytes come from.
#[derive(Clone)]
pub enum Origin {
    Stdin,
    File(PathBuf),
    /// An object of an `s3://` input, read through the one client of the run.
    S3 {
        store: Arc<S3Source>,
        bucket: String,
        key: String,
    },
}

impl Input {
    fn file(p: PathBuf) -> Input {
        Input {
            name: p.display().to_string().into(),
            origin: Origin::File(p),
        }
    }

    /// The input's records as bytes: decompressed when it starts like gzip or zstd.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        let raw: Box<dyn Read + Send> = match &self.origin {
            Origin::File(p) => {
                Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?)
            }
            Origin::Stdin => Box::new(std::io::stdin()),
            Origin::S3 { store, bucket, key } => store.open(bucket, key)?,
        };
        // Small on purpose: it only has to hold the bytes that are sniffed for the
        // packing. A read at least this large goes straight into the framer's block
        // instead of being copied through, and the framer's `read_to_end` starts each
        // fill with an 8 KiB read and doubles from there: at 64 KiB the first 64 KiB of
        // every block went through this buffer.
        let mut r = BufReader::with_capacity(8 << 10, raw);
        let head = r.fill_buf().context("cannot read input")?;
        Ok(match Packing::of(head) {
            // Both decoders go on across concatenated members / frames, as `cat a.gz
            // b.gz` and rotated-and-appended archives make them.
            Packing::Gzip => Box::new(MultiGzDecoder::new(r)),
            Packing::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(r)
                    .context("cannot start zstd decoding")?,
            ),
            Packing::Plain => Box::new(r),
        })
    }
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

/// Total bytes of the inputs when every one is a plain local file, for the progress
/// bar; `None` when unknown (stdin, S3, compressed input).
pub fn total_size(inputs: &[Input]) -> Option<u64> {
    if inputs.is_empty() {
        return None;
    }
    let mut total = 0;
    for i in inputs {
        let Origin::File(p) = &i.origin else {
            return None;
        };
        if packed(p) {
            return None;
        }
        total += std::fs::metadata(p).ok()?.len();
    }
    Some(total)
}

/// Whether a file or folder name found under an input folder or prefix is left out:
/// names starting with `.` or `_` (temporary files, `_dlq`, `_recovery`, `_SUCCESS`,
/// as Spark and Hive skip them).
fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// The inputs: none or `-` is stdin; a folder is every file under it and
/// `s3://bucket/prefix` every object under the prefix, both in path order. Under them,
/// [`hidden`] names and Parquet files are skipped, and so are the paths in `skip` (this
/// run's own output and DLQ), so that a folder holding an earlier run's output can be
/// given again. `s3` configures the client of `s3://` inputs.
pub fn list(paths: &[PathBuf], skip: &[PathBuf], s3: &S3Config) -> Result<Vec<Input>> {
    let stdin = || Input {
        origin: Origin::Stdin,
        name: "stdin".into(),
    };
    if paths.is_empty() {
        return Ok(vec![stdin()]);
    }
    let skip: Vec<PathBuf> = skip.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut store: Option<Arc<S3Source>> = None;
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(stdin());
        } else if let Some((bucket, prefix)) = p.to_str().and_then(s3_source::parse_url) {
            let store = match &store {
                Some(s) => s.clone(),
                None => store.insert(Arc::new(S3Source::new(s3)?)).clone(),
            };
            for o in store.list(bucket, prefix)? {
                if object_wanted(prefix, &o.key) {
                    out.push(Input {
                        name: format!("s3://{bucket}/{}", o.key).into(),
                        origin: Origin::S3 {
                            store: store.clone(),
                            bucket: bucket.to_string(),
                            key: o.key,
                        },
                    });
                }
            }
        } else if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &skip, &mut found)?;
            out.extend(found.into_iter().map(Input::file));
        } else {
            // A missing or unreadable file is reported when it is opened, with the
            // other read errors, and the rest is still read.
            out.push(Input::file(p.clone()));
        }
    }
    Ok(out)
}

/// Whether an object listed under `prefix` is read: not a folder marker, no [`hidden`]
/// name below the prefix (a name the prefix spells out was asked for), not Parquet.
fn object_wanted(prefix: &str, key: &str) -> bool {
    let Some(rel) = key.strip_prefix(prefix) else {
        return false;
    };
    let mut names = rel.split('/');
    if !prefix.is_empty() && !prefix.ends_with('/') {
        names.next(); // the rest of the name the prefix ends in
    }
    !key.ends_with('/') && !key.ends_with(".parquet") && !names.any(hidden)
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
        if hidden(&name) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_below_the_prefix_are_judged_by_their_names() {
        assert!(object_wanted("logs/", "logs/2025/11/27/a.gz"));
        assert!(!object_wanted("logs/", "logs/2025/_temporary/a.gz"));
        assert!(!object_wanted("logs/", "logs/_SUCCESS"));
        assert!(!object_wanted("logs/", "logs/2025/.a.tmp"));
        assert!(!object_wanted("logs/", "logs/out/x.parquet"));
        assert!(!object_wanted("logs/", "logs/2025/"), "a folder marker");
        // A prefix that ends mid-name asked for that name, whatever it starts with.
        assert!(object_wanted("logs/_raw", "logs/_raw/a"));
        assert!(object_wanted("logs/_raw", "logs/_raw-2/a"));
        assert!(!object_wanted("logs/_raw", "logs/_raw/_b"));
        assert!(object_wanted("", "a/b"));
        assert!(!object_wanted("", "_a/b"));
    }
}
