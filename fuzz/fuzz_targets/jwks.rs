//! JWKS documents, fetched from a URL the operator configures.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quis_auth::jwks::KeySet::from_json(data);
});
