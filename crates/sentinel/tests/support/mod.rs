//! A real ledger for sentinel's tests: development keys in a temporary data
//! directory, the ledger served on `127.0.0.1:0` with its own verifier,
//! tokens minted with the directory's key, and stores on SQLite files or on
//! fresh PostgreSQL databases. The generic helpers are `quis-testkit`'s.
#![allow(dead_code)]

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use quis_auth::{
    PrincipalKind, Role, TokenVerifier,
    credentials::ServiceCredentials,
    devkeys,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, health::Readiness, keys::FileKeySource};
use quis_proto::ledger::{AppendEventsRequest, Event, EventDetail, ledger_service_client::LedgerServiceClient};
use quis_runtime::ServiceContext;
use quis_sentinel::{LedgerLink, SentinelConfig};
pub use quis_testkit::*;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub struct TestLedger {
    dir: Option<tempfile::TempDir>,
    pub config: Arc<QuisConfig>,
    pub grpc: SocketAddr,
    /// The ledger's tlog-tiles HTTP listener.
    pub tiles: SocketAddr,
    pub signer: Arc<TokenSigner>,
    pub vkey: String,
    pub stop: CancellationToken,
}

impl Drop for TestLedger {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sentinel's store: a SQLite file in `dir`, or a fresh PostgreSQL database.
pub async fn sentinel_store_url(dir: &Path, postgres: bool) -> String {
    if postgres { postgres_url().await } else { format!("sqlite://{}?mode=rwc", dir.join("sentinel.db").display()) }
}

/// Starts a ledger on a fresh data directory; `before` runs on the directory after the
/// development keys exist and before the ledger opens (e.g. to plant another log's key).
pub async fn start_ledger(before: impl FnOnce(&Path)) -> TestLedger {
    start_ledger_with(before, |_| {}).await
}

/// [`start_ledger`], with `tune` adjusting the ledger's configuration.
pub async fn start_ledger_with(before: impl FnOnce(&Path), tune: impl FnOnce(&mut QuisConfig)) -> TestLedger {
    let dir = tempfile::tempdir().expect("tempdir");
    devkeys::init(dir.path()).expect("dev keys");
    before(dir.path());
    let (l, grpc) = listener().await;
    let mut config = QuisConfig { data_dir: dir.path().to_path_buf(), ..QuisConfig::default() };
    config.shutdown.grace_secs = 1;
    config.ledger.checkpoint_interval_ms = 30;
    tune(&mut config);
    let config = Arc::new(config);
    let stop = CancellationToken::new();
    let verifier = TokenVerifier::from_config(&config, stop.clone()).await.expect("verifier");
    let ctx = ServiceContext { config: Arc::clone(&config), verifier, shutdown: stop.clone() };
    let (built, router, ledger) = quis_ledger::build(&ctx).await.expect("ledger");
    tokio::spawn(async move { quis_runtime::serve(&ctx, built, l, Readiness::default()).await });
    let (tiles_listener, tiles) = listener().await;
    tokio::spawn(async move { axum::serve(tiles_listener, router).await });
    let signer = Arc::new(
        TokenSigner::load(&FileKeySource::new(dir.path()), &config.auth.issuer, &config.auth.audience).expect("signer"),
    );
    TestLedger { vkey: ledger.verifier_key(), dir: Some(dir), config, grpc, tiles, signer, stop }
}

impl TestLedger {
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    pub fn token(&self, sub: &str, roles: &[Role]) -> String {
        let kind = if roles.contains(&Role::Service) { PrincipalKind::Service } else { PrincipalKind::Staff };
        self.signer.mint(&TokenSpec::new(sub, kind, roles)).expect("mint").0
    }

    pub async fn channel(&self) -> Channel {
        channel(self.grpc).await
    }

    /// Sentinel's link, authenticated as the `sentinel` service with freshly minted tokens.
    pub async fn link(&self) -> LedgerLink {
        self.link_via(self.grpc).await
    }

    /// Sentinel's link to the ledger through `addr` (e.g. a [`Relay`]).
    pub async fn link_via(&self, addr: SocketAddr) -> LedgerLink {
        let keys = FileKeySource::new(&self.config.data_dir);
        let signer = TokenSigner::load(&keys, &self.config.auth.issuer, &self.config.auth.audience).expect("signer");
        LedgerLink::new(channel(addr).await, ServiceCredentials::minted(signer, "sentinel", Duration::from_secs(300)))
    }

    /// A sentinel configuration that trusts this ledger's key.
    pub fn sentinel_config(&self) -> SentinelConfig {
        SentinelConfig {
            log_vkeys: vec![self.vkey.clone()],
            integrity_interval_ms: 50,
            sample_every: 1,
            reconnect_min_ms: 20,
            reconnect_max_ms: 200,
            ..SentinelConfig::default()
        }
    }

    /// Appends events as the vault; returns their indices.
    pub async fn append(&self, events: Vec<(Event, Vec<EventDetail>)>) -> Vec<u64> {
        let (events, details): (Vec<Event>, Vec<Vec<EventDetail>>) = events.into_iter().unzip();
        let request = AppendEventsRequest { events, details: details.into_iter().flatten().collect() };
        let mut client = LedgerServiceClient::new(self.channel().await);
        client
            .append_events(with_token(request, &self.token("vault", &[Role::Service])))
            .await
            .expect("append")
            .into_inner()
            .indices
    }

    /// Waits until the ledger has signed a checkpoint of at least `size` entries.
    pub async fn signed(&self, size: u64) {
        let mut client = LedgerServiceClient::new(self.channel().await);
        let token = self.token("audrey", &[Role::Auditor]);
        let ok = eventually(Duration::from_secs(10), async || {
            client
                .get_checkpoint(with_token(quis_proto::ledger::GetCheckpointRequest {}, &token))
                .await
                .is_ok_and(|r| r.into_inner().tree_size >= size)
        })
        .await;
        assert!(ok, "no checkpoint of size {size}");
    }
}

/// A real c2sp.org/tlog-witness (the `quis-witness` crate) over HTTP on `127.0.0.1:0`, and a
/// ledger, with a log key chosen up front so that the witness knows it, submitting every
/// checkpoint to the witness. Returns the ledger, the witness's verifier key and its directory.
pub async fn start_witnessed_ledger() -> (TestLedger, String, tempfile::TempDir) {
    use quis_tlog::note::{KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, Signer, Verifier};
    let seed: [u8; 32] = rand::random();
    let log = Signer::new("quis.local/ledger", KEY_TYPE_ED25519, seed).expect("log key");
    let witness_dir = tempfile::tempdir().expect("tempdir");
    let store_url = format!("sqlite://{}?mode=rwc", witness_dir.path().join("witness.db").display());
    let store = quis_witness::WitnessStore::connect(&store_url).await.expect("witness store");
    let cosigner = Signer::generate("witness.example", KEY_TYPE_COSIGNATURE_V1).expect("witness key");
    let witness_vkey = cosigner.vkey();
    let logs = [("quis.local/ledger".to_string(), vec![Verifier::from_vkey(&log.vkey()).expect("vkey")])].into();
    let witness = quis_witness::Witness::new(cosigner, logs, store).expect("witness");
    let (l, witness_addr) = listener().await;
    tokio::spawn(async move { axum::serve(l, quis_witness::router(witness)).await });
    let ledger = start_ledger_with(
        |dir| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join("keys/ledger-log.key");
            std::fs::write(&path, format!("{}\n", hex::encode(seed))).expect("log key");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        },
        |c| {
            c.ledger.witnesses = vec![quis_core::config::WitnessEndpoint {
                url: format!("http://{witness_addr}"),
                vkey: witness_vkey.clone(),
            }];
            c.ledger.witness_quorum = 1;
        },
    )
    .await;
    assert_eq!(ledger.vkey, log.vkey());
    (ledger, witness_vkey, witness_dir)
}
