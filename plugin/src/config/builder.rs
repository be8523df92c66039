//! [`ConfigBuilder`]: upstream's defaults, one key at a time from any source, then the
//! checks across keys and the defaults that depend on other keys.

use super::values::*;
use super::{Config, ConfigError, KEYS, Key, KeyInfo, RedisConfig, S3Config, keys};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Accumulates settings from any source, then validates them all at once.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    /// Every setting whose default stands alone. The ones below, whose defaults depend
    /// on other keys, are kept as given (`None`: not set) and resolved in `build`, once
    /// every key is known, so no flag can disagree with its value.
    cfg: Config,
    /// RedisLockTTL (unset: 1.5 × FlushInterval).
    lock_ttl: Option<Duration>,
    /// RedisLockInstanceName (unset or empty: the host name).
    lock_name: Option<String>,
    /// DLQPath (unset: `_dlq` under WriterFilePath).
    dlq_path: Option<PathBuf>,
    /// RecoveryPath (unset: `_recovery` under WriterFilePath).
    recovery_path: Option<PathBuf>,
    /// FileSpoolPath (unset: `_open` under WriterFilePath).
    file_spool: Option<String>,
    /// PartitionFields (unset: upstream's fields for the RecordType).
    partition_fields: Option<Vec<String>>,
    /// PartitionPath (unset: the layout for the fields, see [`default_path`]).
    partition_path: Option<String>,
    /// UseHMAC and HmacKey as given, which make `Config::hmac_key` together.
    use_hmac: bool,
    hmac_key: Secret,
    /// `HttpTlsCertFile` and `HttpTlsKeyFile` as given, paired up in `build`.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// `RedisTlsCertFile` and `RedisTlsKeyFile` as given, paired up in `build`.
    redis_cert: Option<PathBuf>,
    redis_key: Option<PathBuf>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Longest BufferFullWait: a Fluent Bit flush waits for it on the engine's thread, and
/// must answer well within Fluent Bit's default Grace of 5 s.
const MAX_FULL_WAIT: Duration = Duration::from_secs(3);

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
                hmac_key: None,
                redis: RedisConfig {
                    host: String::new(),
                    password: Secret::default(),
                    db: 0,
                    timeout: Some(Duration::from_millis(3000)),
                    keys: "keys".into(),
                    data_prefix: "data".into(),
                    lock_prefix: "lock".into(),
                    // Resolved in `build`.
                    lock_ttl: Duration::ZERO,
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
                writer_page_size: 128 * 1024,
                writer_type: WriterType::File,
                writer_fsync: true,
                map_values_utf8: false,
                statistics_exclude: FieldSet::default(),
                dictionary_exclude: FieldSet::parse(DICTIONARY_EXCLUDE),
                dictionary_adaptive: true,
                page_index: PageIndex::Auto,
                bloom_filter_columns: FieldSet::default(),
                bloom_filter_fpp: 0.05,
                // Resolved in `build`, as are the paths under WriterFilePath.
                partition_fields: Vec::new(),
                partition_path: String::new(),
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
                json_schema_unknown_keys: UnknownKeys::Extra,
                http_max_body_bytes: 16 * 1024 * 1024,
                http_auth_token: Secret::default(),
                http_request_timeout: Duration::from_secs(30),
                http_idempotency_ttl: Duration::from_secs(24 * 3600),
                http_tls: None,
                http_tls_client_ca: None,
                metrics_file: None,
                metrics_keys: crate::metrics::per_key::DEFAULT_CAP,
            },
            lock_ttl: None,
            lock_name: None,
            dlq_path: None,
            recovery_path: None,
            file_spool: None,
            partition_fields: None,
            partition_path: None,
            use_hmac: false,
            hmac_key: Secret::default(),
            tls_cert: None,
            tls_key: None,
            redis_cert: None,
            redis_key: None,
        }
    }

    /// Sets each pair in order, as [`ConfigBuilder::set`] does; the first error stops.
    pub fn set_all(&mut self, pairs: &[(&str, &str)]) -> Result<&mut Self, ConfigError> {
        for (k, v) in pairs {
            self.set(k, v)?;
        }
        Ok(self)
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
            Key::RedisLockTTL => self.lock_ttl = Some(parse_duration(k, v)?),
            Key::RedisLockInstanceName => {
                self.lock_name = Some(v.trim()).filter(|n| !n.is_empty()).map(String::from);
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
            Key::UseHMAC => self.use_hmac = parse_bool(k, v)?,
            Key::WriterCompressionType => {
                c.codec = parse_choice(k, v, Codec::parse, Codec::accepted())?
            }
            Key::WriterFilePath => c.writer_file_path = PathBuf::from(nonempty(k, v)?),
            Key::WriterRowGroupSize => c.writer_row_group_size = parse_bytes_min(k, v, 1024)?,
            Key::WriterPageSize => c.writer_page_size = parse_bytes_min(k, v, 1024)?,
            Key::WriterType => {
                c.writer_type = parse_choice(k, v, WriterType::parse, WriterType::accepted())?
            }
            Key::HmacKey => self.hmac_key = Secret::new(v),
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
            Key::WriterDictionaryAdaptive => c.dictionary_adaptive = parse_bool(k, v)?,
            Key::WriterPageIndex => {
                c.page_index = parse_choice(k, v, PageIndex::parse, PageIndex::accepted())?
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
                self.partition_fields = Some(f);
            }
            Key::PartitionPath => {
                self.partition_path = Some(v.trim().trim_matches('/').to_string());
            }
            Key::PartitionTime => {
                c.partition_time =
                    parse_choice(k, v, PartitionTime::parse, PartitionTime::accepted())?
            }
            Key::PartitionTimezone => {
                c.partition_timezone = crate::timezone::Zone::parse(v).map_err(|e| bad(k, v, e))?
            }
            Key::BufferMaxBytes => c.buffer_max_bytes = parse_bytes_min(k, v, 1024)?,
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
            Key::MaxRecordBytes => c.max_record_bytes = parse_bytes_min(k, v, 16)? as usize,
            Key::DLQPath => self.dlq_path = Some(PathBuf::from(nonempty(k, v)?)),
            Key::DLQMaxBytes => c.dlq_max_bytes = parse_bytes(k, v)?,
            Key::RecoveryPath => self.recovery_path = Some(PathBuf::from(nonempty(k, v)?)),
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
            Key::HttpMaxBodyBytes => c.http_max_body_bytes = parse_bytes_min(k, v, 16)? as usize,
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
            Key::JsonSchemaUnknownKeys => {
                c.json_schema_unknown_keys =
                    parse_choice(k, v, UnknownKeys::parse, UnknownKeys::accepted())?
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
        c.redis.lock_ttl = self
            .lock_ttl
            .unwrap_or_else(|| c.flush_interval.mul_f64(1.5));
        c.redis.lock_instance_name = self.lock_name.take().unwrap_or_else(host_name);
        c.dlq_path = (self.dlq_path.take()).unwrap_or_else(|| c.writer_file_path.join("_dlq"));
        c.recovery_path =
            (self.recovery_path.take()).unwrap_or_else(|| c.writer_file_path.join("_recovery"));
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
        let hmac_key = std::mem::take(&mut self.hmac_key);
        c.hmac_key = match self.use_hmac {
            false => None,
            true if hmac_key.is_empty() => {
                return Err(ConfigError::Invalid {
                    key: "UseHMAC".into(),
                    reason: "UseHMAC=true needs HmacKey (the HMAC-SHA256 secret)".into(),
                });
            }
            true => Some(hmac_key),
        };
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
        c.partition_fields = self.partition_fields.take().unwrap_or_else(|| {
            // Upstream's keys: `capability:domain:service:application` of either schema.
            let fields = match c.record_type {
                RecordType::Log => [
                    "business-capability",
                    "business-domain",
                    "business-service",
                    "application-service",
                ],
                RecordType::Dynamic => ["capability", "domain", "service", "application"],
            };
            fields.map(String::from).to_vec()
        });
        c.partition_path = (self.partition_path.take())
            .unwrap_or_else(|| default_path(c.record_type, &c.partition_fields));
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
