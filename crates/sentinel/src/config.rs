//! Sentinel's configuration is the `sentinel` section of the suite's
//! configuration (`quis_core::sentinel`); this module adds the check of the
//! verifier keys, which needs the signed-note parser.
pub use quis_core::sentinel::*;

/// Refuses a configuration that cannot work, naming the key: the section's own
/// rules, then the syntax and type of every verifier key.
pub fn validate(config: &SentinelConfig) -> Result<(), SentinelConfigError> {
    config.validate()?;
    let refuse = |key: String, rule: &str| Err(SentinelConfigError { key, rule: rule.to_string() });
    for (i, k) in config.log_vkeys.iter().enumerate() {
        if quis_tlog::note::Verifier::from_vkey(k).is_err() {
            return refuse(format!("log_vkeys[{i}]"), "is not a verifier key <name>+<hex id>+<base64>");
        }
    }
    for (i, k) in config.witness_vkeys.iter().enumerate() {
        let v = quis_tlog::note::Verifier::from_vkey(k);
        if v.is_err() || v.is_ok_and(|v| v.key_type() != quis_tlog::note::KEY_TYPE_COSIGNATURE_V1) {
            return refuse(format!("witness_vkeys[{i}]"), "is not a cosignature/v1 (type 0x04) verifier key");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_carry_the_numbers_of_the_api() {
        use quis_proto::sentinel::Severity as P;
        for (ours, theirs) in [
            (Severity::Low, P::Low),
            (Severity::Medium, P::Medium),
            (Severity::High, P::High),
            (Severity::Critical, P::Critical),
        ] {
            assert_eq!(ours.to_proto(), theirs as i32);
            assert_eq!(Severity::from_proto(theirs as i32), Some(ours));
        }
        assert_eq!(Severity::from_proto(P::Unspecified as i32), None);
    }
}
