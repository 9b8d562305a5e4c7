//! An external auth service (nginx's `auth_request`, Traefik's ForwardAuth): its settings
//! ([`ExternalAuth`]) and the checker that asks it, through a bounded cache of decisions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};

use super::Principal;
use crate::http_client::HttpClient;
use crate::{ClientIp, ConfigError, Request};

/// The largest answer read from the service (its body is not used).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How [`Auth`](super::Auth) asks an external service: for each request it does not decide
/// itself, a sub-request with the original method to `url`, carrying the chosen headers of
/// the original request and `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host` and
/// `X-Forwarded-For`, without the body.
///
/// - A 2xx answer lets the request in: its identity is the answer's `X-Auth-User` (the
///   subject) and `X-Auth-Scopes` (space-separated), and the headers named by
///   [`copy_headers`](Self::copy_headers) are copied from the answer onto the request (a
///   client's own values of those headers are removed first, so they cannot be forged).
/// - 401 and 403 are passed on (with the service's `WWW-Authenticate`).
/// - Any other answer, no answer within `timeout` (1 s by default) or a failed connection:
///   503 with `Retry-After`, never a 401.
/// - Decisions are cached for `cache_ttl` (5 s by default; zero turns the cache off), keyed
///   by a SHA-256 digest of everything the service is sent (the method, the forwarded headers,
///   the path, the host and the client's address), at most `cache_capacity` (10,000) of them.
/// - The headers the service vouches for (the subject, the scopes and the copied ones) are
///   removed from every request first: a client cannot send its own.
///
/// ```
/// use std::time::Duration;
/// use callnext::middleware::auth::{Auth, ExternalAuth};
///
/// let auth = Auth::builder()
///     .external(
///         ExternalAuth::new("http://127.0.0.1:4180/check")
///             .forward_headers(["authorization", "cookie"])
///             .copy_headers(["x-auth-email"])
///             .timeout(Duration::from_millis(500)),
///     )
///     .build();
/// assert!(auth.is_ok());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ExternalAuth {
    url: String,
    forward: Vec<String>,
    copy: Vec<String>,
    subject_header: String,
    scopes_header: String,
    timeout: Duration,
    cache_ttl: Duration,
    cache_capacity: u64,
}

impl ExternalAuth {
    /// Asks the service at `url` (HTTP or HTTPS). Forwards `Authorization`, `Cookie` and
    /// `X-API-Key` unless told otherwise.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            forward: ["authorization", "cookie", "x-api-key"]
                .map(str::to_owned)
                .to_vec(),
            copy: Vec::new(),
            subject_header: "x-auth-user".to_owned(),
            scopes_header: "x-auth-scopes".to_owned(),
            timeout: Duration::from_secs(1),
            cache_ttl: Duration::from_secs(5),
            cache_capacity: 10_000,
        }
    }

    /// The headers of the original request sent to the service.
    pub fn forward_headers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.forward = names.into_iter().map(Into::into).collect();
        self
    }

    /// Headers of the service's 2xx answer copied onto the request (Traefik's
    /// `authResponseHeaders`), for the application to read.
    pub fn copy_headers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.copy = names.into_iter().map(Into::into).collect();
        self
    }

    /// The answer's headers that name the subject and the scopes. Default to `x-auth-user`
    /// and `x-auth-scopes`.
    pub fn identity_headers(
        mut self,
        subject: impl Into<String>,
        scopes: impl Into<String>,
    ) -> Self {
        self.subject_header = subject.into();
        self.scopes_header = scopes.into();
        self
    }

    /// How long the service has to answer. Defaults to 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a decision is reused; zero asks every time. Defaults to 5 s.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How many decisions the cache holds. Defaults to 10,000.
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    pub(super) fn build(self) -> Result<ExternalChecker, ConfigError> {
        let url = crate::http_client::http_url("external_url", &self.url)?;
        let names = |key: &'static str, list: &[String]| {
            list.iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                        ConfigError::invalid(
                            key,
                            format!("`{}` is not a header name", crate::Printable::new(n)),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let forward = names("external_headers", &self.forward)?;
        let copy = names("external_copy_headers", &self.copy)?;
        let mut identity = names(
            "external_identity_headers",
            &[self.subject_header, self.scopes_header],
        )?
        .into_iter();
        let (subject_header, scopes_header) = (identity.next(), identity.next());
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "external_timeout",
                "must be greater than zero",
            ));
        }
        if !self.cache_ttl.is_zero() && self.cache_capacity == 0 {
            return Err(ConfigError::invalid(
                "external_cache_capacity",
                "must be at least 1 when decisions are cached",
            ));
        }
        Ok(ExternalChecker {
            guard: crate::battery::StoreGuard::new(
                "external auth service",
                &url.to_string(),
                self.timeout,
            ),
            url,
            client: HttpClient::new(self.timeout),
            forward,
            copy,
            subject_header: subject_header.expect("two names were given"),
            scopes_header: scopes_header.expect("two names were given"),
            timeout: self.timeout,
            cache: (!self.cache_ttl.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(self.cache_capacity)
                    .time_to_live(self.cache_ttl)
                    .build()
            }),
        })
    }
}

/// The service's decision.
#[derive(Clone)]
pub(crate) enum Decision {
    /// In, as this identity, with these headers added to the request.
    Allow(Arc<Principal>, Arc<[(HeaderName, HeaderValue)]>),
    /// 401 or 403, with the service's `WWW-Authenticate`.
    Deny(StatusCode, Option<HeaderValue>),
}

pub(crate) struct ExternalChecker {
    /// Every question to the service goes through it (timeout and circuit breaker).
    guard: crate::battery::StoreGuard,
    url: http::Uri,
    client: HttpClient,
    forward: Vec<HeaderName>,
    copy: Vec<HeaderName>,
    subject_header: HeaderName,
    scopes_header: HeaderName,
    timeout: Duration,
    cache: Option<moka::sync::Cache<[u8; 32], Decision>>,
}

impl ExternalChecker {
    /// The headers the service's answer vouches for (the subject, the scopes and the copied
    /// ones): a client must not send them itself, so they are removed from every request.
    pub(crate) fn vouched(&self) -> impl Iterator<Item = &HeaderName> {
        [&self.subject_header, &self.scopes_header]
            .into_iter()
            .chain(&self.copy)
    }

    /// The cache key: a digest of everything the service is sent (its decision can depend on
    /// any of it: the client's address and the host too), so one client's answer is never
    /// replayed to another.
    fn key(&self, req: &Request) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(req.method().as_str());
        for (name, value) in self.sent(req) {
            hash.update([0]);
            hash.update(name.as_str());
            hash.update([1]);
            hash.update(value.as_bytes());
        }
        hash.finalize().into()
    }

    /// A cached decision for `req`, or the cache key to ask with (`None` with no cache): the
    /// digest is made once per request.
    pub(crate) fn cached(&self, req: &Request) -> Result<Decision, Option<[u8; 32]>> {
        let Some(cache) = &self.cache else {
            return Err(None);
        };
        let key = self.key(req);
        cache.get(&key).ok_or(Some(key))
    }

    /// Asks the service about `req`; `Err` when it gave no usable answer. (The request is
    /// read before the future starts: it is not `Sync`, so it cannot be held across a wait.)
    pub(crate) fn ask(
        &self,
        req: &Request,
        key: Option<[u8; 32]>,
    ) -> impl std::future::Future<Output = Result<Decision, String>> + Send + '_ {
        let sub = self.sub_request(req);
        async move {
            let sub = sub?;
            let answer = async {
                let res = self
                    .client
                    .send(sub, self.timeout, MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| e.to_string())?;
                match res.status() {
                    s if s.is_success() => Ok(self.allow(res.headers())),
                    s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Ok(Decision::Deny(
                        s,
                        res.headers().get(http::header::WWW_AUTHENTICATE).cloned(),
                    )),
                    other => Err(format!("the auth service answered {other}")),
                }
            };
            let decision = self
                .guard
                .call("auth", answer)
                .await
                .map_err(|refused| refused.to_string())?;
            if let (Some(cache), Some(key)) = (&self.cache, key) {
                cache.insert(key, decision.clone());
            }
            Ok(decision)
        }
    }

    /// The headers the service is sent about `req`: the forwarded ones, then
    /// `X-Forwarded-Method`, `-Uri`, `-Host` and `-For`.
    fn sent(&self, req: &Request) -> Vec<(HeaderName, HeaderValue)> {
        let mut sent = Vec::with_capacity(self.forward.len() + 4);
        for name in &self.forward {
            for value in req.headers().get_all(name) {
                sent.push((name.clone(), value.clone()));
            }
        }
        sent.push((
            HeaderName::from_static("x-forwarded-method"),
            HeaderValue::from_str(req.method().as_str()).expect("a method is a header value"),
        ));
        if let Some(pq) = req.uri().path_and_query() {
            if let Ok(v) = HeaderValue::from_str(pq.as_str()) {
                sent.push((HeaderName::from_static("x-forwarded-uri"), v));
            }
        }
        if let Some(host) = req.headers().get(http::header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        }) {
            sent.push((HeaderName::from_static("x-forwarded-host"), host));
        }
        if let Some(ClientIp(ip)) = ClientIp::of(req) {
            sent.push((
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(&ip.to_string()).expect("an address is a header value"),
            ));
        }
        sent
    }

    /// The sub-request for `req`: its method, what [`sent`](Self::sent) lists, no body.
    fn sub_request(&self, req: &Request) -> Result<http::Request<Full<Bytes>>, String> {
        let mut sub = http::Request::builder()
            .method(req.method().clone())
            .uri(self.url.clone());
        let headers = sub.headers_mut().expect("the builder has no error yet");
        for (name, value) in self.sent(req) {
            if name.as_str().starts_with("x-forwarded-") {
                headers.insert(name, value);
            } else {
                headers.append(name, value);
            }
        }
        sub.body(Full::new(Bytes::new())).map_err(|e| e.to_string())
    }

    fn allow(&self, headers: &HeaderMap) -> Decision {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let subject = text(&self.subject_header).unwrap_or("").trim().to_owned();
        let scopes = text(&self.scopes_header)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let copied: Vec<_> = self
            .copy
            .iter()
            .flat_map(|name| {
                headers
                    .get_all(name)
                    .iter()
                    .map(move |v| (name.clone(), v.clone()))
            })
            .collect();
        Decision::Allow(
            Arc::new(Principal {
                subject,
                scopes,
                claims: None,
            }),
            copied.into(),
        )
    }
}
