//! Differential property test: an OTLP logs request, written once as OTLP/JSON and
//! once as protobuf the way real encoders write each (proto3 leaves out default scalars
//! but always writes a oneof's member; OTLP/JSON writes 64-bit integers as strings or
//! numbers, ids as hex, bytes as base64, integral doubles as `5`), must map to the same
//! flat records, byte for byte. An exporter's choice of encoding must not change what
//! lands in the Parquet file.

use super::otlp::{Encoding, log_records};
use super::protobuf::{put_bytes_field, put_varint, put_varint_field};
use base64::Engine;
use proptest::prelude::*;
use serde_json::{Value, json};

/// An OTLP `AnyValue`.
#[derive(Debug, Clone)]
enum Any {
    /// No member of the oneof set.
    Empty,
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<Any>),
    KvList(Vec<(String, Any)>),
}

#[derive(Debug, Clone)]
struct LogRecord {
    time: u64,
    observed: u64,
    severity_number: u8,
    severity_text: String,
    body: Option<Any>,
    attributes: Vec<(String, Any)>,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    flags: u32,
    event_name: String,
}

#[derive(Debug, Clone)]
struct ScopeLogs {
    scope: Option<(String, String)>,
    records: Vec<LogRecord>,
}

#[derive(Debug, Clone)]
struct ResourceLogs {
    resource: Option<Vec<(String, Any)>>,
    scopes: Vec<ScopeLogs>,
}

/// How the JSON encoder writes the values proto3 JSON lets it write two ways.
#[derive(Debug, Clone, Copy)]
struct JsonStyle {
    ints_as_strings: bool,
    integral_doubles_as_ints: bool,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z.]{1,8}",
        any::<String>(),
        Just("\"quoted\\\" \u{1F600}\n".to_string()),
    ]
}

/// Keys from a small set, so that names collide (with each other and with the log
/// fields a record is given), and some free ones; `""` is a key proto3 does not write.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "level", "message", "time", "service.name",
                                       "otel.scope.name", "trace_id", ""])
            .prop_map(String::from),
        1 => any::<String>(),
    ]
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-1000i32..1000).prop_map(f64::from),
        prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0]),
    ]
}

fn any_value() -> impl Strategy<Value = Any> {
    let leaf = prop_oneof![
        Just(Any::Empty),
        text().prop_map(Any::Str),
        any::<bool>().prop_map(Any::Bool),
        any::<i64>().prop_map(Any::Int),
        double().prop_map(Any::Double),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Any::Bytes),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Any::Array),
            prop::collection::vec((key(), inner), 0..4).prop_map(Any::KvList),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Vec<(String, Any)>> {
    prop::collection::vec((key(), any_value()), 0..4)
}

/// A nanosecond time: unset (0), ordinary, or past `i64::MAX` (not a time either way).
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1_500_000_000_000_000_000u64..1_900_000_000_000_000_000,
        Just(u64::MAX),
    ]
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), prop::collection::vec(any::<u8>(), len)]
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        (time(), time(), 0u8..30, text()),
        (proptest::option::of(any_value()), attributes()),
        (id(16), id(8), any::<u32>(), text()),
    )
        .prop_map(
            |(
                (time, observed, severity_number, severity_text),
                (body, attributes),
                (trace_id, span_id, flags, event_name),
            )| LogRecord {
                time,
                observed,
                severity_number,
                severity_text,
                body,
                attributes,
                trace_id,
                span_id,
                flags,
                event_name,
            },
        )
}

fn request() -> impl Strategy<Value = Vec<ResourceLogs>> {
    let scope = (
        proptest::option::of((text(), text())),
        prop::collection::vec(log_record(), 0..3),
    )
        .prop_map(|(scope, records)| ScopeLogs { scope, records });
    let resource = (
        proptest::option::of(attributes()),
        prop::collection::vec(scope, 0..3),
    )
        .prop_map(|(resource, scopes)| ResourceLogs { resource, scopes });
    prop::collection::vec(resource, 0..3)
}

// ---- protobuf, as proto3 writes it ----

fn put_fixed64(out: &mut Vec<u8>, number: u32, v: u64) {
    put_varint(out, (u64::from(number) << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_fixed32(out: &mut Vec<u8>, number: u32, v: u32) {
    put_varint(out, (u64::from(number) << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A non-oneof string or bytes field: left out when empty, as proto3 does.
fn put_nonempty(out: &mut Vec<u8>, number: u32, b: &[u8]) {
    if !b.is_empty() {
        put_bytes_field(out, number, b);
    }
}

fn pb_any(v: &Any) -> Vec<u8> {
    let mut m = Vec::new();
    match v {
        Any::Empty => {}
        // A oneof member is written even when it holds its type's default.
        Any::Str(s) => put_bytes_field(&mut m, 1, s.as_bytes()),
        Any::Bool(b) => put_varint_field(&mut m, 2, u64::from(*b)),
        Any::Int(i) => put_varint_field(&mut m, 3, *i as u64),
        Any::Double(d) => put_fixed64(&mut m, 4, d.to_bits()),
        Any::Array(items) => {
            let mut list = Vec::new();
            for i in items {
                put_bytes_field(&mut list, 1, &pb_any(i));
            }
            put_bytes_field(&mut m, 5, &list);
        }
        Any::KvList(kvs) => put_bytes_field(&mut m, 6, &pb_key_values(kvs, 1)),
        Any::Bytes(b) => put_bytes_field(&mut m, 7, b),
    }
    m
}

/// `KeyValue`s as repeated field `number` of a message.
fn pb_key_values(kvs: &[(String, Any)], number: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in kvs {
        let mut kv = Vec::new();
        put_nonempty(&mut kv, 1, k.as_bytes());
        put_bytes_field(&mut kv, 2, &pb_any(v));
        put_bytes_field(&mut out, number, &kv);
    }
    out
}

fn pb_record(r: &LogRecord) -> Vec<u8> {
    let mut m = Vec::new();
    if r.time != 0 {
        put_fixed64(&mut m, 1, r.time);
    }
    if r.severity_number != 0 {
        put_varint_field(&mut m, 2, u64::from(r.severity_number));
    }
    put_nonempty(&mut m, 3, r.severity_text.as_bytes());
    if let Some(b) = &r.body {
        put_bytes_field(&mut m, 5, &pb_any(b));
    }
    m.extend(pb_key_values(&r.attributes, 6));
    if r.flags != 0 {
        put_fixed32(&mut m, 8, r.flags);
    }
    put_nonempty(&mut m, 9, &r.trace_id);
    put_nonempty(&mut m, 10, &r.span_id);
    if r.observed != 0 {
        put_fixed64(&mut m, 11, r.observed);
    }
    put_nonempty(&mut m, 12, r.event_name.as_bytes());
    m
}

fn protobuf(req: &[ResourceLogs]) -> Vec<u8> {
    let mut out = Vec::new();
    for rl in req {
        let mut rm = Vec::new();
        if let Some(attrs) = &rl.resource {
            put_bytes_field(&mut rm, 1, &pb_key_values(attrs, 1));
        }
        for sl in &rl.scopes {
            let mut sm = Vec::new();
            if let Some((name, version)) = &sl.scope {
                let mut scope = Vec::new();
                put_nonempty(&mut scope, 1, name.as_bytes());
                put_nonempty(&mut scope, 2, version.as_bytes());
                put_bytes_field(&mut sm, 1, &scope);
            }
            for r in &sl.records {
                put_bytes_field(&mut sm, 2, &pb_record(r));
            }
            put_bytes_field(&mut rm, 2, &sm);
        }
        put_bytes_field(&mut out, 1, &rm);
    }
    out
}

// ---- OTLP/JSON ----

fn js_int(i: i64, style: JsonStyle) -> Value {
    if style.ints_as_strings {
        Value::String(i.to_string())
    } else {
        Value::from(i)
    }
}

fn js_double(d: f64, style: JsonStyle) -> Value {
    if d.is_nan() {
        json!("NaN")
    } else if d.is_infinite() {
        json!(if d > 0.0 { "Infinity" } else { "-Infinity" })
    } else if style.integral_doubles_as_ints
        && d.fract() == 0.0
        && d.abs() < 9.0e15
        && !(d == 0.0 && d.is_sign_negative())
    {
        // Go's protojson and protobuf.js write 5.0 as `5`.
        Value::from(d as i64)
    } else {
        Value::from(d)
    }
}

fn js_any(v: &Any, style: JsonStyle) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match v {
        Any::Empty => json!({}),
        Any::Str(s) => json!({ "stringValue": s }),
        Any::Bool(b) => json!({ "boolValue": b }),
        Any::Int(i) => json!({ "intValue": js_int(*i, style) }),
        Any::Double(d) => json!({ "doubleValue": js_double(*d, style) }),
        Any::Bytes(b) => json!({ "bytesValue": b64(b) }),
        Any::Array(items) => {
            let values: Vec<Value> = items.iter().map(|i| js_any(i, style)).collect();
            json!({ "arrayValue": { "values": values } })
        }
        Any::KvList(kvs) => json!({ "kvlistValue": { "values": js_key_values(kvs, style) } }),
    }
}

fn js_key_values(kvs: &[(String, Any)], style: JsonStyle) -> Vec<Value> {
    kvs.iter()
        .map(|(k, v)| json!({ "key": k, "value": js_any(v, style) }))
        .collect()
}

fn js_record(r: &LogRecord, style: JsonStyle) -> Value {
    let hex = crate::record::canonical::hex;
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if r.time != 0 {
        put("timeUnixNano", json!(r.time.to_string()));
    }
    if r.observed != 0 {
        put("observedTimeUnixNano", json!(r.observed.to_string()));
    }
    if r.severity_number != 0 {
        put("severityNumber", json!(r.severity_number));
    }
    if !r.severity_text.is_empty() {
        put("severityText", json!(r.severity_text));
    }
    if let Some(b) = &r.body {
        put("body", js_any(b, style));
    }
    if !r.attributes.is_empty() {
        put(
            "attributes",
            Value::Array(js_key_values(&r.attributes, style)),
        );
    }
    if r.flags != 0 {
        put("flags", json!(r.flags));
    }
    if !r.trace_id.is_empty() {
        put("traceId", json!(hex(&r.trace_id)));
    }
    if !r.span_id.is_empty() {
        put("spanId", json!(hex(&r.span_id)));
    }
    if !r.event_name.is_empty() {
        put("eventName", json!(r.event_name));
    }
    Value::Object(m)
}

fn json_request(req: &[ResourceLogs], style: JsonStyle) -> Vec<u8> {
    let resource_logs: Vec<Value> = req
        .iter()
        .map(|rl| {
            let scopes: Vec<Value> = rl
                .scopes
                .iter()
                .map(|sl| {
                    let records: Vec<Value> =
                        sl.records.iter().map(|r| js_record(r, style)).collect();
                    let mut m = json!({ "logRecords": records });
                    if let Some((name, version)) = &sl.scope {
                        m["scope"] = json!({ "name": name, "version": version });
                    }
                    m
                })
                .collect();
            let mut m = json!({ "scopeLogs": scopes });
            if let Some(attrs) = &rl.resource {
                m["resource"] = json!({ "attributes": js_key_values(attrs, style) });
            }
            m
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceLogs": resource_logs })).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Both encodings of one request give the same records, in the same order, under
    /// the same names, with the same JSON text.
    #[test]
    fn json_and_protobuf_requests_map_to_the_same_records(
        req in request(),
        ints_as_strings in any::<bool>(),
        integral_doubles_as_ints in any::<bool>(),
    ) {
        let style = JsonStyle { ints_as_strings, integral_doubles_as_ints };
        let from_json = log_records(&json_request(&req, style), Encoding::Json);
        let from_protobuf = log_records(&protobuf(&req), Encoding::Protobuf);
        let from_json = from_json.map_err(TestCaseError::fail)?;
        let from_protobuf = from_protobuf.map_err(TestCaseError::fail)?;
        let count: usize = req.iter().flat_map(|r| &r.scopes).map(|s| s.records.len()).sum();
        prop_assert_eq!(from_json.len(), count);
        for (j, p) in from_json.iter().zip(&from_protobuf) {
            prop_assert_eq!(&j.source, &p.source);
            let (jt, pt) = (j.json.as_ref(), p.json.as_ref());
            prop_assert!(jt.is_ok() && pt.is_ok(), "{:?} / {:?}", jt, pt);
            prop_assert_eq!(jt.ok(), pt.ok(), "at {}", j.source);
        }
        prop_assert_eq!(from_json.len(), from_protobuf.len());
    }
}
