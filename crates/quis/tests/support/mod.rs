//! A real suite for tests: development keys in a temporary data directory,
//! backends served by the runtime on `127.0.0.1:0` listeners, the gateway in
//! front, and tokens minted with the directory's signing key. The generic
//! helpers (listeners, channels, tokens on requests, polling) are `quis-testkit`'s.
#![allow(dead_code)]

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use quis_auth::{
    PrincipalKind, Role, TokenVerifier, devkeys,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, health::Readiness, keys::FileKeySource};
use quis_runtime::{BuiltService, ServiceContext};
pub use quis_testkit::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub struct Suite {
    pub dir: tempfile::TempDir,
    pub config: Arc<QuisConfig>,
    pub signer: TokenSigner,
    pub stop: CancellationToken,
    pub gateway: SocketAddr,
    pub echo: SocketAddr,
    pub identity: SocketAddr,
}

/// A configuration on a fresh data directory with development keys.
pub fn test_config(dir: &Path) -> QuisConfig {
    devkeys::init(dir).expect("dev keys");
    let mut config = QuisConfig { data_dir: dir.to_path_buf(), ..QuisConfig::default() };
    config.shutdown.grace_secs = 5;
    config.gateway.health_check_interval_ms = 200;
    config
}

/// A fresh PostgreSQL database on the local server, or `None` for the embedded SQLite default.
pub async fn store_url(postgres: bool) -> Option<String> {
    if postgres { Some(postgres_url().await) } else { None }
}

/// The context a backend of `config` runs in, with its own verifier.
pub async fn ctx(config: &Arc<QuisConfig>, stop: &CancellationToken) -> ServiceContext {
    let verifier = TokenVerifier::from_config(config, stop.clone()).await.expect("verifier");
    ServiceContext { config: Arc::clone(config), verifier, shutdown: stop.clone() }
}

/// Serves a built backend on `listener` until its context's shutdown; the task ends once it has stopped.
pub fn serve_on(ctx: ServiceContext, built: BuiltService, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        quis_runtime::serve(&ctx, built, listener, Readiness::default()).await.expect("serve");
    })
}

/// Starts the gateway for `config` (whose upstreams are already set).
pub async fn serve_gateway(config: &Arc<QuisConfig>, stop: CancellationToken) -> SocketAddr {
    let (l, addr) = listener().await;
    let verifier = TokenVerifier::from_config(config, stop.clone()).await.expect("verifier");
    let revocations_fresh = verifier.revocations().readiness();
    let gateway = quis_gateway::Gateway::new(Arc::clone(config), verifier).expect("gateway");
    quis_core::health::spawn_drive(
        gateway.health_reporter(),
        Vec::new(),
        vec![Arc::new(quis_gateway::UpstreamsReady(Arc::clone(&gateway))), revocations_fresh],
        Readiness::default(),
        Duration::from_millis(200),
        stop.clone(),
    )
    .await;
    tokio::spawn(Arc::clone(&gateway).watch_health(stop.clone()));
    tokio::spawn(quis_gateway::serve(gateway, l, stop));
    addr
}

impl Suite {
    /// Echo and identity behind the gateway; `tune` adjusts the configuration first.
    pub async fn start(tune: impl FnOnce(&mut QuisConfig)) -> Suite {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tune(&mut config);
        let stop = CancellationToken::new();
        let base = Arc::new(config.clone());
        let echo = serve_backend(&base, quis_echo::build(), stop.clone()).await;
        let identity = quis_identity::build(&base.revocation_store_url(), base.auth.max_token_lifetime_secs)
            .await
            .expect("identity");
        let identity = serve_backend(&base, identity, stop.clone()).await;
        config.gateway.upstreams.entry("echo".into()).or_insert_with(|| vec![format!("http://{echo}")]);
        config.gateway.upstreams.insert("identity".into(), vec![format!("http://{identity}")]);
        let config = Arc::new(config);
        let gateway = serve_gateway(&config, stop.clone()).await;
        let signer = TokenSigner::load(&FileKeySource::new(dir.path()), &config.auth.issuer, &config.auth.audience)
            .expect("signer");
        Suite { dir, config, signer, stop, gateway, echo, identity }
    }

    pub fn token(&self, sub: &str, roles: &[Role]) -> String {
        self.token_with_id(sub, roles).0
    }

    /// A token and its `jti`.
    pub fn token_with_id(&self, sub: &str, roles: &[Role]) -> (String, String) {
        let kind = if roles.contains(&Role::Service) { PrincipalKind::Service } else { PrincipalKind::Staff };
        self.signer.mint(&TokenSpec::new(sub, kind, roles)).expect("mint")
    }

    pub async fn channel(&self) -> Channel {
        channel(self.gateway).await
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A token for `alice`, a caseworker, signed with the data directory's key.
pub fn caseworker_token(dir: &Path, config: &QuisConfig) -> String {
    let signer =
        TokenSigner::load(&FileKeySource::new(dir), &config.auth.issuer, &config.auth.audience).expect("signer");
    signer.mint(&TokenSpec::new("alice", PrincipalKind::Staff, &[Role::Caseworker])).expect("mint").0
}

/// A token signed with `pem` (an Ed25519 PKCS#8 key) or unsigned, with arbitrary header and claims.
pub fn forge(header: serde_json::Value, claims: serde_json::Value, signature: &[u8]) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("json"));
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(signature))
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// The kid of the suite's signing key.
pub fn kid(dir: &Path) -> String {
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("keys/jwks.json")).expect("jwks")).expect("json");
    jwks["keys"][0]["kid"].as_str().expect("kid").to_string()
}

pub fn claims(config: &QuisConfig) -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "iss": config.auth.issuer, "aud": config.auth.audience, "sub": "mallory", "kind": "staff",
        "roles": ["caseworker"], "jti": uuid(), "iat": now, "nbf": now, "exp": now + 600,
    })
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
