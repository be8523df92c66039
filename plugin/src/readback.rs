//! Reading Parquet files back as JSON rows: for tests, the exactly-once verifier and
//! anyone checking what was written. Handles every type this crate writes.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
}

/// One cell as JSON. Binary that is UTF-8 becomes a string.
pub fn cell(a: &ArrayRef, i: usize) -> Value {
    // A Null-typed column (a key only ever seen as null) has no validity buffer.
    if a.is_null(i) || a.data_type() == &DataType::Null {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Utf8 => Value::String(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(a.as_string::<i64>().value(i).to_string()),
        DataType::Binary => {
            let b = a.as_binary::<i32>().value(i);
            match std::str::from_utf8(b) {
                Ok(s) => Value::String(s.to_string()),
                Err(_) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
            }
        }
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int64 => Value::from(a.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Value::from(a.as_primitive::<arrow_array::types::Int32Type>().value(i)),
        DataType::Float64 => serde_json::Number::from_f64(a.as_primitive::<Float64Type>().value(i))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        DataType::Timestamp(_, _) => {
            let us = a.as_primitive::<TimestampMicrosecondType>().value(i);
            Value::String(crate::timeutil::format_rfc3339_nanos(us * 1000))
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(i);
            Value::Array((0..l.len()).map(|j| cell(&l, j)).collect())
        }
        DataType::Map(_, _) => {
            let m = a.as_map().value(i);
            let (k, v) = (m.column(0).clone(), m.column(1).clone());
            let mut out = Map::new();
            for j in 0..m.len() {
                let key = match cell(&k, j) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, cell(&v, j));
            }
            Value::Object(out)
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut out = Map::new();
            for (f, col) in fields.iter().zip(s.columns()) {
                out.insert(f.name().clone(), cell(col, i));
            }
            Value::Object(out)
        }
        other => Value::String(format!("<unsupported type {other}>")),
    }
}

/// Every row of a batch as a JSON object, columns in schema order.
pub fn batch_rows(b: &RecordBatch) -> Vec<Map<String, Value>> {
    let schema = b.schema();
    (0..b.num_rows())
        .map(|i| {
            let mut row = Map::new();
            for (f, col) in schema.fields().iter().zip(b.columns()) {
                row.insert(f.name().clone(), cell(col, i));
            }
            row
        })
        .collect()
}

/// Every row of a Parquet file.
pub fn file_rows(path: &Path) -> Result<Vec<Map<String, Value>>, ReadError> {
    let err = |msg: String| ReadError::File {
        path: path.display().to_string(),
        msg,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    bytes_rows(f).map_err(err)
}

/// Every row of an in-memory Parquet file.
pub fn bytes_rows<R: parquet::file::reader::ChunkReader + 'static>(
    r: R,
) -> Result<Vec<Map<String, Value>>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(r)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in reader {
        out.extend(batch_rows(&b.map_err(|e| e.to_string())?));
    }
    Ok(out)
}

/// The record ids of a Parquet file, reading only the columns that hold them: `id`
/// (dynamic records) or the `id` entry of `extra-fields` (log records, where unknown
/// input keys land). Rows without an id give `None`. Used by the exactly-once verifier,
/// which reads millions of rows.
pub fn ids<R: parquet::file::reader::ChunkReader + 'static>(
    r: R,
) -> Result<Vec<Option<String>>, String> {
    use parquet::arrow::ProjectionMask;
    let b = ParquetRecordBatchReaderBuilder::try_new(r).map_err(|e| e.to_string())?;
    let roots: Vec<usize> = b
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() == "id" || f.name() == "extra-fields")
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
    let reader = b.with_projection(mask).build().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let direct = batch.column_by_name("id");
        let extra = batch.column_by_name("extra-fields");
        for i in 0..batch.num_rows() {
            let from = |v: Value| match v {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            };
            let id = match (direct, extra) {
                (Some(c), _) => from(cell(c, i)),
                (None, Some(m)) if !m.is_null(i) => {
                    let entries = m.as_map().value(i);
                    let (k, v) = (entries.column(0), entries.column(1));
                    (0..entries.len())
                        .find(|&j| cell(k, j) == "id")
                        .and_then(|j| from(cell(v, j)))
                }
                _ => None,
            };
            out.push(id);
        }
    }
    Ok(out)
}

/// Every `*.parquet` file under `dir`, sorted, skipping hidden files and folders
/// (temporary files, `_dlq`, `_recovery`).
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
