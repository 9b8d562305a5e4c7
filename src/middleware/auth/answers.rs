//! What a request presents, and the answers auth gives: 401, 403 and 503 in callnext's
//! error shape, with their `WWW-Authenticate`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The credential a request presents, if any: a bearer token or an `X-API-Key`.
pub(super) fn credential(req: &Request) -> Option<Result<&str, ()>> {
    let headers = req.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| ());
        return Some(text.and_then(|t| {
            let (scheme, token) = t.split_once(' ').ok_or(())?;
            if scheme.eq_ignore_ascii_case("bearer") {
                Ok(token.trim())
            } else {
                Err(())
            }
        }));
    }
    headers
        .get("x-api-key")
        .map(|v| v.to_str().map(str::trim).map_err(|_| ()))
}

/// 401: no credentials (`None`) or bad ones.
pub(super) fn unauthorized(invalid: Option<&str>) -> HttpError {
    let (detail, value) = match invalid {
        None => ("Not authenticated", "Bearer".to_owned()),
        Some(detail) => (detail, "Bearer error=\"invalid_token\"".to_owned()),
    };
    HttpError::new(StatusCode::UNAUTHORIZED, detail).with_header("www-authenticate", &value)
}

pub(super) fn forbidden(scopes: &[String]) -> HttpError {
    let value = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\"",
        scopes.join(" ")
    );
    HttpError::new(StatusCode::FORBIDDEN, "Not enough permissions")
        .with_header("www-authenticate", &value)
}

/// 503: what decides is down.
pub(super) fn unavailable(what: &str, err: &dyn std::fmt::Display) -> HttpError {
    tracing::error!(error = %err, "{what} failed; answered 503");
    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        .with_header("retry-after", "1")
}

/// Whether `token` has a JWT's shape (three base64url parts); the JWT checker decides the rest.
#[cfg(feature = "jwt")]
pub(super) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The flow of a decided request: on with its identity, or the error's answer.
pub(super) fn flow(result: Result<Identity, HttpError>) -> Flow<'static, Option<Identity>> {
    match result {
        Ok(identity) => Flow::Continue(Some(identity)),
        Err(err) => Flow::respond(err),
    }
}
