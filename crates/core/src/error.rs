//! The one error model: every crate's error enum implements [`ApiError`], and
//! [`to_status`] turns it into a `google.rpc.Status` with an `ErrorInfo`
//! (reason in UPPER_SNAKE_CASE, domain `quis.<svc>`) and, for invalid input,
//! `BadRequest` field violations. Internal causes are logged, never sent.
use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field that broke a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `token_id` or `events[3].subject`.
    pub field: String,
    /// The rule, in words a caller can act on.
    pub rule: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { field: field.into(), rule: rule.into() }
    }
}

/// What a caller is told of a store error worth retrying ([`crate::db::is_transient`]): the code is
/// `UNAVAILABLE`, with this message (not the store's own words) and [`STORE_RETRY_AFTER`].
pub const STORE_BUSY_MESSAGE: &str = "the store is busy or unreachable; retry later";
/// The retry hint of a transient store error.
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Implemented by each crate's error enum.
pub trait ApiError: std::error::Error {
    /// The gRPC code.
    fn code(&self) -> Code;
    /// `ErrorInfo.reason`, UPPER_SNAKE_CASE.
    fn reason(&self) -> &'static str;
    /// `ErrorInfo.domain`, `quis.<svc>`.
    fn domain(&self) -> &'static str;
    /// Field violations for `INVALID_ARGUMENT`.
    fn violations(&self) -> Vec<FieldViolation> {
        Vec::new()
    }
    /// How long the caller should wait before retrying, if at all.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// `ErrorInfo.metadata`: facts the caller may act on (e.g. the ledger index of a
    /// recorded refusal). Never secrets or record contents.
    fn metadata(&self) -> HashMap<String, String> {
        HashMap::new()
    }
    /// The message the caller sees. Internal errors hide their cause.
    fn public_message(&self) -> String {
        if self.code() == Code::Internal { "internal error".to_string() } else { self.to_string() }
    }
}

/// Builds the `google.rpc.Status` for an error.
pub fn to_status<E: ApiError + ?Sized>(err: &E) -> Status {
    if err.code() == Code::Internal {
        // The cause stays in the log; the caller gets an id to quote.
        let incident = uuid::Uuid::new_v4();
        tracing::error!(%incident, reason = err.reason(), error = %err, "internal error");
        return status(
            Code::Internal,
            &format!("internal error (incident {incident})"),
            err.reason(),
            err.domain(),
            &[],
            None,
        );
    }
    let details = details(err.reason(), err.domain(), err.metadata(), &err.violations(), err.retry_after());
    Status::with_error_details(err.code(), err.public_message(), details)
}

/// Builds a status with `ErrorInfo`, optional `BadRequest` and optional `RetryInfo`.
pub fn status(
    code: Code,
    message: &str,
    reason: &str,
    domain: &str,
    violations: &[FieldViolation],
    retry_after: Option<Duration>,
) -> Status {
    Status::with_error_details(code, message, details(reason, domain, HashMap::new(), violations, retry_after))
}

fn details(
    reason: &str,
    domain: &str,
    metadata: HashMap<String, String>,
    violations: &[FieldViolation],
    retry_after: Option<Duration>,
) -> ErrorDetails {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, domain, metadata);
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.rule.clone());
    }
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    details
}

/// Shorthand for an `INVALID_ARGUMENT` with one field violation.
pub fn invalid_argument(domain: &str, field: &str, rule: &str) -> Status {
    status(
        Code::InvalidArgument,
        &format!("{field}: {rule}"),
        "INVALID_ARGUMENT",
        domain,
        &[FieldViolation::new(field, rule)],
        None,
    )
}

/// Validates a resource id: 1–64 characters of `[a-z0-9-]` (the design's naming rule).
pub fn check_id(field: &str, value: &str) -> Result<(), FieldViolation> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(FieldViolation::new(field, "must be 1 to 64 characters of [a-z0-9-]")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Demo {
        #[error("bad field")]
        Bad,
        #[error("database password is hunter2")]
        Broken,
    }

    impl ApiError for Demo {
        fn code(&self) -> Code {
            match self {
                Demo::Bad => Code::InvalidArgument,
                Demo::Broken => Code::Internal,
            }
        }
        fn reason(&self) -> &'static str {
            match self {
                Demo::Bad => "BAD_FIELD",
                Demo::Broken => "STORE_FAILED",
            }
        }
        fn domain(&self) -> &'static str {
            "quis.demo"
        }
        fn violations(&self) -> Vec<FieldViolation> {
            vec![FieldViolation::new("name", "must not be empty")]
        }
    }

    #[test]
    fn status_carries_error_info_and_bad_request() {
        let status = to_status(&Demo::Bad);
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "BAD_FIELD");
        assert_eq!(info.domain, "quis.demo");
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "name");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = to_status(&Demo::Broken);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
        assert_eq!(status.get_error_details().error_info().map(|i| i.reason.as_str()), Some("STORE_FAILED"));
    }

    #[test]
    fn ids_follow_the_naming_rule() {
        assert!(check_id("id", "alice-01").is_ok());
        for bad in ["", "Alice", "a_b", "a/b", &"x".repeat(65)] {
            assert!(check_id("id", bad).is_err(), "{bad:?}");
        }
    }
}
