//! `quis.echo.v1.EchoService`: answers with what it was sent, in each of the
//! four call shapes, naming the verified caller. It holds no data; operators
//! use it to check the gateway path and to load-test it (`quis bench`).
#![forbid(unsafe_code)]

use std::{pin::Pin, time::Duration};

use futures::{Stream, StreamExt};
use quis_core::{ApiError, FieldViolation, error::to_status};
use quis_proto::echo::{
    ChatRequest, ChatResponse, CollectRequest, CollectResponse, EchoRequest, EchoResponse, ExpandRequest,
    ExpandResponse,
    echo_service_server::{EchoService, EchoServiceServer},
};
use quis_runtime::BuiltService;
use tonic::{Code, Request, Response, Status, Streaming};

/// Largest `count` accepted by Expand.
pub const MAX_EXPAND: u32 = 10_000;
/// Longest `interval_ms` accepted by Expand.
pub const MAX_INTERVAL_MS: u32 = 10_000;

/// Invalid echo requests.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("{0}: {1}")]
    Invalid(&'static str, &'static str),
}

impl ApiError for EchoError {
    fn code(&self) -> Code {
        Code::InvalidArgument
    }
    fn reason(&self) -> &'static str {
        "INVALID_ARGUMENT"
    }
    fn domain(&self) -> &'static str {
        "quis.echo"
    }
    fn violations(&self) -> Vec<FieldViolation> {
        let EchoError::Invalid(field, rule) = self;
        vec![FieldViolation::new(*field, *rule)]
    }
}

/// The service implementation.
#[derive(Debug, Default, Clone)]
pub struct Echo;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        let EchoRequest { message, payload } = request.into_inner();
        Ok(Response::new(EchoResponse { message, payload, principal: principal.id.clone() }))
    }

    type ExpandStream = BoxStream<ExpandResponse>;

    async fn expand(&self, request: Request<ExpandRequest>) -> Result<Response<Self::ExpandStream>, Status> {
        let req = request.into_inner();
        if req.count == 0 || req.count > MAX_EXPAND {
            return Err(to_status(&EchoError::Invalid("count", "must be 1 to 10000")));
        }
        if req.interval_ms > MAX_INTERVAL_MS {
            return Err(to_status(&EchoError::Invalid("interval_ms", "must be at most 10000")));
        }
        let interval = Duration::from_millis(u64::from(req.interval_ms));
        let stream = futures::stream::iter(0..req.count).then(move |sequence| {
            let message = req.message.clone();
            async move {
                if sequence > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                Ok(ExpandResponse { message, sequence })
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn collect(&self, request: Request<Streaming<CollectRequest>>) -> Result<Response<CollectResponse>, Status> {
        let mut stream = request.into_inner();
        let (mut message_count, mut total_bytes) = (0u64, 0u64);
        while let Some(message) = stream.message().await? {
            message_count += 1;
            total_bytes += message.payload.len() as u64;
        }
        Ok(Response::new(CollectResponse { message_count, total_bytes }))
    }

    type ChatStream = BoxStream<ChatResponse>;

    async fn chat(&self, request: Request<Streaming<ChatRequest>>) -> Result<Response<Self::ChatStream>, Status> {
        let stream = request.into_inner();
        let answers = stream
            .enumerate()
            .map(|(sequence, message)| message.map(|m| ChatResponse { message: m.message, sequence: sequence as u64 }));
        Ok(Response::new(Box::pin(answers)))
    }
}

/// The echo service, ready for the runtime.
pub fn build() -> BuiltService {
    BuiltService {
        name: "echo",
        grpc_names: vec!["quis.echo.v1.EchoService"],
        routes: tonic::service::Routes::new(EchoServiceServer::new(Echo)),
        readiness: Vec::new(),
    }
}
