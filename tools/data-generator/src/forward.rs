//! A Fluent forward protocol client (the protocol of Fluent Bit's `in_forward` and
//! Fluentd), to soak-test the plugin inside a real Fluent Bit.
//!
//! Records go in Forward mode, `[tag, [[EventTime, record], ...], options]`, or
//! PackedForward mode, `[tag, <entries as one bin>, options]`. With `--ack`, options
//! carry a `chunk` id and the client waits for the server's `{"ack": <id>}`; a message
//! that is not acknowledged in time (or whose connection fails) is sent again on a new
//! connection, as Fluent Bit's `out_forward` does with `Require_ack_response`. That is
//! at-least-once: the verifier shows any duplicate it causes.

use crate::GenArgs;
use crate::send::{event_time, paced_batches, record};
use anyhow::{Result, bail};
use data2parquet::decode::json::JsonParser;
use data2parquet::decode::msgpack::{Reader, write as mp};
use data2parquet::value::Doc;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ForwardOpts {
    /// `host:port` of the forward input.
    pub addr: String,
    pub tag: String,
    /// Most records per message.
    pub batch: usize,
    /// Request and wait for acknowledgements.
    pub ack: bool,
    /// PackedForward mode instead of Forward mode.
    pub packed: bool,
    /// How long to wait for an ack before sending again.
    pub ack_timeout: Duration,
}

/// What the client did.
#[derive(Debug, Default)]
struct Counts {
    records: u64,
    messages: u64,
    acked: u64,
    resent_messages: u64,
    bytes: u64,
    failed: u64,
}

/// Attempts per message (about 45 s of backoff in all) before it counts as failed.
const MAX_ATTEMPTS: u32 = 30;

/// One connection, opened on first use and after a failure.
struct Conn {
    addr: String,
    stream: Option<TcpStream>,
}

impl Conn {
    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        match self.stream.as_mut() {
            Some(s) => Ok(s),
            None => Err(std::io::Error::other("not connected")),
        }
    }

    /// Sends one message; with `ack`, waits for `{"ack": ack}`.
    fn send(&mut self, msg: &[u8], ack: Option<&str>, timeout: Duration) -> Result<()> {
        let s = self.stream()?;
        s.write_all(msg)?;
        let Some(chunk) = ack else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no ack within {timeout:?}");
            }
            s.set_read_timeout(Some(left))?;
            let n = s.read(&mut tmp)?;
            if n == 0 {
                bail!("connection closed before the ack");
            }
            buf.extend_from_slice(&tmp[..n]);
            let mut doc = Doc::new();
            let mut r = Reader::new(&buf);
            if r.value(Some(&mut doc)).is_err() {
                if buf.len() > 64 * 1024 {
                    bail!("the server's answer is not msgpack");
                }
                continue; // not complete yet
            }
            let got = doc
                .root()
                .and_then(|v| v.get("ack"))
                .and_then(|v| v.as_str());
            return match got {
                Some(id) if id == chunk => Ok(()),
                other => bail!("expected ack {chunk:?}, got {other:?}"),
            };
        }
    }

    fn reset(&mut self) {
        self.stream = None;
    }
}

/// Builds one message of `entries` (already encoded `[time, record]` pairs).
fn message(o: &ForwardOpts, entries: &[u8], n: usize, chunk: Option<&str>, out: &mut Vec<u8>) {
    out.clear();
    mp::array(out, 3);
    mp::str(out, &o.tag);
    if o.packed {
        mp::bin(out, entries);
    } else {
        mp::array(out, n);
        out.extend_from_slice(entries);
    }
    mp::map(out, 1 + chunk.is_some() as usize);
    mp::str(out, "size");
    mp::uint(out, n as u64);
    if let Some(c) = chunk {
        mp::str(out, "chunk");
        mp::str(out, c);
    }
}

pub fn forward(g: &GenArgs, o: &ForwardOpts) -> Result<()> {
    let mut conn = Conn {
        addr: o.addr.clone(),
        stream: None,
    };
    let mut msg = Vec::new();
    let mut c = Counts::default();
    let started = Instant::now();
    let encode = |p: &mut JsonParser, line: &str, entries: &mut Vec<u8>| {
        mp::array(entries, 2);
        event_time(data2parquet::timeutil::now_ns(), entries);
        record(p, line, entries)
    };
    // A message per batch, or per second at low rates.
    let due = |_: &[u8], in_batch: u64, age: Duration| {
        in_batch >= o.batch as u64 || age >= Duration::from_secs(1)
    };
    paced_batches(g, encode, due, |entries, in_batch| {
        let chunk = o.ack.then(|| format!("{:08x}-{:012}", g.seed, c.messages));
        message(o, entries, in_batch as usize, chunk.as_deref(), &mut msg);
        let mut attempt = 0u32;
        let delivered = loop {
            match conn.send(&msg, chunk.as_deref(), o.ack_timeout) {
                Ok(()) => break true,
                Err(e) => {
                    conn.reset();
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        eprintln!(
                            "data-generator: forward to {}: {e:#}; giving up on this message",
                            o.addr
                        );
                        break false;
                    }
                    c.resent_messages += 1;
                    eprintln!(
                        "data-generator: forward to {}: {e:#}; sending again",
                        o.addr
                    );
                    std::thread::sleep(Duration::from_millis(100 * attempt as u64));
                }
            }
        };
        c.messages += 1;
        c.records += in_batch;
        c.bytes += msg.len() as u64;
        if !delivered {
            c.failed += in_batch;
        } else if o.ack {
            c.acked += in_batch;
        }
        Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{}",
        serde_json::json!({
            "output": "forward", "seed": g.seed, "sent": c.records,
            "acknowledged": if o.ack { serde_json::json!(c.acked) } else { serde_json::Value::Null },
            "messages": c.messages, "resent_messages": c.resent_messages, "failed": c.failed,
            "seconds": secs, "records_per_second": c.records as f64 / secs,
            "mb_per_second": c.bytes as f64 / 1e6 / secs,
        })
    );
    if c.failed > 0 {
        bail!("{} records could not be delivered", c.failed);
    }
    Ok(())
}
