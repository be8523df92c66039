//! The table of configuration keys: one row per key, with both spellings, its default
//! and what it does. Parsing, the README reference table and the plugin's property
//! lookup all read this table, so a key cannot exist in one place and not another.

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A key of the Go predecessor, Data2Parquet-go.
    Upstream,
    /// A key added by data2parquet.
    New,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo {
    pub key: Key,
    /// Fluent Bit spelling, e.g. `BufferSize`.
    pub camel: &'static str,
    /// JSON spelling, e.g. `buffer_size`.
    pub snake: &'static str,
    /// The default, as documented.
    pub default: &'static str,
    pub doc: &'static str,
    pub origin: Origin,
}

macro_rules! keys {
    ($( $id:ident, $camel:literal, $snake:literal, $origin:ident, $default:literal, $doc:literal; )*) => {
        /// Every configuration key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Key { $($id),* }

        /// The key table, in documentation order.
        pub const KEYS: &[KeyInfo] = &[
            $( KeyInfo { key: Key::$id, camel: $camel, snake: $snake, default: $default, doc: $doc, origin: Origin::$origin } ),*
        ];
    };
}

keys! {
    // --- upstream keys (upstream.md §2.2) ---
    Address, "Address", "address", Upstream, "\"\" (all interfaces)", "http-server listen address.";
    Port, "Port", "port", Upstream, "8080", "http-server listen port (1-65535).";
    BufferSize, "BufferSize", "buffer_size", Upstream, "100", "Records per key that trigger a flush; also the most rows per file. Any value >= 1 (upstream silently raised values below 100).";
    BufferType, "BufferType", "buffer_type", Upstream, "mem", "`mem` (fast, not durable) or `redis` (durable, multi-node).";
    Debug, "Debug", "debug", Upstream, "false", "Verbose logging.";
    FlushInterval, "FlushInterval", "flush_interval", Upstream, "5", "Seconds a record may wait before its key is flushed (also `500ms`, `10s`, `2m`).";
    IgnoredFields, "IgnoredFields", "ignored_fields", Upstream, "\"\"", "Input fields to drop. Separators: `, ; : | / \\` and space. Names are matched case-insensitively with `_` equal to `-`. With RecordType=dynamic an entry may name a field inside nested maps, as `kubernetes.annotations` or Fluent Bit's record accessor `$kubernetes['annotations']`: the rest of the map is kept (a dotted entry also matches a top-level key of that name).";
    MaskFields, "MaskFields", "mask_fields", Upstream, "\"\"", "Input fields whose value is replaced by `*`. Same syntax as IgnoredFields, nested paths included; where both name a field, it is dropped.";
    JsonSchemaPath, "JsonSchemaPath", "json_schema_path", Upstream, "\"\"", "JSON Schema file that fixes the schema of `dynamic` records.";
    JsonSchemaUnknownKeys, "JsonSchemaUnknownKeys", "json_schema_unknown_keys", New, "extra", "With JsonSchemaPath, where the keys go that the schema does not name: one `_extra` JSON column (`extra`), or columns of their own, inferred and widened as for a schema-less `RecordType=dynamic` (`columns`: the schema pins the types of its columns, the rest is inferred). Either way none is dropped.";
    LogFormatter, "LogFormatter", "log_formatter", Upstream, "color", "Log line format of the tools: `color`, `text`, `json` or `multi`.";
    RecordType, "RecordType", "record_type", Upstream, "log", "`log` (the fixed upstream schema) or `dynamic` (schema from the data).";
    RecoveryAttempts, "RecoveryAttempts", "recovery_attempts", Upstream, "0", "Extra write attempts, with exponential backoff, before a batch goes to the recovery store.";
    RedisHost, "RedisHost", "redis_host", Upstream, "\"\"", "Redis `host:port`, or a `redis://` / `rediss://` (TLS) URL. Required with BufferType=redis.";
    RedisPassword, "RedisPassword", "redis_password", Upstream, "\"\"", "Redis password (never logged).";
    RedisCaFile, "RedisCaFile", "redis_ca_file", New, "\"\"", "PEM file of the CA certificates that signed the Redis server's certificate, trusted instead of the system's roots (a self-managed Redis with TLS). Turns TLS on for a `host:port` RedisHost.";
    RedisTlsCertFile, "RedisTlsCertFile", "redis_tls_cert_file", New, "\"\"", "Client certificate (PEM) shown to Redis, which asks for one by default when its TLS is on (`tls-auth-clients yes`); needs RedisTlsKeyFile. Turns TLS on for a `host:port` RedisHost.";
    RedisTlsKeyFile, "RedisTlsKeyFile", "redis_tls_key_file", New, "\"\"", "The PEM private key of RedisTlsCertFile.";
    RedisDB, "RedisDB", "redis_db", Upstream, "0", "Redis database number (>= 0).";
    RedisTimeout, "RedisTimeout", "redis_timeout", Upstream, "0", "Redis command timeout in milliseconds; 0 means 3000 ms, -1 means none.";
    RedisKeys, "RedisKeys", "redis_keys", Upstream, "keys", "Name of the Redis set that lists every buffered key.";
    RedisDataPrefix, "RedisDataPrefix", "redis_data_prefix", Upstream, "data", "Prefix of the Redis lists that hold buffered records (`<prefix>:<key>`).";
    RedisLockPrefix, "RedisLockPrefix", "redis_lock_prefix", Upstream, "lock", "Prefix of the per-key flush locks (`<prefix>:<key>`).";
    RedisLockTTL, "RedisLockTTL", "redis_lock_ttl", Upstream, "1.5 x FlushInterval", "Flush-lock lifetime in seconds; refreshed while flushing.";
    RedisLockInstanceName, "RedisLockInstanceName", "redis_lock_instance_name", Upstream, "host name", "This node's name in lock owner tokens.";
    RedisDLQPrefix, "RedisDLQPrefix", "redis_dlq_prefix", Upstream, "dlq", "Prefix of the per-key dead-letter lists (`<prefix>:<key>`).";
    RedisRecoveryKey, "RedisRecoveryKey", "redis_recovery_key", Upstream, "recovery", "Prefix of the Redis keys that keep failed uploads for retry.";
    RedisSkipFlush, "RedisSkipFlush", "redis_skip_flush", Upstream, "false", "Receive-only node: push to Redis, never flush.";
    S3BucketName, "S3BucketName", "s3_bucket_name", Upstream, "\"\"", "Target bucket (required with WriterType=aws-s3).";
    S3Region, "S3Region", "s3_region", Upstream, "\"\"", "Region; empty uses the AWS default chain (`AWS_REGION`, profile).";
    S3Endpoint, "S3Endpoint", "s3_endpoint", Upstream, "\"\"", "Custom endpoint (MinIO, Ceph, R2, moto...). Uses path-style addressing.";
    S3CaFile, "S3CaFile", "s3_ca_file", New, "\"\"", "PEM file of CA certificates trusted for the S3 (and STS) endpoints besides the system's roots: an on-premises MinIO or Ceph whose certificate comes from a private CA.";
    S3RoleARN, "S3RoleARN", "s3_role_arn", Upstream, "\"\"", "Role to assume with STS (optional).";
    S3STSEndpoint, "S3STSEndpoint", "s3_sts_endpoint", Upstream, "\"\"", "Custom STS endpoint for S3RoleARN (optional).";
    S3DefaultCapability, "S3DefaultCapability", "s3_default_capability", Upstream, "undefined", "Accepted for compatibility; upstream never used it.";
    TryAutoRecover, "TryAutoRecover", "try_auto_recover", Upstream, "false", "Resend files kept in the recovery store at start, every RecoveryInterval and once more at close.";
    UseDLQ, "UseDLQ", "use_dlq", Upstream, "true", "Send records that cannot be decoded or converted to the dead-letter queue (default changed from upstream's false so that no bad record is lost silently).";
    UseHash, "UseHash", "use_hash", Upstream, "false", "Add `-<md5 of the file>` to file names.";
    UseHMAC, "UseHMAC", "use_hmac", Upstream, "false", "Fill the `hmac` column with HMAC-SHA256 under HmacKey (see README).";
    WriterCompressionType, "WriterCompressionType", "writer_compression_type", Upstream, "snappy", "`snappy`, `gzip`, `zstd`, `lz4`, `brotli` or `none`.";
    WriterFilePath, "WriterFilePath", "writer_file_path", Upstream, "./out", "Output folder of the file writer; also holds `_dlq/` and `_recovery/` by default.";
    WriterRowGroupSize, "WriterRowGroupSize", "writer_row_group_size", Upstream, "134217728", "Row-group size in encoded bytes (>= 1024; suffixes KiB/MiB/GiB accepted).";
    WriterType, "WriterType", "writer_type", Upstream, "file", "`file` or `aws-s3` (`s3` accepted).";
    // --- new keys ---
    HmacKey, "HmacKey", "hmac_key", New, "\"\"", "Secret key of UseHMAC (required with it; never logged).";
    WriterCompressionLevel, "WriterCompressionLevel", "writer_compression_level", New, "codec default", "Level for gzip (0-10), zstd (1-22) or brotli (0-11).";
    WriterFsync, "WriterFsync", "writer_fsync", New, "true", "fsync files, their folder and the folders made for them before a batch counts as written; also DLQ appends.";
    WriterMapValuesUtf8, "WriterMapValuesUtf8", "writer_map_values_utf8", New, "false", "Annotate `args`/`extra-fields` values as UTF8 (upstream leaves them plain binary).";
    WriterPageSize, "WriterPageSize", "writer_page_size", New, "131072", "Target size of a data page before compression (>= 1024; suffixes KiB/MiB accepted). Upstream's parquet-go wrote 8 KiB pages, Firehose and the parquet crate default to 1 MiB. At 128 KiB a page's buffers stay in the allocator's reuse lists and the CPU cache between encoding and compressing: on 1M bench records json2parquet's peak RSS fell by 15 % (309 to 263 MB) and its wall time by 3 % (eight alternated runs), for a file 0.3 % larger. Smaller pages also give readers with the page index finer pruning.";
    WriterStatisticsExclude, "WriterStatisticsExclude", "writer_statistics_exclude", New, "\"\"", "Columns written without statistics (min/max, null count) or page index: free text and random ids, where min/max prune nothing, e.g. `message,stack-trace,correlation-id`. A name covers the columns nested under it (`args`, `extra-fields`). Same list syntax as IgnoredFields; names that match no column are ignored. On 200k bench records, leaving out the nine free-text and id columns of the log schema saved about 3 % of json2parquet's CPU (all statistics off: 7-12 %).";
    WriterDictionaryExclude, "WriterDictionaryExclude", "writer_dictionary_exclude", New, "`time,correlation-id,session-id,message-id,transaction-message-reference`", "Columns written without dictionary encoding, for values that rarely repeat: the writer would otherwise hash every value of each column chunk into a dictionary, abandon it at 1 MiB and keep the larger dictionary-encoded start. The default names the log schema's per-event ids and its event time; on 1M bench records it made json2parquet's file 0.4 % smaller and cost about 4 % less CPU (seven alternated runs), and the http-server's smaller files 3.4 % smaller. `none` keeps a dictionary on every column. Same syntax as WriterStatisticsExclude.";
    WriterDictionaryAdaptive, "WriterDictionaryAdaptive", "writer_dictionary_adaptive", New, "true", "Write a string column (or a list of strings) without a dictionary in a file where its values rarely repeat: nine in ten distinct among the first values of the file's first batch, as many as a fifth of the file's rows (64 to 8192): that many distinct in so few means about as many kinds of value as rows, where a dictionary saves nothing, while a few thousand users repeating over a large file keep theirs. A dictionary of values that never repeat costs a hash and a copy per value and makes the file larger; in the small files of a flusher (one per key) the 1 MiB limit that would abandon it is never reached. Free text and ids are caught whatever their names; a message column of repeated templates keeps its dictionary. On `ci/bench-http` (1M records, 240 files of about 4k rows) it left out `message`, `stack-trace`, `duration`, `error-code`, the user, person and device ids and `trace-ip`: output 3.0 % smaller, server CPU per record 4 % lower (four alternated pairs). A file that is one batch (up to 8192 rows, as upstream's default BufferSize makes) also leaves the dictionary out of such columns that have no value in it, which would be an empty page: 4.8 % off the plugin bench's output at the defaults. `false`: only WriterDictionaryExclude decides. json2parquet writes one file from many threads and always keeps its dictionaries.";
    WriterPageIndex, "WriterPageIndex", "writer_page_index", New, "auto", "Which files carry page statistics and a page index (column and offset index), which readers use to skip pages within a row group: `always`; `never` (statistics per column chunk only, which still skip files and row groups); or `auto`, every file except those known before they are written to hold at most 1024 rows, the parquet writer's batch, after which it first checks a page's size: such a file has one data page per column unless a column's values pass WriterPageSize, and its page index repeats the chunk statistics. At upstream's default BufferSize (100-record files) that is 2 KB of a 13.5 KB file: on `ci/bench-plugin` at the defaults the output fell by 14.5 % (135.3 to 115.6 MB for 10,028 files), with the same rows and chunk statistics and CPU within the noise.";
    WriterBloomFilterColumns, "WriterBloomFilterColumns", "writer_bloom_filter_columns", New, "\"\"", "Columns written with a Parquet bloom filter in every row group, for point lookups on ids (`correlation-id,session-id,user-id`): DuckDB, Spark, Trino and Athena skip the row groups and files whose filter rules a value out, where min/max statistics of random ids prune nothing. Each filter is sized for the rows of its file and folded down to WriterBloomFilterFpp, so small files get small filters. Same syntax as WriterStatisticsExclude; a name covers the columns nested under it.";
    WriterBloomFilterFpp, "WriterBloomFilterFpp", "writer_bloom_filter_fpp", New, "0.05", "False-positive rate of the bloom filters of WriterBloomFilterColumns (between 0 and 1, exclusive): lower rules out more row groups, at a larger filter (about 6 bits per distinct value at 0.05, 10 at 0.01).";
    PartitionFields, "PartitionFields", "partition_fields", New, "business-capability,business-domain,business-service,application-service", "Fields whose values form the partition key (`a:b:c:d`). Also `tag`, `tag[N]` and `meta.<name>`; with RecordType=dynamic, nested fields as `kubernetes.namespace_name` or Fluent Bit's record accessor `$kubernetes['namespace_name']` (a top-level key with the dotted name wins). With RecordType=dynamic the default is `capability,domain,service,application` (a missing field is `dynamic_<field>`, as upstream).";
    PartitionPath, "PartitionPath", "partition_path", New, "capability={business-capability}/year={%Y}/month={%m}/day={%d}/hour={%H}", "Folder layout: `{field}` (a partition field) and `{%Y}` `{%m}` `{%d}` `{%H}` `{%M}` (UTC). Unset: upstream's layouts (`{capability}/year=...` for dynamic records), or `<first field>={first field}/year=...` for custom PartitionFields.";
    PartitionTime, "PartitionTime", "partition_time", New, "flush", "Time used in the path: `flush` (flush time) or `record` (the record's own time).";
    PartitionTimezone, "PartitionTimezone", "partition_timezone", New, "UTC", "Time zone of the path's `{%Y}` `{%m}` `{%d}` `{%H}` `{%M}`: `UTC`, an IANA name such as `Europe/Berlin` (daylight saving time followed, from the system's time zone database or the copy built in) or a fixed offset such as `+05:30`. Event times stored in files stay UTC.";
    BufferMaxBytes, "BufferMaxBytes", "buffer_max_bytes", New, "67108864", "Memory the mem buffer may hold. Beyond it, records wait up to BufferFullWait for a write to make room, then are refused (FLB_RETRY / HTTP 429).";
    BufferMaxKeys, "BufferMaxKeys", "buffer_max_keys", New, "10000", "Most partition keys with buffered records at once, with either buffer. A submission that brings new keys beyond it waits up to BufferFullWait while what is buffered is written, then is refused (FLB_RETRY / HTTP 429), like a full BufferMaxBytes: a PartitionFields entry of unbounded cardinality (an id, a timestamp) then shows as backpressure whose reason names this limit, rather than a file per record and a buffer that grows with every key. An empty buffer takes any submission. With Redis the count is the `<RedisKeys>` set as this node last read it, so nodes may pass it together by what they add between reads. 0 = no limit.";
    FileTargetSize, "FileTargetSize", "file_target_size", New, "0 (off)", "Parquet file size to aim for per key, in encoded bytes (0 or >= 64KiB; suffixes KiB/MiB/GiB accepted). Each written file teaches the bytes a row of its key takes, and the key's next flush takes as many records as should make this size. BufferSize then sizes only the first file, before there is an estimate; FlushInterval still flushes a key whose file would not fill in time. With the mem buffer, raise BufferMaxBytes too: records take several times more memory than Parquet bytes.";
    FileMaxAge, "FileMaxAge", "file_max_age", New, "0 (off)", "With the mem buffer: keep each key's file open across flushes for up to this long (`300`, `5m`), appending every flush's records to it as row groups, and write it once it reaches FileTargetSize, once it is this old, on an explicit flush and at exit. Files then grow past what the buffer holds: an open file's finished row groups go to disk (see FileSpoolPath), and memory holds the writer's state for the row group in progress, so set WriterRowGroupSize to a few MiB. Open files hold at most BufferMaxBytes of memory besides the buffer (past it the largest are written first). With Redis, records instead wait in Redis (durably) until their key's oldest has waited this long, in place of FlushInterval, or until the key has FileTargetSize's worth; a batch of more than 10,000 records or about 16 MiB is then read from Redis a page at a time as its file grows in FileSpoolPath, so memory does not grow with the file. 0 writes one file per flush.";
    FileSpoolPath, "FileSpoolPath", "file_spool_path", New, "<WriterFilePath>/_open", "With the S3 writer, and FileMaxAge or the Redis buffer: the local folder where open files (and the files of Redis batches of more than 10,000 records or about 16 MiB) grow as their row groups are finished, to be uploaded from there (a part at a time above S3MultipartThreshold). Memory then holds only each file's row group in progress, whatever FileTargetSize. `memory` keeps such files in memory instead (open files within BufferMaxBytes). The file writer always grows an open file in its own output folder, under a hidden `.d2p.<ULID>.open` name, and renames it when done. A crash leaves such files behind; the sweep removes them once older than FileMaxAge (with Redis, none) plus 10 minutes.";
    QueueCapacity, "QueueCapacity", "queue_capacity", New, "64", "Batches waiting for the buffer thread. Beyond it, producers wait up to BufferFullWait, then get a `full` error.";
    BufferFullWait, "BufferFullWait", "buffer_full_wait", New, "1s", "How long records wait for room in a full buffer (usually a write is making room), or for an unreachable or restarting Redis, before they are refused with FLB_RETRY / HTTP 429 (503 for Redis). `0` refuses at once; at most `3s`, so a Fluent Bit flush answers well within its 5 s Grace (a Redis call under way still runs to its RedisTimeout).";
    FlushWorkers, "FlushWorkers", "flush_workers", New, "1", "Threads that convert and write batches.";
    MaxRecordBytes, "MaxRecordBytes", "max_record_bytes", New, "16777216", "Largest single JSON record accepted; larger ones go to the DLQ.";
    DLQPath, "DLQPath", "dlq_path", New, "<WriterFilePath>/_dlq", "Folder of the file dead-letter queue (mem buffer).";
    DLQMaxBytes, "DLQMaxBytes", "dlq_max_bytes", New, "1GiB", "Most bytes the dead-letter queue may hold: the DLQ files in DLQPath together (each start makes a new file there; counted at the first dead letter, and again at most once a second while full, so files removed after a replay make room), json2parquet's DLQ file, or each Redis DLQ list (as Redis's MEMORY USAGE estimates it). Rejected records beyond it are counted (d2p_dlq_dropped_total) and logged, not kept, so a source sending garbage cannot fill the disk or Redis. 0 = no limit.";
    RecoveryPath, "RecoveryPath", "recovery_path", New, "<WriterFilePath>/_recovery", "Folder that keeps batches whose write failed, for retry.";
    S3AccessKey, "S3AccessKey", "s3_access_key", New, "\"\"", "Static access key id (optional; otherwise the default AWS credential chain).";
    S3SecretKey, "S3SecretKey", "s3_secret_key", New, "\"\"", "Static secret access key, with S3AccessKey (never logged).";
    S3KeyPrefix, "S3KeyPrefix", "s3_key_prefix", New, "\"\"", "Prefix of every object name (e.g. `logs/`).";
    S3PartSize, "S3PartSize", "s3_part_size", New, "8MiB", "Part size of multipart uploads (>= 5 MiB).";
    S3MultipartThreshold, "S3MultipartThreshold", "s3_multipart_threshold", New, "16MiB", "Files this large or larger are uploaded in parts; smaller ones with one PutObject.";
    S3ServerSideEncryption, "S3ServerSideEncryption", "s3_server_side_encryption", New, "\"\"", "Server-side encryption of every object: `AES256` (SSE-S3), `aws:kms` (SSE-KMS) or `aws:kms:dsse`; empty leaves it to the bucket's default encryption.";
    S3KmsKeyId, "S3KmsKeyId", "s3_kms_key_id", New, "\"\"", "KMS key id or ARN for `aws:kms`; empty uses the account's AWS-managed key.";
    S3StorageClass, "S3StorageClass", "s3_storage_class", New, "\"\"", "Storage class of every object (`STANDARD_IA`, `INTELLIGENT_TIERING`, `GLACIER_IR`...); empty is the bucket's default.";
    S3Acl, "S3Acl", "s3_acl", New, "\"\"", "Canned ACL of every object, e.g. `bucket-owner-full-control` when the bucket belongs to another account; empty sends none.";
    S3AbortIncompleteAfter, "S3AbortIncompleteAfter", "s3_abort_incomplete_after", New, "24h", "Abort this writer's multipart uploads (objects named `<ULID>-<key>.parquet` under S3KeyPrefix) started longer ago than this and never completed: the parts a crash in mid-upload leaves, which S3 keeps and bills until aborted. Checked at start and then hourly; needs `s3:ListBucketMultipartUploads` and `s3:AbortMultipartUpload` (without them each check logs a warning, and writing goes on). Keep it well above the longest upload, since other nodes may be uploading now; `off` leaves uploads alone (e.g. for a bucket lifecycle rule).";
    RecoveryInterval, "RecoveryInterval", "recovery_interval", New, "30", "How often (seconds) TryAutoRecover retries the recovery store.";
    MetricsFile, "MetricsFile", "metrics_file", New, "\"\"", "Write the Prometheus metrics to this file every 10 s and at close (atomically), for node_exporter's textfile collector; samples carry `output=\"<file stem>\"`. The way to see the plugin's counters.";
    MetricsKeys, "MetricsKeys", "metrics_keys", New, "100", "Partition keys that get metric series of their own (`d2p_key_rows_written_total{key=...}` and the other `d2p_key_*`), in the order they are first written; rows of later keys are summed under `key=\"_other\"`, so an unbounded PartitionFields value cannot flood the metrics store. 0 = no per-key series.";
    HttpMaxBodyBytes, "HttpMaxBodyBytes", "http_max_body_bytes", New, "16MiB", "http-server: largest request body, as sent and once unpacked (gzip, zstd, deflate); larger ones get 413.";
    HttpAuthToken, "HttpAuthToken", "http_auth_token", New, "\"\"", "http-server: when set, requests need `Authorization: Bearer <token>` (401 otherwise; /health and /ready stay open).";
    HttpRequestTimeout, "HttpRequestTimeout", "http_request_timeout", New, "30", "http-server: seconds a request may take before it is answered 503.";
    HttpTlsCertFile, "HttpTlsCertFile", "http_tls_cert_file", New, "\"\"", "http-server: serve HTTPS with this PEM certificate chain (leaf first); needs HttpTlsKeyFile. Both files are read again when they change (checked at most every 2 s, when clients connect), so a rotated certificate is served without a restart.";
    HttpTlsKeyFile, "HttpTlsKeyFile", "http_tls_key_file", New, "\"\"", "http-server: the PEM private key (PKCS#8, PKCS#1 or SEC1) of HttpTlsCertFile.";
    HttpTlsClientCaFile, "HttpTlsClientCaFile", "http_tls_client_ca_file", New, "\"\"", "http-server: mutual TLS. Every client must show a certificate signed by a CA in this PEM file, or its handshake is refused (HttpAuthToken, if set, is still asked for). Needs HttpTlsCertFile; read at start.";
    HttpIdempotencyTtl, "HttpIdempotencyTtl", "http_idempotency_ttl", New, "24h", "http-server: how long the answer to a request with an `Idempotency-Key` header is kept, so a resend within it is answered again instead of stored twice (in Redis with BufferType=redis, shared by every node).";
    FluentMetadata, "FluentMetadata", "fluent_metadata", New, "args", "Fluent Bit event metadata: `args` (flattened as `meta-<key>`) or `drop`.";
    DynamicNested, "DynamicNested", "dynamic_nested", New, "struct", "RecordType=dynamic: nested objects become Parquet `struct` columns, or `json` text columns.";
    DynamicTimeKey, "DynamicTimeKey", "dynamic_time_key", New, "time,timestamp,@timestamp", "RecordType=dynamic: fields tried, in order, for the event time (RFC 3339 or epoch seconds/ms/us/ns) when the input has none of its own (Fluent Bit events do); otherwise the arrival time.";
}

impl Key {
    pub fn info(self) -> &'static KeyInfo {
        // The table is generated from the same list as the enum, so every key is present.
        KEYS.iter()
            .find(|k| k.key == self)
            .unwrap_or_else(|| unreachable!("key table is complete"))
    }
}

/// The canonical form used for matching: lower case, with `_`, `-` and `.` removed, so
/// `buffer_size`, `BufferSize` and `BUFFER-SIZE` are one key.
pub fn canonical(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Finds a key by any spelling.
pub fn lookup(name: &str) -> Option<&'static KeyInfo> {
    let c = canonical(name);
    KEYS.iter()
        .find(|k| canonical(k.camel) == c || canonical(k.snake) == c)
}

/// The README's configuration reference, generated from the table.
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "| Fluent Bit key | JSON key | Environment | Default | Origin | Meaning |\n|---|---|---|---|---|---|\n",
    );
    for k in KEYS {
        s.push_str(&format!(
            "| `{}` | `{}` | `D2P_{}` | {} | {} | {} |\n",
            k.camel,
            k.snake,
            k.snake.to_uppercase(),
            k.default,
            match k.origin {
                Origin::Upstream => "upstream",
                Origin::New => "new",
            },
            k.doc.replace('|', "\\|")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_finds_its_key() {
        for k in KEYS {
            assert_eq!(lookup(k.camel).map(|i| i.key), Some(k.key), "{}", k.camel);
            assert_eq!(lookup(k.snake).map(|i| i.key), Some(k.key), "{}", k.snake);
            assert_eq!(lookup(&k.snake.to_uppercase()).map(|i| i.key), Some(k.key));
        }
        assert!(lookup("NoSuchKey").is_none());
    }

    #[test]
    fn spellings_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KEYS {
            assert!(seen.insert(canonical(k.camel)), "duplicate {}", k.camel);
            assert_eq!(
                canonical(k.camel),
                canonical(k.snake),
                "{} vs {}",
                k.camel,
                k.snake
            );
        }
    }
}

#[cfg(test)]
mod readme {
    /// The README's configuration table is generated from the key table; this keeps
    /// them from drifting apart. Regenerate with
    /// `D2P_PRINT_CONFIG_TABLE=1 cargo test -p data2parquet readme -- --nocapture`.
    #[test]
    fn readme_has_the_config_reference() {
        let table = super::reference_markdown();
        if std::env::var("D2P_PRINT_CONFIG_TABLE").is_ok() {
            println!("{table}");
        }
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .unwrap_or_default();
        assert!(
            readme.contains(&table),
            "README.md's configuration table is out of date"
        );
    }
}
