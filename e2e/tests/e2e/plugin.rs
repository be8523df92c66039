//! The Fluent Bit plugin, loaded by the test host exactly as Fluent Bit loads it, fed
//! real Fluent Bit 5.1.1 chunks and chunks in every event encoding.

use crate::common::*;
use data2parquet::config::Config;
use data2parquet::timeutil::format_rfc3339_nanos;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Flushes on Fluent Bit's 24 KiB coroutine stack.
fn scenario(instances: Vec<Value>, steps: Vec<Value>) -> Value {
    host_scenario(instances, steps, json!({"stack_kib": 24}))
}

fn flush(instance: usize, chunks: &[&Path], tag: &str) -> Value {
    json!({"flush": {"instance": instance, "chunks": chunks, "tag": tag}})
}

/// Expected rows for NDJSON records sent through Fluent Bit with `tag`, event i at
/// `base_secs` + i ms: the JSON mapping plus the `fluent-tag`/`fluent-time` args.
fn expected_flb(lines: &[&str], tag: &str, base_secs: u32) -> Vec<Map<String, Value>> {
    let cfg = Config::default();
    let text = lines.join("\n");
    expected_records(&cfg, &text)
        .into_iter()
        .enumerate()
        .map(|(i, (_, r))| {
            let mut row = expected_row(&r);
            let ns = (base_secs as i64 + (i / 1000) as i64) * 1_000_000_000
                + (i % 1000) as i64 * 1_000_000;
            let args = row.get_mut("args").unwrap().as_object_mut().unwrap();
            args.insert("fluent-tag".into(), json!(tag));
            args.insert("fluent-time".into(), json!(format_rfc3339_nanos(ns)));
            row
        })
        .collect()
}

fn rows_by_id(dir: &Path) -> HashMap<String, Map<String, Value>> {
    let mut m = HashMap::new();
    for (_, r) in read_dir_rows(dir) {
        let id = extra(&r, "id").expect("id").to_string();
        assert!(
            m.insert(id.clone(), r).is_none(),
            "record {id} written twice"
        );
    }
    m
}

#[test]
fn chunks_in_every_encoding_become_rows() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(21, 900);
    let lines: Vec<&str> = text.lines().collect();
    let mut chunks = Vec::new();
    for (i, (fmt, part)) in [ChunkFormat::V5, ChunkFormat::V2Array32, ChunkFormat::Legacy]
        .into_iter()
        .zip(lines.chunks(300))
        .enumerate()
    {
        chunks.push(write_chunk(
            dir.path(),
            &format!("c{i}.chunk"),
            &chunk_from_ndjson(part, fmt, 1_700_000_000 + i as u32 * 10),
        ));
    }
    let out = dir.path().join("out");
    let refs: Vec<&Path> = chunks.iter().map(|p| p.as_path()).collect();
    let r = run_host(
        &scenario(
            vec![instance_props(&out, &[("BufferSize", "128")])],
            vec![flush(0, &refs, "app.gen")],
        ),
        &[],
    );
    assert_eq!(r["init"][0]["ok"], true, "{r}");
    assert_eq!(codes(&r, 0), [FLB_OK; 3]);
    let got = rows_by_id(&out);
    assert_eq!(got.len(), 900);
    for (i, part) in lines.chunks(300).enumerate() {
        for want in expected_flb(part, "app.gen", 1_700_000_000 + i as u32 * 10) {
            let id = extra(&want, "id").unwrap();
            assert_eq!(got.get(id), Some(&want), "record {id}");
        }
    }
    for p in data2parquet::readback::parquet_files(&out) {
        assert!(data2parquet::readback::file_rows(&p).unwrap().len() <= 128);
    }
    assert_eq!(
        r["threads_after_unload"],
        json!(["flb-host"]),
        "no plugin thread survives"
    );
}

/// `FileMaxAge`: every flush of a key appends to its open file, so the plugin writes
/// one file per key at exit however many BufferSize flushes fed it, each file's rows
/// in the order they came.
#[test]
fn files_kept_open_collect_every_flush_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(27, 1500);
    let lines: Vec<&str> = text.lines().collect();
    let mut chunks = Vec::new();
    for (i, part) in lines.chunks(500).enumerate() {
        chunks.push(write_chunk(
            dir.path(),
            &format!("c{i}.chunk"),
            &chunk_from_ndjson(part, ChunkFormat::V5, 1_700_000_000 + i as u32 * 10),
        ));
    }
    let out = dir.path().join("out");
    let refs: Vec<&Path> = chunks.iter().map(|p| p.as_path()).collect();
    let r = run_host(
        &scenario(
            vec![instance_props(
                &out,
                &[
                    ("BufferSize", "5"),
                    ("FlushInterval", "3600"),
                    ("FileMaxAge", "1h"),
                    // No hour in the path, so a run across an hour still has one
                    // folder (and so one open file) per key.
                    ("PartitionPath", "capability={business-capability}"),
                ],
            )],
            vec![flush(0, &refs, "app.gen")],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), [FLB_OK; 3]);
    let got = rows_by_id(&out);
    assert_eq!(got.len(), 1500);
    for (i, part) in lines.chunks(500).enumerate() {
        for want in expected_flb(part, "app.gen", 1_700_000_000 + i as u32 * 10) {
            let id = extra(&want, "id").unwrap();
            assert_eq!(got.get(id), Some(&want), "record {id}");
        }
    }
    // One file per key, holding its records in input order.
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        let key = [
            "business-capability",
            "business-domain",
            "business-service",
            "application-service",
        ]
        .map(|k| v[k].as_str().unwrap_or("").to_string())
        .join(":");
        by_key
            .entry(key)
            .or_default()
            .push(v["id"].as_str().unwrap().to_string());
    }
    let files = data2parquet::readback::parquet_files(&out);
    assert_eq!(files.len(), by_key.len(), "one file per key");
    // The open files grew in their folders under hidden names, renamed when done.
    let hidden: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    assert!(
        by_key.values().filter(|ids| ids.len() > 10).count() > 3,
        "keys span several flushes: {:?}",
        by_key.values().map(Vec::len).collect::<Vec<_>>()
    );
    for f in &files {
        let ids: Vec<String> = data2parquet::readback::file_rows(f)
            .unwrap()
            .iter()
            .map(|r| extra(r, "id").unwrap().to_string())
            .collect();
        let name = f.file_name().unwrap().to_str().unwrap();
        let key = name[27..].strip_suffix(".parquet").unwrap();
        assert_eq!(by_key.get(key), Some(&ids), "{name}");
    }
}

/// Real chunks captured from Fluent Bit 5.1.1 (`tail` of varied.ndjson): the msgpack
/// path must give exactly what the JSON path gives for the same records.
#[test]
fn real_fluent_bit_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures().join("flb-5.1.1");
    let out = dir.path().join("out");
    let r = run_host(
        &scenario(
            vec![instance_props(&out, &[("BufferSize", "1000")])],
            vec![
                flush(0, &[&fx.join("varied.chunk")], "app.varied"),
                flush(0, &[&fx.join("bulk-2mb.chunk")], "app.bulk"),
                flush(
                    0,
                    &[
                        &fx.join("dummy-metadata.chunk"),
                        &fx.join("dummy-metadata-single.chunk"),
                    ],
                    "meta.test",
                ),
            ],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), [FLB_OK]);
    assert_eq!(codes(&r, 1), [FLB_OK]);
    assert_eq!(codes(&r, 2), [FLB_OK, FLB_OK]);
    let rows: Vec<Map<String, Value>> = read_dir_rows(&out).into_iter().map(|(_, r)| r).collect();
    let tagged = |t: &str| -> Vec<&Map<String, Value>> {
        rows.iter()
            .filter(|r| r["args"]["fluent-tag"] == t)
            .collect()
    };

    // varied: the same 120 records as varied.ndjson, decoded from JSON.
    let ndjson = std::fs::read_to_string(fx.join("varied.ndjson")).unwrap();
    let want: Vec<Map<String, Value>> = expected_records(&Config::default(), &ndjson)
        .into_iter()
        .map(|(_, r)| expected_row(&r))
        .collect();
    let mut got: Vec<Map<String, Value>> = tagged("app.varied").into_iter().cloned().collect();
    assert_eq!(got.len(), 120);
    for g in &mut got {
        let args = g.get_mut("args").unwrap().as_object_mut().unwrap();
        let t = args.remove("fluent-time").expect("fluent-time");
        assert!(data2parquet::timeutil::parse_timestamp_ns(t.as_str().unwrap()).is_some());
        args.remove("fluent-tag");
    }
    let key = |r: &Map<String, Value>| format!("{}|{}", r["time"], r["message"]);
    got.sort_by_key(key);
    let mut want = want;
    want.sort_by_key(key);
    assert_eq!(got, want);
    let first = want
        .iter()
        .find(|r| r["message"].as_str().unwrap().starts_with("event 0 "))
        .unwrap();
    assert_eq!(first["error"], "boom", "error is no longer lost");
    assert_eq!(
        first["trace-ip"],
        json!(["10.0.0.0"]),
        "ip goes to trace-ip"
    );
    assert_eq!(first["args"]["env"], "prod", "env goes to args");
    assert_eq!(extra(first, "big"), Some("9223372036854775807"));

    // bulk: 5086 records, seq 0..5085, each exactly once.
    let mut seqs: Vec<i64> = tagged("app.bulk")
        .iter()
        .map(|r| extra(r, "seq").unwrap().parse().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..5086).collect::<Vec<_>>());

    // metadata lands in args as meta-*.
    let meta = tagged("meta.test");
    assert_eq!(meta.len(), 4);
    for m in meta {
        assert_eq!(m["message"], "hi");
        assert_eq!(m["args"]["meta-mk"], "mv");
        assert_eq!(m["args"]["meta-num"], "5");
        assert_eq!(extra(m, "arr"), Some(r#"[1,"two"]"#));
        assert_eq!(extra(m, "neg"), Some("-7"));
    }
}

/// Hand-made chunks from the spec's byte-level descriptions.
#[test]
fn spec_fixtures() {
    let fx = fixtures();
    for name in [
        "spec-legacy-v1",
        "spec-v2-array32",
        "spec-v5-metadata",
        "spec-group-markers",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let chunk = fx.join(format!("{name}.chunk"));
        let r = run_host(
            &scenario(
                vec![instance_props(&out, &[])],
                vec![flush(0, &[&chunk], "spec")],
            ),
            &[],
        );
        assert_eq!(codes(&r, 0), [FLB_OK], "{name}: {r}");
        let expected: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(fx.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        let mut rows: Vec<Map<String, Value>> =
            read_dir_rows(&out).into_iter().map(|(_, r)| r).collect();
        rows.sort_by_key(|r| {
            r["args"]["fluent-time"].as_str().unwrap().to_string() + r["message"].as_str().unwrap()
        });
        assert_eq!(
            rows.len(),
            expected.len(),
            "{name}: group markers are skipped"
        );
        for e in &expected {
            let row = rows
                .iter()
                .find(|r| r["message"] == e["message"])
                .unwrap_or_else(|| panic!("{name}: {e}"));
            let ns = e["time_ns"].as_i64().unwrap();
            assert_eq!(row["level"], e["level"], "{name}");
            assert_eq!(
                row["time"],
                json!(format_rfc3339_nanos(ns)),
                "{name}: missing time is the event time"
            );
            assert_eq!(
                row["args"]["fluent-time"],
                json!(format_rfc3339_nanos(ns)),
                "{name}"
            );
            for (k, v) in e["meta"].as_object().unwrap() {
                assert_eq!(row["args"][format!("meta-{k}")], *v, "{name}");
            }
            if let Some(t) = e.get("tags") {
                assert_eq!(&row["tags"], t, "{name}");
            }
            if let Some(a) = e.get("args") {
                for (k, v) in a.as_object().unwrap() {
                    assert_eq!(row["args"][k], *v, "{name}");
                }
            }
        }
    }
}

#[test]
fn two_instances_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(22, 400);
    let lines: Vec<&str> = text.lines().collect();
    let a = write_chunk(
        dir.path(),
        "a.chunk",
        &chunk_from_ndjson(&lines[..200], ChunkFormat::V5, 1_700_000_000),
    );
    let b = write_chunk(
        dir.path(),
        "b.chunk",
        &chunk_from_ndjson(&lines[200..], ChunkFormat::V5, 1_700_000_100),
    );
    let (oa, ob) = (dir.path().join("a"), dir.path().join("b"));
    let r = run_host(
        &scenario(
            vec![
                instance_props(
                    &oa,
                    &[("WriterCompressionType", "gzip"), ("BufferSize", "50")],
                ),
                instance_props(
                    &ob,
                    &[
                        ("WriterCompressionType", "zstd"),
                        ("PartitionFields", "tag"),
                        ("PartitionPath", "t={tag}"),
                    ],
                ),
            ],
            vec![
                flush(0, &[&a], "tag.a"),
                flush(1, &[&b], "tag.b"),
                json!({"exit": 0}),
                flush(1, &[&b], "tag.b"),
            ],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), [FLB_OK]);
    assert_eq!(codes(&r, 1), [FLB_OK]);
    assert_eq!(
        codes(&r, 2),
        [FLB_OK],
        "instance 1 keeps working after instance 0 exited"
    );
    let ra = read_dir_rows(&oa);
    let rb = read_dir_rows(&ob);
    assert_eq!(ra.len(), 200);
    assert_eq!(rb.len(), 400, "chunk b was flushed twice into instance 1");
    assert!(ra.iter().all(|(_, r)| r["args"]["fluent-tag"] == "tag.a"));
    assert!(
        rb.iter()
            .all(|(f, r)| r["args"]["fluent-tag"] == "tag.b" && f.starts_with(ob.join("t=tag.b")))
    );
    let codec = |p: &Path| {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let r = SerializedFileReader::new(std::fs::File::open(p).unwrap()).unwrap();
        format!("{:?}", r.metadata().row_group(0).column(0).compression())
    };
    assert!(codec(&ra[0].0).starts_with("GZIP"));
    assert!(codec(&rb[0].0).starts_with("ZSTD"));
    assert!(
        ra.iter()
            .all(|(f, _)| data2parquet::readback::file_rows(f).unwrap().len() <= 50)
    );
}

/// Four workers flush at once, on long-lived threads as in Fluent Bit, and again with a
/// new thread for every flush, so that nothing the plugin keeps per thread is relied on.
/// The host reports how many threads ran flushes, so each mode is checked to be itself.
#[test]
fn concurrent_flushes_with_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (chunks, _) = v5_chunks(dir.path(), 23, 4000, 100);
    let refs: Vec<&Path> = chunks.iter().map(|p| p.as_path()).collect();
    for fresh in [false, true] {
        let out = dir.path().join(format!("out-{fresh}"));
        let mut sc = scenario(
            vec![instance_props(&out, &[("BufferSize", "333")])],
            vec![flush(0, &refs, "w")],
        );
        sc["workers"] = json!(4);
        sc["fresh_thread_per_flush"] = json!(fresh);
        let r = run_host(&sc, &[]);
        assert_eq!(codes(&r, 0), vec![FLB_OK; 40], "fresh threads: {fresh}");
        // Where the flushes ran: one thread per attempt, or the four workers.
        let threads = r["flushes"][0]["flush_threads"].as_u64().unwrap();
        if fresh {
            assert_eq!(threads, 40, "a new thread for every flush");
        } else {
            assert!((1..=4).contains(&threads), "{threads} flushing threads");
        }
        let got = rows_by_id(&out);
        assert_eq!(got.len(), 4000, "fresh threads: {fresh}");
    }
}

/// Six 500-record chunks into a buffer that holds about one, with no size or interval
/// flushes to free it: only the pressure flush that a full buffer triggers makes room.
/// Returns the scenario (for the retry settings), the output folder and its tempdir.
fn pressure_scenario(seed: u64, full_wait: Option<&str>) -> (Value, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (chunks, _) = v5_chunks(dir.path(), seed, 3000, 500);
    let refs: Vec<&Path> = chunks.iter().map(|p| p.as_path()).collect();
    let out = dir.path().join("out");
    let mut props = vec![
        ("BufferMaxBytes", "64KiB"),
        ("BufferSize", "1000000"),
        ("FlushInterval", "3600"),
    ];
    if let Some(w) = full_wait {
        props.push(("BufferFullWait", w));
    }
    let sc = scenario(
        vec![instance_props(&out, &props)],
        vec![flush(0, &refs, "bp")],
    );
    (sc, out, dir)
}

#[test]
fn a_full_buffer_makes_room_instead_of_answering_retry() {
    // Fluent Bit retries a chunk only after 6-11 s and, with its default Retry_Limit 1,
    // drops it after the second try: with the default BufferFullWait the same pressure
    // as in backpressure_retries_without_duplicates costs no FLB_RETRY at all.
    let (mut sc, out, _dir) = pressure_scenario(25, None);
    sc["retry_limit"] = json!(0);
    let r = run_host(&sc, &[]);
    assert_eq!(codes(&r, 0), vec![FLB_OK; 6], "{}", r["flushes"]);
    let got = rows_by_id(&out);
    assert_eq!(got.len(), 3000, "every record once, none twice");
}

#[test]
fn backpressure_retries_without_duplicates() {
    let (mut sc, out, _dir) = pressure_scenario(24, Some("0"));
    sc["retry_limit"] = json!(20);
    sc["retry_delay_ms"] = json!(50);
    let r = run_host(&sc, &[]);
    assert_eq!(codes(&r, 0), vec![FLB_OK; 6], "{}", r["flushes"]);
    let attempts: Vec<i64> = r["flushes"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_i64().unwrap())
        .collect();
    assert!(
        attempts.iter().any(|&a| a > 1),
        "some chunk got FLB_RETRY first: {attempts:?}"
    );
    let got = rows_by_id(&out);
    assert_eq!(got.len(), 3000, "every record once, none twice");
    assert!(logs_text(&r).iter().any(|(_, m)| m.contains("FLB_RETRY")));
}

#[test]
fn exit_writes_everything_pending() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(25, 1000);
    let lines: Vec<&str> = text.lines().collect();
    let c = write_chunk(
        dir.path(),
        "c.chunk",
        &chunk_from_ndjson(&lines, ChunkFormat::V5, 1_700_000_000),
    );
    let out = dir.path().join("out");
    let prom = dir.path().join("textfile").join("fb-out.prom");
    let r = run_host(
        &scenario(
            vec![instance_props(
                &out,
                &[
                    ("BufferSize", "1000000"),
                    ("FlushInterval", "3600"),
                    ("MetricsFile", prom.to_str().unwrap()),
                    ("MetricsKeys", "2"),
                ],
            )],
            vec![flush(0, &[&c], "x"), json!({"sleep_ms": 300})],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), [FLB_OK]);
    assert_eq!(rows_by_id(&out).len(), 1000);
    // The plugin's counters reach Prometheus through MetricsFile, final at exit.
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(
        metrics.contains("d2p_records_out_total{output=\"fb-out\"} 1000\n"),
        "{metrics}"
    );
    // MetricsKeys 2: two keys have series of their own, with their files' rows, and
    // the other keys' rows are summed under `_other`.
    let mut rows_of_key: HashMap<String, u64> = HashMap::new();
    for (file, _) in read_dir_rows(&out) {
        let name = file.file_name().unwrap().to_str().unwrap();
        let key = name[27..].strip_suffix(".parquet").unwrap().to_string();
        *rows_of_key.entry(key).or_default() += 1;
    }
    assert!(rows_of_key.len() > 3, "{rows_of_key:?}");
    let series: Vec<(String, u64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("d2p_key_rows_written_total{output=\"fb-out\",key=\""))
        .map(|l| {
            let (key, n) = l.split_once("\"} ").unwrap();
            (key.to_string(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(series.len(), 3, "{metrics}");
    assert_eq!(series[2].0, "_other");
    for (key, n) in &series[..2] {
        assert_eq!(rows_of_key.get(key), Some(n), "{key}");
    }
    assert_eq!(series.iter().map(|(_, n)| n).sum::<u64>(), 1000);
    assert!(
        logs_text(&r)
            .iter()
            .any(|(_, m)| m.contains("exit: wrote 1000 rows")),
        "{:?}",
        logs_text(&r)
    );
    assert_eq!(r["threads_after_unload"], json!(["flb-host"]));
}

/// Fluent Bit's `in_opentelemetry` puts an OTLP log record's resource and scope in a
/// group marker and its fields in the event's metadata. Through the plugin they become
/// the same rows as the same request sent to http-server's `/v1/logs`: the resource's
/// `service.name`, severity, trace id and attributes are kept, not only the body.
#[test]
fn in_opentelemetry_events_become_the_rows_of_the_otlp_route() {
    let dir = tempfile::tempdir().unwrap();
    let req = otlp_request_json(&["checkout", "payments"], 3, None);
    let settings = [
        ("RecordType", "dynamic"),
        ("PartitionFields", "service.name"),
        ("PartitionPath", "service={service.name}"),
        ("FlushInterval", "3600"),
        ("BufferSize", "100000"),
    ];
    let c = write_chunk(dir.path(), "otel.chunk", &in_opentelemetry_chunk(&req));
    let out = dir.path().join("out");
    let r = run_host(
        &scenario(
            vec![instance_props(&out, &settings)],
            vec![flush(0, &[&c], "otel")],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), [FLB_OK], "{r}");
    let s = HttpServer::start(json!({
        "record_type": "dynamic", "flush_interval": 3600, "buffer_size": 100000,
        "partition_fields": "service.name", "partition_path": "service={service.name}"
    }));
    let answer = http(
        "POST",
        &s.url("/v1/logs"),
        &[("Content-Type", "application/json")],
        Some(req.to_string().as_bytes()),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(http("POST", &s.url("/flush/"), &[], None).status, 200);
    let rows = |d: &Path| {
        let mut v: Vec<(String, String)> = read_dir_rows(d)
            .into_iter()
            .map(|(f, r)| {
                let rel = f.strip_prefix(d).unwrap().parent().unwrap();
                (rel.display().to_string(), Value::Object(r).to_string())
            })
            .collect();
        v.sort();
        v
    };
    let (ours, theirs) = (rows(&out), rows(&s.out()));
    assert_eq!(ours.len(), 6);
    assert_eq!(ours, theirs);
    let first: Value = serde_json::from_str(&ours[0].1).unwrap();
    assert_eq!(ours[0].0, "service=checkout");
    for (k, v) in [
        ("service.name", json!("checkout")),
        ("otel.scope.name", json!("app")),
        ("level", json!("INFO")),
        ("message", json!("checkout event 0")),
        ("trace_id", json!(format!("{:032x}", 1))),
        ("http.status_code", json!(200)),
        ("time", json!("2025-11-27T05:20:00.000000000Z")),
    ] {
        assert_eq!(first[k], v, "{k}: {first}");
    }
}

#[test]
fn panics_never_cross_the_ffi_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(26, 50);
    let lines: Vec<&str> = text.lines().collect();
    let c = write_chunk(
        dir.path(),
        "c.chunk",
        &chunk_from_ndjson(&lines, ChunkFormat::V5, 1_700_000_000),
    );
    for (fault, code) in [
        ("ffi-panic", FLB_RETRY),
        ("decode-panic", FLB_ERROR),
        ("convert-panic", FLB_OK),
    ] {
        let out = dir.path().join(fault);
        let dlq = dir.path().join(format!("{fault}-dlq"));
        let r = run_host(
            &scenario(
                vec![instance_props(&out, &[("DLQPath", dlq.to_str().unwrap())])],
                vec![flush(0, &[&c], "p")],
            ),
            &[("D2P_FAULT", fault)],
        );
        assert_eq!(codes(&r, 0), [code], "{fault}: {r}");
        let entries: Vec<Value> = std::fs::read_dir(&dlq)
            .map(|rd| rd.flatten().flat_map(|e| read_dlq(&e.path())).collect())
            .unwrap_or_default();
        match fault {
            "ffi-panic" => assert!(entries.is_empty()),
            "decode-panic" => {
                assert_eq!(entries.len(), 1, "the whole chunk is kept");
                assert!(entries[0]["reason"].as_str().unwrap().contains("panicked"));
            }
            _ => {
                assert_eq!(entries.len(), 50, "every record of the batch is kept");
                assert!(
                    entries[0]["reason"]
                        .as_str()
                        .unwrap()
                        .contains("conversion panicked")
                );
                assert!(data2parquet::readback::parquet_files(&out).is_empty());
            }
        }
    }
}

#[test]
fn bad_configuration_fails_init_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_host(
        &scenario(
            vec![instance_props(dir.path(), &[("BufferType", "disk")])],
            vec![],
        ),
        &[],
    );
    assert_eq!(r["init"][0]["ok"], false);
    let logs = logs_text(&r);
    assert!(
        logs.iter()
            .any(|(l, m)| *l == 1 && m.contains("BufferType") && m.contains("mem, memory, redis")),
        "{logs:?}"
    );
}

#[test]
fn malformed_bytes_keep_the_good_events() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(27, 20);
    let lines: Vec<&str> = text.lines().collect();
    let mut bytes = chunk_from_ndjson(&lines, ChunkFormat::V5, 1_700_000_000);
    let good_len = bytes.len();
    bytes.extend_from_slice(&chunk_from_ndjson(&lines[..1], ChunkFormat::V5, 1_700_000_000)[..30]);
    let c = write_chunk(dir.path(), "cut.chunk", &bytes);
    let junk = write_chunk(dir.path(), "junk.chunk", b"\xc1\xc1 not msgpack");
    let out = dir.path().join("out");
    let dlq = dir.path().join("dlq");
    let r = run_host(
        &scenario(
            vec![instance_props(&out, &[("DLQPath", dlq.to_str().unwrap())])],
            vec![flush(0, &[&c], "cut"), flush(0, &[&junk], "junk")],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), [FLB_OK], "good events stored");
    assert_eq!(
        codes(&r, 1),
        [FLB_ERROR],
        "nothing decodable: dropped after the DLQ"
    );
    assert_eq!(rows_by_id(&out).len(), 20);
    let entries: Vec<Value> = std::fs::read_dir(&dlq)
        .unwrap()
        .flatten()
        .flat_map(|e| read_dlq(&e.path()))
        .collect();
    assert_eq!(entries.len(), 2);
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("event 20: malformed msgpack"),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!(
            "the remaining {} bytes of the chunk cannot be decoded",
            bytes.len() - good_len
        )),
        "{reason}"
    );
    assert_eq!(entries[0]["source"], "chunk (tag cut)");
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .contains("reserved marker"),
        "{}",
        entries[1]
    );
}

#[test]
fn registration_fits_every_host_generation() {
    for alloc in ["zeroed48", "bytes40", "bytes32-canary"] {
        let dir = tempfile::tempdir().unwrap();
        let mut sc = scenario(vec![instance_props(dir.path(), &[])], vec![]);
        sc["def_alloc"] = json!(alloc);
        let r = run_host(&sc, &[]);
        assert!(r.get("load_error").is_none(), "{alloc}: {r}");
        assert_eq!(r["name"], "out_parquet");
        assert_eq!(r["init"][0]["ok"], true);
    }
}

#[test]
fn logging_follows_fluent_bit_levels_and_debug() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(28, 10);
    let lines: Vec<&str> = text.lines().collect();
    let c = write_chunk(
        dir.path(),
        "c.chunk",
        &chunk_from_ndjson(&lines, ChunkFormat::V5, 1_700_000_000),
    );
    let run_with = |level: i64, debug: &str| {
        let mut sc = scenario(
            vec![instance_props(
                &dir.path().join(format!("o{level}{debug}")),
                &[("Debug", debug)],
            )],
            vec![flush(0, &[&c], "l")],
        );
        sc["instances"][0]["log_level"] = json!(level);
        logs_text(&run_host(&sc, &[]))
    };
    let warn_only = run_with(2, "false");
    assert!(
        warn_only.is_empty(),
        "Log_Level warn hides info: {warn_only:?}"
    );
    let info = run_with(3, "false");
    assert!(
        info.iter()
            .any(|(l, m)| *l == 3 && m.starts_with("[out_parquet#") && m.contains("started"))
    );
    assert!(!info.iter().any(|(_, m)| m.contains("records buffered")));
    let debug = run_with(3, "true");
    assert!(
        debug.iter().any(|(_, m)| m.contains("10 records buffered")),
        "Debug=true shows debug lines: {debug:?}"
    );
}

/// Chunks of `per` events from `n` generated records, and each record's expected row.
fn chunks_and_rows(
    dir: &Path,
    seed: u64,
    n: usize,
    per: usize,
    tag: &str,
) -> (Vec<PathBuf>, HashMap<String, Map<String, Value>>) {
    let text = generate(seed, n);
    let lines: Vec<&str> = text.lines().collect();
    let mut files = Vec::new();
    let mut rows = HashMap::new();
    for (i, part) in lines.chunks(per).enumerate() {
        let base = 1_700_000_000 + i as u32 * 10;
        files.push(write_chunk(
            dir,
            &format!("s{seed}-{i}.chunk"),
            &chunk_from_ndjson(part, ChunkFormat::V5, base),
        ));
        for row in expected_flb(part, tag, base) {
            rows.insert(extra(&row, "id").expect("id").to_string(), row);
        }
    }
    (files, rows)
}

#[test]
fn a_hot_reload_hands_over_without_losing_a_record() {
    // Fluent Bit's order, then the new instances initialised before the old ones are
    // unregistered, which must not close them.
    for init_first in [false, true] {
        hot_reload(init_first);
    }
}

fn hot_reload(init_first: bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let tag = "app.reload";
    let (before, mut want) = chunks_and_rows(dir.path(), 31, 600, 100, tag);
    let (during, rows) = chunks_and_rows(dir.path(), 32, 1200, 100, tag);
    want.extend(rows.clone());
    let during_ids: Vec<String> = rows.into_keys().collect();
    let (after, rows) = chunks_and_rows(dir.path(), 33, 600, 100, tag);
    want.extend(rows.clone());
    // Records stay buffered until the old instance exits; the new one writes zstd.
    let keep = [("BufferSize", "100000"), ("FlushInterval", "3600")];
    let old = instance_props(
        &out,
        &[&keep[..], &[("WriterCompressionType", "gzip")]].concat(),
    );
    let new = instance_props(
        &out,
        &[&keep[..], &[("WriterCompressionType", "zstd")]].concat(),
    );
    let paths = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let r = run_host(
        &scenario(
            vec![old],
            vec![
                json!({"flush": {"chunks": paths(&before), "tag": tag}}),
                json!({"reload": {
                    "instances": [{"props": new}],
                    "during": {"chunks": paths(&during), "tag": tag, "workers": 2},
                    "init_first": init_first,
                }}),
                json!({"flush": {"chunks": paths(&after), "tag": tag}}),
            ],
        ),
        &[],
    );
    for i in 0..3 {
        assert!(
            codes(&r, i).iter().all(|&c| c == FLB_OK),
            "{i}: {:?}",
            codes(&r, i)
        );
    }
    assert_eq!(r["reloads"][0]["old_exits"], json!([FLB_OK]), "{r}");
    assert_eq!(r["reloads"][0]["init"][0]["ok"], true, "{r}");
    let got = rows_by_id(&out);
    assert_eq!(got.len(), want.len(), "every record once");
    for (id, row) in &want {
        assert_eq!(got.get(id), Some(row), "{id}");
    }
    // The old instance wrote what it held when it exited; the new one, with its own
    // settings, what came after.
    let codec = |p: &Path| {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let r = SerializedFileReader::new(std::fs::File::open(p).unwrap()).unwrap();
        format!("{:?}", r.metadata().row_group(0).column(0).compression())
    };
    let after_ids: std::collections::HashSet<String> = rows.into_keys().collect();
    for (file, row) in read_dir_rows(&out) {
        let id = extra(&row, "id").unwrap();
        let want = if after_ids.contains(id) {
            "ZSTD"
        } else {
            "GZIP"
        };
        assert!(codec(&file).starts_with(want), "{id} in {}", file.display());
    }
    assert!(during_ids.iter().all(|id| got.contains_key(id)));
    let left: Vec<String> = serde_json::from_value(r["threads_after_unload"].clone()).unwrap();
    assert!(left.iter().all(|t| !t.starts_with("d2p-")), "{left:?}");
}
