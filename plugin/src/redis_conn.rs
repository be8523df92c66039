//! A Redis connection that reconnects on demand, with the configured timeouts.
//!
//! Used by the Redis buffer (one per buffer thread) and the Redis DLQ. Any I/O error
//! drops the connection, so the next call dials again: a Redis restart costs the calls
//! made while it is down (which report `Unavailable`, hence FLB_RETRY), nothing more.

use crate::config::RedisConfig;
use redis::{Client, Connection, RedisError};
use std::time::Duration;

/// Builds the connection URL from RedisHost (`host:port` or a `redis://`/`rediss://`
/// URL), RedisPassword and RedisDB. A `host:port` uses TLS when a TLS file is set.
pub fn url(cfg: &RedisConfig) -> String {
    let h = cfg.host.trim();
    if h.starts_with("redis://")
        || h.starts_with("rediss://")
        || h.starts_with("redis+unix://")
        || h.starts_with("unix://")
    {
        return h.to_string();
    }
    let auth = if cfg.password.is_empty() {
        String::new()
    } else {
        format!(":{}@", percent(cfg.password.expose()))
    };
    let scheme = if cfg.tls_files() { "rediss" } else { "redis" };
    format!("{scheme}://{auth}{h}/{}", cfg.db)
}

/// A client for `cfg`: with RedisCaFile or a client certificate, TLS with those.
fn client(cfg: &RedisConfig) -> Result<Client, RedisError> {
    if !cfg.tls_files() {
        return Client::open(url(cfg));
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| {
            RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read a TLS file",
                format!("{}: {e}", p.display()),
            ))
        })
    };
    let client_tls = match &cfg.client_tls {
        Some(f) => Some(redis::ClientTlsConfig {
            client_cert: read(&f.cert)?,
            client_key: read(&f.key)?,
        }),
        None => None,
    };
    let root_cert = cfg.ca_file.as_deref().map(read).transpose()?;
    Client::build_with_tls(
        url(cfg),
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
}

fn percent(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Who a connection is to the server, so that another connection can kill it
/// (`CLIENT KILL ID <id> ADDR <addr>`): a push left queued on a failed connection must
/// never run after its retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub id: u64,
    /// The client's address as the server sees it; unknown before Redis 6.2. With it,
    /// a restarted server that reused the id never has the wrong client killed.
    pub addr: Option<String>,
}

impl ClientIdentity {
    /// Reads the fields of a `CLIENT INFO` line (`id=7 addr=127.0.0.1:5000 ...`).
    fn parse(info: &str) -> Option<ClientIdentity> {
        let field = |name: &str| {
            info.split_ascii_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        };
        Some(ClientIdentity {
            id: field("id")?.parse().ok()?,
            addr: field("addr").map(str::to_string),
        })
    }

    /// Asks the server who this connection is: CLIENT INFO, else CLIENT ID (Redis 5),
    /// else nobody (CLIENT refused by an ACL). A broken connection is an error: a reply
    /// left unread after a timeout would answer the next command.
    fn of(c: &mut Connection) -> Result<Option<ClientIdentity>, RedisError> {
        match redis::cmd("CLIENT").arg("INFO").query::<String>(c) {
            Ok(info) => return Ok(ClientIdentity::parse(&info)),
            Err(e) if is_transport(&e) => return Err(e),
            Err(_) => {}
        }
        match redis::cmd("CLIENT").arg("ID").query::<u64>(c) {
            Ok(id) => Ok(Some(ClientIdentity { id, addr: None })),
            Err(e) if is_transport(&e) => Err(e),
            Err(_) => Ok(None),
        }
    }
}

/// Whether an error is the connection's rather than an answer from Redis: the command
/// may or may not have run, and the connection must be dialled again.
pub fn is_transport(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

pub struct RedisConn {
    client: Client,
    conn: Option<Connection>,
    identity: Option<ClientIdentity>,
    timeout: Option<Duration>,
    /// Redacted address for messages.
    pub addr: String,
}

impl RedisConn {
    pub fn new(cfg: &RedisConfig) -> Result<RedisConn, RedisError> {
        let client = client(cfg)?;
        Ok(RedisConn {
            client,
            conn: None,
            identity: None,
            timeout: cfg.timeout,
            addr: cfg
                .host
                .split('@')
                .next_back()
                .unwrap_or(&cfg.host)
                .to_string(),
        })
    }

    /// The live connection, dialling if needed.
    pub fn get(&mut self) -> Result<&mut Connection, RedisError> {
        if self.conn.is_none() {
            let mut c = match self.timeout {
                Some(t) => self.client.get_connection_with_timeout(t)?,
                None => self.client.get_connection()?,
            };
            c.set_read_timeout(self.timeout)?;
            c.set_write_timeout(self.timeout)?;
            self.identity = ClientIdentity::of(&mut c)?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| RedisError::from(std::io::Error::other("no connection")))
    }

    /// Runs `f` on the connection; a connection-level failure drops it for a redial.
    pub fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        let r = self.get().and_then(f);
        if let Err(e) = &r
            && is_transport(e)
        {
            self.conn = None;
        }
        r
    }

    /// The live connection's identity, if the server told it.
    pub fn identity(&self) -> Option<ClientIdentity> {
        self.conn.as_ref().and(self.identity.clone())
    }

    pub fn ping(&mut self) -> Result<(), RedisError> {
        self.with(|c| redis::cmd("PING").query::<String>(c).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;

    #[test]
    fn client_info_lines() {
        let line = "id=42 addr=127.0.0.1:51234 laddr=127.0.0.1:6379 fd=8 name= age=0";
        assert_eq!(
            ClientIdentity::parse(line),
            Some(ClientIdentity {
                id: 42,
                addr: Some("127.0.0.1:51234".into())
            })
        );
        assert_eq!(ClientIdentity::parse("laddr=x addr=y"), None);
    }

    #[test]
    fn tls_files_turn_tls_on_and_go_together() {
        let build = |pairs: &[(&str, &str)]| {
            let mut b = ConfigBuilder::new();
            b.set("BufferType", "redis").unwrap();
            for (k, v) in pairs {
                b.set(k, v).unwrap();
            }
            b.build()
        };
        let c = build(&[("RedisHost", "10.0.0.1:6380"), ("RedisCaFile", "/ca.pem")]).unwrap();
        assert_eq!(url(&c.redis), "rediss://10.0.0.1:6380/0");
        let c = build(&[
            ("RedisHost", "rediss://h:6380"),
            ("redis_tls_cert_file", "/c.pem"),
            ("redis_tls_key_file", "/k.pem"),
        ])
        .unwrap();
        let files = c.redis.client_tls.unwrap();
        assert_eq!(
            (files.cert.to_str(), files.key.to_str()),
            (Some("/c.pem"), Some("/k.pem"))
        );
        let e = build(&[("RedisHost", "h:1"), ("RedisTlsKeyFile", "/k.pem")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RedisTlsKeyFile needs RedisTlsCertFile"), "{e}");
        let e = build(&[("RedisHost", "redis://h:1"), ("RedisCaFile", "/ca.pem")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rediss://"), "{e}");
        // A file that cannot be read is named when the client is made.
        let c = build(&[("RedisHost", "h:1"), ("RedisCaFile", "/no/such/ca.pem")]).unwrap();
        let e = RedisConn::new(&c.redis).err().expect("refused").to_string();
        assert!(e.contains("/no/such/ca.pem"), "{e}");
    }

    #[test]
    fn urls() {
        let mut b = ConfigBuilder::new();
        b.set("BufferType", "redis").unwrap();
        b.set("RedisHost", "10.0.0.1:6380").unwrap();
        b.set("RedisPassword", "p@ss word").unwrap();
        b.set("RedisDB", "3").unwrap();
        let c = b.build().unwrap();
        assert_eq!(url(&c.redis), "redis://:p%40ss%20word@10.0.0.1:6380/3");
        let mut b = ConfigBuilder::new();
        b.set("BufferType", "redis").unwrap();
        b.set("RedisHost", "rediss://user:pw@host:6379/1").unwrap();
        let c = b.build().unwrap();
        assert_eq!(url(&c.redis), "rediss://user:pw@host:6379/1");
    }
}
