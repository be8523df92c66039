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
    let before = http("GET", &s.url("/metrics"), &[], None).text();
    assert!(before.contains("d2p_records_in_total 300\n"), "{before}");
    assert!(before.contains("d2p_buffer_records 300\n"), "{before}");
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
    // one file per partition key the buffer held (BufferSize is far above 300)
    let keys = format!("d2p_buffer_keys {files}\n");
    assert!(before.contains(&keys), "{keys}: {before}");
    assert!(m.contains("d2p_buffer_keys 0\n"), "{m}");
    for line in [
        format!("d2p_files_written_total {files}\n"),
        format!("d2p_file_size_bytes_count {files}\n"),
        format!("d2p_file_size_bytes_bucket{{le=\"16384\"}} {files}\n"),
        format!("d2p_file_rows_count {files}\n"),
        // One write per file, each well under 30 s on a local disk.
        format!("d2p_write_seconds_count {files}\n"),
        format!("d2p_write_seconds_bucket{{le=\"30\"}} {files}\n"),
        "# TYPE d2p_buffer_oldest_record_seconds gauge\n".to_string(),
    ] {
        assert!(m.contains(&line), "{line}: {m}");
    }
    // Per-key series: each key's rows are those of its files (fewer keys than MetricsKeys).
    let mut per_key: std::collections::BTreeMap<String, usize> = Default::default();
    for (file, _) in read_dir_rows(&s.out()) {
        let name = file.file_name().unwrap().to_str().unwrap();
        let key = name[27..].strip_suffix(".parquet").unwrap().to_string();
        *per_key.entry(key).or_default() += 1;
    }
    assert_eq!(per_key.len(), files);
    for (key, rows) in &per_key {
        for line in [
            format!("d2p_key_rows_written_total{{key=\"{key}\"}} {rows}\n"),
            format!("d2p_key_files_written_total{{key=\"{key}\"}} 1\n"),
            format!("d2p_key_records_rejected_total{{key=\"{key}\"}} 0\n"),
        ] {
            assert!(m.contains(&line), "{line}: {m}");
        }
    }
    assert!(!m.contains("{key=\"_other\"}"), "{m}");
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
        "/v1/logs",
        "/services/collector/event",
        "/services/collector/health",
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

/// `file_max_age`: requests append to their key's open file, and `/flush` writes it
/// whole, answering with its rows; the next requests start the next file.
#[test]
fn flush_writes_the_files_kept_open() {
    let s = HttpServer::start(json!({
        "flush_interval": 3600, "buffer_size": 20, "file_max_age": "1h",
        "partition_path": "capability={business-capability}",
    }));
    let text = generate(33, 400);
    let lines: Vec<&str> = text.lines().collect();
    for part in lines.chunks(100) {
        let body = part.join("\n");
        let r = http("POST", &s.url("/records"), &[NDJSON], Some(body.as_bytes()));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(r.json()["rows"], 400, "{}", r.text());
    let files = data2parquet::readback::parquet_files(&s.out());
    let keys: std::collections::HashSet<&str> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap()[27..].trim_end_matches(".parquet"))
        .collect();
    assert_eq!(files.len(), keys.len(), "one file per key");
    let got = ids_written(&s.out());
    assert_eq!(got, expected_by_id(&text));
    let more = generate(34, 50);
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(more.as_bytes()));
    assert_eq!(r.status, 200);
    assert_eq!(
        http("POST", &s.url("/flush/"), &[], None).json()["rows"],
        50
    );
    assert_eq!(ids_written(&s.out()).len(), 450);
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

/// A body sent chunked (no Content-Length) in pieces is read whole, and one that grows
/// past HttpMaxBodyBytes as it arrives gets 413 and stores nothing. The server answers
/// and closes without reading the rest, so the client may see its send fail instead.
#[test]
fn chunked_bodies_are_read_whole_and_limited() {
    let s = HttpServer::start(json!({"http_max_body_bytes": 65536}));
    /// Hands out at most 700 bytes a read, so the client sends many chunks.
    struct Trickle(std::io::Cursor<Vec<u8>>);
    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(700);
            self.0.read(&mut buf[..n])
        }
    }
    let post = |body: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut reader = Trickle(std::io::Cursor::new(body.as_bytes().to_vec()));
        let mut r = agent
            .post(s.url("/records"))
            .header(NDJSON.0, NDJSON.1)
            .send(ureq::SendBody::from_reader(&mut reader))
            .map_err(|e| e.to_string())?;
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Ok::<_, String>((r.status().as_u16(), text))
    };
    let text = generate(35, 40);
    assert!(text.len() > 5 * 700 && text.len() < 65536, "{}", text.len());
    let (status, answer) = post(&text).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""accepted":40"#), "{answer}");
    let big = generate(36, 200);
    assert!(big.len() > 65536, "{}", big.len());
    match post(&big) {
        Ok((status, answer)) => {
            assert_eq!(status, 413, "{answer}");
            assert!(answer.contains("HttpMaxBodyBytes"), "{answer}");
        }
        Err(e) => assert!(e.contains("pipe") || e.contains("reset"), "{e}"),
    }
    let r = http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(r.json()["rows"], 40, "{}", r.text());
    assert_eq!(ids_written(&s.out()), expected_by_id(&text));
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

/// HttpRequestTimeout: a request whose body stops arriving is answered 503 with
/// Retry-After once the timeout has passed, nothing of it is stored, and the server
/// goes on serving.
#[test]
fn a_request_slower_than_its_timeout_is_answered_and_stores_nothing() {
    use std::io::{Read, Write};
    let mut s = HttpServer::start(json!({
        "flush_interval": 3600, "buffer_size": 1000000, "http_request_timeout": "1s"
    }));
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let part = "{\"message\":\"partial\"}\n";
    write!(
        c,
        "POST /records HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{part}"
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("longer than") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("request took longer than 1s"), "{answer}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "answered before the timeout: {answer}"
    );
    let text = generate(64, 20);
    let r = http("POST", &s.url("/records"), &[NDJSON], Some(text.as_bytes()));
    assert_eq!(r.json()["accepted"], 20, "still serving");
    assert!(s.terminate().success(), "{}", s.log());
    let got = ids_written(&s.out());
    assert_eq!(got.len(), 20, "only the whole request is stored");
    for (id, row) in expected_by_id(&text) {
        assert_eq!(got.get(&id), Some(&row));
    }
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

/// `again` is `first`'s answer given again: the same status and body, marked replayed.
fn assert_replay_of(again: &HttpResponse, first: &HttpResponse) {
    assert_eq!(
        (
            again.status,
            again.text(),
            again.header("idempotent-replayed")
        ),
        (first.status, first.text(), Some("true"))
    );
}

fn dlq_entries(out: &std::path::Path) -> Vec<Value> {
    match std::fs::read_dir(out.join("_dlq")) {
        Ok(d) => d.flatten().flat_map(|e| read_dlq(&e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn an_idempotency_key_answers_a_resend_again_and_stores_once() {
    let s = HttpServer::start(json!({"flush_interval": 3600, "buffer_size": 100000}));
    let text = generate(71, 120);
    let lines: Vec<&str> = text.lines().collect();
    let body = format!("{}\n{{broken\n", lines[..100].join("\n"));
    let key = ("Idempotency-Key", "batch-0001");
    let first = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, key],
        Some(body.as_bytes()),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        (
            first.json()["accepted"].as_u64(),
            first.header("idempotent-replayed")
        ),
        (Some(100), None)
    );
    // the resend: the same answer, marked, and nothing stored or dead-lettered again
    let again = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, key],
        Some(body.as_bytes()),
    );
    assert_replay_of(&again, &first);
    // the key on another request, another content type, or malformed
    let other = lines[100..110].join("\n");
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, key],
        Some(other.as_bytes()),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let r = http(
        "POST",
        &s.url("/records"),
        &[("Content-Type", "application/json"), key],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 422, "the content type is part of the request");
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, ("Idempotency-Key", "two words")],
        Some(other.as_bytes()),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("visible ASCII")
    );
    // upstream's single-record route, with a quoted (Structured Field) key
    let one = ("Idempotency-Key", "\"one\"");
    let r1 = http(
        "POST",
        &s.url("/record/"),
        &[one],
        Some(lines[110].as_bytes()),
    );
    let r2 = http(
        "POST",
        &s.url("/record/"),
        &[one],
        Some(lines[110].as_bytes()),
    );
    assert_eq!((r1.status, r2.status), (201, 201));
    assert_replay_of(&r2, &r1);
    // without a key, a resend is a new request, as before
    let r = http("POST", &s.url("/record/"), &[], Some(lines[111].as_bytes()));
    assert_eq!(r.status, 201);
    let m = http("GET", &s.url("/metrics"), &[], None).text();
    assert!(m.contains("d2p_http_idempotent_replays_total 2\n"), "{m}");
    assert!(m.contains("d2p_records_in_total 102\n"), "{m}");
    let r = http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(r.json()["rows"], 102, "{}", r.text());
    let got = ids_written(&s.out());
    let want = expected_by_id(&lines[..112].join("\n"));
    assert_eq!(got.len(), 102);
    for l in lines[..100].iter().chain(&lines[110..112]) {
        let id = serde_json::from_str::<Value>(l).unwrap()["id"].to_string();
        let id = id.trim_matches('"');
        assert_eq!(got.get(id), want.get(id), "{id}");
    }
    assert_eq!(
        dlq_entries(&s.out()).len(),
        1,
        "the broken line dead-lettered once"
    );
}

#[test]
fn concurrent_sends_of_one_key_store_it_once() {
    let s = HttpServer::start(json!({"flush_interval": 3600, "buffer_size": 100000}));
    let text = generate(72, 4000);
    let url = s.url("/records");
    let send = || {
        let (url, text) = (url.clone(), text.clone());
        std::thread::spawn(move || {
            http(
                "POST",
                &url,
                &[NDJSON, ("Idempotency-Key", "same")],
                Some(text.as_bytes()),
            )
        })
    };
    let (a, b) = (send(), send());
    let mut answers = vec![a.join().unwrap(), b.join().unwrap()];
    for r in &mut answers {
        if r.status == 409 {
            // The other was still being processed: told to come back, and then answered.
            assert_eq!(r.header("retry-after"), Some("1"));
            std::thread::sleep(std::time::Duration::from_millis(1000));
            *r = http(
                "POST",
                &url,
                &[NDJSON, ("Idempotency-Key", "same")],
                Some(text.as_bytes()),
            );
        }
    }
    let fresh: Vec<_> = answers
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .collect();
    assert_eq!(fresh.len(), 1, "one is processed, the other answered again");
    for r in &answers {
        assert_eq!((r.status, r.json()["accepted"].as_u64()), (200, Some(4000)));
    }
    http("POST", &s.url("/flush/"), &[], None);
    let got = ids_written(&s.out());
    assert_eq!(got.len(), 4000, "stored once");
    for (id, row) in expected_by_id(&text) {
        assert_eq!(got.get(&id), Some(&row));
    }
}

#[test]
fn idempotency_keys_are_shared_by_nodes_over_redis() {
    let redis = RedisServer::start();
    let receive = HttpServer::start(
        json!({"buffer_type": "redis", "redis_host": redis.addr(), "redis_skip_flush": true}),
    );
    let flusher = HttpServer::start(
        json!({"buffer_type": "redis", "redis_host": redis.addr(), "flush_interval": 3600}),
    );
    let text = generate(73, 300);
    let key = ("Idempotency-Key", "shared-1");
    let first = http(
        "POST",
        &receive.url("/records"),
        &[NDJSON, key],
        Some(text.as_bytes()),
    );
    assert_eq!(first.json()["accepted"], 300, "{}", first.text());
    // a load balancer sends the resend to the other node
    let again = http(
        "POST",
        &flusher.url("/records"),
        &[NDJSON, key],
        Some(text.as_bytes()),
    );
    assert_replay_of(&again, &first);
    // the answer was stored with the records, under a hashed key, for HttpIdempotencyTtl
    let mut c = redis.conn().unwrap();
    let slots: Vec<String> = redis::cmd("KEYS").arg("data-idem:*").query(&mut c).unwrap();
    assert_eq!(slots.len(), 1, "{slots:?}");
    let ttl: i64 = redis::cmd("PTTL").arg(&slots[0]).query(&mut c).unwrap();
    assert!(ttl > 23 * 3600 * 1000, "{ttl}");
    // a request whose every line is bad stores no records, only its answer
    let bad = ("Idempotency-Key", "shared-2");
    let r1 = http(
        "POST",
        &receive.url("/records"),
        &[NDJSON, bad],
        Some(b"{x\n[]\n"),
    );
    let r2 = http(
        "POST",
        &flusher.url("/records"),
        &[NDJSON, bad],
        Some(b"{x\n[]\n"),
    );
    assert_eq!((r1.status, r2.status), (400, 400));
    assert_replay_of(&r2, &r1);
    let dlq: usize = redis::cmd("LLEN")
        .arg("dlq:_unkeyed")
        .query(&mut c)
        .unwrap();
    assert_eq!(dlq, 2, "dead-lettered once");
    let r = http("POST", &flusher.url("/flush/"), &[], None);
    assert_eq!(r.json()["rows"], 300, "{}", r.text());
    let got = ids_written(&flusher.out());
    assert_eq!(got.len(), 300);
    for (id, row) in expected_by_id(&text) {
        assert_eq!(got.get(&id), Some(&row));
    }
}

fn records_in_redis(redis: &RedisServer) -> usize {
    let mut c = redis.conn().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("data:*").query(&mut c).unwrap();
    keys.iter()
        .map(|k| redis::cmd("LLEN").arg(k).query::<usize>(&mut c).unwrap())
        .sum()
}

#[test]
fn a_redis_restart_within_buffer_full_wait_is_ridden_out_with_a_key() {
    let mut redis = RedisServer::start();
    let s = HttpServer::start(json!({
        "buffer_type": "redis", "redis_host": redis.addr(), "redis_skip_flush": true,
        "buffer_full_wait": "3s", "redis_timeout": 500,
    }));
    let text = generate(74, 50);
    let key = ("Idempotency-Key", "during-a-restart");
    redis.stop();
    let back = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(600));
        redis.restart();
        redis
    });
    // Redis is down when the key is claimed: the claim waits for it, as the push does.
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, key],
        Some(text.as_bytes()),
    );
    let redis = back.join().unwrap();
    assert_eq!(
        (r.status, r.json()["accepted"].as_u64()),
        (200, Some(50)),
        "{}",
        r.text()
    );
    let again = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, key],
        Some(text.as_bytes()),
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(records_in_redis(&redis), 50);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn compressed_bodies_are_unpacked_and_bounded() {
    let s = HttpServer::start(json!({
        "flush_interval": 3600, "buffer_size": 100000, "http_max_body_bytes": 262144,
    }));
    let text = generate(75, 135);
    let lines: Vec<&str> = text.lines().collect();
    let ndjson = lines[..60].join("\n");
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, ("Content-Encoding", "gzip")],
        Some(&gzip(ndjson.as_bytes())),
    );
    assert_eq!(
        (r.status, r.json()["accepted"].as_u64()),
        (200, Some(60)),
        "{}",
        r.text()
    );
    let array = format!("[{}]", lines[60..100].join(","));
    let r = http(
        "POST",
        &s.url("/records"),
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "zstd"),
        ],
        Some(&zstd::encode_all(array.as_bytes(), 3).unwrap()),
    );
    assert_eq!(r.json()["accepted"], 40, "{}", r.text());
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut z, lines[100..129].join("\n").as_bytes()).unwrap();
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, ("Content-Encoding", "deflate")],
        Some(&z.finish().unwrap()),
    );
    assert_eq!(r.json()["accepted"], 29, "{}", r.text());
    let r = http(
        "POST",
        &s.url("/record/"),
        &[("Content-Encoding", "GZIP")],
        Some(&gzip(lines[129].as_bytes())),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // a resend compressed another way is the same request for its Idempotency-Key
    let key = ("Idempotency-Key", "packed-1");
    let body = lines[130..].join("\n");
    let r1 = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, key, ("Content-Encoding", "gzip")],
        Some(&gzip(body.as_bytes())),
    );
    let r2 = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, key],
        Some(body.as_bytes()),
    );
    assert_eq!(
        (r1.status, r2.header("idempotent-replayed")),
        (200, Some("true"))
    );
    // refused: an unknown encoding, a corrupt body, and a small body that unpacks past
    // the limit
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, ("Content-Encoding", "br")],
        Some(b"x"),
    );
    assert_eq!(r.status, 415);
    assert_eq!(
        r.header("accept-encoding"),
        Some("gzip, zstd, deflate, identity")
    );
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, ("Content-Encoding", "gzip")],
        Some(b"not gzip"),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not valid gzip"),
        "{}",
        r.text()
    );
    let bomb = gzip(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 262144);
    let r = http(
        "POST",
        &s.url("/records"),
        &[NDJSON, ("Content-Encoding", "gzip")],
        Some(&bomb),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    // what was accepted is what is written
    let r = http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(r.json()["rows"], 135, "{}", r.text());
    let got = ids_written(&s.out());
    assert_eq!(got.len(), 135);
    for (id, row) in expected_by_id(&text) {
        assert_eq!(got.get(&id), Some(&row), "{id}");
    }
}

/// [`otlp_request_json`], gzipped as the collector sends it.
fn otlp_request(services: &[&str], records: usize, bad: Option<usize>) -> Vec<u8> {
    gzip(
        otlp_request_json(services, records, bad)
            .to_string()
            .as_bytes(),
    )
}

/// OTLP/HTTP logs in JSON: every record becomes a row (dynamic records here, partitioned
/// by the resource's `service.name`), a bad record is counted in `partialSuccess` and
/// dead-lettered under its place in the request, and the answers to another
/// Content-Type, to a body that is not OTLP and to a request of bad records only are
/// what OTLP clients expect.
#[test]
fn otlp_json_logs_become_rows() {
    let s = HttpServer::start(json!({
        "record_type": "dynamic", "flush_interval": 3600, "buffer_size": 100000,
        "partition_fields": "service.name", "partition_path": "service={service.name}"
    }));
    let json_gz = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    let url = s.url("/v1/logs");
    let r = http(
        "POST",
        &url,
        &json_gz,
        Some(&otlp_request(&["checkout", "payments"], 3, Some(1))),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let partial = &r.json()["partialSuccess"];
    assert_eq!(partial["rejectedLogRecords"], 1, "{}", r.text());
    let message = partial["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("resourceLogs[1].scopeLogs[0].logRecords[1]: "),
        "{message}"
    );
    let r = http("POST", &url, &json_gz, Some(&otlp_request(&["a"], 2, None)));
    assert_eq!((r.status, r.text()), (200, "{}".to_string()));
    // Another Content-Type; protobuf that is not a request (answered in protobuf: a
    // google.rpc.Status of code 3 and the reason); a JSON body that is not OTLP; only
    // bad records.
    let r = http("POST", &url, &[("Content-Type", "text/csv")], Some(b"a,b"));
    assert_eq!(r.status, 415);
    assert!(r.json()["message"].as_str().unwrap().contains("x-protobuf"));
    let r = http(
        "POST",
        &url,
        &[("Content-Type", "application/x-protobuf")],
        Some(b"\x0a\x05\x01"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(&r.body[..2], b"\x08\x03", "Status.code = 3");
    let reason = String::from_utf8_lossy(&r.body[4..]).into_owned();
    assert!(reason.contains("truncated"), "{reason}");
    let r = http(
        "POST",
        &url,
        &[("Content-Type", "application/json")],
        Some(br#"{"resourceLogs": 5}"#),
    );
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (400, Some(3)),
        "{}",
        r.text()
    );
    let only_bad = br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": ["x"]}]}]}"#;
    let r = http(
        "POST",
        &url,
        &[("Content-Type", "application/json")],
        Some(only_bad),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    let r = http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(r.json()["rows"], 7, "{}", r.text());
    let mut rows: Vec<(String, Value)> = read_dir_rows(&s.out())
        .into_iter()
        .map(|(f, r)| {
            let folder = f
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            (folder, Value::Object(r))
        })
        .collect();
    rows.sort_by_key(|(f, r)| (f.clone(), r["message"].as_str().unwrap().to_string()));
    let row = |svc: &str, i: u64, level: &str| {
        json!({
            "_event_time": format!("2025-11-27T05:20:0{i}.000000000Z"),
            "time": format!("2025-11-27T05:20:0{i}.000000000Z"),
            "level": level, "message": format!("{svc} event {i}"),
            "trace_id": format!("{:032x}", i + 1), "service.name": svc,
            "otel.scope.name": "app", "http.status_code": 200 + i, "user": {"id": format!("u{i}")}
        })
    };
    let want = vec![
        ("service=a".to_string(), row("a", 0, "INFO")),
        ("service=a".to_string(), row("a", 1, "WARN")),
        ("service=checkout".to_string(), row("checkout", 0, "INFO")),
        ("service=checkout".to_string(), row("checkout", 1, "WARN")),
        ("service=checkout".to_string(), row("checkout", 2, "INFO")),
        ("service=payments".to_string(), row("payments", 0, "INFO")),
        ("service=payments".to_string(), row("payments", 2, "INFO")),
    ];
    assert_eq!(rows, want);
    let dlq = dlq_entries(&s.out());
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert!(
        dlq.iter().any(
            |e| e["source"] == "resourceLogs[1].scopeLogs[0].logRecords[1]" && e["raw"] == "42"
        )
    );
}

/// Splunk HEC, as Docker's splunk logging driver sends it (`Authorization: Splunk`,
/// gzip, events back to back): each event is a row with its metadata, a bad one is
/// dead-lettered under its place while the others are stored, and the answers have
/// HEC's shape. Raw bodies: each line a row, with the query's metadata.
#[test]
fn splunk_hec_events_become_rows() {
    let s = HttpServer::start(json!({
        "record_type": "dynamic", "flush_interval": 3600, "buffer_size": 100000,
        "http_auth_token": "s3cret", "partition_fields": "host", "partition_path": "host={host}"
    }));
    let url = s.url("/services/collector/event");
    let auth = ("Authorization", "Splunk s3cret");
    let body = br#"{"event":{"line":"GET / 200","source":"stdout","tag":"web"},"time":"1700000000.123456","host":"node-1","source":"docker","sourcetype":"httpevent","index":"main"}{"time":1,"host":"node-9"}
{"event":"plain text","fields":{"env":"prod"},"time":1700000001,"host":"node-2"}"#;
    // The query's metadata fills in what an event does not set itself.
    let r = http(
        "POST",
        &format!("{url}?sourcetype=from-query&index=q&channel=c1"),
        &[auth, ("Content-Encoding", "gzip")],
        Some(&gzip(body)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"text": "Success", "code": 0, "rejected": 1,
               "errors": [{"source": "event[1]", "reason": "`event` is required"}]})
    );
    // The other paths of the route, and what HEC clients are told otherwise.
    let ok = http(
        "POST",
        &s.url("/services/collector"),
        &[auth],
        Some(br#"{"event":"x","host":"node-3"}"#),
    );
    assert_eq!(
        (ok.status, ok.json()),
        (200, json!({"text": "Success", "code": 0}))
    );
    let wrong = ("Authorization", "Splunk nope");
    assert_eq!(http("POST", &url, &[wrong], Some(body)).status, 401);
    let r = http("POST", &url, &[auth], Some(b" \n"));
    assert_eq!(
        (r.status, &r.json()["code"]),
        (400, &json!(5)),
        "{}",
        r.text()
    );
    let r = http("POST", &url, &[auth], Some(br#"{"event":""} 7"#));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        (
            &r.json()["code"],
            &r.json()["invalid-event-number"],
            &r.json()["rejected"]
        ),
        (&json!(6), &json!(0), &json!(2))
    );
    // Raw: each line a record, with the query's metadata (`channel` is not kept).
    let r = http(
        "POST",
        &s.url("/services/collector/raw?host=web-1&sourcetype=nginx%20access&channel=c1"),
        &[auth],
        Some(b"GET /a 200\r\n\nGET /b \xff 404\nGET /c 500"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (&r.json()["rejected"], &r.json()["errors"][0]["source"]),
        (&json!(1), &json!("line 3"))
    );
    for path in [
        "/services/collector/health",
        "/services/collector/health/1.0",
    ] {
        let r = http("GET", &s.url(path), &[], None);
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"text": "HEC is healthy", "code": 17})),
            "{path} needs no token"
        );
    }

    let r = http(
        "POST",
        &s.url("/flush/"),
        &[("Authorization", "Bearer s3cret")],
        None,
    );
    assert_eq!(r.json()["rows"], 5, "{}", r.text());
    let mut rows: Vec<Value> = read_dir_rows(&s.out())
        .into_iter()
        .map(|(f, r)| {
            let folder = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
            assert_eq!(folder, format!("host={}", r["host"].as_str().unwrap()));
            Value::Object(r)
        })
        .collect();
    rows.sort_by_key(|r| r["host"].to_string() + &r["message"].to_string());
    // An event without a time is stamped with its arrival.
    let now_ns = data2parquet::timeutil::now_ns();
    for r in rows.iter_mut().filter(|r| r.get("time").is_none()) {
        let arrival = r.as_object_mut().unwrap().remove("_event_time").unwrap();
        let arrival_ns = data2parquet::timeutil::parse_timestamp_ns(arrival.as_str().unwrap());
        assert!(
            arrival_ns.is_some_and(|t| (now_ns - 600_000_000_000..=now_ns).contains(&t)),
            "{arrival}"
        );
    }
    assert_eq!(
        rows,
        [
            json!({"_event_time": "2023-11-14T22:13:20.123456000Z",
                   "time": "2023-11-14T22:13:20.123456000Z",
                   "line": "GET / 200", "source": "stdout", "tag": "web",
                   "host": "node-1", "sourcetype": "httpevent", "index": "main"}),
            json!({"_event_time": "2023-11-14T22:13:21.000000000Z",
                   "time": "2023-11-14T22:13:21.000000000Z",
                   "message": "plain text", "env": "prod", "host": "node-2",
                   "sourcetype": "from-query", "index": "q"}),
            json!({"message": "x", "host": "node-3"}),
            json!({"message": "GET /a 200", "host": "web-1", "sourcetype": "nginx access"}),
            json!({"message": "GET /c 500", "host": "web-1", "sourcetype": "nginx access"}),
        ]
    );
    let dlq = dlq_entries(&s.out());
    let mut got: Vec<(&str, &str, &str)> = dlq
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
                e["raw"].as_str().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("event[0]", "`event` is empty", r#"{"event":""}"#),
            (
                "event[1]",
                "`event` is required",
                r#"{"time":1,"host":"node-9"}"#
            ),
            ("event[1]", "an event is not a JSON object", "7"),
            (
                "line 3",
                "not UTF-8: invalid utf-8 sequence of 1 bytes from index 7",
                "GET /b \u{fffd} 404"
            ),
        ]
    );
}

/// With the log schema, an OTLP record's body, severity and time fill `message`,
/// `level` and `time`; its attributes land where any input key would.
#[test]
fn otlp_json_logs_fill_the_log_schema() {
    let s = HttpServer::start(json!({"flush_interval": 3600, "buffer_size": 100000}));
    let r = http(
        "POST",
        &s.url("/v1/logs"),
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        Some(&otlp_request(&["checkout"], 2, None)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(http("POST", &s.url("/flush/"), &[], None).json()["rows"], 2);
    let mut rows: Vec<Map<String, Value>> = read_dir_rows(&s.out())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    rows.sort_by_key(|r| r["message"].as_str().unwrap().to_string());
    let got: Vec<(&Value, &Value, &Value, Option<&str>)> = rows
        .iter()
        .map(|r| {
            (
                &r["message"],
                &r["level"],
                &r["time"],
                extra(r, "service.name"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                &json!("checkout event 0"),
                &json!("INFO"),
                &json!("2025-11-27T05:20:00.000000000Z"),
                Some("checkout")
            ),
            (
                &json!("checkout event 1"),
                &json!("WARN"),
                &json!("2025-11-27T05:20:01.000000000Z"),
                Some("checkout")
            ),
        ]
    );
}

/// A real OpenTelemetry exporter: the Python SDK's OTLP/HTTP log exporter (protobuf,
/// gzip), fed through the `logging` bridge, sends to `/v1/logs`; every log line comes
/// back as a row with its body, severity, resource and attributes.
#[test]
fn the_opentelemetry_python_sdk_exports_logs_into_parquet() {
    let have = std::process::Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.exporter.otlp.proto.http._log_exporter",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("the OpenTelemetry Python SDK is not installed; skipped");
        return;
    }
    let s = HttpServer::start(json!({
        "record_type": "dynamic", "flush_interval": 3600, "buffer_size": 100000,
        "partition_fields": "service.name", "partition_path": "service={service.name}"
    }));
    let script = r#"
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.resources import Resource

provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
provider.add_log_record_processor(SimpleLogRecordProcessor(
    OTLPLogExporter(endpoint=sys.argv[1], compression=Compression.Gzip)))
log = logging.getLogger("shop")
log.propagate = False
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
log.setLevel(logging.INFO)
for i in range(5):
    log.warning("order %d placed", i, extra={"order.id": i, "amount": 9.5})
log.error("payment failed", extra={"retry": True})
provider.shutdown()
"#;
    let o = run(std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(s.url("/v1/logs")));
    let err = stderr(&o);
    assert!(o.status.success() && !err.contains("Failed"), "{err}");
    let r = http("POST", &s.url("/flush/"), &[], None);
    assert_eq!(r.json()["rows"], 6, "{}", r.text());
    let mut rows: Vec<(String, Map<String, Value>)> = read_dir_rows(&s.out())
        .into_iter()
        .map(|(f, r)| {
            let folder = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
            (folder.to_string(), r)
        })
        .collect();
    rows.sort_by_key(|(_, r)| r["message"].as_str().unwrap().to_string());
    let got: Vec<Value> = rows
        .iter()
        .map(|(folder, r)| {
            json!([
                folder,
                r["message"],
                r["level"],
                r["service.name"],
                r["otel.scope.name"],
                r.get("order.id"),
                r.get("amount"),
                r.get("retry"),
                r["_event_time"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("20"))
            ])
        })
        .collect();
    let mut want: Vec<Value> = (0..5)
        .map(|i| {
            json!([
                "service=checkout",
                format!("order {i} placed"),
                "WARN",
                "checkout",
                "shop",
                i,
                9.5,
                null,
                true
            ])
        })
        .collect();
    want.push(json!([
        "service=checkout",
        "payment failed",
        "ERROR",
        "checkout",
        "shop",
        null,
        null,
        true,
        true
    ]));
    want.sort_by_key(|v| v[1].as_str().unwrap().to_string());
    assert_eq!(got, want);
}

/// POSTs `body` as NDJSON over HTTPS with Python's `ssl`, trusting only `ca` (so the
/// request succeeds only if the server presents that certificate), showing the client
/// certificate `client` (certificate, key) if given. Returns the exit status's success
/// and what the script printed (the answer, or the error).
fn https_post(
    url: &str,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
    body: &[u8],
) -> (bool, String) {
    use std::io::Write;
    let script = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
if len(sys.argv) > 4:
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
req = urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(), method="POST",
                             headers={"Content-Type": "application/x-ndjson"})
try:
    with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
        print(r.status, r.read().decode())
except Exception as e:
    print(type(e).__name__, e)
    sys.exit(1)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, url])
        .arg(ca)
        .args(client.iter().flat_map(|(c, k)| [c, k]))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("body");
    let o = child.wait_with_output().expect("python3 output");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
    )
}

#[test]
fn https_serves_the_certificate_and_its_rotation_and_stores_every_record() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let tls = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (tls.path().join("tls.crt"), tls.path().join("tls.key"));
    std::fs::copy(fixtures.join("a.crt"), &cert).expect("cert");
    std::fs::copy(fixtures.join("a.key"), &key).expect("key");
    let mut s = HttpServer::start(json!({
        "flush_interval": 3600, "buffer_size": 1000000,
        "http_tls_cert_file": cert, "http_tls_key_file": key
    }));
    let url = format!("https://127.0.0.1:{}/records", s.port);
    // A client that connects and never says hello holds only its own handshake.
    let idle = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    let first = generate(71, 300);
    let (ok, said) = https_post(&url, &fixtures.join("ca-a.crt"), None, first.as_bytes());
    assert!(
        ok && said.starts_with("200 ") && said.contains("\"accepted\":300"),
        "{said}"
    );
    // Plain HTTP to the TLS port gets no answer, and leaves the server serving.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let plain = agent
        .post(&format!("http://127.0.0.1:{}/records", s.port))
        .send(first.as_bytes());
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    drop(idle);

    // Rotation: new files in place; once the check interval has passed, the next
    // handshake reads them, and the old certificate is no longer presented.
    std::fs::copy(fixtures.join("b.crt"), &cert).expect("cert");
    std::fs::copy(fixtures.join("b.key"), &key).expect("key");
    std::thread::sleep(std::time::Duration::from_millis(2300));
    let second = generate(72, 200);
    let (ok, said) = https_post(&url, &fixtures.join("ca-b.crt"), None, second.as_bytes());
    assert!(
        ok && said.contains("\"accepted\":200"),
        "{said}: {}",
        s.log()
    );
    let (ok, said) = https_post(&url, &fixtures.join("ca-a.crt"), None, b"{}\n");
    assert!(!ok && said.contains("CERTIFICATE_VERIFY_FAILED"), "{said}");
    assert!(
        s.log().contains("read again after it changed"),
        "{}",
        s.log()
    );

    let status = s.terminate();
    assert!(status.success(), "{status:?}: {}", s.log());
    let got = ids_written(&s.out());
    let mut want = expected_by_id(&first);
    want.extend(expected_by_id(&second));
    assert_eq!(got.len(), 500);
    for (id, row) in want {
        assert_eq!(got.get(&id), Some(&row), "{id}");
    }
}

#[test]
fn https_refuses_to_start_without_a_usable_certificate() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |cert: std::path::PathBuf, key: std::path::PathBuf| {
        let cfg = dir.path().join("config.json");
        let config = json!({"address": "127.0.0.1", "port": free_port(),
            "writer_file_path": dir.path().join("out"),
            "http_tls_cert_file": cert, "http_tls_key_file": key});
        std::fs::write(&cfg, config.to_string()).expect("config");
        let o = run(std::process::Command::new(bin("http-server")).arg(&cfg));
        assert!(!o.status.success(), "started: {}", stderr(&o));
        stderr(&o)
    };
    let err = start(fixtures.join("a.crt"), fixtures.join("b.key"));
    assert!(err.contains("does not fit the certificate"), "{err}");
    let err = start(dir.path().join("missing.crt"), fixtures.join("a.key"));
    assert!(err.contains("missing.crt"), "{err}");
    // A key file holding a certificate only.
    let err = start(fixtures.join("a.crt"), fixtures.join("a.crt"));
    assert!(
        err.contains("private key") && err.contains("a.crt"),
        "{err}"
    );
}

/// Mutual TLS: only a client with a certificate from the client CA is served; its
/// records are read back.
#[test]
fn mutual_tls_serves_only_clients_with_a_certificate() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let mut s = HttpServer::start(json!({
        "flush_interval": 3600, "buffer_size": 1000000,
        "http_tls_cert_file": tls.join("a.crt"), "http_tls_key_file": tls.join("a.key"),
        "http_tls_client_ca_file": tls.join("ca-c.crt")
    }));
    let url = format!("https://127.0.0.1:{}/records", s.port);
    let ca = tls.join("ca-a.crt");
    let text = generate(73, 150);
    let (ok, said) = https_post(&url, &ca, None, text.as_bytes());
    assert!(!ok, "served without a client certificate: {said}");
    // A certificate from another CA (the server's own) is refused as well.
    let (ok, said) = https_post(
        &url,
        &ca,
        Some((&tls.join("b.crt"), &tls.join("b.key"))),
        text.as_bytes(),
    );
    assert!(!ok, "served with a certificate of another CA: {said}");
    let (ok, said) = https_post(
        &url,
        &ca,
        Some((&tls.join("client.crt"), &tls.join("client.key"))),
        text.as_bytes(),
    );
    assert!(
        ok && said.contains("\"accepted\":150"),
        "{said}: {}",
        s.log()
    );
    assert!(s.terminate().success(), "{}", s.log());
    let got = ids_written(&s.out());
    assert_eq!(got.len(), 150);
    for (id, row) in expected_by_id(&text) {
        assert_eq!(got.get(&id), Some(&row), "{id}");
    }
}
