//! The HTTP(S) client of the batteries (JWKS fetches, the external auth service, the access
//! log's HTTP sink):
//! hyper-util's pooled client over rustls (ring, the webpki roots), with a deadline on the
//! whole exchange and a cap on the body it reads.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why an exchange gave no response.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// No complete response within the deadline.
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    Failed(String),
    /// The body was longer than allowed.
    TooLarge(usize),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(t) => write!(f, "no response within {} ms", t.as_millis()),
            Self::Failed(e) => f.write_str(e),
            Self::TooLarge(max) => write!(f, "response body over {max} bytes"),
        }
    }
}

/// A cloneable client (clones share the connection pool).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client whose connections are made within `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            // ring's provider supports the default protocol versions; this cannot fail.
            .expect("ring supports TLS 1.2 and 1.3")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(https);
        Self { client }
    }

    /// Sends `req` and reads the response, all within `deadline`; a body over `max_body`
    /// bytes is an error.
    pub(crate) async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        deadline: Duration,
        max_body: usize,
    ) -> Result<http::Response<Bytes>, FetchError> {
        let exchange = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchError::Failed(error_chain(&e)))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(max_body)
                    } else {
                        FetchError::Failed(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or(Err(FetchError::Timeout(deadline)))
    }
}

/// `url` as an absolute `http://` or `https://` URI with a host; otherwise the error of the
/// setting `key`.
pub(crate) fn http_url(key: &'static str, url: &str) -> Result<http::Uri, crate::ConfigError> {
    url.parse::<http::Uri>()
        .ok()
        .filter(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
        })
        .ok_or_else(|| {
            crate::ConfigError::invalid(
                key,
                format!(
                    "expected an http:// or https:// URL, got `{}`",
                    crate::Printable::new(url)
                ),
            )
        })
}

/// An error and its sources on one line (hyper-util's own message is only "client error").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
