//! The Redis buffer against a real redis-server started on a free loopback port: many
//! receivers, one flusher per key, crashes, restarts, lock takeover, dead letters.
//! Every test ends by reading every Parquet file back and checking that each input
//! record is there exactly once.

use crate::common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn props(redis: &RedisServer, out: &Path, extra: &[(&str, &str)]) -> Value {
    let dlq = out.join("_dlq");
    let base = [
        ("BufferType", "redis"),
        ("RedisHost", &redis.addr()),
        ("DLQPath", dlq.to_str().unwrap()),
    ];
    let all: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
    instance_props(out, &all)
}

/// Fluent Bit's retry loop, patient enough for Redis restarts.
fn scenario(instances: Vec<Value>, steps: Vec<Value>) -> Value {
    host_scenario(
        instances,
        steps,
        json!({"retry_limit": 100, "retry_delay_ms": 100}),
    )
}

/// Asserts that the files under `dirs` hold exactly the records `ids`, each once.
fn exactly_once(dirs: &[&Path], ids: &[String]) {
    if let Err(e) = check_exactly_once(dirs, ids) {
        panic!("{e}");
    }
}

/// The check behind [`exactly_once`], for tests that add their own context.
fn check_exactly_once(dirs: &[&Path], ids: &[String]) -> Result<(), String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for d in dirs {
        for (_, r) in read_dir_rows(d) {
            *seen
                .entry(extra(&r, "id").expect("id").to_string())
                .or_default() += 1;
        }
    }
    let dup: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, n)| format!("{i}x{n}"))
        .collect();
    let missing: Vec<_> = ids.iter().filter(|i| !seen.contains_key(*i)).collect();
    if !dup.is_empty() || !missing.is_empty() {
        return Err(format!(
            "{} duplicated {:?}; {} missing {:?}",
            dup.len(),
            &dup[..dup.len().min(5)],
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    if seen.len() != ids.len() {
        return Err(format!(
            "{} records beyond the input",
            seen.len() - ids.len()
        ));
    }
    Ok(())
}

fn redis_keys(r: &RedisServer, pattern: &str) -> Vec<String> {
    let mut c = r.conn().unwrap();
    redis::cmd("KEYS").arg(pattern).query(&mut c).unwrap()
}

fn flushes(paths: &[PathBuf], instance: usize) -> Value {
    json!({"flush": {"instance": instance, "chunks": paths, "tag": "r"}})
}

#[test]
fn round_trip_and_clean_up() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (files, ids) = v5_chunks(dir.path(), 41, 2000, 250);
    let out = dir.path().join("out");
    let r = run_host(
        &scenario(
            vec![props(&redis, &out, &[("BufferSize", "300")])],
            vec![flushes(&files, 0)],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), vec![1; files.len()]);
    exactly_once(&[&out], &ids);
    assert!(
        redis_keys(&redis, "data*").is_empty(),
        "all data lists consumed: {:?}",
        redis_keys(&redis, "*")
    );
    assert!(redis_keys(&redis, "lock:*").is_empty(), "locks released");
    let mut c = redis.conn().unwrap();
    let left: Vec<String> = redis::cmd("SMEMBERS").arg("keys").query(&mut c).unwrap();
    assert!(left.is_empty(), "keys set emptied: {left:?}");
}

#[test]
fn two_receivers_and_one_flusher() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, ids_a) = v5_chunks(dir.path(), 42, 1000, 200);
    let (b, ids_b) = v5_chunks(dir.path(), 43, 1000, 200);
    let (oa, ob, oc) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let recv = [("RedisSkipFlush", "true"), ("BufferSize", "100")];
    let r = run_host(
        &scenario(
            vec![
                props(&redis, &oa, &recv),
                props(&redis, &ob, &recv),
                props(
                    &redis,
                    &oc,
                    &[("BufferSize", "100"), ("FlushInterval", "200ms")],
                ),
            ],
            vec![
                flushes(&a, 0),
                flushes(&b, 1),
                json!({"exit": 0}),
                json!({"exit": 1}),
                json!({"sleep_ms": 500}),
            ],
        ),
        &[],
    );
    assert!(
        codes(&r, 0)
            .iter()
            .chain(codes(&r, 1).iter())
            .all(|c| *c == 1)
    );
    assert!(
        read_dir_rows(&oa).is_empty() && read_dir_rows(&ob).is_empty(),
        "receive-only nodes write nothing"
    );
    let all: Vec<String> = ids_a.into_iter().chain(ids_b).collect();
    exactly_once(&[&oc], &all);
}

#[test]
fn competing_flushers_write_each_record_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (files, ids) = v5_chunks(dir.path(), 44, 6000, 200);
    // Both nodes write to the same destination, as they would to one bucket: a batch
    // whose lock expired and was written by both lands twice on the same name.
    let out = dir.path().join("out");
    let p = [("BufferSize", "150"), ("FlushInterval", "100ms")];
    let (half1, half2) = files.split_at(files.len() / 2);
    let mut procs: Vec<(Child, tempfile::TempDir)> = [half1, half2]
        .into_iter()
        .map(|part| {
            let mut s = scenario(
                vec![props(&redis, &out, &p)],
                vec![flushes(part, 0), json!({"sleep_ms": 500})],
            );
            s["workers"] = json!(2);
            spawn_host(&s, &[])
        })
        .collect();
    for (c, _) in &mut procs {
        assert!(c.wait().unwrap().success());
    }
    exactly_once(&[&out], &ids);
    assert!(redis_keys(&redis, "data*").is_empty());
}

/// Starts the host without waiting (stdout is the report, discarded).
fn spawn_host(scenario: &Value, env: &[(&str, &str)]) -> (Child, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.json");
    std::fs::write(&p, serde_json::to_vec(scenario).unwrap()).unwrap();
    let mut cmd = Command::new(bin("flb-host"));
    cmd.arg(&p).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.spawn().unwrap(), d)
}

/// Sends `chunks` through a receive-only node (`RedisSkipFlush`); every chunk must be
/// accepted.
fn receive_only(redis: &RedisServer, out: &Path, chunks: &[PathBuf]) {
    let r = run_host(
        &scenario(
            vec![props(redis, out, &[("RedisSkipFlush", "true")])],
            vec![flushes(chunks, 0)],
        ),
        &[],
    );
    assert_eq!(codes(&r, 0), vec![FLB_OK; chunks.len()]);
}

#[test]
fn flusher_killed_at_random_points_loses_and_duplicates_nothing() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (files, ids) = v5_chunks(dir.path(), 45, 8000, 500);
    let out = dir.path().join("out");
    // Receive everything first, so flushers have work when killed.
    receive_only(&redis, &out, &files);
    // 20 flusher processes, each SIGKILLed at a random moment.
    let flusher = scenario(
        vec![props(
            &redis,
            &out,
            &[
                ("BufferSize", "60"),
                ("FlushInterval", "50ms"),
                ("RedisLockTTL", "1"),
            ],
        )],
        vec![json!({"sleep_ms": 5000})],
    );
    let mut seed: u64 = 0x9E37_79B9;
    for _ in 0..20 {
        let (mut child, _d) = spawn_host(&flusher, &[]);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = 100 + (seed >> 33) % 400;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let written_before = read_dir_rows(&out).len();
    assert!(written_before > 0, "the killed flushers made progress");
    // Let the dead owners' locks expire, then one flusher runs to completion.
    std::thread::sleep(Duration::from_millis(1100));
    let r = run_host(
        &scenario(
            vec![props(
                &redis,
                &out,
                &[("BufferSize", "500"), ("FlushInterval", "50ms")],
            )],
            vec![json!({"sleep_ms": 300})],
        ),
        &[],
    );
    assert_eq!(r["init"][0]["ok"], true);
    // A failure here was seen once in ~30 runs and not reproduced since; the final
    // flusher's log and what is left in Redis say which path it took.
    if let Err(e) = check_exactly_once(&[&out], &ids) {
        panic!(
            "{e}\nfinal flusher's log: {}\nleft in Redis: {:?}",
            r["logs"],
            redis_keys(&redis, "*")
        );
    }
    assert!(
        redis_keys(&redis, "data*").is_empty(),
        "{:?}",
        redis_keys(&redis, "*")
    );
}

/// What a restart run saw: each chunk's final code and how many tries it took.
struct RestartRun {
    codes: Vec<i64>,
    attempts: Vec<i64>,
    /// Whether the files hold every record exactly once.
    once: Result<(), String>,
    /// The plugin's log messages.
    logs: Vec<String>,
}

/// 46 chunks sent 60 ms apart to a plugin on Redis, which is killed 500 ms in and
/// started again `down` later.
fn restart_run(wait: &str, down: Duration, retry_limit: u64) -> RestartRun {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (files, ids) = v5_chunks(dir.path(), 46, 3000, 100);
    let out = dir.path().join("out");
    let mut steps = Vec::new();
    for f in &files {
        steps.push(flushes(std::slice::from_ref(f), 0));
        steps.push(json!({"sleep_ms": 60}));
    }
    let mut sc = scenario(
        vec![props(
            &redis,
            &out,
            &[
                ("BufferSize", "200"),
                ("RedisTimeout", "500"),
                ("BufferFullWait", wait),
            ],
        )],
        steps,
    );
    sc["retry_limit"] = json!(retry_limit);
    sc["retry_delay_ms"] = json!(100);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.json");
    std::fs::write(&p, serde_json::to_vec(&sc).unwrap()).unwrap();
    let child = Command::new(bin("flb-host"))
        .arg(&p)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    redis.stop();
    std::thread::sleep(down);
    redis.restart();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut run = RestartRun {
        codes: Vec::new(),
        attempts: Vec::new(),
        once: check_exactly_once(&[&out], &ids),
        logs: logs_text(&r).into_iter().map(|(_, m)| m).collect(),
    };
    for f in r["flushes"].as_array().unwrap() {
        let ints = |k: &str| -> Vec<i64> {
            f[k].as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_i64().unwrap())
                .collect()
        };
        run.codes.extend(ints("codes"));
        run.attempts.extend(ints("attempts"));
    }
    run
}

#[test]
fn redis_restart_mid_run_gives_retries_and_loses_nothing() {
    let run = restart_run("0", Duration::from_millis(1000), 1000);
    assert!(
        run.codes.iter().all(|c| *c == 1),
        "every chunk accepted in the end: {:?}",
        run.codes
    );
    assert!(
        run.attempts.iter().any(|a| *a > 1),
        "chunks sent while Redis was down got FLB_RETRY"
    );
    run.once.unwrap();
}

/// With `BufferFullWait`, a Redis restart shorter than the wait is ridden out inside the
/// flush: no chunk is answered FLB_RETRY, so not even `Retry_Limit 0` loses one.
#[test]
fn a_redis_restart_within_buffer_full_wait_gives_no_retries() {
    let run = restart_run("3s", Duration::from_millis(400), 0);
    assert!(
        run.codes.iter().all(|c| *c == 1),
        "every chunk accepted: {:?}",
        run.codes
    );
    assert!(
        run.attempts.iter().all(|a| *a == 1),
        "each on its first try: {:?}",
        run.attempts
    );
    assert!(
        run.logs
            .iter()
            .any(|m| m.contains("after retrying for") && m.contains("Redis")),
        "the ridden-out outage is logged: {:?}",
        run.logs
    );
    run.once.unwrap();
}

#[test]
fn expired_lock_and_orphaned_batch_are_taken_over() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (files, ids) = v5_chunks(dir.path(), 47, 300, 300);
    let out = dir.path().join("out");
    receive_only(&redis, &out, &files);
    let mut c = redis.conn().unwrap();
    let keys: Vec<String> = redis::cmd("SMEMBERS").arg("keys").query(&mut c).unwrap();
    assert!(!keys.is_empty());
    // A dead node holds every lock for 1.5 s, and left the first key's batch in flight.
    for k in &keys {
        let _: () = redis::cmd("SET")
            .arg(format!("lock:{k}"))
            .arg("dead-node-01")
            .arg("PX")
            .arg(1500)
            .query(&mut c)
            .unwrap();
    }
    let orphan = "01J00000000000000000000000";
    let k0 = &keys[0];
    let moved: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(format!("data:{k0}"))
        .arg(0)
        .arg(4)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("LTRIM")
        .arg(format!("data:{k0}"))
        .arg(5)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(format!("data-inflight:{k0}"))
        .arg(moved)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("data-inflight-id:{k0}"))
        .arg(orphan)
        .query(&mut c)
        .unwrap();
    let t = Instant::now();
    let r = run_host(
        &scenario(
            vec![props(
                &redis,
                &out,
                &[("FlushInterval", "100ms"), ("BufferSize", "1000")],
            )],
            vec![json!({"sleep_ms": 2500})],
        ),
        &[],
    );
    assert_eq!(r["init"][0]["ok"], true);
    exactly_once(&[&out], &ids);
    // The orphaned batch was written under its own id, after the lock expired.
    let names: Vec<String> = data2parquet::readback::parquet_files(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with(orphan)), "{names:?}");
    assert!(t.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn bad_records_go_to_the_redis_dlq() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let good = chunk_from_ndjson(
        &[r#"{"message":"ok","id":"g1"}"#],
        ChunkFormat::V5,
        1_700_000_000,
    );
    let mut bytes = good.clone();
    // an event whose body is not a map, then the good one again
    bytes.extend_from_slice(&[
        0x92, 0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0xa3, b'b', b'a', b'd',
    ]);
    bytes.extend_from_slice(&chunk_from_ndjson(
        &[r#"{"message":"ok2","id":"g2"}"#],
        ChunkFormat::V5,
        1_700_000_000,
    ));
    let f = dir.path().join("bad.chunk");
    std::fs::write(&f, bytes).unwrap();
    let out = dir.path().join("out");
    let r = run_host(
        &scenario(vec![props(&redis, &out, &[])], vec![flushes(&[f], 0)]),
        &[],
    );
    assert_eq!(codes(&r, 0), [1]);
    exactly_once(&[&out], &["g1".to_string(), "g2".to_string()]);
    let mut c = redis.conn().unwrap();
    let dlq: Vec<String> = redis::cmd("LRANGE")
        .arg("dlq:_unkeyed")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let e: Value = serde_json::from_str(&dlq[0]).unwrap();
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("event 1: event body is not a map"),
        "{e}"
    );
    assert_eq!(e["source"], "chunk (tag r)");
}

/// A library receiver on `redis` writing files under `out`, flushing only when asked.
fn library_receiver(
    addr: &str,
    out: &Path,
    timeout_ms: &str,
    extra: &[(&str, &str)],
) -> (
    data2parquet::receiver::Receiver,
    data2parquet::ingest::IngestSpec,
) {
    use data2parquet::config::ConfigBuilder;
    let mut b = ConfigBuilder::new();
    for (k, v) in [
        ("BufferType", "redis"),
        ("RedisHost", addr),
        ("RedisTimeout", timeout_ms),
        ("WriterFilePath", out.to_str().unwrap()),
        ("WriterFsync", "false"),
        ("BufferSize", "100000"),
        ("FlushInterval", "60s"),
    ]
    .iter()
    .chain(extra)
    {
        b.set(k, v).unwrap();
    }
    let cfg = b.build().unwrap();
    let receiver = data2parquet::receiver::Receiver::start(
        &cfg,
        std::sync::Arc::new(data2parquet::logging::NullLogger),
    )
    .unwrap();
    (
        receiver,
        data2parquet::ingest::IngestSpec::from_config(&cfg).unwrap(),
    )
}

/// [`library_receiver`] on `buffer` (`mem` or `redis`), for the tests that check a
/// setting with either buffer.
fn receiver_on(
    buffer: &str,
    redis: &RedisServer,
    out: &Path,
    extra: &[(&str, &str)],
) -> (
    data2parquet::receiver::Receiver,
    data2parquet::ingest::IngestSpec,
) {
    let settings = [&[("BufferType", buffer)], extra].concat();
    library_receiver(&redis.addr(), out, "3000", &settings)
}

/// A batch of one JSON record per id. Each has its time: a record without one is
/// stamped with the time it is decoded, so a resubmission would be other records.
fn id_batch(
    spec: &data2parquet::ingest::IngestSpec,
    ids: &[String],
) -> data2parquet::ingest::KeyedBatch {
    json_batch(spec, ids, |_, id| {
        format!(r#"{{"id":"{id}","message":"m","time":"2026-11-26T06:00:00Z"}}"#)
    })
}

/// `n` record ids: `<prefix>0`, `<prefix>1`, ...
fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// A batch of the JSON records `line(i, id)` makes, one per id.
fn json_batch(
    spec: &data2parquet::ingest::IngestSpec,
    ids: &[String],
    line: impl Fn(usize, &str) -> String,
) -> data2parquet::ingest::KeyedBatch {
    let mut d = data2parquet::ingest::Decoder::new(spec);
    let mut batch = data2parquet::ingest::KeyedBatch::new();
    for (i, id) in ids.iter().enumerate() {
        let mut bytes = line(i, id).into_bytes();
        assert!(d.json(&mut bytes, || id.clone(), &mut batch));
    }
    batch
}

/// Closes the receiver and checks that its close wrote `rows` rows, that the files hold
/// every record of `first` and `second` once, and that no push marker is left.
fn close_and_check_once(
    receiver: data2parquet::receiver::Receiver,
    redis: &RedisServer,
    out: &Path,
    rows: usize,
    first: &[String],
    second: &[String],
) {
    let report = receiver.close();
    assert_eq!(report.rows, rows, "{report:?}");
    let ids: Vec<String> = first.iter().chain(second).cloned().collect();
    exactly_once(&[out], &ids);
    assert!(redis_keys(redis, "data-push:*").is_empty());
}

fn pause(redis: &RedisServer, on: bool) {
    let sig = if on { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: kill takes plain integers; the pid is our child redis-server.
    unsafe { libc::kill(redis.pid() as i32, sig) };
}

/// The length of the only data list.
fn stored(redis: &RedisServer) -> usize {
    let data = redis_keys(redis, "data:*");
    redis::cmd("LLEN")
        .arg(&data[0])
        .query(&mut redis.conn().unwrap())
        .unwrap()
}

/// Waits (10 s at most) for the stalled push to run once Redis woke: `n` records stored.
fn wait_until_stored(redis: &RedisServer, n: usize) {
    let t = Instant::now();
    while stored(redis) < n && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stored(redis), n, "the stalled push ran once Redis woke");
}

/// A push whose reply is lost: Redis stalls with the push in its input buffer, the call
/// times out (FLB_RETRY), and Redis runs the push when it wakes. The retried submission
/// must find it stored and store nothing twice. The unsettled push's marker is there
/// until the retry; no marker outlives the close.
#[test]
fn a_retry_after_a_lost_reply_stores_nothing_twice() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) =
        library_receiver(&redis.addr(), &out, "1000", &[("BufferFullWait", "0")]);
    let (first, second) = (ids("a", 200), ids("b", 200));
    receiver.submit(id_batch(&spec, &first)).unwrap();
    pause(&redis, true);
    let lost = receiver.submit(id_batch(&spec, &second));
    pause(&redis, false);
    let why = lost.expect_err("the stalled push timed out").to_string();
    assert!(why.contains("did not answer within RedisTimeout"), "{why}");
    wait_until_stored(&redis, 400);
    assert_eq!(redis_keys(&redis, "data-push:*").len(), 1);
    receiver.submit(id_batch(&spec, &second)).unwrap();
    assert_eq!(stored(&redis), 400, "the retry stored nothing");
    close_and_check_once(receiver, &redis, &out, 400, &first, &second);
    assert!(redis_keys(&redis, "data:*").is_empty());
}

fn unavailable_waits(r: &data2parquet::receiver::Receiver) -> u64 {
    data2parquet::metrics::Metrics::get(&r.metrics().unavailable_waits)
}

/// Redis stalls with a push in its input buffer, as in the test above, but only for a
/// moment: the receiver's own retries within `BufferFullWait` time out until it wakes
/// and runs the push, and the next retry finds it stored. The submission succeeds and
/// its records are stored once.
#[test]
fn a_lost_reply_retried_within_buffer_full_wait_is_stored_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) =
        library_receiver(&redis.addr(), &out, "200", &[("BufferFullWait", "3s")]);
    let (first, second) = (ids("a", 200), ids("b", 200));
    receiver.submit(id_batch(&spec, &first)).unwrap();
    pause(&redis, true);
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            pause(&redis, false);
        });
        receiver.submit(id_batch(&spec, &second))
    });
    res.expect("ridden out within the wait");
    assert_eq!(unavailable_waits(&receiver), 1);
    assert_eq!(stored(&redis), 400, "stored once");
    close_and_check_once(receiver, &redis, &out, 400, &first, &second);
}

/// A Redis that answers "not now" (here MASTERDOWN: a replica that lost its master, as
/// during a failover) aborts the receive's MULTI. That is waited for like an outage,
/// and the receive is stored once the node is a master again.
#[test]
fn a_redis_that_answers_not_now_is_waited_for() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) =
        library_receiver(&redis.addr(), &out, "1000", &[("BufferFullWait", "3s")]);
    let (first, second) = (ids("a", 100), ids("b", 100));
    receiver.submit(id_batch(&spec, &first)).unwrap();
    let mut c = redis.conn().unwrap();
    for (k, v) in [
        ("replica-serve-stale-data", "no"),
        ("replica-read-only", "no"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(&mut c)
            .unwrap();
    }
    let nobody = free_port().to_string();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(&nobody)
        .query(&mut c)
        .unwrap();
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            let _: () = redis::cmd("REPLICAOF")
                .arg("NO")
                .arg("ONE")
                .query(&mut redis.conn().unwrap())
                .unwrap();
        });
        receiver.submit(id_batch(&spec, &second))
    });
    res.expect("waited until the node was a master again");
    assert_eq!(unavailable_waits(&receiver), 1);
    close_and_check_once(receiver, &redis, &out, 200, &first, &second);
}

/// A TCP proxy to Redis that can hold what clients send, as a congested network would:
/// bytes sent while `hold` is set reach Redis only once `release` is set, even if the
/// client has given up and closed its connection by then.
struct HoldingProxy {
    port: u16,
    hold: std::sync::Arc<std::sync::atomic::AtomicBool>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HoldingProxy {
    fn start(upstream: String) -> HoldingProxy {
        use std::io::{Read, Write};
        use std::net::TcpStream;
        use std::sync::atomic::Ordering::SeqCst;
        let listener = listen_free();
        let port = listener.local_addr().unwrap().port();
        let hold = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, r) = (hold.clone(), release.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let (h, r) = (h.clone(), r.clone());
                std::thread::spawn(move || {
                    let (mut held, mut buf) = (Vec::new(), [0u8; 65536]);
                    loop {
                        match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) if h.load(SeqCst) || !held.is_empty() => {
                                held.extend_from_slice(&buf[..n])
                            }
                            Ok(n) => {
                                if server.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    while !held.is_empty() && !r.load(SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let _ = server.write_all(&held);
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        HoldingProxy {
            port,
            hold,
            release,
        }
    }

    fn set(flag: &std::sync::atomic::AtomicBool, on: bool) {
        flag.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A push held up in the network: the call times out, and the push reaches Redis only
/// after its retry has been answered. The retry must fence it off first (it kills the
/// connection it went out on), or the records would be stored twice.
#[test]
fn a_push_held_in_the_network_cannot_land_after_its_retry() {
    let redis = RedisServer::start();
    let proxy = HoldingProxy::start(redis.addr());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let addr = format!("127.0.0.1:{}", proxy.port);
    let (receiver, spec) = library_receiver(&addr, &out, "1000", &[("BufferFullWait", "0")]);
    let (first, second) = (ids("a", 200), ids("b", 200));
    receiver.submit(id_batch(&spec, &first)).unwrap();
    HoldingProxy::set(&proxy.hold, true);
    let lost = receiver.submit(id_batch(&spec, &second));
    HoldingProxy::set(&proxy.hold, false);
    assert!(lost.is_err(), "the held push timed out: {lost:?}");
    assert_eq!(stored(&redis), 200, "the held push has not reached Redis");
    receiver.submit(id_batch(&spec, &second)).unwrap();
    assert_eq!(stored(&redis), 400, "the retry stored the records");
    HoldingProxy::set(&proxy.release, true);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stored(&redis),
        400,
        "the held push, released, stored nothing"
    );
    close_and_check_once(receiver, &redis, &out, 400, &first, &second);
}

/// A receive that Redis answers with an error ran in part or not at all: here the data
/// list is a string (WRONGTYPE) while the push marker and the keys set are written. The
/// retry must fail the same way instead of taking the marker for a stored receive, and
/// store the records once the key is fixed.
#[test]
fn a_receive_redis_refuses_is_never_taken_for_stored() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) = library_receiver(&redis.addr(), &out, "1000", &[]);
    let (first, second) = (ids("a", 50), ids("b", 50));
    receiver.submit(id_batch(&spec, &first)).unwrap();
    let key = redis_keys(&redis, "data:*").remove(0);
    assert_eq!(receiver.flush().unwrap().rows, 50);
    let mut c = redis.conn().unwrap();
    let _: () = redis::cmd("SET").arg(&key).arg("x").query(&mut c).unwrap();
    for attempt in 0..2 {
        let r = receiver.submit(id_batch(&spec, &second));
        let e = r.expect_err("the data list is a string").to_string();
        assert!(e.contains("WRONGTYPE"), "attempt {attempt}: {e}");
    }
    assert_eq!(
        unavailable_waits(&receiver),
        0,
        "an answer that waiting will not change is not waited for"
    );
    let _: () = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
    receiver.submit(id_batch(&spec, &second)).unwrap();
    close_and_check_once(receiver, &redis, &out, 50, &first, &second);
}

/// A write that fails, for part of a batch or all of it, leaves the whole batch in flight
/// in Redis, to be written again under the same file names: nothing lost, nothing twice.
/// So does a batch too large to hold at once (25,000 records, read 10,000 at a time
/// where it is written): written again, its files keep their names.
#[test]
fn a_failed_write_keeps_the_whole_batch_in_redis() {
    let redis = RedisServer::start();
    for n in [100, 25_000] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let (receiver, spec) =
            library_receiver(&redis.addr(), &out, "1000", &[("PartitionTime", "record")]);
        // Half the records belong to an hour whose folder is blocked by a plain file.
        let blocked = out.join("capability=cap/year=2026/month=11/day=26/hour=01");
        std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
        std::fs::write(&blocked, b"not a folder").unwrap();
        let ids = ids("r", n);
        let batch = json_batch(&spec, &ids, |i, id| {
            let hour = i % 2;
            format!(
                r#"{{"id":"{id}","message":"m","business-capability":"cap","time":"2026-11-26T0{hour}:00:00Z"}}"#
            )
        });
        receiver.submit(batch).unwrap();
        let partly = receiver.flush().unwrap();
        assert_eq!(partly.rows, n / 2, "hour 00 written: {partly:?}");
        assert_eq!(partly.errors.len(), 1, "{partly:?}");
        std::fs::remove_file(&blocked).unwrap();
        let again = receiver.flush().unwrap();
        assert_eq!(again.rows, n, "the whole batch again: {again:?}");
        assert!(again.errors.is_empty(), "{again:?}");
        let paged = receiver.metrics().render_prometheus();
        let want = match n {
            100 => "\nd2p_batches_paged_total 0\n",
            _ => "\nd2p_batches_paged_total 2\n",
        };
        assert!(paged.contains(want), "read in pages when large: {want}");
        receiver.close();
        exactly_once(&[&out], &ids);
        assert_eq!(data2parquet::readback::parquet_files(&out).len(), 2);
        assert!(redis_keys(&redis, "data*").is_empty());
    }
}

/// A batch of more than a page is read where it is written, without the key's lock, so
/// each read is fenced by the batch's in-flight id: once another node has taken the
/// batch over (its lock expired) and moved on, a read fails rather than return
/// another batch's records or a part of one.
#[test]
fn a_paged_batch_cannot_be_read_once_another_node_took_it_over() {
    use data2parquet::buffer::Buffer;
    let redis = RedisServer::start();
    let mut b = data2parquet::config::ConfigBuilder::new();
    b.set("BufferType", "redis").unwrap();
    b.set("RedisHost", &redis.addr()).unwrap();
    let cfg = b.build().unwrap();
    let spec = data2parquet::ingest::IngestSpec::from_config(&cfg).unwrap();
    let mut buffer =
        data2parquet::buffer::redis::RedisBuffer::connect(&cfg.redis, Duration::from_secs(60))
            .unwrap();
    let groups = id_batch(&spec, &ids("p", 15_000)).groups;
    let key = groups[0].0.clone();
    buffer.push(groups).unwrap();
    let batch = buffer.take(&key, 100_000).unwrap().unwrap();
    assert!(batch.records.is_empty(), "nothing read at the take");
    let pages = batch.pages.clone().expect("read in pages");
    assert_eq!(pages.total(), 15_000);
    let (tail, bad) = pages.read(10_000, 10_000).unwrap();
    assert_eq!((tail.len(), bad.len()), (5_000, 0));
    assert!(
        tail[0].to_json().contains(r#""id":"p10000""#),
        "{}",
        tail[0].to_json()
    );

    let mut c = redis.conn().unwrap();
    let id_key = &redis_keys(&redis, "data-inflight-id:*")[0];
    let list = &redis_keys(&redis, "data-inflight:*")[0];
    // Another node wrote and acknowledged the batch, and took the key's next one.
    let _: () = redis::cmd("SET")
        .arg(id_key)
        .arg("01JOTHERBATCH0000000000000")
        .query(&mut c)
        .unwrap();
    let e = pages.read(0, 10_000).unwrap_err().to_string();
    assert!(e.contains("another node took it over"), "{e}");
    // The same id over a shorter list: not a whole page either.
    let _: () = redis::cmd("SET")
        .arg(id_key)
        .arg(batch.id.to_string())
        .query(&mut c)
        .unwrap();
    assert_eq!(pages.read(0, 10_000).unwrap().0.len(), 10_000);
    let _: () = redis::cmd("LTRIM")
        .arg(list)
        .arg(0)
        .arg(99)
        .query(&mut c)
        .unwrap();
    assert!(pages.read(0, 10_000).is_err());
}

/// Pages are bounded by bytes too: 300 records of 200 KB (60 MB in Redis) are fewer
/// than a page of records, but are read about 80 at a time, and still make one file
/// with every record whole.
#[test]
fn a_batch_of_large_records_is_read_in_pages_by_its_bytes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) = library_receiver(&redis.addr(), &out, "3000", &[]);
    let big = |i: usize| format!("{i:06}-{}", "x".repeat(200_000));
    let all = ids("big-", 300);
    let batch = json_batch(&spec, &all, |i, id| {
        format!(
            r#"{{"id":"{id}","message":"{}","time":"2026-11-26T06:00:00Z"}}"#,
            big(i)
        )
    });
    receiver.submit(batch).unwrap();
    let report = receiver.flush().unwrap();
    assert_eq!((report.rows, report.files), (300, 1), "{report:?}");
    let m = receiver.metrics().render_prometheus();
    assert!(m.contains("\nd2p_batches_paged_total 1\n"), "read in pages");
    receiver.close();
    let rows = read_dir_rows(&out);
    assert_eq!(rows.len(), 300);
    for (_, row) in &rows {
        let id = extra(row, "id").unwrap();
        let i: usize = id.rsplit('-').next().unwrap().parse().unwrap();
        assert!(row["message"] == big(i), "record {id} whole");
    }
}

/// With Redis, FileMaxAge is how long a key's records wait there (durably) before
/// they are written, whatever FlushInterval: 25,000 records sent in bursts come out
/// as one file once the oldest has waited FileMaxAge, not one per FlushInterval. The
/// batch is more than a page, so it is read where it is written; no spool is left.
#[test]
fn with_redis_file_max_age_is_how_long_records_wait_in_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let started = Instant::now();
    let (receiver, spec) = library_receiver(
        &redis.addr(),
        &out,
        "3000",
        &[
            ("FileMaxAge", "4"),
            ("FlushInterval", "1"),
            ("FileTargetSize", "64MiB"),
        ],
    );
    let all = ids("w-", 25_000);
    submit_log_messages(&receiver, &spec, &all);
    let parquet = || data2parquet::readback::parquet_files(&out);
    // Checked only while that is sure to be before FileMaxAge: a slow machine may take
    // seconds to send.
    if started.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(1500));
        assert!(parquet().is_empty(), "written before FileMaxAge");
    }
    let t = Instant::now();
    // What stays is the key's FileTargetSize estimate (`data-size:`).
    let held = || {
        let mut k = redis_keys(&redis, "data:*");
        k.extend(redis_keys(&redis, "data-inflight*"));
        k
    };
    while (parquet().is_empty() || !held().is_empty()) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let files = files_by_first_record(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!((files[0].0, files[0].1), (0, 25_000));
    assert_eq!(held(), Vec::<String>::new(), "acknowledged");
    let m = receiver.metrics().render_prometheus();
    assert!(m.contains("\nd2p_batches_paged_total 1\n"), "read in pages");
    let report = receiver.close();
    assert_eq!((report.rows, report.errors.len()), (0, 0), "{report:?}");
    let left: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "parquet"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Redis stalls (every call times out) just as a flusher closes. The close must not end
/// with the records left behind: it looks again once Redis answers.
#[test]
fn close_after_a_redis_stall_still_drains_everything() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) = library_receiver(&redis.addr(), &out, "100", &[]);
    let ids = ids("r", 2000);
    receiver.submit(id_batch(&spec, &ids)).unwrap();

    // SIGSTOP: connections stay open and every call times out, as in a stall. Redis
    // answers again 200 ms into the close.
    pause(&redis, true);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            pause(&redis, false);
        });
        receiver.close()
    });
    assert_eq!(report.rows, ids.len(), "{report:?}");
    exactly_once(&[&out], &ids);
    assert!(redis_keys(&redis, "data*").is_empty());
}

/// Two requests with the same records under different idempotency keys, the first one's
/// reply lost: the second settles as its retry (its records are already stored), and
/// its own answer is still written, so each key is answered later.
#[test]
fn a_settled_retry_still_keeps_its_own_idempotency_answer() {
    use data2parquet::idempotency::Seal;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) =
        library_receiver(&redis.addr(), &out, "1000", &[("BufferFullWait", "0")]);
    let (warm, recs) = (ids("w", 10), ids("s", 100));
    // The pusher's connection is up before Redis stalls, so the push is sent.
    receiver.submit(id_batch(&spec, &warm)).unwrap();
    let seal = |k: &str| Seal {
        key: format!("data-idem:{k}"),
        value: format!("answer for {k}"),
        ttl: Duration::from_secs(600),
    };
    pause(&redis, true);
    let lost = receiver.submit_sealed(id_batch(&spec, &recs), &seal("k1"));
    pause(&redis, false);
    assert!(lost.is_err(), "the stalled push timed out");
    wait_until_stored(&redis, 110);
    let again = receiver
        .submit_sealed(id_batch(&spec, &recs), &seal("k2"))
        .unwrap();
    assert!(again.sealed);
    assert_eq!(stored(&redis), 110, "stored once");
    let mut c = redis.conn().unwrap();
    for k in ["k1", "k2"] {
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("data-idem:{k}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v.as_deref(), Some(format!("answer for {k}").as_str()));
    }
    close_and_check_once(receiver, &redis, &out, 110, &warm, &recs);
}

/// The buffer gauges on `redis`: records and partition keys of the shared buffer, as
/// the buffer thread's sweeps read them, back to zero once a flush wrote them.
#[test]
fn the_buffer_gauges_count_redis_records_and_keys() {
    use data2parquet::metrics::Metrics;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Sweeps every FlushInterval/4 (2.5 s), and no interval flush within the test.
    let (receiver, spec) =
        library_receiver(&redis.addr(), &out, "1000", &[("FlushInterval", "10s")]);
    let ids = ids("g", 90);
    let batch = json_batch(&spec, &ids, |i, id| {
        format!(
            r#"{{"id":"{id}","message":"m","business-capability":"cap{}","time":"2026-11-26T06:00:00Z"}}"#,
            i % 3
        )
    });
    receiver.submit(batch).unwrap();
    let gauges = |r: &data2parquet::receiver::Receiver| {
        let m = r.metrics();
        (
            Metrics::get(&m.buffer_records),
            Metrics::get(&m.buffer_keys),
        )
    };
    let t = Instant::now();
    while gauges(&receiver) != (90, 3) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(gauges(&receiver), (90, 3), "90 records under 3 keys");
    let text = receiver.metrics().render_prometheus();
    assert!(text.contains("d2p_buffer_keys 3\n"), "{text}");
    // The lag gauge counts from when this node first saw the keys' records.
    let lag = || Metrics::get(&receiver.metrics().buffer_oldest_ms);
    let t = Instant::now();
    while lag() == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lag() > 0 && lag() < 10_000, "{} ms", lag());
    assert_eq!(receiver.flush().unwrap().rows, 90);
    assert_eq!(gauges(&receiver), (0, 0), "a flush empties the buffer");
    let m = receiver.metrics();
    let counts = [&m.records_in, &m.records_out, &m.files_written].map(Metrics::get);
    assert_eq!(counts, [90, 90, 3], "records in and out, files");
    let size: u64 = data2parquet::readback::parquet_files(&out)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(Metrics::get(&m.bytes_written), size);
    receiver.close();
    exactly_once(&[&out], &ids);
    assert_eq!(data2parquet::readback::parquet_files(&out).len(), 3);
}

/// `FileTargetSize` sizes files by their encoded bytes, with either buffer: the first
/// file is BufferSize records (nothing is known yet), the second is sized from the first,
/// and from the third on files are within 10 % of the target, though the input comes in
/// bursts as fast as the receiver takes it. Every record is written once, in order, with
/// its own message.
#[test]
fn file_target_size_sizes_files_with_either_buffer() {
    const TARGET: u64 = 256 * 1024;
    let redis = RedisServer::start();
    for buffer in ["mem", "redis"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let (receiver, spec) = receiver_on(buffer, &redis, &out, TARGET_PROPS);
        let all = ids(&format!("{buffer}-"), 40_000);
        submit_log_messages(&receiver, &spec, &all);
        let report = receiver.close();
        assert_eq!((report.lost, report.errors.len()), (0, 0), "{report:?}");
        exactly_once(&[&out], &all);

        let files = files_by_first_record(&out);
        let sizes: Vec<u64> = files.iter().map(|f| f.2).collect();
        // Oldest first: each file continues where the one before it ended.
        for w in files.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "{buffer}: files out of order");
        }
        assert_eq!(files[0].1, 200, "{buffer}: BufferSize sizes the first file");
        assert!(
            files[1].1 > 200,
            "{buffer}: one BufferSize file, then what it taught: {sizes:?}"
        );
        assert!(files.len() >= 5, "{buffer}: {sizes:?}");
        // The second file is the first estimate's (a small first file compresses
        // worse); from the third on, files are within a few per cent of the target,
        // up to the close's remainder.
        for &(_, _, bytes) in &files[2..files.len() - 1] {
            assert!(
                (TARGET * 9 / 10..=TARGET * 11 / 10).contains(&bytes),
                "{buffer}: files should come out near the target: {sizes:?}"
            );
        }
        assert!(
            sizes[1] <= TARGET * 11 / 10,
            "{buffer}: the second file is not above the target: {sizes:?}"
        );
    }
}

/// A message that compresses like log text, not like a repeated constant.
fn log_message(i: usize) -> String {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "request {h:016x} served in {} ms by node-{}",
        h % 997,
        h % 7
    )
}

/// The settings of the `FileTargetSize` tests: a 256 KiB target, a first file of 200
/// records, room in memory for the bursts, and no interval flush.
const TARGET_PROPS: &[(&str, &str)] = &[
    ("BufferSize", "200"),
    ("FileTargetSize", "256KiB"),
    ("BufferMaxBytes", "256MiB"),
    ("FlushInterval", "3600"),
];

/// Submits one record per id, in bursts of 1,000; record `i` (the id's number after its
/// last `-`) carries `log_message(i)`.
fn submit_log_messages(
    receiver: &data2parquet::receiver::Receiver,
    spec: &data2parquet::ingest::IngestSpec,
    all: &[String],
) {
    for (n, chunk) in all.chunks(1000).enumerate() {
        let batch = json_batch(spec, chunk, |i, id| {
            let m = log_message(n * 1000 + i);
            format!(r#"{{"id":"{id}","message":"{m}","time":"2026-11-26T06:00:00Z"}}"#)
        });
        receiver.submit(batch).unwrap();
    }
}

/// Per file under `out`, oldest records first: where it starts in the input, its rows
/// and its size. Checks every record's message on the way.
fn files_by_first_record(out: &Path) -> Vec<(usize, usize, u64)> {
    let mut files: HashMap<PathBuf, (usize, usize)> = HashMap::new();
    for (path, row) in read_dir_rows(out) {
        let id = extra(&row, "id").unwrap();
        let i: usize = id.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(row["message"], log_message(i), "record {id}");
        let f = files.entry(path).or_insert((0, usize::MAX));
        f.0 += 1;
        f.1 = f.1.min(i);
    }
    let mut files: Vec<_> = files
        .into_iter()
        .map(|(p, (rows, first))| (first, rows, std::fs::metadata(p).unwrap().len()))
        .collect();
    files.sort();
    files
}

/// With the Redis buffer, `FileTargetSize` estimates are stored with the acks: a node
/// that starts later (here, after the first closed) sizes its first file from what the
/// first node learned, instead of a `BufferSize` probe.
#[test]
fn a_new_node_sizes_its_first_file_from_the_estimate_another_node_stored() {
    const TARGET: u64 = 256 * 1024;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    let mut outs = Vec::new();
    for node in ["a", "b"] {
        let out = dir.path().join(node);
        let (receiver, spec) = library_receiver(&redis.addr(), &out, "3000", TARGET_PROPS);
        let these = ids(&format!("{node}-"), 25_000);
        submit_log_messages(&receiver, &spec, &these);
        let report = receiver.close();
        assert_eq!((report.lost, report.errors.len()), (0, 0), "{report:?}");
        all.extend(these);
        outs.push(out);
    }
    let dirs: Vec<&Path> = outs.iter().map(PathBuf::as_path).collect();
    exactly_once(&dirs, &all);

    let a = files_by_first_record(&outs[0]);
    assert_eq!(a[0].1, 200, "the first node probes with BufferSize: {a:?}");
    let b = files_by_first_record(&outs[1]);
    assert!(b.len() >= 2, "{b:?}");
    assert!(
        b[0].1 > 200,
        "the second node starts from the stored estimate: {b:?}"
    );
    // Every file but the close's remainder is near the target.
    for &(_, _, bytes) in &b[..b.len() - 1] {
        assert!(
            (TARGET * 9 / 10..=TARGET * 11 / 10).contains(&bytes),
            "files should come out near the target: {b:?}"
        );
    }
    // What Redis holds: `<RedisDataPrefix>-size:<key>`, in its versioned form, expiring.
    let mut c = redis.conn().unwrap();
    let names: Vec<String> = redis::cmd("KEYS").arg("data-size:*").query(&mut c).unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    let note: String = redis::cmd("GET").arg(&names[0]).query(&mut c).unwrap();
    assert!(note.starts_with("v1 "), "{note}");
    let ttl: i64 = redis::cmd("TTL").arg(&names[0]).query(&mut c).unwrap();
    assert!((2_500_000..=2_592_000).contains(&ttl), "{ttl}");
}

/// A batch larger than one read page (10,000 records) is read back whole and in order.
#[test]
fn a_batch_larger_than_a_read_page_is_read_whole_and_in_order() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (receiver, spec) = library_receiver(&redis.addr(), &out, "3000", &[]);
    let all = ids("p", 25_000);
    for chunk in all.chunks(5000) {
        receiver.submit(id_batch(&spec, chunk)).unwrap();
    }
    let report = receiver.close();
    assert_eq!((report.files, report.rows, report.lost), (1, 25_000, 0));
    let rows: Vec<String> = read_dir_rows(&out)
        .iter()
        .map(|(_, r)| extra(r, "id").unwrap().to_string())
        .collect();
    assert_eq!(rows, all, "every record once, in the order it came");
}

/// Two flushing nodes share one Redis key with `FileTargetSize`: each learns from its
/// own files, takes under the key's lock, and between them they write every record
/// once, with no file far above the target.
#[test]
fn two_flushing_nodes_with_a_file_target_write_each_record_once() {
    const TARGET: u64 = 256 * 1024;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let outs = [dir.path().join("a"), dir.path().join("b")];
    let settings = [
        ("BufferSize", "200"),
        ("FileTargetSize", "256KiB"),
        ("FlushInterval", "3600"),
    ];
    let nodes: Vec<_> = outs
        .iter()
        .map(|out| library_receiver(&redis.addr(), out, "3000", &settings))
        .collect();
    let all: Vec<Vec<String>> = ["a-", "b-"].iter().map(|p| ids(p, 20_000)).collect();
    std::thread::scope(|s| {
        for (node, ((receiver, spec), mine)) in nodes.iter().zip(&all).enumerate() {
            s.spawn(move || {
                for (n, chunk) in mine.chunks(1000).enumerate() {
                    let batch = json_batch(spec, chunk, |i, id| {
                        // Distinct per node: the estimate assumes the data compresses
                        // alike from file to file, which twins across nodes would break.
                        let seq = (node * 1_000_000 + n * 1000 + i) as u64;
                        let h = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        format!(
                            r#"{{"id":"{id}","message":"request {h:016x} took {} ms","time":"2026-11-26T06:00:00Z"}}"#,
                            h % 997
                        )
                    });
                    receiver.submit(batch).unwrap();
                }
            });
        }
    });
    for (receiver, _) in nodes {
        let report = receiver.close();
        assert_eq!((report.lost, report.errors.len()), (0, 0), "{report:?}");
    }
    let every: Vec<String> = all.concat();
    exactly_once(&[&outs[0], &outs[1]], &every);
    let mut sizes = Vec::new();
    for out in &outs {
        for f in data2parquet::readback::parquet_files(out) {
            sizes.push(std::fs::metadata(&f).unwrap().len());
        }
    }
    assert!(sizes.len() >= 4, "{sizes:?}");
    assert!(
        sizes.iter().all(|&b| b <= TARGET * 11 / 10),
        "a file far above the target: {sizes:?}"
    );
}

/// `DLQMaxBytes` bounds the dead-letter queue with either buffer: the file, or the Redis
/// list. Rejected records past it are counted, not kept; the good records of the same
/// batches are still written, each once.
#[test]
fn the_dlq_holds_at_most_its_limit_with_either_buffer() {
    use data2parquet::metrics::Metrics;
    const LIMIT: u64 = 16 * 1024;
    let redis = RedisServer::start();
    for buffer in ["mem", "redis"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let dlq_dir = dir.path().join("dlq");
        let (receiver, spec) = receiver_on(
            buffer,
            &redis,
            &out,
            &[
                ("DLQPath", dlq_dir.to_str().unwrap()),
                ("DLQMaxBytes", "16KiB"),
            ],
        );
        let mut d = data2parquet::ingest::Decoder::new(&spec);
        let mut good = Vec::new();
        for round in 0..4 {
            let mut batch = data2parquet::ingest::KeyedBatch::new();
            for i in 0..50 {
                // A truncated record of about 300 bytes, then a good one.
                let mut bad = format!(r#"{{"message":"{}"#, "x".repeat(280)).into_bytes();
                assert!(!d.json(&mut bad, || format!("round {round} bad {i}"), &mut batch));
                let id = format!("{buffer}-{round}-{i}");
                let mut ok = format!(r#"{{"id":"{id}","message":"ok"}}"#).into_bytes();
                assert!(d.json(&mut ok, || id.clone(), &mut batch));
                good.push(id);
            }
            receiver.submit(batch).unwrap();
        }
        let m = receiver.metrics();
        let (kept, dropped) = (Metrics::get(&m.dlq_records), Metrics::get(&m.dlq_dropped));
        assert_eq!(
            kept + dropped,
            200,
            "{buffer}: every rejected record is counted"
        );
        assert!(
            kept > 0 && dropped > 0,
            "{buffer}: {kept} kept, {dropped} dropped"
        );
        let report = receiver.close();
        assert_eq!((report.lost, report.errors.len()), (0, 0), "{report:?}");
        exactly_once(&[&out], &good);
        let entries: Vec<String> = if buffer == "mem" {
            let files: Vec<_> = std::fs::read_dir(&dlq_dir).unwrap().collect();
            assert_eq!(files.len(), 1);
            let path = files[0].as_ref().unwrap().path();
            assert!(std::fs::metadata(&path).unwrap().len() <= LIMIT);
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(String::from)
                .collect()
        } else {
            let mut c = redis.conn().unwrap();
            let v: Vec<String> = redis::cmd("LRANGE")
                .arg("dlq:_unkeyed")
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap();
            let used: u64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg("dlq:_unkeyed")
                .query(&mut c)
                .unwrap();
            // Each entry was pushed only while the list's estimate left room for it.
            assert!(used <= LIMIT + 1024, "{used}");
            let _: i64 = redis::cmd("DEL").arg("dlq:_unkeyed").query(&mut c).unwrap();
            v
        };
        assert_eq!(entries.len() as u64, kept, "{buffer}");
        let bytes: usize = entries.iter().map(String::len).sum();
        assert!(bytes as u64 <= LIMIT, "{buffer}: {bytes}");
        // The oldest are kept, whole, with their reason and raw input.
        let first: Value = serde_json::from_str(&entries[0]).unwrap();
        assert_eq!(first["source"], "round 0 bad 0", "{buffer}");
        assert!(first["raw"].as_str().unwrap().ends_with("xxx"), "{first}");
    }
}

/// `BufferMaxKeys` with either buffer: a submission whose new partition keys would pass
/// the limit is refused whole (FLB_RETRY / 429) and stores nothing; records of keys
/// already held still fit; once what is buffered is written, the same submission is
/// taken. Every record is then written once.
#[test]
fn buffer_max_keys_refuses_new_keys_past_it_with_either_buffer() {
    use data2parquet::receiver::SubmitError;
    let redis = RedisServer::start();
    for buffer in ["mem", "redis"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let (receiver, spec) = receiver_on(
            buffer,
            &redis,
            &out,
            &[("BufferMaxKeys", "5"), ("BufferFullWait", "0")],
        );
        // Records (id, service); the service is one of the partition fields.
        let mut n = 0;
        let mut records = |services: &[usize]| -> Vec<(String, usize)> {
            services
                .iter()
                .map(|&s| {
                    n += 1;
                    (format!("{buffer}-{n}"), s)
                })
                .collect()
        };
        let batch = |recs: &[(String, usize)]| {
            let mut d = data2parquet::ingest::Decoder::new(&spec);
            let mut batch = data2parquet::ingest::KeyedBatch::new();
            for (id, s) in recs {
                let mut rec =
                    format!(r#"{{"id":"{id}","business-service":"svc-{s}","message":"m"}}"#)
                        .into_bytes();
                assert!(d.json(&mut rec, || id.clone(), &mut batch));
            }
            batch
        };
        let ids =
            |recs: &[(String, usize)]| recs.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
        let mut written = Vec::new();
        let first = records(&[0, 1, 2, 3, 0, 1]);
        receiver.submit(batch(&first)).unwrap();
        written.extend(ids(&first));
        let refused = records(&[4, 5, 0]);
        match receiver.submit(batch(&refused)) {
            Err(SubmitError::Full(why)) => assert!(
                why.contains("BufferMaxKeys=5") && why.contains("4 partition keys"),
                "{buffer}: {why}"
            ),
            other => panic!("{buffer}: two new keys past the limit were not refused: {other:?}"),
        }
        if buffer == "redis" {
            let mut c = redis.conn().unwrap();
            let held: i64 = redis::cmd("SCARD").arg("keys").query(&mut c).unwrap();
            assert_eq!(held, 4, "nothing of the refused push was stored");
            // Exactly at the limit: one new key and a held one.
            let fits = records(&[4, 2]);
            receiver.submit(batch(&fits)).unwrap();
            written.extend(ids(&fits));
            let held: i64 = redis::cmd("SCARD").arg("keys").query(&mut c).unwrap();
            assert_eq!(held, 5);
        }
        // Fluent Bit's retry of the refused chunk: taken once what is held is written
        // (the mem buffer wrote it when it refused; Redis keys drain with a flush).
        receiver.flush().unwrap();
        let retry = records(&[4, 5, 0]);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match receiver.submit(batch(&retry)) {
                Ok(_) => break,
                Err(SubmitError::Full(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("{buffer}: the retry was refused: {e:?}"),
            }
        }
        written.extend(ids(&retry));
        let report = receiver.close();
        assert_eq!((report.lost, report.errors.len()), (0, 0), "{report:?}");
        exactly_once(&[&out], &written);
        let rows = read_dir_rows(&out);
        assert_eq!(
            rows.len(),
            written.len(),
            "{buffer}: the refused records were written"
        );
        for (id, _) in &refused {
            assert!(
                !rows
                    .iter()
                    .any(|(_, r)| extra(r, "id") == Some(id.as_str())),
                "{buffer}: {id} of the refused submission was written"
            );
        }
    }
}

/// A Redis with TLS that asks for client certificates, as a self-managed one does:
/// with the CA and a client certificate the records go through it and are read back;
/// without the client certificate, or without the CA, the connection is refused.
#[test]
fn a_tls_redis_with_client_certificates_carries_every_record() {
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let redis = RedisServer::start_tls(
        &tls.join("a.crt"),
        &tls.join("a.key"),
        &tls.join("ca-c.crt"),
    );
    let host = format!("127.0.0.1:{}", redis.tls_port());
    let (ca, cert, key) = (
        tls.join("ca-a.crt"),
        tls.join("client.crt"),
        tls.join("client.key"),
    );
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );

    // Through the library's own connection: each missing piece is refused.
    let conn = |pairs: &[(&str, &str)]| {
        let mut b = data2parquet::config::ConfigBuilder::new();
        b.set("RedisHost", &host).unwrap();
        for (k, v) in pairs {
            b.set(k, v).unwrap();
        }
        let cfg = b.build().unwrap();
        let mut c = data2parquet::redis_conn::RedisConn::new(&cfg.redis)?;
        redis::cmd("PING").query::<String>(c.get()?)
    };
    let full = [
        ("RedisCaFile", ca),
        ("RedisTlsCertFile", cert),
        ("RedisTlsKeyFile", key),
    ];
    assert_eq!(conn(&full).unwrap(), "PONG");
    assert!(conn(&full[..1]).is_err(), "no client certificate");
    assert!(conn(&full[1..]).is_err(), "the server's CA not trusted");

    // The plugin, buffering in that Redis.
    let dir = tempfile::tempdir().unwrap();
    let (files, ids) = v5_chunks(dir.path(), 43, 900, 300);
    let out = dir.path().join("out");
    let mut extra = vec![("BufferSize", "400")];
    extra.extend(full);
    let mut p = props(&redis, &out, &extra);
    p["RedisHost"] = json!(host);
    let r = run_host(&scenario(vec![p], vec![flushes(&files, 0)]), &[]);
    assert_eq!(codes(&r, 0), vec![1; files.len()]);
    exactly_once(&[&out], &ids);
    assert!(
        redis_keys(&redis, "data*").is_empty(),
        "consumed through TLS"
    );
}
