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

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// See the module documentation.
    pub struct MessageLimit<B> {
        #[pin]
        inner: B,
        max: u32,
        header: [u8; 5],
        header_len: usize,
        remaining: u64,
        tripped: Arc<AtomicBool>,
    }
}

impl<B> MessageLimit<B> {
    /// Wraps `inner`; `tripped` is set when a message over `max` is seen.
    pub fn new(inner: B, max: u32, tripped: Arc<AtomicBool>) -> Self {
        Self { inner, max, header: [0; 5], header_len: 0, remaining: 0, tripped }
    }
}

/// The error a body fails with when a message is too large.
#[derive(Debug, thiserror::Error)]
#[error("gRPC message exceeds the gateway's limit")]
pub struct TooLarge;

/// Scans `data` for frame boundaries; returns false at the first oversized frame.
fn scan(mut data: &[u8], max: u32, header: &mut [u8; 5], header_len: &mut usize, remaining: &mut u64) -> bool {
    while !data.is_empty() {
        if *remaining > 0 {
            let skip = (*remaining).min(data.len() as u64) as usize;
            *remaining -= skip as u64;
            data.advance(skip);
            continue;
        }
        let take = (5 - *header_len).min(data.len());
        header[*header_len..*header_len + take].copy_from_slice(&data[..take]);
        *header_len += take;
        data.advance(take);
        if *header_len == 5 {
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            if len > max {
                return false;
            }
            *remaining = u64::from(len);
            *header_len = 0;
        }
    }
    true
}

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
                    && !scan(data, *this.max, this.header, this.header_len, this.remaining)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, len as usize));
        f
    }

    fn accepts(chunks: &[&[u8]], max: u32) -> bool {
        let (mut h, mut hl, mut rem) = ([0u8; 5], 0usize, 0u64);
        chunks.iter().all(|c| scan(c, max, &mut h, &mut hl, &mut rem))
    }

    #[test]
    fn frames_split_anywhere_are_measured() {
        let mut stream = frame(10);
        stream.extend(frame(100));
        stream.extend(frame(3));
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            assert!(accepts(&[a, b], 100), "split at {split}");
            assert!(!accepts(&[a, b], 99), "split at {split} must see the 100-byte frame");
        }
    }
}
