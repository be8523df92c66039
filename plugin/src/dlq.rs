//! The dead-letter queue: records that cannot be decoded or converted, with the reason
//! and the raw input, so they can be inspected and re-driven. Nothing bad is dropped
//! silently.
//!
//! The file DLQ writes NDJSON, one entry per line:
//! `{"time": "...", "source": "line 12", "reason": "...", "key": "...", "raw": "..."}`;
//! `raw` holds the input as text when it is UTF-8, otherwise `raw_base64` holds it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    fn push(&self, entries: &[DlqEntry]) -> Result<(), DlqError>;
    fn describe(&self) -> String;
}

/// An NDJSON dead-letter file, created on the first entry.
pub struct FileDlq {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl FileDlq {
    /// Entries go to exactly this file (json2parquet: next to the output).
    pub fn at_file(path: impl Into<PathBuf>) -> Self {
        FileDlq {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    /// Entries go to a new file in `dir`, named by start time and process id.
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
        Self::at_file(dir.join(name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl DlqSink for FileDlq {
    fn push(&self, entries: &[DlqEntry]) -> Result<(), DlqError> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = |e| DlqError {
            path: self.path.display().to_string(),
            source: e,
        };
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(err)?,
            );
        }
        let mut text = String::new();
        for e in entries {
            text.push_str(&e.to_json());
            text.push('\n');
        }
        let f = guard
            .as_mut()
            .ok_or_else(|| err(std::io::Error::other("DLQ file not open")))?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.flush().map_err(err)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A DLQ that only counts (UseDLQ=false): entries are logged by the caller and dropped.
pub struct NoDlq;

impl DlqSink for NoDlq {
    fn push(&self, _: &[DlqEntry]) -> Result<(), DlqError> {
        Ok(())
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
        let d = FileDlq::at_file(dir.path().join("sub/x.dlq.ndjson"));
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
}
