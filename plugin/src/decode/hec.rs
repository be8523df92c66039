//! Splunk HTTP Event Collector (HEC) bodies to flat JSON records, one per event (or per
//! line of a raw body), which then take the JSON path like any other input.
//!
//! HEC is what Docker's `splunk` logging driver, Vector's `splunk_hec_logs` sink, the
//! OpenTelemetry collector's `splunk_hec` exporter, Fluentd, Logstash and many logging
//! libraries send, so all of them can feed Parquet files with no agent in between.
//!
//! A body is one or more JSON event objects one after another (whitespace between
//! them is optional, as HEC allows). An event's record holds, in this order of
//! precedence:
//! - the fields of `event` when it is an object, else `event` itself as `message`;
//! - the indexed `fields` (`{"fields": {"env": "prod"}}`);
//! - the metadata: `time` (epoch seconds, a number or a string, to RFC 3339 UTC),
//!   `host`, `source`, `sourcetype` and `index`.
//!
//! The event's own fields come first, as they are what the sender logged, and the rest
//! only fills in what is absent: Docker's driver, for one, sends `event.source`
//! (`stdout`) besides the metadata `source`.

use super::json::JsonParser;
#[cfg(test)]
use super::{FlatRecord, Unreadable};
use crate::timeutil::{format_rfc3339_nanos, parse_timestamp_ns};
use crate::value::{Doc, Kind, Node, ValRef};
use std::borrow::Cow;

/// What JSON counts as whitespace between events.
fn json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// The metadata names copied into the record, besides `time`.
const METADATA: [&str; 4] = ["host", "source", "sourcetype", "index"];

/// Reads HEC event bodies with the project's JSON parser (simd-json), keeping its
/// buffers from one body to the next, and assembles each event's record as a document
/// from the event's own nodes: a serde document per event (a map allocated for every
/// object) and a second parse of the record as JSON text made this route half as fast
/// as `/records`.
#[derive(Default)]
pub struct HecReader {
    parser: JsonParser,
    doc: Doc<'static>,
    record: Doc<'static>,
    scratch: Vec<u8>,
}

impl HecReader {
    /// Hands each event of `body` to `each`: its place (`event[3]`), its text, and its
    /// record or
    /// why it is not one. `defaults` (the request's `host`, `source`, `sourcetype`,
    /// `index` query parameters, as Splunk takes them) fill in what an event does not
    /// set itself. `Err` when the body holds nothing (then nothing of it is
    /// taken). Events are cut apart by their brackets and quotes before parsing, so
    /// one that is not valid JSON spoils only itself, unless its brackets do not
    /// close: then it runs to the end of the body.
    pub fn read(
        &mut self,
        body: &[u8],
        defaults: &[(String, String)],
        mut each: impl FnMut(&str, &[u8], Result<ValRef<'_, '_>, String>),
    ) -> Result<(), String> {
        if body.iter().all(|&b| json_space(b)) {
            return Err("no data".into());
        }
        for (i, span) in split(body).into_iter().enumerate() {
            let text = &body[span];
            self.scratch.clear();
            self.scratch.extend_from_slice(text);
            let mut doc = std::mem::take(&mut self.doc).recycle();
            let mut rec = std::mem::take(&mut self.record).recycle();
            let built = match self.parser.parse_into(&mut self.scratch, &mut doc) {
                Err(e) => Err(format!("invalid JSON: {}", e.refine(text).0)),
                Ok(()) => match doc.root() {
                    Some(root) => record(root, defaults, &mut rec),
                    None => Err("invalid JSON: no value".into()),
                },
            };
            let name = format!("event[{i}]");
            match built.and_then(|()| rec.root().ok_or_else(|| "empty record".to_string())) {
                Ok(root) => each(&name, text, Ok(root)),
                Err(reason) => each(&name, text, Err(reason)),
            }
            self.record = rec.recycle();
            self.doc = doc.recycle();
        }
        Ok(())
    }
}

/// The byte ranges of the top-level JSON values of `b`, found by their brackets and
/// string quotes; whitespace between them is left out.
fn split(b: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if json_space(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let (mut depth, mut in_str) = (0usize, false);
        while i < b.len() {
            let c = b[i];
            i += 1;
            if in_str {
                match c {
                    b'\\' => i += 1,
                    b'"' => {
                        in_str = false;
                        if depth == 0 {
                            break;
                        }
                    }
                    // Jump to the next quote or backslash: strings are most of an
                    // event's bytes.
                    _ => match memchr::memchr2(b'"', b'\\', &b[i.min(b.len())..]) {
                        Some(n) => i += n,
                        None => i = b.len(),
                    },
                }
                continue;
            }
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                c if depth == 0 && json_space(c) => {
                    i -= 1;
                    break;
                }
                _ => {}
            }
        }
        i = i.min(b.len());
        out.push(start..i);
    }
    out
}

/// Assembles one event's record into `rec` (a map of copies of the event's nodes),
/// or says why it is not a HEC event.
fn record<'d>(
    v: ValRef<'d, '_>,
    defaults: &'d [(String, String)],
    rec: &mut Doc<'d>,
) -> Result<(), String> {
    if v.kind() != Kind::Map {
        return Err("an event is not a JSON object".into());
    }
    // The names written so far: events have tens of fields, where a scan beats
    // hashing, and borrowed names cost one allocation per event.
    let mut names: Vec<&'d str> = Vec::with_capacity(48);
    let at = rec.push(Node::Map { len: 0, span: 0 });
    /// Adds `k` with the value `val`, unless a field of that name came first.
    fn put<'d>(
        rec: &mut Doc<'d>,
        names: &mut Vec<&'d str>,
        k: &'d str,
        val: impl FnOnce(&mut Doc<'d>),
    ) {
        if names.contains(&k) {
            return;
        }
        rec.push(Node::Str(Cow::Borrowed(k)));
        val(rec);
        names.push(k);
    }
    match v.get("event") {
        None => return Err("`event` is required".into()),
        Some(e) if e.is_null() => return Err("`event` is required".into()),
        Some(e) if e.as_str() == Some("") => return Err("`event` is empty".into()),
        Some(e) if e.kind() == Kind::Map => {
            for (k, val) in e.entries() {
                put(rec, &mut names, k, |r| r.push_copy(val));
            }
        }
        Some(e) => put(rec, &mut names, "message", |r| r.push_copy(e)),
    }
    match v.get("fields") {
        None => {}
        Some(f) if f.is_null() => {}
        Some(f) if f.kind() == Kind::Map => {
            for (k, val) in f.entries() {
                put(rec, &mut names, k, |r| r.push_copy(val));
            }
        }
        Some(_) => return Err("`fields` is not an object".into()),
    }
    if let Some(t) = v.get("time").filter(|t| !t.is_null()) {
        let mut text = String::new();
        let text = match t.kind() {
            Kind::Str | Kind::Int | Kind::Float => t.text_in(&mut text),
            _ => "",
        };
        let ns = parse_timestamp_ns(text)
            .ok_or_else(|| format!("`time` is not epoch seconds: {}", t.to_json()))?;
        put(rec, &mut names, "time", |r| {
            r.push(Node::Str(Cow::Owned(format_rfc3339_nanos(ns))));
        });
    }
    for k in METADATA {
        if let Some(m) = v.get(k).filter(|m| !m.is_null()) {
            put(rec, &mut names, k, |r| r.push_copy(m));
        }
    }
    for (k, d) in defaults {
        put(rec, &mut names, k, |r| {
            r.push(Node::Str(Cow::Borrowed(d)));
        });
    }
    rec.close_with_len(at, names.len() as u32);
    Ok(())
}

/// Hands each line of a raw body (`POST /services/collector/raw`) to `each`: its name
/// (`line 3`), its text, and its record (`message`, the line, with `meta`, the
/// request's `host`, `source`, `sourcetype` and `index`) or why it is not one (a line
/// that is not UTF-8). Empty lines are skipped; `Err` when the body holds nothing.
pub fn read_raw(
    body: &[u8],
    meta: &[(String, String)],
    mut each: impl FnMut(&str, &[u8], Result<ValRef<'_, '_>, String>),
) -> Result<(), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("no data".into());
    }
    let mut spare = Doc::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let name = format!("line {}", i + 1);
        match std::str::from_utf8(line) {
            Ok(text) => {
                let mut rec = std::mem::take(&mut spare).recycle();
                let at = rec.push(Node::Map { len: 0, span: 0 });
                let mut fields = 0;
                let message = std::iter::once(("message", text));
                let meta = meta.iter().filter(|(k, _)| k != "message");
                for (k, v) in message.chain(meta.map(|(k, v)| (k.as_str(), v.as_str()))) {
                    rec.push(Node::Str(Cow::Borrowed(k)));
                    rec.push(Node::Str(Cow::Borrowed(v)));
                    fields += 1;
                }
                rec.close_with_len(at, fields);
                match rec.root() {
                    Some(root) => each(&name, line, Ok(root)),
                    None => each(&name, line, Err("empty record".into())),
                }
                spare = rec.recycle();
            }
            Err(e) => each(&name, line, Err(format!("not UTF-8: {e}"))),
        }
    }
    Ok(())
}

/// Whether `name` is one of the metadata a raw request may set as query parameters:
/// `host`, `source`, `sourcetype` or `index`.
pub fn is_metadata(name: &str) -> bool {
    METADATA.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The events of `body` as flat records (JSON text), or why it has none; see
    /// [`HecReader::read`]. A rejected event is named by its place (`event[3]`, counted
    /// from 0 as HEC's `invalid-event-number` is) and keeps its text.
    pub fn events(body: &[u8]) -> Result<Vec<FlatRecord>, String> {
        let mut out = Vec::new();
        HecReader::default().read(body, &[], |name, text, rec| out.push(flat(name, text, rec)))?;
        Ok(out)
    }

    /// [`read_raw`] into flat records (JSON text).
    pub fn raw_lines(body: &[u8], meta: &[(String, String)]) -> Result<Vec<FlatRecord>, String> {
        let mut out = Vec::new();
        read_raw(body, meta, |name, text, rec| {
            out.push(flat(name, text, rec))
        })?;
        Ok(out)
    }

    /// A record handed out by [`HecReader::read`] or [`read_raw`] as a flat record.
    fn flat(name: &str, text: &[u8], rec: Result<ValRef<'_, '_>, String>) -> FlatRecord {
        FlatRecord {
            source: name.to_string(),
            json: rec.map(|r| r.to_json()).map_err(|reason| Unreadable {
                reason,
                raw: String::from_utf8_lossy(text).into_owned(),
            }),
        }
    }

    use serde_json::json;

    fn parsed(body: &str) -> Vec<(String, Result<Value, String>)> {
        events(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|r| {
                let json = r
                    .json
                    .map(|j| serde_json::from_str(&j).unwrap())
                    .map_err(|u| format!("{} | {}", u.reason, u.raw));
                (r.source, json)
            })
            .collect()
    }

    #[test]
    fn events_map_to_flat_records() {
        // As Docker's splunk driver sends them (inline format), back to back.
        let body = r#"{"event":{"line":"GET / 200","source":"stdout","tag":"web"},"time":"1700000000.123456","host":"node-1","source":"docker","sourcetype":"httpevent","index":"main"}{"event":"plain text","fields":{"env":"prod","host":"from-fields"},"time":1700000001,"host":"node-2"}
{"event":{"message":"own time","time":"2025-01-01T00:00:00Z"},"time":5}"#;
        let got = parsed(body);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "event[0]");
        assert_eq!(
            got[0].1,
            Ok(
                json!({"line": "GET / 200", "source": "stdout", "tag": "web",
                      "time": "2023-11-14T22:13:20.123456000Z", "host": "node-1",
                      "sourcetype": "httpevent", "index": "main"})
            ),
            "the event's own `source` wins over the metadata's"
        );
        assert_eq!(
            got[1].1,
            Ok(
                json!({"message": "plain text", "env": "prod", "host": "from-fields",
                      "time": "2023-11-14T22:13:21.000000000Z"})
            ),
            "indexed fields come before the metadata"
        );
        assert_eq!(
            got[2].1,
            Ok(json!({"message": "own time", "time": "2025-01-01T00:00:00Z"}))
        );
    }

    #[test]
    fn a_bad_event_is_rejected_alone_with_its_place() {
        let body = r#"{"event":"a"} {"time":1} {"event":""} [1] {"event":"b","fields":[1]} {"event":"c","time":"noon"} {"event":{"n":1},"time":null} {"event":"d"} {"event": tru"#;
        let got = parsed(body);
        let reasons: Vec<_> = got
            .iter()
            .map(|(s, r)| format!("{s}: {}", r.as_ref().err().map_or("ok", |e| e.as_str())))
            .collect();
        assert_eq!(
            reasons,
            [
                "event[0]: ok",
                r#"event[1]: `event` is required | {"time":1}"#,
                r#"event[2]: `event` is empty | {"event":""}"#,
                "event[3]: an event is not a JSON object | [1]",
                r#"event[4]: `fields` is not an object | {"event":"b","fields":[1]}"#,
                r#"event[5]: `time` is not epoch seconds: "noon" | {"event":"c","time":"noon"}"#,
                "event[6]: ok",
                "event[7]: ok",
                r#"event[8]: invalid JSON: unexpected end of input (truncated JSON?) | {"event": tru"#,
            ]
        );
        assert_eq!(got[6].1, Ok(json!({"n": 1})));
        // Brackets that close keep a broken event to itself.
        let got = parsed(r#"{"event": nope}{"event":"after", "s": "{[\"]"}"#);
        assert!(
            got[0]
                .1
                .as_ref()
                .is_err_and(|e| e.ends_with(r#"| {"event": nope}"#))
        );
        assert_eq!(got[1].1, Ok(json!({"message": "after"})), "{got:?}");
    }

    proptest::proptest! {
        /// Corrupted bodies are "no data" or some events, never a panic; every record
        /// is a JSON object and every rejection keeps its bytes for the DLQ.
        #[test]
        fn mutated_bodies_never_panic(
            flips in proptest::collection::vec((0usize..300, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..300,
        ) {
            let mut body = br#"{"event":{"a":1,"b":[true,null]},"time":1700000000.5,"host":"h","fields":{"f":"v"}} {"event":"text","source":"s"}
    {"event":2}"#.to_vec();
            for (at, b) in flips {
                let at = at % body.len();
                body[at] = b;
            }
            body.truncate(body.len() - cut % body.len());
            if let Ok(recs) = events(&body) {
                for (i, r) in recs.iter().enumerate() {
                    proptest::prop_assert_eq!(&r.source, &format!("event[{i}]"));
                    match &r.json {
                        Ok(json) => proptest::prop_assert!(
                            serde_json::from_str::<Value>(json).is_ok_and(|v| v.is_object()),
                            "{}", json
                        ),
                        Err(u) => proptest::prop_assert!(!u.raw.is_empty() || body.is_empty()),
                    }
                }
            }
        }
    }

    /// One generated HEC event: what it holds, and how its `time` is written.
    #[derive(Debug, Clone)]
    struct Event {
        event: Value,
        fields: Option<Value>,
        /// Exact nanoseconds and the JSON text that says them.
        time: Option<(i64, String)>,
        metadata: Vec<(&'static str, Value)>,
    }

    /// Names that collide between an event, its fields and the metadata.
    fn name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            3 => proptest::sample::select(vec!["host", "source", "time", "message", "index", "env", "a"])
                .prop_map(String::from),
            1 => any::<String>(),
        ]
    }

    fn object() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        proptest::collection::btree_map(name(), crate::decode::json::tests::any_json(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// Epoch seconds as HEC senders write them: an integer, a number with up to three
    /// decimals, or a string with up to nine.
    fn time() -> impl proptest::strategy::Strategy<Value = (i64, String)> {
        use proptest::prelude::*;
        (
            1_000_000_000i64..4_000_000_000,
            0u32..1_000_000_000,
            0usize..4,
        )
            .prop_map(|(secs, nanos, form)| match form {
                0 => (secs * 1_000_000_000, secs.to_string()),
                1 => {
                    let ms = nanos / 1_000_000;
                    let ns = secs * 1_000_000_000 + i64::from(ms) * 1_000_000;
                    (ns, format!("{secs}.{ms:03}"))
                }
                2 => (secs * 1_000_000_000, format!("\"{secs}\"")),
                _ => (
                    secs * 1_000_000_000 + i64::from(nanos),
                    format!("\"{secs}.{nanos:09}\""),
                ),
            })
    }

    fn event() -> impl proptest::strategy::Strategy<Value = Event> {
        use proptest::prelude::*;
        let scalar = crate::decode::json::tests::any_json()
            .prop_filter("an event holds something", |v| {
                !v.is_null() && v.as_str() != Some("")
            });
        let meta = proptest::collection::vec(
            (
                proptest::sample::select(METADATA.to_vec()),
                crate::decode::json::tests::any_json(),
            ),
            0..4,
        );
        (
            prop_oneof![object(), scalar],
            proptest::option::of(prop_oneof![object(), Just(Value::Null)]),
            proptest::option::of(time()),
            meta,
        )
            .prop_map(|(event, fields, time, mut metadata)| {
                let mut seen = Vec::new();
                metadata.retain(|(k, _)| {
                    !seen.contains(k) && {
                        seen.push(*k);
                        true
                    }
                });
                Event {
                    event,
                    fields,
                    time,
                    metadata,
                }
            })
    }

    /// The event as a sender writes it, keys in a fixed order.
    fn text(e: &Event) -> String {
        let mut parts = vec![format!("\"event\":{}", e.event)];
        if let Some(f) = &e.fields {
            parts.push(format!("\"fields\":{f}"));
        }
        if let Some((_, t)) = &e.time {
            parts.push(format!("\"time\":{t}"));
        }
        for (k, v) in &e.metadata {
            parts.push(format!("\"{k}\":{v}"));
        }
        format!("{{{}}}", parts.join(","))
    }

    /// The record HEC's rules make of `e`, built independently: the event's fields (or
    /// the event as `message`), then the indexed fields, `time`, the metadata and the
    /// request's defaults, each name taken by the first that has it.
    fn expected(e: &Event, defaults: &[(String, String)]) -> Vec<(String, Value)> {
        let mut rec: Vec<(String, Value)> = Vec::new();
        let mut put = |k: &str, v: Value| {
            if !rec.iter().any(|(n, _)| n == k) {
                rec.push((k.to_string(), v));
            }
        };
        match &e.event {
            Value::Object(m) => m.iter().for_each(|(k, v)| put(k, v.clone())),
            v => put("message", v.clone()),
        }
        if let Some(Value::Object(m)) = &e.fields {
            m.iter().for_each(|(k, v)| put(k, v.clone()));
        }
        if let Some((ns, _)) = e.time {
            put("time", Value::from(format_rfc3339_nanos(ns)));
        }
        // In HEC's order, whatever the event's.
        for k in METADATA {
            if let Some((_, v)) = e.metadata.iter().find(|(n, v)| *n == k && !v.is_null()) {
                put(k, v.clone());
            }
        }
        for (k, v) in defaults {
            put(k, Value::from(v.as_str()));
        }
        rec
    }

    proptest::proptest! {
        /// Any run of events, back to back or apart, becomes exactly the records HEC's
        /// rules make of them, fields in order.
        #[test]
        fn events_become_the_records_their_rules_make(
            evs in proptest::collection::vec(event(), 1..5),
            seps in proptest::collection::vec(proptest::sample::select(vec!["", " ", "\n", "\r\n\t "]), 5),
            defaults in proptest::collection::vec(
                (proptest::sample::select(METADATA.to_vec()), "[a-z]{1,4}"), 0..3),
        ) {
            let defaults: Vec<(String, String)> =
                defaults.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let body: String = evs
                .iter()
                .zip(&seps)
                .map(|(e, sep)| format!("{}{sep}", text(e)))
                .collect();
            let mut got = Vec::new();
            HecReader::default()
                .read(body.as_bytes(), &defaults, |name, _, rec| {
                    got.push((name.to_string(), rec.map(|r| r.to_json())))
                })
                .map_err(proptest::test_runner::TestCaseError::fail)?;
            proptest::prop_assert_eq!(got.len(), evs.len());
            for (i, ((name, rec), e)) in got.into_iter().zip(&evs).enumerate() {
                proptest::prop_assert_eq!(name, format!("event[{i}]"));
                let rec = rec.map_err(proptest::test_runner::TestCaseError::fail)?;
                let Ok(Value::Object(rec)) = serde_json::from_str::<Value>(&rec) else {
                    return Err(proptest::test_runner::TestCaseError::fail(rec));
                };
                let rec: Vec<(String, Value)> = rec.into_iter().collect();
                proptest::prop_assert_eq!(rec, expected(e, &defaults), "{}", text(e));
            }
        }
    }

    #[test]
    fn raw_lines_are_messages_with_the_request_metadata() {
        let meta = [
            ("host".to_string(), "web-1".to_string()),
            ("sourcetype".to_string(), "nginx".to_string()),
        ];
        let body = b"GET / 200\r\n\n  \nPOST /x 500 \xff\nlast line without end";
        let got: Vec<_> = raw_lines(body, &meta)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.source,
                    r.json
                        .map(|j| serde_json::from_str::<Value>(&j).unwrap())
                        .map_err(|u| u.reason),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "line 1".to_string(),
                    Ok(json!({"message": "GET / 200", "host": "web-1", "sourcetype": "nginx"}))
                ),
                (
                    "line 4".to_string(),
                    Err("not UTF-8: invalid utf-8 sequence of 1 bytes from index 12".to_string())
                ),
                (
                    "line 5".to_string(),
                    Ok(
                        json!({"message": "last line without end", "host": "web-1", "sourcetype": "nginx"})
                    )
                ),
            ]
        );
        assert_eq!(raw_lines(b"\n\n", &meta), Err("no data".to_string()));
    }

    #[test]
    fn an_empty_body_has_no_data() {
        assert_eq!(events(b" \n"), Err("no data".to_string()));
        assert_eq!(events(b""), Err("no data".to_string()));
    }
}
