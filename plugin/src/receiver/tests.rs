//! The receiver end to end: flushes by size, interval and close, files kept open,
//! backpressure, recovery and the DLQ, on the mem buffer and the file writer.

use super::*;
use crate::config::ConfigBuilder;
use crate::ingest::{Decoder, IngestSpec};
use crate::logging::NullLogger;
use crate::readback::{file_rows, parquet_files};
use crate::writer::recovery::Pass;
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

fn cfg(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut b = ConfigBuilder::new();
    b.set("WriterFilePath", dir.join("out").to_str().unwrap())
        .unwrap();
    b.set("WriterFsync", "false").unwrap();
    for (k, v) in extra {
        b.set(k, v).unwrap();
    }
    b.build().unwrap()
}

fn batch(cfg: &Config, from: usize, n: usize, keys: usize) -> KeyedBatch {
    let spec = IngestSpec::from_config(cfg).unwrap();
    let mut d = Decoder::new(&spec);
    let mut out = KeyedBatch::new();
    for i in from..from + n {
        let mut line = format!(
            r#"{{"message":"m{i}","business-capability":"c{}","business-domain":"d","business-service":"s","application-service":"a"}}"#,
            i % keys
        )
        .into_bytes();
        assert!(d.json(&mut line, || format!("line {i}"), &mut out));
    }
    out
}

fn written(dir: &Path) -> Vec<String> {
    let mut msgs: Vec<String> = parquet_files(&dir.join("out"))
        .iter()
        .flat_map(|p| file_rows(p).unwrap())
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    msgs.sort_by_key(|m| m[1..].parse::<usize>().unwrap());
    msgs
}

fn expect(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("m{i}")).collect()
}

/// A buffer that one 20-record batch fills, with no size or interval flush to free
/// it: only the pressure flush of a full buffer makes room.
fn one_batch_cfg(dir: &Path, wait: &str, extra: &[(&str, &str)]) -> Config {
    let mut kv = vec![
        ("BufferMaxBytes", "4096"),
        ("FlushInterval", "3600"),
        ("BufferSize", "100000"),
        ("BufferFullWait", wait),
    ];
    kv.extend_from_slice(extra);
    cfg(dir, &kv)
}

/// Replaces a folder with a plain file, so that writes under it fail.
fn break_folder(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
    std::fs::write(p, b"not a folder").unwrap();
}

#[test]
fn an_unusable_destination_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out"), b"x").unwrap();
    let c = cfg(dir.path(), &[]);
    let e = Receiver::start(&c, Arc::new(NullLogger))
        .err()
        .expect("start fails");
    assert!(e.to_string().contains("create folder"), "{e}");
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `QueueCapacity` is the bound of the queue in front of the buffer thread, and even a
/// queue of one carries batches from several producers, each stored once.
#[test]
fn queue_capacity_bounds_the_queue_to_the_buffer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), &[("QueueCapacity", "7")]);
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    assert_eq!(r.tx.capacity(), Some(7));
    drop(r);
    let c = cfg(
        dir.path(),
        &[("QueueCapacity", "1"), ("FlushInterval", "3600")],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    assert_eq!(r.tx.capacity(), Some(1));
    std::thread::scope(|s| {
        for t in 0..4 {
            let (r, c) = (&r, &c);
            s.spawn(move || {
                for b in 0..10 {
                    r.submit(batch(c, (t * 10 + b) * 5, 5, 3)).unwrap();
                }
            });
        }
    });
    r.close();
    assert_eq!(written(dir.path()), expect(0, 200));
}

#[test]
fn size_flush_then_close_flushes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[("BufferSize", "10"), ("FlushInterval", "3600")],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 25, 1)).unwrap();
    wait_until("two size-triggered files", || {
        parquet_files(&dir.path().join("out")).len() == 2
    });
    assert_eq!(written(dir.path()).len(), 20);
    let rep = r.close();
    assert_eq!((rep.files, rep.rows, rep.lost), (1, 5, 0));
    assert_eq!(written(dir.path()), expect(0, 25));
    for p in parquet_files(&dir.path().join("out")) {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.ends_with("-c0:d:s:a.parquet"), "{name}");
        assert!(
            p.to_str().unwrap().contains("/capability=c0/year="),
            "{p:?}"
        );
    }
    assert!(matches!(
        r.submit(batch(&c, 0, 1, 1)),
        Err(SubmitError::Closed)
    ));
}

/// One burst, then nothing: the first file (a probe) is written on its own, and
/// its end lets the rest go as target-sized files, without waiting for another
/// push or the interval.
#[test]
fn file_target_size_writes_a_burst_once_the_probe_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("BufferSize", "100"),
            ("FileTargetSize", "64KiB"),
            ("FlushInterval", "3600"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 60_000, 1)).unwrap();
    wait_until(
        "the probe, the file sized from it and one of the target",
        || parquet_files(&dir.path().join("out")).len() >= 3,
    );
    let mut rows: Vec<usize> = parquet_files(&dir.path().join("out"))
        .iter()
        .map(|p| file_rows(p).unwrap().len())
        .collect();
    rows.sort();
    assert_eq!(rows[0], 100, "the probe is BufferSize records: {rows:?}");
    assert!(rows[1..].iter().all(|&n| n > 100), "{rows:?}");
    r.close();
    assert_eq!(written(dir.path()), expect(0, 60_000));
}

#[test]
fn interval_flush_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[("BufferSize", "1000"), ("FlushInterval", "200ms")],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 3, 1)).unwrap();
    wait_until("an interval flush", || {
        parquet_files(&dir.path().join("out")).len() == 1
    });
    assert_eq!(written(dir.path()), expect(0, 3));
    r.close();
    assert_eq!(
        written(dir.path()),
        expect(0, 3),
        "close wrote nothing more"
    );
}

#[test]
fn close_writes_every_key_in_buffer_size_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("BufferSize", "100"),
            ("FlushInterval", "3600"),
            ("FlushWorkers", "2"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    for i in 0..10 {
        r.submit(batch(&c, i * 77, 77, 3)).unwrap();
    }
    let rep = r.close();
    assert_eq!(rep.lost, 0);
    assert_eq!(written(dir.path()), expect(0, 770));
    for p in parquet_files(&dir.path().join("out")) {
        assert!(file_rows(&p).unwrap().len() <= 100);
    }
    assert_eq!(Metrics::get(&r.metrics().records_out), 770);
}

#[test]
fn explicit_flush_waits_for_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), &[("FlushInterval", "3600")]);
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 42, 2)).unwrap();
    let rep = r.flush().unwrap();
    assert_eq!((rep.rows, rep.files), (42, 2));
    assert_eq!(written(dir.path()), expect(0, 42));
    assert_eq!(r.flush().unwrap(), FlushReport::default());
}

/// The rows of each written file, in file order, by file name.
fn files_rows(dir: &Path) -> Vec<Vec<String>> {
    parquet_files(&dir.join("out"))
        .iter()
        .map(|p| {
            file_rows(p)
                .unwrap()
                .iter()
                .map(|r| r["message"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// FileMaxAge: a key's flushes append to one open file, in order whatever the
/// writer threads, which a flush writes whole (and nothing of it is visible
/// before); the next flushes start the next.
#[test]
fn files_kept_open_grow_across_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("BufferSize", "10"),
            ("FlushInterval", "3600"),
            ("FileMaxAge", "3600"),
            ("FlushWorkers", "2"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    for from in (0..95).step_by(19) {
        r.submit(batch(&c, from, 19, 1)).unwrap();
    }
    wait_until("nine flushes of ten records", || {
        Metrics::get(&r.metrics().buffer_records) == 5
    });
    assert!(parquet_files(&dir.path().join("out")).is_empty());
    let m = r.metrics();
    wait_until("the open-file gauges", || {
        Metrics::get(&m.open_files) == 1
            && Metrics::get(&m.open_file_bytes) > 0
            && Metrics::get(&m.open_file_oldest_ms) > 0
    });
    // The open file grows in its folder, hidden from readers, and is renamed.
    let spools = || {
        let mut found = Vec::new();
        let mut stack = vec![dir.path().join("out")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                match e.path().is_dir() {
                    true => stack.push(e.path()),
                    false if name.ends_with(".open") => found.push(name),
                    false => {}
                }
            }
        }
        found
    };
    assert_eq!(spools().len(), 1, "{:?}", spools());
    let rep = r.flush().unwrap();
    assert_eq!((rep.files, rep.rows, rep.lost), (1, 95, 0));
    assert!(spools().is_empty(), "{:?}", spools());
    assert_eq!(Metrics::get(&m.open_files), 0);
    assert!(m.render_prometheus().contains("\nd2p_open_files 0\n"));
    // In the order they came, though two writer threads appended them.
    assert_eq!(files_rows(dir.path()), [expect(0, 95)]);
    assert_eq!(Metrics::get(&r.metrics().records_out), 95);
    r.submit(batch(&c, 95, 30, 2)).unwrap();
    let rep = r.close();
    assert_eq!(
        (rep.files, rep.rows, rep.lost),
        (2, 30, 0),
        "a file per key"
    );
    assert_eq!(written(dir.path()), expect(0, 125));
}

/// FileMaxAge: an open file that can be neither written nor kept in the recovery
/// store (here its folder, spool and all, was removed, and the store is a file) is
/// reported and counted as lost, never dropped silently.
#[test]
fn an_open_file_neither_written_nor_kept_is_counted_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    std::fs::write(&rec, b"x").unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("BufferSize", "10"),
            ("FlushInterval", "3600"),
            ("FileMaxAge", "3600"),
            ("RecoveryPath", rec.to_str().unwrap()),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 20, 1)).unwrap();
    let m = r.metrics();
    wait_until("both flushes appended", || {
        Metrics::get(&m.buffer_records) == 0 && Metrics::get(&m.open_files) == 1
    });
    break_folder(&dir.path().join("out"));
    let rep = r.close();
    assert_eq!((rep.files, rep.rows, rep.lost), (0, 0, 20));
    assert_eq!(Metrics::get(&m.records_lost), 20);
    assert!(
        m.render_prometheus()
            .contains("\nd2p_records_lost_total 20\n")
    );
}

/// With one writer thread the rows of a file are in the order they came, and a
/// file is written once it is FileMaxAge old, without a flush.
#[test]
fn a_file_kept_open_is_written_at_file_max_age_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("BufferSize", "10"),
            ("FlushInterval", "3600"),
            ("FileMaxAge", "1s"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 25, 1)).unwrap();
    wait_until("the aged file", || {
        parquet_files(&dir.path().join("out")).len() == 1
    });
    assert_eq!(files_rows(dir.path()), [expect(0, 20)]);
    let rep = r.close();
    assert_eq!((rep.files, rep.rows), (1, 5));
    assert_eq!(written(dir.path()), expect(0, 25));
}

/// FileTargetSize finishes an open file once it is that big.
#[test]
fn files_kept_open_are_finished_at_the_target_size() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("BufferSize", "500"),
            ("FlushInterval", "3600"),
            ("FileMaxAge", "3600"),
            ("FileTargetSize", "64KiB"),
            ("WriterRowGroupSize", "16KiB"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    for from in (0..30_000).step_by(1000) {
        r.submit_wait(batch(&c, from, 1000, 1)).unwrap();
    }
    // Whether the last records are still buffered at close (and counted in its report)
    // depends on how fast the writer went; what matters is that every row is written.
    let rep = r.close();
    assert_eq!(rep.lost, 0);
    assert_eq!(written(dir.path()), expect(0, 30_000));
    let sizes: Vec<u64> = parquet_files(&dir.path().join("out"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes.len() >= 3, "{sizes:?}");
    let full = sizes.iter().filter(|&&n| n >= 48 * 1024).count();
    assert!(
        full >= sizes.len() - 1,
        "all but the last near 64KiB: {sizes:?}"
    );
    assert!(sizes.iter().all(|&n| n < 128 * 1024), "{sizes:?}");
}

/// A dynamic key whose schema widens finishes its open file and opens one of the
/// new schema: a file has one schema.
#[test]
fn a_schema_change_finishes_the_open_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("RecordType", "dynamic"),
            ("BufferSize", "2"),
            ("FlushInterval", "3600"),
            ("FileMaxAge", "3600"),
        ],
    );
    let spec = IngestSpec::from_config(&c).unwrap();
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    for lines in [
        [r#"{"n": 1, "message": "a"}"#, r#"{"n": 2, "message": "b"}"#],
        [r#"{"n": 3, "message": "c"}"#, r#"{"n": 4, "message": "d"}"#],
        [
            r#"{"n": "x", "message": "e"}"#,
            r#"{"n": 5, "message": "f"}"#,
        ],
    ] {
        let mut d = Decoder::new(&spec);
        let mut out = KeyedBatch::new();
        for l in lines {
            assert!(d.json(&mut l.as_bytes().to_vec(), || "line".into(), &mut out));
        }
        r.submit_wait(out).unwrap();
    }
    assert_eq!(r.close().lost, 0);
    let m = r.metrics();
    let written = (Metrics::get(&m.files_written), Metrics::get(&m.records_out));
    assert_eq!(written, (2, 6));
    let mut files: Vec<Vec<Value>> = parquet_files(&dir.path().join("out"))
        .iter()
        .map(|p| {
            file_rows(p)
                .unwrap()
                .iter()
                .map(|r| r["n"].clone())
                .collect()
        })
        .collect();
    files.sort_by_key(|f| f.len());
    assert_eq!(files[0], [Value::from("x"), Value::from("5")]);
    assert_eq!(files[1].len(), 4);
    assert!(files[1].iter().all(Value::is_i64), "{:?}", files[1]);
}

#[test]
fn full_buffer_refuses_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let c = one_batch_cfg(dir.path(), "0", &[]);
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 20, 1)).unwrap();
    let e = r.submit(batch(&c, 20, 20, 1)).unwrap_err();
    assert!(matches!(e, SubmitError::Full(_)), "{e:?}");
    r.flush().unwrap();
    r.submit(batch(&c, 20, 20, 1)).unwrap();
    r.close();
    assert_eq!(
        written(dir.path()),
        expect(0, 40),
        "nothing lost, nothing twice"
    );
    assert!(Metrics::get(&r.metrics().backpressure) >= 1);
}

#[test]
fn a_full_buffer_makes_room_within_buffer_full_wait() {
    let dir = tempfile::tempdir().unwrap();
    let c = one_batch_cfg(dir.path(), "3s", &[]);
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 20, 1)).unwrap();
    // Full: the buffer writes what it holds, and the second batch gets its room.
    r.submit(batch(&c, 20, 20, 1)).unwrap();
    assert_eq!(Metrics::get(&r.metrics().backpressure), 0);
    assert_eq!(Metrics::get(&r.metrics().full_waits), 1);
    r.close();
    assert_eq!(written(dir.path()), expect(0, 40));
}

#[test]
fn records_refused_after_buffer_full_wait_are_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rec"), b"x").unwrap();
    let c = one_batch_cfg(
        dir.path(),
        "1s",
        &[("RecoveryPath", dir.path().join("rec").to_str().unwrap())],
    );
    let out = dir.path().join("out");
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    // Neither the folder nor the recovery store can take records: no room is made,
    // and the second batch is refused after the wait.
    let refused = |from| {
        let t = Instant::now();
        let e = r.submit(batch(&c, from, 20, 1)).unwrap_err();
        assert!(
            matches!(&e, SubmitError::Full(why) if why.contains("stayed full for 1s") && why.contains("BufferMaxBytes=4096")),
            "{e:?}"
        );
        assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    };
    r.submit(batch(&c, 0, 20, 1)).unwrap();
    break_folder(&out);
    refused(20);
    // Writes work again. The refused batch must not turn up when room is made: its
    // producer was told it was not stored, and sends it again.
    std::fs::remove_file(&out).unwrap();
    r.flush().unwrap();
    r.submit(batch(&c, 20, 20, 1)).unwrap();
    // The same once more, but the resend comes while the buffer is still full: the
    // abandoned submission must not keep it waiting in line.
    let kept = dir.path().join("kept");
    std::fs::rename(&out, &kept).unwrap();
    break_folder(&out);
    refused(40);
    std::fs::remove_file(&out).unwrap();
    std::fs::rename(&kept, &out).unwrap();
    r.submit(batch(&c, 40, 20, 1)).unwrap();
    assert_eq!(Metrics::get(&r.metrics().backpressure), 2);
    // Refusals for bytes are not counted as key-limit refusals.
    assert_eq!(Metrics::get(&r.metrics().key_limit_refusals), 0);
    r.close();
    assert_eq!(
        written(dir.path()),
        expect(0, 60),
        "nothing lost, nothing twice"
    );
}

#[test]
fn a_refusal_after_the_wait_names_buffer_max_keys_and_is_counted_apart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rec"), b"x").unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("BufferMaxKeys", "1"),
            ("BufferFullWait", "300ms"),
            ("FlushInterval", "3600"),
            ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
        ],
    );
    let out = dir.path().join("out");
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 5, 1)).unwrap();
    // No room can be made, so the second key waits out BufferFullWait; the answer
    // names the limit that refused it, not only that the buffer was full.
    break_folder(&out);
    let e = r.submit(batch(&c, 5, 6, 2)).unwrap_err();
    assert!(
        matches!(&e, SubmitError::Full(why) if why.contains("stayed full for 300ms") && why.contains("BufferMaxKeys=1")),
        "{e:?}"
    );
    let m = r.metrics();
    assert_eq!(Metrics::get(&m.backpressure), 1);
    assert_eq!(Metrics::get(&m.key_limit_refusals), 1);
    std::fs::remove_file(&out).unwrap();
    r.flush().unwrap();
    r.submit(batch(&c, 5, 6, 2)).unwrap();
    r.close();
    assert_eq!(written(dir.path()), expect(0, 11));
    assert!(
        r.metrics()
            .render_prometheus()
            .contains("d2p_key_limit_refusals_total 1\n")
    );
}

#[test]
fn producers_racing_a_short_buffer_full_wait_store_each_batch_once() {
    // Four producers on a buffer that holds one batch, with a wait so short that
    // many give up while parked, at any moment of the buffer thread's work. Each
    // resends a refused batch until it is taken: every record must be written once.
    let dir = tempfile::tempdir().unwrap();
    let c = one_batch_cfg(dir.path(), "2ms", &[]);
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (r, c) = (&r, &c);
            s.spawn(move || {
                for b in 0..25 {
                    let from = (t * 25 + b) * 20;
                    loop {
                        match r.submit(batch(c, from, 20, 3)) {
                            Ok(_) => break,
                            Err(SubmitError::Full(_)) => continue,
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
            });
        }
    });
    r.close();
    assert_eq!(written(dir.path()), expect(0, 2000));
    assert!(Metrics::get(&r.metrics().backpressure) > 0, "some gave up");
}

#[test]
fn failed_writes_go_to_recovery_and_are_resent() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("RecoveryAttempts", "1"),
            ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
            ("DLQPath", dir.path().join("dlq").to_str().unwrap()),
            ("FlushInterval", "3600"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    // After start, the output folder becomes a plain file: every write fails for real.
    break_folder(&dir.path().join("out"));
    r.submit(batch(&c, 0, 30, 1)).unwrap();
    let rep = r.flush().unwrap();
    assert_eq!((rep.files, rep.recovered), (0, 1));
    assert_eq!(Metrics::get(&r.metrics().upload_retries), 1);
    r.close();
    // Repair the destination and resend what was kept.
    std::fs::remove_file(dir.path().join("out")).unwrap();
    let mut f = lone_flusher(&c, true);
    assert_eq!(f.resend_recovery(Pass::Periodic), (1, 0));
    assert_eq!(written(dir.path()), expect(0, 30));
}

/// A flusher of its own, outside any receiver, on the configured writer, with
/// (`recovery`) or without a recovery store.
fn lone_flusher(c: &Config, recovery: bool) -> Flusher {
    let shared = Arc::new(Shared {
        metrics: Metrics::default(),
        log: Arc::new(NullLogger),
        dlq: Arc::new(NoDlq),
        use_dlq: false,
        schemas: Default::default(),
        open_files: None,
    });
    Flusher::new(c, crate::writer::open(c).unwrap(), shared, recovery).unwrap()
}

/// A batch's records in a vector, read as a paged batch's are; keeps the largest
/// read asked for.
#[derive(Debug)]
struct VecPages {
    records: Vec<crate::record::Record>,
    largest: std::sync::atomic::AtomicUsize,
}

impl crate::buffer::Pages for VecPages {
    fn total(&self) -> usize {
        self.records.len()
    }

    fn page(&self) -> usize {
        10_000
    }

    fn read(
        &self,
        from: usize,
        n: usize,
    ) -> Result<(Vec<crate::record::Record>, Vec<crate::dlq::DlqEntry>), crate::buffer::BufferError>
    {
        self.largest.fetch_max(n, Ordering::Relaxed);
        let end = (from + n).min(self.records.len());
        Ok((self.records[from..end].to_vec(), Vec::new()))
    }
}

/// A batch too large to hold at once is read a page at a time (10,000 records)
/// and still makes one file per folder, with every record once, in order, and no
/// spool left behind; written again, it lands on the same file name.
#[test]
fn a_paged_batch_is_read_a_page_at_a_time_into_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), &[]);
    let n = 25_001;
    let (key, records) = batch(&c, 0, n, 1).groups.remove(0);
    let pages = Arc::new(VecPages {
        records,
        largest: Default::default(),
    });
    let mut f = lone_flusher(&c, false);
    let b = Batch {
        id: ulid::Ulid::generate(),
        key,
        records: Vec::new(),
        bytes: 0,
        taken_at: Instant::now(),
        schema: None,
        pages: Some(pages.clone()),
    };
    let w = f.flush(&b).unwrap();
    assert_eq!((w.rows, w.files.len()), (n, 1), "{w:?}");
    assert_eq!(pages.largest.load(Ordering::Relaxed), 10_000);
    let out = dir.path().join("out");
    let in_order: Vec<String> = parquet_files(&out)
        .iter()
        .flat_map(|p| file_rows(p).unwrap())
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(in_order, expect(0, n));
    let again = f.flush(&b).unwrap();
    assert_eq!(again.files, w.files);
    assert_eq!(written(dir.path()), expect(0, n));
    let left = leftovers(&out);
    assert!(left.is_empty(), "{left:?}");
}

/// Files kept during an outage are resent every RecoveryInterval even while batches
/// keep the writer busy, and once more at close.
#[test]
fn kept_files_are_resent_under_steady_traffic_and_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("RecoveryAttempts", "0"),
            ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
            ("TryAutoRecover", "true"),
            ("RecoveryInterval", "1"),
            ("FlushInterval", "3600"),
        ],
    );
    let out = dir.path().join("out");
    let kept = |r: &Receiver| Metrics::get(&r.metrics().recovery_stored);
    let resent = |r: &Receiver| Metrics::get(&r.metrics().recovery_resent);

    // Under traffic: a batch written every 50 ms, so the writer is never idle for
    // the second its old idle-only check waited for.
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    break_folder(&out);
    r.submit(batch(&c, 0, 10, 1)).unwrap();
    assert_eq!(r.flush().unwrap().recovered, 1);
    std::fs::remove_file(&out).unwrap();
    let t = Instant::now();
    let mut n = 10;
    while resent(&r) == 0 && t.elapsed() < Duration::from_secs(10) {
        r.submit(batch(&c, n, 10, 1)).unwrap();
        r.flush().unwrap();
        n += 10;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(resent(&r), 1, "resent within {:?}", t.elapsed());
    r.close();
    assert_eq!(written(dir.path()), expect(0, n));

    // At close: a file kept a moment before, long before the next periodic pass,
    // is delivered before close returns once the destination is back.
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    break_folder(&out);
    r.submit(batch(&c, n, 10, 1)).unwrap();
    assert_eq!(r.flush().unwrap().recovered, 1);
    assert_eq!(kept(&r), 1);
    std::fs::remove_file(&out).unwrap();
    r.close();
    assert_eq!(resent(&r), 1, "resent at close");
    assert!(
        std::fs::read_dir(dir.path().join("rec"))
            .unwrap()
            .next()
            .is_none()
    );
    // (Breaking the folder again removed the first part's files.)
    assert_eq!(written(dir.path()), expect(n, 10));
}

/// The lag gauge: 0 with nothing pending, growing while records wait for their
/// key's FlushInterval, 0 again once they are written. (It is read on the buffer
/// thread's ticks, every 500 ms at most; the waits below span at least two.)
#[test]
fn the_oldest_pending_record_is_a_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[("FlushInterval", "60"), ("BufferSize", "1000")],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    let lag = |r: &Receiver| Metrics::get(&r.metrics().buffer_oldest_ms);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(lag(&r), 0, "nothing pending");
    let submitted = Instant::now();
    r.submit(batch(&c, 0, 10, 2)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let waited = lag(&r);
    assert!(
        waited > 0 && u128::from(waited) <= submitted.elapsed().as_millis(),
        "{waited} ms"
    );
    assert!(r.metrics().render_prometheus().contains(&format!(
        "d2p_buffer_oldest_record_seconds {:.3}\n",
        waited as f64 / 1000.0
    )));
    r.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(lag(&r), 0, "written");
    r.close();
}

/// MetricsFile holds a Prometheus snapshot from the start, and the whole run's
/// counters after close.
#[test]
fn metrics_file_is_kept_current_and_final_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prom").join("d2p-test.prom");
    let c = cfg(dir.path(), &[("MetricsFile", path.to_str().unwrap())]);
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    let t = Instant::now();
    while !path.exists() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = std::fs::read_to_string(&path).expect("written at start");
    assert!(first.contains("d2p_records_out_total{output=\"d2p-test\"} 0\n"));
    r.submit(batch(&c, 0, 30, 2)).unwrap();
    r.close();
    let last = std::fs::read_to_string(&path).unwrap();
    for line in [
        "d2p_records_in_total{output=\"d2p-test\"} 30\n",
        "d2p_records_out_total{output=\"d2p-test\"} 30\n",
        "d2p_files_written_total{output=\"d2p-test\"} 2\n",
        "d2p_file_size_bytes_count{output=\"d2p-test\"} 2\n",
        "d2p_file_rows_bucket{output=\"d2p-test\",le=\"100\"} 2\n",
        "d2p_file_rows_sum{output=\"d2p-test\"} 30\n",
    ] {
        assert!(last.contains(line), "{line}: {last}");
    }
    assert_eq!(written(dir.path()), expect(0, 30));
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["d2p-test.prom"], "no temporary file left");
}

#[test]
fn write_and_recovery_failing_keeps_records_buffered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rec"), b"x").unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
            ("DLQPath", dir.path().join("dlq").to_str().unwrap()),
            ("FlushInterval", "3600"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    break_folder(&dir.path().join("out"));
    r.submit(batch(&c, 0, 12, 2)).unwrap();
    let rep = r.flush().unwrap();
    assert_eq!(rep.files, 0);
    assert_eq!(rep.errors.len(), 2);
    assert_eq!(
        Metrics::get(&r.metrics().buffer_records),
        12,
        "records stay buffered"
    );
    std::fs::remove_file(dir.path().join("out")).unwrap();
    let rep = r.flush().unwrap();
    assert_eq!((rep.files, rep.rows), (2, 12));
    r.close();
    assert_eq!(written(dir.path()), expect(0, 12));
}

#[test]
fn rejected_records_reach_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[("DLQPath", dir.path().join("dlq").to_str().unwrap())],
    );
    let spec = IngestSpec::from_config(&c).unwrap();
    let mut d = Decoder::new(&spec);
    let mut b = KeyedBatch::new();
    assert!(!d.json(&mut b"{\"message\": ".to_vec(), || "line 1".into(), &mut b));
    assert!(!d.json(&mut b"[1]".to_vec(), || "line 2".into(), &mut b));
    assert!(d.json(
        &mut b"{\"message\":\"m0\"}".to_vec(),
        || "line 3".into(),
        &mut b
    ));
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    assert_eq!(
        r.submit(b).unwrap(),
        Accepted {
            records: 1,
            rejected: 2,
            sealed: false
        }
    );
    let m = r.metrics();
    let counts = [&m.records_in, &m.records_rejected, &m.dlq_records].map(Metrics::get);
    assert_eq!(counts, [1, 2, 2], "in, rejected, dead-lettered");
    r.close();
    let dlq: Vec<serde_json::Value> = std::fs::read_dir(dir.path().join("dlq"))
        .unwrap()
        .flat_map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq[0]["source"], "line 1");
    assert!(
        dlq[0]["reason"].as_str().unwrap().contains("truncated"),
        "{}",
        dlq[0]
    );
    assert_eq!(
        dlq[1]["reason"],
        "expected a JSON object / map, found array"
    );
    assert_eq!(written(dir.path()), ["m0"]);
}

/// Held batches of `keys` keys, `per_key` records each, ready for a flusher.
fn held_batches(c: &Config, from: usize, per_key: usize, keys: usize) -> Vec<Batch> {
    batch(c, from, per_key * keys, keys)
        .groups
        .into_iter()
        .map(|(key, records)| Batch {
            id: ulid::Ulid::generate(),
            key,
            records,
            bytes: 0,
            taken_at: Instant::now(),
            schema: None,
            pages: None,
        })
        .collect()
}

/// The files under `dir` whose names are not a Parquet file's: temporary files or
/// spools left behind.
fn leftovers(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|e| match e.path().is_dir() {
            true => leftovers(&e.path()),
            false => vec![e.path()],
        })
        .filter(|p| !p.to_string_lossy().ends_with(".parquet"))
        .collect()
}

/// With fsync, batches flushed as a group each get their file, counted in their own
/// result, with every record once and no temporary file left; and the receiver's
/// writer thread groups what it finds waiting (here 200 batches of 10 records).
#[test]
fn batches_flushed_as_a_group_each_get_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), &[("WriterFsync", "true")]);
    let mut f = lone_flusher(&c, false);
    assert!(f.groups());
    let batches = held_batches(&c, 0, 7, 5);
    let results = f.flush_group(&batches);
    assert_eq!(results.len(), 5);
    assert_eq!(Metrics::get(&f.metrics().write_groups), 1);
    for (b, r) in batches.iter().zip(&results) {
        let w = r.as_ref().unwrap();
        assert_eq!((w.rows, w.files.len(), w.recovered), (7, 1, 0), "{w:?}");
        let path = dir.path().join("out").join(&w.files[0]);
        let rows = file_rows(&path).unwrap();
        let key = b.key.to_string();
        assert!(key.contains(rows[0]["business-capability"].as_str().unwrap()));
        assert_eq!(rows.len(), 7);
    }
    assert_eq!(written(dir.path()), expect(0, 35));
    assert!(leftovers(&dir.path().join("out")).is_empty());

    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("WriterFsync", "true"),
            ("BufferSize", "10"),
            ("FlushInterval", "3600"),
        ],
    );
    let r = Receiver::start(&c, Arc::new(NullLogger)).unwrap();
    r.submit(batch(&c, 0, 2000, 4)).unwrap();
    let m = r.metrics();
    r.close();
    assert_eq!(written(dir.path()), expect(0, 2000));
    assert_eq!(parquet_files(&dir.path().join("out")).len(), 200);
    // The 200 batches waited for the writer thread together: it made groups of them.
    let groups = Metrics::get(&m.write_groups);
    assert!((1..200).contains(&groups), "{groups} groups for 200 files");
    assert!(leftovers(&dir.path().join("out")).is_empty());
}

/// A group whose commit fails (one file's name is taken by a folder, so its rename
/// fails) has each of its files written alone: the others land under their names, and
/// the one that cannot be written goes to the recovery store after its retries, as a
/// file written alone would.
#[test]
fn a_group_that_cannot_be_made_durable_is_written_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &[
            ("WriterFsync", "true"),
            ("RecoveryAttempts", "1"),
            ("RecoveryPath", dir.path().join("rec").to_str().unwrap()),
        ],
    );
    let mut f = lone_flusher(&c, true);
    let batches = held_batches(&c, 0, 4, 3);
    // The second batch's file name, learnt by writing it once, becomes a folder.
    let name = f.flush(&batches[1]).unwrap().files.remove(0);
    let taken = dir.path().join("out").join(&name);
    std::fs::remove_file(&taken).unwrap();
    std::fs::create_dir(&taken).unwrap();
    let results = f.flush_group(&batches);
    let got: Vec<(usize, usize, usize)> = results
        .iter()
        .map(|r| {
            let w = r.as_ref().unwrap();
            (w.rows, w.files.len(), w.recovered)
        })
        .collect();
    assert_eq!(got, [(4, 1, 0), (0, 0, 1), (4, 1, 0)]);
    let rows: Vec<String> = [&results[0], &results[2]]
        .iter()
        .flat_map(|r| {
            file_rows(&dir.path().join("out").join(&r.as_ref().unwrap().files[0])).unwrap()
        })
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = [&batches[0], &batches[2]]
        .iter()
        .flat_map(|b| b.records.iter().map(|r| r.to_json()))
        .map(|j| {
            serde_json::from_str::<Value>(&j).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut rows = rows;
    rows.sort();
    want.sort();
    assert_eq!(rows, want);
    assert_eq!(f.recovery().unwrap().list().len(), 1);
    assert!(leftovers(&dir.path().join("out")).is_empty());
}
