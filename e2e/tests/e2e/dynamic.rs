//! `RecordType=dynamic` end to end: every key kept and typed by the widening order, the
//! schema of a key stable across files (and across processes with Redis), JSON Schema
//! validation with dead letters and `_extra`, through json2parquet, the plugin and the
//! HTTP server; and, where DuckDB is installed, what it drops on the same input.

use crate::common::*;
use data2parquet::timeutil::format_rfc3339_nanos;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Column names and types of a Parquet file, as Arrow reads it.
fn columns(file: &Path) -> Vec<(String, String)> {
    let f = std::fs::File::open(file).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    b.schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), type_name(f.data_type())))
        .collect()
}

/// A short, stable spelling of an Arrow type.
fn type_name(t: &arrow_schema::DataType) -> String {
    use arrow_schema::DataType as T;
    match t {
        T::Null => "null".into(),
        T::Boolean => "bool".into(),
        T::Int64 => "int".into(),
        T::Float64 => "float".into(),
        T::Utf8 => "string".into(),
        T::Timestamp(u, Some(tz)) => format!("timestamp[{u:?},{tz}]"),
        T::List(f) => format!("list<{}>", type_name(f.data_type())),
        T::Struct(fs) => format!(
            "struct<{}>",
            fs.iter()
                .map(|f| format!("{}:{}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => format!("{other:?}"),
    }
}

pub(crate) fn col_types(file: &Path) -> Map<String, Value> {
    columns(file)
        .into_iter()
        .map(|(n, t)| (n, Value::String(t)))
        .collect()
}

/// The heterogeneous input: 30 000 records where `late` appears at 25 000, `v` is an
/// integer, then a float from 26 000, then a string from 27 000, `obj` is a nested
/// object with a list of mixed items, `mix` is an object or an array, `none` is always
/// null. Every record has an epoch-seconds `time`.
fn heterogeneous() -> String {
    let mut s = String::new();
    for i in 0..30_000u64 {
        let mut r = Map::new();
        r.insert("id".into(), json!(i));
        r.insert(
            "v".into(),
            match i {
                0..26_000 => json!(i),
                26_000..27_000 => json!(i as f64 + 0.5),
                _ => json!(format!("s{i}")),
            },
        );
        r.insert("time".into(), json!(1_700_000_000 + i));
        r.insert("msg".into(), json!(msg(i)));
        if i >= 25_000 {
            r.insert("late".into(), json!(format!("x{i}")));
        }
        if i.is_multiple_of(7) {
            r.insert("obj".into(), json!({"a": i, "tags": ["t", i % 3]}));
        }
        if i.is_multiple_of(5) {
            r.insert("mix".into(), json!({"k": 1}));
        } else if i == 29_998 {
            r.insert("mix".into(), json!([1, 2]));
        }
        if i.is_multiple_of(11) {
            r.insert("none".into(), Value::Null);
        }
        s.push_str(&Value::Object(r).to_string());
        s.push('\n');
    }
    s
}

/// The text field of record `i`, long enough that the input spans several blocks.
fn msg(i: u64) -> String {
    format!("record {i:06} of the heterogeneous input, padded to span blocks")
}

/// What record `i` of [`heterogeneous`] must read back as.
fn expected_row(i: u64) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert(
        "_event_time".into(),
        json!(format_rfc3339_nanos(
            (1_700_000_000 + i as i64) * 1_000_000_000
        )),
    );
    r.insert("id".into(), json!(i));
    r.insert(
        "v".into(),
        match i {
            0..26_000 => json!(i.to_string()),
            26_000..27_000 => json!(format!("{i}.5")),
            _ => json!(format!("s{i}")),
        },
    );
    r.insert("time".into(), json!(1_700_000_000 + i));
    r.insert("msg".into(), json!(msg(i)));
    r.insert(
        "obj".into(),
        if i.is_multiple_of(7) {
            json!({"a": i, "tags": ["t", (i % 3).to_string()]})
        } else {
            Value::Null
        },
    );
    r.insert(
        "mix".into(),
        match i {
            _ if i.is_multiple_of(5) => json!(r#"{"k":1}"#),
            29_998 => json!("[1,2]"),
            _ => Value::Null,
        },
    );
    r.insert("none".into(), Value::Null);
    r.insert(
        "late".into(),
        if i >= 25_000 {
            json!(format!("x{i}"))
        } else {
            Value::Null
        },
    );
    r
}

#[test]
fn json2parquet_keeps_every_key_and_widens_types() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, heterogeneous()).unwrap();
    let out = dir.path().join("out.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .args(["--record-type", "dynamic", "--threads", "2", "-q", "-o"])
        .arg(&out)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        col_types(&out),
        json!({
            "_event_time": "timestamp[Microsecond,UTC]",
            "id": "int",
            "v": "string",
            "time": "int",
            "msg": "string",
            "obj": "struct<a:int,tags:list<string>>",
            "mix": "string",
            "none": "null",
            "late": "string",
        })
        .as_object()
        .unwrap()
        .clone()
    );
    let rows = data2parquet::readback::file_rows(&out).unwrap();
    assert_eq!(rows.len(), 30_000);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row, &expected_row(i as u64), "record {i}");
    }
    // The same from stdin (kept in a temporary file, since it is read again), with a
    // schema sample of one block: the later keys and types make it write the file again.
    let out2 = dir.path().join("stdin.parquet");
    let input2 = dir.path().join("in2.ndjson");
    std::fs::write(&input2, heterogeneous() + "not json\n").unwrap();
    let o = run(Command::new("sh").arg("-c").arg(format!(
        "{} --record-type dynamic --schema-sample-mib 1 -q -o {} < {}",
        bin("json2parquet").display(),
        out2.display(),
        input2.display()
    )));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("writing the file again with the full schema"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("30000 records read"), "{}", stderr(&o));
    let dlq = read_dlq(&dir.path().join("stdin.dlq.ndjson"));
    assert_eq!(
        dlq.len(),
        1,
        "a record read twice is dead-lettered once: {dlq:?}"
    );
    assert_eq!(dlq[0]["source"], "stdin:line 30001");
    assert_eq!(data2parquet::readback::file_rows(&out2).unwrap(), rows);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");

    // Small row groups on three encoder threads: the same rows, split into row
    // groups by size, with the chunks of each in schema order.
    let conf = dir.path().join("small-groups.json");
    std::fs::write(&conf, r#"{"writer_row_group_size": "64KiB"}"#).unwrap();
    let out3 = dir.path().join("groups.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .args(["--record-type", "dynamic", "--threads", "3", "-q", "-c"])
        .arg(&conf)
        .arg("-o")
        .arg(&out3)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(data2parquet::readback::file_rows(&out3).unwrap(), rows);
    let file = std::fs::File::open(&out3).unwrap();
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::reader::SerializedFileReader::new(file).unwrap(),
    )
    .clone();
    assert!(
        meta.num_row_groups() >= 4,
        "{} row groups",
        meta.num_row_groups()
    );
    let names = |g: usize| -> Vec<String> {
        meta.row_group(g)
            .columns()
            .iter()
            .map(|c| c.column_path().string())
            .collect()
    };
    for g in 1..meta.num_row_groups() {
        assert_eq!(names(g), names(0), "row group {g}");
    }
    assert_eq!(names(0)[0], "_event_time");
}

#[test]
fn nested_objects_as_json_text_and_time_keys() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(
        &input,
        concat!(
            r#"{"o": {"a": [1, {"b": null}]}, "ts": "2026-03-04T05:06:07.123456Z", "secret": "s", "drop": 1}"#,
            "\n",
            r#"{"o": 5, "ts": 1772600767123, "_event_time": "2026-01-01T00:00:00Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .args(["--record-type", "dynamic", "-q", "-o"])
        .arg(&out)
        .arg(&input)
        .env("D2P_DYNAMIC_NESTED", "json")
        .env("D2P_DYNAMIC_TIME_KEY", "ts")
        .env("D2P_MASK_FIELDS", "secret")
        .env("D2P_IGNORED_FIELDS", "drop"));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = data2parquet::readback::file_rows(&out).unwrap();
    assert_eq!(
        Value::Array(rows.into_iter().map(Value::Object).collect()),
        json!([
            {"_event_time": "2026-03-04T05:06:07.123456000Z", "o": r#"{"a":[1,{"b":null}]}"#,
             "ts": "2026-03-04T05:06:07.123456Z", "secret": "*"},
            // `_event_time` in the data is the event time; epoch milliseconds parse too.
            {"_event_time": "2026-01-01T00:00:00.000000000Z", "o": "5",
             "ts": "1772600767123", "secret": null},
        ])
    );
}

/// The JSON Schema the library's unit tests use too.
const SCHEMA: &str = include_str!("../../../plugin/testdata/schema.json");

/// The column types of a file under [`SCHEMA`]: the event time, the schema's columns,
/// then `tail`.
fn schema_types(tail: &[(&str, &str)]) -> Map<String, Value> {
    let mut m = json!({
        "_event_time": "timestamp[Microsecond,UTC]",
        "id": "int",
        "when": "timestamp[Microsecond,UTC]",
        "score": "float",
        "tags": "list<string>",
        "user": "struct<name:string,age:int>",
    })
    .as_object()
    .unwrap()
    .clone();
    m.extend(tail.iter().map(|(k, v)| (k.to_string(), json!(v))));
    m
}

#[test]
fn json_schema_fixes_columns_rejects_misfits_and_keeps_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    let cfg = json!({
        "record_type": "dynamic",
        "json_schema_path": dir.path().join("schema.json"),
        "writer_fsync": false,
        "flush_interval": 3600,
    });
    std::fs::write(dir.path().join("cfg.json"), cfg.to_string()).unwrap();
    let input = dir.path().join("in.ndjson");
    let lines = [
        r#"{"id": 1, "when": "2026-01-02T03:04:05Z", "score": 1.5, "tags": ["a"], "user": {"name": "n", "age": 3, "team": "t"}, "capability": "c1"}"#,
        r#"{"id": 2, "when": "2026-01-02T03:04:06+01:00", "other": {"x": [1]}, "more": true, "capability": "c1"}"#,
        r#"{"when": "2026-01-02T03:04:05Z"}"#,
        r#"{"id": "3", "when": "2026-01-02T03:04:05Z"}"#,
        r#"{"id": 4, "when": "2026-01-02T03:04:05Z", "tags": ["a", 2]}"#,
        r#"{"id": 5, "when": "not a time"}"#,
        r#"{"id": 6, "when": "2026-01-02T03:04:05Z", "user": {"age": 1}}"#,
        r#"{"id": 7, "when": "2026-01-02T03:04:05Z", "score": null, "capability": "c1"}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let o = json2parquet_out_dir(&dir.path().join("cfg.json"), &out, &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let dlq = read_dlq(&dir.path().join("out.dlq.ndjson"));
    let reasons: Vec<(String, String)> = dlq
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        (3, "field `id`: required, but missing or null"),
        (4, "field `id`: expected an integer, found string"),
        (5, "field `tags[1]`: expected a string, found integer"),
        (6, "field `when`: expected a date-time"),
        (7, "field `user.name`: required"),
    ];
    assert_eq!(reasons.len(), want.len(), "{reasons:?}");
    for ((src, reason), (line, text)) in reasons.iter().zip(want) {
        assert!(src.ends_with(&format!("in.ndjson:line {line}")), "{src}");
        assert!(reason.contains(text), "line {line}: {reason}");
    }
    let files = data2parquet::readback::parquet_files(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with(out.join("c1")),
        "upstream's dynamic layout: {}",
        files[0].display()
    );
    assert_eq!(col_types(&files[0]), schema_types(&[("_extra", "string")]));
    let rows: Vec<Value> = data2parquet::readback::file_rows(&files[0])
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.remove("_event_time");
            Value::Object(r)
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "when": "2026-01-02T03:04:05.000000000Z", "score": 1.5, "tags": ["a"],
                   "user": {"name": "n", "age": 3},
                   "_extra": r#"{"capability":"c1","user":{"team":"t"}}"#}),
            json!({"id": 2, "when": "2026-01-02T02:04:06.000000000Z", "score": null, "tags": null,
                   "user": null, "_extra": r#"{"other":{"x":[1]},"more":true,"capability":"c1"}"#}),
            json!({"id": 7, "when": "2026-01-02T03:04:05.000000000Z", "score": null, "tags": null,
                   "user": null, "_extra": r#"{"capability":"c1"}"#}),
        ]
    );
}

/// The same schema through the plugin: a misfit goes to the DLQ with its reason, the
/// good records of the chunk are written, and keys the schema does not name are kept:
/// in `_extra` (nested ones at their path), or with `JsonSchemaUnknownKeys=columns`
/// top-level ones in inferred columns after the schema's (nested ones still in
/// `_extra`, since the schema's struct has no place for them).
#[test]
fn plugin_fixes_columns_by_json_schema_and_keeps_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let lines = [
        r#"{"id": 1, "when": "2026-01-02T03:04:05Z", "user": {"name": "n", "team": "t"}, "host": "h", "n": 1}"#,
        r#"{"id": "2", "when": "2026-01-02T03:04:05Z"}"#,
        r#"{"id": 3, "when": "2026-01-02T03:04:06Z", "tags": ["x"], "n": 2.5}"#,
    ];
    let schema = schema.to_str().unwrap();
    let pinned = ["_event_time", "id", "when", "score", "tags", "user"];
    let row = |id: i64, when: &str, tags: Value, user: Value| json!({"id": id, "when": when, "score": null, "tags": tags, "user": user});
    let (first, second) = (
        row(
            1,
            "2026-01-02T03:04:05.000000000Z",
            Value::Null,
            json!({"name": "n", "age": null}),
        ),
        row(
            3,
            "2026-01-02T03:04:06.000000000Z",
            json!(["x"]),
            Value::Null,
        ),
    );
    let with = |mut r: Value, more: Value| {
        r.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        r
    };
    for (mode, tail, rows) in [
        (
            "extra",
            vec!["_extra"],
            vec![
                with(
                    first.clone(),
                    json!({"_extra": r#"{"host":"h","n":1,"user":{"team":"t"}}"#}),
                ),
                with(second.clone(), json!({"_extra": r#"{"n":2.5}"#})),
            ],
        ),
        (
            "columns",
            vec!["host", "n", "_extra"],
            vec![
                with(
                    first,
                    json!({"host": "h", "n": 1.0, "_extra": r#"{"user":{"team":"t"}}"#}),
                ),
                with(second, json!({"host": null, "n": 2.5, "_extra": null})),
            ],
        ),
    ] {
        let (_tmp, out) = run_dynamic_lines(
            &lines,
            &[("JsonSchemaPath", schema), ("JsonSchemaUnknownKeys", mode)],
        );
        let files = files_by_time(&out);
        assert_eq!(files.len(), 1, "{mode}: {files:?}");
        let names: Vec<String> = columns(&files[0].0).into_iter().map(|(n, _)| n).collect();
        let want: Vec<&str> = pinned.iter().chain(&tail).copied().collect();
        assert_eq!(names, want, "{mode}");
        assert_eq!(col_types(&files[0].0)["when"], "timestamp[Microsecond,UTC]");
        let got: Vec<Value> = files[0]
            .1
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.remove("_event_time");
                Value::Object(r)
            })
            .collect();
        assert_eq!(got, rows, "{mode}");
        let dead: Vec<Value> = std::fs::read_dir(out.join("_dlq"))
            .unwrap()
            .flatten()
            .flat_map(|e| read_dlq(&e.path()))
            .collect();
        assert_eq!(dead.len(), 1, "{mode}: {dead:?}");
        let reason = dead[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("field `id`: expected an integer, found string"),
            "{mode}: {reason}"
        );
    }
}

/// With `JsonSchemaUnknownKeys=columns`, a key's schema changes only when the data
/// brings a new column of its own: what inference makes of the schema's columns (text
/// for `when`) is not a change, nor are the schema's columns the records leave out.
/// Redis keeps each key's schema with its records; the second of two plugin processes
/// starts from it, writes a file per record, and sees one change: the new column `m`.
#[test]
fn plugin_counts_only_real_changes_of_a_pinned_schema() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let metrics = dir.path().join("pinned.prom");
    let out = dir.path().join("out");
    let mut props = host_props(
        &out,
        &[
            ("JsonSchemaPath", schema.to_str().unwrap()),
            ("JsonSchemaUnknownKeys", "columns"),
            ("BufferSize", "1"),
            ("BufferType", "redis"),
            ("MetricsFile", metrics.to_str().unwrap()),
        ],
    );
    props["RedisHost"] = json!(redis.addr());
    props["DLQPath"] = json!(dir.path().join("dlq"));
    let processes: [&[&str]; 2] = [
        &[r#"{"id": 1, "when": "2026-01-02T03:04:05Z", "n": 1}"#],
        &[
            r#"{"id": 2, "when": "2026-01-02T03:04:06Z", "n": 2}"#,
            r#"{"id": 3, "when": "2026-01-02T03:04:07Z", "n": 3, "m": "x"}"#,
        ],
    ];
    for (i, lines) in processes.iter().enumerate() {
        let chunk = write_chunk(
            dir.path(),
            &format!("{i}.chunk"),
            &chunk_from_ndjson(lines, ChunkFormat::V5, 1_700_000_000 + i as u32 * 100),
        );
        let r = run_host(&host_scenario(props.clone(), &[chunk]), &[]);
        assert_eq!(codes(&r, 0), vec![1], "{r}");
    }
    let files = files_by_time(&out);
    assert_eq!(files.len(), 3);
    for (f, _) in &files {
        assert_eq!(col_types(f)["when"], "timestamp[Microsecond,UTC]");
    }
    let last: Vec<String> = columns(&files[2].0).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        last,
        [
            "_event_time",
            "id",
            "when",
            "score",
            "tags",
            "user",
            "n",
            "m",
            "_extra"
        ]
    );
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("d2p_schema_changes_total{output=\"pinned\"} 1\n"),
        "{m}"
    );
}

/// One dynamic file (`-o`) with `JsonSchemaUnknownKeys=columns`: the schema's columns
/// keep its types, and a key first seen after the 1 MiB schema sample (and a type that
/// widens there) gets its column when the file is written again.
#[test]
fn json2parquet_pins_the_schemas_columns_and_infers_the_rest_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let mut lines: Vec<String> = (0..12_000)
        .map(|i| {
            format!(
                r#"{{"id": {i}, "when": "2026-01-02T03:04:05Z", "n": {i}, "pad": "{}"}}"#,
                "p".repeat(64)
            )
        })
        .collect();
    lines.push(r#"{"id": 12000, "when": "2026-01-02T03:04:05Z", "n": 0.5, "late": true}"#.into());
    lines.push(r#"{"id": "x", "when": "2026-01-02T03:04:05Z"}"#.into());
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, lines.join("\n")).unwrap();
    assert!(std::fs::metadata(&input).unwrap().len() > 1 << 20);
    let out = dir.path().join("out.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .args(["--record-type", "dynamic", "-q", "-o"])
        .arg(&out)
        .arg(&input)
        .env("D2P_JSON_SCHEMA_PATH", &schema)
        .env("D2P_JSON_SCHEMA_UNKNOWN_KEYS", "columns"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        col_types(&out),
        schema_types(&[
            ("n", "float"),
            ("pad", "string"),
            ("late", "bool"),
            ("_extra", "string")
        ])
    );
    let rows = data2parquet::readback::file_rows(&out).unwrap();
    assert_eq!(rows.len(), 12_001);
    for (i, r) in rows.iter().enumerate().take(12_000) {
        assert_eq!(
            (&r["id"], &r["n"]),
            (&json!(i), &json!(i as f64)),
            "row {i}"
        );
        assert_eq!(r["late"], Value::Null, "row {i}");
    }
    let last = &rows[12_000];
    assert_eq!(
        (&last["id"], &last["n"], &last["late"], &last["when"]),
        (
            &json!(12_000),
            &json!(0.5),
            &json!(true),
            &json!("2026-01-02T03:04:05.000000000Z")
        )
    );
    let dlq = read_dlq(&dir.path().join("out.dlq.ndjson"));
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert!(dlq[0]["reason"].as_str().unwrap().contains("field `id`"));
}

fn host_props(out: &Path, extra: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    m.insert("WriterFilePath".into(), json!(out));
    m.insert("WriterFsync".into(), json!("false"));
    m.insert("RecordType".into(), json!("dynamic"));
    m.insert("PartitionFields".into(), json!("tag"));
    for (k, v) in extra {
        m.insert((*k).into(), json!(v));
    }
    Value::Object(m)
}

/// Runs `lines` as one Fluent Bit 5 chunk through the plugin with dynamic records and
/// the `extra` settings, and checks the chunk was taken: the temporary folder and the
/// output folder inside it.
fn run_dynamic_lines(lines: &[&str], extra: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let chunk = write_chunk(
        dir.path(),
        "lines.chunk",
        &chunk_from_ndjson(lines, ChunkFormat::V5, 1_700_000_000),
    );
    let out = dir.path().join("out");
    let r = run_host(&host_scenario(host_props(&out, extra), &[chunk]), &[]);
    assert_eq!(codes(&r, 0), vec![1], "{r}");
    (dir, out)
}

fn host_scenario(props: Value, chunks: &[PathBuf]) -> Value {
    json!({
        "plugin": plugin_path(),
        "instances": [{"props": props}],
        "steps": [{"flush": {"instance": 0, "chunks": chunks, "tag": "app.dyn"}}],
    })
}

/// Every file under `out` with its rows, oldest events first.
fn files_by_time(out: &Path) -> Vec<(PathBuf, Vec<Map<String, Value>>)> {
    let mut files: Vec<_> = data2parquet::readback::parquet_files(out)
        .into_iter()
        .map(|f| {
            let rows = data2parquet::readback::file_rows(&f).unwrap();
            (f, rows)
        })
        .collect();
    files.sort_by_key(|(_, rows)| rows[0]["_event_time"].as_str().unwrap().to_string());
    files
}

#[test]
fn plugin_keeps_fluent_bit_times_and_widens_the_schema_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[&str], fmt: ChunkFormat, secs: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, chunk_from_ndjson(lines, fmt, secs)).unwrap();
        p
    };
    let chunks = [
        write(
            "a.chunk",
            &[r#"{"a": 1}"#, r#"{"a": 2, "n": {"x": 1}}"#],
            ChunkFormat::V5,
            1_700_000_000,
        ),
        write(
            "b.chunk",
            &[r#"{"a": 2.5, "late": "y"}"#, r#"{"b": [1, 2]}"#],
            ChunkFormat::Legacy,
            1_700_000_100,
        ),
        write(
            "c.chunk",
            &[r#"{"a": "s"}"#, r#"{}"#],
            ChunkFormat::V2Array32,
            1_700_000_200,
        ),
    ];
    let out = dir.path().join("out");
    let r = run_host(
        &host_scenario(host_props(&out, &[("BufferSize", "2")]), &chunks),
        &[],
    );
    assert_eq!(codes(&r, 0), vec![1, 1, 1]);
    let files = files_by_time(&out);
    assert_eq!(files.len(), 3, "one file per BufferSize batch");
    let names: Vec<Vec<String>> = files
        .iter()
        .map(|(f, _)| columns(f).into_iter().map(|(n, _)| n).collect())
        .collect();
    assert_eq!(names[0], ["_event_time", "a", "n"]);
    assert_eq!(names[1], ["_event_time", "a", "n", "late", "b"]);
    assert_eq!(
        names[2], names[1],
        "a later file keeps every column of the key"
    );
    let types: Vec<String> = files
        .iter()
        .map(|(f, _)| col_types(f)["a"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["int", "float", "string"], "widened, never narrowed");
    let t = |secs: i64, ms: i64| json!(format_rfc3339_nanos(secs * 1_000_000_000 + ms * 1_000_000));
    let all: Vec<Value> = files
        .into_iter()
        .flat_map(|(_, rows)| rows.into_iter().map(Value::Object))
        .collect();
    assert_eq!(
        all,
        vec![
            json!({"_event_time": t(1_700_000_000, 0), "a": 1, "n": null}),
            json!({"_event_time": t(1_700_000_000, 1), "a": 2, "n": {"x": 1}}),
            json!({"_event_time": t(1_700_000_100, 0), "a": 2.5, "n": null, "late": "y", "b": null}),
            json!({"_event_time": t(1_700_000_100, 1), "a": null, "n": null, "late": null, "b": [1, 2]}),
            json!({"_event_time": t(1_700_000_200, 0), "a": "s", "n": null, "late": null, "b": null}),
            json!({"_event_time": t(1_700_000_200, 1), "a": null, "n": null, "late": null, "b": null}),
        ]
    );
    let folder = data2parquet::readback::parquet_files(&out)[0].clone();
    assert!(
        folder.starts_with(out.join("tag=app.dyn")),
        "{}",
        folder.display()
    );
}

#[test]
fn redis_keeps_the_schema_of_a_key_across_processes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut props = host_props(&out, &[]);
    props["BufferType"] = json!("redis");
    props["RedisHost"] = json!(redis.addr());
    props["DLQPath"] = json!(dir.path().join("dlq"));
    let first = dir.path().join("1.chunk");
    std::fs::write(
        &first,
        chunk_from_ndjson(
            &[r#"{"a": 1, "x": {"y": true}}"#],
            ChunkFormat::V5,
            1_700_000_000,
        ),
    )
    .unwrap();
    let second = dir.path().join("2.chunk");
    std::fs::write(
        &second,
        chunk_from_ndjson(&[r#"{"a": 2}"#], ChunkFormat::V5, 1_700_000_100),
    )
    .unwrap();
    // Two plugin processes, one after the other: the second never saw `x`.
    for chunk in [&first, &second] {
        let r = run_host(
            &host_scenario(props.clone(), std::slice::from_ref(chunk)),
            &[],
        );
        assert_eq!(codes(&r, 0), vec![1]);
    }
    let mut c = redis.conn().unwrap();
    let stored: String = redis::cmd("GET")
        .arg("data-schema:app.dyn")
        .query(&mut c)
        .unwrap();
    assert!(stored.contains("\"x\""), "{stored}");
    let files = files_by_time(&out);
    assert_eq!(files.len(), 2);
    assert_eq!(col_types(&files[0].0), col_types(&files[1].0));
    assert_eq!(
        Value::Object(files[1].1[0].clone()),
        json!({"_event_time": format_rfc3339_nanos(1_700_000_100_000_000_000), "a": 2, "x": null})
    );
}

/// With Redis, a batch too large to hold at once (30,000 records, read 10,000 at a
/// time where it is written) is still one file of one schema: its dynamic records are
/// read through for the schema first, so `late` (from record 25,000) and `v` (a
/// string from 27,000) type the whole file, and every record reads back as it went in.
#[test]
fn redis_writes_a_large_batch_of_dynamic_records_as_one_file_of_one_schema() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut props = host_props(&out, &[("BufferSize", "100000")]);
    props["BufferType"] = json!("redis");
    props["RedisHost"] = json!(redis.addr());
    props["DLQPath"] = json!(dir.path().join("dlq"));
    let text = heterogeneous();
    let lines: Vec<&str> = text.lines().collect();
    let base = 1_700_000_000u32;
    let chunk = write_chunk(
        dir.path(),
        "big.chunk",
        &chunk_from_ndjson(&lines, ChunkFormat::V5, base),
    );
    let r = run_host(&host_scenario(props, &[chunk]), &[]);
    assert_eq!(codes(&r, 0), vec![1]);
    let files = files_by_time(&out);
    assert_eq!(files.len(), 1, "one file for the batch");
    let types = col_types(&files[0].0);
    assert_eq!(
        (&types["late"], &types["v"]),
        (&json!("string"), &json!("string"))
    );
    let rows = &files[0].1;
    assert_eq!(rows.len(), 30_000);
    for (i, row) in rows.iter().enumerate() {
        // The plugin's event time is Fluent Bit's: base + i ms.
        let ns = i64::from(base) * 1_000_000_000 + i as i64 * 1_000_000;
        let mut want = expected_row(i as u64);
        want.insert("_event_time".into(), json!(format_rfc3339_nanos(ns)));
        assert_eq!(row, &want, "record {i}");
    }
}

#[test]
fn http_server_takes_dynamic_records() {
    let s = HttpServer::start(json!({"record_type": "dynamic", "flush_interval": 3600}));
    let body = concat!(
        r#"{"capability": "web", "n": 1, "time": "2026-05-06T07:08:09Z"}"#,
        "\n",
        r#"{"capability": "web", "n": "two", "extra": [1.5]}"#,
        "\n",
        r#"[1, 2]"#,
        "\n"
    );
    let r = http(
        "POST",
        &s.url("/records"),
        &[("Content-Type", "application/x-ndjson")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.json()["accepted"], 2, "{}", r.text());
    assert!(
        r.text().contains("expected an object, found array"),
        "{}",
        r.text()
    );
    let r = http("POST", &s.url("/flush"), &[], None);
    assert_eq!(r.json()["rows"], 2, "{}", r.text());
    let files = data2parquet::readback::parquet_files(&s.out());
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with(s.out().join("web")));
    let rows = data2parquet::readback::file_rows(&files[0]).unwrap();
    assert_eq!(rows[0]["_event_time"], "2026-05-06T07:08:09.000000000Z");
    assert_eq!(rows[0]["n"], "1");
    assert_eq!(rows[1]["n"], "two");
    assert_eq!(rows[1]["extra"], json!([1.5]));
}

/// DuckDB, where installed, on the same input: it either rejects the file or (with
/// `ignore_errors`) drops the late key and the values that do not fit its sampled types.
#[test]
fn duckdb_drops_what_we_keep() {
    if !have_duckdb("duckdb_drops_what_we_keep") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, heterogeneous()).unwrap();
    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
out = {}
try:
    con.execute("select * from read_json_auto(?)", [sys.argv[1]]).fetchall()
    out["strict"] = "ok"
except Exception as e:
    out["strict"] = str(e).splitlines()[0]
rel = "read_json_auto(?, ignore_errors=true)"
out["columns"] = [r[0] for r in con.execute(f"describe select * from {rel}", [sys.argv[1]]).fetchall()]
out["v"] = {str(i): v for i, v in con.execute(f"select id, v::varchar from {rel} where id in (26001, 27001)", [sys.argv[1]]).fetchall()}
print(json.dumps(out))
"#;
    let o = run(Command::new("python3").arg("-c").arg(script).arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    let duck: Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!("duckdb: {duck}");
    let out = dir.path().join("ours.parquet");
    let ours = run(Command::new(bin("json2parquet"))
        .args(["--record-type", "dynamic", "-q", "-o"])
        .arg(&out)
        .arg(&input));
    assert!(ours.status.success(), "{}", stderr(&ours));
    let rows = data2parquet::readback::file_rows(&out).unwrap();
    // DuckDB refuses the whole file without ignore_errors...
    assert_ne!(duck["strict"], "ok", "{duck}");
    // ...and with it drops `late` and the values that did not fit the sample.
    let cols = duck["columns"].as_array().unwrap();
    assert!(!cols.contains(&json!("late")), "{duck}");
    assert_ne!(duck["v"]["26001"], "26001.5", "{duck}");
    assert_ne!(duck["v"]["27001"], "s27001", "{duck}");
    // We keep all of it.
    assert_eq!(rows[26_001]["v"], "26001.5");
    assert_eq!(rows[27_001]["v"], "s27001");
    assert_eq!(rows.iter().filter(|r| r["late"].is_string()).count(), 5_000);
}

/// Records as Fluent Bit's kubernetes filter makes them, partitioned through the plugin
/// by nested fields, one written as a record accessor and one dotted: each record lands
/// in its namespace's and app's folder, a flattened dotted key wins over the nested
/// one, and a record without them takes upstream's `dynamic_<field>` default.
#[test]
fn plugin_partitions_by_nested_kubernetes_fields() {
    let lines = [
        r#"{"log": "a", "kubernetes": {"namespace_name": "prod", "pod_name": "web-1", "labels": {"app": "web"}}}"#,
        r#"{"log": "b", "kubernetes": {"namespace_name": "dev", "labels": {"app": "api"}}}"#,
        r#"{"log": "c", "kubernetes": {"namespace_name": "prod", "labels": {"app": "web"}}}"#,
        r#"{"log": "d", "kubernetes.namespace_name": "flat", "kubernetes": {"namespace_name": "x"}}"#,
        r#"{"log": "e"}"#,
    ];
    let (_dir, out) = run_dynamic_lines(
        &lines,
        &[
            (
                "PartitionFields",
                "$kubernetes['namespace_name'],kubernetes.labels.app",
            ),
            (
                "PartitionPath",
                "ns={$kubernetes['namespace_name']}/app={kubernetes.labels.app}",
            ),
        ],
    );
    let mut by_folder: Vec<(String, Vec<String>)> = data2parquet::readback::parquet_files(&out)
        .into_iter()
        .map(|f| {
            let folder = f.parent().unwrap().strip_prefix(&out).unwrap();
            let logs = data2parquet::readback::file_rows(&f)
                .unwrap()
                .iter()
                .map(|row| row["log"].as_str().unwrap().to_string())
                .collect();
            (folder.display().to_string(), logs)
        })
        .collect();
    by_folder.sort();
    let expect =
        |f: &str, logs: &[&str]| (f.to_string(), logs.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        by_folder,
        vec![
            expect("ns=dev/app=api", &["b"]),
            expect(
                "ns=dynamic_kubernetes.namespace_name/app=dynamic_kubernetes.labels.app",
                &["e"]
            ),
            expect("ns=flat/app=dynamic_kubernetes.labels.app", &["d"]),
            expect("ns=prod/app=web", &["a", "c"]),
        ]
    );
    // The nested map itself is kept whole in the rows.
    let web = data2parquet::readback::parquet_files(&out.join("ns=prod/app=web"));
    let rows = data2parquet::readback::file_rows(&web[0]).unwrap();
    assert_eq!(rows[0]["kubernetes"]["pod_name"], "web-1");
    assert_eq!(rows[0]["kubernetes"]["labels"]["app"], "web");
}

#[test]
fn plugin_drops_and_masks_nested_kubernetes_fields() {
    let lines = [
        r#"{"log": "a", "token": "t1", "kubernetes": {"pod_name": "web-1", "annotations": {"checksum/config": "abc"}, "labels": {"app": "web", "secret_hash": "s1", "app.kubernetes.io/name": "web"}}}"#,
        r#"{"log": "b", "kubernetes": {"pod_name": "api-1", "annotations": {"x": "y"}, "labels": {"app": "api"}}}"#,
        r#"{"log": "c", "kubernetes.annotations": "flat"}"#,
    ];
    let (_dir, out) = run_dynamic_lines(
        &lines,
        &[
            ("IgnoredFields", "kubernetes.annotations"),
            (
                "MaskFields",
                "token,$kubernetes['labels']['secret_hash'],$kubernetes['labels']['app.kubernetes.io/name']",
            ),
        ],
    );
    let files = data2parquet::readback::parquet_files(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    let mut rows = data2parquet::readback::file_rows(&files[0]).unwrap();
    rows.sort_by_key(|r| r["log"].as_str().unwrap().to_string());
    let kept: Vec<(Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            assert!(r.get("kubernetes.annotations").is_none(), "{r:?}");
            (
                r["log"].clone(),
                r["token"].clone(),
                r["kubernetes"].clone(),
            )
        })
        .collect();
    // The nested maps are kept without the dropped field, with the masked one as `*`;
    // the dotted entry also drops a top-level key of that name.
    assert_eq!(
        kept,
        vec![
            (
                json!("a"),
                json!("*"),
                json!({"pod_name": "web-1", "labels": {"app": "web", "secret_hash": "*", "app.kubernetes.io/name": "*"}})
            ),
            (
                json!("b"),
                Value::Null,
                json!({"pod_name": "api-1", "labels": {"app": "api", "secret_hash": null, "app.kubernetes.io/name": null}})
            ),
            (json!("c"), Value::Null, Value::Null),
        ]
    );

    // An entry that is not a record accessor stops the plugin at init, naming the key.
    init_fails_saying(
        &out,
        ("MaskFields", "$kubernetes['labels'"),
        &["MaskFields", "record accessor"],
    );
}

/// Starts the plugin with dynamic records and one bad `setting`: init must fail with a
/// log line holding every one of `words`.
fn init_fails_saying(out: &Path, setting: (&str, &str), words: &[&str]) {
    let r = run_host(&host_scenario(host_props(out, &[setting]), &[]), &[]);
    assert_eq!(r["init"][0]["ok"], false, "{r}");
    let logs = logs_text(&r);
    assert!(
        logs.iter()
            .any(|(_, m)| words.iter().all(|w| m.contains(w))),
        "{logs:?}"
    );
}

/// `PartitionTimezone`: folders are cut in the zone's local time, daylight saving time
/// included, while the event times in the files stay UTC.
#[test]
fn plugin_cuts_record_time_folders_in_the_partition_timezone() {
    let dir = tempfile::tempdir().unwrap();
    // 2026-01-01T23:30Z is 00:30 the next day in Berlin (+01:00); 2026-07-01T21:30Z
    // is 23:30 the same day (+02:00).
    let winter = write_chunk(
        dir.path(),
        "winter.chunk",
        &chunk_from_ndjson(&[r#"{"log": "w"}"#], ChunkFormat::V5, 1_767_310_200),
    );
    let summer = write_chunk(
        dir.path(),
        "summer.chunk",
        &chunk_from_ndjson(&[r#"{"log": "s"}"#], ChunkFormat::V5, 1_782_941_400),
    );
    let out = dir.path().join("out");
    let props = host_props(
        &out,
        &[
            ("PartitionTime", "record"),
            ("PartitionTimezone", "Europe/Berlin"),
            ("PartitionPath", "month={%m}/day={%d}/hour={%H}"),
        ],
    );
    let r = run_host(&host_scenario(props, &[winter, summer]), &[]);
    assert_eq!(codes(&r, 0), vec![1, 1]);
    let mut found: Vec<(String, String, Value)> = data2parquet::readback::parquet_files(&out)
        .into_iter()
        .flat_map(|f| {
            let folder = f
                .parent()
                .unwrap()
                .strip_prefix(&out)
                .unwrap()
                .display()
                .to_string();
            data2parquet::readback::file_rows(&f)
                .unwrap()
                .into_iter()
                .map(move |row| {
                    (
                        folder.clone(),
                        row["log"].to_string(),
                        row["_event_time"].clone(),
                    )
                })
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        vec![
            (
                "month=01/day=02/hour=00".to_string(),
                "\"w\"".to_string(),
                json!("2026-01-01T23:30:00.000000000Z")
            ),
            (
                "month=07/day=01/hour=23".to_string(),
                "\"s\"".to_string(),
                json!("2026-07-01T21:30:00.000000000Z")
            ),
        ]
    );

    // A zone that does not exist stops the plugin at init, naming the key.
    init_fails_saying(
        &out,
        ("PartitionTimezone", "Mars/Olympus"),
        &["PartitionTimezone", "Mars/Olympus"],
    );
}
