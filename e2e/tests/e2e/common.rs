//! Helpers shared by the end-to-end tests.

use data2parquet::config::Config;
use data2parquet::ingest::{Decoder, IngestSpec, KeyedBatch};
use data2parquet::record::Record;
use data2parquet::record::log::{COLUMNS, Col, LogRecord};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The folder holding the workspace's built binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-xxxx -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    if std::env::var("E2E_VERBOSE").is_ok() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What the pipeline must write for one record: all 34 columns, as the readback
/// module renders them.
pub fn expected_row(r: &LogRecord) -> Map<String, Value> {
    let mut m = Map::new();
    for c in COLUMNS {
        let v = match c {
            Col::S(s) => r.get(s).map_or(Value::Null, |v| Value::String(v.into())),
            Col::Audit => r.audit().map_or(Value::Null, Value::Bool),
            Col::AutoIndex => r.auto_index().map_or(Value::Null, Value::Bool),
            Col::Args => Value::Object(
                r.args()
                    .map(|(k, v)| (k.to_string(), Value::String(v.into())))
                    .collect(),
            ),
            Col::ExtraFields => Value::Object(
                r.extra_fields()
                    .map(|(k, v)| (k.to_string(), Value::String(v.into())))
                    .collect(),
            ),
            Col::Tags => Value::Array(r.tags().map(|v| Value::String(v.into())).collect()),
            Col::TraceIp => Value::Array(r.trace_ip().map(|v| Value::String(v.into())).collect()),
        };
        m.insert(c.name().to_string(), v);
    }
    m
}

/// Maps NDJSON lines with the library's own rules (the unit tests pin the rules; here
/// they tell what the end-to-end path must deliver).
pub fn expected_records(cfg: &Config, ndjson: &str) -> Vec<(String, LogRecord)> {
    let spec = IngestSpec::from_config(cfg).expect("spec");
    let mut d = Decoder::new(&spec);
    let mut out = Vec::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let mut b = KeyedBatch::new();
        let mut bytes = line.as_bytes().to_vec();
        if d.json(&mut bytes, String::new, &mut b) {
            for (k, recs) in b.take_groups() {
                for r in recs {
                    let Record::Log(l) = r;
                    out.push((k.to_string(), l));
                }
            }
        }
    }
    out
}

/// Every row of every Parquet file under `dir`, with the file it came from.
pub fn read_dir_rows(dir: &Path) -> Vec<(PathBuf, Map<String, Value>)> {
    let mut rows = Vec::new();
    for f in data2parquet::readback::parquet_files(dir) {
        for r in data2parquet::readback::file_rows(&f).expect("readable parquet") {
            rows.push((f.clone(), r));
        }
    }
    rows
}

/// The value of `extra-fields[key]` (where unknown input keys such as `id` land).
pub fn extra<'a>(row: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    row.get("extra-fields")?.get(key)?.as_str()
}

/// Writes `n` generated records as NDJSON and returns the text.
pub fn generate(seed: u64, n: usize) -> String {
    let mut g = datagen::Generator::new(seed);
    let mut s = String::new();
    for _ in 0..n {
        g.write_json(&mut s);
        s.push('\n');
    }
    s
}

pub fn read_dlq(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("DLQ lines are JSON"))
        .collect()
}
