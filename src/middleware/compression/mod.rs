//! [`Compression`]: gzip, brotli and zstd response bodies, by the client's `Accept-Encoding`
//! (q-values honoured), on tower-http's compression.
//!
//! Never on `text/event-stream` (server-sent events must reach the client event by event),
//! images, gRPC, or bodies already encoded; never below a minimum size (1 KB by default,
//! when the size is known); always with `Vary: Accept-Encoding`. A body known in full (up to
//! 1 MB) is compressed at once and sent with its `Content-Length`, as Starlette's GZip does; a
//! streamed body stays streamed: each chunk is compressed and sent as it comes.
//!
//! ```
//! use callnext::middleware::Compression;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = Router::new().route("/", get(|| async { "hello ".repeat(1000) }));
//! let client = TestClient::new(Stack::new().push(Compression::new().entry()).service(app));
//! let res = client.get("/").header("accept-encoding", "gzip;q=0.5, br").await;
//! assert_eq!(res.header("content-encoding"), Some("br"));
//! assert_eq!(res.header("vary"), Some("Accept-Encoding"));
//! // Known in full: compressed at once, sent with its length.
//! assert_eq!(res.header("content-length"), Some(res.bytes().len().to_string().as_str()));
//! assert!(res.bytes().len() < 6000);
//! # });
//! ```
//!
//! gzip only, for anything above 100 bytes:
//!
//! ```
//! use callnext::middleware::Compression;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let compression = Compression::new().min_size(100).unwrap().br(false).zstd(false);
//! let app = Router::new().route("/", get(|| async { "x".repeat(200) }));
//! let client = TestClient::new(Stack::new().push(compression.entry()).service(app));
//! let res = client.get("/").header("accept-encoding", "br, gzip").await;
//! assert_eq!(res.header("content-encoding"), Some("gzip"));
//! # });
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

use crate::{ConfigError, Entry, Response};

/// Compresses responses; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Compression {
    min_size: u16,
    gzip: bool,
    br: bool,
    zstd: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Self::new()
    }
}

impl Compression {
    /// gzip, brotli and zstd, for bodies of 1 KB and more.
    pub fn new() -> Self {
        Self {
            min_size: 1000,
            gzip: true,
            br: true,
            zstd: true,
        }
    }

    /// The smallest body compressed, in bytes (bodies of unknown size are always compressed).
    ///
    /// # Errors
    ///
    /// More than 65,535 bytes.
    pub fn min_size(mut self, bytes: u64) -> Result<Self, ConfigError> {
        self.min_size = u16::try_from(bytes).map_err(|_| {
            ConfigError::invalid(
                "min_size",
                format!("at most 64KiB (65535 bytes), got {bytes}"),
            )
        })?;
        Ok(self)
    }

    /// Offer gzip. Defaults to on.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Offer brotli. Defaults to on.
    pub fn br(mut self, on: bool) -> Self {
        self.br = on;
        self
    }

    /// Offer zstd. Defaults to on.
    pub fn zstd(mut self, on: bool) -> Self {
        self.zstd = on;
        self
    }

    /// The stack entry (a tower layer, named `compression`).
    pub fn entry(self) -> Entry {
        let predicate = SizeAbove::new(self.min_size)
            .and(NotForContentType::GRPC)
            .and(NotForContentType::IMAGES)
            .and(NotForContentType::SSE);
        let layer = CompressionLayer::new()
            .gzip(self.gzip)
            .br(self.br)
            .zstd(self.zstd)
            .no_deflate()
            .compress_when(predicate);
        // The encoder polls its source once more after the end: a body made from a stream
        // that must not be polled then (`futures::stream::unfold`) would panic without this.
        // The length of a body known in full is noted on the way in.
        let fused = tower::util::MapResponseLayer::new(|mut res: Response| {
            if let Some(len) = http_body::Body::size_hint(res.body()).exact() {
                res.extensions_mut().insert(KnownLength(len));
            }
            res.map(|body| Body::new(Fused { body, done: false }))
        });
        Entry::layer(
            "compression",
            tower::ServiceBuilder::new()
                .layer(tower::util::MapResponseLayer::new(as_starlette_sends))
                .layer(layer)
                .layer(fused),
        )
        .with_capabilities(crate::battery::Capabilities::new().kind("compression"))
    }
}

/// The length of the app's body, when it was known in full before compression.
#[derive(Debug, Clone, Copy)]
struct KnownLength(u64);

/// The largest body compressed in full, to be sent with its `Content-Length`.
const MAX_WHOLE: u64 = 1024 * 1024;

/// As Starlette's GZip sends a response it compressed: a body that was there in full (a JSON
/// answer) compressed at once and sent with its `Content-Length` rather than in chunks, and
/// `Vary: Accept-Encoding` in its usual capitalisation. A streamed body stays streamed.
fn as_starlette_sends<B>(res: http::Response<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let mut res = res.map(Body::new);
    let known = res.extensions_mut().remove::<KnownLength>();
    if !res.headers().contains_key(http::header::CONTENT_ENCODING) {
        return res;
    }
    if let Some(vary) = res.headers_mut().get_mut(http::header::VARY) {
        if vary.as_bytes().eq_ignore_ascii_case(b"accept-encoding") {
            *vary = http::HeaderValue::from_static("Accept-Encoding");
        }
    }
    if known.is_some_and(|KnownLength(len)| len <= MAX_WHOLE) {
        if let Some(whole) = crate::body::ready_bytes(res.body_mut()) {
            res.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(whole.len()),
            );
            *res.body_mut() = Body::from(whole);
        }
    }
    res
}

pin_project_lite::pin_project! {
    /// A body that answers "no more frames" once it has ended, without polling its source.
    struct Fused {
        #[pin]
        body: Body,
        done: bool,
    }
}

impl http_body::Body for Fused {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let polled = this.body.poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            *this.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
