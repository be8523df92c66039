//! OTLP protobuf messages read into the shape of their JSON encoding (field names in
//! lowerCamelCase, 64-bit integers as strings, trace and span ids as hex), as the OTLP
//! specification maps one onto the other, so [`super::otlp`] maps both encodings the
//! same way. Unknown fields are skipped, as protobuf readers do; invalid UTF-8 in a
//! string is replaced, not refused, so a record is never lost over one byte.
//!
//! Field numbers are those of `opentelemetry/proto/logs/v1/logs.proto`,
//! `common/v1/common.proto` and `collector/logs/v1/logs_service.proto`.

use super::protobuf::{Reader, Wire};
use serde_json::{Map, Value, json};

fn text(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

fn hex(b: &[u8]) -> Value {
    Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The embedded message of a length-delimited field; a field of another wire type
/// where a message belongs makes the request unreadable.
fn message<'a>(what: &str, w: Wire<'a>) -> Result<&'a [u8], String> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(format!("{what} is not a message")),
    }
}

fn push(m: &mut Map<String, Value>, key: &str, v: Value) {
    if let Value::Array(a) = m.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        a.push(v);
    }
}

/// Reads message `b` field by field into an object, with `f` taking each field.
fn object<'a>(
    b: &'a [u8],
    mut f: impl FnMut(&mut Map<String, Value>, u32, Wire<'a>) -> Result<(), String>,
) -> Result<Value, String> {
    let mut m = Map::new();
    let mut r = Reader::new(b);
    while let Some((n, w)) = r.field()? {
        f(&mut m, n, w)?;
    }
    Ok(Value::Object(m))
}

/// `ExportLogsServiceRequest { repeated ResourceLogs resource_logs = 1; }`
pub fn request(b: &[u8]) -> Result<Value, String> {
    object(b, |m, n, w| {
        if n == 1 {
            push(
                m,
                "resourceLogs",
                resource_logs(message("resource_logs", w)?)?,
            );
        }
        Ok(())
    })
}

/// `ResourceLogs { Resource resource = 1; repeated ScopeLogs scope_logs = 2; }` with
/// `Resource { repeated KeyValue attributes = 1; }`.
fn resource_logs(b: &[u8]) -> Result<Value, String> {
    object(b, |m, n, w| {
        match n {
            1 => {
                let res = object(message("resource", w)?, |res, n, w| {
                    if n == 1 {
                        push(res, "attributes", key_value(message("attribute", w)?)?);
                    }
                    Ok(())
                })?;
                m.insert("resource".into(), res);
            }
            2 => push(m, "scopeLogs", scope_logs(message("scope_logs", w)?)?),
            _ => {}
        }
        Ok(())
    })
}

/// `ScopeLogs { InstrumentationScope scope = 1; repeated LogRecord log_records = 2; }`
/// with `InstrumentationScope { string name = 1; string version = 2; }`.
fn scope_logs(b: &[u8]) -> Result<Value, String> {
    object(b, |m, n, w| {
        match n {
            1 => {
                let scope = object(message("scope", w)?, |scope, n, w| {
                    match (n, w) {
                        (1, Wire::Bytes(s)) => scope.insert("name".into(), text(s)),
                        (2, Wire::Bytes(s)) => scope.insert("version".into(), text(s)),
                        _ => None,
                    };
                    Ok(())
                })?;
                m.insert("scope".into(), scope);
            }
            2 => push(m, "logRecords", log_record(message("log_records", w)?)?),
            _ => {}
        }
        Ok(())
    })
}

/// `LogRecord`: times (fixed64 1 and 11), severity (number 2, text 3), body (5),
/// attributes (6), trace and span ids (9, 10), event name (12).
fn log_record(b: &[u8]) -> Result<Value, String> {
    object(b, |m, n, w| {
        let (key, v) = match (n, w) {
            (1, Wire::Fixed64(t)) => ("timeUnixNano", Value::String(t.to_string())),
            (11, Wire::Fixed64(t)) => ("observedTimeUnixNano", Value::String(t.to_string())),
            (2, Wire::Varint(s)) => ("severityNumber", json!(s as i64)),
            (3, Wire::Bytes(s)) => ("severityText", text(s)),
            (5, w) => ("body", any_value(message("body", w)?)?),
            (6, w) => {
                push(m, "attributes", key_value(message("attribute", w)?)?);
                return Ok(());
            }
            (9, Wire::Bytes(id)) => ("traceId", hex(id)),
            (10, Wire::Bytes(id)) => ("spanId", hex(id)),
            (12, Wire::Bytes(s)) => ("eventName", text(s)),
            _ => return Ok(()),
        };
        m.insert(key.into(), v);
        Ok(())
    })
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`
fn key_value(b: &[u8]) -> Result<Value, String> {
    object(b, |m, n, w| {
        match (n, w) {
            (1, Wire::Bytes(k)) => {
                m.insert("key".into(), text(k));
            }
            (2, w) => {
                m.insert("value".into(), any_value(message("value", w)?)?);
            }
            _ => {}
        }
        Ok(())
    })
}

/// `AnyValue { oneof value { string 1; bool 2; int64 3; double 4; ArrayValue 5;
/// KeyValueList 6; bytes 7; } }`, the two lists each holding `values = 1`.
fn any_value(b: &[u8]) -> Result<Value, String> {
    object(b, |out, n, w| {
        let (key, v) = match (n, w) {
            (1, Wire::Bytes(s)) => ("stringValue", text(s)),
            (2, Wire::Varint(v)) => ("boolValue", Value::Bool(v != 0)),
            (3, Wire::Varint(v)) => ("intValue", Value::String((v as i64).to_string())),
            (4, Wire::Fixed64(bits)) => {
                // JSON has no NaN or infinity: those stay text, as OTLP/JSON writes them.
                let f = f64::from_bits(bits);
                let v = serde_json::Number::from_f64(f)
                    .map_or_else(|| Value::String(f.to_string()), Value::Number);
                ("doubleValue", v)
            }
            (5 | 6, Wire::Bytes(list)) => {
                let mut values = Vec::new();
                object(list, |_, ln, lw| {
                    if ln == 1 {
                        let item = message("list item", lw)?;
                        values.push(if n == 5 {
                            any_value(item)?
                        } else {
                            key_value(item)?
                        });
                    }
                    Ok(())
                })?;
                let key = if n == 5 { "arrayValue" } else { "kvlistValue" };
                (key, json!({ "values": values }))
            }
            (7, Wire::Bytes(bytes)) => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                ("bytesValue", Value::String(b64))
            }
            _ => return Ok(()),
        };
        // A oneof: the last one set wins.
        out.clear();
        out.insert(key.into(), v);
        Ok(())
    })
}
