//! Sentinel's errors and their `google.rpc.Status`.
use quis_core::{
    ApiError, FieldViolation,
    db::is_transient,
    error::{STORE_BUSY_MESSAGE, STORE_RETRY_AFTER},
};
use tonic::Code;

use crate::store::StoreError;

/// What a caller of `SentinelService` can be told.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} is closed: it was resolved or marked a false positive")]
    AlertClosed(String),
    #[error("{0} was already completed")]
    ReviewCompleted(String),
    #[error("the ledger could not record the triage; nothing was changed")]
    LedgerUnavailable,
    #[error("the watch fell behind; resume with `after` set to the last alert received")]
    WatchLagged,
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
}

impl ApiError for SentinelError {
    fn code(&self) -> Code {
        match self {
            SentinelError::Invalid(_) => Code::InvalidArgument,
            SentinelError::NotFound(_) => Code::NotFound,
            SentinelError::AlertClosed(_) | SentinelError::ReviewCompleted(_) => Code::FailedPrecondition,
            SentinelError::LedgerUnavailable => Code::Unavailable,
            SentinelError::WatchLagged => Code::Aborted,
            SentinelError::Store(StoreError::Sql(e)) if is_transient(e) => Code::Unavailable,
            SentinelError::Store(_) => Code::Internal,
        }
    }
    fn reason(&self) -> &'static str {
        match self {
            SentinelError::Invalid(_) => "INVALID_ARGUMENT",
            SentinelError::NotFound(_) => "NOT_FOUND",
            SentinelError::AlertClosed(_) => "ALERT_CLOSED",
            SentinelError::ReviewCompleted(_) => "REVIEW_COMPLETED",
            SentinelError::LedgerUnavailable => "LEDGER_UNAVAILABLE",
            SentinelError::WatchLagged => "WATCH_LAGGED",
            SentinelError::Store(StoreError::Sql(e)) if is_transient(e) => "STORE_UNAVAILABLE",
            SentinelError::Store(_) => "STORE_FAILED",
        }
    }
    fn domain(&self) -> &'static str {
        "quis.sentinel"
    }
    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            SentinelError::Invalid(v) => v.clone(),
            _ => Vec::new(),
        }
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        matches!(self, SentinelError::Store(StoreError::Sql(e)) if is_transient(e)).then_some(STORE_RETRY_AFTER)
    }
    fn public_message(&self) -> String {
        match self {
            SentinelError::Store(StoreError::Sql(e)) if is_transient(e) => STORE_BUSY_MESSAGE.to_string(),
            _ if self.code() == Code::Internal => "internal error".to_string(),
            _ => self.to_string(),
        }
    }
}

impl From<SentinelError> for tonic::Status {
    fn from(e: SentinelError) -> Self {
        quis_core::error::to_status(&e)
    }
}
