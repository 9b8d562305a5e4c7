//! The page's routes: the HTML, the JSON API and the event stream, each behind the page's
//! access rule, each with headers that keep it out of caches and frames.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Request;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::LivePage;
use crate::{ClientIp, HttpError};

/// How often a viewer is sent a snapshot.
const EVERY: Duration = Duration::from_secs(1);
/// A comment line this often keeps proxies from closing a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

const PAGE: &str = include_str!("page.html");

pub(super) fn router<S: Clone + Send + Sync + 'static>(page: LivePage) -> Router<S> {
    let base = page.path().to_owned();
    let with = |page: &LivePage, f: fn(LivePage, Request) -> Response| {
        let page = page.clone();
        move |req: Request| {
            let page = page.clone();
            async move {
                let mut res = match page.allowed(&req) {
                    Ok(()) => f(page, req),
                    Err(denied) => *denied,
                };
                guard_headers(res.headers_mut());
                res
            }
        }
    };
    Router::new()
        .route(&format!("{base}/"), get(with(&page, html)))
        .route(&base, get(with(&page, html)))
        .route(&format!("{base}/api/stack"), get(with(&page, stack)))
        .route(&format!("{base}/api/requests"), get(with(&page, requests)))
        .route(&format!("{base}/api/events"), get(with(&page, events)))
}

impl LivePage {
    /// Whether `req` may see the page: see the [module docs](super).
    fn allowed(&self, req: &Request) -> Result<(), Box<Response>> {
        let settings = &self.inner.settings;
        if let Some(token) = &settings.token {
            return match credential(req.headers()) {
                // Digests compared, so the comparison takes as long whatever the length.
                Some(given)
                    if bool::from(
                        Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(token.as_bytes())),
                    ) =>
                {
                    Ok(())
                }
                Some(_) => Err(Box::new(denied(StatusCode::FORBIDDEN, "Forbidden"))),
                None if wants_html(req.headers()) => {
                    let mut res = denied(StatusCode::UNAUTHORIZED, "Not authenticated");
                    res.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(
                            r#"Basic realm="callnext live page", charset="UTF-8""#,
                        ),
                    );
                    Err(Box::new(res))
                }
                None => Err(Box::new(denied(StatusCode::FORBIDDEN, "Forbidden"))),
            };
        }
        if settings.open {
            return Ok(());
        }
        // Loopback, and asked for by a loopback name: a page of another site open in the
        // operator's browser cannot read it (a DNS name rebound to 127.0.0.1 keeps its own
        // name in `Host`; a cross-site fetch says so in `Sec-Fetch-Site`). A request that
        // carries forwarding headers without a trusted proxy having resolved them came
        // through a proxy on this host: it is not the operator's own.
        if ClientIp::of(req).is_some_and(|ip| ip.0.is_loopback())
            && loopback_authority(req)
            && !cross_site(req.headers())
            && !forwarded_unresolved(req)
        {
            return Ok(());
        }
        tracing::debug!(client = ?ClientIp::of(req), "live page refused to a client that is not loopback");
        Err(Box::new(denied(StatusCode::NOT_FOUND, "Not Found")))
    }
}

/// Whether the request's effective authority (RFC 9110 §7.2) names this machine's loopback:
/// every authority it names ([`authorities`](crate::battery::authorities): the target's, as an
/// absolute-form target or HTTP/2's `:authority`, and every `Host` field) must. A request with
/// none (HTTP/1.0) passes.
fn loopback_authority(req: &Request) -> bool {
    crate::battery::authorities(req).all(loopback_name)
}

/// Forwarding headers a trusted proxy did not resolve (no [`ClientIp`] was set from them).
fn forwarded_unresolved(req: &Request) -> bool {
    let headers = req.headers();
    (headers.contains_key("x-forwarded-for")
        || headers.contains_key(header::FORWARDED)
        || headers.contains_key("x-real-ip"))
        && req.extensions().get::<ClientIp>().is_none()
}

/// Whether an authority names this machine's loopback: `localhost`, `127.x.x.x`, `[::1]`,
/// with any port, and no userinfo (`127.0.0.1:80@evil.example` names `evil.example`), read as
/// every battery reads a host ([`host_of`](crate::battery::host_of)).
fn loopback_name(authority: &str) -> bool {
    crate::battery::host_of(authority).is_some_and(|name| {
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// A browser's request made by a page of another site.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

fn denied(status: StatusCode, detail: &'static str) -> Response {
    HttpError::new(status, detail).into_response()
}

/// The token a request bears: `Bearer <token>`, or the password of `Basic <user:token>`.
fn credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_owned());
    }
    None
}

/// A browser's page load (it can answer a Basic challenge; a script gets a plain 403).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// Headers on every answer under the page's path, the refusals included.
fn guard_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        http::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn html(page: LivePage, _req: Request) -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let body = PAGE
        .replace("{{nonce}}", &nonce)
        .replace("{{base}}", &html_escape(page.path()));
    let mut res = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    if let Ok(csp) = HeaderValue::try_from(csp) {
        res.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    res
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn json_response(body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

fn stack(page: LivePage, _req: Request) -> Response {
    let (_, json) = page.snapshot(true);
    json_response(json.to_string())
}

fn requests(page: LivePage, _req: Request) -> Response {
    json_response(page.requests().to_string())
}

/// Snapshots about once a second. A viewer that reads slowly is polled less: the interval
/// skips the ticks it missed, so snapshots are dropped for it, never queued, and nothing waits
/// on it but its own stream. `Last-Event-ID` (a reconnecting `EventSource` sends it) names
/// the last snapshot seen: the next one sent is newer. Snapshots are whole, so a viewer that
/// resumes has missed nothing that the next one does not show; the blocking events in each
/// carry their own numbers.
fn events(page: LivePage, req: Request) -> Response {
    let seen: Option<u64> = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // An id from before a restart (numbers start again at 1) would hold the stream back.
    let seen = seen.filter(|&seen| seen <= page.latest_seq());
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stream = futures_util::stream::unfold(
        (page, interval, seen),
        |(page, mut interval, mut seen)| async move {
            loop {
                interval.tick().await;
                let (seq, json) = page.snapshot(false);
                if seen.is_some_and(|seen| seen >= seq) {
                    continue;
                }
                seen = Some(seq);
                let event = Event::default()
                    .event("snapshot")
                    .id(seq.to_string())
                    .retry(EVERY * 2)
                    .data(&*json);
                return Some((Ok::<_, Infallible>(event), (page, interval, seen)));
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        let host = loopback_name;
        for ok in [
            "localhost",
            "localhost:8000",
            "127.0.0.1:8000",
            "127.1.2.3",
            "[::1]:9",
            "[::1]",
        ] {
            assert!(host(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:8000",
            "10.0.0.1:80",
            "localhost.evil.example",
            "127.0.0.1:80@evil.example",
            "user@127.0.0.1",
        ] {
            assert!(!host(no), "{no}");
        }
    }

    #[test]
    fn credentials_from_bearer_and_basic() {
        let mut headers = HeaderMap::new();
        assert_eq!(credential(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(credential(&headers).as_deref(), Some("abc"));
        // base64("viewer:s3cret")
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dmlld2VyOnMzY3JldA=="),
        );
        assert_eq!(credential(&headers).as_deref(), Some("s3cret"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert_eq!(credential(&headers), None);
    }
}
