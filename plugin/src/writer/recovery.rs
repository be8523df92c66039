//! The recovery store: finished Parquet files whose write failed, kept on local disk
//! with their target name until a later attempt (or a restart) writes them.
//!
//! Each entry is `<id>.parquet` plus `<id>.target` holding the object name. The target
//! is written first and the data last (atomically), so a listed `.parquet` always has
//! its target.

use super::file::{TMP_LEFTOVER_AGE, sweep_tmp, write_atomic};
use super::{Swept, WriteError, Writer};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Ids from one process-wide monotonic generator: `list` promises store order, and two
/// stores within the same millisecond would otherwise order by their random bits.
fn next_id() -> ulid::Ulid {
    static GEN: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let mut g = GEN.lock().unwrap_or_else(|p| p.into_inner());
    match g.generate() {
        Ok(id) => id,
        Err(overflow) => overflow.commit_overflow_increment(),
    }
}

pub struct RecoveryStore {
    dir: PathBuf,
}

/// One kept file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub target: String,
    pub data: PathBuf,
}

impl RecoveryStore {
    pub fn new(dir: &Path) -> Self {
        RecoveryStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self, target: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let id = next_id().to_string();
        write_atomic(
            &self.dir.join(format!("{id}.target")),
            target.as_bytes(),
            true,
        )?;
        write_atomic(&self.dir.join(format!("{id}.parquet")), bytes, true)
    }

    /// Entries in the order they were stored.
    pub fn list(&self) -> Vec<Entry> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".parquet")?.to_string();
                if id.starts_with('.') {
                    return None;
                }
                let target = fs::read_to_string(self.dir.join(format!("{id}.target"))).ok()?;
                Some(Entry {
                    id,
                    target,
                    data: e.path(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Removes what a crash in the middle of [`RecoveryStore::store`] or of a resend
    /// left: temporary files, and `.target` files whose data file is gone (a store cut
    /// short before the data was written, or a resend after the data was removed).
    /// Both only once older than [`TMP_LEFTOVER_AGE`], as a store in progress has them.
    pub fn sweep(&self, now: SystemTime) -> Swept {
        let mut swept = Swept::new("recovery store leftovers");
        sweep_tmp(&self.dir, false, now, TMP_LEFTOVER_AGE, &mut swept);
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return swept;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".target") else {
                continue;
            };
            let old = ulid::Ulid::from_string(id)
                .ok()
                .and_then(|u| now.duration_since(u.datetime()).ok())
                .is_some_and(|age| age > TMP_LEFTOVER_AGE);
            if old && !self.dir.join(format!("{id}.parquet")).exists() {
                swept.remove_file(&e.path());
            }
        }
        swept
    }

    /// Writes kept files through `w`, oldest first, until `pass` says the destination
    /// is still down; returns (written, still kept).
    pub fn resend(&self, w: &mut dyn Writer, pass: Pass) -> (usize, usize) {
        let (mut ok, mut in_a_row) = (0, 0);
        let entries = self.list();
        let total = entries.len();
        for entry in entries {
            let sent = fs::read(&entry.data)
                .map_err(|e| WriteError::io("read", &entry.data, e))
                .and_then(|bytes| w.put(&entry.target, &bytes));
            if sent.is_ok() {
                let _ = fs::remove_file(&entry.data);
                let _ = fs::remove_file(self.dir.join(format!("{}.target", entry.id)));
                ok += 1;
                in_a_row = 0;
            } else {
                in_a_row += 1;
                if in_a_row >= pass.failures_in_a_row() {
                    break;
                }
            }
        }
        (ok, total - ok)
    }
}

/// How far a pass over the recovery store goes while files fail again. Each failed try
/// can cost the writer's full timeout (seconds for S3), and the writer thread makes no
/// new files meanwhile, so a pass stops once the destination looks down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The periodic pass: stops after three failures in a row, so one file that fails
    /// on its own does not hold back the others.
    Periodic,
    /// Stops at the first failure (at close, within Fluent Bit's Grace).
    UntilFailure,
}

impl Pass {
    fn failures_in_a_row(self) -> usize {
        match self {
            Pass::Periodic => 3,
            Pass::UntilFailure => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::FileWriter;
    use super::*;

    #[test]
    fn store_list_resend() {
        let dir = tempfile::tempdir().unwrap();
        let rs = RecoveryStore::new(&dir.path().join("rec"));
        rs.store("x=1/a.parquet", b"one").unwrap();
        rs.store("x=2/b.parquet", b"two").unwrap();
        let l = rs.list();
        assert_eq!(
            l.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
            ["x=1/a.parquet", "x=2/b.parquet"]
        );
        let mut w = FileWriter::new(&dir.path().join("out"), false);
        assert_eq!(rs.resend(&mut w, Pass::Periodic), (2, 0));
        assert!(rs.list().is_empty());
        assert_eq!(
            fs::read(dir.path().join("out/x=2/b.parquet")).unwrap(),
            b"two"
        );
    }

    #[test]
    fn the_sweep_removes_orphaned_targets_and_temporary_files_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let rs = RecoveryStore::new(dir.path());
        rs.store("x=1/a.parquet", b"kept").unwrap();
        let old = ulid::Ulid::from_datetime(
            SystemTime::now() - TMP_LEFTOVER_AGE - std::time::Duration::from_secs(60),
        );
        let orphan = dir.path().join(format!("{old}.target"));
        let tmp = dir.path().join(format!(".{old}.parquet.{old}.tmp"));
        let young_orphan = dir
            .path()
            .join(format!("{}.target", ulid::Ulid::generate()));
        for p in [&orphan, &tmp, &young_orphan] {
            fs::write(p, b"x").unwrap();
        }
        let swept = rs.sweep(SystemTime::now());
        let mut removed = swept.removed.clone();
        removed.sort();
        let mut want = vec![orphan.display().to_string(), tmp.display().to_string()];
        want.sort();
        assert_eq!(removed, want);
        assert!(
            young_orphan.exists(),
            "a store in progress keeps its target"
        );
        // The kept entry is whole and still listed.
        assert_eq!(rs.list().len(), 1);
        // An hour on, the kept entry is still not touched: it has its data.
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let swept = rs.sweep(later);
        assert_eq!(swept.removed, vec![young_orphan.display().to_string()]);
        assert_eq!(rs.list().len(), 1);
    }

    #[test]
    fn a_pass_until_failure_stops_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let rs = RecoveryStore::new(&dir.path().join("rec"));
        for t in ["x=1/a.parquet", "x=2/b.parquet", "x=3/c.parquet"] {
            rs.store(t, t.as_bytes()).unwrap();
        }
        // x=2 cannot be written (its folder is a plain file); x=1 and x=3 can.
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("x=2"), b"not a folder").unwrap();
        let mut w = FileWriter::new(&out, false);
        assert_eq!(rs.resend(&mut w, Pass::UntilFailure), (1, 2));
        assert!(!out.join("x=3/c.parquet").exists(), "stopped at x=2");
        assert_eq!(
            rs.resend(&mut w, Pass::Periodic),
            (1, 1),
            "x=3 past the failure"
        );
        assert_eq!(rs.list().len(), 1);
    }

    #[test]
    fn a_periodic_pass_stops_when_the_destination_looks_down() {
        let dir = tempfile::tempdir().unwrap();
        let rs = RecoveryStore::new(&dir.path().join("rec"));
        // x=1..x=3 cannot be written, x=4 could: three failures in a row end the pass.
        for i in 1..=4 {
            let t = format!("x={i}/f.parquet");
            rs.store(&t, t.as_bytes()).unwrap();
        }
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        for i in 1..=3 {
            fs::write(out.join(format!("x={i}")), b"not a folder").unwrap();
        }
        let mut w = FileWriter::new(&out, false);
        assert_eq!(rs.resend(&mut w, Pass::Periodic), (0, 4));
        assert!(!out.join("x=4/f.parquet").exists(), "stopped after x=3");
        // With x=2 repaired there is no run of three: x=2 and x=4 go.
        fs::remove_file(out.join("x=2")).unwrap();
        assert_eq!(rs.resend(&mut w, Pass::Periodic), (2, 2));
        assert!(out.join("x=4/f.parquet").exists());
    }
}
