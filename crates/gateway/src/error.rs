//! Why the gateway refused or failed a call, mapped once to `google.rpc.Status`.
use std::time::Duration;

use quis_core::ApiError;
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("unknown service")]
    UnknownService,
    #[error("this method is not available on the public listener")]
    InternalMethod,
    #[error("the upstream service is unavailable")]
    UpstreamUnavailable,
    #[error("rate limit exceeded")]
    RateLimited(Duration),
    #[error("request message larger than {0} bytes")]
    MessageTooLarge(u32),
    #[error("not a gRPC request")]
    NotGrpc,
    #[error("the upstream closed the call")]
    UpstreamReset,
    #[error(transparent)]
    Auth(#[from] quis_auth::AuthError),
}

impl ApiError for GatewayError {
    fn code(&self) -> Code {
        match self {
            GatewayError::Auth(e) => e.code(),
            GatewayError::UnknownService | GatewayError::InternalMethod => Code::Unimplemented,
            GatewayError::UpstreamUnavailable | GatewayError::UpstreamReset => Code::Unavailable,
            GatewayError::RateLimited(_) | GatewayError::MessageTooLarge(_) => Code::ResourceExhausted,
            GatewayError::NotGrpc => Code::InvalidArgument,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            GatewayError::Auth(e) => e.reason(),
            GatewayError::UnknownService => "UNKNOWN_SERVICE",
            // The same answer as an unknown service: internal methods are not advertised.
            GatewayError::InternalMethod => "UNKNOWN_SERVICE",
            GatewayError::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            GatewayError::UpstreamReset => "UPSTREAM_RESET",
            GatewayError::RateLimited(_) => "RATE_LIMITED",
            GatewayError::MessageTooLarge(_) => "MESSAGE_TOO_LARGE",
            GatewayError::NotGrpc => "NOT_GRPC",
        }
    }

    fn domain(&self) -> &'static str {
        match self {
            GatewayError::Auth(e) => e.domain(),
            _ => "quis.gateway",
        }
    }

    fn public_message(&self) -> String {
        match self {
            GatewayError::InternalMethod => GatewayError::UnknownService.to_string(),
            other => other.to_string(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::RateLimited(wait) => Some(*wait),
            _ => None,
        }
    }
}
