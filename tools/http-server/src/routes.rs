//! Routes. Upstream's `/record/`, `/flush/`, `/healthcheck/` keep their shapes; `/records`
//! takes batches (NDJSON, JSON array or msgpack), `/v1/logs` OpenTelemetry logs
//! (OTLP), `/services/collector/...` Splunk HEC events, and `/health`, `/ready`,
//! `/metrics` and `/openapi.json` are new.
//! Decoding and buffering are blocking, so they run on the runtime's blocking pool; the
//! async workers only move bytes. The ingest routes honour an `Idempotency-Key` header
//! (see [`crate::idempotent`]) and take gzip, zstd or deflate bodies (see
//! [`crate::encoding`]).

use crate::body::Body;
use crate::encoding;
use crate::idempotent::{self, CheckIn, Reply};
use crate::probe::Probe;
use axum::Router;
use axum::extract::{Request, State as St};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use data2parquet::config::Config;
use data2parquet::decode::frame::{Layout, frame_body};
use data2parquet::idempotency::{IdempotencyStore, Outcome, Ticket, store_for};
use data2parquet::ingest::{Decoder, IngestSpec, KeyedBatch};
use data2parquet::logging::{Level, SharedLogger};
use data2parquet::receiver::{Receiver, SubmitError};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const OPENAPI: &str = include_str!("../openapi.json");

pub struct State {
    cfg: Config,
    spec: &'static IngestSpec,
    pub(crate) receiver: Arc<Receiver>,
    probe: Probe,
    pub(crate) log: SharedLogger,
    decoders: Mutex<Vec<Decoder<'static>>>,
    /// Responses by status class: 2xx, 4xx, 5xx (index 0, 1, 2).
    responses: [AtomicU64; 3],
    /// Answers to requests with an `Idempotency-Key`.
    pub(crate) idempotency: Box<dyn IdempotencyStore>,
    /// Requests answered again from `idempotency`.
    pub(crate) replays: AtomicU64,
}

impl State {
    /// `HttpMaxBodyBytes`: the largest body taken, as sent and once unpacked.
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.cfg.http_max_body_bytes
    }

    pub fn new(
        cfg: Config,
        spec: &'static IngestSpec,
        receiver: Arc<Receiver>,
        probe: Probe,
        log: SharedLogger,
    ) -> State {
        State {
            spec,
            receiver,
            probe,
            log,
            decoders: Mutex::new(Vec::new()),
            responses: Default::default(),
            idempotency: store_for(&cfg),
            replays: AtomicU64::new(0),
            cfg,
        }
    }

    pub(crate) fn with_decoder<T>(&self, f: impl FnOnce(&mut Decoder<'static>) -> T) -> T {
        let taken = self
            .decoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut d = taken.unwrap_or_else(|| Decoder::new(self.spec));
        let r = f(&mut d);
        self.decoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d);
        r
    }
}

pub(crate) type Shared = Arc<State>;

/// Bodies are read by [`Body`], which enforces `HttpMaxBodyBytes`.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/record/", post(record))
        .route("/record", post(record))
        .route("/records", post(records))
        .route("/records/", post(records))
        .route("/v1/logs", post(crate::otlp::logs))
        .route("/services/collector/event", post(crate::hec::event))
        .route("/services/collector/event/1.0", post(crate::hec::event))
        .route("/services/collector", post(crate::hec::event))
        .route("/services/collector/raw", post(crate::hec::raw))
        .route("/services/collector/raw/1.0", post(crate::hec::raw))
        .route("/services/collector/health", get(crate::hec::health))
        .route("/services/collector/health/1.0", get(crate::hec::health))
        .route("/flush/", post(flush))
        .route("/flush", post(flush))
        .route("/healthcheck/", get(healthcheck))
        .route("/healthcheck", get(healthcheck))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn json_response(status: StatusCode, v: Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A refusal: status, JSON body, and for retryable ones a Retry-After. Small, unlike a
/// built `Response`, so it travels through `Result`s cheaply.
pub struct Refusal {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
    /// A 415 for a `Content-Encoding`: say which ones are accepted (RFC 7694).
    accept_encoding: bool,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, body: Value) -> Refusal {
        Refusal {
            status,
            body,
            retry_after: None,
            accept_encoding: false,
        }
    }

    pub(crate) fn retry(mut self, secs: u64) -> Refusal {
        self.retry_after = Some(secs);
        self
    }

    pub(crate) fn accept_encoding(mut self) -> Refusal {
        self.accept_encoding = true;
        self
    }
}

impl Refusal {
    /// The refusal with its JSON body re-encoded by `encode` (to the body and its
    /// Content-Type), for a route that answers in its request's encoding; the status
    /// and headers stay.
    pub(crate) fn into_response_as(
        self,
        encode: impl FnOnce(StatusCode, &str) -> (Vec<u8>, &'static str),
    ) -> Response {
        let (body, content_type) = encode(self.status, &self.body.to_string());
        let mut r = (self.status, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self.accept_encoding {
            r.headers_mut().insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(encoding::ACCEPTED),
            );
        }
        match self.retry_after {
            Some(s) => retry_after(r, s),
            None => r,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.into_response_as(|_, b| (b.as_bytes().to_vec(), "application/json"))
    }
}

fn retry_after(mut r: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Equal-time comparison of the token, sent as `Bearer <token>` or, as HEC clients
/// send theirs, `Splunk <token>`.
fn token_ok(headers: &HeaderMap, want: &str) -> bool {
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("Splunk "))
        })
        .unwrap_or("");
    let (a, b) = (got.as_bytes(), want.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
}

/// Authentication, request timeout and response counting for every route.
async fn guard(St(s): St<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = matches!(
        path,
        "/health"
            | "/ready"
            | "/healthcheck"
            | "/healthcheck/"
            | "/services/collector/health"
            | "/services/collector/health/1.0"
    );
    let token = s.cfg.http_auth_token.expose();
    let resp = if !open && !token.is_empty() && !token_ok(req.headers(), token) {
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    } else {
        match tokio::time::timeout(s.cfg.http_request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => retry_after(
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": format!("request took longer than {:?}", s.cfg.http_request_timeout)}),
                ),
                1,
            ),
        }
    };
    let class = match resp.status().as_u16() {
        200..=399 => 0,
        400..=499 => 1,
        _ => 2,
    };
    s.responses[class].fetch_add(1, Ordering::Relaxed);
    resp
}

/// Stores a decoded batch; maps pipeline errors to HTTP answers.
pub(crate) fn submit(s: &State, batch: KeyedBatch) -> Result<(), Refusal> {
    s.receiver.submit(batch).map(|_| ()).map_err(refusal_for)
}

/// The answer to a submission the pipeline refused: 429 when full, else 503.
pub(crate) fn refusal_for(e: SubmitError) -> Refusal {
    match e {
        SubmitError::Full(e) => Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": format!("buffer full: {e}")}),
        )
        .retry(1),
        e => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        )
        .retry(1),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("internal error: {e}")}),
        )
    })
}

/// What an ingest request says about itself in its headers.
struct Ingest {
    route: &'static str,
    content_type: Vec<u8>,
    key: Option<String>,
    enc: encoding::Encoding,
}

impl Ingest {
    fn of(route: &'static str, headers: &HeaderMap) -> Result<Ingest, Refusal> {
        Ok(Ingest {
            route,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .map(|h| h.as_bytes().to_vec())
                .unwrap_or_default(),
            key: idempotent::key(headers)?,
            enc: encoding::of(headers)?,
        })
    }

    /// Unpacks the body and checks the key in: the body to process and the key's claim,
    /// or the answer to give at once (a replay or a refusal). Unpacked first, so a
    /// resend compressed differently is the same request.
    fn admit(
        &self,
        s: &State,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Option<Ticket>), Result<Reply, Refusal>> {
        let body = encoding::unpack(self.enc, body, s.max_body_bytes()).map_err(Err)?;
        let parts: [&[u8]; 3] = [self.route.as_bytes(), &self.content_type, &body];
        match idempotent::check_in(s, self.key.as_deref(), &parts) {
            CheckIn::Go(t) => Ok((body, t)),
            CheckIn::Answered(reply) => Err(Ok(reply)),
            CheckIn::Refuse(r) => Err(Err(r)),
        }
    }
}

/// `POST /record/`: one JSON object; 201 once it is buffered.
async fn record(St(s): St<Shared>, headers: HeaderMap, Body(body): Body) -> Response {
    let t = Instant::now();
    let res = ingest(s, "/record/", &headers, body, move |st, mut body, batch| {
        let ok = st.with_decoder(|d| d.json(&mut body, || "request body".to_string(), batch));
        let (status, mut body) = if ok {
            (StatusCode::CREATED, json!({}))
        } else {
            // The bad record still goes to the DLQ, like any other.
            let reason = batch
                .rejected
                .first()
                .map(|e| e.reason.clone())
                .unwrap_or_default();
            (StatusCode::BAD_REQUEST, json!({"error": reason}))
        };
        body["timestamp"] = json!(now_unix());
        body["elapsed"] = json!(format!("{:?}", t.elapsed()));
        (status, body)
    })
    .await;
    match res {
        Ok(reply) => reply.into_response(),
        Err(r) => r.into_response(),
    }
}

/// What every ingest route does once it knows how to read its body: the headers
/// checked (Idempotency-Key, Content-Encoding), then on the blocking pool the body
/// unpacked and its key checked in, `decode` run into a batch and the answer, and the
/// batch stored with that answer (kept for resends of the key).
pub(crate) async fn ingest(
    s: Shared,
    route: &'static str,
    headers: &HeaderMap,
    body: Vec<u8>,
    decode: impl FnOnce(&State, Vec<u8>, &mut KeyedBatch) -> (StatusCode, Value) + Send + 'static,
) -> Result<Reply, Refusal> {
    let ingest = Ingest::of(route, headers)?;
    blocking(move || {
        let (body, ticket) = match ingest.admit(&s, body) {
            Ok(go) => go,
            Err(answer) => return answer,
        };
        let mut batch = KeyedBatch::new();
        let (status, answer) = decode(&s, body, &mut batch);
        idempotent::store(&s, batch, ticket, outcome(status, &answer))
    })
    .await?
}

fn outcome(status: StatusCode, body: &Value) -> Outcome {
    Outcome {
        status: status.as_u16(),
        body: body.to_string(),
    }
}

enum BodyKind {
    Json(Layout),
    Msgpack,
}

/// The media type of the request's Content-Type, lower case and without parameters
/// (`application/json` when there is none).
pub(crate) fn mime(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    match mime(headers).as_str() {
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "text/plain" => Some(BodyKind::Json(Layout::Ndjson)),
        "application/json" | "" => Some(BodyKind::Json(Layout::Auto)),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
            Some(BodyKind::Msgpack)
        }
        _ => None,
    }
}

/// `POST /records`: many records; answers the counts and each rejected record's reason.
async fn records(St(s): St<Shared>, headers: HeaderMap, Body(body): Body) -> Response {
    let Some(kind) = body_kind(&headers) else {
        return json_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "Content-Type must be application/x-ndjson, application/json or application/msgpack"}),
        );
    };
    let res = ingest(s, "/records", &headers, body, move |st, body, batch| {
        match kind {
            BodyKind::Msgpack => {
                st.with_decoder(|d| d.msgpack_records(&body, batch));
            }
            BodyKind::Json(layout) => {
                let mut block = frame_body(body, layout, st.cfg.max_record_bytes);
                st.with_decoder(|d| d.json_block(&mut block, |line| format!("line {line}"), batch));
            }
        }
        let accepted = batch.len();
        let errors: Vec<Value> = batch
            .rejected
            .iter()
            .map(|e| json!({"source": e.source, "reason": e.reason}))
            .collect();
        let rejected = errors.len();
        let status = if accepted == 0 && rejected > 0 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        (
            status,
            json!({"accepted": accepted, "rejected": rejected, "errors": errors}),
        )
    })
    .await;
    match res {
        Ok(reply) => reply.into_response(),
        Err(r) => r.into_response(),
    }
}

/// `POST /flush/`: writes everything buffered; 500 when a write failed.
async fn flush(St(s): St<Shared>) -> Response {
    let t = Instant::now();
    let st = s.clone();
    match blocking(move || st.receiver.flush()).await {
        Ok(Ok(rep)) => {
            let ok = rep.errors.is_empty();
            if !ok {
                s.log.log(
                    Level::Error,
                    &format!("flush request: {}", rep.errors.join("; ")),
                );
            }
            json_response(
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                json!({
                    "timestamp": now_unix(), "elapsed": format!("{:?}", t.elapsed()),
                    "batches": rep.batches, "files": rep.files, "rows": rep.rows,
                    "recovered": rep.recovered, "errors": rep.errors,
                }),
            )
        }
        Ok(Err(e)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
        Err(r) => r.into_response(),
    }
}

pub(crate) async fn readiness(s: &Shared) -> Result<(), String> {
    let st = s.clone();
    match tokio::task::spawn_blocking(move || st.probe.check()).await {
        Ok(r) => r,
        Err(e) => Err(e.to_string()),
    }
}

/// `GET /healthcheck/`: upstream's route, now telling the truth.
async fn healthcheck(St(s): St<Shared>) -> Response {
    let t = Instant::now();
    match readiness(&s).await {
        Ok(()) => json_response(
            StatusCode::OK,
            json!({"status": "ok", "timestamp": now_unix(), "elapsed": format!("{:?}", t.elapsed())}),
        ),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "error", "error": e, "timestamp": now_unix(), "elapsed": format!("{:?}", t.elapsed())}),
        ),
    }
}

/// `GET /health`: liveness.
async fn health() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

/// `GET /ready`: the buffer and the writer can be reached.
async fn ready(St(s): St<Shared>) -> Response {
    match readiness(&s).await {
        Ok(()) => json_response(StatusCode::OK, json!({"status": "ready"})),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "error": e}),
        ),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(St(s): St<Shared>) -> Response {
    let mut text = s.receiver.metrics().render_prometheus();
    text.push_str("# HELP d2p_http_responses_total HTTP responses by status class.\n# TYPE d2p_http_responses_total counter\n");
    for (i, class) in ["2xx", "4xx", "5xx"].iter().enumerate() {
        text.push_str(&format!(
            "d2p_http_responses_total{{class=\"{class}\"}} {}\n",
            s.responses[i].load(Ordering::Relaxed)
        ));
    }
    text.push_str(&format!(
        "# HELP d2p_http_idempotent_replays_total Requests answered again for their Idempotency-Key, their records not stored twice.\n# TYPE d2p_http_idempotent_replays_total counter\nd2p_http_idempotent_replays_total {}\n",
        s.replays.load(Ordering::Relaxed)
    ));
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn openapi() -> Response {
    let mut r = (StatusCode::OK, OPENAPI).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
