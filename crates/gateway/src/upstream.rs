//! Upstream replicas of one service: one multiplexed HTTP/2 connection each,
//! round-robin balancing over the healthy ones, ejection on connection
//! failure and re-admission by active grpc.health.v1 checks.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::Uri;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tonic::body::Body;

use crate::error::GatewayError;

/// How to dial upstreams: `http://` in plain text, `https://` with TLS
/// presenting the gateway's certificate (mutual TLS towards services).
#[derive(Clone)]
pub struct Dialer {
    /// Client configuration offering `h2` (gRPC upstreams).
    pub tls_h2: Option<Arc<rustls::ClientConfig>>,
    /// The same, offering `http/1.1` (the tiles upstream).
    pub tls_h1: Option<Arc<rustls::ClientConfig>>,
    pub connect_timeout: Duration,
}

impl Dialer {
    /// Opens a transport to `uri`'s authority: TLS for `https`, plain for `http`.
    async fn connect(&self, uri: &Uri, http1: bool) -> Result<Box<dyn Io>, String> {
        let authority = uri.authority().ok_or("upstream URL without host")?.clone();
        let port = authority.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((authority.host(), port)))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let tls = if http1 { &self.tls_h1 } else { &self.tls_h2 };
        match (uri.scheme_str(), tls) {
            (Some("https"), None) => Err("https upstream without TLS material".into()),
            (Some("https"), Some(config)) => {
                let name =
                    rustls::pki_types::ServerName::try_from(authority.host().to_string()).map_err(|e| e.to_string())?;
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp),
                )
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| e.to_string())?;
                Ok(Box::new(tls))
            }
            _ => Ok(Box::new(tcp)),
        }
    }

    /// An HTTP/2 connection to `uri`.
    pub async fn http2(&self, uri: &Uri) -> Result<SendRequest<Body>, String> {
        let io = self.connect(uri, false).await?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            // Explicit windows: h2's adaptive window starts at 64 KiB and then caps the
            // unread frames per connection, failing calls beyond ~180 in flight.
            .initial_connection_window_size(8 << 20)
            .initial_stream_window_size(1 << 20)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection closed");
            }
        });
        Ok(sender)
    }

    /// A one-request HTTP/1.1 connection to `uri` (tiles: cacheable, low rate).
    pub async fn http1(&self, uri: &Uri) -> Result<hyper::client::conn::http1::SendRequest<Body>, String> {
        let io = self.connect(uri, true).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// A bidirectional byte stream: TCP or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// HTTP/2 connections kept to each replica: calls are spread over them so that
/// the gateway's threads do not contend for one connection's state.
const CONNECTIONS_PER_REPLICA: usize = 2;

/// One upstream replica.
pub struct Replica {
    pub uri: Uri,
    healthy: AtomicBool,
    conns: [Connection; CONNECTIONS_PER_REPLICA],
    next: AtomicUsize,
}

/// One multiplexed connection to a replica, made on first use and remade when closed.
#[derive(Default)]
struct Connection {
    sender: std::sync::Mutex<Option<SendRequest<Body>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Replica {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::AcqRel) != healthy {
            if healthy {
                tracing::info!(upstream = %self.uri, "upstream replica healthy");
            } else {
                tracing::warn!(upstream = %self.uri, "upstream replica ejected");
            }
        }
    }

    /// A ready sender on one of this replica's connections, connecting if needed.
    async fn sender(&self, dialer: &Dialer) -> Result<SendRequest<Body>, String> {
        let conn = &self.conns[self.next.fetch_add(1, Ordering::Relaxed) % CONNECTIONS_PER_REPLICA];
        if let Some(sender) = conn.open_sender() {
            return Ok(sender);
        }
        // One task connects; the others wait for it and reuse its connection.
        let _connecting = conn.connecting.lock().await;
        if let Some(sender) = conn.open_sender() {
            return Ok(sender);
        }
        let mut sender = dialer.http2(&self.uri).await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        if let Ok(mut slot) = conn.sender.lock() {
            *slot = Some(sender.clone());
        }
        Ok(sender)
    }
}

impl Connection {
    fn open_sender(&self) -> Option<SendRequest<Body>> {
        let slot = self.sender.lock().ok()?;
        slot.as_ref().filter(|s| !s.is_closed()).cloned()
    }
}

/// The replicas of one service.
pub struct Pool {
    pub replicas: Vec<Arc<Replica>>,
    next: AtomicUsize,
    dialer: Dialer,
}

impl Pool {
    pub fn new(service: &str, urls: &[String], dialer: Dialer) -> Result<Self, String> {
        if urls.is_empty() {
            return Err(format!("gateway.upstreams.{service}: no replicas"));
        }
        let replicas = urls
            .iter()
            .map(|u| {
                let uri: Uri = u.parse().map_err(|e| format!("gateway.upstreams.{service}: {u}: {e}"))?;
                if uri.authority().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
                    return Err(format!(
                        "gateway.upstreams.{service}: {u}: must be http://host:port or https://host:port"
                    ));
                }
                // Not ready until a health check says so; calls still try it meanwhile.
                Ok(Arc::new(Replica {
                    uri,
                    healthy: AtomicBool::new(false),
                    conns: Default::default(),
                    next: AtomicUsize::new(0),
                }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { replicas, next: AtomicUsize::new(0), dialer })
    }

    pub fn any_healthy(&self) -> bool {
        self.replicas.iter().any(|r| r.is_healthy())
    }

    /// A connection to a healthy replica, trying each once in round-robin
    /// order (unhealthy ones last); a replica that cannot be reached is ejected.
    pub async fn pick(&self) -> Result<(Arc<Replica>, SendRequest<Body>), GatewayError> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n).map(|i| &self.replicas[(start + i) % n]);
        let (healthy, ejected): (Vec<_>, Vec<_>) = order.partition(|r| r.is_healthy());
        for replica in healthy.into_iter().chain(ejected) {
            match replica.sender(&self.dialer).await {
                // Only health checks re-admit a replica; a connection alone says nothing of readiness.
                Ok(sender) => return Ok((Arc::clone(replica), sender)),
                Err(e) => {
                    tracing::debug!(upstream = %replica.uri, error = %e, "upstream unreachable");
                    replica.set_healthy(false);
                }
            }
        }
        Err(GatewayError::UpstreamUnavailable)
    }

    /// Marks a replica whose call failed at the transport level.
    pub fn eject(&self, replica: &Replica) {
        replica.set_healthy(false);
    }

    /// Checks every replica's grpc.health.v1 status (the server as a whole).
    pub async fn check_health(&self, timeout: Duration) {
        for replica in &self.replicas {
            let healthy = match replica.sender(&self.dialer).await {
                Ok(sender) => health_check(sender, &replica.uri, timeout).await,
                Err(_) => false,
            };
            replica.set_healthy(healthy);
        }
    }
}

/// One `grpc.health.v1.Health/Check` with the empty service name over an existing connection.
async fn health_check(sender: SendRequest<Body>, uri: &Uri, timeout: Duration) -> bool {
    use tonic_health::pb::{
        HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let service = tower::service_fn(move |mut req: http::Request<Body>| {
        let mut sender = sender.clone();
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = req.uri().path_and_query().cloned();
        if let Ok(full) = Uri::from_parts(parts) {
            *req.uri_mut() = full;
        }
        async move { sender.send_request(req).await.map(|r| r.map(Body::new)) }
    });
    let mut client = HealthClient::new(service);
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Ok(Ok(response)) => {
            let response: HealthCheckResponse = response.into_inner();
            response.status == ServingStatus::Serving as i32
        }
        _ => false,
    }
}
