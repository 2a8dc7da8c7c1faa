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

/// Whether `headers` carry the configured token as `Authorization: Bearer` (always true
/// without one). OTLP (both transports) takes only the header, never the UI's cookie.
pub(crate) fn authorized(shared: &Shared, headers: &axum::http::HeaderMap) -> bool {
    token_matches(shared.opts.token.as_deref(), headers, false)
}

/// Whether `headers` carry `token` (always true for `None`): as `Authorization: Bearer`,
/// or, when `take_cookie` (the web UI's routes), as the `scry_token` cookie a browser got by
/// opening a page with `?token=`.
pub(crate) fn token_matches(
    token: Option<&str>,
    headers: &axum::http::HeaderMap,
    take_cookie: bool,
) -> bool {
    let Some(token) = token else {
        return true;
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let cookie = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(crate::ui::decode)
        });
    bearer.is_some_and(|g| same(g, token))
        || (take_cookie && cookie.is_some_and(|g| same(&g, token)))
}

/// The cookie that carries the token for a browser.
const COOKIE: &str = "scry_token";

/// Compared in time independent of where the first difference is.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A browser opening `GET <page>?token=<token>` (the right one) is sent to the page
/// without it, with the token in an HTTP-only cookie, so that links work from then on.
fn browser_login(token: Option<&str>, req: &Request) -> Option<Response> {
    let token = token?;
    if req.method() != axum::http::Method::GET {
        return None;
    }
    let query = req.uri().query()?;
    let given = query
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .map(crate::ui::decode)?;
    if !same(&given, token) {
        return None;
    }
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("token="))
        .collect();
    // One leading slash: `//host/` would send the browser to another site.
    let mut to = format!("/{}", req.uri().path().trim_start_matches(['/', '\\']));
    if !rest.is_empty() {
        to.push('?');
        to.push_str(&rest.join("&"));
    }
    Some(
        (
            axum::http::StatusCode::SEE_OTHER,
            [
                (axum::http::header::LOCATION, to),
                (
                    axum::http::header::SET_COOKIE,
                    // Percent-encoded: a token may hold characters a cookie cannot.
                    format!(
                        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                        crate::ui::encode(token)
                    ),
                ),
            ],
        )
            .into_response(),
    )
}

fn unauthorized() -> Response {
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        "missing or wrong bearer token (Authorization: Bearer <token>; in a browser, open \
         any page once with ?token=<token>)\n",
    )
        .into_response()
}

/// Whether `path` is one of the web UI's (not OTLP, health, readiness or the exposition).
fn is_ui(path: &str) -> bool {
    !(path.starts_with("/v1/") || matches!(path, "/health" | "/ready" | "/metrics"))
}

/// Whether the request names a loopback host (`localhost`, `127.x.y.z`, `[::1]`) or none.
fn loopback_host(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return true;
    };
    let name = if host.starts_with('[') {
        host.split(']').next().map_or(host, |h| &h[1..])
    } else {
        host.split(':').next().unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Without a token, the UI's pages answer only requests naming a loopback host: a web page
/// elsewhere cannot read them through a DNS name rebound to 127.0.0.1.
fn rebinding_refused(token: Option<&str>, req: &Request) -> Option<Response> {
    if token.is_some() || !is_ui(req.uri().path()) || loopback_host(req.headers()) {
        return None;
    }
    Some(
        (
            axum::http::StatusCode::FORBIDDEN,
            "without a token the web UI and MCP answer only requests for localhost, \
             127.0.0.1 or [::1]; serve with a token (--token) to reach them from elsewhere\n",
        )
            .into_response(),
    )
}

/// HTTP port: every route but `GET /health` needs the token (the UI's also as a cookie).
pub(crate) async fn http(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let token = shared.opts.token.as_deref();
    if let Some(login) = browser_login(token, &req) {
        return login;
    }
    if let Some(refused) = rebinding_refused(token, &req) {
        return refused;
    }
    let path = req.uri().path();
    // MCP clients send the header; the browser's cookie is for the UI's pages only.
    let take_cookie = is_ui(path) && !path.starts_with("/mcp");
    if path != "/health" && !token_matches(token, req.headers(), take_cookie) {
        shared
            .counters
            .request(Transport::Http, None, Outcome::Unauthenticated);
        return unauthorized();
    }
    next.run(req).await
}

/// `scry ui`'s port: the same rules as the HTTP port's, without the receiver's counters.
pub(crate) async fn ui(token: Option<Arc<str>>, req: Request, next: Next) -> Response {
    let token = token.as_deref();
    if let Some(login) = browser_login(token, &req) {
        return login;
    }
    if let Some(refused) = rebinding_refused(token, &req) {
        return refused;
    }
    if req.uri().path() != "/health" && !token_matches(token, req.headers(), true) {
        return unauthorized();
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
