//! Ledger errors, mapped once to `google.rpc.Status`.
use quis_core::{ApiError, FieldViolation};
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    #[error("service {service} may not append {kind} events")]
    NotOwner { service: String, kind: &'static str },
    #[error("only services may append")]
    NotAService,
    #[error("reading entries needs the auditor or investigator role")]
    NotAReader,
    #[error("{0}")]
    OutOfRange(String),
    #[error("no checkpoint has been signed yet")]
    NoCheckpoint,
    #[error("no detail is stored for this commitment (never stored, or erased)")]
    NoDetail,
    #[error("the ledger could not make the entries durable")]
    Unavailable,
    #[error("the ledger is halted: {0}")]
    Halted(String),
    #[error("ledger storage failed: {0}")]
    Internal(String),
}

impl ApiError for LedgerError {
    fn code(&self) -> Code {
        match self {
            LedgerError::Invalid(_) => Code::InvalidArgument,
            LedgerError::NotOwner { .. } | LedgerError::NotAService | LedgerError::NotAReader => Code::PermissionDenied,
            LedgerError::OutOfRange(_) => Code::OutOfRange,
            LedgerError::NoCheckpoint => Code::FailedPrecondition,
            LedgerError::NoDetail => Code::NotFound,
            LedgerError::Unavailable => Code::Unavailable,
            LedgerError::Halted(_) => Code::FailedPrecondition,
            LedgerError::Internal(_) => Code::Internal,
        }
    }
    fn reason(&self) -> &'static str {
        match self {
            LedgerError::Invalid(_) => "INVALID_ARGUMENT",
            LedgerError::NotOwner { .. } => "EVENT_KIND_NOT_OWNED",
            LedgerError::NotAService => "SERVICE_REQUIRED",
            LedgerError::NotAReader => "ROLE_REQUIRED",
            LedgerError::OutOfRange(_) => "BEYOND_TREE",
            LedgerError::NoCheckpoint => "NO_CHECKPOINT",
            LedgerError::NoDetail => "DETAIL_NOT_FOUND",
            LedgerError::Unavailable => "NOT_DURABLE",
            LedgerError::Halted(_) => "LOG_ROLLED_BACK",
            LedgerError::Internal(_) => "STORE_FAILED",
        }
    }
    fn domain(&self) -> &'static str {
        "quis.ledger"
    }
    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            LedgerError::Invalid(v) => v.clone(),
            _ => Vec::new(),
        }
    }
}

impl From<LedgerError> for tonic::Status {
    fn from(e: LedgerError) -> Self {
        quis_core::error::to_status(&e)
    }
}
