//! Splunk HTTP Event Collector routes, for the senders that speak HEC (Docker's `splunk`
//! logging driver, Vector, the OpenTelemetry collector, Fluentd, Logstash, logging
//! libraries): `POST /services/collector/event` (also `/services/collector` and
//! `/services/collector/event/1.0`) takes one or more JSON events, each becoming one
//! record (see `data2parquet::decode::hec`), `POST /services/collector/raw` takes text
//! lines, and `GET /services/collector/health` says whether events can be taken.
//!
//! Answers have HEC's shape (`{"text": "Success", "code": 0}`), which is what HEC
//! clients read. Unlike Splunk, which refuses a whole request for one bad event after
//! indexing the events before it (so a client that resends duplicates them, and one
//! that does not loses the rest), a bad event is dead-lettered under its place and the
//! others are stored: the answer is then still 200, with the rejected count and the
//! first reasons. Only a request with no good event is refused (400, code 6, or code 5
//! for an empty body). A full buffer answers 429 (503 when the buffer is away) with
//! Retry-After and code 9 ("Server is busy"), which HEC clients retry.

use crate::body::Body;
use crate::idempotent::Reply;
use crate::routes::{Refusal, Shared, ingest, json_response, readiness};
use axum::extract::{RawQuery, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use data2parquet::decode::hec;
use data2parquet::ingest::KeyedBatch;
use serde_json::{Value, json};

/// HEC's status codes (in the body; the HTTP status says the same to other clients).
const SUCCESS: u64 = 0;
const INVALID_AUTHORIZATION: u64 = 3;
const NO_DATA: u64 = 5;
const INVALID_DATA_FORMAT: u64 = 6;
const SERVER_BUSY: u64 = 9;
const HEALTHY: u64 = 17;
const UNHEALTHY: u64 = 18;

/// How many rejected events an answer names.
const NAMED: usize = 3;

/// The answer to a body whose events were read.
fn answer_for(batch: &KeyedBatch) -> (StatusCode, Value) {
    let rejected = batch.rejected.len();
    if rejected == 0 {
        return (StatusCode::OK, json!({"text": "Success", "code": SUCCESS}));
    }
    let errors: Vec<Value> = batch
        .rejected
        .iter()
        .take(NAMED)
        .map(|e| json!({"source": e.source, "reason": e.reason}))
        .collect();
    if batch.is_empty() {
        // The first event is bad when none is good: HEC's index of it is 0.
        (
            StatusCode::BAD_REQUEST,
            json!({"text": "Invalid data format", "code": INVALID_DATA_FORMAT,
                   "invalid-event-number": 0, "rejected": rejected, "errors": errors}),
        )
    } else {
        (
            StatusCode::OK,
            json!({"text": "Success", "code": SUCCESS, "rejected": rejected, "errors": errors}),
        )
    }
}

/// `POST /services/collector/event`: HEC events; the query's `host`, `source`,
/// `sourcetype` and `index`, as Splunk takes them, fill in what an event does not set.
pub async fn event(
    St(s): St<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let defaults = metadata(query);
    respond(
        ingest(
            s,
            "/services/collector/event",
            &headers,
            body,
            move |st, body, batch| {
                let read =
                    st.with_decoder(|d| d.hec_events(&body, &defaults, str::to_string, batch));
                answer(read, batch)
            },
        )
        .await,
    )
}

/// The HEC metadata among a request's query parameters (`channel` and others are not
/// kept).
fn metadata(query: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| hec::is_metadata(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `POST /services/collector/raw`: text lines, each a record whose `message` is the
/// line, with the `host`, `source`, `sourcetype` and `index` of the query string (HEC
/// raw's parameters; `channel` and others are ignored). So a script or a cron job can
/// ship a log file with curl: `curl --data-binary @app.log
/// 'http://host:8080/services/collector/raw?sourcetype=app'`.
pub async fn raw(
    St(s): St<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let meta = metadata(query);
    respond(
        ingest(
            s,
            "/services/collector/raw",
            &headers,
            body,
            move |st, body, batch| {
                let read = st.with_decoder(|d| d.hec_raw(&body, &meta, str::to_string, batch));
                answer(read, batch)
            },
        )
        .await,
    )
}

/// The answer to a body that was read (`Err`: it held nothing).
fn answer(read: Result<(), String>, batch: &KeyedBatch) -> (StatusCode, Value) {
    match read {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            json!({"text": "No data", "code": NO_DATA, "reason": e}),
        ),
        Ok(()) => answer_for(batch),
    }
}

fn respond(res: Result<Reply, Refusal>) -> Response {
    match res {
        Ok(reply) => reply.into_response_as(as_hec),
        Err(r) => r.into_response_as(as_hec),
    }
}

/// A JSON answer in HEC's shape: answers of this route already are; a refusal of
/// ours (`{"error": ...}`: full buffer, Idempotency-Key, body too large) becomes
/// `{"text": ..., "code": ...}` with the HEC code of its status.
fn as_hec(status: StatusCode, body: &str) -> (Vec<u8>, &'static str) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let out = match v.get("error").and_then(Value::as_str) {
        Some(e) if v.get("code").is_none() => {
            let code = match status.as_u16() {
                429 | 503 => SERVER_BUSY,
                401 => INVALID_AUTHORIZATION,
                _ => INVALID_DATA_FORMAT,
            };
            json!({"text": e, "code": code}).to_string()
        }
        _ => body.to_string(),
    };
    (out.into_bytes(), "application/json")
}

/// `GET /services/collector/health`: 200 when events can be taken (the buffer and the
/// writer are reachable), else 503.
pub async fn health(St(s): St<Shared>) -> Response {
    match readiness(&s).await {
        Ok(()) => json_response(
            StatusCode::OK,
            json!({"text": "HEC is healthy", "code": HEALTHY}),
        ),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"text": format!("HEC is unhealthy: {e}"), "code": UNHEALTHY}),
        ),
    }
    .into_response()
}
