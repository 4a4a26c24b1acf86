//! Layered configuration: defaults → TOML file → `QUIS_*` environment → flags.
//!
//! One file configures the whole suite; each process reads the sections it
//! needs. Environment variables nest with `__`, e.g.
//! `QUIS_GATEWAY__MAX_MESSAGE_BYTES=1048576` or `QUIS_SERVICES__ECHO__LISTEN=0.0.0.0:8089`.
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables read by [`QuisConfig::load`].
pub const ENV_PREFIX: &str = "QUIS_";

/// The top-level keys of [`QuisConfig`], lower case, as environment variables name them.
const SECTIONS: &[&str] = &[
    "data_dir", "log", "auth", "tls", "shutdown", "store", "gateway", "ledger", "witness", "policy", "services",
    "vault", "sentinel",
];

/// The whole configuration of a Quis process.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuisConfig {
    /// Directory holding keys, certificates and the embedded SQLite stores.
    pub data_dir: PathBuf,
    /// Where services read "now": the system clock, unless `quis simulate` or `quis demo`
    /// hand the suite a simulated one in-process. No configuration source can set it.
    #[serde(skip)]
    pub clock: crate::Clock,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub shutdown: ShutdownConfig,
    pub store: StoreConfig,
    pub gateway: GatewayConfig,
    pub ledger: LedgerConfig,
    pub witness: WitnessConfig,
    pub policy: PolicyConfig,
    pub vault: crate::vault::VaultConfig,
    pub sentinel: crate::sentinel::SentinelConfig,
    /// Listen addresses per service name (`gateway`, `identity`, `echo`, ...).
    pub services: BTreeMap<String, ServiceListen>,
}

impl Default for QuisConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".quis"),
            clock: crate::Clock::System,
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            shutdown: ShutdownConfig::default(),
            store: StoreConfig::default(),
            gateway: GatewayConfig::default(),
            ledger: LedgerConfig::default(),
            witness: WitnessConfig::default(),
            policy: PolicyConfig::default(),
            vault: crate::vault::VaultConfig::default(),
            sentinel: Default::default(),
            services: default_services(),
        }
    }
}

/// Default loopback ports: gRPC on 74xx, admin HTTP on 75xx.
pub const DEFAULT_PORTS: &[(&str, u16)] = &[
    ("gateway", 7400),
    ("identity", 7401),
    ("ledger", 7402),
    ("witness", 7403),
    ("policy", 7404),
    ("vault", 7405),
    ("sentinel", 7406),
    ("echo", 7409),
];

fn default_services() -> BTreeMap<String, ServiceListen> {
    DEFAULT_PORTS
        .iter()
        .map(|(name, port)| {
            (
                (*name).to_string(),
                ServiceListen {
                    listen: SocketAddr::from(([127, 0, 0, 1], *port)),
                    admin_listen: SocketAddr::from(([127, 0, 0, 1], port + 100)),
                },
            )
        })
        .collect()
}

/// Where one service listens.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceListen {
    /// The gRPC (or, for the gateway, public) listener.
    pub listen: SocketAddr,
    /// The admin HTTP listener: `/livez`, `/readyz`, `/metrics`.
    pub admin_listen: SocketAddr,
}

/// Log output.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `quis_gateway=debug,info`.
    pub level: String,
    /// OTLP/gRPC collector endpoint for traces, e.g. `http://127.0.0.1:4317`; unset disables export.
    pub otlp_endpoint: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: "info".into(), otlp_endpoint: None }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Bearer token verification, shared by every service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// JWKS file; relative paths are under `data_dir`.
    pub jwks_file: PathBuf,
    /// JWKS URL (`https://` or loopback `http://`); when set it wins over `jwks_file`.
    pub jwks_url: Option<String>,
    /// How often a JWKS URL is fetched again.
    pub jwks_refresh_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`; at most 300.
    pub leeway_secs: u64,
    /// Longest accepted token lifetime (`exp - iat`), in seconds.
    pub max_token_lifetime_secs: u64,
    /// Verified tokens kept in memory (each until it expires).
    pub cache_capacity: u64,
    /// How often each service reloads the shared revocation list.
    pub revocation_poll_ms: u64,
    /// If the revocation list could not be reloaded for this long, every token is refused (fail closed).
    pub revocation_max_staleness_secs: u64,
    /// The revocation list store; unset means the identity service's store
    /// (`store.url`, or `sqlite://<data_dir>/identity.db` on the embedded default).
    pub revocation_store: Option<String>,
    /// Service principals allowed to say where a call came from: a call that carries one of
    /// their verified tokens in `quis-forwarded-by` has its `quis-source-address` believed;
    /// any other caller's source address is its TCP peer.
    pub trusted_forwarders: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "https://quis.local".into(),
            audience: "quis".into(),
            jwks_file: PathBuf::from("keys/jwks.json"),
            jwks_url: None,
            jwks_refresh_secs: 300,
            leeway_secs: 30,
            max_token_lifetime_secs: 7 * 24 * 3600,
            cache_capacity: 100_000,
            revocation_poll_ms: 1000,
            revocation_max_staleness_secs: 30,
            revocation_store: None,
            trusted_forwarders: vec!["gateway".into()],
        }
    }
}

/// TLS on listeners and between services.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve TLS on every listener and dial upstreams with TLS.
    pub enabled: bool,
    /// Require and verify client certificates on service listeners (mutual TLS).
    pub mutual: bool,
    /// PEM certificate chain of this process; relative paths are under `data_dir`.
    pub cert: PathBuf,
    /// PEM private key of this process (mode 0600).
    pub key: PathBuf,
    /// PEM CA that signs the services' certificates.
    pub ca: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            mutual: false,
            cert: PathBuf::from("pki/service.crt"),
            key: PathBuf::from("pki/service.key"),
            ca: PathBuf::from("pki/ca.crt"),
        }
    }
}

/// Graceful shutdown.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Longest wait for in-flight calls after the first signal; a second signal exits at once.
    pub grace_secs: u64,
    /// Time between turning health NOT_SERVING and closing listeners, so load balancers notice.
    pub drain_delay_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace_secs: 20, drain_delay_ms: 0 }
    }
}

/// Persistent stores.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A `postgres://` URL shared by every service; unset means one SQLite file per service under `data_dir`.
    pub url: Option<String>,
}

/// The gateway's routing and edge limits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Upstream replicas per service short name: `echo` serves `/quis.echo.v1.*/`.
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// The ledger's tlog-tiles HTTP base URL, for `/checkpoint` and `/tile/…`.
    pub tiles_upstream: Option<String>,
    /// Full method paths or `/package.Service/` prefixes that the public listener never routes.
    pub internal_methods: Vec<String>,
    pub rate_limit: RateLimitConfig,
    /// Cap on `grpc-timeout`; calls without one get this deadline.
    pub max_grpc_timeout_ms: u64,
    /// Largest gRPC request message accepted.
    pub max_message_bytes: u32,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// Most simultaneous client connections from one source address.
    pub max_connections_per_address: usize,
    /// A new connection must complete its TLS handshake (or, in plain text, send its first bytes)
    /// within this time; HTTP/1.1 request headers must also arrive within it.
    pub header_read_timeout_ms: u64,
    /// Most concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// Connect timeout towards an upstream replica.
    pub upstream_connect_timeout_ms: u64,
    /// Interval of the active health checks of upstream replicas.
    pub health_check_interval_ms: u64,
    /// The gateway's own service token (relative to `data_dir`), sent to upstreams in
    /// `quis-forwarded-by` so that they believe its `quis-source-address`; unset: minted
    /// with the development signing key (`quis init`) for `service_principal`.
    pub token_file: Option<PathBuf>,
    /// The gateway's service principal, one of `auth.trusted_forwarders`.
    pub service_principal: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            upstreams: BTreeMap::new(),
            tiles_upstream: None,
            internal_methods: vec!["/quis.ledger.v1.LedgerService/AppendEvents".into()],
            rate_limit: RateLimitConfig::default(),
            max_grpc_timeout_ms: 30_000,
            max_message_bytes: 4 * 1024 * 1024,
            max_connections: 4096,
            max_connections_per_address: 256,
            header_read_timeout_ms: 5_000,
            max_concurrent_streams: 256,
            upstream_connect_timeout_ms: 1_000,
            health_check_interval_ms: 1_000,
            token_file: None,
            service_principal: "gateway".into(),
        }
    }
}

/// The ledger: its log identity, sequencing and who may append what.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// The log's origin line in checkpoints (a schema-less URL-like name).
    pub origin: String,
    /// The tlog-tiles HTTP listener (`/checkpoint`, `/tile/…`).
    pub http_listen: SocketAddr,
    /// How often a new checkpoint is signed when the tree has grown.
    pub checkpoint_interval_ms: u64,
    /// Most entries written in one transaction.
    pub max_batch_entries: usize,
    /// The log's Ed25519 signing seed (hex, mode 0600); created on first start if missing.
    pub log_key: PathBuf,
    /// Further log keys that also sign every checkpoint, for a key rotation:
    /// add the new key here, let verifiers learn it, then make it `log_key`.
    pub additional_log_keys: Vec<PathBuf>,
    /// The AES-256 key that encrypts event details (hex, mode 0600); created on first start if missing.
    pub details_key: PathBuf,
    /// Event kinds (`access`, `admin`, `triage`) each service principal may append.
    pub appenders: BTreeMap<String, Vec<String>>,
    /// Service principals that may read entries (besides auditors and investigators).
    pub reader_services: Vec<String>,
    /// Service principals that may open event details (besides auditors and investigators):
    /// the vault, which opens its own commitments to rebuild its access index, and sentinel,
    /// which compares subjects with policy's entities to explain accesses.
    pub detail_reader_services: Vec<String>,
    /// Witnesses every new checkpoint is submitted to (c2sp.org/tlog-witness).
    pub witnesses: Vec<WitnessEndpoint>,
    /// Cosignatures a checkpoint needs to be marked witnessed.
    pub witness_quorum: usize,
    /// How often the latest checkpoint goes back to the witnesses even if the tree did not grow,
    /// so that its cosignature timestamps stay fresh and auditors (`quis verify --max-age-secs`)
    /// can tell a live log from a frozen view; 0 never re-submits.
    pub witness_refresh_secs: u64,
}

/// A witness the ledger submits checkpoints to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WitnessEndpoint {
    /// Base URL; the ledger posts to `<url>/add-checkpoint`.
    pub url: String,
    /// The witness's verifier key, `<name>+<key id>+<base64>`.
    pub vkey: String,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            origin: "quis.local/ledger".into(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 7602)),
            checkpoint_interval_ms: 1_000,
            max_batch_entries: 8_192,
            log_key: PathBuf::from("keys/ledger-log.key"),
            additional_log_keys: Vec::new(),
            details_key: PathBuf::from("keys/ledger-details.key"),
            appenders: [("vault", "access"), ("policy", "admin"), ("sentinel", "triage")]
                .into_iter()
                .map(|(s, k)| (s.to_string(), vec![k.to_string()]))
                .collect(),
            reader_services: vec!["sentinel".into(), "vault".into()],
            detail_reader_services: vec!["vault".into(), "sentinel".into()],
            witnesses: Vec::new(),
            witness_quorum: 0,
            witness_refresh_secs: 300,
        }
    }
}

/// The witness (c2sp.org/tlog-witness): its cosigning key and the logs it cosigns for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's key name, in its verifier key and cosignature lines.
    pub name: String,
    /// The witness's Ed25519 cosigning seed (hex, mode 0600); created on first start if missing.
    pub key: PathBuf,
    /// Known logs: origin → the log's verifier keys (`<name>+<key id>+<base64>`); other origins are refused.
    pub logs: BTreeMap<String, Vec<String>>,
}

impl Default for WitnessConfig {
    fn default() -> Self {
        Self { name: "quis.local/witness".into(), key: PathBuf::from("keys/witness.key"), logs: BTreeMap::new() }
    }
}

/// The policy service: where it records admin events, how it authenticates
/// there, and how fresh its decisions are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The ledger's gRPC URL for admin events; unset means `http://<services.ledger.listen>`
    /// (`https://` when `tls.enabled`).
    pub ledger_url: Option<String>,
    /// A file holding this service's bearer token for the ledger, re-read when it changes;
    /// unset means a token minted in-process with the development signing key (`quis init`).
    pub token_file: Option<PathBuf>,
    /// The service principal (`sub`) of minted tokens; the ledger's `appenders` must list it for `admin`.
    pub service_principal: String,
    /// Every check first reads the head of the change feed (shared by concurrent checks), so a
    /// change committed before the check arrived is always applied. `false` polls every
    /// `poll_interval_ms` instead (faster, but a change may take that long to apply).
    pub read_your_writes: bool,
    /// Poll interval of the change feed when `read_your_writes` is off (and the idle refresh when on).
    pub poll_interval_ms: u64,
    /// Largest policy set accepted, in bytes.
    pub max_policy_set_bytes: usize,
    /// Largest request message accepted (bulk upserts), in bytes.
    pub max_message_bytes: usize,
    /// Service principals that may read entities and their change feed but never change them.
    pub read_only_services: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            ledger_url: None,
            token_file: None,
            service_principal: "policy".into(),
            read_your_writes: true,
            poll_interval_ms: 1_000,
            max_policy_set_bytes: 256 * 1024,
            max_message_bytes: 64 * 1024 * 1024,
            read_only_services: vec!["sentinel".into()],
        }
    }
}

/// Token-bucket rate limits at the gateway.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained calls per second per principal (`sub`).
    pub per_principal_per_sec: u32,
    /// Burst per principal.
    pub per_principal_burst: u32,
    /// Sustained calls per second per source address.
    pub per_address_per_sec: u32,
    /// Burst per source address.
    pub per_address_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_principal_per_sec: 5_000,
            per_principal_burst: 10_000,
            per_address_per_sec: 20_000,
            per_address_burst: 40_000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    #[error(transparent)]
    Sentinel(#[from] crate::sentinel::SentinelConfigError),
}

impl QuisConfig {
    /// Loads defaults, then `file` (if any), then `QUIS_*` variables, then `overrides`
    /// (the flags, as a serializable partial tree).
    pub fn load(file: Option<&std::path::Path>, overrides: Option<Figment>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(QuisConfig::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables naming a known section are settings (QUIS_CONFIG names the file,
        // QUIS_TOKEN carries a CLI token); within a section, unknown keys are errors.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| {
                    let key = key.as_str().to_ascii_lowercase();
                    SECTIONS.iter().any(|s| key == *s || key.starts_with(&format!("{s}__")))
                })
                .split("__"),
        );
        if let Some(overrides) = overrides {
            figment = figment.merge(overrides);
        }
        let config: QuisConfig = figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, rule: &str| Err(ConfigError::Invalid { field, rule: rule.to_string() });
        if self.auth.leeway_secs > 300 {
            return invalid("auth.leeway_secs", "must be at most 300");
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            return invalid("auth.issuer", "issuer and audience must be set");
        }
        if self.auth.revocation_poll_ms == 0 || self.auth.revocation_poll_ms > 5_000 {
            return invalid("auth.revocation_poll_ms", "must be 1 to 5000 so revocations apply within seconds");
        }
        let id_rule = "must be 1 to 64 characters of [a-z0-9-]";
        if self.auth.trusted_forwarders.iter().any(|f| crate::error::check_id("", f).is_err()) {
            return invalid("auth.trusted_forwarders", id_rule);
        }
        if crate::error::check_id("", &self.gateway.service_principal).is_err() {
            return invalid("gateway.service_principal", id_rule);
        }
        if self.gateway.max_message_bytes < 1024 {
            return invalid("gateway.max_message_bytes", "must be at least 1024");
        }
        if self.ledger.origin.is_empty() || self.ledger.origin.contains(char::is_whitespace) {
            return invalid("ledger.origin", "must be a non-empty name without spaces");
        }
        if self.ledger.witness_quorum > self.ledger.witnesses.len() {
            return invalid("ledger.witness_quorum", "must not exceed the number of ledger.witnesses");
        }
        if !self.ledger.witnesses.is_empty() && self.ledger.witness_quorum == 0 {
            return invalid("ledger.witness_quorum", "must be at least 1 when witnesses are configured");
        }
        if self.ledger.checkpoint_interval_ms < 10 {
            return invalid("ledger.checkpoint_interval_ms", "must be at least 10");
        }
        if self.gateway.max_connections == 0 {
            return invalid("gateway.max_connections", "must be positive");
        }
        if self.policy.poll_interval_ms == 0 || self.policy.poll_interval_ms > 60_000 {
            return invalid("policy.poll_interval_ms", "must be 1 to 60000");
        }
        if self.policy.max_policy_set_bytes == 0 || self.policy.max_policy_set_bytes > 4 * 1024 * 1024 {
            return invalid("policy.max_policy_set_bytes", "must be 1 to 4194304");
        }
        let rl = &self.gateway.rate_limit;
        if rl.per_principal_per_sec == 0 || rl.per_address_per_sec == 0 {
            return invalid("gateway.rate_limit", "rates must be positive");
        }
        if let Err((field, rule)) = self.vault.check() {
            return invalid(field, rule);
        }
        self.sentinel.validate()?;
        Ok(())
    }

    /// Resolves a path from the configuration against `data_dir`.
    pub fn path(&self, p: &std::path::Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.data_dir.join(p) }
    }

    /// The listen addresses of a service, or an error naming the missing key.
    pub fn listen(&self, service: &str) -> Result<&ServiceListen, ConfigError> {
        self.services.get(service).ok_or_else(|| ConfigError::Invalid {
            field: "services",
            rule: format!("no listen address for service {service:?}"),
        })
    }

    /// The gRPC URL of `service` as another service reaches it: `explicit` when set, else
    /// `http://<services.<service>.listen>` (`https://` when `tls.enabled`).
    pub fn service_url(&self, explicit: Option<&str>, service: &str) -> Result<String, ConfigError> {
        if let Some(url) = explicit {
            return Ok(url.to_string());
        }
        let scheme = if self.tls.enabled { "https" } else { "http" };
        Ok(format!("{scheme}://{}", self.listen(service)?.listen))
    }

    /// The revocation list's store, shared by every service.
    pub fn revocation_store_url(&self) -> String {
        self.auth.revocation_store.clone().unwrap_or_else(|| self.store_url("identity"))
    }

    /// The store URL for a service: the shared PostgreSQL URL, or its own SQLite file.
    pub fn store_url(&self, service: &str) -> String {
        match &self.store.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join(format!("{service}.db")).display()),
        }
    }
}
