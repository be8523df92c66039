//! Configuration: one typed [`Config`], filled from any of three places.
//!
//! - a JSON file with snake_case keys ([`Config::from_json_str`]);
//! - key/value pairs as Fluent Bit hands them over, CamelCase, case-insensitive
//!   ([`ConfigBuilder::set`], [`ConfigBuilder::from_lookup`]);
//! - environment variables `D2P_<SNAKE_CASE_UPPER>` ([`ConfigBuilder::apply_env`]),
//!   which override the file.
//!
//! Unknown keys and bad values are errors that name the key and what it accepts; no
//! value silently falls back to a default. Keys starting with `_` in a JSON file are
//! treated as comments (upstream's example files use them that way).

mod builder;
pub mod keys;
mod values;

pub use builder::ConfigBuilder;
pub use keys::{KEYS, Key, KeyInfo};
pub use values::{
    BufferType, Codec, DICTIONARY_EXCLUDE, DynamicNested, FieldSet, FluentMetadata, LogFormatter,
    PageIndex, PartitionTime, RecordType, S3Encryption, Secret, TlsFiles, UnknownKeys, WriterType,
};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error, always naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{key}`{hint}")]
    UnknownKey { key: String, hint: String },
    #[error("invalid value `{value}` for {key}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Redis settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub host: String,
    pub password: Secret,
    pub db: i64,
    /// `None`: no timeout.
    pub timeout: Option<Duration>,
    pub keys: String,
    pub data_prefix: String,
    pub lock_prefix: String,
    /// Lock lifetime: RedisLockTTL, or 1.5 × FlushInterval when it is not set.
    pub lock_ttl: Duration,
    pub lock_instance_name: String,
    pub dlq_prefix: String,
    pub recovery_key: String,
    pub skip_flush: bool,
    /// RedisCaFile: the CA certificates (PEM) trusted for the server, instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// RedisTlsCertFile and RedisTlsKeyFile: the client certificate (both or neither).
    pub client_tls: Option<TlsFiles>,
}

impl RedisConfig {
    /// Whether any TLS file is set, which makes a `host:port` RedisHost use TLS.
    pub fn tls_files(&self) -> bool {
        self.ca_file.is_some() || self.client_tls.is_some()
    }
}

/// S3 settings.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    /// S3CaFile: extra CA certificates (PEM) for the endpoints, besides the system's.
    pub ca_file: Option<PathBuf>,
    pub role_arn: String,
    pub sts_endpoint: String,
    pub default_capability: String,
    pub access_key: String,
    pub secret_key: Secret,
    pub key_prefix: String,
    pub part_size: u64,
    pub multipart_threshold: u64,
    pub encryption: S3Encryption,
    /// KMS key for `aws:kms`; empty for the account's AWS-managed key.
    pub kms_key_id: String,
    /// A storage class as S3 spells it (`STANDARD_IA`); empty for the bucket's default.
    pub storage_class: String,
    /// A canned ACL as S3 spells it (`bucket-owner-full-control`); empty for none.
    pub acl: String,
    /// S3AbortIncompleteAfter: the age past which an incomplete multipart upload of ours
    /// is left over from a crash (`None`: never abort).
    pub abort_incomplete_after: Option<Duration>,
}

/// The complete, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub address: String,
    pub port: u16,
    pub buffer_size: usize,
    pub buffer_type: BufferType,
    pub buffer_max_bytes: u64,
    /// BufferMaxKeys: the most partition keys buffered at once (None: no limit).
    pub buffer_max_keys: Option<std::num::NonZeroUsize>,
    /// FileTargetSize: the encoded size a key's files aim for (None: BufferSize alone).
    pub file_target_size: Option<std::num::NonZeroU64>,
    /// FileMaxAge: how long a key's file stays open across flushes (None: a file per
    /// flush).
    pub file_max_age: Option<Duration>,
    /// FileSpoolPath: where the S3 writer's open files grow (None: in memory).
    pub file_spool_path: Option<PathBuf>,
    pub queue_capacity: usize,
    /// How long [`crate::receiver::Receiver::submit`] waits for room in a full buffer.
    pub buffer_full_wait: Duration,
    pub flush_workers: usize,
    pub debug: bool,
    pub flush_interval: Duration,
    pub ignored_fields: FieldSet,
    pub mask_fields: FieldSet,
    pub json_schema_path: Option<PathBuf>,
    pub log_formatter: LogFormatter,
    pub record_type: RecordType,
    pub recovery_attempts: u32,
    pub try_auto_recover: bool,
    pub use_dlq: bool,
    pub use_hash: bool,
    /// UseHMAC's secret: `Some` exactly when UseHMAC is on, which needs HmacKey.
    pub hmac_key: Option<Secret>,
    pub redis: RedisConfig,
    pub s3: S3Config,
    pub codec: Codec,
    pub compression_level: Option<u32>,
    pub writer_file_path: PathBuf,
    pub writer_row_group_size: u64,
    /// WriterPageSize: the target size of a data page, in bytes before compression.
    pub writer_page_size: u64,
    pub writer_type: WriterType,
    pub writer_fsync: bool,
    pub map_values_utf8: bool,
    /// WriterStatisticsExclude: top-level columns written without statistics.
    pub statistics_exclude: FieldSet,
    /// WriterDictionaryExclude: top-level columns written without a dictionary.
    pub dictionary_exclude: FieldSet,
    /// WriterDictionaryAdaptive: string columns whose values rarely repeat in a file's
    /// first batch are written without a dictionary in that file.
    pub dictionary_adaptive: bool,
    /// WriterPageIndex: which files get page statistics and a page index.
    pub page_index: PageIndex,
    /// WriterBloomFilterColumns: top-level columns written with a bloom filter.
    pub bloom_filter_columns: FieldSet,
    /// WriterBloomFilterFpp: their false-positive rate, in (0, 1).
    pub bloom_filter_fpp: f64,
    pub partition_fields: Vec<String>,
    pub partition_path: String,
    pub partition_time: PartitionTime,
    /// PartitionTimezone: the zone the path's time parts are cut in.
    pub partition_timezone: crate::timezone::Zone,
    pub max_record_bytes: usize,
    pub dlq_path: PathBuf,
    /// DLQMaxBytes: most bytes the dead-letter queue may hold (0: no limit).
    pub dlq_max_bytes: u64,
    /// MetricsFile: where to keep a Prometheus snapshot, if anywhere.
    pub metrics_file: Option<PathBuf>,
    /// MetricsKeys: how many partition keys get metric series of their own (0: none).
    pub metrics_keys: usize,
    pub recovery_path: PathBuf,
    pub recovery_interval: Duration,
    pub fluent_metadata: FluentMetadata,
    pub dynamic_nested: DynamicNested,
    pub dynamic_time_keys: Vec<String>,
    /// The schema loaded from `json_schema_path` (checked when the config is built).
    pub json_schema: Option<std::sync::Arc<crate::convert::jsonschema::Fixed>>,
    /// Where the keys go that `json_schema` does not name.
    pub json_schema_unknown_keys: UnknownKeys,
    pub http_max_body_bytes: usize,
    pub http_auth_token: Secret,
    pub http_request_timeout: Duration,
    /// How long an `Idempotency-Key`'s answer is kept.
    pub http_idempotency_ttl: Duration,
    /// HTTPS for http-server: both files or neither (checked when the config is built).
    pub http_tls: Option<TlsFiles>,
    /// HttpTlsClientCaFile: clients need a certificate from these CAs (only with
    /// `http_tls`, checked when the config is built).
    pub http_tls_client_ca: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        // Defaults never fail validation.
        ConfigBuilder::new()
            .build()
            .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }
}

impl Config {
    /// How long a file may grow in a spool (see FileSpoolPath) before it is written,
    /// so that the sweep leaves younger spools alone; `None` when nothing is spooled.
    /// With the mem buffer, open files live up to FileMaxAge. With Redis, records wait
    /// in Redis instead, and a spool lives only while a batch too large to hold at
    /// once is written.
    pub fn spool_lifetime(&self) -> Option<Duration> {
        match self.buffer_type {
            BufferType::Redis => Some(Duration::ZERO),
            BufferType::Mem => self.file_max_age,
        }
    }

    /// FileMaxAge as the mem buffer applies it: files kept open across flushes. With
    /// Redis there are none: records wait in Redis, which keeps them durable, and
    /// FileMaxAge is how long they may wait there (see [`Config::key_interval`]).
    pub fn open_file_age(&self) -> Option<Duration> {
        self.file_max_age
            .filter(|_| self.buffer_type == BufferType::Mem)
    }

    /// How long a key's oldest pending record waits before the key is flushed:
    /// FlushInterval, or with Redis and FileMaxAge, FileMaxAge (a key's files are
    /// then FileTargetSize, or what it received in FileMaxAge).
    pub fn key_interval(&self) -> Duration {
        match (self.buffer_type, self.file_max_age) {
            (BufferType::Redis, Some(age)) => age,
            _ => self.flush_interval,
        }
    }

    /// File config then `D2P_*` environment, as the tools load it.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut b = ConfigBuilder::new();
        if let Some(p) = path {
            b.merge_json_file(p)?;
        }
        b.apply_env(std::env::vars())?;
        b.build()
    }

    /// The configuration of `pairs` (any spelling) over the defaults.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut b = ConfigBuilder::new();
        b.set_all(pairs)?;
        b.build()
    }

    pub fn from_json_str(text: &str) -> Result<Config, ConfigError> {
        let mut b = ConfigBuilder::new();
        b.merge_json_str(text)?;
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_upstream() {
        let c = Config::default();
        assert_eq!(c.buffer_size, 100);
        assert_eq!(c.buffer_type, BufferType::Mem);
        assert_eq!(c.flush_interval, Duration::from_secs(5));
        assert_eq!(c.redis.lock_ttl, Duration::from_millis(7500));
        assert_eq!(c.redis.timeout, Some(Duration::from_millis(3000)));
        assert_eq!(c.codec, Codec::Snappy);
        assert_eq!(c.writer_row_group_size, 134_217_728);
        assert_eq!(c.writer_page_size, 128 * 1024);
        assert_eq!(c.writer_file_path, PathBuf::from("./out"));
        assert_eq!(c.port, 8080);
        assert_eq!(c.redis.data_prefix, "data");
        assert_eq!(c.redis.keys, "keys");
        assert_eq!(c.dlq_path, PathBuf::from("./out/_dlq"));
        assert_eq!(c.dlq_max_bytes, 1 << 30);
        assert_eq!(c.recovery_path, PathBuf::from("./out/_recovery"));
        assert_eq!(c.file_spool_path, Some(PathBuf::from("./out/_open")));
        assert!(!c.redis.lock_instance_name.is_empty(), "the host name");
        assert_eq!(
            c.partition_fields,
            [
                "business-capability",
                "business-domain",
                "business-service",
                "application-service"
            ]
        );
        assert_eq!(
            c.partition_path,
            "capability={business-capability}/year={%Y}/month={%m}/day={%d}/hour={%H}"
        );
    }

    /// The keys whose defaults derive from other keys: a value given wins, in any order
    /// of the keys it derives from; an empty instance name is "not set".
    #[test]
    fn given_values_win_over_derived_defaults() {
        let mut b = ConfigBuilder::new();
        b.set_all(&[
            ("RedisLockTTL", "2s"),
            ("DLQPath", "/var/dlq"),
            ("RecoveryPath", "/var/rec"),
            ("PartitionPath", "/{business-domain}/"),
            ("RedisLockInstanceName", "node-a"),
            ("RecordType", "dynamic"),
            ("PartitionFields", "business-domain"),
            ("FlushInterval", "60"),
            ("WriterFilePath", "/data"),
        ])
        .unwrap();
        let c = b.build().unwrap();
        assert_eq!(c.redis.lock_ttl, Duration::from_secs(2));
        assert_eq!(c.dlq_path, PathBuf::from("/var/dlq"));
        assert_eq!(c.recovery_path, PathBuf::from("/var/rec"));
        assert_eq!(c.partition_path, "{business-domain}");
        assert_eq!(c.partition_fields, ["business-domain"]);
        assert_eq!(c.redis.lock_instance_name, "node-a");
        let mut b = ConfigBuilder::new();
        b.set("RedisLockInstanceName", " ").unwrap();
        b.set("WriterFilePath", "/data").unwrap();
        let c = b.build().unwrap();
        assert!(!c.redis.lock_instance_name.trim().is_empty());
        assert_eq!(c.dlq_path, PathBuf::from("/data/_dlq"));
    }

    #[test]
    fn json_and_camel_case_and_env() {
        let mut b = ConfigBuilder::new();
        b.merge_json_str(
            r#"{"buffer_size": 5000, "flush_interval": "10", "use_hash": true,
            "writer_compression_type": "zstd", "ignored_fields": ["a_b", "c"], "_comment": "x",
            "redis_timeout": 250}"#,
        )
        .unwrap();
        b.set("WRITERTYPE", "s3").unwrap();
        b.set("S3BucketName", "bkt").unwrap();
        b.apply_env([
            ("D2P_BUFFER_SIZE".to_string(), "7".to_string()),
            ("PATH".into(), "/x".into()),
        ])
        .unwrap();
        let c = b.build().unwrap();
        assert_eq!(c.buffer_size, 7, "env overrides the file");
        assert_eq!(c.flush_interval, Duration::from_secs(10));
        assert_eq!(
            c.redis.lock_ttl,
            Duration::from_secs(15),
            "1.5 x FlushInterval"
        );
        assert_eq!(
            c.redis.timeout,
            Some(Duration::from_millis(250)),
            "milliseconds"
        );
        assert!(c.use_hash);
        assert_eq!(c.codec, Codec::Zstd);
        assert_eq!(c.writer_type, WriterType::S3);
        assert!(c.ignored_fields.contains("a-b"));
    }

    #[test]
    fn tls_takes_a_certificate_and_its_key_in_either_spelling() {
        let build = Config::from_pairs;
        let c = build(&[
            ("HttpTlsCertFile", " /etc/d2p/tls.crt "),
            ("http_tls_key_file", "/etc/d2p/tls.key"),
        ])
        .unwrap();
        assert_eq!(
            c.http_tls,
            Some(TlsFiles {
                cert: "/etc/d2p/tls.crt".into(),
                key: "/etc/d2p/tls.key".into()
            })
        );
        assert_eq!(Config::default().http_tls, None);
        // Empty values are "not set", as for the other path keys.
        assert_eq!(build(&[("HttpTlsCertFile", "")]).unwrap().http_tls, None);
        let e = build(&[("HttpTlsClientCaFile", "/ca.pem")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HttpTlsClientCaFile needs HttpTlsCertFile"),
            "{e}"
        );
        for (given, missing) in [
            ("HttpTlsCertFile", "HttpTlsKeyFile"),
            ("HttpTlsKeyFile", "HttpTlsCertFile"),
        ] {
            let e = build(&[(given, "/x.pem")]).unwrap_err().to_string();
            assert!(e.contains(given) && e.contains(missing), "{e}");
        }
    }

    #[test]
    fn errors_name_the_key_and_accepted_values() {
        let e = ConfigBuilder::new()
            .set("BufferTyp", "mem")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("did you mean `BufferType`"), "{e}");
        let e = ConfigBuilder::new()
            .set("buffer_type", "disk")
            .map(|_| ())
            .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("BufferType") && s.contains("mem, memory, redis"),
            "{s}"
        );
        let e = ConfigBuilder::new()
            .set("WriterCompressionType", "lzo")
            .map(|_| ())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("snappy, gzip, zstd, lz4, brotli, none"),
            "{e}"
        );
        for (k, v) in [
            ("BufferSize", "0"),
            ("BufferSize", "10s"),
            ("FlushInterval", "-1"),
            ("Debug", "maybe"),
            ("WriterRowGroupSize", "10"),
            ("WriterPageSize", "512"),
            ("RedisTimeout", "-5"),
            ("Port", "70000"),
            ("BufferFullWait", "4s"),
            ("BufferFullWait", "-1"),
        ] {
            let e = ConfigBuilder::new().set(k, v).map(|_| ()).unwrap_err();
            assert!(e.to_string().contains(k), "{k}={v}: {e}");
        }
        let e = ConfigBuilder::new()
            .apply_env([("D2P_NOPE".to_string(), "1".to_string())])
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("D2P_NOPE"), "{e}");
    }

    #[test]
    fn buffer_full_wait_takes_zero_up_to_three_seconds() {
        let wait = |v: &str| {
            let mut b = ConfigBuilder::new();
            b.set("BufferFullWait", v).unwrap();
            b.build().unwrap().buffer_full_wait
        };
        assert_eq!(Config::default().buffer_full_wait, Duration::from_secs(1));
        assert_eq!(wait("0"), Duration::ZERO);
        assert_eq!(wait("250ms"), Duration::from_millis(250));
        assert_eq!(wait("3"), Duration::from_secs(3));
    }

    #[test]
    fn buffer_max_keys_is_a_count_and_0_lifts_the_limit() {
        let keys = |v: &str| {
            let mut b = ConfigBuilder::new();
            b.set("BUFFER-MAX-KEYS", v)?;
            b.build().map(|c| c.buffer_max_keys.map(|n| n.get()))
        };
        assert_eq!(
            Config::default().buffer_max_keys.map(|n| n.get()),
            Some(10_000)
        );
        assert_eq!(keys("0").unwrap(), None);
        assert_eq!(keys("250").unwrap(), Some(250));
        let e = keys("-1").unwrap_err().to_string();
        assert!(e.contains("BufferMaxKeys") && e.contains("-1"), "{e}");
    }

    #[test]
    fn file_target_size_is_off_or_at_least_64_kib() {
        let target = |v: &str| {
            let mut b = ConfigBuilder::new();
            b.set("file_target_size", v)?;
            b.build().map(|c| c.file_target_size.map(|n| n.get()))
        };
        assert_eq!(Config::default().file_target_size, None);
        assert_eq!(target("0").unwrap(), None);
        assert_eq!(target("64KiB").unwrap(), Some(65_536));
        assert_eq!(target("128MiB").unwrap(), Some(134_217_728));
        let e = target("1000").unwrap_err().to_string();
        assert!(e.contains("FileTargetSize") && e.contains("64KiB"), "{e}");
        assert!(target("big").is_err());
    }

    #[test]
    fn file_max_age_is_off_at_zero_and_a_wait_in_redis() {
        let build = Config::from_pairs;
        let age = |kv: &[(&str, &str)]| build(kv).map(|c| c.file_max_age);
        assert_eq!(Config::default().file_max_age, None);
        assert_eq!(age(&[("FileMaxAge", "0")]).unwrap(), None);
        assert_eq!(
            age(&[("file_max_age", "5m")]).unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            age(&[("FILEMAXAGE", "300")]).unwrap(),
            Some(Duration::from_secs(300))
        );
        let redis = [
            ("BufferType", "redis"),
            ("RedisHost", "127.0.0.1:6379"),
            ("FileMaxAge", "60"),
        ];
        // With Redis, records wait there (durable) rather than in open files.
        let c = build(&redis).unwrap();
        let minute = Duration::from_secs(60);
        assert_eq!(
            (c.open_file_age(), c.key_interval(), c.spool_lifetime()),
            (None, minute, Some(Duration::ZERO))
        );
        let c = build(&redis[2..]).unwrap();
        assert_eq!(
            (c.open_file_age(), c.key_interval(), c.spool_lifetime()),
            (Some(minute), c.flush_interval, Some(minute))
        );
    }

    #[test]
    fn dlq_max_bytes_takes_sizes_and_zero_for_no_limit() {
        let max = |k: &str, v: &str| {
            let mut b = ConfigBuilder::new();
            b.set(k, v)?;
            b.build().map(|c| c.dlq_max_bytes)
        };
        assert_eq!(max("DLQMaxBytes", "0").unwrap(), 0);
        assert_eq!(max("dlq_max_bytes", "16KiB").unwrap(), 16_384);
        assert_eq!(max("dlqmaxbytes", "2GiB").unwrap(), 2 << 30);
        assert!(max("DLQMaxBytes", "lots").is_err());
    }

    #[test]
    fn column_exclusions_parse_like_field_lists() {
        let mut b = ConfigBuilder::new();
        b.set("WriterStatisticsExclude", "Message; stack_trace")
            .unwrap();
        b.set("writer_dictionary_exclude", "correlation-id")
            .unwrap();
        let c = b.build().unwrap();
        assert!(c.statistics_exclude.contains("message"));
        assert!(c.statistics_exclude.contains("stack-trace"));
        assert!(c.dictionary_exclude.contains("correlation-id"));
        assert!(Config::default().statistics_exclude.is_empty());
        let d = Config::default().dictionary_exclude;
        for id in ["time", "correlation-id", "session-id", "message-id"] {
            assert!(d.contains(id), "{id} is not in the default");
        }
        assert!(!d.contains("message") && !d.contains("level"));
        let mut b = ConfigBuilder::new();
        b.set("WriterDictionaryExclude", " None ").unwrap();
        assert!(b.build().unwrap().dictionary_exclude.is_empty());
        let mut b = ConfigBuilder::new();
        b.set("writer_bloom_filter_columns", "Correlation_ID, session-id")
            .unwrap();
        b.set("WriterBloomFilterFpp", "0.01").unwrap();
        let c = b.build().unwrap();
        assert!(c.bloom_filter_columns.contains("correlation-id"));
        assert!(c.bloom_filter_columns.contains("session-id"));
        assert_eq!(c.bloom_filter_fpp, 0.01);
        assert_eq!(Config::default().bloom_filter_fpp, 0.05);
        for bad in ["0", "1", "-0.1", "NaN", "often"] {
            let e = ConfigBuilder::new()
                .set("WriterBloomFilterFpp", bad)
                .map(|_| ())
                .unwrap_err();
            assert!(e.to_string().contains("WriterBloomFilterFpp"), "{bad}: {e}");
        }
        assert_eq!(Config::default().page_index, PageIndex::Auto);
        for (k, v, want) in [
            ("WriterPageIndex", "Always", PageIndex::Always),
            ("writer_page_index", " never ", PageIndex::Never),
            ("writerpageindex", "auto", PageIndex::Auto),
        ] {
            let mut b = ConfigBuilder::new();
            b.set(k, v).unwrap();
            assert_eq!(b.build().unwrap().page_index, want, "{k}={v}");
        }
        let e = ConfigBuilder::new()
            .set("WriterPageIndex", "sometimes")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("WriterPageIndex") && e.contains("auto, always, never"),
            "{e}"
        );
    }

    #[test]
    fn s3_upload_settings_are_checked_and_normalised() {
        let mut b = ConfigBuilder::new();
        b.set("s3_server_side_encryption", "AWS:KMS").unwrap();
        b.set("S3KmsKeyId", " alias/logs ").unwrap();
        b.set("s3storageclass", "glacier_ir").unwrap();
        b.set("S3_ACL", "Bucket-Owner-Full-Control").unwrap();
        let s3 = b.build().unwrap().s3;
        assert_eq!(s3.encryption.header(), Some("aws:kms"));
        assert_eq!(s3.kms_key_id, "alias/logs");
        assert_eq!(s3.storage_class, "GLACIER_IR");
        assert_eq!(s3.acl, "bucket-owner-full-control");
        assert_eq!(Config::default().s3.encryption.header(), None);
        assert_eq!(
            Config::default().s3.abort_incomplete_after,
            Some(Duration::from_secs(86_400))
        );
        let mut b = ConfigBuilder::new();
        b.set("s3_abort_incomplete_after", "90m").unwrap();
        let after = |b: &ConfigBuilder| b.clone().build().unwrap().s3.abort_incomplete_after;
        assert_eq!(after(&b), Some(Duration::from_secs(5400)));
        b.set("S3AbortIncompleteAfter", "Off").unwrap();
        assert_eq!(after(&b), None);
        for (k, v, accepted) in [
            ("S3AbortIncompleteAfter", "0", "greater than zero"),
            ("S3AbortIncompleteAfter", "soon", "duration"),
            ("S3ServerSideEncryption", "kms", "aes256, sse-s3, aws:kms"),
            ("S3StorageClass", "COLD", "STANDARD_IA"),
            ("S3Acl", "everyone", "bucket-owner-full-control"),
        ] {
            let e = ConfigBuilder::new().set(k, v).map(|_| ()).unwrap_err();
            let s = e.to_string();
            assert!(s.contains(k) && s.contains(accepted), "{k}={v}: {s}");
        }
        let mut b = ConfigBuilder::new();
        b.set("S3ServerSideEncryption", "AES256").unwrap();
        b.set("S3KmsKeyId", "alias/logs").unwrap();
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("S3KmsKeyId") && e.contains("aws:kms"), "{e}");
    }

    #[test]
    fn cross_key_validation() {
        let mut b = ConfigBuilder::new();
        b.set("UseHMAC", "true").unwrap();
        assert!(
            b.clone()
                .build()
                .unwrap_err()
                .to_string()
                .contains("HmacKey")
        );
        b.set("HmacKey", "s3cret").unwrap();
        let c = b.build().unwrap();
        assert_eq!(c.hmac_key.as_ref().map(Secret::expose), Some("s3cret"));
        let mut off = ConfigBuilder::new();
        off.set("HmacKey", "s3cret").unwrap();
        assert_eq!(off.build().unwrap().hmac_key, None, "UseHMAC is off");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets are not printed"
        );
        let mut b = ConfigBuilder::new();
        b.set("BufferType", "redis").unwrap();
        assert!(b.build().unwrap_err().to_string().contains("RedisHost"));
        let mut b = ConfigBuilder::new();
        b.set("PartitionPath", "x={nope}").unwrap();
        assert!(b.build().unwrap_err().to_string().contains("PartitionPath"));
    }

    #[test]
    fn layouts_follow_the_record_type_and_fields() {
        let build = Config::from_pairs;
        let c = build(&[("RecordType", "dynamic")]).unwrap();
        assert_eq!(
            c.partition_fields,
            ["capability", "domain", "service", "application"]
        );
        assert_eq!(
            c.partition_path,
            "{capability}/year={%Y}/month={%m}/day={%d}/hour={%H}"
        );
        let c = build(&[("PartitionFields", "tag,meta.x")]).unwrap();
        assert_eq!(
            c.partition_path,
            "tag={tag}/year={%Y}/month={%m}/day={%d}/hour={%H}"
        );
        let c = build(&[
            ("RecordType", "dynamic"),
            ("PartitionFields", "$kubernetes['namespace_name']"),
        ])
        .unwrap();
        assert_eq!(
            c.partition_path,
            "kubernetes_namespace_name={$kubernetes['namespace_name']}/year={%Y}/month={%m}/day={%d}/hour={%H}"
        );
        let e = build(&[
            ("JsonSchemaPath", "/nonexistent.json"),
            ("RecordType", "dynamic"),
        ]);
        assert!(e.unwrap_err().to_string().contains("JsonSchemaPath"));
        let e = build(&[("JsonSchemaPath", "/x.json")]);
        assert!(e.unwrap_err().to_string().contains("dynamic only"));
        let e = ConfigBuilder::new()
            .set("DynamicNested", "yaml")
            .map(|_| ());
        assert!(e.unwrap_err().to_string().contains("struct, json"));
        let e = ConfigBuilder::new()
            .set("json_schema_unknown_keys", "drop")
            .map(|_| ());
        assert!(e.unwrap_err().to_string().contains("extra, columns"));
        let c = Config::from_pairs(&[("JsonSchemaUnknownKeys", "Columns")]).unwrap();
        assert_eq!(c.json_schema_unknown_keys, UnknownKeys::Columns);
        assert_eq!(
            Config::default().json_schema_unknown_keys,
            UnknownKeys::Extra
        );
    }

    #[test]
    fn lookup_reads_camel_case_keys() {
        let props = [("buffersize", "42"), ("WRITERCOMPRESSIONTYPE", "gzip")];
        let b = ConfigBuilder::from_lookup(|k| {
            props
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let c = b.build().unwrap();
        assert_eq!(c.buffer_size, 42);
        assert_eq!(c.codec, Codec::Gzip);
    }

    #[test]
    fn field_sets_normalise() {
        let f = FieldSet::parse("A_b;c:d|e/f\\g h,,");
        for k in ["a-b", "c", "d", "e", "f", "g", "h"] {
            assert!(f.contains(k), "{k}");
        }
        assert!(!f.contains(""));
    }
}
