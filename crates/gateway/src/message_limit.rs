//! Enforces the maximum gRPC request message size without decoding: it reads
//! only the 5-byte frame headers (flag, big-endian length) as the body
//! streams through, and fails the stream at the first frame that is too long.
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::parse::FrameScanner;

pin_project! {
    /// See the module documentation.
    pub struct MessageLimit<B> {
        #[pin]
        inner: B,
        scanner: FrameScanner,
        tripped: Arc<AtomicBool>,
    }
}

impl<B> MessageLimit<B> {
    /// Wraps `inner`; `tripped` is set when a message over `max` is seen.
    pub fn new(inner: B, max: u32, tripped: Arc<AtomicBool>) -> Self {
        Self { inner, scanner: FrameScanner::new(max), tripped }
    }
}

/// The error a body fails with when a message is too large.
#[derive(Debug, thiserror::Error)]
#[error("gRPC message exceeds the gateway's limit")]
pub struct TooLarge;

impl<B> Body for MessageLimit<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !this.scanner.feed(data)
                {
                    this.tripped.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(TooLarge))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
