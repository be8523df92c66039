//! The data-generator's outputs and its exactly-once verifier: the Fluent forward client
//! against a small in-test server that speaks the protocol's ack mode, the plugin
//! driven directly, HTTP at a fixed rate for a fixed time, and the verifier catching
//! missing and duplicated records.

use crate::common::*;
use data2parquet::decode::msgpack::{RawTime, Reader};
use data2parquet::value::Doc;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// What the in-test forward server received.
#[derive(Default, Debug)]
struct Received {
    /// Every record id, in arrival order (a resent message appears twice).
    ids: Vec<String>,
    messages: usize,
    packed: usize,
    chunks: Vec<Option<String>>,
    tags: Vec<String>,
}

/// Parses one forward message at the start of `buf`; `None` when it is incomplete.
fn parse_message(buf: &[u8], got: &mut Received) -> Option<(usize, Option<String>)> {
    let mut r = Reader::new(buf);
    if r.array_len().ok()? != 3 {
        panic!("a forward message is a 3-element array");
    }
    let mut doc = Doc::new();
    r.value(Some(&mut doc)).ok()?;
    let tag = doc.root()?.as_str()?.to_string();
    let mut ids = Vec::new();
    let mut entries = |r: &mut Reader<'_>, n: usize| -> Option<()> {
        for _ in 0..n {
            assert_eq!(r.array_len().ok()?, 2, "an entry is [time, record]");
            let t = r.time().ok()?;
            assert!(matches!(t, RawTime::Event { .. }), "EventTime ext: {t:?}");
            let mut d = Doc::new();
            r.value(Some(&mut d)).ok()?;
            let id = d.root()?.get("id")?.as_str()?.to_string();
            ids.push(id);
        }
        Some(())
    };
    let forward_mode = r.at_array();
    if forward_mode {
        let n = r.array_len().ok()?;
        entries(&mut r, n)?;
    } else {
        // PackedForward: the entries as one bin (or str) of concatenated entries.
        let mut d = Doc::new();
        r.value(Some(&mut d)).ok()?;
        let bytes: Vec<u8> = match d.root()?.node() {
            data2parquet::value::Node::Bytes(b) => b.to_vec(),
            data2parquet::value::Node::Str(s) => s.as_bytes().to_vec(),
            other => panic!("entries must be an array or bin: {other:?}"),
        };
        let mut inner = Reader::new(&bytes);
        while !inner.is_empty() {
            entries(&mut inner, 1).expect("complete packed entries");
        }
    }
    let mut opts = Doc::new();
    r.value(Some(&mut opts)).ok()?;
    let o = opts.root()?;
    let chunk = o.get("chunk").and_then(|c| c.as_str()).map(str::to_string);
    assert_eq!(
        o.get("size").and_then(|s| s.as_f64()),
        Some(ids.len() as f64),
        "size option"
    );
    got.messages += 1;
    got.packed += usize::from(!forward_mode);
    got.ids.extend(ids);
    got.chunks.push(chunk.clone());
    got.tags.push(tag);
    Some((r.pos(), chunk))
}

/// A forward server on a free port. In ack mode it answers `{"ack": chunk}`, except
/// that it closes the connection instead of acknowledging message number `drop_at`
/// (once), to make the client send it again.
fn forward_server(drop_at: Option<usize>) -> (u16, Arc<Mutex<Received>>) {
    let l = listen_free();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Received::default()));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut dropped = false;
        for conn in l.incoming() {
            let Ok(mut s) = conn else { break };
            let mut buf = Vec::new();
            let mut tmp = vec![0u8; 64 * 1024];
            'conn: loop {
                let n = match s.read(&mut tmp) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&tmp[..n]);
                loop {
                    let mut r = g.lock().unwrap();
                    let Some((used, chunk)) = parse_message(&buf, &mut r) else {
                        break;
                    };
                    let index = r.messages;
                    drop(r);
                    buf.drain(..used);
                    if let Some(c) = chunk {
                        if Some(index) == drop_at && !dropped {
                            dropped = true;
                            break 'conn; // no ack: the client must resend
                        }
                        let mut ack = Vec::new();
                        data2parquet::decode::msgpack::write::map(&mut ack, 1);
                        data2parquet::decode::msgpack::write::str(&mut ack, "ack");
                        data2parquet::decode::msgpack::write::str(&mut ack, &c);
                        if s.write_all(&ack).is_err() {
                            break 'conn;
                        }
                    }
                }
            }
        }
    });
    (port, got)
}

fn report(o: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {text}\n{}", stderr(o)))
}

fn expected_ids(seed: u64, n: u64) -> Vec<String> {
    (0..n).map(|q| datagen::Generator::id_of(seed, q)).collect()
}

#[test]
fn forward_with_ack_resends_until_acknowledged() {
    for packed in [false, true] {
        let (port, got) = forward_server(Some(2));
        let mut cmd = Command::new(bin("data-generator"));
        cmd.args([
            "forward", "--ack", "--batch", "100", "--count", "1000", "--seed", "3",
        ])
        .args(["--tag", "gen.fwd", "--ack-timeout", "5"])
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"));
        if packed {
            cmd.arg("--packed");
        }
        let o = run(&mut cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        let r = report(&o);
        assert_eq!(
            (&r["sent"], &r["acknowledged"], &r["messages"], &r["failed"]),
            (&json!(1000), &json!(1000), &json!(10), &json!(0)),
            "{r}"
        );
        assert_eq!(r["resent_messages"], 1, "{r}");
        let got = got.lock().unwrap();
        assert_eq!(got.messages, 11, "ten messages, one of them twice");
        assert_eq!(got.packed, if packed { 11 } else { 0 });
        assert!(got.tags.iter().all(|t| t == "gen.fwd"));
        assert!(got.chunks.iter().all(Option::is_some));
        // Every record arrived; the unacknowledged message (the second) twice.
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in &got.ids {
            *counts.entry(id).or_default() += 1;
        }
        let want = expected_ids(3, 1000);
        for (i, id) in want.iter().enumerate() {
            let n = counts.get(id.as_str()).copied().unwrap_or(0);
            assert_eq!(n, if (100..200).contains(&i) { 2 } else { 1 }, "{id}");
        }
        assert_eq!(counts.len(), 1000);
    }
}

#[test]
fn forward_without_ack_sends_once() {
    let (port, got) = forward_server(None);
    let o = run(Command::new(bin("data-generator"))
        .args(["forward", "--batch", "300", "--count", "700", "--seed", "4"])
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}")));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(
        (&r["sent"], &r["acknowledged"]),
        (&json!(700), &Value::Null),
        "{r}"
    );
    // The server reads asynchronously: wait for the last message.
    let t = std::time::Instant::now();
    while got.lock().unwrap().ids.len() < 700 && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let got = got.lock().unwrap();
    assert_eq!(got.ids, expected_ids(4, 700));
    assert!(
        got.chunks.iter().all(Option::is_none),
        "no chunk option without --ack"
    );
}

fn verify(dir: &Path, seed: u64, count: u64) -> (bool, Value) {
    let o = run(Command::new(bin("data-generator"))
        .args([
            "verify",
            "--seed",
            &seed.to_string(),
            "--count",
            &count.to_string(),
        ])
        .arg("--dir")
        .arg(dir));
    (o.status.success(), report(&o))
}

#[test]
fn plugin_host_then_verifier_finds_missing_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(Command::new(bin("data-generator"))
        .args([
            "host",
            "--count",
            "5000",
            "--seed",
            "9",
            "--chunk-bytes",
            "500000",
        ])
        .arg("--plugin")
        .arg(plugin_path())
        .arg(format!("--prop=WriterFilePath={}", out.display()))
        .args([
            "--prop=WriterFsync=false",
            "--prop=BufferSize=700",
            "--prop=FlushInterval=60",
        ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(
        (&r["sent"], &r["acknowledged"], &r["failed"]),
        (&json!(5000), &json!(5000), &json!(0)),
        "{r}"
    );
    assert!(r["chunks"].as_u64().unwrap() >= 5, "{r}");
    let (ok, v) = verify(&out, 9, 5000);
    assert!(ok, "{v}");
    assert_eq!(
        (&v["rows"], &v["unique"], &v["missing"], &v["duplicated"]),
        (&json!(5000), &json!(5000), &json!(0), &json!(0))
    );
    // Another run's seed: every row is unexpected and every id missing.
    let (ok, v) = verify(&out, 10, 5000);
    assert!(!ok);
    assert_eq!(
        (&v["missing"], &v["unexpected"]),
        (&json!(5000), &json!(5000))
    );

    // A file written twice: its rows are duplicates. A file lost: its rows are missing.
    let files = data2parquet::readback::parquet_files(&out);
    let rows_of = |f: &Path| data2parquet::readback::file_rows(f).unwrap().len();
    let (a, b) = (&files[0], &files[1]);
    let (na, nb) = (rows_of(a), rows_of(b));
    std::fs::copy(a, a.with_file_name("copy.parquet")).unwrap();
    std::fs::remove_file(b).unwrap();
    let (ok, v) = verify(&out, 9, 5000);
    assert!(!ok, "{v}");
    assert_eq!(v["duplicated"], na, "{v}");
    assert_eq!(v["duplicate_rows"], na, "{v}");
    assert_eq!(v["missing"], nb, "{v}");
    assert_eq!(v["missing_ids"].as_array().unwrap().len(), nb.min(10));
    assert!(
        v["duplicated_ids"][0].as_str().unwrap().ends_with(" x2"),
        "{v}"
    );
}

#[test]
fn http_at_a_fixed_rate_for_a_fixed_time() {
    let s = HttpServer::start(json!({"flush_interval": 3600, "buffer_size": 100000}));
    let o = run(Command::new(bin("data-generator"))
        .args([
            "http",
            "--rate",
            "3000",
            "--duration",
            "2s",
            "--count",
            "1000000",
        ])
        .args(["--batch", "250", "--concurrency", "3", "--seed", "12"])
        .arg("--url")
        .arg(s.url("")));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&o);
    let sent = r["sent"].as_u64().unwrap();
    assert_eq!(r["acknowledged"], sent, "{r}");
    // 2 s at 3000/s, in batches of 250 (a claimed batch is always sent).
    assert!((5000..=7500).contains(&sent), "{r}");
    assert_eq!(http("POST", &s.url("/flush"), &[], None).status, 200);
    let (ok, v) = verify(&s.out(), 12, sent);
    assert!(ok, "{v}");
}

/// HEC events with a token: every record arrives once, as the verifier reads it back.
#[test]
fn http_as_splunk_hec_events_arrives_whole() {
    let s = HttpServer::start(
        json!({"flush_interval": 3600, "buffer_size": 100000, "http_auth_token": "t0k"}),
    );
    let o = run(Command::new(bin("data-generator"))
        .args(["http", "--hec", "--token", "t0k", "--count", "1500"])
        .args(["--batch", "400", "--concurrency", "2", "--seed", "14"])
        .arg("--url")
        .arg(s.url("")));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(
        (r["acknowledged"].as_u64(), r["hec"].as_bool()),
        (Some(1500), Some(true)),
        "{r}"
    );
    let auth = [("Authorization", "Bearer t0k")];
    assert_eq!(http("POST", &s.url("/flush"), &auth, None).status, 200);
    let (ok, v) = verify(&s.out(), 14, 1500);
    assert!(ok, "{v}");
}

/// Over HTTPS, trusting the server's private CA with `--ca-file`: every
/// record arrives once. Without it, the public roots refuse the certificate.
#[test]
fn http_over_https_arrives_whole() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let mut s = HttpServer::start(json!({
        "flush_interval": 3600, "buffer_size": 100000,
        "http_tls_cert_file": tls.join("a.crt"), "http_tls_key_file": tls.join("a.key")
    }));
    let url = format!("https://127.0.0.1:{}", s.port);
    let send = |ca: Option<&std::path::Path>| {
        let mut c = Command::new(bin("data-generator"));
        c.args([
            "http",
            "--count",
            "1200",
            "--batch",
            "300",
            "--concurrency",
            "3",
        ])
        .args(["--seed", "15", "--url", &url]);
        if let Some(ca) = ca {
            c.arg("--ca-file").arg(ca);
        }
        run(&mut c)
    };
    let refused = send(None);
    assert!(!refused.status.success(), "{}", stderr(&refused));
    assert!(
        stderr(&refused).to_lowercase().contains("certificate"),
        "{}",
        stderr(&refused)
    );
    let o = send(Some(&tls.join("ca-a.crt")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(report(&o)["acknowledged"], 1200);
    assert!(s.terminate().success(), "{}", s.log());
    let (ok, v) = verify(&s.out(), 15, 1200);
    assert!(ok, "{v}");
}

#[test]
fn http_with_gzip_bodies_arrives_whole() {
    let s = HttpServer::start(json!({"flush_interval": 3600, "buffer_size": 100000}));
    let o = run(Command::new(bin("data-generator"))
        .args(["http", "--gzip", "--pregenerate", "--count", "2000"])
        .args(["--batch", "300", "--concurrency", "2", "--seed", "13"])
        .arg("--url")
        .arg(s.url("")));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(
        (r["acknowledged"].as_u64(), r["gzip"].as_bool()),
        (Some(2000), Some(true)),
        "{r}"
    );
    // ~1 KB records compress well: what went over the wire is a fraction of the NDJSON
    assert!(
        r["mb_per_second"].as_f64().unwrap() * r["seconds"].as_f64().unwrap() < 1.0,
        "{r}"
    );
    assert_eq!(http("POST", &s.url("/flush"), &[], None).status, 200);
    let (ok, v) = verify(&s.out(), 13, 2000);
    assert!(ok, "{v}");
}
