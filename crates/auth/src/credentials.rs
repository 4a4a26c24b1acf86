//! Credentials one service presents to another (policy and vault to the
//! ledger, vault to policy): a tonic interceptor that attaches a bearer token
//! to every outgoing call. The token comes either from a file that an
//! identity-provider sidecar keeps fresh (re-read whenever it changes on disk)
//! or, for the embedded default (`quis up`), is minted in-process with the
//! development signing key and renewed well before it expires.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tonic::{Request, Status, metadata::MetadataValue, service::Interceptor};

use crate::{
    mint::{TokenSigner, TokenSpec},
    principal::{PrincipalKind, Role},
};

/// Why no token could be attached.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("service token file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("minting the service token: {0}")]
    Mint(String),
}

/// Lifetime of a minted service token; renewed when a third is left.
const MINTED_TOKEN_TTL: Duration = Duration::from_secs(3600);

enum Source {
    File { path: PathBuf, cached: Mutex<Option<FileToken>> },
    Minted { signer: TokenSigner, spec: TokenSpec, cached: Mutex<Option<(String, Instant)>> },
}

struct FileToken {
    modified: Option<SystemTime>,
    len: u64,
    header: MetadataValue<tonic::metadata::Ascii>,
}

/// A bearer token for outgoing calls; cheap to clone.
#[derive(Clone)]
pub struct ServiceCredentials(Arc<Source>);

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        match &*self.0 {
            Source::File { path, .. } => f.debug_struct("ServiceCredentials").field("file", path).finish(),
            Source::Minted { spec, .. } => f.debug_struct("ServiceCredentials").field("minted_for", &spec.sub).finish(),
        }
    }
}

impl ServiceCredentials {
    /// A token read from `path` (one line, surrounding whitespace ignored), read
    /// again whenever the file's modification time or size changes. Fails now if
    /// the file cannot be read, so that a misconfiguration shows at start.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, CredentialsError> {
        let credentials = Self(Arc::new(Source::File { path: path.into(), cached: Mutex::new(None) }));
        credentials.header()?;
        Ok(credentials)
    }

    /// A token for the service principal `service` (kind `service`, role `service`),
    /// minted with `signer` for `ttl` and renewed once less than a third of it is left.
    pub fn minted(signer: TokenSigner, service: &str, ttl: Duration) -> Self {
        let spec = TokenSpec { ttl, ..TokenSpec::new(service, PrincipalKind::Service, &[Role::Service]) };
        Self(Arc::new(Source::Minted { signer, spec, cached: Mutex::new(None) }))
    }

    /// The credentials a service reads from its configuration: `token_file` (relative to
    /// `data_dir`) when set, else tokens for `service` minted with the development signing
    /// key (the embedded default, `quis init`). `section` names the setting in errors.
    pub fn configured(
        config: &quis_core::QuisConfig,
        section: &str,
        token_file: Option<&std::path::Path>,
        service: &str,
    ) -> Result<Self, String> {
        match token_file {
            Some(path) => Self::from_file(config.path(path)).map_err(|e| e.to_string()),
            None => {
                let keys = quis_core::keys::FileKeySource::new(&config.data_dir);
                let signer = TokenSigner::load(&keys, &config.auth.issuer, &config.auth.audience).map_err(|e| {
                    format!(
                        "{section} needs a service token: set {section}.token_file, or run `quis init` so that \
                         {} exists ({e})",
                        crate::mint::SIGNING_KEY
                    )
                })?;
                Ok(Self::minted(signer, service, MINTED_TOKEN_TTL))
            }
        }
    }

    /// The `authorization` header value for the next call.
    pub fn header(&self) -> Result<MetadataValue<tonic::metadata::Ascii>, CredentialsError> {
        match &*self.0 {
            Source::File { path, cached } => {
                let fail = |reason: String| CredentialsError::File { path: path.display().to_string(), reason };
                let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
                let modified = meta.modified().ok();
                let mut cached = cached.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(token) = cached.as_ref()
                    && token.modified == modified
                    && token.len == meta.len()
                {
                    return Ok(token.header.clone());
                }
                let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
                let token = text.trim();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(fail("must hold one token".into()));
                }
                let header = bearer(token).ok_or_else(|| fail("the token is not printable ASCII".into()))?;
                *cached = Some(FileToken { modified, len: meta.len(), header: header.clone() });
                Ok(header)
            }
            Source::Minted { signer, spec, cached } => {
                let mut cached = cached.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((token, renew_at)) = cached.as_ref()
                    && Instant::now() < *renew_at
                {
                    return bearer(token).ok_or_else(|| CredentialsError::Mint("unprintable token".into()));
                }
                let (token, _) = signer.mint(spec).map_err(|e| CredentialsError::Mint(e.to_string()))?;
                let header = bearer(&token).ok_or_else(|| CredentialsError::Mint("unprintable token".into()))?;
                *cached = Some((token, Instant::now() + spec.ttl * 2 / 3));
                Ok(header)
            }
        }
    }
}

fn bearer(token: &str) -> Option<MetadataValue<tonic::metadata::Ascii>> {
    format!("Bearer {token}").parse().ok()
}

impl Interceptor for ServiceCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.header() {
            Ok(header) => {
                request.metadata_mut().insert("authorization", header);
                Ok(request)
            }
            Err(e) => {
                tracing::error!(error = %e, "no service credentials for an outgoing call");
                Err(Status::unavailable("service credentials unavailable"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").expect("write");
        let mut credentials = ServiceCredentials::from_file(&path).expect("credentials");
        let first = credentials.call(Request::new(())).expect("call");
        assert_eq!(first.metadata().get("authorization").expect("header"), "Bearer first-token");
        std::fs::write(&path, "second-token-longer").expect("write");
        let second = credentials.call(Request::new(())).expect("call");
        assert_eq!(second.metadata().get("authorization").expect("header"), "Bearer second-token-longer");
        std::fs::write(&path, "two tokens").expect("write");
        assert_eq!(credentials.call(Request::new(())).expect_err("refused").code(), tonic::Code::Unavailable);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(credentials.call(Request::new(())).expect_err("refused").code(), tonic::Code::Unavailable);
    }

    #[test]
    fn a_missing_token_file_fails_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(ServiceCredentials::from_file(dir.path().join("absent")).is_err());
    }

    #[test]
    fn a_minted_token_names_the_service_and_is_reused_until_renewal() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::devkeys::init(dir.path()).expect("dev keys");
        let keys = quis_core::keys::FileKeySource::new(dir.path());
        let signer = TokenSigner::load(&keys, "https://quis.local", "quis").expect("signer");
        let mut credentials = ServiceCredentials::minted(signer, "policy", Duration::from_secs(600));
        let a = credentials.call(Request::new(())).expect("call");
        let b = credentials.call(Request::new(())).expect("call");
        let header = a.metadata().get("authorization").expect("header").to_str().expect("ascii").to_string();
        assert_eq!(Some(header.as_str()), b.metadata().get("authorization").and_then(|v| v.to_str().ok()));
        let token = header.strip_prefix("Bearer ").expect("bearer");
        let claims = token.split('.').nth(1).expect("claims");
        use base64::Engine;
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).expect("base64"))
                .expect("json");
        assert_eq!(claims["sub"], "policy");
        assert_eq!(claims["kind"], "service");
        assert_eq!(claims["roles"], serde_json::json!(["service"]));
    }
}
