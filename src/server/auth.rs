//! What every request passes before its handler: the bearer token, and for gRPC the body
//! budget and pushback (OTLP/HTTP handlers apply those themselves, after checking the
//! content type).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::Shared;
use super::telemetry::{Outcome, Transport};

/// Whether `req` carries the configured token (always true without one).
pub(crate) fn authorized(shared: &Shared, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = &shared.opts.token else {
        return true;
    };
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    // Compared in time independent of where the first difference is.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// HTTP port: every route but `GET /health` needs the token.
pub(crate) async fn http(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if req.uri().path() != "/health" && !authorized(&shared, req.headers()) {
        shared
            .counters
            .request(Transport::Http, None, Outcome::Unauthenticated);
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token (Authorization: Bearer <token>)\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// gRPC port: token, pushback, then the body is read within the size limit and the
/// in-flight budget (tonic would buffer the one unary message anyway), so a flood is
/// answered `UNAVAILABLE` instead of being held in memory.
pub(crate) async fn grpc(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let signal = super::receiver::grpc_signal(req.uri().path());
    if !authorized(&shared, req.headers()) {
        shared
            .counters
            .request(Transport::Grpc, signal, Outcome::Unauthenticated);
        return tonic::Status::unauthenticated(
            "missing or wrong bearer token (metadata authorization: Bearer <token>)",
        )
        .into_http();
    }
    if let Some(why) = shared.not_ready() {
        shared
            .counters
            .request(Transport::Grpc, signal, Outcome::RetryLater);
        return tonic::Status::unavailable(why).into_http();
    }
    let (parts, body) = req.into_parts();
    // A gRPC message is framed with 5 bytes; allow a little for more than one frame.
    let limit = shared.opts.max_request_bytes + 64;
    let read = super::http::read_limited(&shared, body, limit).await;
    let (bytes, _permit) = match read {
        Ok(ok) => ok,
        Err(super::http::BodyError::TooLarge) => {
            shared
                .counters
                .request(Transport::Grpc, signal, Outcome::TooLarge);
            return tonic::Status::resource_exhausted(format!(
                "request message is larger than the receiver's limit of {} bytes",
                shared.opts.max_request_bytes
            ))
            .into_http();
        }
        Err(super::http::BodyError::Busy) => {
            shared
                .counters
                .request(Transport::Grpc, signal, Outcome::RetryLater);
            return tonic::Status::unavailable(
                "the receiver holds its limit of request bytes in flight: retry later",
            )
            .into_http();
        }
        Err(super::http::BodyError::Read(e)) => {
            shared
                .counters
                .request(Transport::Grpc, signal, Outcome::BadRequest);
            return tonic::Status::invalid_argument(format!("could not read the request: {e}"))
                .into_http();
        }
    };
    shared.counters.bytes(Transport::Grpc, bytes.len());
    let body = Body::new(http_body_util::Full::new(bytes).map_err(|never| match never {}));
    // tonic decodes the message in `next`: take a slot first (see ingest_concurrency).
    let Ok(_slot) = shared.slots.acquire().await else {
        return tonic::Status::unavailable("the receiver is stopping").into_http();
    };
    next.run(Request::from_parts(parts, body)).await
}
