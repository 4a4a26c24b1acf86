//! Verification keys from a JWKS (RFC 7517): Ed25519 (`OKP`), P-256 (`EC`) and
//! RSA keys, each bound to the one algorithm it may verify.
use std::collections::HashMap;

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm},
};

/// Keys by key id, each with the only algorithm accepted for it.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    /// Parses a JWKS document. Keys without a `kid`, and key types or algorithms
    /// other than EdDSA, ES256 and RS256, are refused rather than skipped.
    pub fn from_json(json: &[u8]) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().ok_or("a JWKS key has no kid")?;
            let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
                    if p.curve == EllipticCurve::Ed25519 =>
                {
                    Algorithm::EdDSA
                }
                (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                    if p.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                _ => return Err(format!("key {kid}: only Ed25519/EdDSA, P-256/ES256 and RSA/RS256 keys are accepted")),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
            if keys.insert(kid.clone(), (key, alg)).is_some() {
                return Err(format!("key id {kid} appears twice"));
            }
        }
        if keys.is_empty() {
            return Err("the JWKS holds no keys".into());
        }
        Ok(Self { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&(DecodingKey, Algorithm)> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Fetches a JWKS over HTTPS (or plain HTTP on loopback only).
pub async fn fetch(url: &str) -> Result<KeySet, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("auth.jwks_url: {e}"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err("auth.jwks_url must be https (plain http only on loopback)".into());
    }
    let client =
        // No redirects: the https-only rule must hold for the URL actually fetched.
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
    let body = client
        .get(parsed)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("fetching JWKS: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("fetching JWKS: {e}"))?;
    KeySet::from_json(&body)
}
