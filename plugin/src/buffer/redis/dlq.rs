//! The Redis dead-letter queue.

use super::Names;
use crate::buffer::BufferError;
use crate::config::RedisConfig;
use crate::dlq::{DlqEntry, DlqError, DlqSink};
use crate::redis_conn::RedisConn;
use redis::Script;
use std::sync::Mutex;

/// Appends dead letters to their lists, each list up to a size. The size is what
/// `MEMORY USAGE` estimates (from a sample of the list's entries, so it costs the same
/// for any length); a server without the command (an error inside `pcall`) gets no
/// limit rather than no DLQ.
const DLQ_PUSH: &str = r#"
-- KEYS: one list per entry; ARGV: max bytes (0 = no limit), then one entry per key
local max = tonumber(ARGV[1])
local kept = 0
for i, key in ipairs(KEYS) do
  local entry = ARGV[i + 1]
  local used = 0
  if max > 0 then
    local ok, n = pcall(redis.call, 'MEMORY', 'USAGE', key)
    if ok and n then used = n end
  end
  if max == 0 or used + #entry <= max then
    redis.call('RPUSH', key, entry)
    kept = kept + 1
  end
end
return kept
"#;

/// The Redis dead-letter queue: one list per key, `<RedisDLQPrefix>:<key>`, of JSON
/// entries; records without a key go to `<RedisDLQPrefix>:_unkeyed`. Each list holds
/// at most `DLQMaxBytes` (see `DLQ_PUSH`).
pub struct RedisDlq {
    conn: Mutex<RedisConn>,
    cfg: RedisConfig,
    /// Most bytes per list (0: no limit).
    max_bytes: u64,
    script: Script,
}

impl RedisDlq {
    pub fn new(cfg: &RedisConfig, max_bytes: u64) -> Result<RedisDlq, BufferError> {
        Ok(RedisDlq {
            conn: Mutex::new(
                RedisConn::new(cfg).map_err(|e| BufferError::Unavailable(e.to_string()))?,
            ),
            cfg: cfg.clone(),
            max_bytes,
            script: Script::new(DLQ_PUSH),
        })
    }
}

impl DlqSink for RedisDlq {
    fn push(&self, entries: &[DlqEntry]) -> Result<usize, DlqError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let names = Names::new(&self.cfg);
        let mut call = self.script.prepare_invoke();
        call.arg(self.max_bytes);
        for e in entries {
            call.key(names.dlq(e.key.as_deref().unwrap_or("_unkeyed")))
                .arg(e.to_json());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.with(|c| call.invoke::<usize>(c))
            .map_err(|e| DlqError {
                path: format!("redis {}", self.describe()),
                source: std::io::Error::other(e.to_string()),
            })
    }

    fn describe(&self) -> String {
        format!("{}:<key> lists", self.cfg.dlq_prefix)
    }
}
