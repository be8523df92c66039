//! Writers: where finished Parquet files go. Each one stores a whole file under an
//! object name atomically, so a reader never sees half a file.

pub mod file;
pub mod recovery;
pub mod s3;

use crate::config::{Config, WriterType};
use crate::partition::PathEscape;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Path(#[from] PathEscape),
    #[error("{0}")]
    Remote(String),
    #[error("{0}")]
    Config(String),
}

impl WriteError {
    pub fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        WriteError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// What a [`Writer::sweep_leftovers`] did: the names it removed, and what it failed to
/// remove (with the reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// What the leftovers are, for the log ("incomplete uploads", "temporary files").
    pub kind: &'static str,
    pub removed: Vec<String>,
    pub failed: Vec<String>,
}

impl Swept {
    pub fn new(kind: &'static str) -> Self {
        Swept {
            kind,
            ..Swept::default()
        }
    }

    /// Deletes the local file `path`, noting it as removed or failed.
    pub fn remove_file(&mut self, path: &std::path::Path) {
        match std::fs::remove_file(path) {
            Ok(()) => self.removed.push(path.display().to_string()),
            Err(e) => self.failed.push(format!("remove {}: {e}", path.display())),
        }
    }
}

/// How often [`Writer::sweep_leftovers`] runs after the sweep at start.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

pub trait Writer: Send {
    /// Stores `bytes` as `name`, a relative path with `/` separators.
    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError>;

    /// A local path at which a file kept open across flushes (FileMaxAge) grows, whose
    /// object name will lie in `folder`; finished, it goes to [`Writer::put_spooled`].
    /// Its size is then bounded by the disk rather than memory. `None`: it is kept in
    /// memory and goes to [`Writer::put`].
    fn spool_path(&mut self, folder: &str) -> Result<Option<std::path::PathBuf>, WriteError> {
        let _ = folder;
        Ok(None)
    }

    /// Stores the finished file at `spool` (from [`Writer::spool_path`]) as `name`, and
    /// removes it from `spool`. When this fails the file stays at `spool`, for the next
    /// attempt.
    fn put_spooled(&mut self, name: &str, spool: &std::path::Path) -> Result<(), WriteError> {
        let bytes = std::fs::read(spool).map_err(|e| WriteError::io("read", spool, e))?;
        self.put(name, &bytes)?;
        let _ = std::fs::remove_file(spool);
        Ok(())
    }

    /// Whether [`Writer::stage`] saves anything over [`Writer::put`]: a writer whose
    /// durability costs per call, as a file's fsyncs do (each a journal commit). The
    /// flusher then writes the small files of several batches as a group and makes
    /// them durable together, with [`Writer::commit_staged`].
    fn stages(&self) -> bool {
        false
    }

    /// Stores `bytes` as `name` to be made durable, and visible under `name`, by the
    /// next [`Writer::commit_staged`]. By default it is stored at once ([`Writer::put`]).
    fn stage(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        self.put(name, bytes)
    }

    /// Makes every staged file durable under its name. On `Err` none of them counts as
    /// written (some may be complete under their names, and are written again under the
    /// same names); nothing stays staged either way.
    fn commit_staged(&mut self) -> Result<(), WriteError> {
        Ok(())
    }

    /// Drops the staged files unwritten (a group cut short by a panic).
    fn discard_staged(&mut self) {}

    /// Whether the destination is reachable and writable (readiness checks).
    fn check(&mut self) -> Result<(), WriteError>;

    /// Removes what writes cut short by a crash left behind, where the destination keeps
    /// it at a cost (S3's incomplete multipart uploads). The pipeline calls it on one
    /// writer, at start and then every [`SWEEP_EVERY`]. `Err` when the leftovers could
    /// not even be listed.
    fn sweep_leftovers(&mut self) -> Result<Swept, WriteError> {
        Ok(Swept::default())
    }

    fn describe(&self) -> String;
}

/// Opens the configured writer.
pub fn open(cfg: &Config) -> Result<Box<dyn Writer>, WriteError> {
    match cfg.writer_type {
        WriterType::File => {
            let w = file::FileWriter::new(&cfg.writer_file_path, cfg.writer_fsync);
            Ok(Box::new(match cfg.spool_lifetime() {
                Some(age) => w.with_open_files(age),
                None => w,
            }))
        }
        WriterType::S3 => Ok(Box::new(s3::S3Writer::new(cfg)?)),
    }
}
