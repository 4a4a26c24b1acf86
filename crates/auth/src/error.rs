//! Why a caller was refused, mapped once to `google.rpc.Status`.
use quis_core::ApiError;
use tonic::Code;

/// Authentication and authorization failures, each with its own `ErrorInfo` reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the authorization header is not a bearer token")]
    NotBearer,
    #[error("the token is malformed")]
    Malformed,
    #[error("token algorithm {0} is not accepted (EdDSA, ES256 and RS256 only)")]
    AlgorithmNotAllowed(String),
    #[error("the token names no known key id")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by an untrusted issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token's claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("the token has been revoked")]
    Revoked,
    #[error("the principal is suspended")]
    Suspended,
    #[error("token verification is unavailable: the revocation list is stale")]
    RevocationListStale,
    #[error("the caller lacks the required role")]
    MissingRole,
}

impl ApiError for AuthError {
    fn code(&self) -> Code {
        match self {
            AuthError::MissingRole => Code::PermissionDenied,
            AuthError::RevocationListStale => Code::Unavailable,
            _ => Code::Unauthenticated,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "TOKEN_MISSING",
            AuthError::NotBearer => "TOKEN_NOT_BEARER",
            AuthError::Malformed => "TOKEN_MALFORMED",
            AuthError::AlgorithmNotAllowed(_) => "TOKEN_ALGORITHM_NOT_ALLOWED",
            AuthError::UnknownKey => "TOKEN_UNKNOWN_KEY",
            AuthError::BadSignature => "TOKEN_BAD_SIGNATURE",
            AuthError::Expired => "TOKEN_EXPIRED",
            AuthError::NotYetValid => "TOKEN_NOT_YET_VALID",
            AuthError::WrongIssuer => "TOKEN_WRONG_ISSUER",
            AuthError::WrongAudience => "TOKEN_WRONG_AUDIENCE",
            AuthError::InvalidClaims(_) => "TOKEN_INVALID_CLAIMS",
            AuthError::Revoked => "TOKEN_REVOKED",
            AuthError::Suspended => "PRINCIPAL_SUSPENDED",
            AuthError::RevocationListStale => "REVOCATION_LIST_STALE",
            AuthError::MissingRole => "ROLE_REQUIRED",
        }
    }

    fn domain(&self) -> &'static str {
        "quis.auth"
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        quis_core::error::to_status(&e)
    }
}
