//! One `[OUTPUT]` instance of the plugin: its configuration, pipeline and decode threads.
//!
//! Flush runs on Fluent Bit's coroutine stack (24 KiB before v5.1, no guard page), so
//! `flush` only copies the chunk, hands it to a decode thread with a normal stack, and
//! waits for the code. Decoding, mapping and buffering happen there.

use super::flblog::FlbLogger;
use crate::config::{Config, ConfigBuilder};
use crate::dlq::DlqEntry;
use crate::ingest::{Decoder, IngestSpec, KeyedBatch};
use crate::log_at;
use crate::logging::{Level, Logger};
use crate::receiver::{FlushReport, Receiver, SubmitError};
use crossbeam_channel::{Receiver as Rx, Sender as Tx, TrySendError, bounded};
use flb_proxy_sys::{FLB_ERROR, FLB_OK, FLB_RETRY};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long Flush waits for the buffer before answering FLB_RETRY. Well under Fluent
/// Bit's default Grace of 5 s, so shutdown is never held up by one flush.
const FLUSH_WAIT: Duration = Duration::from_secs(4);

const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;

/// Test hooks (`D2P_FAULT`): `ffi-panic` panics in FlushCtx itself, `decode-panic` in the
/// decode thread. They prove that no panic reaches Fluent Bit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    FfiPanic,
    DecodePanic,
}

impl Fault {
    fn from_env() -> Fault {
        match std::env::var("D2P_FAULT").as_deref() {
            Ok("ffi-panic") => Fault::FfiPanic,
            Ok("decode-panic") => Fault::DecodePanic,
            _ => Fault::None,
        }
    }
}

/// The caller's chunk, borrowed across threads. Fluent Bit's buffer is valid only during
/// the Flush call; the caller stays blocked from the moment a decode thread claims the
/// job until it replies, so the borrow never outlives the call (see `flush`).
struct Borrowed {
    data: *const u8,
    len: usize,
    tag: *const std::ffi::c_char,
}

// SAFETY: only read by the thread that claimed the job, while the owner waits for it.
unsafe impl Send for Borrowed {}

enum Job {
    Chunk {
        chunk: Borrowed,
        state: Arc<AtomicU8>,
        reply: Tx<i32>,
    },
    Stop,
}

pub struct Instance {
    pub name: String,
    pub cfg: Config,
    receiver: Arc<Receiver>,
    jobs: Tx<Job>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    log: Arc<FlbLogger>,
    fault: Fault,
    closed: Mutex<Option<FlushReport>>,
}

/// Decode threads per instance: with Fluent Bit `Workers N` several chunks decode at once.
/// With Redis, each also pushes over its own connection, so more of them overlap the
/// network round trips with decoding.
fn decode_threads(cfg: &Config) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    match cfg.buffer_type {
        crate::config::BufferType::Mem => cores.clamp(1, 4),
        crate::config::BufferType::Redis => (2 * cores).clamp(2, 8),
    }
}

impl Instance {
    /// Builds an instance from its properties (`lookup` answers CamelCase keys).
    pub fn start(
        name: String,
        lookup: impl FnMut(&str) -> Option<String>,
        mut log: FlbLogger,
    ) -> Result<Arc<Instance>, String> {
        let cfg = ConfigBuilder::from_lookup(lookup)
            .and_then(|b| b.build())
            .map_err(|e| format!("invalid configuration: {e}"))?;
        log.set_debug(cfg.debug);
        let log = Arc::new(log);
        let spec = Arc::new(
            IngestSpec::from_config(&cfg).map_err(|e| format!("invalid configuration: {e}"))?,
        );
        spec.log_notices(&*log);
        let receiver =
            Arc::new(Receiver::start(&cfg, log.clone()).map_err(|e| format!("cannot start: {e}"))?);
        let threads = decode_threads(&cfg);
        let (tx, rx) = bounded::<Job>(threads * 2);
        let fault = Fault::from_env();
        let mut workers = Vec::new();
        for i in 0..threads {
            let (rx, spec, receiver, log) =
                (rx.clone(), spec.clone(), receiver.clone(), log.clone());
            let h = std::thread::Builder::new()
                .name(format!("d2p-decode-{i}"))
                .spawn(move || decode_loop(rx, spec, receiver, log, fault))
                .map_err(|e| format!("cannot start a decode thread: {e}"))?;
            workers.push(h);
        }
        log_at!(
            log,
            Level::Info,
            "started: buffer {:?}, {}, BufferSize {}, FileTargetSize {}, FlushInterval {:?}, {:?}",
            cfg.buffer_type,
            receiver.writer_description(),
            cfg.buffer_size,
            cfg.file_target_size
                .map_or_else(|| "off".to_string(), |n| format!("{n} bytes")),
            cfg.flush_interval,
            cfg.codec
        );
        Ok(Arc::new(Instance {
            name,
            cfg,
            receiver,
            jobs: tx,
            workers: Mutex::new(workers),
            log,
            fault,
            closed: Mutex::new(None),
        }))
    }

    /// The body of FlushCtx, which runs on Fluent Bit's small coroutine stack: it only
    /// hands the chunk's address to a decode thread and waits. The decode thread reads
    /// the bytes in place (no copy) after claiming the job; a job that is still unclaimed
    /// when the wait ends is cancelled, so it is never read after this call returns.
    ///
    /// # Safety
    /// `data` points to `len` readable bytes and `tag` is null or NUL-terminated, both
    /// for the duration of the call.
    pub unsafe fn flush(&self, data: *const u8, len: usize, tag: *const std::ffi::c_char) -> i32 {
        if self.fault == Fault::FfiPanic {
            panic!("injected fault: panic in FlushCtx (D2P_FAULT=ffi-panic)");
        }
        let state = Arc::new(AtomicU8::new(PENDING));
        let (reply, answer) = bounded(1);
        let job = Job::Chunk {
            chunk: Borrowed { data, len, tag },
            state: state.clone(),
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log_at!(self.log, Level::Debug, "decode queue full: FLB_RETRY");
                return FLB_RETRY;
            }
            Err(TrySendError::Disconnected(_)) => return FLB_RETRY,
        }
        match answer.recv_timeout(FLUSH_WAIT) {
            Ok(code) => code,
            Err(_) => {
                if state
                    .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // Never started: nothing of this chunk is stored, a retry is safe.
                    log_at!(
                        self.log,
                        Level::Warn,
                        "chunk not decoded within {FLUSH_WAIT:?}: FLB_RETRY"
                    );
                    return FLB_RETRY;
                }
                // Claimed: the decode thread answers once the buffer has.
                answer.recv().unwrap_or(FLB_RETRY)
            }
        }
    }

    /// Writes every pending record, stops and joins every thread. Idempotent.
    pub fn close(&self) -> FlushReport {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &*closed {
            return r.clone();
        }
        let workers: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for _ in &workers {
            let _ = self.jobs.send(Job::Stop);
        }
        for w in workers {
            let _ = w.join();
        }
        let report = self.receiver.close();
        let lvl = if report.lost > 0 {
            Level::Error
        } else {
            Level::Info
        };
        log_at!(
            self.log,
            lvl,
            "exit: wrote {} rows in {} files at shutdown ({} kept for recovery, {} dead-lettered, {} lost)",
            report.rows,
            report.files,
            report.recovered,
            report.dead_lettered,
            report.lost
        );
        for e in &report.errors {
            log_at!(self.log, Level::Error, "{e}");
        }
        self.log.detach();
        *closed = Some(report.clone());
        report
    }

    pub fn logger(&self) -> &dyn Logger {
        &*self.log
    }
}

fn decode_loop(
    rx: Rx<Job>,
    spec: Arc<IngestSpec>,
    receiver: Arc<Receiver>,
    log: Arc<FlbLogger>,
    fault: Fault,
) {
    let mut dec = Decoder::new(&spec);
    for job in rx {
        let Job::Chunk {
            chunk,
            state,
            reply,
        } = job
        else {
            break;
        };
        if state
            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue; // Flush gave up on it and answered FLB_RETRY.
        }
        // SAFETY: claimed, so the Flush caller waits for our reply and its buffer and tag
        // stay valid until then (see `Instance::flush`).
        let (data, tag): (&[u8], String) = unsafe {
            let d = if chunk.data.is_null() || chunk.len == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(chunk.data, chunk.len)
            };
            let t = if chunk.tag.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(chunk.tag)
                    .to_string_lossy()
                    .into_owned()
            };
            (d, t)
        };
        let code = match catch_unwind(AssertUnwindSafe(|| {
            if fault == Fault::DecodePanic {
                panic!("injected fault: panic while decoding (D2P_FAULT=decode-panic)");
            }
            process(&mut dec, data, &tag, &receiver, &log)
        })) {
            Ok(code) => code,
            Err(_) => {
                // A chunk that crashes the decoder can never succeed: keep it whole in the
                // DLQ, then drop it (FLB_ERROR). If even the DLQ fails, ask for a retry.
                dec = Decoder::new(&spec);
                let entry = DlqEntry::new(
                    format!("chunk (tag {tag})"),
                    "the decoder panicked on this chunk",
                    data,
                );
                match receiver.shared().reject(&[entry]) {
                    Ok(()) => FLB_ERROR,
                    Err(_) => FLB_RETRY,
                }
            }
        };
        let _ = reply.send(code);
    }
}

fn process(
    dec: &mut Decoder<'_>,
    data: &[u8],
    tag: &str,
    receiver: &Receiver,
    log: &FlbLogger,
) -> i32 {
    let mut batch = KeyedBatch::new();
    let stats = dec.flb_chunk(data, tag, &mut batch);
    let good = batch.len();
    let bad = batch.rejected.len();
    match receiver.submit(batch) {
        Ok(_) if good == 0 && bad > 0 => {
            log_at!(
                log,
                Level::Warn,
                "chunk (tag {tag}): all {bad} events rejected and dead-lettered"
            );
            FLB_ERROR
        }
        Ok(_) => {
            log_at!(
                log,
                Level::Debug,
                "chunk (tag {tag}): {good} records buffered, {bad} rejected, {} group markers skipped",
                stats.group_markers
            );
            FLB_OK
        }
        Err(e @ (SubmitError::Full(_) | SubmitError::Unavailable(_) | SubmitError::Timeout)) => {
            log_at!(
                log,
                Level::Warn,
                "chunk (tag {tag}) not accepted ({e}): FLB_RETRY"
            );
            FLB_RETRY
        }
        Err(SubmitError::Closed) => FLB_RETRY,
    }
}
