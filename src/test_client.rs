//! [`TestClient`]: send requests to an app and its stack in-process, no socket needed.

use std::convert::Infallible;
use std::fmt;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

use crate::{Request, Response};

/// An in-process client for tests, like Starlette's `TestClient`.
///
/// ```
/// use callnext::{Stack, TestClient};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
/// let client = TestClient::new(Stack::new().service(app));
/// let res = client.get("/").await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.text(), "hello");
/// assert_eq!(client.get("/nope").await.text(), r#"{"detail":"Not Found"}"#);
/// # });
/// ```
#[derive(Clone)]
pub struct TestClient<S> {
    service: S,
}

impl<S> fmt::Debug for TestClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

impl<S> TestClient<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send,
    S::Future: Send,
{
    /// A client for `service` (a [`StackService`](crate::StackService), a `Router`, …).
    pub fn new(service: S) -> Self {
        Self { service }
    }

    /// Sends `req` and buffers the whole response.
    pub async fn request(&self, req: Request) -> TestResponse {
        let res = match self.service.clone().oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_else(|err| panic!("response body failed: {err}"));
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            extensions: parts.extensions,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None, Body::empty()).await
    }

    /// `POST path` with a JSON body (sent as given, so invalid JSON can be tested).
    pub async fn post_json(&self, path: &str, json: impl Into<String>) -> TestResponse {
        self.send(
            Method::POST,
            path,
            Some("application/json"),
            Body::from(json.into()),
        )
        .await
    }

    /// `method path` with an optional content type and a body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> TestResponse {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(body)
            .unwrap_or_else(|err| panic!("invalid test request for {path}: {err}"));
        self.request(req).await
    }
}

/// A buffered response from [`TestClient`].
#[derive(Debug)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    extensions: http::Extensions,
    body: Bytes,
}

impl TestResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as text (the first value), if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The response extensions (typed values handlers and middlewares attached).
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// The body bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON: the test fails with the body in the message.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.text()))
    }
}
