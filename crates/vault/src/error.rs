//! The vault's errors, mapped once to `google.rpc.Status` (domain `quis.vault`).
use quis_core::{
    ApiError, FieldViolation,
    db::is_transient,
    error::{STORE_BUSY_MESSAGE, STORE_RETRY_AFTER},
};
use tonic::Code;

use crate::{envelope::EnvelopeError, keyring::KeyringError};

/// Everything a vault operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// A search too broad to be legitimate; the service records the refusal.
    #[error("query too broad: {}", describe(std::slice::from_ref(.0)))]
    QueryTooBroad(FieldViolation),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{name} changed meanwhile (expected version {expected}, found {found}); read it again")]
    VersionMismatch { name: String, expected: i64, found: i64 },
    /// A sealed row failed to open: tampered with, moved, or under a key not loaded.
    #[error("stored data of {name} failed to open: {cause}")]
    Sealed { name: String, cause: EnvelopeError },
    #[error("vault keys: {0}")]
    Keys(#[from] KeyringError),
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations.iter().map(|v| format!("{} {}", v.field, v.rule)).collect::<Vec<_>>().join("; ")
}

impl VaultError {
    /// One field violation.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        VaultError::InvalidArgument(vec![FieldViolation::new(field, rule)])
    }
}

impl ApiError for VaultError {
    fn code(&self) -> Code {
        match self {
            VaultError::InvalidArgument(_) | VaultError::QueryTooBroad(_) => Code::InvalidArgument,
            VaultError::NotFound(_) => Code::NotFound,
            VaultError::AlreadyExists(_) => Code::AlreadyExists,
            VaultError::VersionMismatch { .. } => Code::Aborted,
            // A store that cannot be reached or is busy is worth retrying; nothing was returned (fail closed).
            VaultError::Store(e) if is_transient(e) => Code::Unavailable,
            VaultError::Sealed { .. } | VaultError::Keys(_) | VaultError::Store(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            VaultError::InvalidArgument(_) => "INVALID_ARGUMENT",
            VaultError::QueryTooBroad(_) => "QUERY_TOO_BROAD",
            VaultError::NotFound(_) => "NOT_FOUND",
            VaultError::AlreadyExists(_) => "ALREADY_EXISTS",
            VaultError::VersionMismatch { .. } => "VERSION_MISMATCH",
            VaultError::Sealed { .. } => "SEALED_DATA_INTEGRITY",
            VaultError::Keys(_) => "KEYS_UNAVAILABLE",
            VaultError::Store(_) => "STORE_UNAVAILABLE",
        }
    }

    fn domain(&self) -> &'static str {
        "quis.vault"
    }

    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            VaultError::InvalidArgument(v) => v.clone(),
            VaultError::QueryTooBroad(v) => vec![v.clone()],
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        (self.code() == Code::Unavailable).then_some(STORE_RETRY_AFTER)
    }

    fn public_message(&self) -> String {
        match self.code() {
            Code::Internal => "internal error".to_string(),
            Code::Unavailable => STORE_BUSY_MESSAGE.to_string(),
            _ => self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn statuses_carry_reason_domain_and_fields_and_hide_internals() {
        let status = quis_core::error::to_status(&VaultError::QueryTooBroad(FieldViolation::new(
            "query.family_name",
            "a prefix needs at least 3 letters before `*`",
        )));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("QUERY_TOO_BROAD", "quis.vault"));
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "query.family_name");

        let sealed = VaultError::Sealed { name: "subjects/s1".into(), cause: EnvelopeError::Integrity };
        let status = quis_core::error::to_status(&sealed);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("subjects/s1"), "{}", status.message());

        let down = quis_core::error::to_status(&VaultError::Store(sqlx::Error::PoolTimedOut));
        assert_eq!(down.code(), Code::Unavailable);
        assert_eq!(down.message(), quis_core::error::STORE_BUSY_MESSAGE);
        assert_eq!(down.get_error_details().retry_info().and_then(|r| r.retry_delay), Some(STORE_RETRY_AFTER));
    }
}
