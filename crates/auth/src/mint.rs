//! Minting tokens with the development signing key (`quis token`). In
//! production an identity provider mints tokens; the services only ever verify.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use quis_core::keys::{KeyError, KeySource};
use serde::Serialize;

use crate::principal::{PrincipalKind, Role};

/// Name of the development token-signing key under the data directory.
pub const SIGNING_KEY: &str = "keys/token-signing.pem";

/// What a minted token says.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub sub: String,
    pub kind: PrincipalKind,
    pub roles: Vec<Role>,
    pub team: Option<String>,
    pub site: Option<String>,
    pub ttl: Duration,
    /// Seconds to shift `nbf` and `iat` into the future (tests of not-yet-valid tokens).
    pub not_before_offset: i64,
}

impl TokenSpec {
    pub fn new(sub: &str, kind: PrincipalKind, roles: &[Role]) -> Self {
        Self {
            sub: sub.into(),
            kind,
            roles: roles.to_vec(),
            team: None,
            site: None,
            ttl: Duration::from_secs(3600),
            not_before_offset: 0,
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    kind: PrincipalKind,
    roles: &'a [Role],
    #[serde(skip_serializing_if = "Option::is_none")]
    team: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: &'a Option<String>,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// Signs tokens with an Ed25519 key.
pub struct TokenSigner {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("kid", &self.kid).finish()
    }
}

/// Why a signer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("token-signing key: {0}")]
    Invalid(String),
}

impl TokenSigner {
    /// Loads the development signing key from a key source.
    pub fn load(keys: &dyn KeySource, issuer: &str, audience: &str) -> Result<Self, SignerError> {
        let pem = keys.load(SIGNING_KEY)?;
        let key = EncodingKey::from_ed_pem(&pem).map_err(|e| SignerError::Invalid(e.to_string()))?;
        let kid = crate::devkeys::kid_from_private_pem(&pem).map_err(SignerError::Invalid)?;
        Ok(Self { key, kid, issuer: issuer.into(), audience: audience.into() })
    }

    /// Mints a token; returns it with its `jti`.
    pub fn mint(&self, spec: &TokenSpec) -> Result<(String, String), SignerError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let iat = now + spec.not_before_offset;
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &spec.sub,
            kind: spec.kind,
            roles: &spec.roles,
            team: &spec.team,
            site: &spec.site,
            jti: jti.clone(),
            iat,
            nbf: iat,
            exp: iat + spec.ttl.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| SignerError::Invalid(e.to_string()))?;
        Ok((token, jti))
    }
}
