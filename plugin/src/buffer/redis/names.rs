//! The Redis key names of a partition key: upstream's by default, each prefix
//! configurable (see the table in the README).

use crate::config::RedisConfig;
use crate::partition::PartitionKey;

/// Redis key names for one partition key.
pub struct Names<'c> {
    cfg: &'c RedisConfig,
}

impl<'c> Names<'c> {
    pub fn new(cfg: &'c RedisConfig) -> Self {
        Names { cfg }
    }
    pub fn data(&self, k: &PartitionKey) -> String {
        format!("{}:{}", self.cfg.data_prefix, k)
    }
    pub fn inflight(&self, k: &PartitionKey) -> String {
        format!("{}-inflight:{}", self.cfg.data_prefix, k)
    }
    pub fn inflight_id(&self, k: &PartitionKey) -> String {
        format!("{}-inflight-id:{}", self.cfg.data_prefix, k)
    }
    pub fn lock(&self, k: &PartitionKey) -> String {
        format!("{}:{}", self.cfg.lock_prefix, k)
    }
    pub fn dlq(&self, k: &str) -> String {
        format!("{}:{}", self.cfg.dlq_prefix, k)
    }
    pub fn schema(&self, k: &PartitionKey) -> String {
        format!("{}-schema:{}", self.cfg.data_prefix, k)
    }
    pub fn size(&self, k: &PartitionKey) -> String {
        format!("{}-size:{}", self.cfg.data_prefix, k)
    }
    pub fn push_marker(&self, id: &str) -> String {
        format!("{}-push:{}", self.cfg.data_prefix, id)
    }
    /// An idempotency key's answer (see [`crate::idempotency`]).
    pub fn idempotency(&self, hashed_key: &str) -> String {
        format!("{}-idem:{}", self.cfg.data_prefix, hashed_key)
    }
    pub fn recovery(&self, k: &PartitionKey) -> String {
        format!("{}:{}", self.cfg.recovery_key, k)
    }
    pub fn keys(&self) -> &str {
        &self.cfg.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's key names by default (`upstream.md` §10), and each prefix key renames
    /// its own keys only.
    #[test]
    fn key_names_follow_upstream_and_their_prefix_keys() {
        let names_of = |kv: &[(&str, &str)]| {
            let mut b = crate::config::ConfigBuilder::new();
            b.set("BufferType", "redis").unwrap();
            b.set("RedisHost", "127.0.0.1:6379").unwrap();
            b.set_all(kv).unwrap();
            let cfg = b.build().unwrap().redis;
            let k = PartitionKey::from_text("cap:dom:svc:app");
            let n = Names::new(&cfg);
            [
                n.keys().to_string(),
                n.data(&k),
                n.lock(&k),
                n.dlq("cap:dom:svc:app"),
                n.recovery(&k),
            ]
        };
        assert_eq!(
            names_of(&[]),
            [
                "keys",
                "data:cap:dom:svc:app",
                "lock:cap:dom:svc:app",
                "dlq:cap:dom:svc:app",
                "recovery:cap:dom:svc:app"
            ]
        );
        assert_eq!(
            names_of(&[
                ("RedisKeys", "k2"),
                ("RedisDataPrefix", "d2"),
                ("RedisLockPrefix", "l2"),
                ("RedisDLQPrefix", "q2"),
                ("RedisRecoveryKey", "r2"),
            ]),
            [
                "k2",
                "d2:cap:dom:svc:app",
                "l2:cap:dom:svc:app",
                "q2:cap:dom:svc:app",
                "r2:cap:dom:svc:app"
            ]
        );
    }
}
