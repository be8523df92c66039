//! Reading objects from S3 or an S3-compatible store, for json2parquet's
//! `s3://bucket/prefix` inputs: a backfill straight from the archive that Fluent Bit's
//! `out_s3`, an S3 export or a log shipper wrote, with no copy to local disk first.
//!
//! The client is the S3 writer's (same keys: S3Endpoint, S3Region, S3AccessKey /
//! S3SecretKey or the default AWS chain, S3RoleARN), and objects are streamed: an
//! object is read as the records are converted, never held whole.

use crate::config::S3Config;
use crate::writer::s3::{describe, list_objects, runtime_and_client};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use std::io::Read;
use std::sync::Arc;
use tokio::runtime::Runtime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("S3 {what}: {reason}")]
pub struct S3SourceError {
    what: String,
    reason: String,
}

fn error(what: impl Into<String>, reason: impl std::fmt::Display) -> S3SourceError {
    S3SourceError {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// `s3://bucket/prefix` split into bucket and prefix (which may be empty); `None` for
/// anything else, or without a bucket.
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// An object found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// A client for reading, with the runtime its requests run on. Cheap to share: inputs
/// hold it in an `Arc` and open their objects through it when their turn comes.
pub struct S3Source {
    rt: Arc<Runtime>,
    client: Client,
}

impl S3Source {
    pub fn new(s3: &S3Config) -> Result<S3Source, S3SourceError> {
        let (rt, client) = runtime_and_client(s3).map_err(|e| error("client", e))?;
        Ok(S3Source {
            rt: Arc::new(rt),
            client,
        })
    }

    /// Every object under `prefix`, in key order (as S3 lists them).
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, S3SourceError> {
        let found = self
            .rt
            .block_on(list_objects(&self.client, bucket, prefix))
            .map_err(|e| error(format!("listing s3://{bucket}/{prefix}"), e))?;
        Ok(found
            .into_iter()
            .map(|(key, size)| ObjectInfo { key, size })
            .collect())
    }

    /// The object's bytes as a stream.
    pub fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn Read + Send>, S3SourceError> {
        let r = self
            .rt
            .block_on(self.client.get_object().bucket(bucket).key(key).send())
            .map_err(|e| error(format!("reading s3://{bucket}/{key}"), describe(&e)))?;
        Ok(Box::new(ObjectReader {
            rt: self.rt.clone(),
            body: r.body,
            chunk: Bytes::new(),
        }))
    }
}

/// A GetObject body read chunk by chunk, as `Read` for the framer, which expects
/// blocking reads on its own thread.
struct ObjectReader {
    rt: Arc<Runtime>,
    body: ByteStream,
    chunk: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.body.try_next()) {
                Ok(Some(c)) => self.chunk = c,
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(describe(&e))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        assert_eq!(parse_url("s3://logs/a/b/"), Some(("logs", "a/b/")));
        assert_eq!(parse_url("s3://logs"), Some(("logs", "")));
        assert_eq!(parse_url("s3://logs/"), Some(("logs", "")));
        assert_eq!(parse_url("s3:///x"), None);
        assert_eq!(parse_url("/tmp/s3://x"), None);
    }
}
