//! The foundations of the Quis vault: subjects' records encrypted at rest and
//! searchable without being readable.
//!
//! - [`envelope`]: AES-256-GCM envelope encryption, a fresh data key per
//!   record version, bound to the record's name and version, wrapped by a
//!   key-encryption key from a [`keyring`] that can hold several during a rotation;
//! - [`normalize`] and [`blind`]: normalized values and their HMAC-SHA256 blind
//!   search tokens and relationship keys under the organization secret;
//! - [`query`]: the search query parser and its too-broad rules;
//! - [`store`]: the tables, on SQLite or PostgreSQL;
//! - [`Vault`]: the API the `quis.vault.v1.VaultService` calls once policy has
//!   decided and the ledger has recorded the access.
#![forbid(unsafe_code)]

pub mod blind;
pub mod envelope;
pub mod error;
pub mod keyring;
pub mod model;
pub mod names;
pub mod normalize;
pub mod query;
pub mod store;
mod vault;

pub use error::VaultError;
pub use model::{AllowedFields, Field, FieldValue, Instant, Sensitivity};
pub use query::RawQuery;
pub use vault::{
    IngestedSubject, KeyUsage, MAX_ADDRESS_LINES, MAX_FIELDS, MAX_VALUE_BYTES, PolicyPush, RecordView,
    RotationProgress, SearchOutcome, SubjectInput, SubjectView, Vault, VaultConfig,
};
