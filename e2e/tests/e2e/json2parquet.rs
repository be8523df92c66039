//! json2parquet end to end: inputs in every layout, partitioned and single-file output,
//! the bad-input corpus with its DLQ entries, path escapes, exit codes and config.

use crate::common::*;
use data2parquet::config::Config;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const CFG: &str = r#"{"buffer_size": 400, "flush_interval": 3600, "writer_fsync": false}"#;

fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn partitioned_round_trip_matches_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let text = generate(11, 3000);
    write(&input, &text);
    write(&dir.path().join("cfg.json"), CFG);
    let out = dir.path().join("out");
    let o = json2parquet_out_dir(&dir.path().join("cfg.json"), &out, &input);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("3000 records read"), "{}", stderr(&o));

    let cfg = Config::from_json_str(CFG).unwrap();
    let expected = expected_records(&cfg, &text);
    assert_eq!(expected.len(), 3000);
    let rows = read_dir_rows(&out);
    assert_eq!(rows.len(), 3000, "every record written exactly once");
    let mut want: HashMap<String, (String, Map<String, Value>)> = expected
        .iter()
        .map(|(k, r)| {
            let row = expected_row(r);
            (extra(&row, "id").unwrap().to_string(), (k.clone(), row))
        })
        .collect();
    let mut per_file: HashMap<&Path, usize> = HashMap::new();
    for (file, row) in &rows {
        let id = extra(row, "id").unwrap().to_string();
        let (key, exp) = want
            .remove(&id)
            .unwrap_or_else(|| panic!("unexpected or duplicate id {id}"));
        assert_eq!(row, &exp, "row {id} differs");
        // The file is in its key's partition and named after the key.
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            name.ends_with(&format!("-{key}.parquet")),
            "{name} vs {key}"
        );
        let cap = key.split(':').next().unwrap();
        let rel = file.strip_prefix(&out).unwrap().to_str().unwrap();
        assert!(rel.starts_with(&format!("capability={cap}/year=")), "{rel}");
        *per_file.entry(file.as_path()).or_default() += 1;
    }
    assert!(want.is_empty());
    assert!(
        per_file.values().all(|&n| n <= 400),
        "BufferSize caps rows per file"
    );

    // Spot checks of the mapping rules on real output.
    let any = &rows[0].1;
    assert!(
        any["http-response"].is_string(),
        "numbers land as JSON text"
    );
    assert!(any["args"].get("env").is_some(), "env goes to args");
    assert!(!any["trace-ip"].as_array().unwrap().is_empty());
}

/// A partition field that MaskFields hides is said at start: otherwise the only sign
/// is that every file lands in one `capability=*` folder.
#[test]
fn a_masked_partition_field_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    write(&input, generate(13, 200));
    write(
        &dir.path().join("cfg.json"),
        r#"{"mask_fields": "business-capability", "writer_fsync": false}"#,
    );
    let out = dir.path().join("out");
    let o = json2parquet_out_dir(&dir.path().join("cfg.json"), &out, &input);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("PartitionFields `business-capability` is masked by MaskFields: every record's key has `*` there"),
        "{log}"
    );
    let rows = read_dir_rows(&out);
    assert_eq!(rows.len(), 200);
    for (file, row) in &rows {
        let rel = file.strip_prefix(&out).unwrap().to_str().unwrap();
        assert!(rel.starts_with("capability=*/"), "{rel}");
        assert_eq!(row["business-capability"], "*");
    }
}

/// A crash in the middle of a write leaves its hidden temporary file; the next start
/// removes the ones older than any write in progress, in any folder under the output,
/// and leaves younger ones (another process may be writing them) and other files.
#[test]
fn a_start_removes_the_temporary_files_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let text = generate(14, 300);
    write(&input, &text);
    write(&dir.path().join("cfg.json"), CFG);
    let out = dir.path().join("out");
    let deep = out.join("capability=x/year=2026/month=11");
    std::fs::create_dir_all(&deep).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let stale = deep.join(format!(
        ".01KB2S5Q8M3N4P5R6S7T8V9W0A-x.parquet.{}.tmp",
        ulid::Ulid::from_datetime(old)
    ));
    let young = deep.join(format!(".y.parquet.{}.tmp", ulid::Ulid::generate()));
    let other = deep.join(".notes.tmp");
    for p in [&stale, &young, &other] {
        write(p, b"PAR1 half a file");
    }
    let o = json2parquet_out_dir(&dir.path().join("cfg.json"), &out, &input);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "removed 1 temporary files left by interrupted writes: {}",
            stale.display()
        )),
        "{log}"
    );
    assert!(!stale.exists());
    assert!(young.exists() && other.exists());
    // The run's own files are written and whole, with no temporary file left behind.
    let rows = read_dir_rows(&out);
    assert_eq!(rows.len(), 300);
    let ids: std::collections::HashSet<String> = rows
        .iter()
        .map(|(_, r)| extra(r, "id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 300);
    let tmps = walk(&out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .count();
    assert_eq!(tmps, 2, "the young and the foreign file only");
}

/// The summary counts every flush of the run: here most files come from size flushes
/// long before the final one.
#[test]
fn summary_counts_every_flush() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    write(&input, generate(12, 20000));
    write(
        &dir.path().join("cfg.json"),
        r#"{"buffer_size": 100, "flush_interval": 3600, "writer_fsync": false}"#,
    );
    let out = dir.path().join("out");
    let o = json2parquet_out_dir(&dir.path().join("cfg.json"), &out, &input);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let rows = read_dir_rows(&out);
    let files: std::collections::HashSet<_> = rows.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(rows.len(), 20000);
    assert!(files.len() >= 200, "{} files", files.len());
    assert!(
        log.contains(&format!("wrote 20000 rows to {} file(s)", files.len())),
        "{log}"
    );
}

#[test]
fn single_file_from_every_layout_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(12, 500);
    let lines: Vec<&str> = text.lines().collect();
    let expected = expected_rows_in_order(&text);
    // NDJSON, gzip-compressed
    let gz = dir.path().join("in.ndjson.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    // a pretty JSON array and the upstream {"logs": [...]} document
    let arr = dir.path().join("in.json");
    write(&arr, format!("[\n  {}\n]\n", lines.join(",\n  ")));
    let logs = dir.path().join("logs.json");
    write(
        &logs,
        format!("{{\n \"logs\": [\n{}\n ]\n}}", lines.join(",\n")),
    );
    for (i, input) in [&gz, &arr, &logs].into_iter().enumerate() {
        let out = dir.path().join(format!("out{i}.parquet"));
        let o = run(Command::new(bin("json2parquet"))
            .arg("-o")
            .arg(&out)
            .arg(input));
        assert!(o.status.success(), "{input:?}: {}", stderr(&o));
        let rows = data2parquet::readback::file_rows(&out).unwrap();
        assert_eq!(rows, expected, "{input:?}");
    }
    // stdin
    let out = dir.path().join("stdin.parquet");
    let mut child = Command::new(bin("json2parquet"))
        .arg("-o")
        .arg(&out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(data2parquet::readback::file_rows(&out).unwrap(), expected);
}

/// A backfill names folders: every file under them is read in path order, gzip and
/// zstd (several frames) found by their first bytes whatever their names, while hidden
/// and `_` names, Parquet files and this run's own DLQ file are left alone.
#[test]
fn folders_of_compressed_archives_are_read_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(14, 300);
    let lines: Vec<&str> = text.lines().collect();
    let part = |r: std::ops::Range<usize>| lines[r].join("\n") + "\n";
    let input = dir.path().join("archive");
    std::fs::create_dir_all(input.join("2025/11/28")).unwrap();
    std::fs::create_dir_all(input.join("_dlq")).unwrap();
    // 2025/11/27-a: plain; 2025/11/28/object: zstd in two frames; 2025/11/29.gz: gzip
    write(&input.join("2025/11/27-a"), part(0..100));
    let mut zst = zstd::encode_all(part(100..150).as_bytes(), 3).unwrap();
    zst.extend(zstd::encode_all(part(150..200).as_bytes(), 3).unwrap());
    write(&input.join("2025/11/28/object"), zst);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(part(200..300).as_bytes()).unwrap();
    write(&input.join("2025/11/29.gz"), gz.finish().unwrap());
    // Records that must not be read: they would add rows.
    for junk in [
        ".object.tmp",
        "_SUCCESS",
        "_dlq/old.ndjson",
        "2025/.partial",
    ] {
        write(&input.join(junk), part(0..5));
    }
    write(&input.join("2025/old.parquet"), b"PAR1 not really");
    let dlq = input.join("run.dlq.ndjson");
    write(&dlq, part(0..5));

    let out = dir.path().join("out.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .arg("-o")
        .arg(&out)
        .arg("--dlq")
        .arg(&dlq)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("300 records read"), "{}", stderr(&o));
    let expected = expected_rows_in_order(&text);
    assert_eq!(data2parquet::readback::file_rows(&out).unwrap(), expected);

    // A folder with nothing to read is an error that names it.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("_temporary")).unwrap();
    let o = run(Command::new(bin("json2parquet"))
        .arg("-o")
        .arg(dir.path().join("none.parquet"))
        .arg(&empty));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("no input files under {}", empty.display())),
        "{}",
        stderr(&o)
    );
}

/// The bad-input corpus: each case and the DLQ entry it must produce.
#[test]
fn bad_input_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.ndjson");
    let big = "x".repeat(10 * 1024 * 1024);
    let mut data: Vec<u8> = Vec::new();
    let mut line = |s: &[u8]| {
        data.extend_from_slice(s);
        data.push(b'\n');
    };
    line(br#"{"message":"good one","business-capability":"c"}"#); // 1
    line(br#"{"message": "truncated"#); // 2: DLQ
    line(br#"{"message": 5, "audit": "maybe", "time": 17, "args": "notamap", "tags": "t", "level": null}"#); // 3: ok
    line(b"{\"message\": \"bad \xff\xfe utf8\"}"); // 4: DLQ
    line(format!(r#"{{"message":"{big}"}}"#).as_bytes()); // 5: ok, 10 MB
    line(br#"{"message":"escape","business-capability":"../../etc","business-domain":"a/b","business-service":"..","application-service":"\u0000x"}"#); // 6: ok
    line(b"[1,2]"); // 7: DLQ
    line(br#"{"message":"x"} trailing"#); // 8: DLQ
    line(b"   "); // blank: skipped
    line(br#""just a string""#); // 10: DLQ
    write(&input, &data);
    let out = dir.path().join("out");
    let o = run(Command::new(bin("json2parquet"))
        .arg("--out-dir")
        .arg(&out)
        .env("D2P_WRITER_FSYNC", "false")
        .arg(&input));
    assert!(
        o.status.success(),
        "bad records do not fail the run: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("rejected 5"), "{}", stderr(&o));

    let dlq = read_dlq(&dir.path().join("out.dlq.ndjson"));
    let got: Vec<(String, String)> = dlq
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let name = input.display().to_string();
    let want = [
        (2, "truncated"),
        (4, "not valid UTF-8"),
        (7, "expected a JSON object / map, found array"),
        (8, "unexpected data after the value"),
        (10, "found string"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((src, reason), (n, frag)) in got.iter().zip(want) {
        assert_eq!(src, &format!("{name}:line {n}"));
        assert!(reason.contains(frag), "line {n}: {reason}");
    }
    assert_eq!(dlq[0]["raw"], r#"{"message": "truncated"#);
    assert!(
        dlq[1].get("raw_base64").is_some(),
        "non-UTF-8 input kept as base64"
    );

    let rows = read_dir_rows(&out);
    let mut msgs: Vec<&str> = rows
        .iter()
        .map(|(_, r)| r["message"].as_str().unwrap())
        .collect();
    msgs.sort_by_key(|m| m.len());
    assert_eq!(msgs.len(), 4);
    assert_eq!(&msgs[..3], ["5", "escape", "good one"]);
    assert_eq!(
        msgs[3].len(),
        big.len(),
        "the 10 MB record is written whole"
    );
    let wrong = rows
        .iter()
        .map(|(_, r)| r)
        .find(|r| r["message"] == "5")
        .unwrap();
    assert_eq!(wrong["time"], "17");
    assert_eq!(wrong["level"], "info");
    assert_eq!(wrong["audit"], Value::Null);
    assert_eq!(extra(wrong, "audit"), Some("maybe"));
    assert_eq!(extra(wrong, "args"), Some("notamap"));
    assert_eq!(wrong["tags"], serde_json::json!(["t"]));

    // Path escapes: every file stays under the output folder, with escaped components.
    for (f, r) in &rows {
        assert!(f.starts_with(&out), "{f:?}");
        if r["message"] == "escape" {
            let rel = f.strip_prefix(&out).unwrap().to_str().unwrap();
            assert!(rel.starts_with("capability=..%2F..%2Fetc/year="), "{rel}");
            assert!(
                rel.ends_with("-..%2F..%2Fetc:a%2Fb:..:%00x.parquet"),
                "{rel}"
            );
            assert_eq!(
                r["business-capability"], "../../etc",
                "the column keeps the raw value"
            );
        }
    }
    let mut stray = Vec::new();
    for e in walk(dir.path()) {
        if !e.starts_with(&out) && e != input && e != dir.path().join("out.dlq.ndjson") {
            stray.push(e);
        }
    }
    assert!(
        stray.is_empty(),
        "files outside the output folder: {stray:?}"
    );
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.ndjson");
    write(&empty, "");
    let o = run(Command::new(bin("json2parquet"))
        .arg("-o")
        .arg(dir.path().join("e.parquet"))
        .arg(&empty));
    assert_eq!(o.status.code(), Some(1), "nothing read: {}", stderr(&o));
    assert!(
        !dir.path().join("e.parquet").exists(),
        "no empty file left behind"
    );

    let mixed = dir.path().join("mixed.ndjson");
    write(&mixed, "{\"message\":\"a\"}\n{bad\n");
    let out = dir.path().join("m.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .arg("-o")
        .arg(&out)
        .arg(&mixed));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(Command::new(bin("json2parquet"))
        .arg("--fail-on-error")
        .arg("-o")
        .arg(&out)
        .arg(&mixed));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        data2parquet::readback::file_rows(&out).unwrap().len(),
        1,
        "good records still written"
    );

    let o = run(Command::new(bin("json2parquet"))
        .arg("-o")
        .arg(dir.path().join("x.parquet"))
        .arg(dir.path().join("missing.ndjson"))
        .arg(&mixed));
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("missing.ndjson"), "{}", stderr(&o));
}

#[test]
fn config_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    write(&input, generate(3, 50));
    let cfg = dir.path().join("c.json");
    write(
        &cfg,
        r#"{"writer_compression_type": "gzip", "_comment": "ignored"}"#,
    );
    let codec_of = |p: &Path| -> String {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let r = SerializedFileReader::new(std::fs::File::open(p).unwrap()).unwrap();
        format!("{:?}", r.metadata().row_group(0).column(0).compression())
    };
    let out = dir.path().join("a.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(codec_of(&out).starts_with("GZIP"), "{}", codec_of(&out));
    let o = run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(&cfg)
        .env("D2P_WRITER_COMPRESSION_TYPE", "zstd")
        .arg("-o")
        .arg(&out)
        .arg(&input));
    assert!(o.status.success());
    assert!(
        codec_of(&out).starts_with("ZSTD"),
        "environment overrides the file"
    );
    let o = run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(&cfg)
        .env("D2P_WRITER_COMPRESSION_TYPE", "zstd")
        .args(["--compression", "none", "-o"])
        .arg(&out)
        .arg(&input));
    assert!(o.status.success());
    assert_eq!(
        codec_of(&out),
        "UNCOMPRESSED",
        "flags override the environment"
    );

    write(&cfg, r#"{"bufer_size": 10}"#);
    let o = run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(&input));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown configuration key `bufer_size`"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("BufferSize"),
        "suggests the right key: {}",
        stderr(&o)
    );
    let o = run(Command::new(bin("json2parquet"))
        .env("D2P_BUFFER_TYPE", "disk")
        .arg("-o")
        .arg(&out)
        .arg(&input));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("BufferType") && stderr(&o).contains("redis"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dead_letters_can_be_re_driven() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let big = format!(r#"{{"message":"{}","id":"big"}}"#, "z".repeat(500));
    write(
        &input,
        format!("{{\"message\":\"small\",\"id\":\"s\"}}\n{big}\n"),
    );
    let out = dir.path().join("first.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .env("D2P_MAX_RECORD_BYTES", "100")
        .arg("-o")
        .arg(&out)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    let dlq = dir.path().join("first.dlq.ndjson");
    let entries = read_dlq(&dlq);
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap()
            .contains("larger than the limit")
    );
    // With the limit raised, the dead letter goes through.
    let again = dir.path().join("again.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .args(["--input-format", "dlq", "-o"])
        .arg(&again)
        .arg(&dlq));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = data2parquet::readback::file_rows(&again).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(extra(&rows[0], "id"), Some("big"));
    assert_eq!(rows[0]["message"].as_str().unwrap().len(), 500);
}

/// `--input-format otlp`: a file of OTLP/JSON logs requests, one per line, as the
/// OpenTelemetry collector's file exporter writes them, becomes rows (dynamic records
/// here, with `-o`); a bad log record is dead-lettered under its file, line and place
/// in the request, a line that is not a request whole, and the good records are kept.
#[test]
fn otlp_json_lines_are_backfilled() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("logs.otlp.jsonl");
    let rec = |i: u64, svc: &str| {
        serde_json::json!({
            "timeUnixNano": format!("{}", 1_764_220_800_000_000_000u64 + i * 1_000_000_000),
            "severityText": "INFO", "body": {"stringValue": format!("{svc} {i}")},
            "attributes": [{"key": "n", "value": {"intValue": format!("{i}")}}]
        })
    };
    let request = |svc: &str, recs: Vec<Value>| {
        serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
            "scopeLogs": [{"logRecords": recs}]}]})
        .to_string()
    };
    let text = format!(
        "{}\nnot a request\n{}\n",
        request("a", vec![rec(0, "a"), serde_json::json!(7), rec(1, "a")]),
        request("b", vec![rec(2, "b")])
    );
    write(&input, text);
    let out = dir.path().join("out.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .args([
            "--record-type",
            "dynamic",
            "--input-format",
            "otlp",
            "-q",
            "-o",
        ])
        .arg(&out)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = data2parquet::readback::file_rows(&out)
        .unwrap()
        .into_iter()
        .map(|r| {
            serde_json::json!([
                r["message"],
                r["service.name"],
                r["n"],
                r["level"],
                r["time"]
            ])
        })
        .collect();
    let want: Vec<Value> = [("a 0", "a", 0), ("a 1", "a", 1), ("b 2", "b", 2)]
        .iter()
        .map(|(m, s, n)| {
            serde_json::json!([m, s, n, "INFO", format!("2025-11-27T05:20:0{n}.000000000Z")])
        })
        .collect();
    assert_eq!(rows, want);
    let dlq = read_dlq(&dir.path().join("out.dlq.ndjson"));
    let sources: Vec<&str> = dlq.iter().map(|e| e["source"].as_str().unwrap()).collect();
    assert_eq!(sources.len(), 2, "{dlq:?}");
    assert!(
        sources[0].ends_with("logs.otlp.jsonl:line 1 resourceLogs[0].scopeLogs[0].logRecords[1]"),
        "{sources:?}"
    );
    assert!(
        sources[1].ends_with("logs.otlp.jsonl:line 2"),
        "{sources:?}"
    );
    assert!(dlq[1]["reason"].as_str().unwrap().contains("not OTLP/JSON"));
}

/// Columns written without statistics or a dictionary (`WriterStatisticsExclude`,
/// `WriterDictionaryExclude`) hold the same rows, for our reader and for DuckDB, and
/// DuckDB's own view of the file's metadata shows what was left out and what was kept.
#[test]
fn excluded_columns_read_back_the_same_in_duckdb() {
    if !have_duckdb("excluded_columns_read_back_the_same_in_duckdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let text = generate(21, 3_000);
    write(&input, &text);
    let out = dir.path().join("out.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .env(
            "D2P_WRITER_STATISTICS_EXCLUDE",
            "message,correlation-id,args",
        )
        .env(
            "D2P_WRITER_DICTIONARY_EXCLUDE",
            "message,correlation_id,tags",
        )
        .args(["-q", "-o"])
        .arg(&out)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = expected_rows_in_order(&text);
    assert_eq!(
        data2parquet::readback::file_rows(&out).unwrap(),
        expected,
        "our reader"
    );

    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
f = sys.argv[1]
rows = con.execute(
    "select message, tags, map_keys(args), map_values(args), level from read_parquet(?)", [f]
).fetchall()
meta = con.execute(
    "select path_in_schema, stats_min_value is not null, dictionary_page_offset is not null "
    "from parquet_metadata(?) where row_group_id = 0", [f]
).fetchall()
# Map values are BINARY unless MapValuesUTF8 is set; DuckDB reads them as BLOB.
print(json.dumps({"rows": rows, "meta": meta}, default=lambda b: b.decode()))
"#;
    let o = run(Command::new("python3").arg("-c").arg(script).arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let duck: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = duck["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (i, (got, want)) in rows.iter().zip(&expected).enumerate() {
        let args = want["args"].as_object().unwrap();
        let want = serde_json::json!([
            want["message"],
            want["tags"],
            args.keys().collect::<Vec<_>>(),
            args.values().collect::<Vec<_>>(),
            want["level"],
        ]);
        assert_eq!(got, &want, "row {i}");
    }
    // Leaf path -> (statistics, dictionary), as DuckDB reads them from the footer.
    let meta: HashMap<String, (bool, bool)> = duck["meta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m[0].as_str().unwrap().to_string(),
                (m[1].as_bool().unwrap(), m[2].as_bool().unwrap()),
            )
        })
        .collect();
    let leaf = |top: &str| -> Vec<(bool, bool)> {
        let v: Vec<_> = meta
            .iter()
            .filter(|(p, _)| p.split(", ").next() == Some(top))
            .map(|(_, &s)| s)
            .collect();
        assert!(!v.is_empty(), "no column {top} in {meta:?}");
        v
    };
    assert!(
        leaf("message").iter().all(|&s| s == (false, false)),
        "{meta:?}"
    );
    assert!(
        leaf("correlation-id").iter().all(|&s| s == (false, false)),
        "{meta:?}"
    );
    assert!(leaf("args").iter().all(|&(st, d)| !st && d), "{meta:?}");
    assert!(leaf("tags").iter().all(|&(st, d)| st && !d), "{meta:?}");
    assert!(leaf("level").iter().all(|&s| s == (true, true)), "{meta:?}");
}

/// `WriterBloomFilterColumns`: files written by the pipeline carry a bloom filter on the
/// named column only, and DuckDB uses it: a lookup of an id a file holds is never ruled
/// out, lookups of ids no file holds are ruled out nearly always, and the rows DuckDB
/// reads are ours.
#[test]
fn bloom_filters_let_duckdb_rule_out_files() {
    if !have_duckdb("bloom_filters_let_duckdb_rule_out_files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let text = generate(22, 2_000);
    write(&input, &text);
    let cfg_text = r#"{"buffer_size": 250, "flush_interval": 3600, "writer_fsync": false,
        "partition_fields": "cloud-provider", "partition_path": "cloud={cloud-provider}",
        "writer_bloom_filter_columns": "correlation_id"}"#;
    write(&dir.path().join("cfg.json"), cfg_text);
    let out = dir.path().join("out");
    let o = json2parquet_out_dir(&dir.path().join("cfg.json"), &out, &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = read_dir_rows(&out);
    assert_eq!(rows.len(), 2_000);
    // One id from each file, and the file it is in.
    let mut probes: HashMap<String, String> = HashMap::new();
    for (file, row) in &rows {
        let id = row["correlation-id"].as_str().unwrap().to_string();
        probes
            .entry(file.to_str().unwrap().to_string())
            .or_insert(id);
    }
    assert!(probes.len() >= 8, "{} files", probes.len());
    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
root, probes = sys.argv[1], json.loads(sys.argv[2])
files = root + "/**/*.parquet"
with_filter = sorted({r[0] for r in con.execute(
    "select path_in_schema from parquet_metadata(?) where bloom_filter_offset is not null", [files]
).fetchall()})
def excluded(f, v):
    return [r[0] for r in con.execute(
        "select bloom_filter_excludes from parquet_bloom_probe(?, 'correlation-id', ?)", [f, v]
    ).fetchall()]
present = sum(any(excluded(f, v)) for f, v in probes.items())
absent = sum(all(excluded(f, "no-such-id-%d" % i)) for f in probes for i in range(50))
found = [con.execute(
    'select count(*) from read_parquet(?) where "correlation-id" = ?', [files, v]
).fetchone()[0] for v in probes.values()]
print(json.dumps({"with_filter": with_filter, "present_excluded": present,
                  "absent_excluded": absent, "found": found}))
"#;
    let o = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .arg(serde_json::to_string(&probes).unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    let duck: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(duck["with_filter"], serde_json::json!(["correlation-id"]));
    assert_eq!(duck["present_excluded"], 0, "no false negatives");
    // 50 absent ids per file: at a false-positive rate of 5 % about 95 % of the
    // lookups are ruled out, and 80 % leaves room for chance.
    let absent = duck["absent_excluded"].as_u64().unwrap() as usize;
    assert!(
        absent * 10 >= probes.len() * 50 * 8,
        "{absent} of {} lookups ruled out",
        probes.len() * 50
    );
    let ids_once = rows
        .iter()
        .filter(|(_, r)| probes.values().any(|v| r["correlation-id"] == v.as_str()))
        .count();
    let found: usize = duck["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as usize)
        .sum();
    assert_eq!(found, ids_once, "DuckDB finds the rows our reader finds");
}

/// When a key's dynamic records grow a field or a wider type, the files from then on
/// have the wider schema; the log says so, field by field, and the earlier file keeps
/// its own schema.
#[test]
fn schema_changes_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    write(
        &input,
        "{\"a\": 1}\n{\"a\": 2}\n{\"a\": 2.5, \"b\": \"x\"}\n{\"a\": 3, \"b\": \"y\"}\n",
    );
    write(
        &dir.path().join("cfg.json"),
        r#"{"record_type": "dynamic", "buffer_size": 2, "partition_fields": "tag",
            "partition_path": "all", "writer_fsync": false}"#,
    );
    let out = dir.path().join("out");
    let o = run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(dir.path().join("cfg.json"))
        .args(["--threads", "1", "--out-dir"])
        .arg(&out)
        .arg(&input));
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("the schema of its files changed: `a` int64 → double; new field `b` (string)"),
        "{log}"
    );
    assert_eq!(
        log.matches("schema of its files changed").count(),
        1,
        "{log}"
    );
    let mut files: Vec<Vec<Value>> = data2parquet::readback::parquet_files(&out)
        .iter()
        .map(|f| {
            data2parquet::readback::file_rows(f)
                .unwrap()
                .into_iter()
                .map(|r| serde_json::json!([r["a"], r.get("b")]))
                .collect()
        })
        .collect();
    files.sort_by_key(|rows| rows[0][0].to_string());
    assert_eq!(
        files,
        [
            vec![serde_json::json!([1, null]), serde_json::json!([2, null])],
            vec![serde_json::json!([2.5, "x"]), serde_json::json!([3.0, "y"])],
        ]
    );
}

/// `DLQMaxBytes` in json2parquet: the DLQ file stops at the limit, the summary says how
/// many rejected records were not kept, and every good record is still written.
#[test]
fn the_dlq_file_stops_at_dlq_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("{{\"message\": \"bad {i} {}\n", "x".repeat(200)));
        text.push_str(&format!("{{\"message\": \"good {i}\"}}\n"));
    }
    write(&input, &text);
    let out = dir.path().join("out.parquet");
    let o = run(Command::new(bin("json2parquet"))
        .env("D2P_DLQ_MAX_BYTES", "4KiB")
        .args(["-q", "-o"])
        .arg(&out)
        .arg(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = data2parquet::readback::file_rows(&out).unwrap();
    let messages: Vec<&str> = rows
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("good {i}")).collect();
    assert_eq!(messages, want);
    let dlq = dir.path().join("out.dlq.ndjson");
    let kept = read_dlq(&dlq);
    assert!(std::fs::metadata(&dlq).unwrap().len() <= 4096);
    assert!(!kept.is_empty() && kept.len() < 100, "{}", kept.len());
    assert_eq!(kept[0]["source"], format!("{}:line 1", input.display()));
    let summary = stderr(&o);
    assert!(
        summary.contains("rejected 100")
            && summary.contains(&format!("{} of them not kept", 100 - kept.len())),
        "{summary}"
    );
}
