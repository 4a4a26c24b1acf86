//! The shared runtime of every Quis service: layered configuration, telemetry,
//! Prometheus metrics and the admin HTTP port, graceful shutdown, readiness
//! driving grpc.health.v1, the error model, key files and TLS.
#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod grpc_body;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod sentinel;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod vault;

pub use clock::{Clock, SimClock};
pub use config::QuisConfig;
pub use error::{ApiError, FieldViolation};
