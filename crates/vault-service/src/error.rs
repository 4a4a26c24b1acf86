//! The vault service's errors, each mapped once to a `google.rpc.Status` in
//! domain `quis.vault`. Library errors keep their own mapping.
use std::time::Duration;

use quis_core::{ApiError, FieldViolation};
use quis_vault::VaultError;
use tonic::{Code, Status};

pub const DOMAIN: &str = "quis.vault";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("this call needs the {0} role")]
    RoleRequired(&'static str),
    /// Policy denied the access; the message is policy's caller-safe reason.
    /// The denial is in the ledger at `ledger_index`, which the caller is told.
    #[error("{reason}")]
    Denied { reason: String, ledger_index: u64 },
    #[error("only the grantee or an administrator may end a break-glass grant")]
    NotGrantee,
    #[error("{0} has already ended")]
    AlreadyEnded(String),
    #[error("policy cannot be reached; nothing was returned")]
    PolicyUnavailable(String),
    #[error("the ledger did not record the access; nothing was returned")]
    LedgerUnavailable(String),
}

impl ServiceError {
    /// One field violation.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        VaultError::invalid(field, rule).into()
    }
}

/// Collects the violations of a request's fields, then fails with all of them at once.
#[derive(Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(FieldViolation::new(field, rule));
    }

    pub fn check(self) -> Result<(), ServiceError> {
        if self.0.is_empty() { Ok(()) } else { Err(VaultError::InvalidArgument(self.0).into()) }
    }
}

impl ApiError for ServiceError {
    fn code(&self) -> Code {
        match self {
            ServiceError::Vault(e) => e.code(),
            ServiceError::RoleRequired(_) | ServiceError::Denied { .. } | ServiceError::NotGrantee => {
                Code::PermissionDenied
            }
            ServiceError::AlreadyEnded(_) => Code::FailedPrecondition,
            ServiceError::PolicyUnavailable(_) | ServiceError::LedgerUnavailable(_) => Code::Unavailable,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ServiceError::Vault(e) => e.reason(),
            ServiceError::RoleRequired(_) => "ROLE_REQUIRED",
            ServiceError::Denied { .. } => "ACCESS_DENIED",
            ServiceError::NotGrantee => "NOT_GRANTEE",
            ServiceError::AlreadyEnded(_) => "ALREADY_ENDED",
            ServiceError::PolicyUnavailable(_) => "POLICY_UNAVAILABLE",
            ServiceError::LedgerUnavailable(_) => "LEDGER_UNAVAILABLE",
        }
    }

    fn domain(&self) -> &'static str {
        DOMAIN
    }

    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            ServiceError::Vault(e) => e.violations(),
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceError::Vault(e) => e.retry_after(),
            ServiceError::PolicyUnavailable(_) | ServiceError::LedgerUnavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    fn metadata(&self) -> std::collections::HashMap<String, String> {
        match self {
            ServiceError::Denied { ledger_index, .. } => {
                [("ledger_index".to_string(), ledger_index.to_string())].into()
            }
            _ => Default::default(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            ServiceError::Vault(e) => e.public_message(),
            other if other.code() == Code::Internal => "internal error".into(),
            other => other.to_string(),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        if let ServiceError::PolicyUnavailable(cause) | ServiceError::LedgerUnavailable(cause) = &e {
            // The cause stays here; the caller learns only that nothing was returned.
            tracing::warn!(reason = e.reason(), %cause, "guarded call refused (fail closed)");
        }
        quis_core::error::to_status(&e)
    }
}
