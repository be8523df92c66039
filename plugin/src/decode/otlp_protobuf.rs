//! OTLP protobuf requests read straight into [`LogFields`], the same fields the JSON
//! encoding fills, so both encodings map a record the same way; values are rendered as
//! JSON text where they are read (as the OTLP/JSON mapping writes them: 64-bit integers
//! as numbers here, trace and span ids as hex, bytes as base64), without an
//! intermediate document. Unknown fields are skipped, as protobuf readers do; invalid
//! UTF-8 in a string is replaced, not refused, so a record is never lost over one byte.
//!
//! Field numbers are those of `opentelemetry/proto/logs/v1/logs.proto`,
//! `common/v1/common.proto` and `collector/logs/v1/logs_service.proto`.

use super::FlatRecord;
use super::otlp::{FlatObject, LogFields, Rendered, json_string, scope_fields};
use super::protobuf::{Reader, Wire};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The embedded message of a length-delimited field; a field of another wire type
/// where a message belongs makes the request unreadable.
fn message<'a>(what: &str, w: Wire<'a>) -> Result<&'a [u8], String> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(format!("{what} is not a message")),
    }
}

/// Calls `f` with each field of message `b`, in order.
fn fields<'a>(
    b: &'a [u8],
    mut f: impl FnMut(u32, Wire<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut r = Reader::new(b);
    while let Some((n, w)) = r.field()? {
        f(n, w)?;
    }
    Ok(())
}

/// `ExportLogsServiceRequest { repeated ResourceLogs resource_logs = 1; }`: every log
/// record, flat, named by its place in the request.
pub(super) fn log_records(b: &[u8]) -> Result<Vec<FlatRecord>, String> {
    let mut out = Vec::new();
    let mut ri = 0;
    fields(b, |n, w| {
        if n == 1 {
            resource_logs(message("resource_logs", w)?, ri, &mut out)?;
            ri += 1;
        }
        Ok(())
    })?;
    Ok(out)
}

/// `ResourceLogs { Resource resource = 1; repeated ScopeLogs scope_logs = 2; }` with
/// `Resource { repeated KeyValue attributes = 1; }`. The resource is read first,
/// wherever it is in the message, as its records need it.
fn resource_logs(b: &[u8], ri: usize, out: &mut Vec<FlatRecord>) -> Result<(), String> {
    let mut resource = Rendered::new();
    fields(b, |n, w| {
        if n == 1 {
            resource = attributes(message("resource", w)?, 1)?;
        }
        Ok(())
    })?;
    let mut si = 0;
    fields(b, |n, w| {
        if n == 2 {
            let at = format!("resourceLogs[{ri}].scopeLogs[{si}]");
            scope_logs(message("scope_logs", w)?, &resource, &at, out)?;
            si += 1;
        }
        Ok(())
    })
}

/// `ScopeLogs { InstrumentationScope scope = 1; repeated LogRecord log_records = 2; }`
/// with `InstrumentationScope { string name = 1; string version = 2; }`.
fn scope_logs(
    b: &[u8],
    resource: &Rendered,
    at: &str,
    out: &mut Vec<FlatRecord>,
) -> Result<(), String> {
    let (mut name, mut version) = (None, None);
    fields(b, |n, w| {
        if n == 1 {
            (name, version) = (None, None);
            fields(message("scope", w)?, |n, w| {
                match (n, w) {
                    (1, Wire::Bytes(s)) => name = Some(text(s)),
                    (2, Wire::Bytes(s)) => version = Some(text(s)),
                    _ => {}
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    let scope = scope_fields(name.as_deref(), version.as_deref());
    let mut li = 0;
    fields(b, |n, w| {
        if n == 2 {
            let rec = log_record(message("log_records", w)?)?;
            out.push(FlatRecord {
                source: format!("{at}.logRecords[{li}]"),
                json: Ok(rec.assemble(&scope, resource)),
            });
            li += 1;
        }
        Ok(())
    })
}

/// `LogRecord`: times (fixed64 1 and 11), severity (number 2, text 3), body (5),
/// attributes (6), trace and span ids (9, 10), event name (12).
fn log_record(b: &[u8]) -> Result<LogFields, String> {
    let mut f = LogFields::default();
    let (mut time, mut observed) = (None, None);
    fields(b, |n, w| {
        match (n, w) {
            (1, Wire::Fixed64(t)) => time = i64::try_from(t).ok(),
            (11, Wire::Fixed64(t)) => observed = i64::try_from(t).ok(),
            (2, Wire::Varint(s)) => f.severity_number = Some(s as i64),
            (3, Wire::Bytes(s)) => f.severity_text = Some(text(s)),
            (5, w) => f.body = Some(any_value(message("body", w)?)?),
            (6, w) => f.attributes.push(key_value(message("attribute", w)?)?),
            (9, Wire::Bytes(id)) => f.trace_id = Some(crate::record::canonical::hex(id)),
            (10, Wire::Bytes(id)) => f.span_id = Some(crate::record::canonical::hex(id)),
            (12, Wire::Bytes(s)) => f.event_name = Some(text(s)),
            _ => {}
        }
        Ok(())
    })?;
    f.time_ns = [time, observed].into_iter().flatten().find(|&n| n > 0);
    Ok(f)
}

/// The `KeyValue`s under field `field` of message `b`.
fn attributes(b: &[u8], field: u32) -> Result<Rendered, String> {
    let mut out = Rendered::new();
    fields(b, |n, w| {
        if n == field {
            out.push(key_value(message("attribute", w)?)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`. A key not written is `""`, the
/// proto3 default (encoders leave an empty key out), as OTLP/JSON would spell it.
fn key_value(b: &[u8]) -> Result<(String, String), String> {
    let (mut key, mut value) = (None, None);
    fields(b, |n, w| {
        match (n, w) {
            (1, Wire::Bytes(k)) => key = Some(text(k)),
            (2, w) => value = Some(any_value(message("value", w)?)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok((
        key.unwrap_or_default(),
        value.unwrap_or_else(|| "null".into()),
    ))
}

/// `AnyValue { oneof value { string 1; bool 2; int64 3; double 4; ArrayValue 5;
/// KeyValueList 6; bytes 7; } }` as JSON text, the two lists each holding
/// `values = 1`. Of a oneof the last field set wins; none is null.
fn any_value(b: &[u8]) -> Result<String, String> {
    let mut v = None;
    fields(b, |n, w| {
        let json = match (n, w) {
            (1, Wire::Bytes(s)) => json_string(&String::from_utf8_lossy(s)),
            (2, Wire::Varint(x)) => (x != 0).to_string(),
            (3, Wire::Varint(x)) => (x as i64).to_string(),
            // JSON has no NaN or infinity: those stay text, as OTLP/JSON writes them.
            (4, Wire::Fixed64(bits)) => super::otlp::double(f64::from_bits(bits)).to_string(),
            (5, Wire::Bytes(list)) => {
                let mut items = Vec::new();
                fields(list, |ln, lw| {
                    if ln == 1 {
                        items.push(any_value(message("list item", lw)?)?);
                    }
                    Ok(())
                })?;
                format!("[{}]", items.join(","))
            }
            (6, Wire::Bytes(list)) => {
                let kvs = attributes(list, 1)?;
                let mut obj = FlatObject::default();
                obj.extend(&kvs);
                obj.into_json()
            }
            (7, Wire::Bytes(bytes)) => {
                use base64::Engine;
                json_string(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            _ => return Ok(()),
        };
        v = Some(json);
        Ok(())
    })?;
    Ok(v.unwrap_or_else(|| "null".into()))
}
