//! [`Compression`]: gzip, brotli and zstd response bodies, by the client's `Accept-Encoding`
//! (q-values honoured), on tower-http's compression.
//!
//! Never on `text/event-stream` (server-sent events must reach the client event by event),
//! images, gRPC, or bodies already encoded; never below a minimum size (1 KB by default,
//! when the size is known); always with `Vary: Accept-Encoding`. A streamed body stays
//! streamed: each chunk is compressed and sent as it comes.
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
//! assert_eq!(res.header("vary"), Some("accept-encoding"));
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
        let fused = tower::util::MapResponseLayer::new(|res: Response| {
            res.map(|body| Body::new(Fused { body, done: false }))
        });
        Entry::layer(
            "compression",
            tower::ServiceBuilder::new().layer(layer).layer(fused),
        )
        .with_capabilities(crate::battery::Capabilities::new().kind("compression"))
    }
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
