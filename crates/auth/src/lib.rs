//! Identity for every Quis service: bearer JWT verification shared by the
//! gateway and each backend, typed principals, the shared revocation list,
//! and development keys and tokens (`quis init`, `quis token`).
#![forbid(unsafe_code)]

pub mod credentials;
pub mod devkeys;
pub mod error;
pub mod jwks;
pub mod layer;
pub mod mint;
pub mod principal;
pub mod revocation;
pub mod verifier;

pub use credentials::ServiceCredentials;
pub use error::AuthError;
pub use layer::{AuthLayer, FORWARDED_BY_HEADER, SOURCE_ADDRESS_HEADER, principal, require_any_role, source_address};
pub use principal::{Principal, PrincipalKind, Role};
pub use verifier::TokenVerifier;
