//! `POST /v1/logs`: OpenTelemetry logs over OTLP/HTTP, in either encoding: protobuf
//! (`application/x-protobuf`, the default of the collector's `otlphttp` exporter and of
//! most SDKs) or JSON (`application/json`). Each log record becomes one record (see
//! `data2parquet::decode::otlp`). Answers are in the request's encoding, as OTLP asks:
//! 200 with an `ExportLogsServiceResponse`, whose `partial_success` counts the records
//! rejected (to the DLQ, like any other); 400 with a `google.rpc.Status` when the body
//! is not an OTLP request or no record could be taken; 415 for another Content-Type;
//! 429 or 503 with Retry-After when the buffer is full or away, which OTLP clients retry.

use crate::body::Body;
use crate::idempotent::Reply;
use crate::routes::{Refusal, Shared, ingest, json_response, mime};
use axum::extract::State as St;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use data2parquet::decode::otlp::Encoding;
use data2parquet::decode::protobuf::{put_bytes_field, put_varint_field};
use data2parquet::ingest::KeyedBatch;
use serde_json::{Value, json};

/// `google.rpc.Code` INVALID_ARGUMENT: what a `Status` of a refused body says.
const INVALID_ARGUMENT: i64 = 3;

/// The encoding a Content-Type names, if it is one OTLP/HTTP uses.
fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    match mime(headers).as_str() {
        "application/json" | "" => Some(Encoding::Json),
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        _ => None,
    }
}

/// The `google.rpc.Code` of a refusal of ours, by its HTTP status (what OTLP clients act
/// on; the code only informs).
fn rpc_code(status: StatusCode) -> u64 {
    match status.as_u16() {
        401 => 16,           // UNAUTHENTICATED
        409 => 10,           // ABORTED
        413 | 429 => 8,      // RESOURCE_EXHAUSTED
        503 => 14,           // UNAVAILABLE
        s if s >= 500 => 13, // INTERNAL
        _ => INVALID_ARGUMENT as u64,
    }
}

/// A JSON answer (kept as JSON for Idempotency-Key resends) in `enc`: OTLP/JSON as is;
/// for protobuf, an `ExportLogsServiceResponse { ExportLogsPartialSuccess
/// partial_success = 1 { int64 rejected_log_records = 1; string error_message = 2; } }`
/// or a `google.rpc.Status { int32 code = 1; string message = 2; }`.
fn encode(enc: Encoding, status: StatusCode, answer: &str) -> (Vec<u8>, &'static str) {
    if enc == Encoding::Json {
        return (answer.as_bytes().to_vec(), "application/json");
    }
    let v: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    if let Some(code) = v["code"].as_i64() {
        put_varint_field(&mut out, 1, code as u64);
        put_bytes_field(&mut out, 2, text(&v, "message").as_bytes());
    } else if let Some(p) = v.get("partialSuccess") {
        let mut inner = Vec::new();
        put_varint_field(&mut inner, 1, p["rejectedLogRecords"].as_u64().unwrap_or(0));
        put_bytes_field(&mut inner, 2, text(p, "errorMessage").as_bytes());
        put_bytes_field(&mut out, 1, &inner);
    } else if let Some(e) = v["error"].as_str() {
        // A refusal of ours (full buffer, bad Idempotency-Key...), as a Status.
        put_varint_field(&mut out, 1, rpc_code(status));
        put_bytes_field(&mut out, 2, e.as_bytes());
    }
    (out, "application/x-protobuf")
}

/// The answer to a request whose records were read: all stored, some rejected
/// (partial success), or none taken (400).
fn answer_for(batch: &KeyedBatch) -> (StatusCode, Value) {
    let rejected = batch.rejected.len();
    if rejected == 0 {
        return (StatusCode::OK, json!({}));
    }
    let message = batch
        .rejected
        .iter()
        .take(3)
        .map(|e| format!("{}: {}", e.source, e.reason))
        .collect::<Vec<_>>()
        .join("; ");
    if batch.is_empty() {
        (
            StatusCode::BAD_REQUEST,
            json!({"code": INVALID_ARGUMENT, "message": message}),
        )
    } else {
        (
            StatusCode::OK,
            json!({"partialSuccess": {"rejectedLogRecords": rejected, "errorMessage": message}}),
        )
    }
}

pub async fn logs(St(s): St<Shared>, headers: HeaderMap, Body(body): Body) -> Response {
    let Some(enc) = encoding(&headers) else {
        return json_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"code": INVALID_ARGUMENT, "message": "OTLP logs are taken as application/x-protobuf or application/json"}),
        );
    };
    let res = ingest(
        s,
        "/v1/logs",
        &headers,
        body,
        move |st, body, batch| match st
            .with_decoder(|d| d.otlp_logs(&body, enc, str::to_string, batch))
        {
            Err(e) => (
                StatusCode::BAD_REQUEST,
                json!({"code": INVALID_ARGUMENT, "message": e}),
            ),
            Ok(()) => answer_for(batch),
        },
    )
    .await;
    match res {
        Ok(reply) => reply_in(enc, reply),
        Err(r) => refusal(enc, r),
    }
}

fn reply_in(enc: Encoding, reply: Reply) -> Response {
    reply.into_response_as(|status, body| encode(enc, status, body))
}

/// A refusal (429, 503, 413...) keeps its status and headers (Retry-After); its body is
/// in the request's encoding.
fn refusal(enc: Encoding, r: Refusal) -> Response {
    r.into_response_as(|status, body| encode(enc, status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use data2parquet::decode::protobuf::{Reader, Wire};

    /// Protobuf answers read back with the field numbers of `logs_service.proto` and
    /// `google/rpc/status.proto`; JSON answers are passed through.
    #[test]
    fn answers_are_encoded_as_the_request_was() {
        let partial = r#"{"partialSuccess":{"rejectedLogRecords":2,"errorMessage":"bad"}}"#;
        let (body, ct) = encode(Encoding::Protobuf, StatusCode::OK, partial);
        assert_eq!(ct, "application/x-protobuf");
        let mut r = Reader::new(&body);
        let Ok(Some((1, Wire::Bytes(inner)))) = r.field() else {
            panic!("partial_success = 1: {body:?}")
        };
        let mut r = Reader::new(inner);
        assert_eq!(r.field(), Ok(Some((1, Wire::Varint(2)))));
        assert_eq!(r.field(), Ok(Some((2, Wire::Bytes(&b"bad"[..])))));
        let (body, _) = encode(
            Encoding::Protobuf,
            StatusCode::BAD_REQUEST,
            r#"{"code":3,"message":"no"}"#,
        );
        let mut r = Reader::new(&body);
        assert_eq!(r.field(), Ok(Some((1, Wire::Varint(3)))));
        assert_eq!(r.field(), Ok(Some((2, Wire::Bytes(&b"no"[..])))));
        assert_eq!(
            encode(Encoding::Protobuf, StatusCode::OK, "{}").0,
            b"",
            "all stored: empty"
        );
        let full = r#"{"error":"buffer full"}"#;
        let (body, _) = encode(Encoding::Protobuf, StatusCode::TOO_MANY_REQUESTS, full);
        assert_eq!(Reader::new(&body).field(), Ok(Some((1, Wire::Varint(8)))));
        assert_eq!(
            encode(Encoding::Json, StatusCode::OK, partial),
            (partial.as_bytes().to_vec(), "application/json")
        );
    }
}
