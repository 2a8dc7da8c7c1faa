//! The OTLP/HTTP port: `POST /v1/{traces,logs,metrics}` and `/health`, `/ready`,
//! `/metrics`.
//!
//! Answers follow the OTLP/HTTP specification: 200 with an `Export*ServiceResponse` (its
//! `partial_success` set when records were rejected) in the request's encoding; 400 with a
//! `google.rpc.Status` for a payload that does not decode; 415 for a content type or
//! encoding other than protobuf/JSON and identity/gzip; 413 for a body over the limit
//! (also after decompression); 503 with `Retry-After` while the store pushes back.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::OwnedSemaphorePermit;

use super::Shared;
use super::receiver::{self, Failure};
use super::telemetry::{Outcome, Transport};
use crate::Signal;
use crate::otlp::{self, Ingested};

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    let otlp = axum::Router::new()
        .route(
            "/v1/traces",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| export(s, Signal::Spans, h, b)),
        )
        .route(
            "/v1/logs",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| export(s, Signal::Logs, h, b)),
        )
        .route(
            "/v1/metrics",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| export(s, Signal::Metrics, h, b)),
        )
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready));
    let app = match &shared.opts.ui {
        // The UI's `/metrics` page answers non-HTML requests with the exposition.
        Some(ui) => {
            let s = shared.clone();
            let prometheus: Arc<dyn Fn() -> String + Send + Sync> =
                Arc::new(move || s.counters.prometheus(&s.db));
            otlp.with_state(shared.clone()).merge(crate::ui::routes(
                shared.db.clone(),
                ui.clone(),
                Some(prometheus),
            ))
        }
        None => otlp
            .route("/metrics", get(metrics))
            .with_state(shared.clone()),
    };
    let app = match &shared.opts.mcp {
        Some(opts) => app.nest_service(
            "/mcp",
            crate::mcp::server::http_service(
                crate::mcp::Tools::new(shared.db.clone(), opts.clone()),
                shared.mcp_stop.child_token(),
            ),
        ),
        None => app,
    };
    app.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        super::auth::http,
    ))
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    match shared.not_ready() {
        None => "ready\n".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.counters.prometheus(&shared.db),
    )
        .into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// Over the limit.
    TooLarge,
    /// The in-flight budget is spent.
    Busy,
    /// The connection failed.
    Read(String),
}

/// Reads a body of at most `limit` bytes, holding budget permits for every byte read
/// (released when the returned permit drops).
pub(crate) async fn read_limited(
    shared: &Shared,
    mut body: Body,
    limit: usize,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let mut buf = Vec::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        take_budget(shared, &mut permit, chunk.len())?;
        buf.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(buf), permit))
}

/// Adds `n` bytes of budget to `permit`, without waiting.
fn take_budget(
    shared: &Shared,
    permit: &mut Option<OwnedSemaphorePermit>,
    n: usize,
) -> Result<(), BodyError> {
    if n == 0 {
        return Ok(());
    }
    let n = u32::try_from(n).map_err(|_| BodyError::TooLarge)?;
    let more = shared
        .budget
        .clone()
        .try_acquire_many_owned(n)
        .map_err(|_| BodyError::Busy)?;
    match permit {
        Some(p) => p.merge(more),
        None => *permit = Some(more),
    }
    Ok(())
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

async fn export(
    State(shared): State<Arc<Shared>>,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = match media_type(&headers).as_deref() {
        Some("application/x-protobuf") | Some("application/protobuf") => Encoding::Protobuf,
        Some("application/json") => Encoding::Json,
        other => {
            shared
                .counters
                .request(Transport::Http, Some(signal), Outcome::Unsupported);
            let msg = format!(
                "unsupported content type {}: OTLP/HTTP takes application/x-protobuf or \
                 application/json",
                other.map_or("(none)".to_string(), |t| format!("{t:?}"))
            );
            return status(Encoding::Protobuf, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg);
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("identity") | Some("") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            shared
                .counters
                .request(Transport::Http, Some(signal), Outcome::Unsupported);
            let msg = format!("unsupported content encoding {other:?}: use gzip or none");
            return status(encoding, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg);
        }
    };
    match export_body(&shared, signal, encoding, gzip, &headers, body).await {
        Ok(ingested) => {
            let body = response_body(encoding, &ingested);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type(encoding))],
                body,
            )
                .into_response()
        }
        Err(f) => {
            let code = match f.outcome {
                Outcome::BadRequest => StatusCode::BAD_REQUEST,
                Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                Outcome::RetryLater => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut r = status(encoding, code, &f.message);
            if code == StatusCode::SERVICE_UNAVAILABLE {
                let secs = shared.opts.retry_after.as_secs().max(1);
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            r
        }
    }
}

async fn export_body(
    shared: &Arc<Shared>,
    signal: Signal,
    encoding: Encoding,
    gzip: bool,
    headers: &HeaderMap,
    body: Body,
) -> Result<Ingested, Failure> {
    let count = |outcome| {
        shared
            .counters
            .request(Transport::Http, Some(signal), outcome)
    };
    let max = shared.opts.max_request_bytes;
    let too_large = |what: &str| {
        Failure::new(
            Outcome::TooLarge,
            format!("request body {what} is larger than the receiver's limit of {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        count(Outcome::TooLarge);
        return Err(too_large("(Content-Length)"));
    }
    if let Some(why) = shared.not_ready() {
        count(Outcome::RetryLater);
        return Err(Failure::new(Outcome::RetryLater, why));
    }
    let (raw, mut permit) = match read_limited(shared, body, max).await {
        Ok(ok) => ok,
        Err(e) => {
            let f = body_failure(e, || too_large(""));
            count(f.outcome);
            return Err(f);
        }
    };
    shared.counters.bytes(Transport::Http, raw.len());
    // Decoding multiplies the request's size: at most `ingest_concurrency` at once.
    let Ok(_slot) = shared.slots.acquire().await else {
        count(Outcome::RetryLater);
        return Err(Failure::new(
            Outcome::RetryLater,
            "the receiver is stopping",
        ));
    };
    let bytes = if gzip {
        match gunzip(shared, &raw, max, &mut permit) {
            Ok(b) => b,
            Err(f) => {
                count(f.outcome);
                return Err(f);
            }
        }
    } else {
        raw
    };
    let decoded = match encoding {
        Encoding::Protobuf => otlp::decode_protobuf(&bytes, Some(signal)),
        Encoding::Json => otlp::decode_json(&bytes),
    };
    let request = match decoded {
        Ok(r) if r.signal() == signal => r,
        Ok(r) => {
            count(Outcome::BadRequest);
            return Err(Failure::new(
                Outcome::BadRequest,
                format!(
                    "the body is an OTLP {} request, but this endpoint takes {signal}",
                    r.signal()
                ),
            ));
        }
        Err(e) => {
            count(Outcome::BadRequest);
            return Err(Failure::new(Outcome::BadRequest, e.to_string()));
        }
    };
    drop(bytes);
    let result = receiver::ingest(shared, Transport::Http, request).await;
    drop(permit);
    result
}

fn body_failure(e: BodyError, too_large: impl FnOnce() -> Failure) -> Failure {
    match e {
        BodyError::TooLarge => too_large(),
        BodyError::Busy => Failure::new(
            Outcome::RetryLater,
            "the receiver holds its limit of request bytes in flight: retry later",
        ),
        BodyError::Read(e) => Failure::new(
            Outcome::BadRequest,
            format!("could not read the request body: {e}"),
        ),
    }
}

/// Decompresses a gzip body, refusing (413) more than `max` bytes of output — a small
/// "gzip bomb" body costs at most `max` bytes — and holding budget for what it inflates.
fn gunzip(
    shared: &Shared,
    raw: &[u8],
    max: usize,
    permit: &mut Option<OwnedSemaphorePermit>,
) -> Result<Bytes, Failure> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(raw);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = decoder.read(&mut chunk).map_err(|e| {
            Failure::new(
                Outcome::BadRequest,
                format!("the body is not valid gzip: {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        if out.len() + n > max {
            return Err(Failure::new(
                Outcome::TooLarge,
                format!(
                    "request body is larger than the receiver's limit of {max} bytes once \
                     decompressed"
                ),
            ));
        }
        take_budget(shared, permit, n).map_err(|e| body_failure(e, || unreachable_large(max)))?;
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(Bytes::from(out))
}

fn unreachable_large(max: usize) -> Failure {
    Failure::new(
        Outcome::TooLarge,
        format!("request body is larger than the receiver's limit of {max} bytes"),
    )
}

fn content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    }
}

/// The `Export*ServiceResponse` of a stored request, in the request's encoding.
fn response_body(encoding: Encoding, i: &Ingested) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1 as l;
    use opentelemetry_proto::tonic::collector::metrics::v1 as m;
    use opentelemetry_proto::tonic::collector::trace::v1 as t;
    let partial = i.rejected > 0;
    let message = if partial {
        receiver::partial_message(i)
    } else {
        String::new()
    };
    let rejected = i.rejected as i64;
    match encoding {
        Encoding::Protobuf => match i.signal {
            Signal::Spans => t::ExportTraceServiceResponse {
                partial_success: partial.then_some(t::ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
            Signal::Logs => l::ExportLogsServiceResponse {
                partial_success: partial.then_some(l::ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => m::ExportMetricsServiceResponse {
                partial_success: partial.then_some(m::ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
        },
        Encoding::Json => {
            if !partial {
                return b"{}".to_vec();
            }
            let field = match i.signal {
                Signal::Spans => "rejectedSpans",
                Signal::Logs => "rejectedLogRecords",
                Signal::Metrics => "rejectedDataPoints",
            };
            // int64 is a string in proto3's JSON mapping.
            format!(
                "{{\"partialSuccess\":{{\"{field}\":\"{rejected}\",\"errorMessage\":{}}}}}",
                json_string(&message)
            )
            .into_bytes()
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An error response: the HTTP status and a `google.rpc.Status` in the request's encoding.
fn status(encoding: Encoding, code: StatusCode, message: &str) -> Response {
    // The gRPC code that matches each HTTP status.
    let rpc_code = match code {
        StatusCode::BAD_REQUEST => 3,            // INVALID_ARGUMENT
        StatusCode::UNAUTHORIZED => 16,          // UNAUTHENTICATED
        StatusCode::PAYLOAD_TOO_LARGE => 8,      // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,   // UNAVAILABLE
        StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        _ => 13,                                 // INTERNAL
    };
    let body = match encoding {
        Encoding::Protobuf => RpcStatus {
            code: rpc_code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Encoding::Json => format!(
            "{{\"code\":{rpc_code},\"message\":{}}}",
            json_string(message)
        )
        .into_bytes(),
    };
    (code, [(header::CONTENT_TYPE, content_type(encoding))], body).into_response()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
