//! Input-to-log-record mapping: the field aliases and flattening rules of upstream
//! (`upstream.md` §3.4), with its defects (§15, D-D1…D-D9) fixed:
//!
//! - no value type ever panics: a non-string value lands in a string column as its
//!   JSON text, never as Go's `%!s(...)`;
//! - `ip` goes to `trace-ip`, `env` to `args`, and `error`, `error-message`,
//!   `error-msg` to the `error` column (only `error-code` goes to `error-code`);
//! - aliases resolve by a fixed precedence (`message` over `msg` over `log`, …); the
//!   losing value is kept in `extra-fields` under its own key, never dropped;
//! - only a leading `tags-` is stripped from keys;
//! - null stays null in optional columns instead of becoming "".

use super::canonical;
use super::key_memory::KeyMemory;
use super::log::{LogBuilder, LogRecord, Str};
use crate::config::FieldSet;
use crate::timeutil;
use crate::value::{Doc, Kind, Node, ValRef};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Where an input key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// A scalar column; the rank orders aliases (0 wins).
    Scalar(Str, u8),
    Audit,
    AutoIndex,
    TraceIp,
    Tags,
    Args,
    /// An args entry under a fixed name.
    Arg(&'static str),
    /// Flattened into args with this prefix.
    Flatten(&'static str),
    /// Like `Flatten("details")`, then `details-tags` is split into tags.
    Details,
}

/// What the configuration says about one input key: worked out once per distinct key
/// and kept by the mapper, because a source sends the same few dozen keys in every
/// record and normalising plus three lookups per field was a tenth of the plugin's CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPlan {
    /// Empty or listed in `IgnoreFields`.
    Ignore,
    Map {
        /// The normalised key, when it differs from the input key.
        normal: Option<Box<str>>,
        /// Listed in `MaskFields`: the value is replaced by `*`.
        masked: bool,
        /// `None`: the key goes to `extra-fields`.
        dest: Option<Dest>,
    },
}

/// Distinct keys a mapper remembers. Sources whose keys are data (ids as keys) would
/// grow the map without bound; past this many, new keys are planned on every use.
const MAX_PLANNED_KEYS: usize = 4096;

/// Aliases per scalar column, in precedence order (index = rank).
const ALIASES: &[(Str, &[&str])] = &[
    (Str::Time, &["time", "timestamp", "when"]),
    (Str::Level, &["level", "lvl"]),
    (Str::Message, &["message", "msg", "log"]),
    (Str::Error, &["error", "error-message", "error-msg"]),
    (Str::Duration, &["duration", "elapsed", "elapsed-time"]),
];

/// Keys matched before the `tags-` prefix is stripped (upstream's first switch).
const PLAIN: &[(&str, Dest)] = &[
    (
        "business-capability",
        Dest::Scalar(Str::BusinessCapability, 0),
    ),
    ("business-domain", Dest::Scalar(Str::BusinessDomain, 0)),
    ("business-service", Dest::Scalar(Str::BusinessService, 0)),
    (
        "application-service",
        Dest::Scalar(Str::ApplicationService, 0),
    ),
    ("correlation-id", Dest::Scalar(Str::CorrelationId, 0)),
    ("session-id", Dest::Scalar(Str::SessionId, 0)),
    ("message-id", Dest::Scalar(Str::MessageId, 0)),
    ("person-id", Dest::Scalar(Str::PersonId, 0)),
    ("user-id", Dest::Scalar(Str::UserId, 0)),
    ("device-id", Dest::Scalar(Str::DeviceId, 0)),
    ("resource-type", Dest::Scalar(Str::ResourceType, 0)),
    ("cloud-provider", Dest::Scalar(Str::CloudProvider, 0)),
    ("source-id", Dest::Scalar(Str::SourceId, 0)),
    ("http-response", Dest::Scalar(Str::HttpResponse, 0)),
    ("stack-trace", Dest::Scalar(Str::StackTrace, 0)),
    ("region", Dest::Scalar(Str::Region, 0)),
    ("az", Dest::Scalar(Str::Az, 0)),
    (
        "transaction-message-reference",
        Dest::Scalar(Str::TransactionMessageReference, 0),
    ),
    ("ttl", Dest::Scalar(Str::Ttl, 0)),
    ("logger-name", Dest::Scalar(Str::LoggerName, 0)),
    ("thread-name", Dest::Scalar(Str::ThreadName, 0)),
    ("error-code", Dest::Scalar(Str::ErrorCode, 0)),
    ("audit", Dest::Audit),
    ("auto-index", Dest::AutoIndex),
    ("ip", Dest::TraceIp),
    ("trace-ip", Dest::TraceIp),
    ("tags", Dest::Tags),
    ("args", Dest::Args),
    ("host", Dest::Arg("host")),
    ("hostname", Dest::Arg("host")),
    ("container-image", Dest::Arg("container-image")),
    ("vendor", Dest::Arg("vendor")),
    ("details", Dest::Details),
];

/// Keys matched after a leading `tags-` is stripped (upstream's second switch).
const STRIPPED: &[(&str, Dest)] = &[
    ("owner-squad", Dest::Arg("squad")),
    ("owner-sre", Dest::Arg("sre")),
    ("platform", Dest::Arg("platform")),
    ("service", Dest::Arg("service")),
    ("product", Dest::Arg("product")),
    ("fluent-tag", Dest::Arg("fluent-tag")),
    ("fluent-time", Dest::Arg("fluent-time")),
    ("enviroment", Dest::Arg("enviroment")),
    ("environment", Dest::Arg("environment")),
    ("env", Dest::Arg("env")),
    ("container-type", Dest::Arg("container-type")),
    ("context", Dest::Flatten("ctx")),
    ("trace", Dest::Flatten("trace")),
    ("fields", Dest::Flatten("fields")),
];

/// A multiply-rotate hash eight bytes at a time (the FxHash scheme). The tables are
/// small and keyed by short strings from configuration and input: SipHash would cost
/// more than the lookup itself on this per-field path, and byte-at-a-time FNV was 2 %
/// of the plugin's instructions. Like FNV it is not keyed, so crafted keys could
/// collide; every table it serves is bounded (configuration names, at most
/// [`MAX_PLANNED_KEYS`] planned keys, one chunk's partition keys, one schema's
/// columns), which bounds what collisions can cost.
#[derive(Default, Clone, Copy)]
pub(crate) struct WordHash(u64);

impl WordHash {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for WordHash {
    fn finish(&self) -> u64 {
        // The multiply mixes into the high bits; hashbrown indexes with the low ones.
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.add(b as u64);
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHash>>;

fn is_normal(k: &str) -> bool {
    k.bytes()
        .all(|b| !b.is_ascii_uppercase() && b != b'_' && b.is_ascii())
}

/// Normalises a key the upstream way: lower case, `_` becomes `-`. Borrows when the key
/// is already normal (the common case).
pub fn normalize_key(k: &str) -> Cow<'_, str> {
    if is_normal(k) {
        Cow::Borrowed(k)
    } else {
        let mut s = String::with_capacity(k.len());
        normalize_into(k, &mut s);
        Cow::Owned(s)
    }
}

/// [`normalize_key`] without allocating: the key itself when it is normal, else its
/// normal form written into `scratch` (reused across calls).
pub(crate) fn normalize_in<'a>(k: &'a str, scratch: &'a mut String) -> &'a str {
    if is_normal(k) {
        k
    } else {
        normalize_into(k, scratch);
        scratch
    }
}

/// [`normalize_key`] into a reused buffer.
fn normalize_into(k: &str, out: &mut String) {
    out.clear();
    if k.is_ascii() {
        out.extend(k.bytes().map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        }));
    } else {
        for c in k.chars() {
            if c == '_' {
                out.push('-');
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
}

/// Everything the mapping needs from the configuration.
pub struct LogRules {
    plain: FastMap<&'static str, Dest>,
    stripped: FastMap<&'static str, Dest>,
    ignored: FieldSet,
    masked: FieldSet,
    hmac_key: Option<Vec<u8>>,
    /// Parse `time` into the record's event time (record-time partitioning).
    pub parse_event_time: bool,
    star: Doc<'static>,
}

impl LogRules {
    pub fn new(
        ignored: FieldSet,
        masked: FieldSet,
        hmac_key: Option<Vec<u8>>,
        parse_event_time: bool,
    ) -> Self {
        let mut plain: FastMap<&'static str, Dest> = PLAIN.iter().copied().collect();
        for (col, names) in ALIASES {
            for (rank, n) in names.iter().enumerate() {
                plain.insert(n, Dest::Scalar(*col, rank as u8));
            }
        }
        let mut star = Doc::new();
        star.push(Node::Str(Cow::Borrowed("*")));
        LogRules {
            plain,
            stripped: STRIPPED.iter().copied().collect(),
            ignored,
            masked,
            hmac_key,
            parse_event_time,
            star,
        }
    }

    /// What IgnoredFields and MaskFields do to the input field `key`.
    pub fn action_on(&self, key: &str) -> super::dynamic::FieldAction {
        use super::dynamic::FieldAction;
        match self.plan(key) {
            KeyPlan::Ignore => FieldAction::Drop,
            KeyPlan::Map { masked: true, .. } => FieldAction::Mask,
            KeyPlan::Map { .. } => FieldAction::Keep,
        }
    }

    fn plan(&self, key: &str) -> KeyPlan {
        let normal = match normalize_key(key) {
            Cow::Owned(n) => Some(n.into_boxed_str()),
            Cow::Borrowed(_) => None,
        };
        let k = normal.as_deref().unwrap_or(key);
        if k.is_empty() || self.ignored.contains(k) {
            return KeyPlan::Ignore;
        }
        KeyPlan::Map {
            masked: self.masked.contains(k),
            dest: self.dest(k),
            normal,
        }
    }

    fn dest(&self, key: &str) -> Option<Dest> {
        if let Some(d) = self.plain.get(key) {
            return Some(*d);
        }
        let k = key.strip_prefix("tags-").unwrap_or(key);
        self.stripped.get(k).copied()
    }
}

impl Default for LogRules {
    fn default() -> Self {
        LogRules::new(FieldSet::default(), FieldSet::default(), None, false)
    }
}

/// Builds [`LogRecord`]s from decoded input, one record at a time. Keep one per thread.
pub struct LogMapper<'r> {
    /// Apart from the record being built, so a remembered plan is read in place while
    /// the record is written.
    plans: KeyMemory<KeyPlan>,
    out: Fields<'r>,
}

/// The record being built, with the rules and the scratch space that build it.
struct Fields<'r> {
    rules: &'r LogRules,
    b: LogBuilder,
    ranks: [u8; super::log::N_STR],
    text: String,
    canon: Vec<u8>,
    tbuf: String,
    name: String,
}

const UNSET: u8 = u8::MAX;

impl<'r> LogMapper<'r> {
    pub fn new(rules: &'r LogRules) -> Self {
        LogMapper {
            plans: KeyMemory::new(MAX_PLANNED_KEYS),
            out: Fields {
                rules,
                b: LogBuilder::new(),
                ranks: [UNSET; super::log::N_STR],
                text: String::new(),
                canon: Vec::new(),
                tbuf: String::new(),
                name: String::new(),
            },
        }
    }

    /// Maps a whole input object. A non-map input is an error naming its type.
    pub fn map_object(
        &mut self,
        obj: ValRef<'_, '_>,
        event_ns: Option<i64>,
    ) -> Result<LogRecord, String> {
        if obj.kind() != Kind::Map {
            return Err(format!(
                "expected a JSON object / map, found {}",
                obj.kind().name()
            ));
        }
        for (k, v) in obj.entries() {
            self.entry(k, v);
        }
        Ok(self.finish(event_ns))
    }

    /// Maps one input field.
    pub fn entry(&mut self, key: &str, v: ValRef<'_, '_>) {
        let rules = self.out.rules;
        match self.plans.get_or_make(key, |k| rules.plan(k)) {
            Some(plan) => self.out.dispatch(key, plan, v),
            None => self.out.dispatch(key, &rules.plan(key), v),
        }
    }

    /// Adds an args entry directly (plugin context such as `fluent-tag`).
    pub fn context_arg(&mut self, name: &str, value: &str) {
        self.out.arg(name, value, name);
    }

    /// Flattens a map into args under a prefix (plugin metadata).
    pub fn context_flatten(&mut self, prefix: &str, v: ValRef<'_, '_>) {
        if !v.is_empty() {
            self.out.flatten(prefix, v);
        }
    }

    /// Completes the record: a missing `time` becomes the event time (or now), the event
    /// time is attached for partitioning, and the HMAC is computed when enabled.
    pub fn finish(&mut self, event_ns: Option<i64>) -> LogRecord {
        self.plans.start_record();
        self.out.finish(event_ns)
    }
}

impl Fields<'_> {
    fn dispatch(&mut self, key: &str, plan: &KeyPlan, v: ValRef<'_, '_>) {
        let KeyPlan::Map {
            normal,
            masked,
            dest,
        } = plan
        else {
            return;
        };
        let (k, masked) = (normal.as_deref().unwrap_or(key), *masked);
        let rules = self.rules;
        let v = if masked {
            rules.star.root().expect("star doc has a root")
        } else {
            v
        };
        match *dest {
            Some(Dest::Scalar(col, rank)) => self.scalar(col, rank, k, v),
            Some(Dest::Audit) => self.boolean(true, k, v, masked),
            Some(Dest::AutoIndex) => self.boolean(false, k, v, masked),
            Some(Dest::TraceIp) => self.list(false, v),
            Some(Dest::Tags) => self.list(true, v),
            Some(Dest::Args) => self.args(k, v),
            Some(Dest::Arg(name)) => {
                if !v.is_null() {
                    let mut tb = std::mem::take(&mut self.tbuf);
                    self.arg(name, v.text_in(&mut tb), k);
                    self.tbuf = tb;
                }
            }
            Some(Dest::Flatten(prefix)) => self.flatten(prefix, v),
            Some(Dest::Details) => {
                self.flatten("details", v);
                if let Some(t) = self.b.remove_arg("details-tags") {
                    for part in t.split(',').filter(|p| !p.is_empty()) {
                        self.b.add_tag(part);
                    }
                }
            }
            None => {
                let stripped = k.strip_prefix("tags-").unwrap_or(k);
                let mut tb = std::mem::take(&mut self.tbuf);
                self.b.add_extra(stripped, v.text_in(&mut tb));
                self.tbuf = tb;
            }
        }
    }

    fn scalar(&mut self, col: Str, rank: u8, key: &str, v: ValRef<'_, '_>) {
        if v.is_null() {
            // null is "absent": an optional column stays null, a required one defaults.
            return;
        }
        let mut tb = std::mem::take(&mut self.tbuf);
        let t = v.text_in(&mut tb);
        let i = col as usize;
        let old = self.ranks[i];
        if old == UNSET {
            self.b.set(col, t);
            self.ranks[i] = rank;
        } else if rank < old {
            // The better alias wins; the displaced value keeps its own key.
            let prev = self.b.get(col).unwrap_or("").to_owned();
            self.b.add_extra(alias_name(col, old).unwrap_or(key), &prev);
            self.b.set(col, t);
            self.ranks[i] = rank;
        } else {
            self.b.add_extra(key, t);
        }
        self.tbuf = tb;
    }

    fn boolean(&mut self, audit: bool, key: &str, v: ValRef<'_, '_>, masked: bool) {
        let val = if masked {
            None
        } else {
            match v.node() {
                Node::Bool(b) => Some(*b),
                Node::Null => None,
                Node::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
                Node::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
                _ => {
                    // Not a boolean: the column is null and the value is kept as text.
                    let mut tb = std::mem::take(&mut self.tbuf);
                    self.b.add_extra(key, v.text_in(&mut tb));
                    self.tbuf = tb;
                    None
                }
            }
        };
        if audit {
            self.b.set_audit(val);
        } else {
            self.b.set_auto_index(val);
        }
    }

    fn list(&mut self, tags: bool, v: ValRef<'_, '_>) {
        let push = |b: &mut LogBuilder, s: &str| {
            if !s.is_empty() {
                if tags {
                    b.add_tag(s)
                } else {
                    b.add_trace_ip(s)
                }
            }
        };
        let mut tb = std::mem::take(&mut self.tbuf);
        match v.kind() {
            Kind::Null => {}
            Kind::Array => {
                for item in v.items() {
                    if !item.is_null() {
                        push(&mut self.b, item.text_in(&mut tb));
                    }
                }
            }
            _ => push(&mut self.b, v.text_in(&mut tb)),
        }
        self.tbuf = tb;
    }

    fn arg(&mut self, name: &str, value: &str, key: &str) {
        if !self.b.add_arg(name, value) {
            self.b.add_extra(key, value);
        }
    }

    fn args(&mut self, key: &str, v: ValRef<'_, '_>) {
        let mut tb = std::mem::take(&mut self.tbuf);
        match v.kind() {
            Kind::Null => {}
            Kind::Map => {
                for (k, item) in v.entries() {
                    if k.is_empty() {
                        continue;
                    }
                    let t = item.text_in(&mut tb);
                    if !self.b.add_arg(k, t) {
                        self.b.add_extra(&format!("args.{k}"), t);
                    }
                }
            }
            // Not a map: keep it, as text, rather than dropping it like upstream.
            _ => self.b.add_extra(key, v.text_in(&mut tb)),
        }
        self.tbuf = tb;
    }

    /// Text of a value inside a flattened object: lists of scalars are joined with
    /// ",", other containers become JSON.
    fn flat_text(v: ValRef<'_, '_>, out: &mut String) {
        out.clear();
        match v.kind() {
            Kind::Array
                if v.items()
                    .all(|i| !matches!(i.kind(), Kind::Array | Kind::Map)) =>
            {
                let mut first = true;
                for item in v.items() {
                    if item.is_null() {
                        continue;
                    }
                    let t = item.to_text();
                    if t.is_empty() {
                        continue;
                    }
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    out.push_str(&t);
                }
            }
            Kind::Str => out.push_str(v.as_str().unwrap_or("")),
            _ => v.write_json(out),
        }
    }

    fn flatten(&mut self, prefix: &str, v: ValRef<'_, '_>) {
        let mut text = std::mem::take(&mut self.text);
        // The `prefix-key` names are built in a reused buffer: objects such as `details`
        // are flattened in every record.
        let mut name = std::mem::take(&mut self.name);
        let named = |name: &mut String, tail: &str| {
            name.clear();
            name.push_str(prefix);
            name.push('-');
            name.push_str(tail);
        };
        match v.kind() {
            Kind::Null => {}
            Kind::Map => {
                for (k, item) in v.entries() {
                    if item.is_null() {
                        continue;
                    }
                    named(&mut name, &normalize_key(k));
                    Self::flat_text(item, &mut text);
                    self.arg(&name, &text, &name);
                }
            }
            _ => {
                named(&mut name, "value");
                Self::flat_text(v, &mut text);
                self.arg(&name, &text, &name);
            }
        }
        self.text = text;
        self.name = name;
    }

    fn finish(&mut self, event_ns: Option<i64>) -> LogRecord {
        if !self.b.is_set(Str::Time) {
            let ns = event_ns.unwrap_or_else(timeutil::now_ns);
            self.b.set(Str::Time, &timeutil::format_rfc3339_nanos(ns));
        }
        let ev = if self.rules.parse_event_time {
            self.b
                .get(Str::Time)
                .and_then(timeutil::parse_timestamp_ns)
                .or(event_ns)
        } else {
            event_ns
        };
        if let Some(ns) = ev {
            self.b.set_event_ns(ns);
        }
        if let Some(key) = &self.rules.hmac_key {
            self.canon.clear();
            canonical::encode(&self.b, &mut self.canon);
            let mac = canonical::hmac_hex(key, &self.canon);
            self.b.set(Str::Hmac, &mac);
        }
        self.ranks = [UNSET; super::log::N_STR];
        self.b.finish()
    }
}

fn alias_name(col: Str, rank: u8) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(c, _)| *c == col)
        .and_then(|(_, names)| names.get(rank as usize).copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::JsonParser;
    use crate::record::log::Str;

    fn map(json: &str, rules: &LogRules) -> LogRecord {
        map_with(&mut LogMapper::new(rules), json)
    }

    /// Maps `json` with an existing mapper (and whatever it remembers).
    fn map_with(m: &mut LogMapper<'_>, json: &str) -> LogRecord {
        let mut buf = json.as_bytes().to_vec();
        let doc = JsonParser::new().parse(&mut buf).unwrap();
        m.map_object(doc.root().unwrap(), Some(0)).unwrap()
    }

    /// Every text a log record holds: its columns, args, extra fields, tags and
    /// trace IPs, keys included.
    fn everything(r: &LogRecord) -> String {
        let mut all: Vec<String> = Str::ALL
            .iter()
            .filter_map(|&c| r.get(c))
            .map(String::from)
            .collect();
        all.extend(
            r.args()
                .chain(r.extra_fields())
                .map(|(k, v)| format!("{k}={v}")),
        );
        all.extend(r.tags().chain(r.trace_ip()).map(String::from));
        all.join("\n")
    }

    /// A key a source might send: every name the mapping knows, in the spellings it
    /// folds (`_` for `-`, upper case, a `tags-` prefix), and unknown ones.
    fn any_key() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let known: Vec<String> = PLAIN
            .iter()
            .chain(STRIPPED)
            .map(|(k, _)| k.to_string())
            .chain(
                ALIASES
                    .iter()
                    .flat_map(|(_, a)| a.iter().map(|k| k.to_string())),
            )
            .collect();
        prop_oneof![
            (proptest::sample::select(known), 0usize..4).prop_map(|(k, how)| match how {
                0 => k,
                1 => k.replace('-', "_"),
                2 => k.to_uppercase(),
                _ => format!("tags-{k}"),
            }),
            "[a-z]{1,5}",
        ]
    }

    proptest::proptest! {
        /// Nothing a record holds is dropped: whatever its keys (aliases competing for
        /// one column, names in any spelling, nested objects to flatten, lists), every
        /// text value it holds is somewhere in the mapped record.
        #[test]
        fn no_value_is_dropped(
            fields in proptest::collection::vec((any_key(), 0usize..4), 1..12),
        ) {
            use serde_json::{Value, json};
            let mut rec = serde_json::Map::new();
            let mut markers = Vec::new();
            for (i, (key, shape)) in fields.into_iter().enumerate() {
                if rec.contains_key(&key) {
                    continue;
                }
                let m = format!("zq{i}x");
                let value = match shape {
                    0 => Value::String(m.clone()),
                    1 => json!([m.clone(), format!("{m}y")]),
                    2 => json!({"inner": m.clone(), "deep": {"leaf": format!("{m}y")}}),
                    _ => json!(m.clone()),
                };
                rec.insert(key, value);
                markers.push(m);
            }
            let text = Value::Object(rec).to_string();
            let r = map(&text, &LogRules::default());
            let all = everything(&r);
            for m in markers {
                proptest::prop_assert!(all.contains(&m), "{m} of {text} is missing from:\n{all}");
            }
        }
    }

    #[test]
    fn aliases_and_precedence_are_deterministic() {
        let r = map(
            r#"{"msg":"a","message":"b","log":"c","lvl":"WARN"}"#,
            &LogRules::default(),
        );
        assert_eq!(r.req(Str::Message), "b");
        assert_eq!(r.req(Str::Level), "WARN");
        let extra: Vec<_> = r.extra_fields().collect();
        assert_eq!(extra, [("msg", "a"), ("log", "c")]);
    }

    #[test]
    fn upstream_defects_are_fixed() {
        let r = map(
            r#"{"ip":"10.0.0.1","env":"prod","error":"boom","error_code":"E1","time":123,
                "audit":"yes","duration":12.0,"n":1.5,"nothing":null,"region":null}"#,
            &LogRules::default(),
        );
        assert_eq!(r.trace_ip().collect::<Vec<_>>(), ["10.0.0.1"]);
        assert_eq!(r.args().collect::<Vec<_>>(), [("env", "prod")]);
        assert_eq!(r.get(Str::Error), Some("boom"));
        assert_eq!(r.get(Str::ErrorCode), Some("E1"));
        assert_eq!(r.req(Str::Time), "123");
        assert_eq!(r.audit(), None);
        assert_eq!(r.get(Str::Duration), Some("12.0"));
        assert_eq!(r.get(Str::Region), None);
        let extra: Vec<_> = r.extra_fields().collect();
        assert_eq!(extra, [("audit", "yes"), ("n", "1.5"), ("nothing", "null")]);
    }

    #[test]
    fn flattening_and_args() {
        let r = map(
            r#"{"details":{"a_b":"x","tags":"t1,t2","list":[1,"y"],"obj":{"k":1}},
                "args":{"k":"v","n":2},"host":"h1","tags-owner-squad":"sq",
                "context":{"user":"u"},"tags":["a",null,"",3]}"#,
            &LogRules::default(),
        );
        let args: Vec<_> = r.args().collect();
        assert_eq!(
            args,
            [
                ("details-a-b", "x"),
                ("details-list", "1,y"),
                ("details-obj", r#"{"k":1}"#),
                ("k", "v"),
                ("n", "2"),
                ("host", "h1"),
                ("squad", "sq"),
                ("ctx-user", "u"),
            ]
        );
        assert_eq!(r.tags().collect::<Vec<_>>(), ["t1", "t2", "a", "3"]);
    }

    #[test]
    fn ignore_and_mask_use_normalised_names() {
        let rules = LogRules::new(
            FieldSet::parse("Correlation_ID; user-id"),
            FieldSet::parse("message|audit"),
            None,
            false,
        );
        let r = map(
            r#"{"correlation_id":"c","user-id":"u","message":"secret","audit":true}"#,
            &rules,
        );
        assert_eq!(r.get(Str::CorrelationId), None);
        assert_eq!(r.get(Str::UserId), None);
        assert_eq!(r.req(Str::Message), "*");
        assert_eq!(r.audit(), None);
    }

    /// A mapper remembers what it decided per key; later records, and keys past the
    /// memory's limit, must be mapped exactly like the first.
    #[test]
    fn remembered_key_plans_map_like_fresh_ones() {
        let rules = LogRules::new(
            FieldSet::parse("ignored_one"),
            FieldSet::parse("user-id"),
            None,
            false,
        );
        let json = r#"{"Correlation_Id":"c","user_id":"u","ignored_one":"x","Level":"WARN",
            "some_Key":"v","tags-owner":"o","":"empty"}"#;
        let mut m = LogMapper::new(&rules);
        let mut records: Vec<_> = (0..3).map(|_| map_with(&mut m, json)).collect();
        // A mapper whose memory is full before it sees these keys: they are planned
        // afresh on every use, with the same result.
        let mut full = LogMapper::new(&rules);
        for i in 0..MAX_PLANNED_KEYS {
            map_with(&mut full, &format!(r#"{{"K_{i}":"v"}}"#));
        }
        assert_eq!(full.plans.len(), MAX_PLANNED_KEYS);
        records.push(map_with(&mut full, json));
        records.push(map_with(&mut full, json));
        records.push(map_with(&mut LogMapper::new(&rules), json));
        for r in &records {
            assert_eq!(r.get(Str::CorrelationId), Some("c"));
            assert_eq!(r.get(Str::UserId), Some("*"));
            assert_eq!(r.get(Str::Level), Some("WARN"));
            let extra: Vec<_> = r.extra_fields().collect();
            assert_eq!(extra, [("some-key", "v"), ("owner", "o")]);
        }
    }

    #[test]
    fn hmac_is_keyed_and_stable() {
        let rules = LogRules::new(
            FieldSet::default(),
            FieldSet::default(),
            Some(b"k1".to_vec()),
            false,
        );
        let a = map(
            r#"{"message":"m","args":{"b":"2","a":"1"},"time":"t"}"#,
            &rules,
        );
        let b = map(
            r#"{"time":"t","args":{"a":"1","b":"2"},"message":"m"}"#,
            &rules,
        );
        assert_eq!(a.req(Str::Hmac).len(), 64);
        assert_eq!(
            a.req(Str::Hmac),
            b.req(Str::Hmac),
            "map order must not matter"
        );
        let other = LogRules::new(
            FieldSet::default(),
            FieldSet::default(),
            Some(b"k2".to_vec()),
            false,
        );
        let c = map(
            r#"{"message":"m","args":{"b":"2","a":"1"},"time":"t"}"#,
            &other,
        );
        assert_ne!(a.req(Str::Hmac), c.req(Str::Hmac));
        // A consumer can recompute it from the stored record.
        let mut enc = Vec::new();
        canonical::encode(&a, &mut enc);
        assert_eq!(canonical::hmac_hex(b"k1", &enc), a.req(Str::Hmac));
    }

    #[test]
    fn missing_time_uses_event_time() {
        let mut p = JsonParser::new();
        let mut buf = br#"{"message":"x"}"#.to_vec();
        let doc = p.parse(&mut buf).unwrap();
        let rules = LogRules::default();
        let mut m = LogMapper::new(&rules);
        let r = m
            .map_object(doc.root().unwrap(), Some(1_700_000_000_123_456_789))
            .unwrap();
        assert_eq!(r.req(Str::Time), "2023-11-14T22:13:20.123456789Z");
    }

    #[test]
    fn non_objects_are_rejected_with_the_type() {
        let mut p = JsonParser::new();
        let mut buf = b"[1,2]".to_vec();
        let doc = p.parse(&mut buf).unwrap();
        let rules = LogRules::default();
        let mut m = LogMapper::new(&rules);
        let e = m.map_object(doc.root().unwrap(), None).unwrap_err();
        assert!(e.contains("found array"), "{e}");
    }
}
