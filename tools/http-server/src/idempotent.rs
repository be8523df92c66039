//! `Idempotency-Key` on the ingest routes (the header of the IETF httpapi draft, as
//! Stripe and others use it). A client whose answer was lost resends the request with
//! the same key; it gets the first answer again, marked `Idempotent-Replayed: true`, and
//! its records are stored once. The same key on a different request is refused with 422,
//! and on a request still being processed with 409. The stores, and why a Redis answer
//! is written with the records, are in `data2parquet::idempotency`.

use crate::routes::{Refusal, State, refusal_for, submit};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use data2parquet::idempotency::{Begin, Outcome, Print, Ticket, validate_key};
use data2parquet::ingest::KeyedBatch;
use data2parquet::log_at;
use data2parquet::logging::Level;
use data2parquet::receiver::SubmitError;
use serde_json::json;
use std::sync::atomic::Ordering;

const HEADER: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

/// A request's key: `None` without the header, 400 for a malformed one.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = |why: String| Refusal::new(StatusCode::BAD_REQUEST, json!({ "error": why }));
    let text = v
        .to_str()
        .map_err(|_| bad("Idempotency-Key may hold only visible ASCII characters".into()))?;
    validate_key(text).map(|k| Some(k.to_string())).map_err(bad)
}

/// An answer: a fresh one, or one given before to the same request.
pub struct Reply {
    outcome: Outcome,
    replayed: bool,
}

impl Reply {
    pub fn fresh(outcome: Outcome) -> Reply {
        Reply {
            outcome,
            replayed: false,
        }
    }
}

impl Reply {
    /// The answer with its body re-encoded from the JSON it is kept as, by `encode`
    /// (to the body and its Content-Type): for a route that answers in its request's
    /// own encoding (OTLP protobuf).
    pub fn into_response_as(
        self,
        encode: impl FnOnce(StatusCode, &str) -> (Vec<u8>, &'static str),
    ) -> Response {
        let status =
            StatusCode::from_u16(self.outcome.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (body, content_type) = encode(status, &self.outcome.body);
        respond(self.outcome.status, body, content_type, self.replayed)
    }
}

fn respond(
    status: u16,
    body: impl Into<axum::body::Body>,
    content_type: &'static str,
    replayed: bool,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, body.into()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if replayed {
        r.headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    r
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        respond(
            self.outcome.status,
            self.outcome.body,
            "application/json",
            self.replayed,
        )
    }
}

/// What a handler does with its request once its key was checked in.
pub enum CheckIn {
    /// Process it (with the claim on its key, if it has one).
    Go(Option<Ticket>),
    /// Answered before: give this answer again.
    Answered(Reply),
    Refuse(Refusal),
}

/// Checks a request's key in. `parts` identify the request (route, content type, body).
pub fn check_in(s: &State, key: Option<&str>, parts: &[&[u8]]) -> CheckIn {
    let Some(key) = key else {
        return CheckIn::Go(None);
    };
    match s.idempotency.begin(key, Print::of(parts)) {
        Ok(Begin::Fresh(t)) => CheckIn::Go(Some(t)),
        Ok(Begin::Replay(outcome)) => {
            s.replays.fetch_add(1, Ordering::Relaxed);
            CheckIn::Answered(Reply {
                outcome,
                replayed: true,
            })
        }
        Ok(Begin::InProgress) => CheckIn::Refuse(
            Refusal::new(
                StatusCode::CONFLICT,
                json!({"error": "a request with this Idempotency-Key is being processed; retry when it is answered"}),
            )
            .retry(1),
        ),
        Ok(Begin::Mismatch) => CheckIn::Refuse(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "this Idempotency-Key was used for a different request"}),
        )),
        Err(e) => CheckIn::Refuse(
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            )
            .retry(1),
        ),
    }
}

/// Stores a decoded batch and answers `outcome`. With a claim, the answer is kept for
/// resends: sealed with the records where the buffer can, else right after them. A
/// refusal frees the key, unless the records may have been stored all the same (a
/// Redis reply lost): then the claim is left to expire, by when a sealed answer is
/// there exactly if the records are.
pub fn store(
    s: &State,
    batch: KeyedBatch,
    ticket: Option<Ticket>,
    outcome: Outcome,
) -> Result<Reply, Refusal> {
    let Some(ticket) = ticket else {
        return submit(s, batch).map(|()| Reply::fresh(outcome));
    };
    let seal = s.idempotency.seal(&ticket, &outcome);
    let res = match &seal {
        Some(seal) => s.receiver.submit_sealed(batch, seal),
        None => s.receiver.submit(batch),
    };
    match res {
        Ok(a) => {
            if let Err(e) = s.idempotency.finish(ticket, &outcome, a.sealed) {
                // The records are stored: answer so. Only a resend would store them again.
                log_at!(
                    s.log,
                    Level::Warn,
                    "records stored, but the answer to their Idempotency-Key was not kept: {e}"
                );
            }
            Ok(Reply::fresh(outcome))
        }
        Err(e) => {
            let maybe_stored = seal.is_some() && matches!(e, SubmitError::Unavailable(_));
            if !maybe_stored {
                s.idempotency.abandon(ticket);
            }
            Err(refusal_for(e))
        }
    }
}
