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

pub mod keys;

pub use keys::{KEYS, Key, KeyInfo};

use std::collections::HashSet;
use std::fmt;
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

/// A secret string: never printed by Debug or Display.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// A set of normalised field names (IgnoredFields, MaskFields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(HashSet<String>);

/// WriterDictionaryExclude's default: the log schema's columns whose values are unique
/// to an event, where a dictionary is hashed, abandoned at its size limit and leaves a
/// larger start of the column chunk behind (see the key's documentation for figures).
pub const DICTIONARY_EXCLUDE: &str =
    "time,correlation-id,session-id,message-id,transaction-message-reference";

impl FieldSet {
    /// Parses upstream's list syntax: `, ; : | / \` and spaces separate entries (not
    /// inside a record accessor's quotes, `$a['app.kubernetes.io/name']`); names are
    /// lower-cased and `_` becomes `-`, exactly as input keys are (fixes D-C6).
    pub fn parse(s: &str) -> FieldSet {
        FieldSet(
            crate::partition::split_unquoted(s, |c| {
                matches!(c, ',' | ';' | ':' | '|' | '/' | '\\' | ' ' | '\t')
            })
            .into_iter()
            .map(|p| p.trim().to_lowercase().replace('_', "-"))
            .filter(|p| !p.is_empty())
            .collect(),
        )
    }
    pub fn contains(&self, k: &str) -> bool {
        !self.0.is_empty() && self.0.contains(k)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

macro_rules! choice {
    ($(#[$m:meta])* $name:ident { $($var:ident = $($text:literal)|+),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($var),* }
        impl $name {
            const ACCEPTED: &'static str = concat!($($( $text, ", ",)+)*);
            fn parse(v: &str) -> Option<Self> {
                let l = v.trim().to_ascii_lowercase();
                $( if [$($text),+].contains(&l.as_str()) { return Some($name::$var); } )*
                None
            }
            fn accepted() -> &'static str {
                Self::ACCEPTED.trim_end_matches(", ")
            }
        }
    };
}

choice!(
    /// Where records wait before they are written.
    BufferType { Mem = "mem" | "memory", Redis = "redis" }
);
choice!(
    /// Where Parquet files go.
    WriterType { File = "file", S3 = "aws-s3" | "s3" }
);
choice!(
    /// The record model.
    RecordType { Log = "log", Dynamic = "dynamic" }
);
choice!(
    /// Parquet page compression.
    Codec { Snappy = "snappy", Gzip = "gzip", Zstd = "zstd", Lz4 = "lz4", Brotli = "brotli", None = "none" | "uncompressed" }
);
choice!(
    /// Tool log line format.
    LogFormatter { Color = "color", Text = "text", Json = "json", Multi = "multi" }
);
choice!(
    /// Which time fills the partition path.
    PartitionTime { Flush = "flush", Record = "record" }
);
choice!(
    /// What happens to Fluent Bit event metadata in log records.
    FluentMetadata { Args = "args", Drop = "drop" }
);
choice!(
    /// How nested objects of dynamic records are stored.
    DynamicNested { Struct = "struct", Json = "json" }
);
choice!(
    /// Server-side encryption asked for on every uploaded object.
    S3Encryption {
        BucketDefault = "default",
        Aes256 = "aes256" | "sse-s3",
        Kms = "aws:kms" | "sse-kms",
        KmsDsse = "aws:kms:dsse" | "dsse-kms"
    }
);

impl S3Encryption {
    /// The `x-amz-server-side-encryption` value, if one is sent.
    pub fn header(self) -> Option<&'static str> {
        match self {
            S3Encryption::BucketDefault => None,
            S3Encryption::Aes256 => Some("AES256"),
            S3Encryption::Kms => Some("aws:kms"),
            S3Encryption::KmsDsse => Some("aws:kms:dsse"),
        }
    }
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
    /// Lock lifetime; `None` until [`ConfigBuilder::build`] applies 1.5 × FlushInterval.
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
    pub use_hmac: bool,
    pub hmac_key: Secret,
    pub redis: RedisConfig,
    pub s3: S3Config,
    pub codec: Codec,
    pub compression_level: Option<u32>,
    pub writer_file_path: PathBuf,
    pub writer_row_group_size: u64,
    pub writer_type: WriterType,
    pub writer_fsync: bool,
    pub map_values_utf8: bool,
    /// WriterStatisticsExclude: top-level columns written without statistics.
    pub statistics_exclude: FieldSet,
    /// WriterDictionaryExclude: top-level columns written without a dictionary.
    pub dictionary_exclude: FieldSet,
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

/// The PEM files of http-server's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        // Defaults never fail validation.
        ConfigBuilder::new()
            .build()
            .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }
}

/// Accumulates settings from any source, then validates them all at once.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    cfg: Config,
    lock_ttl_set: bool,
    dlq_path_set: bool,
    recovery_path_set: bool,
    /// FileSpoolPath as given (unset: under WriterFilePath, once that is known).
    file_spool: Option<String>,
    lock_name_set: bool,
    partition_fields_set: bool,
    partition_path_set: bool,
    /// `HttpTlsCertFile` and `HttpTlsKeyFile` as given, paired up in `build`.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// `RedisTlsCertFile` and `RedisTlsKeyFile` as given, paired up in `build`.
    redis_cert: Option<PathBuf>,
    redis_key: Option<PathBuf>,
}

/// A non-empty path value, or `None` ("not set", as for the other path keys).
fn path_value(v: &str) -> Option<PathBuf> {
    Some(v.trim()).filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// A certificate and its key, given as two keys that go together.
fn pair_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    names: (&str, &str),
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (cert, _) => {
            let (given, other) = if cert.is_some() {
                names
            } else {
                (names.1, names.0)
            };
            Err(ConfigError::Invalid {
                key: given.into(),
                reason: format!("{given} needs {other}: TLS takes a certificate and its key"),
            })
        }
    }
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn bad(key: &KeyInfo, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.camel.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_bool(k: &KeyInfo, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(bad(
            k,
            v,
            "expected a boolean (true/false, on/off, yes/no, 1/0)",
        )),
    }
}

fn parse_int<T: std::str::FromStr>(k: &KeyInfo, v: &str, what: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse::<T>()
        .map_err(|_| bad(k, v, format!("expected {what}")))
}

/// Byte sizes: a plain number, or with a suffix (k/KB/KiB, M/MB/MiB, G/GB/GiB).
fn parse_bytes(k: &KeyInfo, v: &str) -> Result<u64, ConfigError> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| bad(k, v, "expected a size in bytes, e.g. 134217728 or 128MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => {
            return Err(bad(
                k,
                v,
                "unknown size unit (accepted: B, KB, KiB, MB, MiB, GB, GiB)",
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| bad(k, v, "size too large"))
}

/// Longest BufferFullWait: a Fluent Bit flush waits for it on the engine's thread, and
/// must answer well within Fluent Bit's default Grace of 5 s.
const MAX_FULL_WAIT: Duration = Duration::from_secs(3);

/// Durations: plain seconds, or with a suffix ms/s/m/h.
fn parse_duration(k: &KeyInfo, v: &str) -> Result<Duration, ConfigError> {
    let t = v.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        bad(
            k,
            v,
            "expected seconds, or a duration such as 500ms, 10s, 2m",
        )
    })?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad(k, v, "unknown duration unit (accepted: ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 365.0 {
        return Err(bad(k, v, "must be greater than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_choice<T>(
    k: &KeyInfo,
    v: &str,
    f: fn(&str) -> Option<T>,
    accepted: &str,
) -> Result<T, ConfigError> {
    f(v).ok_or_else(|| bad(k, v, format!("accepted values: {accepted}")))
}

/// A name S3 defines (a storage class, a canned ACL), checked against the SDK's list so
/// that a typo fails at start rather than at every upload. Empty means "not set".
fn s3_name(k: &KeyInfo, v: &str, name: String, known: &[&str]) -> Result<String, ConfigError> {
    if name.is_empty() || known.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(bad(k, v, format!("accepted values: {}", known.join(", "))))
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "d2p".to_string())
}

impl ConfigBuilder {
    pub fn new() -> Self {
        ConfigBuilder {
            cfg: Config {
                address: String::new(),
                port: 8080,
                buffer_size: 100,
                buffer_type: BufferType::Mem,
                buffer_max_bytes: 64 * 1024 * 1024,
                buffer_max_keys: std::num::NonZeroUsize::new(10_000),
                file_target_size: None,
                file_max_age: None,
                file_spool_path: None,
                queue_capacity: 64,
                buffer_full_wait: Duration::from_secs(1),
                flush_workers: 1,
                debug: false,
                flush_interval: Duration::from_secs(5),
                ignored_fields: FieldSet::default(),
                mask_fields: FieldSet::default(),
                json_schema_path: None,
                log_formatter: LogFormatter::Color,
                record_type: RecordType::Log,
                recovery_attempts: 0,
                try_auto_recover: false,
                use_dlq: true,
                use_hash: false,
                use_hmac: false,
                hmac_key: Secret::default(),
                redis: RedisConfig {
                    host: String::new(),
                    password: Secret::default(),
                    db: 0,
                    timeout: Some(Duration::from_millis(3000)),
                    keys: "keys".into(),
                    data_prefix: "data".into(),
                    lock_prefix: "lock".into(),
                    lock_ttl: Duration::from_millis(7500),
                    lock_instance_name: String::new(),
                    dlq_prefix: "dlq".into(),
                    recovery_key: "recovery".into(),
                    skip_flush: false,
                    ca_file: None,
                    client_tls: None,
                },
                s3: S3Config {
                    bucket: String::new(),
                    region: String::new(),
                    endpoint: String::new(),
                    ca_file: None,
                    role_arn: String::new(),
                    sts_endpoint: String::new(),
                    default_capability: "undefined".into(),
                    access_key: String::new(),
                    secret_key: Secret::default(),
                    key_prefix: String::new(),
                    part_size: 8 * 1024 * 1024,
                    multipart_threshold: 16 * 1024 * 1024,
                    encryption: S3Encryption::BucketDefault,
                    kms_key_id: String::new(),
                    storage_class: String::new(),
                    acl: String::new(),
                    abort_incomplete_after: Some(Duration::from_secs(86_400)),
                },
                codec: Codec::Snappy,
                compression_level: None,
                writer_file_path: PathBuf::from("./out"),
                writer_row_group_size: 134_217_728,
                writer_type: WriterType::File,
                writer_fsync: true,
                map_values_utf8: false,
                statistics_exclude: FieldSet::default(),
                dictionary_exclude: FieldSet::parse(DICTIONARY_EXCLUDE),
                bloom_filter_columns: FieldSet::default(),
                bloom_filter_fpp: 0.05,
                partition_fields: vec![
                    "business-capability".into(),
                    "business-domain".into(),
                    "business-service".into(),
                    "application-service".into(),
                ],
                partition_path:
                    "capability={business-capability}/year={%Y}/month={%m}/day={%d}/hour={%H}"
                        .into(),
                partition_time: PartitionTime::Flush,
                partition_timezone: crate::timezone::Zone::utc(),
                max_record_bytes: 16 * 1024 * 1024,
                dlq_path: PathBuf::new(),
                dlq_max_bytes: 1024 * 1024 * 1024,
                recovery_path: PathBuf::new(),
                recovery_interval: Duration::from_secs(30),
                fluent_metadata: FluentMetadata::Args,
                dynamic_nested: DynamicNested::Struct,
                dynamic_time_keys: vec!["time".into(), "timestamp".into(), "@timestamp".into()],
                json_schema: None,
                http_max_body_bytes: 16 * 1024 * 1024,
                http_auth_token: Secret::default(),
                http_request_timeout: Duration::from_secs(30),
                http_idempotency_ttl: Duration::from_secs(24 * 3600),
                http_tls: None,
                http_tls_client_ca: None,
                metrics_file: None,
                metrics_keys: crate::metrics::per_key::DEFAULT_CAP,
            },
            lock_ttl_set: false,
            dlq_path_set: false,
            recovery_path_set: false,
            file_spool: None,
            lock_name_set: false,
            partition_fields_set: false,
            partition_path_set: false,
            tls_cert: None,
            tls_key: None,
            redis_cert: None,
            redis_key: None,
        }
    }

    /// Sets one key, given in any spelling.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self, ConfigError> {
        let info = keys::lookup(key).ok_or_else(|| ConfigError::UnknownKey {
            key: key.to_string(),
            hint: suggest(key),
        })?;
        self.set_key(info, value)?;
        Ok(self)
    }

    fn set_key(&mut self, k: &'static KeyInfo, v: &str) -> Result<(), ConfigError> {
        let c = &mut self.cfg;
        match k.key {
            Key::Address => c.address = v.trim().to_string(),
            Key::Port => {
                c.port = parse_int::<u16>(k, v, "a port number 1-65535")?;
                if c.port == 0 {
                    return Err(bad(k, v, "expected a port number 1-65535"));
                }
            }
            Key::BufferSize => {
                c.buffer_size = parse_int::<usize>(k, v, "a record count >= 1")?;
                if c.buffer_size == 0 {
                    return Err(bad(k, v, "expected a record count >= 1"));
                }
            }
            Key::BufferType => {
                c.buffer_type = parse_choice(k, v, BufferType::parse, BufferType::accepted())?
            }
            Key::Debug => c.debug = parse_bool(k, v)?,
            Key::FlushInterval => c.flush_interval = parse_duration(k, v)?,
            Key::FileMaxAge => {
                c.file_max_age = match v.trim() {
                    "0" => None,
                    _ => Some(parse_duration(k, v)?),
                };
            }
            Key::FileSpoolPath => self.file_spool = Some(nonempty(k, v)?),
            Key::IgnoredFields => c.ignored_fields = FieldSet::parse(v),
            Key::MaskFields => c.mask_fields = FieldSet::parse(v),
            Key::JsonSchemaPath => {
                c.json_schema_path = (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()));
            }
            Key::LogFormatter => {
                c.log_formatter = parse_choice(k, v, LogFormatter::parse, LogFormatter::accepted())?
            }
            Key::RecordType => {
                c.record_type = parse_choice(k, v, RecordType::parse, RecordType::accepted())?
            }
            Key::RecoveryAttempts => c.recovery_attempts = parse_int::<u32>(k, v, "a count >= 0")?,
            Key::RedisHost => c.redis.host = v.trim().to_string(),
            Key::RedisPassword => c.redis.password = Secret::new(v),
            Key::RedisDB => {
                c.redis.db = parse_int::<i64>(k, v, "a database number >= 0")?;
                if c.redis.db < 0 {
                    return Err(bad(k, v, "expected a database number >= 0"));
                }
            }
            Key::RedisTimeout => {
                let ms =
                    parse_int::<i64>(k, v, "milliseconds (0 = default 3000, -1 = no timeout)")?;
                c.redis.timeout = match ms {
                    -1 => None,
                    0 => Some(Duration::from_millis(3000)),
                    n if n > 0 => Some(Duration::from_millis(n as u64)),
                    _ => {
                        return Err(bad(
                            k,
                            v,
                            "expected milliseconds (0 = default 3000, -1 = no timeout)",
                        ));
                    }
                };
            }
            Key::RedisKeys => c.redis.keys = nonempty(k, v)?,
            Key::RedisDataPrefix => c.redis.data_prefix = nonempty(k, v)?,
            Key::RedisLockPrefix => c.redis.lock_prefix = nonempty(k, v)?,
            Key::RedisLockTTL => {
                c.redis.lock_ttl = parse_duration(k, v)?;
                self.lock_ttl_set = true;
            }
            Key::RedisLockInstanceName => {
                c.redis.lock_instance_name = v.trim().to_string();
                self.lock_name_set = !v.trim().is_empty();
            }
            Key::RedisDLQPrefix => c.redis.dlq_prefix = nonempty(k, v)?,
            Key::RedisRecoveryKey => c.redis.recovery_key = nonempty(k, v)?,
            Key::RedisSkipFlush => c.redis.skip_flush = parse_bool(k, v)?,
            Key::S3BucketName => c.s3.bucket = v.trim().to_string(),
            Key::S3Region => c.s3.region = v.trim().to_string(),
            Key::S3Endpoint => c.s3.endpoint = v.trim().to_string(),
            Key::S3CaFile => c.s3.ca_file = path_value(v),
            Key::S3RoleARN => c.s3.role_arn = v.trim().to_string(),
            Key::S3STSEndpoint => c.s3.sts_endpoint = v.trim().to_string(),
            Key::S3DefaultCapability => c.s3.default_capability = v.trim().to_string(),
            Key::TryAutoRecover => c.try_auto_recover = parse_bool(k, v)?,
            Key::UseDLQ => c.use_dlq = parse_bool(k, v)?,
            Key::UseHash => c.use_hash = parse_bool(k, v)?,
            Key::UseHMAC => c.use_hmac = parse_bool(k, v)?,
            Key::WriterCompressionType => {
                c.codec = parse_choice(k, v, Codec::parse, Codec::accepted())?
            }
            Key::WriterFilePath => c.writer_file_path = PathBuf::from(nonempty(k, v)?),
            Key::WriterRowGroupSize => {
                c.writer_row_group_size = parse_bytes(k, v)?;
                if c.writer_row_group_size < 1024 {
                    return Err(bad(k, v, "must be at least 1024 bytes"));
                }
            }
            Key::WriterType => {
                c.writer_type = parse_choice(k, v, WriterType::parse, WriterType::accepted())?
            }
            Key::HmacKey => c.hmac_key = Secret::new(v),
            Key::WriterCompressionLevel => {
                c.compression_level = if v.trim().is_empty() {
                    None
                } else {
                    Some(parse_int::<u32>(k, v, "a compression level")?)
                }
            }
            Key::WriterFsync => c.writer_fsync = parse_bool(k, v)?,
            Key::WriterMapValuesUtf8 => c.map_values_utf8 = parse_bool(k, v)?,
            Key::WriterStatisticsExclude => c.statistics_exclude = FieldSet::parse(v),
            Key::WriterDictionaryExclude => {
                c.dictionary_exclude = if v.trim().eq_ignore_ascii_case("none") {
                    FieldSet::default()
                } else {
                    FieldSet::parse(v)
                }
            }
            Key::WriterBloomFilterColumns => c.bloom_filter_columns = FieldSet::parse(v),
            Key::WriterBloomFilterFpp => {
                c.bloom_filter_fpp = match v.trim().parse::<f64>() {
                    Ok(p) if p > 0.0 && p < 1.0 => p,
                    _ => return Err(bad(k, v, "a probability between 0 and 1, exclusive")),
                }
            }
            Key::PartitionFields => {
                let f: Vec<String> = crate::partition::split_unquoted(v, |c| c == ',')
                    .into_iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if f.is_empty() {
                    return Err(bad(k, v, "expected at least one field"));
                }
                c.partition_fields = f;
                self.partition_fields_set = true;
            }
            Key::PartitionPath => {
                c.partition_path = v.trim().trim_matches('/').to_string();
                self.partition_path_set = true;
            }
            Key::PartitionTime => {
                c.partition_time =
                    parse_choice(k, v, PartitionTime::parse, PartitionTime::accepted())?
            }
            Key::PartitionTimezone => {
                c.partition_timezone = crate::timezone::Zone::parse(v).map_err(|e| bad(k, v, e))?
            }
            Key::BufferMaxBytes => {
                c.buffer_max_bytes = parse_bytes(k, v)?;
                if c.buffer_max_bytes < 1024 {
                    return Err(bad(k, v, "must be at least 1024 bytes"));
                }
            }
            Key::BufferMaxKeys => {
                c.buffer_max_keys = std::num::NonZeroUsize::new(parse_int::<usize>(
                    k,
                    v,
                    "a count (0 = no limit)",
                )?);
            }
            Key::FileTargetSize => {
                let n = parse_bytes(k, v)?;
                if n != 0 && n < 64 * 1024 {
                    return Err(bad(k, v, "must be 0 (off) or at least 64KiB"));
                }
                c.file_target_size = std::num::NonZeroU64::new(n);
            }
            Key::QueueCapacity => {
                c.queue_capacity = parse_int::<usize>(k, v, "a count >= 1")?;
                if c.queue_capacity == 0 {
                    return Err(bad(k, v, "expected a count >= 1"));
                }
            }
            Key::BufferFullWait => {
                c.buffer_full_wait = if v.trim() == "0" {
                    Duration::ZERO
                } else {
                    parse_duration(k, v)?
                };
                if c.buffer_full_wait > MAX_FULL_WAIT {
                    return Err(bad(k, v, "expected 0 up to 3s"));
                }
            }
            Key::FlushWorkers => {
                c.flush_workers = parse_int::<usize>(k, v, "a thread count 1-64")?;
                if !(1..=64).contains(&c.flush_workers) {
                    return Err(bad(k, v, "expected a thread count 1-64"));
                }
            }
            Key::MaxRecordBytes => {
                c.max_record_bytes = parse_bytes(k, v)? as usize;
                if c.max_record_bytes < 16 {
                    return Err(bad(k, v, "must be at least 16 bytes"));
                }
            }
            Key::DLQPath => {
                c.dlq_path = PathBuf::from(nonempty(k, v)?);
                self.dlq_path_set = true;
            }
            Key::DLQMaxBytes => c.dlq_max_bytes = parse_bytes(k, v)?,
            Key::RecoveryPath => {
                c.recovery_path = PathBuf::from(nonempty(k, v)?);
                self.recovery_path_set = true;
            }
            Key::S3AccessKey => c.s3.access_key = v.trim().to_string(),
            Key::S3SecretKey => c.s3.secret_key = Secret::new(v.trim()),
            Key::S3KeyPrefix => c.s3.key_prefix = v.trim().trim_start_matches('/').to_string(),
            Key::S3PartSize => {
                c.s3.part_size = parse_bytes(k, v)?;
                if c.s3.part_size < 5 * 1024 * 1024 {
                    return Err(bad(k, v, "S3 parts must be at least 5 MiB"));
                }
            }
            Key::S3MultipartThreshold => c.s3.multipart_threshold = parse_bytes(k, v)?,
            Key::S3ServerSideEncryption => {
                c.s3.encryption = if v.trim().is_empty() {
                    S3Encryption::BucketDefault
                } else {
                    parse_choice(k, v, S3Encryption::parse, S3Encryption::accepted())?
                }
            }
            Key::S3KmsKeyId => c.s3.kms_key_id = v.trim().to_string(),
            Key::S3StorageClass => {
                c.s3.storage_class = s3_name(k, v, v.trim().to_ascii_uppercase(), {
                    aws_sdk_s3::types::StorageClass::values()
                })?
            }
            Key::S3Acl => {
                c.s3.acl = s3_name(k, v, v.trim().to_ascii_lowercase(), {
                    aws_sdk_s3::types::ObjectCannedAcl::values()
                })?
            }
            Key::S3AbortIncompleteAfter => {
                c.s3.abort_incomplete_after = match v.trim().to_ascii_lowercase().as_str() {
                    "off" | "false" | "no" | "never" => None,
                    _ => Some(parse_duration(k, v)?),
                }
            }
            Key::RecoveryInterval => c.recovery_interval = parse_duration(k, v)?,
            Key::HttpMaxBodyBytes => {
                c.http_max_body_bytes = parse_bytes(k, v)? as usize;
                if c.http_max_body_bytes < 16 {
                    return Err(bad(k, v, "must be at least 16 bytes"));
                }
            }
            Key::HttpAuthToken => c.http_auth_token = Secret::new(v.trim()),
            Key::HttpRequestTimeout => c.http_request_timeout = parse_duration(k, v)?,
            Key::HttpIdempotencyTtl => c.http_idempotency_ttl = parse_duration(k, v)?,
            Key::HttpTlsCertFile => self.tls_cert = path_value(v),
            Key::HttpTlsKeyFile => self.tls_key = path_value(v),
            Key::HttpTlsClientCaFile => c.http_tls_client_ca = path_value(v),
            Key::RedisCaFile => c.redis.ca_file = path_value(v),
            Key::RedisTlsCertFile => self.redis_cert = path_value(v),
            Key::RedisTlsKeyFile => self.redis_key = path_value(v),
            Key::MetricsFile => {
                let v = v.trim();
                c.metrics_file = (!v.is_empty()).then(|| PathBuf::from(v));
            }
            Key::MetricsKeys => {
                c.metrics_keys = parse_int::<usize>(k, v, "a count (0 = no per-key series)")?;
            }
            Key::FluentMetadata => {
                c.fluent_metadata =
                    parse_choice(k, v, FluentMetadata::parse, FluentMetadata::accepted())?
            }
            Key::DynamicNested => {
                c.dynamic_nested =
                    parse_choice(k, v, DynamicNested::parse, DynamicNested::accepted())?
            }
            Key::DynamicTimeKey => {
                c.dynamic_time_keys = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
        }
        Ok(())
    }

    /// Loads a JSON config document (snake_case keys, any spelling accepted). Values may
    /// be strings, numbers, booleans or (for field lists) arrays of strings; null
    /// leaves the default.
    pub fn merge_json_str(&mut self, text: &str) -> Result<&mut Self, ConfigError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::File {
            path: "<json>".into(),
            reason: format!("invalid JSON: {e}"),
        })?;
        let serde_json::Value::Object(map) = v else {
            return Err(ConfigError::File {
                path: "<json>".into(),
                reason: "the config must be a JSON object".into(),
            });
        };
        for (key, val) in map {
            if key.starts_with('_') {
                continue;
            }
            let text = match &val {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Array(items) => {
                    let mut parts = Vec::new();
                    for i in items {
                        match i {
                            serde_json::Value::String(s) => parts.push(s.clone()),
                            other => parts.push(other.to_string()),
                        }
                    }
                    parts.join(",")
                }
                serde_json::Value::Object(_) => {
                    return Err(ConfigError::BadValue {
                        key,
                        value: val.to_string(),
                        reason: "expected a string, number, boolean or list".into(),
                    });
                }
            };
            self.set(&key, &text)?;
        }
        Ok(self)
    }

    pub fn merge_json_file(&mut self, path: &Path) -> Result<&mut Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.merge_json_str(&text).map_err(|e| match e {
            ConfigError::File { reason, .. } => ConfigError::File {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Applies `D2P_*` variables. An unknown `D2P_` variable is an error, so a typo
    /// cannot go unnoticed.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<&mut Self, ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("D2P_") else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            self.set(rest, &value).map_err(|e| match e {
                ConfigError::UnknownKey { hint, .. } => ConfigError::UnknownKey {
                    key: format!("{name} (environment)"),
                    hint,
                },
                other => other,
            })?;
        }
        Ok(self)
    }

    /// Reads every key through `get` by its Fluent Bit (CamelCase) name, as the plugin
    /// does with `output_get_property`. Absent keys keep their defaults.
    pub fn from_lookup(
        mut get: impl FnMut(&str) -> Option<String>,
    ) -> Result<ConfigBuilder, ConfigError> {
        let mut b = ConfigBuilder::new();
        for k in KEYS {
            if let Some(v) = get(k.camel) {
                b.set_key(k, &v)?;
            }
        }
        Ok(b)
    }

    /// Validates the whole configuration and derives dependent defaults.
    pub fn build(mut self) -> Result<Config, ConfigError> {
        let c = &mut self.cfg;
        if !self.lock_ttl_set {
            c.redis.lock_ttl = c.flush_interval.mul_f64(1.5);
        }
        if !self.lock_name_set {
            c.redis.lock_instance_name = host_name();
        }
        if !self.dlq_path_set {
            c.dlq_path = c.writer_file_path.join("_dlq");
        }
        if !self.recovery_path_set {
            c.recovery_path = c.writer_file_path.join("_recovery");
        }
        c.file_spool_path = match self.file_spool.as_deref().map(str::trim) {
            None => Some(c.writer_file_path.join("_open")),
            Some(m) if m.eq_ignore_ascii_case("memory") => None,
            Some(p) => Some(PathBuf::from(p)),
        };
        c.http_tls = pair_tls(
            self.tls_cert.take(),
            self.tls_key.take(),
            ("HttpTlsCertFile", "HttpTlsKeyFile"),
        )?;
        if c.http_tls_client_ca.is_some() && c.http_tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "HttpTlsClientCaFile".into(),
                reason: "HttpTlsClientCaFile needs HttpTlsCertFile and HttpTlsKeyFile: client certificates are asked for in a TLS handshake".into(),
            });
        }
        c.redis.client_tls = pair_tls(
            self.redis_cert.take(),
            self.redis_key.take(),
            ("RedisTlsCertFile", "RedisTlsKeyFile"),
        )?;
        let host = c.redis.host.trim();
        if c.redis.tls_files() && host.contains("://") && !host.starts_with("rediss://") {
            return Err(ConfigError::Invalid {
                key: "RedisHost".into(),
                reason: "RedisCaFile and RedisTlsCertFile are for TLS: give RedisHost as host:port or a rediss:// URL".into(),
            });
        }
        if c.use_hmac && c.hmac_key.is_empty() {
            return Err(ConfigError::Invalid {
                key: "UseHMAC".into(),
                reason: "UseHMAC=true needs HmacKey (the HMAC-SHA256 secret)".into(),
            });
        }
        if c.buffer_type == BufferType::Redis && c.redis.host.is_empty() {
            return Err(ConfigError::Invalid {
                key: "RedisHost".into(),
                reason: "BufferType=redis needs RedisHost (host:port or redis:// URL)".into(),
            });
        }
        if c.s3.access_key.is_empty() != c.s3.secret_key.is_empty() {
            return Err(ConfigError::Invalid {
                key: "S3AccessKey".into(),
                reason: "S3AccessKey and S3SecretKey go together".into(),
            });
        }
        if !c.s3.kms_key_id.is_empty()
            && !matches!(c.s3.encryption, S3Encryption::Kms | S3Encryption::KmsDsse)
        {
            return Err(ConfigError::Invalid {
                key: "S3KmsKeyId".into(),
                reason: "S3KmsKeyId needs S3ServerSideEncryption aws:kms or aws:kms:dsse".into(),
            });
        }
        if c.writer_type == WriterType::S3 && c.s3.bucket.is_empty() {
            return Err(ConfigError::Invalid {
                key: "S3BucketName".into(),
                reason: "WriterType=aws-s3 needs S3BucketName".into(),
            });
        }
        if let Some(level) = c.compression_level {
            let (lo, hi) = match c.codec {
                Codec::Gzip => (0, 10),
                Codec::Zstd => (1, 22),
                Codec::Brotli => (0, 11),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "WriterCompressionLevel".into(),
                        reason: format!("{:?} has no compression level", c.codec),
                    });
                }
            };
            if !(lo..=hi).contains(&level) {
                return Err(ConfigError::Invalid {
                    key: "WriterCompressionLevel".into(),
                    reason: format!("{:?} accepts levels {lo}-{hi}, got {level}", c.codec),
                });
            }
        }
        if c.record_type == RecordType::Dynamic && !self.partition_fields_set {
            // Upstream's dynamic keys: `capability:domain:service:application`.
            c.partition_fields = ["capability", "domain", "service", "application"]
                .map(String::from)
                .to_vec();
        }
        if !self.partition_path_set {
            c.partition_path = default_path(c.record_type, &c.partition_fields);
        }
        if let Some(p) = &c.json_schema_path {
            if c.record_type != RecordType::Dynamic {
                return Err(ConfigError::Invalid {
                    key: "JsonSchemaPath".into(),
                    reason: "a JSON Schema applies to RecordType=dynamic only".into(),
                });
            }
            let fixed = crate::convert::jsonschema::Fixed::load(p).map_err(|reason| {
                ConfigError::Invalid {
                    key: "JsonSchemaPath".into(),
                    reason,
                }
            })?;
            c.json_schema = Some(std::sync::Arc::new(fixed));
        }
        // The path template must only use partition fields, so a key determines its path.
        crate::partition::PathTemplate::parse(&c.partition_path, &c.partition_fields).map_err(
            |reason| ConfigError::Invalid {
                key: "PartitionPath".into(),
                reason,
            },
        )?;
        Ok(self.cfg)
    }
}

fn nonempty(k: &KeyInfo, v: &str) -> Result<String, ConfigError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(bad(k, v, "must not be empty"));
    }
    Ok(t.to_string())
}

/// "did you mean" for unknown keys.
fn suggest(key: &str) -> String {
    let c = keys::canonical(key);
    let best = KEYS
        .iter()
        .map(|k| (edit_distance(&c, &keys::canonical(k.camel)), k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 3 => format!(" (did you mean `{}` / `{}`?)", k.camel, k.snake),
        _ => " (see the configuration reference in README.md)".to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
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

    pub fn from_json_str(text: &str) -> Result<Config, ConfigError> {
        let mut b = ConfigBuilder::new();
        b.merge_json_str(text)?;
        b.build()
    }
}

/// The folder layout when `PartitionPath` is not set: upstream's layouts for the default
/// fields (`capability=<cap>/...` for logs, `<capability>/...` for dynamic records), and
/// `<first field>=<value>/...` for custom fields, so that setting PartitionFields alone
/// is enough.
fn default_path(rt: RecordType, fields: &[String]) -> String {
    const HOURS: &str = "year={%Y}/month={%m}/day={%d}/hour={%H}";
    let first = fields.first().map(String::as_str).unwrap_or("");
    match (rt, first) {
        (RecordType::Log, "business-capability") => format!("capability={{{first}}}/{HOURS}"),
        (RecordType::Dynamic, "capability") => format!("{{capability}}/{HOURS}"),
        _ => {
            // A record accessor's folder name is its dotted form, `$a['b']` as `a_b`.
            let dotted = match rt {
                RecordType::Dynamic => crate::partition::FieldPath::parse(first)
                    .map(|f| f.name().to_string())
                    .unwrap_or_else(|_| first.to_string()),
                RecordType::Log => first.to_string(),
            };
            let name: String = dotted
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{name}={{{first}}}/{HOURS}")
        }
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
        assert_eq!(c.writer_file_path, PathBuf::from("./out"));
        assert_eq!(c.port, 8080);
        assert_eq!(c.redis.data_prefix, "data");
        assert_eq!(c.redis.keys, "keys");
        assert_eq!(c.dlq_path, PathBuf::from("./out/_dlq"));
        assert_eq!(c.dlq_max_bytes, 1 << 30);
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
        let build = |pairs: &[(&str, &str)]| {
            let mut b = ConfigBuilder::new();
            for (k, v) in pairs {
                b.set(k, v).unwrap();
            }
            b.build()
        };
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
        let build = |kv: &[(&str, &str)]| {
            let mut b = ConfigBuilder::new();
            for (k, v) in kv {
                b.set(k, v)?;
            }
            b.build()
        };
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
        let build = |kv: &[(&str, &str)]| {
            let mut b = ConfigBuilder::new();
            for (k, v) in kv {
                b.set(k, v).unwrap();
            }
            b.build()
        };
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
