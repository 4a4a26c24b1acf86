//! The policy service's errors, each mapped once to a `google.rpc.Status`.
use quis_core::{
    ApiError, FieldViolation,
    db::is_transient,
    error::{STORE_BUSY_MESSAGE, STORE_RETRY_AFTER},
};
use tonic::{Code, Status};

pub const DOMAIN: &str = "quis.policy";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    #[error("only a service principal may ask about another principal")]
    NotAService,
    #[error("this call needs the admin role")]
    NotAnAdmin,
    #[error("administrators may not administer themselves: {0}")]
    SelfAdministration(&'static str),
    #[error("a policy-set version must be approved by an administrator other than its proposer")]
    SelfApproval,
    #[error("{0} is not a proposed version")]
    NotProposed(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the ledger did not record the change, so it was not made")]
    LedgerUnavailable(String),
    #[error("the policy store is unreachable; decisions fail closed")]
    StoreUnavailable(String),
    #[error("no policy-set version is active")]
    NoActivePolicy,
    #[error("policy store failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

impl ApiError for PolicyError {
    fn code(&self) -> Code {
        match self {
            PolicyError::Invalid(_) => Code::InvalidArgument,
            PolicyError::NotAService | PolicyError::NotAnAdmin => Code::PermissionDenied,
            PolicyError::SelfAdministration(_) | PolicyError::SelfApproval => Code::PermissionDenied,
            PolicyError::NotProposed(_) => Code::FailedPrecondition,
            PolicyError::NotFound(_) => Code::NotFound,
            PolicyError::LedgerUnavailable(_) | PolicyError::StoreUnavailable(_) | PolicyError::NoActivePolicy => {
                Code::Unavailable
            }
            PolicyError::Store(e) if is_transient(e) => Code::Unavailable,
            PolicyError::Store(_) | PolicyError::Corrupt(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            PolicyError::Invalid(_) => "INVALID_ARGUMENT",
            PolicyError::NotAService => "NOT_A_SERVICE",
            PolicyError::NotAnAdmin => "NOT_AN_ADMIN",
            PolicyError::SelfAdministration(_) => "SELF_ADMINISTRATION_FORBIDDEN",
            PolicyError::SelfApproval => "SELF_APPROVAL_FORBIDDEN",
            PolicyError::NotProposed(_) => "NOT_PROPOSED",
            PolicyError::NotFound(_) => "NOT_FOUND",
            PolicyError::LedgerUnavailable(_) => "LEDGER_UNAVAILABLE",
            PolicyError::StoreUnavailable(_) => "STORE_UNAVAILABLE",
            PolicyError::NoActivePolicy => "NO_ACTIVE_POLICY",
            PolicyError::Store(e) if is_transient(e) => "STORE_UNAVAILABLE",
            PolicyError::Store(_) => "STORE_FAILED",
            PolicyError::Corrupt(_) => "STORE_CORRUPT",
        }
    }

    fn domain(&self) -> &'static str {
        DOMAIN
    }

    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            PolicyError::Invalid(v) => v.clone(),
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            PolicyError::Store(e) if is_transient(e) => Some(STORE_RETRY_AFTER),
            PolicyError::LedgerUnavailable(_) | PolicyError::StoreUnavailable(_) => {
                Some(std::time::Duration::from_secs(1))
            }
            _ => None,
        }
    }

    fn public_message(&self) -> String {
        match self {
            PolicyError::Store(e) if is_transient(e) => STORE_BUSY_MESSAGE.to_string(),
            _ if self.code() == Code::Internal => "internal error".to_string(),
            _ => self.to_string(),
        }
    }
}

impl From<PolicyError> for Status {
    fn from(e: PolicyError) -> Self {
        if let PolicyError::LedgerUnavailable(cause) | PolicyError::StoreUnavailable(cause) = &e {
            // The cause stays here; the caller learns only that the change was refused.
            tracing::warn!(reason = e.reason(), %cause, "refused");
        }
        quis_core::error::to_status(&e)
    }
}

/// Shorthand for one field violation.
pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(vec![FieldViolation::new(field, rule)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_or_unreachable_store_is_retried_any_other_failure_is_internal() {
        let busy = PolicyError::Store(sqlx::Error::PoolTimedOut);
        assert_eq!((busy.code(), busy.reason()), (Code::Unavailable, "STORE_UNAVAILABLE"));
        assert_eq!((busy.retry_after(), busy.public_message().as_str()), (Some(STORE_RETRY_AFTER), STORE_BUSY_MESSAGE));
        let broken = PolicyError::Store(sqlx::Error::RowNotFound);
        assert_eq!((broken.code(), broken.reason(), broken.retry_after()), (Code::Internal, "STORE_FAILED", None));
        assert_eq!(broken.public_message(), "internal error");
    }
}
