//! Bearer JWT verification: signature against the JWKS (EdDSA, ES256, RS256
//! only, each key bound to its algorithm), issuer, audience, expiry and
//! not-before with bounded skew, required claims, then the revocation list.
//! A verified token is cached until it expires, so a repeated call costs a
//! hash and a lookup, not a signature check; revocation is checked every time.
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use quis_core::{QuisConfig, error::check_id};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{
    error::AuthError,
    jwks::{self, KeySet},
    principal::{Principal, PrincipalKind, Role},
    revocation::{RevocationList, RevocationStore},
};

/// Why verification could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("JWKS {source_name}: {reason}")]
    Jwks { source_name: String, reason: String },
    #[error("revocation store: {0}")]
    Store(#[from] sqlx::Error),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    kind: PrincipalKind,
    #[serde(default)]
    roles: Vec<String>,
    team: Option<String>,
    site: Option<String>,
    jti: String,
    exp: u64,
    iat: u64,
}

/// Verifies bearer tokens for one service.
pub struct TokenVerifier {
    keys: ArcSwap<KeySet>,
    validation: [Validation; 3],
    leeway: u64,
    max_lifetime: u64,
    cache: moka::sync::Cache<[u8; 32], Arc<Principal>>,
    revocations: Arc<RevocationList>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("keys", &self.keys.load().len()).finish()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl TokenVerifier {
    /// Builds a verifier from the configuration: loads the JWKS, connects the
    /// revocation store and starts the background reloads (until `stop`).
    pub async fn from_config(config: &QuisConfig, stop: CancellationToken) -> Result<Arc<Self>, SetupError> {
        let auth = &config.auth;
        let keys = match &auth.jwks_url {
            Some(url) => {
                jwks::fetch(url).await.map_err(|reason| SetupError::Jwks { source_name: url.clone(), reason })?
            }
            None => {
                let path = config.path(&auth.jwks_file);
                let bytes = std::fs::read(&path)
                    .map_err(|e| SetupError::Jwks { source_name: path.display().to_string(), reason: e.to_string() })?;
                KeySet::from_json(&bytes)
                    .map_err(|reason| SetupError::Jwks { source_name: path.display().to_string(), reason })?
            }
        };
        let revocations = Arc::new(RevocationList::new(Duration::from_secs(auth.revocation_max_staleness_secs)));
        let store_url = auth.revocation_store.clone().unwrap_or_else(|| config.store_url("identity"));
        let store = RevocationStore::connect(&store_url).await?;
        revocations.refresh(&store).await?;
        revocations.spawn_refresher(store, Duration::from_millis(auth.revocation_poll_ms), stop.clone());
        let verifier = Arc::new(Self::new(
            keys,
            &auth.issuer,
            &auth.audience,
            auth.leeway_secs,
            auth.max_token_lifetime_secs,
            auth.cache_capacity,
            revocations,
        ));
        if let Some(url) = auth.jwks_url.clone() {
            verifier.spawn_jwks_refresh(url, Duration::from_secs(auth.jwks_refresh_secs.max(10)), stop);
        }
        Ok(verifier)
    }

    pub fn new(
        keys: KeySet,
        issuer: &str,
        audience: &str,
        leeway: u64,
        max_lifetime: u64,
        cache_capacity: u64,
        revocations: Arc<RevocationList>,
    ) -> Self {
        let validation = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256].map(|alg| {
            let mut v = Validation::new(alg);
            v.set_issuer(&[issuer]);
            v.set_audience(&[audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v.leeway = leeway;
            v.validate_exp = true;
            v.validate_nbf = true;
            v
        });
        let cache = moka::sync::Cache::builder()
            .max_capacity(cache_capacity)
            .time_to_live(Duration::from_secs(max_lifetime.max(60)))
            .build();
        Self { keys: ArcSwap::from_pointee(keys), validation, leeway, max_lifetime, cache, revocations }
    }

    /// The revocation list this verifier consults.
    pub fn revocations(&self) -> &Arc<RevocationList> {
        &self.revocations
    }

    fn spawn_jwks_refresh(self: &Arc<Self>, url: String, every: Duration, stop: CancellationToken) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match jwks::fetch(&url).await {
                    Ok(keys) => me.keys.store(Arc::new(keys)),
                    Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys"),
                }
            }
        });
    }

    /// Verifies an `authorization` header value.
    pub fn verify_header(&self, value: Option<&http::HeaderValue>) -> Result<Arc<Principal>, AuthError> {
        let value = value.ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
        let token =
            value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(AuthError::NotBearer)?;
        self.verify(token.trim())
    }

    /// Verifies a compact JWS.
    pub fn verify(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        if token.len() > 16 * 1024 {
            return Err(AuthError::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let principal = match self.cache.get(&digest) {
            Some(p) if p.expires_at + self.leeway > now() => p,
            Some(_) => {
                self.cache.invalidate(&digest);
                return Err(AuthError::Expired);
            }
            None => {
                let p = Arc::new(self.verify_uncached(token)?);
                self.cache.insert(digest, Arc::clone(&p));
                p
            }
        };
        self.revocations.check(&principal)?;
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str) -> Result<Principal, AuthError> {
        // Read `alg` ourselves first so that `none` and HMAC get their own reason.
        let header_b64 = token.split('.').next().ok_or(AuthError::Malformed)?;
        let header_json = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| AuthError::Malformed)?;
        let header: serde_json::Value = serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
        let alg = header.get("alg").and_then(|a| a.as_str()).ok_or(AuthError::Malformed)?;
        let index = match alg {
            "EdDSA" => 0,
            "ES256" => 1,
            "RS256" => 2,
            other => return Err(AuthError::AlgorithmNotAllowed(other.chars().take(16).collect())),
        };
        let kid = header.get("kid").and_then(|k| k.as_str()).ok_or(AuthError::UnknownKey)?;
        let keys = self.keys.load();
        let (key, key_alg) = keys.get(kid).ok_or(AuthError::UnknownKey)?;
        if *key_alg != self.validation[index].algorithms[0] {
            // A key verifies only with the algorithm it was published for.
            return Err(AuthError::AlgorithmNotAllowed(alg.to_string()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation[index]).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) => AuthError::InvalidClaims(format!("{c} is required")),
            ErrorKind::Json(_) => AuthError::InvalidClaims("sub, kind, jti, iat and exp are required".into()),
            _ => AuthError::Malformed,
        })?;
        let c = data.claims;
        let now = now();
        if c.iat > now + self.leeway {
            return Err(AuthError::NotYetValid);
        }
        if c.exp.saturating_sub(c.iat) > self.max_lifetime {
            return Err(AuthError::InvalidClaims("lifetime exceeds auth.max_token_lifetime_secs".into()));
        }
        check_id("sub", &c.sub).map_err(|v| AuthError::InvalidClaims(format!("{}: {}", v.field, v.rule)))?;
        if c.jti.is_empty() || c.jti.len() > 128 || !c.jti.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::InvalidClaims("jti must be 1 to 128 printable characters".into()));
        }
        for (field, value) in [("team", &c.team), ("site", &c.site)] {
            if let Some(v) = value {
                check_id(field, v).map_err(|v| AuthError::InvalidClaims(format!("{}: {}", v.field, v.rule)))?;
            }
        }
        let mut roles = std::collections::BTreeSet::new();
        for r in &c.roles {
            match r.parse::<Role>() {
                Ok(role) => {
                    roles.insert(role);
                }
                // Roles of other systems in a shared IdP are ignored, never guessed.
                Err(_) => tracing::debug!(role = %r, "ignoring unknown role"),
            }
        }
        if roles.contains(&Role::Service) != (c.kind == PrincipalKind::Service) {
            return Err(AuthError::InvalidClaims("the service role belongs to service principals only".into()));
        }
        Ok(Principal { id: c.sub, kind: c.kind, roles, team: c.team, site: c.site, token_id: c.jti, expires_at: c.exp })
    }
}
