//! Reading and rewriting bodies inside a middleware.
//!
//! [`read_body`] buffers the request body (up to a limit) and leaves it in place, so the handler
//! still receives it. [`transform_response_body`] rewrites a buffered response body and fixes
//! `Content-Length`; streams (server-sent events, chunked bodies of unknown length) pass
//! through untouched.

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderValue};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{HttpError, Request, Response};

/// Reads the whole request body, at most `limit` bytes, and puts it back for the handler.
///
/// Returns the bytes (a cheap, reference-counted copy). A body larger than `limit` gives
/// [`HttpError::payload_too_large`] (413); a body that fails to arrive gives a 400. A declared
/// `Content-Length` above the limit is refused before anything is read.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use callnext::{body::read_body, Request};
///
/// let mut req = Request::new("hello".into());
/// let bytes = read_body(&mut req, 1024).await.unwrap();
/// assert_eq!(&bytes[..], b"hello");
/// // The body is still there for whoever comes next.
/// let again = read_body(&mut req, 1024).await.unwrap();
/// assert_eq!(&again[..], b"hello");
///
/// let mut big = Request::new(vec![0u8; 2048].into());
/// let err = read_body(&mut big, 1024).await.unwrap_err();
/// assert_eq!(err.status(), 413);
/// # });
/// ```
pub async fn read_body(req: &mut Request, limit: usize) -> Result<Bytes, HttpError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(HttpError::payload_too_large());
    }
    let body = std::mem::take(req.body_mut());
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => return Err(HttpError::payload_too_large()),
        Err(err) => {
            if let Some(raised) = raised(&*err) {
                return Err(raised.clone());
            }
            tracing::debug!(error = %err, "failed to read request body");
            return Err(HttpError::bad_request("Failed to read request body"));
        }
    };
    *req.body_mut() = Body::from(bytes.clone());
    Ok(bytes)
}

/// The [`HttpError`] a request body's stream yielded (a middleware that wraps the body can end
/// it with one), found anywhere in the error's source chain.
/// The whole body, if all of it is there now (a buffered body always is, and so is what an
/// encoder makes of one); a body that would have to wait, or fails, is left as it was, what was
/// read put back in front of the rest. Trailers are not kept.
pub(crate) fn ready_bytes(body: &mut Body) -> Option<Bytes> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut bytes = bytes::BytesMut::new();
    loop {
        match std::pin::Pin::new(&mut *body).poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            std::task::Poll::Ready(None) => return Some(bytes.freeze()),
            std::task::Poll::Pending | std::task::Poll::Ready(Some(Err(_))) => {
                let rest = std::mem::take(body);
                let read = futures_util::stream::once(std::future::ready(Ok::<_, axum::Error>(
                    bytes.freeze(),
                )));
                *body = Body::from_stream(futures_util::StreamExt::chain(
                    read,
                    rest.into_data_stream(),
                ));
                return None;
            }
        }
    }
}

pub(crate) fn raised<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e HttpError> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(raised) = err.downcast_ref::<HttpError>() {
            return Some(raised);
        }
        current = err.source();
    }
    None
}

/// Buffers a response body of known size up to `limit` bytes, passes it to `f`, and returns the
/// response with the rewritten body and a correct `Content-Length`.
///
/// The response is returned unchanged when it is a stream (`text/event-stream`, or a body whose
/// length is not known in advance) or larger than `limit`: a transform never stalls a stream
/// or buffers without bound.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use callnext::{body::transform_response_body, Response};
/// use http_body_util::BodyExt;
///
/// let res = Response::new("hello".into());
/// let res = transform_response_body(res, 1024, |b| b.to_ascii_uppercase().into()).await;
/// assert_eq!(res.headers()["content-length"], "5");
/// let body = res.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(&body[..], b"HELLO");
/// # });
/// ```
pub async fn transform_response_body<F>(res: Response, limit: usize, f: F) -> Response
where
    F: FnOnce(Bytes) -> Bytes,
{
    if is_stream(&res) {
        return res;
    }
    match res.body().size_hint().exact() {
        Some(len) if len <= limit as u64 => {}
        _ => return res,
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::warn!(error = %err, "response body failed while buffering it for a transform");
            return axum::response::IntoResponse::into_response(HttpError::internal());
        }
    };
    let bytes = f(bytes);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, Body::from(bytes))
}

fn is_stream(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

pin_project_lite::pin_project! {
    /// A body that keeps `T` alive until it is dropped (a connection's in-flight count): the
    /// request is still being answered while its body streams. Batteries use
    /// [`observe`](crate::battery::observe) instead, which shares one wrapper.
    pub(crate) struct Holding<T> {
        #[pin]
        body: Body,
        held: T,
    }
}

impl<T> Holding<T> {
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn new(body: Body, held: T) -> Self {
        Self { body, held }
    }
}

impl<T> http_body::Body for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
