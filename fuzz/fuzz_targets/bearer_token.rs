//! Bearer tokens: any caller can send any bytes in `authorization`.
#![no_main]

use std::{sync::{Arc, OnceLock}, time::Duration};

use libfuzzer_sys::fuzz_target;
use quis_auth::{TokenVerifier, jwks::KeySet, revocation::RevocationList};

fn verifier() -> &'static TokenVerifier {
    static V: OnceLock<TokenVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let keys = KeySet::from_json(jwks).expect("fixed JWKS");
        let revocations = Arc::new(RevocationList::new(Duration::from_secs(1 << 40)));
        TokenVerifier::new(keys, "https://quis.local", "quis", 30, 3600, 1000, revocations)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let _ = verifier().verify_header(Some(&value));
    }
});
