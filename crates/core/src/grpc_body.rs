//! A response body wrapper that reports how a gRPC call ended (its
//! `grpc-status`, from the headers of a trailers-only response or from the
//! trailers) exactly once: at the end of the stream, on error, or when the
//! body is dropped early (the client went away).
use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcOutcome {
    /// The `grpc-status` the server sent.
    Status(tonic::Code),
    /// The body ended without a `grpc-status` (not a gRPC response).
    NoStatus,
    /// The body failed or was dropped before it ended.
    Aborted,
}

impl GrpcOutcome {
    /// A stable label, e.g. `OK`, `UNAVAILABLE`, `ABORTED`.
    pub fn code_name(&self) -> &'static str {
        match self {
            GrpcOutcome::Status(code) => code_label(*code),
            GrpcOutcome::NoStatus => "NONE",
            GrpcOutcome::Aborted => "ABORTED_STREAM",
        }
    }

    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get("grpc-status")?;
        let code = value.to_str().ok().and_then(|s| s.parse::<i32>().ok()).unwrap_or(2);
        Some(GrpcOutcome::Status(tonic::Code::from_i32(code)))
    }
}

/// The canonical upper-case name of a code.
pub fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

type Callback = Box<dyn FnOnce(GrpcOutcome) + Send + Sync>;

pin_project! {
    /// See the module documentation.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        early: Option<GrpcOutcome>,
        callback: Option<Callback>,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(cb) = this.callback.take() {
                cb(this.early.unwrap_or(GrpcOutcome::Aborted));
            }
        }
    }
}

impl<B> ObservedBody<B> {
    /// Wraps a response's body; `callback` runs once when the call ends.
    pub fn wrap<F>(response: http::Response<B>, callback: F) -> http::Response<ObservedBody<B>>
    where
        F: FnOnce(GrpcOutcome) + Send + Sync + 'static,
    {
        let early = GrpcOutcome::from_headers(response.headers());
        response.map(|inner| ObservedBody { inner, early, callback: Some(Box::new(callback)) })
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                frame.trailers_ref().map(|t| GrpcOutcome::from_headers(t).unwrap_or(GrpcOutcome::NoStatus))
            }
            Poll::Ready(Some(Err(_))) => Some(GrpcOutcome::Aborted),
            Poll::Ready(None) => Some(this.early.unwrap_or(GrpcOutcome::NoStatus)),
            Poll::Pending => None,
        };
        if let Some(outcome) = finished
            && let Some(cb) = this.callback.take()
        {
            cb(outcome);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
