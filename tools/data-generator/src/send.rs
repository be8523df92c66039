//! Outputs that send generated records somewhere, each reporting what was sent and what
//! was acknowledged.

use crate::{GenArgs, Pacer};
use anyhow::{Context, Result, bail};
use data2parquet::decode::json::JsonParser;
use data2parquet::decode::msgpack::write as mp;
use datagen::Generator;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Appends a JSON record as a msgpack map.
pub fn record(p: &mut JsonParser, json: &str, out: &mut Vec<u8>) -> Result<()> {
    let mut b = json.as_bytes().to_vec();
    let doc = p.parse(&mut b).map_err(|e| anyhow::anyhow!("{e}"))?;
    mp::value(out, doc.root().context("empty record")?);
    Ok(())
}

/// The paced send loop shared by the msgpack outputs: generates records at `--rate`,
/// appends each to a buffer with `encode`, and hands the buffer and its record count to
/// `send` when `due(buffer, records, age of the batch)` says so, and at the end.
pub fn paced_batches(
    g: &GenArgs,
    mut encode: impl FnMut(&mut JsonParser, &str, &mut Vec<u8>) -> Result<()>,
    due: impl Fn(&[u8], u64, Duration) -> bool,
    mut send: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<()> {
    let mut gen_ = Generator::new(g.seed);
    let mut p = JsonParser::new();
    let pacer = Pacer::new(g);
    let (mut buf, mut line) = (Vec::new(), String::new());
    let (mut in_batch, mut batch_start, mut n) = (0u64, Instant::now(), 0u64);
    loop {
        let more = n < g.count && pacer.wait(n);
        if more {
            line.clear();
            gen_.write_json(&mut line);
            encode(&mut p, &line, &mut buf)?;
            if in_batch == 0 {
                batch_start = Instant::now();
            }
            in_batch += 1;
            n += 1;
        }
        if in_batch > 0 && (!more || due(&buf, in_batch, batch_start.elapsed())) {
            send(&buf, in_batch)?;
            buf.clear();
            in_batch = 0;
        }
        if !more {
            return Ok(());
        }
    }
}

/// Appends an EventTime (msgpack ext 0) for `ns`.
pub fn event_time(ns: i64, out: &mut Vec<u8>) {
    mp::event_time(
        out,
        (ns / 1_000_000_000) as u32,
        (ns % 1_000_000_000) as u32,
    );
}

/// Encodes one JSON record as a Fluent Bit v5 event at time `ns`:
/// `[[EventTime, {}], record]`.
pub fn event(p: &mut JsonParser, json: &str, ns: i64, out: &mut Vec<u8>) -> Result<()> {
    mp::array(out, 2);
    mp::array(out, 2);
    event_time(ns, out);
    mp::map(out, 0);
    record(p, json, out)
}

/// Writes Fluent Bit chunk files of about `chunk_bytes` each.
pub fn chunks(g: &GenArgs, dir: &Path, chunk_bytes: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let (mut n, mut files) = (0u64, 0u64);
    let encode = |p: &mut JsonParser, line: &str, chunk: &mut Vec<u8>| {
        event(p, line, data2parquet::timeutil::now_ns(), chunk)
    };
    // Files by size only, whatever the rate.
    let due = |chunk: &[u8], _: u64, _: Duration| chunk.len() >= chunk_bytes;
    paced_batches(g, encode, due, |chunk, records| {
        std::fs::write(dir.join(format!("{files:06}.chunk")), chunk)?;
        files += 1;
        n += records;
        Ok(())
    })?;
    eprintln!(
        "data-generator: {n} records in {files} chunk files under {}",
        dir.display()
    );
    Ok(())
}

/// Latency samples, for percentiles.
#[derive(Default)]
pub struct Latencies(Mutex<Vec<Duration>>);

impl Latencies {
    pub fn add(&self, d: Duration) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(d);
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}

/// How `http` sends: where, in what batches, over how many connections.
pub struct HttpOptions<'a> {
    pub url: &'a str,
    /// With `https://`, the only certificates trusted (PEM); else the public roots.
    pub ca_file: Option<&'a Path>,
    pub batch: usize,
    pub concurrency: usize,
    /// Bearer token (HttpAuthToken).
    pub token: Option<&'a str>,
    /// Generate (and compress) every batch before the clock starts.
    pub pregenerate: bool,
    /// Send bodies gzip-compressed, as log shippers do.
    pub gzip: bool,
    /// Send Splunk HEC events to `/services/collector/event` (each record as an
    /// event's `event` object) instead of NDJSON to `/records`.
    pub hec: bool,
}

/// A batch ready to send: its record count and its body, compressed or not.
#[derive(Clone)]
struct Prepared {
    records: u64,
    body: Vec<u8>,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// The client's TLS settings: the certificates of `ca_file` as the only roots, or the
/// public (webpki) roots.
fn tls_config(ca_file: Option<&Path>) -> Result<ureq::tls::TlsConfig> {
    let mut b = ureq::tls::TlsConfig::builder();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading certificates from {}", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "no PEM certificate in {}",
            path.display()
        );
        b = b.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)));
    }
    Ok(b.build())
}

/// POSTs batches (NDJSON to `/records`, or HEC events) on `concurrency` connections.
pub fn http(g: &GenArgs, o: &HttpOptions<'_>) -> Result<()> {
    let (batch, concurrency, token) = (o.batch, o.concurrency, o.token);
    let (route, content_type, scheme) = if o.hec {
        ("/services/collector/event", "application/json", "Splunk")
    } else {
        ("/records", "application/x-ndjson", "Bearer")
    };
    let url = format!("{}{route}", o.url.trim_end_matches('/'));
    let tls = tls_config(o.ca_file)?;
    let gen_ = Mutex::new(Generator::new(g.seed));
    let make = |gen_: &mut Generator, n: usize| {
        let mut s = String::with_capacity(n * 1100);
        for _ in 0..n {
            if o.hec {
                s.push_str(r#"{"event":"#);
                gen_.write_json(&mut s);
                s.push_str(r#","sourcetype":"data-generator"}"#);
            } else {
                gen_.write_json(&mut s);
            }
            s.push('\n');
        }
        Prepared {
            records: n as u64,
            body: if o.gzip {
                gzip(s.as_bytes())
            } else {
                s.into_bytes()
            },
        }
    };
    let total_batches = g.count.div_ceil(batch as u64);
    let pre: Option<Vec<Prepared>> = o.pregenerate.then(|| {
        let mut g2 = gen_.lock().unwrap_or_else(|p| p.into_inner());
        (0..total_batches)
            .map(|i| make(&mut g2, batch.min((g.count - i * batch as u64) as usize)))
            .collect()
    });
    let (next, sent, acked, refused, failed, bytes) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let lat = Latencies::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pacer = Pacer::new(g);
    // Every batch carries an Idempotency-Key, so a batch resent after its connection
    // failed is stored once. The run's own prefix keeps a second run with the same seed
    // from being taken for a resend of the first.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id()) << 64;
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .tls_config(tls.clone())
                    .build()
                    .into();
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total_batches {
                        break;
                    }
                    // Time is up: no new batches, but this one is claimed and still
                    // goes, so the ids sent are always a prefix `0..sent` of the run
                    // (what the verifier checks).
                    if !pacer.wait(i * batch as u64) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    let prepared = match &pre {
                        Some(p) => std::borrow::Cow::Borrowed(&p[i as usize]),
                        None => {
                            let n = batch.min((g.count - i * batch as u64) as usize);
                            let mut g2 = gen_.lock().unwrap_or_else(|p| p.into_inner());
                            std::borrow::Cow::Owned(make(&mut g2, n))
                        }
                    };
                    let (n, body) = (prepared.records, &prepared.body);
                    sent.fetch_add(n, Ordering::Relaxed);
                    // A refused batch (429/503, or 409 while its first send is still
                    // being processed) is sent again after a pause, and so is one whose
                    // connection failed (up to 30 times).
                    let key = format!("d2p-gen-{run:x}-{i}");
                    let mut errors = 0u32;
                    loop {
                        let t = Instant::now();
                        let mut req = agent
                            .post(&url)
                            .header("Content-Type", content_type)
                            .header("Idempotency-Key", &key);
                        if o.gzip {
                            req = req.header("Content-Encoding", "gzip");
                        }
                        if let Some(tok) = token {
                            req = req.header("Authorization", &format!("{scheme} {tok}"));
                        }
                        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        match req.send(&body[..]) {
                            Ok(mut r) if r.status().as_u16() == 200 => {
                                lat.add(t.elapsed());
                                let v: serde_json::Value =
                                    r.body_mut().read_json().unwrap_or_default();
                                // /records counts what it accepted; HEC what it rejected.
                                let accepted = match v["accepted"].as_u64() {
                                    Some(a) => a,
                                    None if o.hec => {
                                        n.saturating_sub(v["rejected"].as_u64().unwrap_or(0))
                                    }
                                    None => 0,
                                };
                                acked.fetch_add(accepted, Ordering::Relaxed);
                                break;
                            }
                            Ok(r) if matches!(r.status().as_u16(), 409 | 429 | 503) => {
                                refused.fetch_add(n, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            Ok(r) => {
                                eprintln!("data-generator: {} answered {}", url, r.status());
                                failed.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            // A TLS failure (an untrusted certificate, a wrong name) is
                            // the same for every batch: stop rather than resend them all.
                            Err(ureq::Error::Io(e))
                                if e.kind() == std::io::ErrorKind::InvalidData =>
                            {
                                eprintln!("data-generator: {url}: {e}");
                                failed.fetch_add(n, Ordering::Relaxed);
                                stop.store(true, Ordering::SeqCst);
                                break;
                            }
                            Err(e) => {
                                errors += 1;
                                eprintln!("data-generator: {url}: {e}");
                                if errors >= 30 {
                                    failed.fetch_add(n, Ordering::Relaxed);
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let (a, f) = (
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "{}",
        serde_json::json!({
            "output": "http", "seed": g.seed,
            "sent": sent.load(Ordering::Relaxed), "acknowledged": a, "refused_then_resent": refused.load(Ordering::Relaxed),
            "failed": f, "seconds": secs, "records_per_second": a as f64 / secs,
            "mb_per_second": bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs,
            "p50_ms": lat.percentile(0.5).as_secs_f64() * 1e3, "p99_ms": lat.percentile(0.99).as_secs_f64() * 1e3,
            "batch": batch, "concurrency": concurrency, "gzip": o.gzip, "hec": o.hec,
        })
    );
    if f > 0 {
        bail!("{f} records could not be delivered");
    }
    Ok(())
}
