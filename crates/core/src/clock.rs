//! "Now" for the services: the system clock, or in simulation mode a clock the
//! simulator advances. Services read event time (ledger sequencing, policy
//! check time, vault grants, sentinel windows) from a [`Clock`] handed to them
//! at build; token lifetimes and TLS stay on the system clock.
//!
//! A simulated clock can only be created in-process (`quis simulate`, `quis
//! demo`): no configuration key, RPC or header sets time, and the suite refuses
//! it unless it runs on loopback with the embedded store ([`Clock::check_allowed`]).
use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::QuisConfig;

/// Where a service reads the current time.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The machine's clock: always, outside simulation.
    #[default]
    System,
    /// Simulated time, advanced by the simulator.
    Simulated(SimClock),
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => {
                SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
            }
            Clock::Simulated(sim) => sim.now_ms(),
        }
    }

    /// The current time as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.now_ms()).unwrap_or(0))
    }

    /// Whether this is a simulated clock.
    pub fn is_simulated(&self) -> bool {
        matches!(self, Clock::Simulated(_))
    }

    /// Refuses a simulated clock on anything but a local, embedded suite: every
    /// listener on loopback and no shared (PostgreSQL) store.
    pub fn check_allowed(&self, config: &QuisConfig) -> Result<(), String> {
        if !self.is_simulated() {
            return Ok(());
        }
        if config.store.url.is_some() {
            return Err("a simulated clock runs only on the embedded store: unset store.url".into());
        }
        if config.tls.enabled {
            return Err("a simulated clock runs only on a local suite without TLS: unset tls.enabled".into());
        }
        for (name, listen) in &config.services {
            for (key, addr) in [("listen", listen.listen), ("admin_listen", listen.admin_listen)] {
                if !addr.ip().is_loopback() {
                    return Err(format!("a simulated clock runs only on loopback: services.{name}.{key} is {addr}"));
                }
            }
        }
        Ok(())
    }
}

/// Configurations compare equal whatever their clocks' times: only the kind matters.
impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        self.is_simulated() == other.is_simulated()
    }
}

/// A clock that stands still until advanced; clones share the same time.
#[derive(Clone, Debug)]
pub struct SimClock(Arc<AtomicI64>);

impl SimClock {
    /// A clock reading `start_ms` (milliseconds since the Unix epoch).
    pub fn new(start_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(start_ms)))
    }

    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }

    /// Moves the clock to `ms`; never backwards (an earlier time is ignored), so
    /// that ledger sequencing times stay ordered.
    pub fn set_ms(&self, ms: i64) {
        self.0.fetch_max(ms, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_moves_only_forward_and_is_shared() {
        let sim = SimClock::new(1_000);
        let clock = Clock::Simulated(sim.clone());
        sim.set_ms(5_000);
        assert_eq!(clock.now_ms(), 5_000);
        sim.set_ms(2_000);
        assert_eq!(clock.now_ms(), 5_000, "never backwards");
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(5));
    }

    #[test]
    fn a_simulated_clock_is_refused_off_loopback_or_on_a_shared_store() {
        let sim = Clock::Simulated(SimClock::new(0));
        let local = QuisConfig::default();
        assert!(sim.check_allowed(&local).is_ok(), "the default suite is local");

        let mut shared = QuisConfig::default();
        shared.store.url = Some("postgres://db/quis".into());
        assert!(sim.check_allowed(&shared).unwrap_err().contains("store.url"));

        let mut public = QuisConfig::default();
        if let Some(gateway) = public.services.get_mut("gateway") {
            gateway.listen = "0.0.0.0:7400".parse().unwrap();
        }
        assert!(sim.check_allowed(&public).unwrap_err().contains("services.gateway.listen"));
        assert!(Clock::System.check_allowed(&public).is_ok(), "the system clock runs anywhere");
    }
}
