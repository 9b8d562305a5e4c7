//! A connection's socket, telling its watchdog when the client sends bytes, and holding the
//! connection's slot (an upgraded socket keeps it; the drain deadline can cut it).

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connection::ConnActivity;

pin_project_lite::pin_project! {
    /// A connection's socket, telling its watchdog when the client sends bytes.
    pub(crate) struct Counted<I> {
        #[pin]
        pub(crate) io: I,
        pub(crate) activity: Arc<ConnActivity>,
    }
}

impl<I: AsyncRead> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if let Some(err) = this.activity.slot.interrupted(cx) {
            return Poll::Ready(Err(err));
        }
        let before = buf.filled().len();
        let result = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.reads.fetch_add(1, Relaxed);
        }
        result
    }
}

impl<I: AsyncWrite> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(err) = self.activity.slot.interrupted(cx) {
            return Poll::Ready(Err(err));
        }
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(err) = self.activity.slot.interrupted(cx) {
            return Poll::Ready(Err(err));
        }
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
