//! The S3 writer against moto_server, a real S3 (and STS) HTTP endpoint started on a
//! free loopback port. Every object is downloaded, parsed as Parquet and compared row
//! by row with the input.

use crate::common::*;
use data2parquet::config::{Config, ConfigBuilder};
use data2parquet::writer::s3::{S3Writer, StoredWith};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

const BUCKET: &str = "logs";

fn s3_props(endpoint: &str, bucket: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("WriterType", "aws-s3"),
        ("S3BucketName", bucket),
        ("S3Region", "us-east-1"),
        ("S3Endpoint", endpoint),
        ("S3AccessKey", "testing"),
        ("S3SecretKey", "testing"),
        ("S3KeyPrefix", "d2p/"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

fn config(props: &[(String, String)]) -> Config {
    let mut b = ConfigBuilder::new();
    for (k, v) in props {
        b.set(k, v).unwrap();
    }
    b.build().unwrap()
}

/// A client for the test itself (bucket creation, listing, download).
fn client(endpoint: &str) -> S3Writer {
    S3Writer::new(&config(&s3_props(endpoint, BUCKET, &[]))).unwrap()
}

/// Every object under the prefix, parsed: (key, etag, rows).
/// One downloaded object: key, ETag, rows.
type Object = (String, String, Vec<Map<String, Value>>);

fn objects(c: &S3Writer) -> Vec<Object> {
    c.list("")
        .unwrap()
        .into_iter()
        .map(|k| {
            let (bytes, etag) = c.get(&k).unwrap();
            let rows = data2parquet::readback::bytes_rows(bytes::Bytes::from(bytes))
                .expect("valid parquet");
            (k, etag, rows)
        })
        .collect()
}

/// Starts the plugin with `props` through the test host, asserts that its init was
/// refused, and returns what it logged.
fn init_refused_logs(props: Vec<(String, String)>) -> Vec<(i64, String)> {
    let props: Map<String, Value> = props.into_iter().map(|(k, v)| (k, json!(v))).collect();
    let r = run_host(
        &json!({"plugin": plugin_path(), "instances": [{"props": props}], "steps": []}),
        &[],
    );
    assert_eq!(r["init"][0]["ok"], false);
    logs_text(&r)
}

/// A moto server holding the test bucket, and a client for the test's own requests.
fn moto_with_bucket() -> (MotoServer, S3Writer) {
    let moto = MotoServer::start();
    let c = client(&moto.endpoint());
    c.create_bucket().unwrap();
    (moto, c)
}

/// Runs json2parquet on `text` (written to `dir/in.ndjson`) with `props` as its config.
fn json2parquet_s3(dir: &Path, props: &[(String, String)], text: &str) -> Output {
    let input = dir.join("in.ndjson");
    std::fs::write(&input, text).unwrap();
    run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(json_config(dir, props))
        .arg(&input))
}

/// A config file for json2parquet; local paths (recovery store, DLQ) stay under `dir`.
fn json_config(dir: &Path, props: &[(String, String)]) -> std::path::PathBuf {
    let mut m: Map<String, Value> = props.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    m.entry("WriterFilePath")
        .or_insert_with(|| json!(dir.join("local").to_str().unwrap()));
    let p = dir.join("cfg.json");
    std::fs::write(&p, serde_json::to_vec(&Value::Object(m)).unwrap()).unwrap();
    p
}

/// The rows `text` must become under `props`, by record id.
fn rows_by_id(props: &[(String, String)], text: &str) -> HashMap<String, Map<String, Value>> {
    expected_rows_by_id(&config(props), text)
}

/// S3ServerSideEncryption, S3KmsKeyId, S3StorageClass and S3Acl reach every object,
/// through PutObject (the first run) and multipart uploads (the second, where every
/// file is over the threshold). Each object is read back row by row too.
#[test]
fn objects_carry_the_configured_encryption_class_and_acl() {
    let (moto, c) = moto_with_bucket();
    let text = generate(52, 600);
    let kms = "arn:aws:kms:us-east-1:123456789012:key/0b4c6a3e-1111-2222-3333-444455556666";
    let all_users = "READ http://acs.amazonaws.com/groups/global/AllUsers";
    let authenticated = "READ http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
    /// A run's name (and key prefix), its settings, and what S3 must report.
    type Run<'a> = (&'a str, &'a [(&'a str, &'a str)], StoredWith);
    let runs: [Run; 2] = [
        (
            "put",
            &[
                ("S3ServerSideEncryption", "aes256"),
                ("S3StorageClass", "standard_ia"),
                ("S3Acl", "public-read"),
            ],
            StoredWith {
                encryption: Some("AES256".into()),
                kms_key_id: None,
                storage_class: Some("STANDARD_IA".into()),
                grants: vec![all_users.into()],
            },
        ),
        (
            "multipart",
            &[
                ("S3ServerSideEncryption", "aws:kms"),
                ("S3KmsKeyId", kms),
                ("S3StorageClass", "INTELLIGENT_TIERING"),
                ("S3Acl", "authenticated-read"),
                ("S3MultipartThreshold", "1"),
            ],
            StoredWith {
                encryption: Some("aws:kms".into()),
                kms_key_id: Some(kms.into()),
                storage_class: Some("INTELLIGENT_TIERING".into()),
                grants: vec![authenticated.into()],
            },
        ),
    ];
    for (run, settings, want_stored) in runs {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("d2p/{run}/");
        let mut extra_props = vec![("BufferSize", "200"), ("S3KeyPrefix", prefix.as_str())];
        extra_props.extend_from_slice(settings);
        let props = s3_props(&moto.endpoint(), BUCKET, &extra_props);
        let o = json2parquet_s3(dir.path(), &props, &text);
        let log = stderr(&o);
        assert!(
            o.status.success() && log.contains("0 recovered, 0 lost"),
            "{run}: {log}"
        );
        let want = rows_by_id(&props, &text);
        let keys = c.list(&format!("{run}/")).unwrap();
        assert!(keys.len() >= 2, "{run}: {keys:?}");
        let mut n = 0;
        for key in &keys {
            let got = c.stored_with(key).unwrap();
            assert_eq!(got.encryption, want_stored.encryption, "{run} {key}");
            assert_eq!(got.kms_key_id, want_stored.kms_key_id, "{run} {key}");
            assert_eq!(got.storage_class, want_stored.storage_class, "{run} {key}");
            for g in &want_stored.grants {
                assert!(got.grants.contains(g), "{run} {key}: {got:?}");
            }
            let (bytes, _) = c.get(key).unwrap();
            for r in data2parquet::readback::bytes_rows(bytes::Bytes::from(bytes)).unwrap() {
                let id = extra(&r, "id").unwrap();
                assert_eq!(Some(&r), want.get(id), "{run} {id}");
                n += 1;
            }
        }
        assert_eq!(n, 600, "{run}: every record once");
    }
}

#[test]
fn uploads_read_back_row_by_row() {
    let (moto, c) = moto_with_bucket();
    let dir = tempfile::tempdir().unwrap();
    let text = generate(51, 1500);
    let props = s3_props(
        &moto.endpoint(),
        BUCKET,
        &[
            ("BufferSize", "400"),
            ("WriterFilePath", dir.path().join("local").to_str().unwrap()),
        ],
    );
    let o = json2parquet_s3(dir.path(), &props, &text);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("0 recovered, 0 lost"),
        "every upload succeeded: {log}"
    );
    let want = rows_by_id(&props, &text);
    let objs = objects(&c);
    assert!(objs.len() >= 4);
    let mut n = 0;
    for (key, _, rows) in &objs {
        assert!(key.starts_with("d2p/capability=buscap-"), "{key}");
        assert!(key.ends_with(".parquet"));
        assert!(rows.len() <= 400);
        for r in rows {
            let id = extra(r, "id").unwrap();
            assert_eq!(Some(r), want.get(id), "{id}");
            n += 1;
        }
    }
    assert_eq!(n, 1500, "every record once");
    assert!(
        !dir.path()
            .join("local")
            .join("capability=buscap-00")
            .exists(),
        "nothing written locally"
    );
}

/// One key, uncompressed, with parts and a multipart threshold of 5 MiB: 16,000
/// records make one object above the threshold.
const MULTIPART: &[(&str, &str)] = &[
    ("PartitionFields", "cloud-provider"),
    ("PartitionPath", "cloud={cloud-provider}"),
    ("WriterCompressionType", "none"),
    ("S3PartSize", "5MiB"),
    ("S3MultipartThreshold", "5MiB"),
];

/// Runs json2parquet over `text` (16,000 records of one key, see [`MULTIPART`]) and
/// returns the rows of the one object it must make, having checked that the writer saw
/// the upload succeed and that the object went up in parts.
fn one_multipart_object(
    c: &S3Writer,
    dir: &Path,
    props: &[(String, String)],
    text: &str,
) -> Vec<Map<String, Value>> {
    let o = json2parquet_s3(dir, props, text);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    // The writer itself must have seen the upload succeed: an object that arrived while
    // the writer reported a failure (and kept a recovery copy) is not a pass.
    assert!(
        log.contains("wrote 16000 rows to 1 file(s)") && log.contains("0 recovered"),
        "{log}"
    );
    let mut objs = objects(c);
    assert_eq!(objs.len(), 1, "one key, one file");
    let (key, etag, rows) = objs.remove(0);
    assert_eq!(rows.len(), 16000);
    let (bytes, _) = c.get(&key).unwrap();
    assert!(bytes.len() > 5 * 1024 * 1024, "{} bytes", bytes.len());
    assert!(
        etag.trim_matches('"').contains('-'),
        "a multipart ETag ends in -<parts>: {etag}"
    );
    rows
}

#[test]
fn large_files_use_multipart_uploads() {
    let (moto, c) = moto_with_bucket();
    let dir = tempfile::tempdir().unwrap();
    let text = generate(52, 16000);
    let extra = [&[("BufferSize", "1000000")][..], MULTIPART].concat();
    let props = s3_props(&moto.endpoint(), BUCKET, &extra);
    one_multipart_object(&c, dir.path(), &props, &text);
}

/// `FileMaxAge` with the S3 writer: each key's open file grows in FileSpoolPath as
/// small flushes append to it, and goes up from there in parts, one object per key
/// holding every row; no spool is left behind.
#[test]
fn open_files_grow_on_disk_and_upload_in_parts() {
    let (moto, c) = moto_with_bucket();
    let dir = tempfile::tempdir().unwrap();
    let text = generate(53, 16000);
    let spool = dir.path().join("spool");
    let open = [
        ("BufferSize", "500"),
        ("FileMaxAge", "1h"),
        ("FileSpoolPath", spool.to_str().unwrap()),
        ("WriterRowGroupSize", "1MiB"),
    ];
    let props = s3_props(&moto.endpoint(), BUCKET, &[&open[..], MULTIPART].concat());
    // One object from 32 flushes.
    let rows = one_multipart_object(&c, dir.path(), &props, &text);
    rows_as_sent_through_the_spool(&props, &text, &rows, &spool);
}

/// Checks that `rows` are the records of `text`, each once, and that the file they
/// came in grew in `spool` and left nothing there.
fn rows_as_sent_through_the_spool(
    props: &[(String, String)],
    text: &str,
    rows: &[Map<String, Value>],
    spool: &Path,
) {
    let want = rows_by_id(props, text);
    assert_eq!(rows.len(), want.len());
    for r in rows {
        let id = extra(r, "id").unwrap();
        assert_eq!(want.get(id), Some(r), "record {id}");
    }
    assert!(spool.is_dir(), "the file grew in FileSpoolPath");
    let left: Vec<_> = std::fs::read_dir(spool).unwrap().collect();
    assert!(left.is_empty(), "spools left: {left:?}");
}

/// With the Redis buffer, a batch of more than a page (16,000 records, taken whole at
/// close) is read from Redis a page at a time into a file in FileSpoolPath, and goes
/// up from there in parts: one object holding every row, and no spool left.
#[test]
fn a_large_redis_batch_grows_in_the_spool_and_uploads_in_parts() {
    let (moto, c) = moto_with_bucket();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let text = generate(54, 16000);
    let (spool, local) = (dir.path().join("spool"), dir.path().join("local"));
    let settings = [
        ("BufferType", "redis"),
        ("RedisHost", &redis.addr()),
        ("BufferSize", "1000000"),
        ("FlushInterval", "1h"),
        ("FileSpoolPath", spool.to_str().unwrap()),
        ("WriterFilePath", local.to_str().unwrap()),
    ];
    let props = s3_props(
        &moto.endpoint(),
        BUCKET,
        &[&settings[..], MULTIPART].concat(),
    );
    let cfg = config(&props);
    let receiver = data2parquet::receiver::Receiver::start(
        &cfg,
        std::sync::Arc::new(data2parquet::logging::NullLogger),
    )
    .unwrap();
    let spec = data2parquet::ingest::IngestSpec::from_config(&cfg).unwrap();
    let mut d = data2parquet::ingest::Decoder::new(&spec);
    let mut batch = data2parquet::ingest::KeyedBatch::new();
    for (i, line) in text.lines().enumerate() {
        let mut bytes = line.as_bytes().to_vec();
        assert!(d.json(&mut bytes, || format!("line {i}"), &mut batch));
    }
    receiver.submit(batch).unwrap();
    let report = receiver.close();
    let m = receiver.metrics().render_prometheus();
    assert!(m.contains("\nd2p_batches_paged_total 1\n"), "read in pages");
    assert_eq!(
        (report.rows, report.files, report.errors.len()),
        (16000, 1, 0),
        "{report:?}"
    );
    let mut objs = objects(&c);
    assert_eq!(objs.len(), 1, "one key, one file");
    let (_, etag, rows) = objs.remove(0);
    assert!(etag.trim_matches('"').contains('-'), "multipart: {etag}");
    rows_as_sent_through_the_spool(&props, &text, &rows, &spool);
}

#[test]
fn assume_role_through_sts() {
    let (moto, c) = moto_with_bucket();
    let dir = tempfile::tempdir().unwrap();
    let text = generate(53, 100);
    let props = s3_props(
        &moto.endpoint(),
        BUCKET,
        &[
            ("S3RoleARN", "arn:aws:iam::123456789012:role/writer"),
            ("S3STSEndpoint", &moto.endpoint()),
            ("BufferSize", "1000"),
        ],
    );
    let o = json2parquet_s3(dir.path(), &props, &text);
    assert!(o.status.success(), "{}", stderr(&o));
    let total: usize = objects(&c).iter().map(|(_, _, r)| r.len()).sum();
    assert_eq!(total, 100);
}

#[test]
fn missing_bucket_is_a_clear_error() {
    let moto = MotoServer::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = init_refused_logs(s3_props(&moto.endpoint(), "no-such-bucket", &[]));
    assert!(
        logs.iter()
            .any(|(l, m)| *l == 1 && m.contains("`no-such-bucket` does not exist")),
        "{logs:?}"
    );
    let _ = dir;
}

#[test]
fn endpoint_down_and_back_every_file_arrives() {
    let (moto, c) = moto_with_bucket();
    let proxy = Proxy::start(moto.port);
    let dir = tempfile::tempdir().unwrap();
    let (chunks, ids) = v5_chunks(dir.path(), 54, 1200, 300);
    let mut props: Map<String, Value> = s3_props(
        &proxy.endpoint(),
        BUCKET,
        &[
            ("BufferSize", "300"),
            ("RecoveryAttempts", "0"),
            ("TryAutoRecover", "true"),
            ("RecoveryInterval", "1"),
            ("WriterFilePath", dir.path().join("local").to_str().unwrap()),
        ],
    )
    .into_iter()
    .map(|(k, v)| (k, json!(v)))
    .collect();
    props.insert("FlushInterval".into(), json!("100ms"));
    let flush = |i: usize| json!({"flush": {"chunks": [&chunks[i]], "tag": "s3"}});
    let steps = vec![
        flush(0),
        json!({"sleep_ms": 1000}),
        flush(1),
        flush(2),
        json!({"sleep_ms": 5000}),
        flush(3),
        json!({"sleep_ms": 2500}),
    ];
    let sc = json!({"plugin": plugin_path(), "instances": [{"props": props}], "steps": steps});
    let d = tempfile::tempdir().unwrap();
    let sp = d.path().join("s.json");
    std::fs::write(&sp, serde_json::to_vec(&sc).unwrap()).unwrap();
    let child = Command::new(bin("flb-host"))
        .arg(&sp)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Down while chunks 1 and 2 are flushed, back before chunk 3.
    std::thread::sleep(std::time::Duration::from_millis(700));
    proxy.set_up(false);
    std::thread::sleep(std::time::Duration::from_millis(4500));
    proxy.set_up(true);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let logs = logs_text(&r);
    let start = format!("S3 writer to s3://{BUCKET}/d2p/ at {}", proxy.endpoint());
    assert!(
        logs.iter().any(|(_, m)| m.contains(&start)),
        "the start-up line says where files go: {logs:?}"
    );
    assert!(
        logs.iter().any(|(_, m)| m.contains("kept in")),
        "some writes failed and were kept: {logs:?}"
    );
    assert!(
        logs.iter()
            .any(|(_, m)| m.contains("from the recovery store")),
        "and were resent: {logs:?}"
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, _, rows) in objects(&c) {
        for row in rows {
            *seen
                .entry(extra(&row, "id").unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len(), ids.len(), "every record arrived");
    assert!(seen.values().all(|&n| n == 1), "none twice");
}

/// The soak tools on S3: the generator drives the plugin into a bucket, and the
/// verifier reads the bucket back through the same settings.
#[test]
fn generator_into_s3_and_verifier_from_s3() {
    let (moto, _client) = moto_with_bucket();
    let dir = tempfile::tempdir().unwrap();
    let props = s3_props(&moto.endpoint(), BUCKET, &[("BufferSize", "900")]);
    let mut cmd = Command::new(bin("data-generator"));
    cmd.args(["host", "--count", "3000", "--seed", "21"])
        .arg("--plugin")
        .arg(plugin_path());
    for (k, v) in &props {
        cmd.arg(format!("--prop={k}={v}"));
    }
    cmd.arg(format!(
        "--prop=WriterFilePath={}",
        dir.path().join("local").display()
    ));
    let o = run(&mut cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = json_config(dir.path(), &props);
    let verify = |seed: &str, count: &str| {
        run(Command::new(bin("data-generator"))
            .args(["verify", "--s3", "--seed", seed, "--count", count])
            .arg("-c")
            .arg(&cfg))
    };
    let o = verify("21", "3000");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&v["rows"], &v["unique"]),
        (&json!(3000), &json!(3000)),
        "{v}"
    );
    assert!(v["files"].as_u64().unwrap() >= 4, "{v}");
    let o = verify("21", "3001");
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["missing_ids"],
        json!([datagen::Generator::id_of(21, 3000)])
    );
}

/// A write cut short by a crash leaves an incomplete multipart upload, which S3 keeps
/// (and bills) until it is aborted. The next start aborts ours (older than
/// S3AbortIncompleteAfter: moto dates every upload 2010, so the age rule is a unit test
/// of the writer); it leaves alone other tools' uploads in the prefix and uploads
/// outside it, and writes its own files as usual. With `off` it aborts nothing.
#[test]
fn a_start_aborts_the_uploads_a_crash_left() {
    let (moto, c) = moto_with_bucket();
    let dir = tempfile::tempdir().unwrap();
    let ours = |id: &str| {
        format!(
            "capability=buscap-00/hour=01/01KB2S5Q8M3N4P5R6S7T8V9W0{id}-buscap-00:d:s:a.parquet"
        )
    };
    let others = ["reports/q3.parquet", "capability=x/notes.txt"];
    for k in [ours("A")].iter().chain(&others.map(String::from)) {
        c.begin_upload(k, b"a part").unwrap();
    }
    let elsewhere = S3Writer::new(&config(&s3_props(
        &moto.endpoint(),
        BUCKET,
        &[("S3KeyPrefix", "elsewhere/")],
    )))
    .unwrap();
    elsewhere.begin_upload(&ours("C"), b"a part").unwrap();
    let left = || -> Vec<String> {
        let mut v: Vec<String> = c
            .incomplete_uploads()
            .unwrap()
            .into_iter()
            .map(|u| u.key)
            .collect();
        v.sort();
        v
    };
    assert_eq!(left().len(), 3);

    // Off: the upload stays.
    let props = s3_props(
        &moto.endpoint(),
        BUCKET,
        &[("S3AbortIncompleteAfter", "off")],
    );
    let o = json2parquet_s3(dir.path(), &props, &generate(54, 10));
    let log = stderr(&o);
    assert!(
        o.status.success() && !log.contains("left by interrupted writes"),
        "{log}"
    );
    assert_eq!(left().len(), 3);

    let text = generate(53, 300);
    let props = s3_props(&moto.endpoint(), BUCKET, &[("BufferSize", "1000")]);
    let o = json2parquet_s3(dir.path(), &props, &text);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "removed 1 incomplete uploads left by interrupted writes: d2p/{}",
            ours("A")
        )),
        "{log}"
    );
    let mut want: Vec<String> = others.iter().map(|k| format!("d2p/{k}")).collect();
    want.sort();
    assert_eq!(left(), want, "only the upload of ours is gone");
    assert_eq!(elsewhere.incomplete_uploads().unwrap().len(), 1);
    let by_id = rows_by_id(&props, &text);
    let mut n = 0;
    for (_, _, rows) in objects(&c) {
        for r in rows {
            let id = extra(&r, "id").unwrap().to_string();
            if let Some(w) = by_id.get(&id) {
                assert_eq!(&r, w, "{id}");
                n += 1;
            }
        }
    }
    assert_eq!(n, 300, "the run's records, once each");
}

/// A backfill straight from an S3 archive: `json2parquet s3://bucket/prefix/` reads
/// every object under the prefix in key order, plain, gzip and zstd alike whatever
/// their names, leaves out `_` and `.` names and Parquet objects, and names a bad
/// line by its object for the DLQ.
#[test]
fn json2parquet_backfills_from_an_s3_prefix() {
    use data2parquet::writer::Writer;
    use std::io::Write;
    let (moto, mut c) = moto_with_bucket();
    let dir = tempfile::tempdir().unwrap();
    let text = generate(31, 300);
    let lines: Vec<&str> = text.lines().collect();
    let part = |r: std::ops::Range<usize>| lines[r].join("\n") + "\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(part(200..300).as_bytes()).unwrap();
    let objects: Vec<(&str, Vec<u8>)> = vec![
        (
            "archive/2025/11/27/a",
            (part(0..100) + "{\"message\": broken\n").into_bytes(),
        ),
        (
            "archive/2025/11/28/b",
            zstd::encode_all(part(100..200).as_bytes(), 3).unwrap(),
        ),
        ("archive/2025/11/29.gz", gz.finish().unwrap()),
        // Not to be read: they would add rows.
        ("archive/_SUCCESS", part(0..3).into_bytes()),
        ("archive/2025/.partial", part(0..3).into_bytes()),
        ("archive/_temporary/0/x", part(0..3).into_bytes()),
        ("archive/old.parquet", b"PAR1".to_vec()),
        ("other/x", part(0..3).into_bytes()),
    ];
    for (name, bytes) in &objects {
        c.put(name, bytes).unwrap();
    }
    let props = s3_props(&moto.endpoint(), BUCKET, &[]);
    let out = dir.path().join("out.parquet");
    let dlq = dir.path().join("out.dlq.ndjson");
    let o = run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(json_config(dir.path(), &props))
        .arg("-o")
        .arg(&out)
        .arg(format!("s3://{BUCKET}/d2p/archive/")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("300 records read"), "{}", stderr(&o));
    let expected = expected_rows_in_order(&text);
    assert_eq!(data2parquet::readback::file_rows(&out).unwrap(), expected);
    let dead = read_dlq(&dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0]["source"],
        format!("s3://{BUCKET}/d2p/archive/2025/11/27/a:line 101")
    );

    // A bucket that is not there is an error that names it.
    let o = run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(json_config(dir.path(), &props))
        .arg("-o")
        .arg(dir.path().join("none.parquet"))
        .arg("s3://no-such-bucket/x/"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("listing s3://no-such-bucket/x/"),
        "{}",
        stderr(&o)
    );
}

/// An endpoint whose certificate comes from a private CA (on-premises MinIO or Ceph):
/// trusted with `S3CaFile`, refused without it, every row read back.
#[test]
fn a_private_ca_endpoint_is_trusted_with_s3_ca_file() {
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let moto = MotoServer::start_tls(&tls.join("a.crt"), &tls.join("a.key"));
    let ca = tls.join("ca-a.crt");
    let ca = ca.to_str().unwrap();
    let c = S3Writer::new(&config(&s3_props(
        &moto.endpoint(),
        BUCKET,
        &[("S3CaFile", ca)],
    )))
    .unwrap();
    // moto is up once it answers: the TLS helper only waited for its socket.
    let t = std::time::Instant::now();
    while let Err(e) = c.create_bucket() {
        assert!(t.elapsed().as_secs() < 30, "moto over HTTPS: {e}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let dir = tempfile::tempdir().unwrap();
    let text = generate(53, 600);
    let props = s3_props(
        &moto.endpoint(),
        BUCKET,
        &[
            ("BufferSize", "250"),
            ("S3CaFile", ca),
            ("WriterFilePath", dir.path().join("local").to_str().unwrap()),
        ],
    );
    let o = json2parquet_s3(dir.path(), &props, &text);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = rows_by_id(&props, &text);
    let mut n = 0;
    for (_, _, rows) in objects(&c) {
        for r in rows {
            let id = extra(&r, "id").unwrap();
            assert_eq!(Some(&r), want.get(id), "{id}");
            n += 1;
        }
    }
    assert_eq!(n, 600, "every record once");

    // Without the CA, the plugin's start fails and says why.
    let logs = init_refused_logs(s3_props(&moto.endpoint(), BUCKET, &[]));
    assert!(
        logs.iter()
            .any(|(_, m)| m.to_lowercase().contains("certificate")),
        "{logs:?}"
    );
    // A CA file that is not there is named.
    let e = S3Writer::new(&config(&s3_props(
        &moto.endpoint(),
        BUCKET,
        &[("S3CaFile", "/no/such/ca.pem")],
    )))
    .err()
    .expect("refused");
    assert!(e.to_string().contains("/no/such/ca.pem"), "{e}");
}
