//! The dead-letter queue: records that cannot be decoded or converted, with the reason
//! and the raw input, so they can be inspected and re-driven. Nothing bad is dropped
//! silently.
//!
//! The file DLQ writes NDJSON, one entry per line:
//! `{"time": "...", "source": "line 12", "reason": "...", "key": "...", "raw": "..."}`;
//! `raw` holds the input as text when it is UTF-8, otherwise `raw_base64` holds it.
//!
//! A DLQ holds at most `DLQMaxBytes`: a source that sends nothing but garbage would
//! otherwise fill the disk (or Redis) with copies of it. Entries past the limit are not
//! kept; the sink says how many it kept, and the caller counts and logs the rest.

use crate::writer::file::{create_dir_durable, folder_of, sync_dir};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rejected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqEntry {
    /// Where it came from: "line 12", "event 3 of chunk (tag app.x)", ...
    pub source: String,
    pub reason: String,
    /// Partition key, when one could be computed.
    pub key: Option<String>,
    pub raw: Vec<u8>,
}

impl DlqEntry {
    pub fn new(source: impl Into<String>, reason: impl Into<String>, raw: &[u8]) -> Self {
        DlqEntry {
            source: source.into(),
            reason: reason.into(),
            key: None,
            raw: raw.to_vec(),
        }
    }

    /// The entry as one JSON line (without the newline).
    pub fn to_json(&self) -> String {
        use crate::value::write_json_str;
        let mut s = String::from("{\"time\":");
        write_json_str(
            &crate::timeutil::format_rfc3339_nanos(crate::timeutil::now_ns()),
            &mut s,
        );
        s.push_str(",\"source\":");
        write_json_str(&self.source, &mut s);
        s.push_str(",\"reason\":");
        write_json_str(&self.reason, &mut s);
        if let Some(k) = &self.key {
            s.push_str(",\"key\":");
            write_json_str(k, &mut s);
        }
        match std::str::from_utf8(&self.raw) {
            Ok(t) => {
                s.push_str(",\"raw\":");
                write_json_str(t, &mut s);
            }
            Err(_) => {
                use base64::Engine as _;
                s.push_str(",\"raw_base64\":");
                write_json_str(
                    &base64::engine::general_purpose::STANDARD.encode(&self.raw),
                    &mut s,
                );
            }
        }
        s.push('}');
        s
    }
}

#[derive(Debug, thiserror::Error)]
#[error("dead-letter queue {path}: {source}")]
pub struct DlqError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// The original input of a DLQ entry line (`raw`, or `raw_base64`), for re-driving it.
pub fn raw_of_entry(line: &[u8]) -> Result<Vec<u8>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not a DLQ entry: {e}"))?;
    if let Some(s) = v.get("raw").and_then(|r| r.as_str()) {
        return Ok(s.as_bytes().to_vec());
    }
    if let Some(s) = v.get("raw_base64").and_then(|r| r.as_str()) {
        use base64::Engine as _;
        return base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("bad raw_base64: {e}"));
    }
    Err("DLQ entry has no raw field".into())
}

/// Where rejected records go.
pub trait DlqSink: Send + Sync {
    /// Stores `entries`, in order, as far as the sink's limit allows; returns how many
    /// were kept (the others were over `DLQMaxBytes`).
    fn push(&self, entries: &[DlqEntry]) -> Result<usize, DlqError>;
    fn describe(&self) -> String;
}

/// An NDJSON dead-letter file, created on the first entry.
pub struct FileDlq {
    path: PathBuf,
    /// Most bytes the file may hold (0: no limit); with `folder`, the folder's files.
    max_bytes: u64,
    /// The limit covers every `dlq-*.ndjson` in the file's folder: each start of the
    /// plugin or the HTTP server makes a new file there, and without this every
    /// restart would add a whole `DLQMaxBytes` to the disk.
    folder: bool,
    /// Sync appends, the file's entry and new folders (`WriterFsync`).
    fsync: bool,
    file: Mutex<Option<OpenFile>>,
}

/// The open file and its size (what was there before, plus what this process wrote).
struct OpenFile {
    file: File,
    len: u64,
    /// The folder's other DLQ files (with `folder`), and when they were counted.
    others: u64,
    counted: Instant,
}

/// How often a full folder DLQ counts its folder again, so that files an operator
/// removed (after a replay) make room without a restart.
const RECOUNT_AFTER: Duration = Duration::from_secs(1);

/// The name of a file [`FileDlq::in_dir`] makes.
fn is_folder_dlq(name: &str) -> bool {
    name.starts_with("dlq-") && name.ends_with(".ndjson")
}

impl FileDlq {
    /// Entries go to exactly this file (json2parquet: next to the output).
    pub fn at_file(path: impl Into<PathBuf>) -> Self {
        FileDlq {
            path: path.into(),
            max_bytes: 0,
            folder: false,
            fsync: false,
            file: Mutex::new(None),
        }
    }

    /// Syncs every append and the folders made for the file (`WriterFsync`).
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// At most `max_bytes` in the file, counting what it held before (0: no limit).
    pub fn with_limit(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Entries go to a new file in `dir`, named by start time and process id; the
    /// limit covers the folder's DLQ files together.
    pub fn in_dir(dir: &Path) -> Self {
        let c = crate::timeutil::Civil::from_ns(crate::timeutil::now_ns());
        let name = format!(
            "dlq-{:04}{:02}{:02}T{:02}{:02}{:02}-{}-{}.ndjson",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            std::process::id(),
            ulid::Ulid::generate()
        );
        FileDlq {
            folder: true,
            ..Self::at_file(dir.join(name))
        }
    }

    /// Bytes in the folder's DLQ files other than this one (0 without `folder`, or
    /// where the folder cannot be read: the file's own limit still holds then).
    fn others(&self) -> u64 {
        let (Some(dir), Some(own)) = (self.path.parent(), self.path.file_name()) else {
            return 0;
        };
        if !self.folder || self.max_bytes == 0 {
            return 0;
        }
        let Ok(list) = std::fs::read_dir(dir) else {
            return 0;
        };
        list.flatten()
            .filter(|e| e.file_name() != own && e.file_name().to_str().is_some_and(is_folder_dlq))
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl DlqSink for FileDlq {
    fn push(&self, entries: &[DlqEntry]) -> Result<usize, DlqError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let err = |e| DlqError {
            path: self.path.display().to_string(),
            source: e,
        };
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let f = match guard.as_mut() {
            Some(f) => f,
            None => {
                if let Some(dir) = self.path.parent() {
                    create_dir_durable(dir, self.fsync).map_err(err)?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(err)?;
                if self.fsync {
                    // The file's name is an entry in its folder, durable once the
                    // folder is synced (once per open: later appends only grow it).
                    sync_dir(folder_of(&self.path)).map_err(err)?;
                }
                let len = file.metadata().map_err(err)?.len();
                let (others, counted) = (self.others(), Instant::now());
                guard.insert(OpenFile {
                    file,
                    len,
                    others,
                    counted,
                })
            }
        };
        let lines: Vec<String> = entries.iter().map(DlqEntry::to_json).collect();
        let need: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        let full = self.max_bytes > 0 && f.len + f.others + need > self.max_bytes;
        if full && self.folder && f.counted.elapsed() >= RECOUNT_AFTER {
            f.others = self.others();
            f.counted = Instant::now();
        }
        let mut text = String::new();
        let mut kept = 0;
        for line in lines {
            let after = f.len + f.others + (text.len() + line.len() + 1) as u64;
            if self.max_bytes > 0 && after > self.max_bytes {
                continue;
            }
            text.push_str(&line);
            text.push('\n');
            kept += 1;
        }
        if text.is_empty() {
            return Ok(0);
        }
        f.file.write_all(text.as_bytes()).map_err(err)?;
        f.file.flush().map_err(err)?;
        if self.fsync {
            // A dead-lettered record's line is its only copy once its batch is
            // acknowledged. Appends keep the file's size changing, so `sync_data`
            // still writes that metadata; only timestamps are left to the kernel.
            f.file.sync_data().map_err(err)?;
        }
        f.len += text.len() as u64;
        Ok(kept)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A DLQ that only counts (UseDLQ=false): entries are logged by the caller and dropped.
pub struct NoDlq;

impl DlqSink for NoDlq {
    /// Takes every entry (and drops it: that is what UseDLQ=false asks for).
    fn push(&self, entries: &[DlqEntry]) -> Result<usize, DlqError> {
        Ok(entries.len())
    }
    fn describe(&self) -> String {
        "disabled (UseDLQ=false)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_ndjson_entries_lazily() {
        let dir = tempfile::tempdir().unwrap();
        let d = FileDlq::at_file(dir.path().join("sub/x.dlq.ndjson")).with_fsync(true);
        d.push(&[]).unwrap();
        assert!(!d.path().exists(), "no empty files");
        let mut e = DlqEntry::new("line 3", "invalid JSON: syntax error", b"{bad");
        e.key = Some("a:b".into());
        d.push(&[e, DlqEntry::new("line 4", "not UTF-8", b"\xff\xfe")])
            .unwrap();
        let text = std::fs::read_to_string(d.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["source"], "line 3");
        assert_eq!(lines[0]["raw"], "{bad");
        assert_eq!(lines[0]["key"], "a:b");
        assert_eq!(lines[1]["raw_base64"], "//4=");
    }

    #[test]
    fn a_file_holds_at_most_its_limit_counting_what_it_held_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dlq.ndjson");
        std::fs::write(&path, "x".repeat(100) + "\n").unwrap();
        let entry = |n: usize| DlqEntry::new("line 1", "bad", "r".repeat(n).as_bytes());
        let line = |n: usize| entry(n).to_json().len() as u64 + 1;
        let limit = 101 + 2 * line(200) + line(10);
        let d = FileDlq::at_file(&path).with_limit(limit);
        // Two fit, the third (as large) does not, a small one after it still does.
        assert_eq!(d.push(&[entry(200), entry(200), entry(200)]).unwrap(), 2);
        assert_eq!(d.push(&[entry(10)]).unwrap(), 1);
        assert_eq!(d.push(&[entry(1)]).unwrap(), 0, "full");
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= limit && len > limit - line(1), "{len} of {limit}");
        // A new process appending to the same file counts what is there.
        let again = FileDlq::at_file(&path).with_limit(limit);
        assert_eq!(again.push(&[entry(1)]).unwrap(), 0);
        // Every line kept is a whole entry.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().skip(1).count(), 3);
        for l in text.lines().skip(1) {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        // Without a limit, everything is kept.
        assert_eq!(FileDlq::at_file(&path).push(&[entry(500)]).unwrap(), 1);
    }

    #[test]
    fn a_folder_dlq_shares_its_limit_with_the_folders_earlier_files() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |n: usize| DlqEntry::new("chunk 1", "bad", "r".repeat(n).as_bytes());
        let line = |n: usize| entry(n).to_json().len() as u64 + 1;
        // An earlier process's file, and a file that is not a DLQ file.
        let earlier = dir.path().join("dlq-20260101T000000-1-x.ndjson");
        std::fs::write(&earlier, "e".repeat(999) + "\n").unwrap();
        std::fs::write(dir.path().join("notes.ndjson"), "n".repeat(5000)).unwrap();
        let limit = 1000 + 2 * line(100);
        let d = FileDlq::in_dir(dir.path()).with_limit(limit);
        assert_eq!(d.push(&[entry(100), entry(100), entry(100)]).unwrap(), 2);
        let own = std::fs::metadata(d.path()).unwrap().len();
        assert_eq!(
            own,
            2 * line(100),
            "the earlier file counted, the other one not"
        );
        // Once the earlier file is removed (replayed), the next count makes room.
        std::fs::remove_file(&earlier).unwrap();
        std::thread::sleep(RECOUNT_AFTER + Duration::from_millis(50));
        assert_eq!(d.push(&[entry(100), entry(100)]).unwrap(), 2);
        // At json2parquet's own file, the folder does not count.
        std::fs::write(&earlier, "e".repeat(999) + "\n").unwrap();
        let single = FileDlq::at_file(dir.path().join("x.dlq.ndjson")).with_limit(line(100));
        assert_eq!(single.push(&[entry(100)]).unwrap(), 1);
    }
}
