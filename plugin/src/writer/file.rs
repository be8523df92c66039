//! The local file writer: temporary name, fsync, rename, fsync of the folder. A crash
//! leaves either the complete file or a hidden `.tmp` file that readers ignore.

use super::{WriteError, Writer};
use crate::partition::join_under;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct FileWriter {
    root: PathBuf,
    fsync: bool,
}

impl FileWriter {
    pub fn new(root: &Path, fsync: bool) -> Self {
        FileWriter {
            root: root.to_path_buf(),
            fsync,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Writes `bytes` to `path` through a hidden temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], fsync: bool) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| WriteError::io("create folder", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", ulid::Ulid::generate()));
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| WriteError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| WriteError::io("write", &tmp, e))?;
        if fsync {
            f.sync_all().map_err(|e| WriteError::io("fsync", &tmp, e))?;
        }
        drop(f);
        fs::rename(&tmp, path).map_err(|e| WriteError::io("rename", path, e))?;
        if fsync {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| WriteError::io("fsync folder", dir, e))?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

impl Writer for FileWriter {
    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let path = join_under(&self.root, name)?;
        write_atomic(&path, bytes, self.fsync)
    }

    fn check(&mut self) -> Result<(), WriteError> {
        fs::create_dir_all(&self.root)
            .map_err(|e| WriteError::io("create folder", &self.root, e))?;
        let probe = self
            .root
            .join(format!(".d2p-probe-{}", ulid::Ulid::generate()));
        fs::write(&probe, b"").map_err(|e| WriteError::io("write", &self.root, e))?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file writer at {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_under_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FileWriter::new(dir.path(), true);
        w.put("a=1/b/x.parquet", b"PAR1").unwrap();
        assert_eq!(
            fs::read(dir.path().join("a=1/b/x.parquet")).unwrap(),
            b"PAR1"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a=1/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");
        assert!(matches!(
            w.put("../escape.parquet", b"x"),
            Err(WriteError::Path(_))
        ));
        assert!(matches!(
            w.put("/abs.parquet", b"x"),
            Err(WriteError::Path(_))
        ));
        w.check().unwrap();
    }
}
