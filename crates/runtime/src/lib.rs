//! Serves one Quis gRPC service with everything every service needs, so that
//! writing a service means writing its handlers: the identity layer (every
//! call but health needs a verified token), call metrics, grpc.health.v1
//! driven by the service's readiness checks, server reflection, optional
//! (mutual) TLS, and graceful shutdown (health turns NOT_SERVING first, then
//! in-flight calls get up to the grace period).
#![forbid(unsafe_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use quis_auth::{AuthLayer, TokenVerifier};
use quis_core::{
    QuisConfig,
    health::{self, Readiness, ReadinessCheck},
    metrics::GrpcMetricsLayer,
    tls::TlsMaterial,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// What a service hands to the runtime.
pub struct BuiltService {
    /// Short name, as in `quis serve <name>`.
    pub name: &'static str,
    /// Full gRPC service names, reported by health.
    pub grpc_names: Vec<&'static str>,
    pub routes: Routes,
    /// Conditions for SERVING (store reachable, dependencies reachable).
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

/// What every service gets from the runtime when it is built.
#[derive(Clone)]
pub struct ServiceContext {
    pub config: Arc<QuisConfig>,
    pub verifier: Arc<TokenVerifier>,
    pub shutdown: CancellationToken,
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{service}: {reason}")]
    Setup { service: &'static str, reason: String },
    #[error("{service}: transport: {source}")]
    Transport { service: &'static str, source: tonic::transport::Error },
}

/// Serves `service` on `listener` until the context's shutdown token fires,
/// then drains for at most `shutdown.grace_secs`.
pub async fn serve(
    ctx: &ServiceContext,
    service: BuiltService,
    listener: TcpListener,
    readiness: Readiness,
) -> Result<(), ServeError> {
    let name = service.name;
    let config = &ctx.config;
    let setup = |reason: String| ServeError::Setup { service: name, reason };

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(quis_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| setup(e.to_string()))?;
    let routes = service.routes.add_service(health_service).add_service(reflection);

    let mut checks = service.readiness;
    checks.push(ctx.verifier.revocations().readiness());
    health::spawn_drive(
        reporter,
        service.grpc_names.iter().map(|s| s.to_string()).collect(),
        checks,
        readiness,
        Duration::from_secs(1),
        ctx.shutdown.clone(),
    )
    .await;

    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if config.tls.enabled {
        let material = TlsMaterial::load(config).map_err(|e| setup(e.to_string()))?;
        builder = builder.tls_config(material.tonic_server(config.tls.mutual)).map_err(|e| setup(e.to_string()))?;
    }
    let addr = listener.local_addr().map_err(|e| setup(e.to_string()))?;
    let drain_delay = Duration::from_millis(config.shutdown.drain_delay_ms);
    let stop = ctx.shutdown.clone();
    let server = builder
        .layer(GrpcMetricsLayer::new(name, quis_proto::method_paths()))
        .layer(AuthLayer::new(Arc::clone(&ctx.verifier)).trusting_forwarders(&config.auth.trusted_forwarders))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener), async move {
            stop.cancelled().await;
            // Health is already NOT_SERVING; give balancers time to notice before closing.
            tokio::time::sleep(drain_delay).await;
        });
    tracing::info!(service = name, %addr, tls = config.tls.enabled, "serving");
    let mut server = std::pin::pin!(server);
    let grace = Duration::from_secs(config.shutdown.grace_secs) + drain_delay;
    tokio::select! {
        result = &mut server => return result.map_err(|source| ServeError::Transport { service: name, source }),
        _ = ctx.shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.map_err(|source| ServeError::Transport { service: name, source })?,
        Err(_) => tracing::warn!(service = name, "grace period over; closing the remaining calls"),
    }
    tracing::info!(service = name, "stopped");
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: small gRPC frames must not
/// wait for the peer's delayed ACK (a 40 ms stall per exchange otherwise).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    })
}

/// Binds a listener, reporting the configuration key on failure.
pub async fn bind(service: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|e| ServeError::Setup {
        service,
        reason: format!("cannot listen on {addr} (services.{service}.listen): {e}"),
    })
}
