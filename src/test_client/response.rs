//! What a [`TestClient`](super::TestClient) gives back: a buffered [`TestResponse`], or a
//! [`TestStream`] read as it arrives.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A response from [`TestRequest::stream`], its body read as it arrives.
///
/// ```
/// use callnext::{Stack, TestClient};
/// use axum::{response::sse::{Event, Sse}, routing::get, Router};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // An endless event stream.
/// let app = Router::new().route("/events", get(|| async {
///     let events = futures_util::stream::repeat_with(|| Ok::<_, std::convert::Infallible>(Event::default().data("tick")));
///     Sse::new(events)
/// }));
/// let client = TestClient::new(Stack::new().service(app));
/// let mut stream = client.get("/events").stream().await;
/// assert_eq!(stream.header("content-type"), Some("text/event-stream"));
/// assert_eq!(stream.next_chunk().await.unwrap(), "data: tick\n\n");
/// assert_eq!(stream.next_chunk().await.unwrap(), "data: tick\n\n");
/// # });
/// ```
#[derive(Debug)]
pub struct TestStream {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Body,
}

impl TestStream {
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

    /// The next chunk of the body; `None` once it ended. Trailers are skipped.
    ///
    /// # Panics
    ///
    /// When the body fails: the test fails with the error.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.unwrap_or_else(|err| panic!("response body failed: {err}"));
            if let Ok(data) = frame.into_data() {
                return Some(data);
            }
        }
        None
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
    pub(super) async fn buffer(res: Response) -> Self {
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_else(|err| panic!("response body failed: {err}"));
        Self {
            status: parts.status,
            headers: parts.headers,
            extensions: parts.extensions,
            body,
        }
    }

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

    /// The body as JSON, into `T` (`serde_json::Value` for any JSON).
    ///
    /// # Panics
    ///
    /// When the body is not JSON of that shape: the test fails with the body in the message.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not the expected JSON ({err}): {}", self.text()))
    }
}
