//! Drives the plugin directly: loads `libdata2parquet.so` with the test host (exactly as
//! Fluent Bit loads it) and flushes generated chunks into it at the requested rate, with
//! Fluent Bit's retry loop. For soak tests without a Fluent Bit installation.

use crate::GenArgs;
use crate::send::{event, paced_batches};
use anyhow::{Result, bail};
use data2parquet::decode::json::JsonParser;
use flb_host::{Coro, DefAlloc, Plugin};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Fluent Bit's return codes.
const FLB_OK: i32 = 1;
const FLB_RETRY: i32 = 2;

#[derive(Debug, Clone)]
pub struct HostOpts {
    pub plugin: PathBuf,
    /// `[OUTPUT]` properties (CamelCase keys, as in a Fluent Bit config).
    pub props: Vec<(String, String)>,
    pub tag: String,
    /// A chunk is flushed at this size, or after a second (Fluent Bit's `Flush 1`).
    pub chunk_bytes: usize,
    /// Retries of a chunk answered FLB_RETRY (Fluent Bit's `Retry_Limit`).
    pub retry_limit: u32,
    pub retry_delay: Duration,
    /// The plugin logs at debug level (otherwise warnings and errors only).
    pub verbose: bool,
}

#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    acked: u64,
    chunks: u64,
    retries: u64,
    failed: u64,
}

/// Fluent Bit's coroutine stack (`flb-abi.md`): flushes run on a small stack, on a thread
/// that lives for the whole run, as `flb-pipeline` does.
const STACK: usize = 24 * 1024;

pub fn host(g: &GenArgs, o: &HostOpts) -> Result<()> {
    flb_host::keep_logs(false);
    flb_host::echo_logs(true);
    let mut plugin = Plugin::load(&o.plugin, DefAlloc::Zeroed48)?;
    // Fluent Bit's levels: 2 warn (errors and warnings only), 4 debug.
    let idx = plugin.init(&o.props, if o.verbose { 4 } else { 2 })?;
    plugin.pre_run();
    let mut c = Counts::default();
    let started = Instant::now();
    let encode = |p: &mut JsonParser, line: &str, chunk: &mut Vec<u8>| {
        event(p, line, data2parquet::timeutil::now_ns(), chunk)
    };
    // A chunk per 2 MB (by default), or per second at low rates.
    let due = |chunk: &[u8], _: u64, age: Duration| {
        chunk.len() >= o.chunk_bytes || age >= Duration::from_secs(1)
    };
    // The generator needs a normal stack; the flushes run on a small-stack thread that
    // takes one chunk at a time and answers with Fluent Bit's last code and the attempts.
    let (chunks_tx, chunks_rx) = mpsc::sync_channel::<Vec<u8>>(0);
    let (codes_tx, codes_rx) = mpsc::channel::<(i32, u32)>();
    let flusher = &plugin;
    std::thread::scope(|s| -> Result<()> {
        std::thread::Builder::new()
            .name("flb-pipeline".into())
            .stack_size(STACK)
            .spawn_scoped(s, move || {
                for chunk in chunks_rx {
                    let code = flusher.flush_with_retries(
                        idx,
                        &chunk,
                        &o.tag,
                        Coro::Here,
                        o.retry_limit,
                        o.retry_delay,
                    );
                    if codes_tx.send(code).is_err() {
                        break;
                    }
                }
            })?;
        let run = paced_batches(g, encode, due, |chunk, n| {
            c.sent += n;
            chunks_tx.send(chunk.to_vec())?;
            let (rc, attempts) = codes_rx.recv()?;
            c.chunks += 1;
            c.retries += attempts.saturating_sub(1) as u64;
            if rc == FLB_OK {
                c.acked += n;
            } else {
                // Fluent Bit drops a chunk after its last retry (or on FLB_ERROR).
                c.failed += n;
                eprintln!(
                    "data-generator: chunk of {n} records {} after {attempts} attempts",
                    if rc == FLB_RETRY {
                        "still refused"
                    } else {
                        "failed"
                    }
                );
            }
            Ok(())
        });
        drop(chunks_tx);
        run
    })?;
    // ExitCtx flushes everything still buffered.
    let exit_rc = plugin.exit(idx);
    plugin.unload()?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{}",
        serde_json::json!({
            "output": "host", "seed": g.seed, "sent": c.sent, "acknowledged": c.acked,
            "chunks": c.chunks, "retries": c.retries, "failed": c.failed, "plugin_exit": match exit_rc { FLB_OK => "FLB_OK", FLB_RETRY => "FLB_RETRY", _ => "FLB_ERROR" },
            "seconds": secs, "records_per_second": c.sent as f64 / secs,
        })
    );
    if c.failed > 0 || exit_rc != FLB_OK {
        bail!("{} records not accepted; exit returned {exit_rc}", c.failed);
    }
    Ok(())
}
