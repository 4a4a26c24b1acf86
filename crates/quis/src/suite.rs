//! The registry of services and how they run: one per process (`quis serve`)
//! or all in one process behind the gateway (`quis up`). A new service adds
//! one arm to [`build_backend`] and its name to [`BACKENDS`].
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use anyhow::{Context, Result, bail};
use quis_core::{QuisConfig, health::Readiness};
use quis_runtime::{BuiltService, ServiceContext};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// Backend services, in start order.
pub const BACKENDS: &[&str] = &["identity", "ledger", "policy", "vault", "echo", "sentinel"];

/// Every service `quis serve` accepts. The witness is no backend: it serves plain HTTP
/// (c2sp.org/tlog-witness) and in production is run by another party; `quis up`
/// runs a local one so that the embedded default shows cosigned checkpoints.
pub fn all_services() -> Vec<&'static str> {
    let mut all = vec!["gateway"];
    all.extend_from_slice(BACKENDS);
    all.push("witness");
    all
}

/// A backend, and for the ledger its tlog-tiles HTTP router.
struct Backend {
    grpc: BuiltService,
    http: Option<axum::Router>,
    /// Lines `quis` prints at start (e.g. the log's verifier key).
    notes: Vec<String>,
}

async fn build_backend(name: &str, ctx: &ServiceContext) -> Result<Backend> {
    let config = &ctx.config;
    Ok(match name {
        "identity" => Backend {
            grpc: quis_identity::build(&config.revocation_store_url(), config.auth.max_token_lifetime_secs)
                .await
                .context("identity store")?,
            http: None,
            notes: Vec::new(),
        },
        "ledger" => {
            let (grpc, http, ledger) = quis_ledger::build(ctx).await.map_err(anyhow::Error::msg)?;
            Backend { grpc, http: Some(http), notes: vec![format!("log verifier key: {}", ledger.verifier_key())] }
        }
        "policy" => {
            let (grpc, _) = quis_policy::build(ctx).await.map_err(anyhow::Error::msg)?;
            Backend { grpc, http: None, notes: Vec::new() }
        }
        "vault" => {
            let grpc = quis_vault_service::build(ctx).await.map_err(anyhow::Error::msg)?;
            Backend { grpc, http: None, notes: Vec::new() }
        }
        "echo" => Backend { grpc: quis_echo::build(), http: None, notes: Vec::new() },
        "sentinel" => Backend {
            grpc: quis_sentinel::build(ctx).await.map_err(anyhow::Error::msg)?,
            http: None,
            notes: Vec::new(),
        },
        other => bail!("unknown service {other:?}; known: {}", all_services().join(", ")),
    })
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({what})"))
}

/// Running processes' tasks, joined at exit.
pub struct Running {
    pub tasks: JoinSet<Result<()>>,
    /// The gRPC listener: the service's, or the gateway's for `quis up`.
    pub listen_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// What to tell the operator at start.
    pub notes: Vec<String>,
    /// For `quis up`: the keys that verify its checkpoints, the log's and its local witness's.
    pub log_keys: Vec<String>,
    pub witness_keys: Vec<String>,
    /// For `quis simulate --restart-sentinel-after-day`: sentinel, apart from `tasks`.
    pub sentinel: Option<RestartableSentinel>,
}

/// Sentinel served so that it can be stopped and started again on the same port, as an
/// operator restarts it: its own stop token (a child of the suite's) and its own tasks.
pub struct RestartableSentinel {
    ctx: ServiceContext,
    addr: SocketAddr,
    parent: CancellationToken,
    tasks: JoinSet<Result<()>>,
}

impl RestartableSentinel {
    async fn start(ctx: ServiceContext, listener: TcpListener, parent: CancellationToken) -> Result<Self> {
        let addr = listener.local_addr()?;
        let mut tasks = JoinSet::new();
        spawn_backend(&mut tasks, "sentinel", ctx.clone(), listener, None, Readiness::default()).await?;
        Ok(Self { ctx, addr, parent, tasks })
    }

    /// Stops sentinel, waits until it has, and starts it again from its store.
    pub async fn restart(&mut self) -> Result<()> {
        self.ctx.shutdown.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            joined.context("sentinel's task")?.context("sentinel stopping")?;
        }
        self.ctx.shutdown = self.parent.child_token();
        let listener = bind(self.addr, "sentinel (restarted)").await?;
        spawn_backend(&mut self.tasks, "sentinel", self.ctx.clone(), listener, None, Readiness::default()).await?;
        Ok(())
    }

    /// Waits for sentinel's tasks once the suite is stopping.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn verifier(config: &Arc<QuisConfig>, stop: &CancellationToken) -> Result<Arc<quis_auth::TokenVerifier>> {
    quis_auth::TokenVerifier::from_config(config, stop.clone()).await.context("token verification")
}

/// The admin port lives as long as the process, so that during a drain probes
/// see "not ready" rather than a refused connection.
fn spawn_admin(listener: TcpListener, readiness: Readiness) {
    tokio::spawn(async move {
        if let Err(e) = quis_core::admin::serve(listener, readiness, CancellationToken::new()).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
}

/// Starts the gateway in front of `config.gateway.upstreams`.
async fn spawn_gateway(
    tasks: &mut JoinSet<Result<()>>,
    config: Arc<QuisConfig>,
    listener: TcpListener,
    readiness: Readiness,
    stop: &CancellationToken,
) -> Result<()> {
    let verifier = verifier(&config, stop).await?;
    let revocations_fresh = verifier.revocations().readiness();
    let gateway = quis_gateway::Gateway::new(Arc::clone(&config), verifier).map_err(anyhow::Error::msg)?;
    quis_core::health::spawn_drive(
        gateway.health_reporter(),
        Vec::new(),
        vec![Arc::new(quis_gateway::UpstreamsReady(Arc::clone(&gateway))), revocations_fresh],
        readiness,
        std::time::Duration::from_secs(1),
        stop.clone(),
    )
    .await;
    tokio::spawn(Arc::clone(&gateway).watch_health(stop.clone()));
    let stop = stop.clone();
    tasks.spawn(async move { quis_gateway::serve(gateway, listener, stop).await.map_err(anyhow::Error::msg) });
    Ok(())
}

/// Builds and serves a backend; its HTTP router, if any, on `http`.
async fn spawn_backend(
    tasks: &mut JoinSet<Result<()>>,
    name: &str,
    ctx: ServiceContext,
    listener: TcpListener,
    http: Option<TcpListener>,
    readiness: Readiness,
) -> Result<Vec<String>> {
    let backend = build_backend(name, &ctx).await?;
    if let (Some(router), Some(http)) = (backend.http, http) {
        let stop = ctx.shutdown.clone();
        tasks.spawn(async move {
            axum::serve(http, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .context("HTTP listener")
        });
    }
    let grpc = backend.grpc;
    tasks.spawn(async move { quis_runtime::serve(&ctx, grpc, listener, readiness).await.map_err(anyhow::Error::from) });
    Ok(backend.notes)
}

/// `quis serve <name>`: one service in this process.
pub async fn serve_one(name: &str, config: Arc<QuisConfig>, stop: CancellationToken) -> Result<Running> {
    if !all_services().contains(&name) {
        bail!("unknown service {name:?}; known: {}", all_services().join(", "));
    }
    config.clock.check_allowed(&config).map_err(anyhow::Error::msg)?;
    let listen = config.listen(name)?.clone();
    let listener = bind(listen.listen, &format!("services.{name}.listen")).await?;
    let admin = bind(listen.admin_listen, &format!("services.{name}.admin_listen")).await?;
    let admin_addr = admin.local_addr()?;
    let listen_addr = listener.local_addr()?;
    let readiness = Readiness::default();
    let mut tasks = JoinSet::new();
    spawn_admin(admin, readiness.clone());
    let mut notes = Vec::new();
    if name == "gateway" {
        spawn_gateway(&mut tasks, config, listener, readiness, &stop).await?;
    } else if name == "witness" {
        // No tokens: the log's signature authenticates a request, so no JWKS or verifier.
        let (router, witness) = quis_witness::build(&config).await.map_err(anyhow::Error::msg)?;
        notes.push(format!("witness verifier key: {}", witness.verifier_key()));
        let grace = std::time::Duration::from_secs(config.shutdown.grace_secs);
        tasks.spawn(async move {
            quis_witness::serve(router, &witness, listener, readiness, grace, stop)
                .await
                .context("witness HTTP listener")
        });
    } else {
        let http = if name == "ledger" {
            let http = bind(config.ledger.http_listen, "ledger.http_listen").await?;
            notes.push(format!("tiles on http://{}", http.local_addr()?));
            Some(http)
        } else {
            None
        };
        let ctx = ServiceContext { verifier: verifier(&config, &stop).await?, config, shutdown: stop };
        notes.extend(spawn_backend(&mut tasks, name, ctx, listener, http, readiness).await?);
    }
    Ok(Running {
        tasks,
        listen_addr,
        admin_addr,
        notes,
        log_keys: Vec::new(),
        witness_keys: Vec::new(),
        sentinel: None,
    })
}

/// `quis up`: every backend on a loopback port of its own, the gateway in front.
pub async fn up(config: QuisConfig, stop: CancellationToken) -> Result<Running> {
    up_with(config, stop, false).await
}

/// [`up`], with sentinel restartable (in [`Running::sentinel`]) if asked.
pub async fn up_with(config: QuisConfig, stop: CancellationToken, restartable_sentinel: bool) -> Result<Running> {
    config.clock.check_allowed(&config).map_err(anyhow::Error::msg)?;
    let mut tasks = JoinSet::new();
    let scheme = if config.tls.enabled { "https" } else { "http" };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut listeners = BTreeMap::new();
    let mut upstreams = BTreeMap::new();
    for name in BACKENDS {
        let listener = bind(loopback, name).await?;
        upstreams.insert((*name).to_string(), vec![format!("{scheme}://127.0.0.1:{}", listener.local_addr()?.port())]);
        listeners.insert(*name, listener);
    }
    let tiles = bind(loopback, "ledger tiles").await?;
    let witness_listener = bind(loopback, "witness").await?;
    let mut config = config;
    // Policy records its changes in this process's ledger unless told otherwise.
    if config.policy.ledger_url.is_none() {
        config.policy.ledger_url = upstreams.get("ledger").and_then(|u| u.first()).cloned();
    }
    // The vault asks this process's policy and records in its ledger unless told otherwise.
    let internal = |name: &str| upstreams.get(name).and_then(|u| u.first()).cloned();
    config.vault.policy_url = config.vault.policy_url.take().or_else(|| internal("policy"));
    config.vault.ledger_url = config.vault.ledger_url.take().or_else(|| internal("ledger"));
    config.gateway.upstreams = upstreams;
    config.gateway.tiles_upstream = Some(format!("http://{}", tiles.local_addr()?));

    // A local witness that knows the log's keys, and a ledger that needs its cosignature.
    let log_keys = quis_ledger::log_verifier_keys(&config).map_err(anyhow::Error::msg)?;
    config.witness.logs.insert(config.ledger.origin.clone(), log_keys.clone());
    let (witness_router, witness) = quis_witness::build(&config).await.map_err(anyhow::Error::msg)?;
    config.ledger.witnesses = vec![quis_core::config::WitnessEndpoint {
        url: format!("http://{}", witness_listener.local_addr()?),
        vkey: witness.verifier_key(),
    }];
    config.ledger.witness_quorum = 1;
    // Sentinel follows this process's ledger and trusts its keys and witness unless told otherwise.
    let sentinel = &mut config.sentinel;
    if sentinel.ledger_url.is_none() {
        sentinel.ledger_url = config.gateway.upstreams.get("ledger").and_then(|u| u.first()).cloned();
    }
    if sentinel.policy_url.is_none() {
        sentinel.policy_url = config.gateway.upstreams.get("policy").and_then(|u| u.first()).cloned();
    }
    if sentinel.tiles_url.is_none() {
        sentinel.tiles_url = config.gateway.tiles_upstream.clone();
    }
    if sentinel.log_vkeys.is_empty() {
        sentinel.log_vkeys = log_keys.clone();
    }
    if sentinel.witness_vkeys.is_empty() {
        sentinel.witness_vkeys = vec![witness.verifier_key()];
        sentinel.witness_quorum = 1;
    }
    let mut notes = vec![format!("log verifier key: {}", log_keys.join(" "))];
    notes.push(format!("witness verifier key: {}", witness.verifier_key()));
    let witness_keys = vec![witness.verifier_key()];
    for (name, urls) in &config.gateway.upstreams {
        // Internal methods (AppendEvents) are not served by the gateway: services call the backend itself.
        notes.push(format!("{name} gRPC (internal, for services): {}", urls.join(" ")));
    }
    let grace = std::time::Duration::from_secs(config.shutdown.grace_secs);
    let witness_stop = stop.clone();
    tasks.spawn(async move {
        quis_witness::serve(witness_router, &witness, witness_listener, Readiness::default(), grace, witness_stop)
            .await
            .context("witness HTTP listener")
    });

    let config = Arc::new(config);
    let verifier = verifier(&config, &stop).await?;
    let mut tiles = Some(tiles);
    let mut sentinel = None;
    for name in BACKENDS {
        let Some(listener) = listeners.remove(name) else { continue };
        let http = if *name == "ledger" { tiles.take() } else { None };
        let ctx =
            ServiceContext { config: Arc::clone(&config), verifier: Arc::clone(&verifier), shutdown: stop.clone() };
        if *name == "sentinel" && restartable_sentinel {
            let ctx = ServiceContext { shutdown: stop.child_token(), ..ctx };
            sentinel = Some(RestartableSentinel::start(ctx, listener, stop.clone()).await?);
            continue;
        }
        // The log's keys are already among the notes.
        spawn_backend(&mut tasks, name, ctx, listener, http, Readiness::default()).await?;
    }
    let listen = config.listen("gateway")?.clone();
    let listener = bind(listen.listen, "services.gateway.listen (--port)").await?;
    let admin = bind(listen.admin_listen, "services.gateway.admin_listen").await?;
    let gateway_addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    notes.insert(0, format!("tiles URL (for quis verify): http://{gateway_addr}"));
    let readiness = Readiness::default();
    spawn_admin(admin, readiness.clone());
    spawn_gateway(&mut tasks, config, listener, readiness, &stop).await?;
    Ok(Running { tasks, listen_addr: gateway_addr, admin_addr, notes, log_keys, witness_keys, sentinel })
}
