//! The Quis simulator (`quis simulate`, `quis demo`): measures detection on
//! an organization's working days played through the real suite.
//!
//! - [`org`]: the organization generated from a seed (staff, teams, sites,
//!   subjects in households, compartments, decoys, cases over time);
//! - [`plan`]: the legitimate working days, and [`incidents`]: the planted,
//!   labelled misuse;
//! - [`ingest`], [`play`]: the organization loaded and the days played
//!   through the gateway with real tokens from per-workstation addresses, on
//!   a simulated clock the suite was started with;
//! - [`tamper`]: the insider rewriting ledger rows in the embedded store;
//! - [`sentinel`], [`score`]: alerts read back and scored against the labels.
//!
//! Everything that varies comes from the seed (ChaCha20), so two runs with the
//! same seed plant and play the same organization.
#![forbid(unsafe_code)]

pub mod client;
pub mod incidents;
pub mod ingest;
pub mod names;
pub mod org;
pub mod plan;
pub mod play;
pub mod score;
pub mod sentinel;
pub mod tamper;

mod run;

pub use run::{SentinelRestarter, Simulation, Suite, run};
pub use score::Report;
