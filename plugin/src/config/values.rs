//! How a key's text becomes a typed value: the value types ([`Secret`], [`FieldSet`], the
//! enumerated choices, [`TlsFiles`]) and the parsers that accept upstream's spellings and
//! name the key and what it accepts when a value is wrong.

use super::{ConfigError, KeyInfo};
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
            pub(super) fn parse(v: &str) -> Option<Self> {
                let l = v.trim().to_ascii_lowercase();
                $( if [$($text),+].contains(&l.as_str()) { return Some($name::$var); } )*
                None
            }
            pub(super) fn accepted() -> &'static str {
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
    /// Which files carry a page index (WriterPageIndex).
    PageIndex { Auto = "auto", Always = "always", Never = "never" }
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
    /// Where the keys go that a JSON Schema does not name.
    UnknownKeys { Extra = "extra", Columns = "columns" }
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

/// The PEM files of http-server's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A non-empty path value, or `None` ("not set", as for the other path keys).
pub(super) fn path_value(v: &str) -> Option<PathBuf> {
    Some(v.trim()).filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// A certificate and its key, given as two keys that go together.
pub(super) fn pair_tls(
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

pub(super) fn bad(key: &KeyInfo, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.camel.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn parse_bool(k: &KeyInfo, v: &str) -> Result<bool, ConfigError> {
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

pub(super) fn parse_int<T: std::str::FromStr>(
    k: &KeyInfo,
    v: &str,
    what: &str,
) -> Result<T, ConfigError> {
    v.trim()
        .parse::<T>()
        .map_err(|_| bad(k, v, format!("expected {what}")))
}

/// Byte sizes: a plain number, or with a suffix (k/KB/KiB, M/MB/MiB, G/GB/GiB).
pub(super) fn parse_bytes(k: &KeyInfo, v: &str) -> Result<u64, ConfigError> {
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

/// A byte size of at least `min` bytes ([`parse_bytes`]' syntax): the floor below which
/// a size key's setting would make no sense, such as a page smaller than its headers.
pub(super) fn parse_bytes_min(k: &KeyInfo, v: &str, min: u64) -> Result<u64, ConfigError> {
    let n = parse_bytes(k, v)?;
    if n < min {
        return Err(bad(k, v, format!("must be at least {min} bytes")));
    }
    Ok(n)
}

/// Durations: plain seconds, or with a suffix ms/s/m/h.
pub(super) fn parse_duration(k: &KeyInfo, v: &str) -> Result<Duration, ConfigError> {
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

pub(super) fn parse_choice<T>(
    k: &KeyInfo,
    v: &str,
    f: fn(&str) -> Option<T>,
    accepted: &str,
) -> Result<T, ConfigError> {
    f(v).ok_or_else(|| bad(k, v, format!("accepted values: {accepted}")))
}

/// A name S3 defines (a storage class, a canned ACL), checked against the SDK's list so
/// that a typo fails at start rather than at every upload. Empty means "not set".
pub(super) fn s3_name(
    k: &KeyInfo,
    v: &str,
    name: String,
    known: &[&str],
) -> Result<String, ConfigError> {
    if name.is_empty() || known.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(bad(k, v, format!("accepted values: {}", known.join(", "))))
    }
}

pub(super) fn nonempty(k: &KeyInfo, v: &str) -> Result<String, ConfigError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(bad(k, v, "must not be empty"));
    }
    Ok(t.to_string())
}
