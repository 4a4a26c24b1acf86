//! Why the witness refused a checkpoint, and the HTTP status c2sp.org/tlog-witness gives each.
use axum::http::StatusCode;
use quis_tlog::TlogError;

use crate::store::StoreError;

/// A refused `add-checkpoint` request (or a failure of the witness itself).
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The body is not an `add-checkpoint` request with a well-formed checkpoint note.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The checkpoint's origin is not a log this witness is configured for.
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    /// No valid signature by a configured key of the log (or an invalid one by a configured key).
    #[error("checkpoint of {origin:?} is not signed by a known log key: {source}")]
    NotSigned { origin: String, source: TlogError },
    /// The old size is larger than the checkpoint's size.
    #[error("old size {old_size} is larger than the checkpoint size {size}")]
    OldSizeTooLarge { old_size: u64, size: u64 },
    /// The old size is not the size of the latest checkpoint cosigned for this log.
    #[error("old size {old_size} is not the latest cosigned size {latest}")]
    StaleOldSize { old_size: u64, latest: u64 },
    /// A checkpoint of the latest cosigned size with another root: a fork of the log.
    #[error("a checkpoint of size {size} with a different root hash was already cosigned")]
    Fork { size: u64 },
    /// The consistency proof does not lead from the latest cosigned checkpoint to this one.
    #[error("consistency proof from size {old_size} to size {size} does not verify")]
    BadProof { old_size: u64, size: u64 },
    /// Concurrent requests kept moving the log's state; the client may retry.
    #[error("the log's state kept changing; retry")]
    Busy,
    #[error("witness store: {0}")]
    Store(#[from] StoreError),
    #[error("cosigning failed: {0}")]
    Cosign(TlogError),
}

impl WitnessError {
    /// The HTTP status of the refusal, as c2sp.org/tlog-witness specifies.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::OldSizeTooLarge { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownLog(_) => StatusCode::NOT_FOUND,
            Self::NotSigned { .. } => StatusCode::FORBIDDEN,
            Self::StaleOldSize { .. } | Self::Fork { .. } => StatusCode::CONFLICT,
            Self::BadProof { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Busy | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Cosign(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// For a 409, the size of the latest cosigned checkpoint (the response body).
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            Self::StaleOldSize { latest, .. } => Some(*latest),
            Self::Fork { size } => Some(*size),
            _ => None,
        }
    }
}
