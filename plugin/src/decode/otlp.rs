//! OpenTelemetry logs (the body of an OTLP `ExportLogsServiceRequest`, in protobuf or
//! JSON) to flat JSON records, one per log record, which then take the JSON path like
//! any other input.
//!
//! A record holds, in this order of precedence: its own attributes, its scope's name
//! and version (`otel.scope.name`, `otel.scope.version`), its resource's attributes,
//! and the log fields `time` (RFC 3339, from `timeUnixNano`, else
//! `observedTimeUnixNano`), `level` (`severityText`, else named from
//! `severityNumber`), `message` (the body), `trace_id`/`span_id` (hex) and
//! `event_name`. An attribute of the same name as a log field replaces it, as the OTel
//! log data model puts the record's own fields first. Attribute names are kept as they
//! are (`service.name`), so `PartitionFields service.name` partitions by them.
//!
//! Fluent Bit's `in_opentelemetry` hands the plugin the same records split over group
//! markers and event metadata; [`fluent_bit_record`] maps those to the same flat record.

use super::{FlatRecord, Unreadable};
use crate::timeutil::format_rfc3339_nanos;
use crate::value::{Kind, Node, ValRef, write_json_str};
use serde_json::{Map, Value};

/// How a request's body is encoded (its Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`.
    Json,
    /// `application/x-protobuf`, the default of most exporters.
    Protobuf,
}

/// The log records of an `ExportLogsServiceRequest`, or why the body is not one (then
/// nothing of it is taken). Both encodings fill the same `LogFields`, so a record
/// maps the same way whichever way it came.
pub fn log_records(body: &[u8], encoding: Encoding) -> Result<Vec<FlatRecord>, String> {
    let req: Value = match encoding {
        Encoding::Json => {
            serde_json::from_slice(body).map_err(|e| format!("not OTLP/JSON: {e}"))?
        }
        Encoding::Protobuf => {
            return super::otlp_protobuf::log_records(body)
                .map_err(|e| format!("not an OTLP/protobuf logs request: {e}"));
        }
    };
    let Value::Object(req) = req else {
        return Err("not OTLP/JSON: the body is not an object".into());
    };
    let mut out = Vec::new();
    for (ri, rl) in list(&req, "resourceLogs")?.iter().enumerate() {
        let at = format!("resourceLogs[{ri}]");
        let rl = object(rl, &at)?;
        let resource = match rl.get("resource") {
            Some(r) => attributes(object(r, &format!("{at}.resource"))?),
            None => Rendered::new(),
        };
        for (si, sl) in list(rl, "scopeLogs")?.iter().enumerate() {
            let at = format!("{at}.scopeLogs[{si}]");
            let sl = object(sl, &at)?;
            let scope = match sl.get("scope") {
                Some(Value::Object(s)) => scope_fields(
                    s.get("name").and_then(Value::as_str),
                    s.get("version").and_then(Value::as_str),
                ),
                _ => Rendered::new(),
            };
            for (li, lr) in list(sl, "logRecords")?.iter().enumerate() {
                let source = format!("{at}.logRecords[{li}]");
                let json = match lr {
                    Value::Object(lr) => Ok(flatten(lr, &scope, &resource)),
                    _ => Err(Unreadable {
                        reason: "a log record is not an object".into(),
                        raw: lr.to_string(),
                    }),
                };
                out.push(FlatRecord { source, json });
            }
        }
    }
    Ok(out)
}

/// The array under `key`, or none; anything else is not OTLP.
fn list<'v>(m: &'v Map<String, Value>, key: &str) -> Result<&'v [Value], String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("not OTLP/JSON: `{key}` is not an array")),
    }
}

fn object<'v>(v: &'v Value, at: &str) -> Result<&'v Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("not OTLP/JSON: {at} is not an object"))
}

/// One log record as flat JSON text.
fn flatten(lr: &Map<String, Value>, scope: &Rendered, resource: &Rendered) -> String {
    let text = |field: &str| match lr.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    LogFields {
        time_ns: ["timeUnixNano", "observedTimeUnixNano"]
            .iter()
            .filter_map(|k| lr.get(*k).and_then(int))
            .find(|&n| n > 0),
        severity_text: text("severityText"),
        severity_number: lr.get("severityNumber").and_then(int),
        body: lr.get("body").map(|b| any_value(b).to_string()),
        trace_id: text("traceId"),
        span_id: text("spanId"),
        event_name: text("eventName"),
        attributes: attributes(lr),
    }
    .assemble(scope, resource)
}

/// Fields as `(name, value as JSON text)`, in order; a later one of a name replaces
/// an earlier one. Values are rendered once, where they are read: a resource's
/// attributes once for all its records.
pub(crate) type Rendered = Vec<(String, String)>;

/// A JSON object written from [`Rendered`] fields: a later value of a name replaces the
/// earlier one in its place, as a JSON map insert does. Records have a few dozen fields
/// at most, so a scan finds a name faster than a hash would.
#[derive(Debug, Default)]
pub(crate) struct FlatObject<'f> {
    fields: Vec<(&'f str, &'f str)>,
}

impl<'f> FlatObject<'f> {
    pub(crate) fn set(&mut self, name: &'f str, json: &'f str) {
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some(f) => f.1 = json,
            None => self.fields.push((name, json)),
        }
    }

    pub(crate) fn extend(&mut self, fields: &'f Rendered) {
        for (n, v) in fields {
            self.set(n, v);
        }
    }

    pub(crate) fn into_json(self) -> String {
        let len: usize = self.fields.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = String::with_capacity(len + 2);
        out.push('{');
        for (i, (n, v)) in self.fields.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_str(n, &mut out);
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

/// `s` as a JSON string.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::new();
    write_json_str(s, &mut out);
    out
}

/// A log record's own fields, read from an OTLP request (JSON or protobuf) or from a
/// Fluent Bit event (`in_opentelemetry`), so all become the same flat record.
#[derive(Debug, Default)]
pub(crate) struct LogFields {
    /// `timeUnixNano`, else `observedTimeUnixNano` (the first that is set).
    pub time_ns: Option<i64>,
    pub severity_text: Option<String>,
    pub severity_number: Option<i64>,
    /// As JSON text.
    pub body: Option<String>,
    /// Hex.
    pub trace_id: Option<String>,
    /// Hex.
    pub span_id: Option<String>,
    pub event_name: Option<String>,
    pub attributes: Rendered,
}

impl LogFields {
    /// The flat record as JSON text: the log fields, then the resource's attributes,
    /// the scope's fields and the record's attributes, each replacing what came before.
    pub(crate) fn assemble(self, scope: &Rendered, resource: &Rendered) -> String {
        let time = self
            .time_ns
            .filter(|&n| n > 0)
            .map(|ns| json_string(&format_rfc3339_nanos(ns)));
        let level = self
            .severity_text
            .filter(|s| !s.is_empty())
            .or_else(|| {
                self.severity_number
                    .and_then(severity_name)
                    .map(String::from)
            })
            .map(|l| json_string(&l));
        let body = self.body.filter(|b| b != "null");
        let text = |v: Option<String>| v.filter(|v| !v.is_empty()).map(|v| json_string(&v));
        let (trace, span, event) = (
            text(self.trace_id),
            text(self.span_id),
            text(self.event_name),
        );
        let mut rec = FlatObject::default();
        for (name, v) in [
            ("time", &time),
            ("level", &level),
            ("message", &body),
            ("trace_id", &trace),
            ("span_id", &span),
            ("event_name", &event),
        ] {
            if let Some(v) = v {
                rec.set(name, v);
            }
        }
        rec.extend(resource);
        rec.extend(scope);
        rec.extend(&self.attributes);
        rec.into_json()
    }
}

/// The scope's name and version as the flat record names them.
pub(crate) fn scope_fields(name: Option<&str>, version: Option<&str>) -> Rendered {
    [(name, "otel.scope.name"), (version, "otel.scope.version")]
        .into_iter()
        .filter_map(|(v, key)| {
            let v = v.filter(|v| !v.is_empty())?;
            Some((key.to_string(), json_string(v)))
        })
        .collect()
}

/// The flat record of a Fluent Bit event in a group that `in_opentelemetry` made
/// (group metadata `schema: otlp`), or `None` for any other event. The input puts the
/// resource and scope in the group's attributes (`{resource: {attributes}, scope:
/// {name, version}}`), the record's fields in its metadata under `otlp` or the key
/// `logs_metadata_key` names (`timestamp`, `severity_text`, `attributes`, `trace_id` as
/// bytes...), and the body in the event's body: a map body as it is, any other wrapped
/// as `{"log": body}`.
pub fn fluent_bit_record(
    group_meta: ValRef<'_, '_>,
    group_attributes: ValRef<'_, '_>,
    meta: ValRef<'_, '_>,
    body: ValRef<'_, '_>,
    event_ns: i64,
) -> Option<String> {
    if group_meta.get("schema")?.as_str()? != "otlp" {
        return None;
    }
    // Under `otlp`, or the input's `logs_metadata_key` when it was renamed: then the
    // metadata's only entry.
    let otlp = meta
        .get("otlp")
        .or_else(|| (meta.len() == 1).then(|| meta.entries().next().map(|(_, v)| v))?)
        .filter(|m| m.kind() == Kind::Map);
    let field = |name: &str| otlp.and_then(|m| m.get(name));
    let text = |name: &str| field(name).and_then(|v| v.as_str()).map(String::from);
    let number = |name: &str| match field(name).map(|v| v.node()) {
        Some(Node::Int(i)) => Some(*i),
        Some(Node::UInt(u)) => Some((*u).min(i64::MAX as u64) as i64),
        _ => None,
    };
    let id = |name: &str| {
        field(name).map(|v| match v.node() {
            Node::Bytes(b) => crate::record::canonical::hex(b),
            _ => v.to_text().into_owned(),
        })
    };
    let map = |v: Option<ValRef<'_, '_>>| -> Rendered {
        v.map(|m| {
            m.entries()
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect()
        })
        .unwrap_or_default()
    };
    let body = match (body.len(), body.get("log")) {
        (1, Some(wrapped)) => wrapped.to_json(),
        _ => body.to_json(),
    };
    let scope = group_attributes.get("scope");
    let scope_text = |name: &str| scope.and_then(|s| s.get(name)).and_then(|v| v.as_str());
    let resource = map(group_attributes
        .get("resource")
        .and_then(|r| r.get("attributes")));
    Some(
        LogFields {
            time_ns: ["timestamp", "observed_timestamp"]
                .iter()
                .filter_map(|k| number(k))
                .find(|&n| n > 0)
                .or(Some(event_ns)),
            severity_text: text("severity_text"),
            severity_number: number("severity_number"),
            body: Some(body),
            trace_id: id("trace_id"),
            span_id: id("span_id"),
            event_name: text("event_name"),
            attributes: map(field("attributes")),
        }
        .assemble(
            &scope_fields(scope_text("name"), scope_text("version")),
            &resource,
        ),
    )
}

/// `attributes: [{"key": ..., "value": AnyValue}]` as rendered fields.
fn attributes(m: &Map<String, Value>) -> Rendered {
    match m.get("attributes") {
        Some(Value::Array(kvs)) => kvs
            .iter()
            .filter_map(|kv| {
                let Some(Value::String(k)) = kv.get("key") else {
                    return None;
                };
                let v = kv.get("value").map_or(Value::Null, any_value);
                Some((k.clone(), v.to_string()))
            })
            .collect(),
        _ => Rendered::new(),
    }
}

fn key_values(kvs: &[Value], out: &mut Map<String, Value>) {
    for kv in kvs {
        if let Some(Value::String(k)) = kv.get("key") {
            out.insert(k.clone(), kv.get("value").map_or(Value::Null, any_value));
        }
    }
}

/// An OTLP `AnyValue` as plain JSON. 64-bit integers arrive as strings (proto3 JSON);
/// bytes stay base64 text; an empty or unknown value is null.
fn any_value(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return Value::Null;
    };
    let Some((kind, inner)) = m.iter().next() else {
        return Value::Null;
    };
    match (kind.as_str(), inner) {
        ("stringValue" | "bytesValue", Value::String(_)) | ("boolValue", Value::Bool(_)) => {
            inner.clone()
        }
        ("intValue", _) => int(inner).map_or(Value::Null, Value::from),
        // A double stays a double when written without a fraction (`5`, as Go's protojson
        // writes 5.0), so it types as the protobuf encoding's does.
        ("doubleValue", Value::Number(n)) => n.as_f64().map_or(Value::Null, double),
        // proto3 JSON may quote any double, and must quote the non-finite ones.
        ("doubleValue", Value::String(s)) => s
            .parse::<f64>()
            .map_or_else(|_| Value::String(s.clone()), double),
        ("arrayValue", Value::Object(a)) => Value::Array(match a.get("values") {
            Some(Value::Array(vs)) => vs.iter().map(any_value).collect(),
            _ => Vec::new(),
        }),
        ("kvlistValue", Value::Object(kv)) => {
            let mut out = Map::new();
            if let Some(Value::Array(vs)) = kv.get("values") {
                key_values(vs, &mut out);
            }
            Value::Object(out)
        }
        _ => Value::Null,
    }
}

/// A double as plain JSON: a number, or the text proto3 JSON gives the values JSON has no
/// number for (`NaN`, `Infinity`, `-Infinity`), so they are kept rather than nulled.
pub(crate) fn double(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::from("NaN"),
        None if f > 0.0 => Value::from("Infinity"),
        None => Value::from("-Infinity"),
    }
}

/// An int64 as proto3 JSON writes it (a string) or as some encoders do (a number).
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u.min(i64::MAX as u64) as i64)),
        _ => None,
    }
}

/// The short name of an OTLP severity number (1-24), as its data model names the ranges.
fn severity_name(n: i64) -> Option<&'static str> {
    Some(match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flat(body: Value) -> Vec<Value> {
        log_records(body.to_string().as_bytes(), Encoding::Json)
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_str(&r.json.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn records_are_flattened_with_their_resource_and_scope() {
        let body = json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "host.name", "value": {"stringValue": "node-1"}}]},
        "scopeLogs": [{
            "scope": {"name": "app.logger", "version": ""},
            "logRecords": [
                {"timeUnixNano": "1764220800123456789", "severityText": "Warning",
                 "body": {"stringValue": "disk low"},
                 "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                 "attributes": [
                    {"key": "free.bytes", "value": {"intValue": "1024"}},
                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                    {"key": "ok", "value": {"boolValue": false}},
                    {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 2}]}}},
                    {"key": "ctx", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}}},
                    {"key": "host.name", "value": {"stringValue": "pod-7"}},
                    {"key": "empty", "value": {}}]},
                {"observedTimeUnixNano": 1764220800000000000u64, "severityNumber": 17,
                 "body": {"kvlistValue": {"values": [{"key": "event", "value": {"stringValue": "x"}}]}}}
            ]}]}]});
        assert_eq!(
            flat(body),
            [
                json!({"time": "2025-11-27T05:20:00.123456789Z", "level": "Warning",
                       "message": "disk low", "trace_id": "5b8efff798038103d269b633813fc60c",
                       "span_id": "eee19b7ec3c1b174", "service.name": "checkout",
                       "host.name": "pod-7", "otel.scope.name": "app.logger",
                       "free.bytes": 1024, "ratio": 0.5, "ok": false, "tags": ["a", 2],
                       "ctx": {"k": "v"}, "empty": null}),
                json!({"time": "2025-11-27T05:20:00.000000000Z", "level": "ERROR",
                       "message": {"event": "x"}, "service.name": "checkout",
                       "host.name": "node-1", "otel.scope.name": "app.logger"}),
            ]
        );
    }

    /// The protobuf encoding maps as its JSON encoding does; the request is built here
    /// field by field with the numbers of the OTLP `.proto` files.
    #[test]
    fn protobuf_requests_map_like_json_ones() {
        use super::super::protobuf::{put_bytes_field as bytes, put_varint_field as varint};
        let msg = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = Vec::new();
            f(&mut m);
            m
        };
        let any = |n: u32, f: &dyn Fn(&mut Vec<u8>, u32)| msg(&|m| f(m, n));
        let string = |s: &'static str| any(1, &move |m, n| bytes(m, n, s.as_bytes()));
        let kv = |k: &'static str, v: Vec<u8>| {
            msg(&move |m| {
                bytes(m, 1, k.as_bytes());
                bytes(m, 2, &v);
            })
        };
        let fixed64 = |m: &mut Vec<u8>, n: u32, v: u64| {
            super::super::protobuf::put_varint(m, u64::from(n) << 3 | 1);
            m.extend_from_slice(&v.to_le_bytes());
        };
        let record = msg(&|m| {
            fixed64(m, 1, 1_764_220_800_000_000_000);
            varint(m, 2, 13);
            bytes(m, 5, &string("disk low"));
            bytes(m, 6, &kv("n", any(3, &|m, n| varint(m, n, (-5i64) as u64))));
            bytes(
                m,
                6,
                &kv("ratio", msg(&|m| fixed64(m, 4, 0.5f64.to_bits()))),
            );
            bytes(m, 6, &kv("ok", any(2, &|m, n| varint(m, n, 1))));
            bytes(m, 6, &kv("raw", any(7, &|m, n| bytes(m, n, b"\x00\xff"))));
            let list = msg(&|m| {
                bytes(m, 1, &string("a"));
                bytes(m, 1, &any(3, &|m, n| varint(m, n, 2)));
            });
            bytes(m, 6, &kv("tags", any(5, &|m, n| bytes(m, n, &list))));
            let kvlist = msg(&|m| bytes(m, 1, &kv("k", string("v"))));
            bytes(m, 6, &kv("ctx", any(6, &|m, n| bytes(m, n, &kvlist))));
            bytes(m, 9, &[0xab; 16]);
            bytes(m, 10, &[0x01, 0x02, 0, 0, 0, 0, 0, 0xff]);
            bytes(m, 12, b"order.placed");
            varint(m, 99, 1); // a field this reader does not know
        });
        let req = msg(&|m| {
            let rl = msg(&|m| {
                let res = msg(&|m| bytes(m, 1, &kv("service.name", string("checkout"))));
                bytes(m, 1, &res);
                let sl = msg(&|m| {
                    bytes(m, 1, &msg(&|m| bytes(m, 1, b"app.logger")));
                    bytes(m, 2, &record);
                    bytes(m, 2, &msg(&|m| bytes(m, 5, &string("second"))));
                });
                bytes(m, 2, &sl);
            });
            bytes(m, 1, &rl);
        });
        let got: Vec<Value> = log_records(&req, Encoding::Protobuf)
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_str(&r.json.unwrap()).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                json!({"time": "2025-11-27T05:20:00.000000000Z", "level": "WARN",
                       "message": "disk low", "trace_id": "ab".repeat(16),
                       "span_id": "01020000000000ff", "event_name": "order.placed",
                       "service.name": "checkout", "otel.scope.name": "app.logger",
                       "n": -5, "ratio": 0.5, "ok": true, "raw": "AP8=",
                       "tags": ["a", 2], "ctx": {"k": "v"}}),
                json!({"message": "second", "service.name": "checkout",
                       "otel.scope.name": "app.logger"}),
            ]
        );
        let e = log_records(&req[..req.len() - 3], Encoding::Protobuf).unwrap_err();
        assert!(
            e.starts_with("not an OTLP/protobuf logs request: truncated"),
            "{e}"
        );
    }

    #[test]
    fn fluent_bit_events_of_otlp_groups_only_are_mapped() {
        use crate::decode::msgpack::{Reader, write as w};
        use crate::value::Doc;
        // Group metadata, group attributes, event metadata, event body, in one document.
        let mut mp = Vec::new();
        w::map(&mut mp, 1);
        w::str(&mut mp, "schema");
        w::str(&mut mp, "otlp");
        w::map(&mut mp, 1);
        w::str(&mut mp, "scope");
        w::map(&mut mp, 2);
        w::str(&mut mp, "name");
        w::str(&mut mp, "lib");
        w::str(&mut mp, "version");
        w::str(&mut mp, "1.2");
        // in_opentelemetry with `logs_metadata_key otel`.
        w::map(&mut mp, 1);
        w::str(&mut mp, "otel");
        w::map(&mut mp, 3);
        w::str(&mut mp, "span_id");
        w::bin(&mut mp, &[0xab, 0x01]);
        w::str(&mut mp, "severity_text");
        w::str(&mut mp, "notice");
        w::str(&mut mp, "event_name");
        w::str(&mut mp, "login");
        w::map(&mut mp, 2);
        w::str(&mut mp, "user");
        w::str(&mut mp, "ann");
        w::str(&mut mp, "log");
        w::str(&mut mp, "kept as a map");
        let mut other = Vec::new();
        w::map(&mut other, 1);
        w::str(&mut other, "schema");
        w::str(&mut other, "lua");
        let mut doc = Doc::new();
        let mut starts = Vec::new();
        let mut r = Reader::new(&mp);
        for _ in 0..4 {
            starts.push(doc.len());
            r.value(Some(&mut doc)).unwrap();
        }
        starts.push(doc.len());
        Reader::new(&other).value(Some(&mut doc)).unwrap();
        let at = |i: usize| doc.value_at(starts[i]).unwrap();
        let rec = fluent_bit_record(at(0), at(1), at(2), at(3), 1_500_000_000_000_000_000);
        assert_eq!(
            rec.map(|t| serde_json::from_str::<Value>(&t).unwrap()),
            Some(json!({
                "time": "2017-07-14T02:40:00.000000000Z", "level": "notice",
                "message": {"user": "ann", "log": "kept as a map"},
                "span_id": "ab01", "event_name": "login",
                "otel.scope.name": "lib", "otel.scope.version": "1.2"
            }))
        );
        // A group of another schema (filter_lua, processors) leaves the event as it is.
        assert_eq!(fluent_bit_record(at(4), at(1), at(2), at(3), 1), None);
    }

    /// A double with all 17 digits keeps its exact value: serde_json's default float
    /// reading is one bit off for about one such number in ten (this one among them).
    #[test]
    fn doubles_keep_every_bit() {
        let text = r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [
            {"key": "a", "value": {"doubleValue": 3.4095045037942146e174}},
            {"key": "b", "value": {"doubleValue": 123456.78901234567}}]}]}]}]}"#;
        let recs = log_records(text.as_bytes(), Encoding::Json).unwrap();
        let json = recs[0].json.as_deref().unwrap();
        let mut doc_text = json.as_bytes().to_vec();
        let doc = crate::decode::json::JsonParser::new()
            .parse(&mut doc_text)
            .unwrap();
        let root = doc.root().unwrap();
        let a = root.get("a").and_then(|v| v.as_f64()).unwrap();
        let b = root.get("b").and_then(|v| v.as_f64()).unwrap();
        assert_eq!(a.to_bits(), 3.4095045037942146e174f64.to_bits(), "{json}");
        assert_eq!(b.to_bits(), 123456.78901234567f64.to_bits(), "{json}");
    }

    #[test]
    fn a_bad_record_is_named_and_the_rest_kept() {
        let body = json!({"resourceLogs": [{"scopeLogs": [
            {"logRecords": [{"body": {"stringValue": "a"}}, 7]}]}]});
        let recs = log_records(body.to_string().as_bytes(), Encoding::Json).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].json.as_deref(), Ok(r#"{"message":"a"}"#));
        assert_eq!(recs[1].source, "resourceLogs[0].scopeLogs[0].logRecords[1]");
        let bad = recs[1].json.clone().unwrap_err();
        assert_eq!(
            (bad.reason.as_str(), bad.raw.as_str()),
            ("a log record is not an object", "7")
        );
    }

    #[test]
    fn bodies_that_are_not_otlp_are_refused_whole() {
        for (body, says) in [
            ("{", "not OTLP/JSON"),
            ("[]", "not an object"),
            (r#"{"resourceLogs": {}}"#, "`resourceLogs` is not an array"),
            (
                r#"{"resourceLogs": [1]}"#,
                "resourceLogs[0] is not an object",
            ),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": 1}]}]}"#,
                "`logRecords`",
            ),
        ] {
            let e = log_records(body.as_bytes(), Encoding::Json).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
        assert!(
            log_records(b"{}", Encoding::Json).unwrap().is_empty(),
            "an empty request"
        );
    }

    /// A protobuf request with a resource, a scope and records of every AnyValue kind.
    fn protobuf_request() -> Vec<u8> {
        use super::super::protobuf::{put_bytes_field as bytes, put_varint_field as varint};
        let mut string = Vec::new();
        bytes(&mut string, 1, b"v");
        let mut kv = Vec::new();
        bytes(&mut kv, 1, b"k");
        bytes(&mut kv, 2, &string);
        let mut list = Vec::new();
        bytes(&mut list, 1, &kv);
        let mut kvlist = Vec::new();
        bytes(&mut kvlist, 6, &list);
        let mut nested = Vec::new();
        bytes(&mut nested, 1, b"ctx");
        bytes(&mut nested, 2, &kvlist);
        let mut record = Vec::new();
        varint(&mut record, 2, 9);
        bytes(&mut record, 5, &string);
        bytes(&mut record, 6, &kv);
        bytes(&mut record, 6, &nested);
        bytes(&mut record, 9, &[7; 16]);
        let mut scope = Vec::new();
        bytes(&mut scope, 1, b"lib");
        let mut sl = Vec::new();
        bytes(&mut sl, 1, &scope);
        bytes(&mut sl, 2, &record);
        bytes(&mut sl, 2, &record);
        let mut res = Vec::new();
        bytes(&mut res, 1, &kv);
        let mut rl = Vec::new();
        bytes(&mut rl, 1, &res);
        bytes(&mut rl, 2, &sl);
        let mut req = Vec::new();
        bytes(&mut req, 1, &rl);
        req
    }

    /// A Fluent Bit chunk as in_opentelemetry writes it: a group start, two events and
    /// a group end.
    fn otlp_chunk() -> Vec<u8> {
        use crate::decode::msgpack::write as w;
        let mut c = Vec::new();
        w::array(&mut c, 2);
        w::array(&mut c, 2);
        w::event_time(&mut c, 0xFFFF_FFFF, 0);
        w::map(&mut c, 1);
        w::str(&mut c, "schema");
        w::str(&mut c, "otlp");
        w::map(&mut c, 1);
        w::str(&mut c, "resource");
        w::map(&mut c, 1);
        w::str(&mut c, "attributes");
        w::map(&mut c, 1);
        w::str(&mut c, "service.name");
        w::str(&mut c, "svc");
        for i in 0..2 {
            w::array(&mut c, 2);
            w::array(&mut c, 2);
            w::event_time(&mut c, 1_700_000_000 + i, 0);
            w::map(&mut c, 1);
            w::str(&mut c, "otlp");
            w::map(&mut c, 2);
            w::str(&mut c, "trace_id");
            w::bin(&mut c, &[1; 16]);
            w::str(&mut c, "attributes");
            w::map(&mut c, 1);
            w::str(&mut c, "n");
            w::int(&mut c, 5);
            w::map(&mut c, 1);
            w::str(&mut c, "log");
            w::str(&mut c, "hello");
        }
        w::array(&mut c, 2);
        w::array(&mut c, 2);
        w::event_time(&mut c, 0xFFFF_FFFE, 0);
        w::map(&mut c, 0);
        w::map(&mut c, 0);
        c
    }

    #[test]
    fn the_proptests_inputs_are_valid() {
        let recs = log_records(&protobuf_request(), Encoding::Protobuf).unwrap();
        assert_eq!(recs.len(), 2);
        let mut doc = crate::value::Doc::new();
        let mut mapped = Vec::new();
        crate::decode::flb::walk(&otlp_chunk(), &mut doc, |it| {
            if let crate::decode::flb::Item::Event(e) = it {
                let g = e.group.expect("in the group");
                mapped.push(fluent_bit_record(
                    g.meta,
                    g.attributes,
                    e.meta,
                    e.body,
                    e.time_ns,
                ));
            }
        });
        assert_eq!(mapped.len(), 2);
        let first: Value = serde_json::from_str(mapped[0].as_deref().unwrap()).unwrap();
        assert_eq!(first["service.name"], "svc");
        assert_eq!(first["message"], "hello");
    }

    proptest::proptest! {
        /// Corrupted protobuf is an error or some records, never a panic, and every
        /// record it yields is valid JSON.
        #[test]
        fn mutated_protobuf_requests_never_panic(
            flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..400,
        ) {
            let mut req = protobuf_request();
            for (at, b) in flips {
                let at = at % req.len();
                req[at] = b;
            }
            req.truncate(req.len() - cut % req.len());
            if let Ok(recs) = log_records(&req, Encoding::Protobuf) {
                for r in recs {
                    let json = r.json.unwrap();
                    proptest::prop_assert!(serde_json::from_str::<Value>(&json).is_ok(), "{json}");
                }
            }
        }

        /// Corrupted in_opentelemetry chunks: group markers of any shape, events in and
        /// out of groups; every mapped record is valid JSON.
        #[test]
        fn mutated_otlp_chunks_never_panic(
            flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..8),
        ) {
            let mut chunk = otlp_chunk();
            for (at, b) in flips {
                let at = at % chunk.len();
                chunk[at] = b;
            }
            let mut doc = crate::value::Doc::new();
            let mut out = Vec::new();
            crate::decode::flb::walk(&chunk, &mut doc, |it| {
                if let crate::decode::flb::Item::Event(e) = it
                    && let Some(g) = e.group
                {
                    out.extend(fluent_bit_record(g.meta, g.attributes, e.meta, e.body, e.time_ns));
                }
            });
            for json in out {
                proptest::prop_assert!(serde_json::from_str::<Value>(&json).is_ok(), "{json}");
            }
        }
    }
}
