//! Partition keys and output paths.
//!
//! A record's partition key is the values of `PartitionFields`, joined by `:` (upstream's
//! `cap:dom:svc:app`). Values are percent-escaped (`%`, `:`, `/`, `\`, control
//! characters), so a key always parses back into the same values (upstream's keys broke
//! on values containing `:`, D-D8) and is safe inside a file name and a Redis key.
//!
//! Paths come from `PartitionPath` (upstream layout by default). Every component taken
//! from data is escaped the same way, dot-only components are escaped, length is capped,
//! and the result is checked to stay under the output root.

use crate::record::log::{LogRecord, Str};
use crate::timeutil::Civil;
use crate::timezone::Zone;
use crate::value::ValRef;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Longest path component we produce (file systems allow 255 bytes).
pub const MAX_COMPONENT: usize = 200;

/// A rendered partition key. Cheap to clone; compared and hashed by its text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey(Arc<str>);

impl PartitionKey {
    pub fn from_text(s: &str) -> Self {
        PartitionKey(Arc::from(s))
    }

    /// Builds a key from raw values.
    pub fn from_values<S: AsRef<str>>(values: &[S]) -> Self {
        let mut s = String::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            escape_into(v.as_ref(), &mut s);
        }
        PartitionKey(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The raw values back.
    pub fn values(&self) -> Vec<String> {
        self.0.split(':').map(unescape).collect()
    }
}

impl std::fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn needs_escape(c: char) -> bool {
    matches!(c, '%' | ':' | '/' | '\\') || c.is_control()
}

/// Percent-escapes `%`, `:`, `/`, `\` and control characters (NUL included).
pub fn escape_into(v: &str, out: &mut String) {
    if !v.chars().any(needs_escape) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        if needs_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    escape_into(v, &mut s);
    s
}

/// Reverses [`escape`]; malformed escapes are kept literally.
pub fn unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes one path component safe: data-derived parts are already escaped; here the
/// whole component is checked for `.`/`..`, emptiness and length.
pub fn safe_component(c: &str) -> String {
    if c.is_empty() {
        return "_empty_".to_string();
    }
    if c.chars().all(|ch| ch == '.') {
        return c.replace('.', "%2E");
    }
    capped(c, MAX_COMPONENT)
}

/// `c` cut to at most `max` bytes (at least 17), unique still: a cut text ends in `~`
/// and a hash of the whole.
fn capped(c: &str, max: usize) -> String {
    if c.len() <= max {
        return c.to_string();
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in c.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let mut cut = max.saturating_sub(17);
    while !c.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{h:016x}", &c[..cut])
}

/// A path that could escape the output root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing path {path:?}: it would leave the output folder")]
pub struct PathEscape {
    pub path: String,
}

/// Checks that a relative path has only normal components, then joins it to `root`.
pub fn join_under(root: &Path, rel: &str) -> Result<PathBuf, PathEscape> {
    let p = Path::new(rel);
    let ok = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(PathEscape {
            path: rel.to_string(),
        });
    }
    Ok(root.join(p))
}

/// What a partition field refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// A scalar column of the log schema.
    Col(Str),
    /// The Fluent Bit tag.
    Tag,
    /// Part N (0-based) of the tag split on `.`.
    TagPart(usize),
    /// A Fluent Bit metadata entry.
    Meta(String),
    /// An `args` entry of a log record.
    Arg(String),
    /// A field of a dynamic record, top-level or nested.
    Field(FieldPath),
}

/// A field of a dynamic record: `name`, or a path into nested maps, written
/// `kubernetes.namespace_name` or as Fluent Bit's record accessor
/// `$kubernetes['namespace_name']` (what its kubernetes filter makes is nested, and
/// partitioning by namespace is the common case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// The dotted name: a top-level key of this name wins (sources that flatten
    /// nested keys with dots), and a missing field's default is `dynamic_<name>`.
    name: String,
    /// The keys that lead to the field through nested maps.
    keys: Vec<String>,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let keys: Vec<String> = match text.strip_prefix('$') {
            Some(rest) => record_accessor(rest)
                .ok_or_else(|| format!("`{text}` is not a record accessor such as `$a['b']`"))?,
            None => text.split('.').map(str::to_string).collect(),
        };
        if keys.iter().any(String::is_empty) {
            return Err(format!("`{text}` has an empty key"));
        }
        Ok(FieldPath {
            name: keys.join("."),
            keys,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The keys from the top level down.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The field in `rec`: the top-level key of the dotted name, else the nested path.
    fn find<'d, 'a>(&self, rec: ValRef<'d, 'a>) -> Option<ValRef<'d, 'a>> {
        if let Some(v) = rec.get(&self.name) {
            return Some(v);
        }
        if self.keys.len() < 2 {
            return None;
        }
        self.keys.iter().try_fold(rec, |v, k| v.get(k))
    }
}

/// Splits `text` at the characters `sep` accepts, except inside the quotes of a record
/// accessor: a Kubernetes label or annotation key such as `app.kubernetes.io/name`
/// holds separators of the lists and of `PartitionPath` (`$a['app.kubernetes.io/name']`).
pub fn split_unquoted(text: &str, sep: impl Fn(char) -> bool) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quote, mut prev) = (0, None, None);
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '\'' || c == '"') && prev == Some('[') => quote = Some(c),
            None if sep(c) => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            None => {}
        }
        prev = Some(c);
    }
    parts.push(&text[start..]);
    parts
}

/// The keys of a record accessor after its `$`: `a`, then any number of `['b']` (or
/// `["b"]`).
fn record_accessor(text: &str) -> Option<Vec<String>> {
    let first_end = text.find('[').unwrap_or(text.len());
    let mut keys = vec![text[..first_end].to_string()];
    let mut rest = &text[first_end..];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let quote = inner.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let inner = &inner[1..];
        let end = inner.find(quote)?;
        keys.push(inner[..end].to_string());
        rest = inner[end + 1..].strip_prefix(']')?;
    }
    Some(keys)
}

/// Parses one field name of `PartitionFields`.
pub fn parse_field(name: &str, dynamic: bool) -> Result<FieldRef, String> {
    if name == "tag" {
        return Ok(FieldRef::Tag);
    }
    if let Some(n) = name.strip_prefix("tag[").and_then(|r| r.strip_suffix(']')) {
        return n
            .parse()
            .map(FieldRef::TagPart)
            .map_err(|_| format!("bad tag index in `{name}`"));
    }
    if let Some(m) = name.strip_prefix("meta.") {
        return Ok(FieldRef::Meta(m.to_string()));
    }
    if dynamic {
        return FieldPath::parse(name).map(FieldRef::Field);
    }
    if let Some(a) = name.strip_prefix("args.") {
        return Ok(FieldRef::Arg(a.to_string()));
    }
    let norm = name.to_lowercase().replace('_', "-");
    Str::from_name(&norm).map(FieldRef::Col).ok_or_else(|| {
        format!(
            "`{name}` is not a log column, `tag`, `tag[N]`, `meta.<name>` or `args.<name>` \
             (nested fields such as `kubernetes.namespace_name` need RecordType=dynamic)"
        )
    })
}

/// Per-record context available to key extraction.
#[derive(Clone, Copy, Default)]
pub struct Context<'d, 'a> {
    pub tag: Option<&'d str>,
    pub meta: Option<ValRef<'d, 'a>>,
}

/// The partition fields, resolved once from the configuration.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub names: Vec<String>,
    refs: Vec<FieldRef>,
}

impl KeySpec {
    /// Each field of the key, with its name as configured.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &FieldRef)> {
        self.names.iter().map(String::as_str).zip(&self.refs)
    }

    /// The record fields among the key's fields (not the tag or metadata).
    pub fn record_fields(&self) -> impl Iterator<Item = &FieldPath> {
        self.refs.iter().filter_map(|r| match r {
            FieldRef::Field(p) => Some(p),
            _ => None,
        })
    }

    pub fn new(names: &[String], dynamic: bool) -> Result<KeySpec, String> {
        let refs = names
            .iter()
            .map(|n| parse_field(n, dynamic))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeySpec {
            names: names.to_vec(),
            refs,
        })
    }

    pub fn refs(&self) -> &[FieldRef] {
        &self.refs
    }

    /// The value of a field the context gives (the tag, a part of it, a metadata
    /// key), escaped into `out`; `false` for a field of the record.
    fn context_value(r: &FieldRef, ctx: &Context<'_, '_>, out: &mut String) -> bool {
        match r {
            FieldRef::Tag => {
                escape_into(ctx.tag.unwrap_or(""), out);
                true
            }
            FieldRef::TagPart(n) => {
                escape_into(
                    ctx.tag.and_then(|t| t.split('.').nth(*n)).unwrap_or(""),
                    out,
                );
                true
            }
            FieldRef::Meta(m) => {
                let v = ctx.meta.and_then(|meta| meta.get(m)).map(|v| v.to_text());
                escape_into(v.as_deref().unwrap_or(""), out);
                true
            }
            _ => false,
        }
    }

    /// Renders a key into `out` (cleared first): the fields joined by `:`, those of
    /// the context from `ctx`, those of the record by `field`. One loop for both
    /// record kinds, so the keys they make have one shape.
    fn render(
        &self,
        ctx: &Context<'_, '_>,
        out: &mut String,
        mut field: impl FnMut(&FieldRef, &mut String),
    ) {
        out.clear();
        for (i, r) in self.refs.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            if !Self::context_value(r, ctx, out) {
                field(r, out);
            }
        }
    }

    /// Renders the key of a log record into `out` (cleared first).
    pub fn render_log(&self, rec: &LogRecord, ctx: &Context<'_, '_>, out: &mut String) {
        self.render(ctx, out, |r, out| match r {
            FieldRef::Col(c) => escape_into(rec.get(*c).unwrap_or(""), out),
            FieldRef::Arg(a) => escape_into(
                rec.args()
                    .find(|(k, _)| k == a)
                    .map(|(_, v)| v)
                    .unwrap_or(""),
                out,
            ),
            _ => {}
        })
    }

    /// Renders the key of a dynamic record (a map) into `out`. Missing fields take
    /// upstream's defaults (`dynamic_<field>`).
    pub fn render_dynamic(&self, rec: ValRef<'_, '_>, ctx: &Context<'_, '_>, out: &mut String) {
        self.render(ctx, out, |r, out| match r {
            FieldRef::Field(f) => match f.find(rec).filter(|v| !v.is_null()) {
                Some(v) => escape_into(&v.to_text(), out),
                None => {
                    out.push_str("dynamic_");
                    escape_into(f.name(), out);
                }
            },
            FieldRef::Col(c) => escape_into(
                rec.get(c.name())
                    .map(|v| v.to_text())
                    .as_deref()
                    .unwrap_or(""),
                out,
            ),
            _ => {}
        })
    }
}

/// One piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// Index into the partition fields.
    Field(usize),
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

/// The folder layout (`PartitionPath`), e.g.
/// `capability={business-capability}/year={%Y}/month={%m}/day={%d}/hour={%H}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Vec<Part>>,
    /// The zone its time parts are cut in (UTC unless `PartitionTimezone` says).
    zone: Zone,
}

impl PathTemplate {
    pub fn parse(t: &str, fields: &[String]) -> Result<PathTemplate, String> {
        let mut segments = Vec::new();
        for seg in split_unquoted(t, |c| c == '/')
            .into_iter()
            .filter(|s| !s.is_empty())
        {
            let mut parts = Vec::new();
            let mut rest = seg;
            while let Some(open) = rest.find('{') {
                if open > 0 {
                    parts.push(Part::Lit(rest[..open].to_string()));
                }
                let close = rest[open..]
                    .find('}')
                    .ok_or_else(|| format!("unclosed `{{` in `{seg}`"))?
                    + open;
                let name = &rest[open + 1..close];
                parts.push(match name {
                    "%Y" => Part::Year,
                    "%m" => Part::Month,
                    "%d" => Part::Day,
                    "%H" => Part::Hour,
                    "%M" => Part::Minute,
                    f => Part::Field(fields.iter().position(|x| x == f).ok_or_else(|| {
                        format!(
                            "`{{{f}}}` is not one of the partition fields ({})",
                            fields.join(", ")
                        )
                    })?),
                });
                rest = &rest[close + 1..];
            }
            if !rest.is_empty() {
                if rest.contains('}') {
                    return Err(format!("stray `}}` in `{seg}`"));
                }
                parts.push(Part::Lit(rest.to_string()));
            }
            for p in &parts {
                if let Part::Lit(l) = p
                    && (l == "." || l == ".." || l.contains('\\'))
                {
                    return Err(format!("`{seg}` is not a valid folder name"));
                }
            }
            segments.push(parts);
        }
        Ok(PathTemplate {
            segments,
            zone: Zone::utc(),
        })
    }

    /// The same layout with its time parts in `zone`.
    pub fn in_zone(self, zone: Zone) -> PathTemplate {
        PathTemplate { zone, ..self }
    }

    /// Renders the folder for `values` (the key's values) at `time_ns` (since the
    /// epoch), its time parts in the template's zone.
    pub fn render(&self, values: &[String], time_ns: i64) -> String {
        let c = Civil::from_ns(self.zone.local_ns(time_ns));
        let mut out = String::new();
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            let mut s = String::new();
            for p in seg {
                match p {
                    Part::Lit(l) => s.push_str(l),
                    Part::Field(i) => {
                        escape_into(values.get(*i).map(String::as_str).unwrap_or(""), &mut s)
                    }
                    Part::Year => {
                        let _ = write!(s, "{:04}", c.year);
                    }
                    Part::Month => {
                        let _ = write!(s, "{:02}", c.month);
                    }
                    Part::Day => {
                        let _ = write!(s, "{:02}", c.day);
                    }
                    Part::Hour => {
                        let _ = write!(s, "{:02}", c.hour);
                    }
                    Part::Minute => {
                        let _ = write!(s, "{:02}", c.minute);
                    }
                }
            }
            out.push_str(&safe_component(&s));
        }
        out
    }

    /// Whether the path depends on time below the hour (for record-time grouping).
    pub fn uses_time(&self) -> bool {
        self.segments.iter().flatten().any(|p| {
            matches!(
                p,
                Part::Year | Part::Month | Part::Day | Part::Hour | Part::Minute
            )
        })
    }
}

/// Object name of one file: `<folder>/<ULID>-<key>[-<md5>].parquet` (upstream §7.3).
/// A key too long for one path component is the part that is cut (see
/// [`safe_component`]): the id keeps the name unique and the `.parquet` suffix keeps
/// it in readers' `*.parquet` globs.
pub fn object_name(folder: &str, id: &str, key: &PartitionKey, md5: Option<&str>) -> String {
    let mut tail = String::new();
    if let Some(h) = md5 {
        tail.push('-');
        tail.push_str(h);
    }
    tail.push_str(".parquet");
    let room = MAX_COMPONENT.saturating_sub(id.len() + 1 + tail.len());
    let file = safe_component(&format!("{id}-{}{tail}", capped(key.as_str(), room)));
    if folder.is_empty() {
        file
    } else {
        format!("{folder}/{file}")
    }
}

/// Whether an object name (with any folders before it) is one [`object_name`] makes:
/// the file part is a ULID, `-`, and ends in `.parquet`. How the S3 writer tells its own
/// abandoned uploads from other tools' in a shared bucket.
pub fn is_object_name(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.len() > 27 + ".parquet".len()
        && file.ends_with(".parquet")
        && file.as_bytes()[26] == b'-'
        && file
            .get(..26)
            .is_some_and(|id| ulid::Ulid::from_string(id).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any values make a key that gives them back exactly (`:` and `%` in them
        /// included), and each escaped value, made a path component, is one component
        /// that cannot climb out of the output folder.
        #[test]
        fn keys_give_their_values_back_and_stay_one_component(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<String>(),
                    "[.:%/\\\\\u{0}\n a-z]{0,8}",
                    "[a-z]{190,230}",
                ],
                1..5,
            ),
        ) {
            let key = PartitionKey::from_values(&values);
            proptest::prop_assert_eq!(key.values(), values.clone());
            for v in &values {
                let c = safe_component(&escape(v));
                proptest::prop_assert!(!c.is_empty() && c != "." && c != "..", "{:?}", c);
                proptest::prop_assert!(c.len() <= MAX_COMPONENT, "{} bytes", c.len());
                proptest::prop_assert!(
                    !c.contains(['/', '\\', ':']) && !c.chars().any(char::is_control),
                    "{:?}",
                    c
                );
            }
        }
    }

    fn fields() -> Vec<String> {
        [
            "business-capability",
            "business-domain",
            "business-service",
            "application-service",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn keys_round_trip_any_value() {
        let vals = ["a:b", "../../etc", "x/y\\z", "50%", "\u{0}nul\n"];
        let k = PartitionKey::from_values(&vals);
        assert!(!k.as_str().contains('/') && !k.as_str().contains('\0'));
        assert_eq!(k.as_str().matches(':').count(), 4);
        assert_eq!(k.values(), vals);
    }

    #[test]
    fn upstream_layout() {
        let t = PathTemplate::parse(
            "capability={business-capability}/year={%Y}/month={%m}/day={%d}/hour={%H}",
            &fields(),
        )
        .unwrap();
        let key = PartitionKey::from_values(&["cap", "dom", "svc", "app"]);
        let folder = t.render(&key.values(), 1_700_000_000_000_000_000);
        assert_eq!(folder, "capability=cap/year=2023/month=11/day=14/hour=22");
        let name = object_name(&folder, "01HF", &key, Some("abc"));
        assert_eq!(
            name,
            "capability=cap/year=2023/month=11/day=14/hour=22/01HF-cap:dom:svc:app-abc.parquet"
        );
    }

    #[test]
    fn data_cannot_escape_the_root() {
        let f = vec!["c".to_string()];
        let t = PathTemplate::parse("{c}/x", &f).unwrap();
        for evil in [
            "..",
            ".",
            "../..",
            "/etc/passwd",
            "a/../../b",
            "",
            "\u{0}",
            &"x".repeat(1000),
        ] {
            let key = PartitionKey::from_values(&[evil]);
            let folder = t.render(&key.values(), 0);
            let name = object_name(&folder, "ID", &key, None);
            let p = join_under(Path::new("/root/out"), &name).unwrap();
            assert!(p.starts_with("/root/out"), "{evil:?} -> {p:?}");
            assert_eq!(
                p.components().count(),
                Path::new("/root/out").components().count() + 3,
                "{evil:?} -> {p:?}"
            );
            for c in p.components() {
                assert!(c.as_os_str().len() <= 255);
            }
            let file = p.file_name().unwrap().to_str().unwrap();
            assert!(
                file.starts_with("ID-") && file.ends_with(".parquet"),
                "{evil:?} -> {file}"
            );
        }
        assert!(join_under(Path::new("/r"), "../x").is_err());
        assert!(join_under(Path::new("/r"), "/abs").is_err());
        assert!(join_under(Path::new("/r"), "").is_err());
    }

    /// A key longer than a file name may be is cut inside the name: the id, the md5
    /// and the `.parquet` suffix stay, and keys that differ only past the cut still
    /// get different names.
    #[test]
    fn long_keys_keep_the_id_and_the_parquet_suffix() {
        let long = |last: &str| {
            let v = format!("{}{last}", "v".repeat(80));
            PartitionKey::from_values(&[&v, &v, &v, &v])
        };
        let id = "01KB0000000000000000000000";
        let md5 = "0123456789abcdef0123456789abcdef";
        let a = object_name("f", id, &long("a"), Some(md5));
        let b = object_name("f", id, &long("b"), Some(md5));
        for n in [&a, &b] {
            let file = n.strip_prefix("f/").unwrap();
            assert!(file.len() <= MAX_COMPONENT, "{file}");
            assert!(file.starts_with(&format!("{id}-vvvv")), "{file}");
            assert!(file.ends_with(&format!("-{md5}.parquet")), "{file}");
            assert!(file.contains('~'), "cut, with a hash: {file}");
        }
        assert_ne!(a, b);
        assert!(is_object_name(&a) && is_object_name(&b));
        let short = PartitionKey::from_values(&["cap", "dom", "svc", "app"]);
        assert_eq!(
            object_name("", id, &short, None),
            format!("{id}-cap:dom:svc:app.parquet"),
            "short names are as before"
        );
    }

    #[test]
    fn object_names_are_told_from_other_files() {
        let key = PartitionKey::from_values(&["cap", "dom", "svc", "app"]);
        let id = ulid::Ulid::generate().to_string();
        assert!(is_object_name(&object_name("p/a=b", &id, &key, None)));
        assert!(is_object_name(&object_name("", &id, &key, Some("abc"))));
        for other in [
            "p/report.parquet",
            "p/not-a-ulid-but-long-enough-for-one-x.parquet",
            &format!("p/{id}-cap.csv"),
            &format!("p/{id}.parquet"),
            &format!("p/{id}-x.parquet/"),
            "",
        ] {
            assert!(!is_object_name(other), "{other}");
        }
    }

    #[test]
    fn template_errors() {
        assert!(
            PathTemplate::parse("x={nope}", &fields())
                .unwrap_err()
                .contains("nope")
        );
        assert!(PathTemplate::parse("x={%Y", &fields()).is_err());
        assert!(PathTemplate::parse("../{%Y}", &fields()).is_err());
    }

    #[test]
    fn dynamic_fields_reach_into_nested_maps_and_a_dotted_top_level_key_wins() {
        let mut p = crate::decode::json::JsonParser::new();
        let mut key = |fields: &[&str], json: &str| {
            let names: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
            let spec = KeySpec::new(&names, true).unwrap();
            let mut input = json.as_bytes().to_vec();
            let doc = p.parse(&mut input).unwrap();
            let mut out = String::new();
            spec.render_dynamic(doc.root().unwrap(), &Context::default(), &mut out);
            out
        };
        let k8s = r#"{"kubernetes":{"namespace_name":"prod","labels":{"app":"web"}},"n":1}"#;
        let fields = [
            "$kubernetes['namespace_name']",
            "kubernetes.labels.app",
            "n",
        ];
        assert_eq!(key(&fields, k8s), "prod:web:1");
        let quoted = [r#"$kubernetes["labels"]['app']"#];
        assert_eq!(key(&quoted, k8s), "web");
        // A source that flattened the keys: the dotted top-level key wins.
        let flat = r#"{"kubernetes.namespace_name":"flat","kubernetes":{"namespace_name":"x"}}"#;
        assert_eq!(key(&["kubernetes.namespace_name"], flat), "flat");
        // Missing, or a path through a non-map: upstream's default, by the dotted name.
        assert_eq!(
            key(&fields[..2], r#"{"kubernetes":"text"}"#),
            "dynamic_kubernetes.namespace_name:dynamic_kubernetes.labels.app"
        );
        for bad in ["$a[b]", "$a['b'", "$a['b']x", "a..b", "$['b']"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accessor_keys_may_hold_separators() {
        let label = "$kubernetes['labels']['app.kubernetes.io/name']";
        fn split(t: &str) -> Vec<&str> {
            split_unquoted(t, |c| c == '/' || c == ',')
        }
        assert_eq!(
            split(&format!("ns/{label},x")),
            vec!["ns", label, "x"],
            "no split inside the quotes"
        );
        assert_eq!(split(r#"a/$b["c/d"]/e"#), vec!["a", r#"$b["c/d"]"#, "e"]);
        assert_eq!(split("it's/x"), vec!["it's", "x"], "a quote not after `[`");
        let path = FieldPath::parse(label).unwrap();
        assert_eq!(
            path.keys(),
            ["kubernetes", "labels", "app.kubernetes.io/name"]
        );
        // The folder layout keeps the accessor whole as one placeholder.
        let fields = vec![label.to_string()];
        let t = PathTemplate::parse(&format!("app={{{label}}}/day={{%d}}"), &fields).unwrap();
        let ns = crate::timeutil::parse_timestamp_ns("2026-03-04T05:06:07Z").unwrap();
        assert_eq!(t.render(&["web/v2".into()], ns), "app=web%2Fv2/day=04");
    }

    #[test]
    fn fields_parse() {
        assert_eq!(parse_field("tag[1]", false), Ok(FieldRef::TagPart(1)));
        assert_eq!(parse_field("meta.k", false), Ok(FieldRef::Meta("k".into())));
        assert_eq!(
            parse_field("Business_Domain", false),
            Ok(FieldRef::Col(Str::BusinessDomain))
        );
        assert!(parse_field("nope", false).is_err());
        assert_eq!(
            parse_field("capability", true),
            Ok(FieldRef::Field(FieldPath::parse("capability").unwrap()))
        );
        let e = parse_field("kubernetes.namespace_name", false).unwrap_err();
        assert!(e.contains("RecordType=dynamic"), "{e}");
    }
}
