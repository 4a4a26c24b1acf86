//! The Quis policy engine: pure decision logic, no I/O.
//!
//! - [`model`]: the entities policy reasons about (staff, teams, subjects, cases,
//!   conflicts of interest, time-bound grants) and the closed enums of the design.
#![forbid(unsafe_code)]

pub mod model;
