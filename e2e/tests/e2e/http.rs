//! The HTTP server: a real server on a free port, driven with a real HTTP client; every
//! accepted record is read back from the Parquet files it ends up in.

use crate::common::*;
use data2parquet::config::Config;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

fn ids_written(dir: &std::path::Path) -> HashMap<String, Map<String, Value>> {
    let mut m = HashMap::new();
    for (_, r) in read_dir_rows(dir) {
        let id = extra(&r, "id").expect("id").to_string();
        assert!(m.insert(id.clone(), r).is_none(), "{id} written twice");
    }
    m
}

fn expected_by_id(text: &str) -> HashMap<String, Map<String, Value>> {
    expected_rows_by_id(&Config::default(), text)
}

#[test]
fn every_route_and_content_type() {
    let s = HttpServer::start(json!({"flush_interval": 3600, "buffer_size": 100000}));
    let text = generate(61, 300);
    let lines: Vec<&str> = text.lines().collect();
    // upstream route: one object
    let r = http("POST", &s.url("/record/"), &[], Some(lines[0].as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.json()["timestamp"].is_u64());
    let r = http("POST", &s.url("/record"), &[], Some(lines[1].as_bytes()));
    assert_eq!(r.status, 201, "without the trailing slash too");
    // NDJSON
    let body = lines[2..100].join("\n");
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(body.as_bytes()));
    assert_eq!(
        (r.status, r.json()["accepted"].as_u64()),
        (200, Some(98)),
        "{}",
        r.text()
    );
    // JSON array
    let body = format!("[{}]", lines[100..200].join(","));
    let r = http(
        "POST",
        &s.url("/records"),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.json()["accepted"], 100, "{}", r.text());
    // msgpack: an array of 50 maps, then 50 single maps one after another
    let mut mp = Vec::new();
    {
        use data2parquet::decode::json::JsonParser;
        use data2parquet::decode::msgpack::write as w;
        let mut p = JsonParser::new();
        w::array(&mut mp, 50);
        for l in &lines[200..300] {
            let mut b = l.as_bytes().to_vec();
            let doc = p.parse(&mut b).unwrap();
            w::value(&mut mp, doc.root().unwrap());
        }
    }
    let r = http(
        "POST",
        &s.url("/records"),
        &[("Content-Type", "application/msgpack")],
        Some(&mp),
    );
    assert_eq!(r.json()["accepted"], 100, "{}", r.text());
    let r = http(
        "POST",
        &s.url("/records"),
        &[("Content-Type", "text/csv")],
        Some(b"a,b"),
    );
    assert_eq!(r.status, 415);
    // metrics before the flush
    let m = http("GET", &s.url("/metrics"), &[], None).text();
    assert!(m.contains("d2p_records_in_total 300\n"), "{m}");
    assert!(m.contains("d2p_buffer_records 300\n"), "{m}");
    // flush, then read everything back
    let r = http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rows"], 300);
    let got = ids_written(&s.out());
    let want = expected_by_id(&text);
    assert_eq!(got.len(), 300);
    for (id, row) in &want {
        assert_eq!(got.get(id), Some(row), "{id}");
    }
    let m = http("GET", &s.url("/metrics"), &[], None).text();
    for line in [
        "d2p_records_out_total 300",
        "d2p_flush_latency_seconds_count",
        "d2p_files_written_total",
        "d2p_upload_retries_total 0",
        "d2p_http_responses_total{class=\"2xx\"}",
    ] {
        assert!(m.contains(line), "{line}: {m}");
    }
    // one size observation per file, every file under the smallest bucket's 16 KiB
    let files = data2parquet::readback::parquet_files(&s.out()).len();
    for line in [
        format!("d2p_files_written_total {files}\n"),
        format!("d2p_file_size_bytes_count {files}\n"),
        format!("d2p_file_size_bytes_bucket{{le=\"16384\"}} {files}\n"),
    ] {
        assert!(m.contains(&line), "{line}: {m}");
    }
    // health routes
    assert_eq!(
        http("GET", &s.url("/healthcheck/"), &[], None).json()["status"],
        "ok"
    );
    assert_eq!(http("GET", &s.url("/health"), &[], None).status, 200);
    assert_eq!(
        http("GET", &s.url("/ready"), &[], None).json()["status"],
        "ready"
    );
    // the OpenAPI document is the one in the repository and lists every route
    let doc = http("GET", &s.url("/openapi.json"), &[], None).json();
    let repo: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tools/http-server/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(doc, repo);
    for p in [
        "/record/",
        "/records",
        "/flush/",
        "/healthcheck/",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} documented");
    }
}

#[test]
fn bad_bodies_are_reported_and_dead_lettered() {
    let s = HttpServer::start(json!({"flush_interval": 3600}));
    let r = http("POST", &s.url("/record/"), &[], Some(b"{\"message\": "));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("truncated"),
        "{}",
        r.text()
    );
    let r = http("POST", &s.url("/record/"), &[], Some(b"[1,2]"));
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("found array"));
    let body =
        "{\"message\":\"ok\",\"id\":\"a\"}\n{nope\n\"str\"\n{\"message\":\"ok2\",\"id\":\"b\"}\n";
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(body.as_bytes()));
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        (j["accepted"].as_u64(), j["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(j["errors"][0]["source"], "line 2");
    assert_eq!(j["errors"][1]["source"], "line 3");
    assert!(
        j["errors"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("found string")
    );
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(b"{bad\n[]\n"));
    assert_eq!(r.status, 400, "all rejected: {}", r.text());
    http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(ids_written(&s.out()).len(), 2);
    let dlq: Vec<Value> = std::fs::read_dir(s.out().join("_dlq"))
        .unwrap()
        .flatten()
        .flat_map(|e| read_dlq(&e.path()))
        .collect();
    assert_eq!(dlq.len(), 6, "{dlq:?}");
}

#[test]
fn bearer_token_and_body_limit() {
    let s = HttpServer::start(json!({"http_auth_token": "s3cret", "http_max_body_bytes": 1024}));
    let rec = br#"{"message":"x"}"#;
    assert_eq!(http("POST", &s.url("/record/"), &[], Some(rec)).status, 401);
    let r = http(
        "POST",
        &s.url("/record/"),
        &[("Authorization", "Bearer wrong")],
        Some(rec),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let auth = ("Authorization", "Bearer s3cret");
    assert_eq!(
        http("POST", &s.url("/record/"), &[auth], Some(rec)).status,
        201
    );
    assert_eq!(http("GET", &s.url("/metrics"), &[], None).status, 401);
    assert_eq!(
        http("GET", &s.url("/health"), &[], None).status,
        200,
        "liveness stays open"
    );
    let big = vec![b' '; 4096];
    assert_eq!(
        http("POST", &s.url("/records"), &[auth, NDJSON], Some(&big)).status,
        413
    );
}

#[test]
fn a_full_buffer_holds_the_request_while_it_makes_room() {
    // The default BufferFullWait (1s): the buffer writes what it holds and takes the
    // second batch instead of answering 429.
    let s = HttpServer::start(
        json!({"buffer_max_bytes": 1024, "buffer_size": 1000000, "flush_interval": 3600}),
    );
    let text = generate(63, 20);
    for _ in 0..3 {
        let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let m = http("GET", &s.url("/metrics"), &[], None).text();
    assert!(
        m.lines().any(|l| l == "d2p_backpressure_total 0"),
        "no refusal: {m}"
    );
    assert!(
        m.lines().any(|l| l == "d2p_buffer_full_waits_total 2"),
        "the second and third request waited for room: {m}"
    );
}

#[test]
fn full_buffer_answers_429_with_retry_after() {
    let s = HttpServer::start(
        json!({"buffer_max_bytes": 1024, "buffer_size": 1000000, "flush_interval": 3600, "buffer_full_wait": "0"}),
    );
    let text = generate(62, 20);
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
    assert_eq!(
        r.status,
        200,
        "an empty buffer takes any batch: {}",
        r.text()
    );
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    // The full buffer wrote what it held to make room: a retry goes through.
    let t = std::time::Instant::now();
    loop {
        let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
        if r.status == 200 {
            break;
        }
        assert!(t.elapsed().as_secs() < 10, "still refused");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn sigterm_writes_everything_then_exits() {
    let mut s = HttpServer::start(json!({"flush_interval": 3600, "buffer_size": 1000000}));
    let text = generate(63, 500);
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
    assert_eq!(r.json()["accepted"], 500);
    assert!(
        data2parquet::readback::parquet_files(&s.out()).is_empty(),
        "nothing written yet"
    );
    let status = s.terminate();
    assert!(status.success(), "{status:?}: {}", s.log());
    let got = ids_written(&s.out());
    assert_eq!(got.len(), 500);
    for (id, row) in expected_by_id(&text) {
        assert_eq!(got.get(&id), Some(&row));
    }
    assert!(s.log().contains("writing every pending record"));
}

#[test]
fn redis_acknowledges_only_stored_records() {
    let redis = RedisServer::start();
    let s = HttpServer::start(
        json!({"buffer_type": "redis", "redis_host": redis.addr(), "redis_skip_flush": true}),
    );
    let text = generate(64, 200);
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
    assert_eq!(r.json()["accepted"], 200);
    let mut c = redis.conn().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("data:*").query(&mut c).unwrap();
    let mut n = 0;
    for k in keys {
        let l: usize = redis::cmd("LLEN").arg(&k).query(&mut c).unwrap();
        n += l;
    }
    assert_eq!(n, 200, "answered 200 only after Redis stored all of them");
    assert_eq!(http("GET", &s.url("/ready"), &[], None).status, 200);
    drop(redis);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
    assert_eq!(r.status, 503, "Redis down: {}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(http("GET", &s.url("/ready"), &[], None).status, 503);
}
