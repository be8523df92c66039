//! Readiness: can the buffer and the writer be reached right now? Checked with the
//! server's own connections (the pipeline's threads are not disturbed), at most every
//! two seconds whatever the probe rate.

use data2parquet::config::{BufferType, Config};
use data2parquet::redis_conn::RedisConn;
use data2parquet::writer::Writer;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Probe {
    cfg: Config,
    inner: Mutex<Inner>,
}

struct Inner {
    redis: Option<RedisConn>,
    writer: Option<Box<dyn Writer>>,
    last: Option<(Instant, Result<(), String>)>,
}

const CACHE: Duration = Duration::from_secs(2);

impl Probe {
    pub fn new(cfg: &Config) -> Probe {
        Probe {
            cfg: cfg.clone(),
            inner: Mutex::new(Inner {
                redis: None,
                writer: None,
                last: None,
            }),
        }
    }

    /// Blocking: run it off the async runtime.
    pub fn check(&self) -> Result<(), String> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, r)) = &g.last
            && t.elapsed() < CACHE
        {
            return r.clone();
        }
        let r = self.run(&mut g);
        g.last = Some((Instant::now(), r.clone()));
        r
    }

    fn run(&self, g: &mut Inner) -> Result<(), String> {
        if self.cfg.buffer_type == BufferType::Redis {
            if g.redis.is_none() {
                g.redis =
                    Some(RedisConn::new(&self.cfg.redis).map_err(|e| format!("buffer: {e}"))?);
            }
            if let Some(r) = g.redis.as_mut() {
                r.ping()
                    .map_err(|e| format!("buffer: Redis does not answer: {e}"))?;
            }
        }
        if g.writer.is_none() {
            g.writer =
                Some(data2parquet::writer::open(&self.cfg).map_err(|e| format!("writer: {e}"))?);
        }
        if let Some(w) = g.writer.as_mut() {
            w.check().map_err(|e| format!("writer: {e}"))?;
        }
        Ok(())
    }
}
