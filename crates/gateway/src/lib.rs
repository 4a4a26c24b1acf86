//! The gateway: the one public listener of Quis.
//!
//! It routes `/quis.<svc>.v1.<Service>/<Method>` to the replicas of `<svc>` as
//! opaque HTTP/2 streams (nothing is decoded or re-encoded, so every call
//! shape works), after its edge duties: token verification, per-address and
//! per-principal token buckets, a `grpc-timeout` cap, a request message size
//! limit read from the frame headers, request ids and W3C trace context, and
//! one access-log line per call. It serves grpc.health.v1 for the whole suite
//! and server reflection itself, speaks gRPC-Web, and forwards the ledger's
//! tlog-tiles paths unchanged.
#![forbid(unsafe_code)]

mod error;
mod forwarding;
mod message_limit;
pub mod parse;
mod serve;
pub mod trace;
mod upstream;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use http::{HeaderValue, Request, Response, Uri, header};
use quis_auth::{FORWARDED_BY_HEADER, ServiceCredentials, TokenVerifier};
use quis_core::{QuisConfig, error::to_status, grpc_body::ObservedBody, metrics::record_call};
use tonic::body::Body;
use tonic_health::server::HealthReporter;

pub use error::GatewayError;
use parse::{is_canonical_tiles_path, is_tiles_path, parse_grpc_timeout, service_short_name};
pub use serve::serve;
use upstream::{Dialer, Pool};

/// Header carrying the peer address the gateway saw, set by the gateway only.
pub use quis_auth::SOURCE_ADDRESS_HEADER;

/// The gateway's shared state.
pub struct Gateway {
    config: Arc<QuisConfig>,
    verifier: Arc<TokenVerifier>,
    pools: HashMap<String, Arc<Pool>>,
    tiles: Option<Uri>,
    dialer: Dialer,
    by_principal: DefaultKeyedRateLimiter<String>,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    local: tonic::service::Routes,
    health: HealthReporter,
    /// `grpc-timeout` value of the deadline cap, made once.
    timeout_cap: HeaderValue,
    /// The gateway's token, vouching to upstreams for the source address it sets.
    forwarded_by: forwarding::ForwardedBy,
}

/// The peer address of a connection, attached to each of its requests.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

fn quota(per_sec: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

impl Gateway {
    /// Builds the gateway from the configuration.
    pub fn new(config: Arc<QuisConfig>, verifier: Arc<TokenVerifier>) -> Result<Arc<Self>, String> {
        let urls = config.gateway.upstreams.values().flatten().chain(config.gateway.tiles_upstream.iter());
        let (tls_h2, tls_h1) = if urls.clone().any(|u| u.starts_with("https:")) {
            let material = quis_core::tls::TlsMaterial::load(&config).map_err(|e| e.to_string())?;
            let h2 = material.client_config().map_err(|e| e.to_string())?;
            let mut h1 = (*h2).clone();
            h1.alpn_protocols = vec![b"http/1.1".to_vec()];
            (Some(h2), Some(Arc::new(h1)))
        } else {
            (None, None)
        };
        let dialer = Dialer {
            tls_h2,
            tls_h1,
            connect_timeout: Duration::from_millis(config.gateway.upstream_connect_timeout_ms),
        };
        let mut pools = HashMap::new();
        for (service, urls) in &config.gateway.upstreams {
            pools.insert(service.clone(), Arc::new(Pool::new(service, urls, dialer.clone())?));
        }
        let tiles = match &config.gateway.tiles_upstream {
            Some(url) => Some(url.parse::<Uri>().map_err(|e| format!("gateway.tiles_upstream: {e}"))?),
            None => None,
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(quis_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| e.to_string())?;
        let local = tonic::service::Routes::new(health_service).add_service(reflection);
        let timeout_cap = HeaderValue::from_str(&format!("{}m", config.gateway.max_grpc_timeout_ms))
            .map_err(|e| format!("gateway.max_grpc_timeout_ms: {e}"))?;
        let gw = &config.gateway;
        let credentials =
            ServiceCredentials::configured(&config, "gateway", gw.token_file.as_deref(), &gw.service_principal)?;
        let rl = &config.gateway.rate_limit;
        Ok(Arc::new(Self {
            forwarded_by: forwarding::ForwardedBy::new(credentials),
            by_principal: RateLimiter::keyed(quota(rl.per_principal_per_sec, rl.per_principal_burst)),
            by_address: RateLimiter::keyed(quota(rl.per_address_per_sec, rl.per_address_burst)),
            config,
            verifier,
            pools,
            tiles,
            dialer,
            local,
            health,
            timeout_cap,
        }))
    }

    /// Handles one request from a client.
    pub async fn handle(self: Arc<Self>, mut req: Request<Body>) -> Response<Body> {
        let started = Instant::now();
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        let request_id = request_id(&req);
        let trace = trace::TraceContext::continue_or_start(req.headers());
        let path = req.uri().path().to_string();

        let mut principal = None;
        let result = self.route(&mut req, peer, &request_id, &trace, &mut principal).await;
        let mut response = result.unwrap_or_else(|e| to_status(&e).into_http());
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        let label = metric_label(&path);
        let principal = principal.unwrap_or_else(|| "-".to_string());
        let trace_id = trace.trace_id.clone();
        ObservedBody::wrap(response, move |outcome| {
            let latency = started.elapsed();
            record_call("gateway", label, outcome.code_name(), latency);
            tracing::info!(
                target: "quis_gateway::access",
                method = %path,
                principal = %principal,
                peer = %peer.map(|p| p.ip().to_string()).unwrap_or_default(),
                status = outcome.code_name(),
                latency_us = latency.as_micros() as u64,
                request_id = %request_id,
                trace_id = %trace_id,
            );
        })
        .map(Body::new)
    }

    async fn route(
        &self,
        req: &mut Request<Body>,
        peer: Option<SocketAddr>,
        request_id: &str,
        trace: &trace::TraceContext,
        principal_out: &mut Option<String>,
    ) -> Result<Response<Body>, GatewayError> {
        let path = req.uri().path().to_string();
        if let Some(peer) = peer
            && let Err(e) = self.rate_limit(&self.by_address, &peer.ip())
        {
            if is_tiles_path(&path) {
                let mut response = plain_response(http::StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
                if let GatewayError::RateLimited(wait) = &e
                    && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return Ok(response);
            }
            return Err(e);
        }

        if is_tiles_path(&path) {
            return Ok(self.tiles(std::mem::take(req), peer).await);
        }
        if path.starts_with("/grpc.health.v1.Health/") {
            return Ok(self.local(std::mem::take(req)).await);
        }
        let principal = self.verifier.verify_header(req.headers().get(header::AUTHORIZATION))?;
        *principal_out = Some(principal.id.clone());
        self.rate_limit(&self.by_principal, &principal.id)?;

        if path.starts_with("/grpc.reflection.v1.ServerReflection/") {
            return Ok(self.local(std::mem::take(req)).await);
        }
        let internal = &self.config.gateway.internal_methods;
        if internal.iter().any(|m| if m.ends_with('/') { path.starts_with(m.as_str()) } else { path == *m }) {
            return Err(GatewayError::InternalMethod);
        }
        let pool = service_short_name(&path).and_then(|s| self.pools.get(s)).ok_or(GatewayError::UnknownService)?;
        if !is_grpc(req) {
            return Err(GatewayError::NotGrpc);
        }
        self.prepare_upstream_headers(req, peer, request_id, trace);
        self.forward(pool, std::mem::take(req)).await
    }

    fn rate_limit<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), GatewayError> {
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            GatewayError::RateLimited(wait.max(Duration::from_millis(1)))
        })
    }

    async fn local(&self, req: Request<Body>) -> Response<Body> {
        use tower::ServiceExt;
        match self.local.clone().oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    fn prepare_upstream_headers(
        &self,
        req: &mut Request<Body>,
        peer: Option<SocketAddr>,
        request_id: &str,
        trace: &trace::TraceContext,
    ) {
        let cap = self.config.gateway.max_grpc_timeout_ms;
        let headers = req.headers_mut();
        let timeout = headers.get("grpc-timeout").and_then(|v| parse_grpc_timeout(v.to_str().ok()?));
        if timeout.is_none_or(|t| t > Duration::from_millis(cap)) {
            headers.insert("grpc-timeout", self.timeout_cap.clone());
        }
        // Only the gateway says where a call came from, and vouches for it with its own token.
        headers.remove(SOURCE_ADDRESS_HEADER);
        headers.remove(FORWARDED_BY_HEADER);
        if let Some(peer) = peer
            && let Ok(v) = HeaderValue::from_str(&peer.ip().to_string())
        {
            headers.insert(SOURCE_ADDRESS_HEADER, v);
            if let Some(token) = self.forwarded_by.header() {
                headers.insert(FORWARDED_BY_HEADER, token);
            }
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&trace.traceparent()) {
            headers.insert("traceparent", v);
        }
        for hop in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"] {
            headers.remove(hop);
        }
    }

    async fn forward(&self, pool: &Pool, req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        let max = self.config.gateway.max_message_bytes;
        let tripped = Arc::new(AtomicBool::new(false));
        let (parts, body) = req.into_parts();
        let body = Body::new(message_limit::MessageLimit::new(body, max, Arc::clone(&tripped)));
        let mut request = Request::from_parts(parts, body);
        // A request that never left the gateway (its connection had just died) is
        // retried on the next replica; one that was sent is never replayed.
        for _ in 0..pool.replicas.len() {
            let (replica, mut sender) = pool.pick().await?;
            let mut uri = replica.uri.clone().into_parts();
            uri.path_and_query = request.uri().path_and_query().cloned();
            *request.uri_mut() = Uri::from_parts(uri).map_err(|_| GatewayError::UpstreamUnavailable)?;
            *request.version_mut() = http::Version::HTTP_2;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(|b| Body::new(UpstreamBody::new(b, tripped, max)))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        tracing::debug!(upstream = %replica.uri, "upstream connection lost before sending; trying another replica");
                        pool.eject(&replica);
                        request = unsent;
                    }
                    None if tripped.load(Ordering::Acquire) => return Err(GatewayError::MessageTooLarge(max)),
                    None => {
                        tracing::debug!(error = %e.into_error(), upstream = %replica.uri, "upstream call failed");
                        return Err(GatewayError::UpstreamUnavailable);
                    }
                },
            }
        }
        Err(GatewayError::UpstreamUnavailable)
    }

    /// `/checkpoint` and `/tile/…`: plain HTTP with HTTP status codes. Hash tiles
    /// and the checkpoint are public; entry bundles say who accessed whose
    /// record, so they need a verified token (the ledger checks the role).
    async fn tiles(&self, mut req: Request<Body>, peer: Option<SocketAddr>) -> Response<Body> {
        use http::StatusCode;
        let path = req.uri().path();
        if !is_canonical_tiles_path(path) {
            return plain_response(StatusCode::NOT_FOUND, "not a tlog-tiles path\n");
        }
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return plain_response(StatusCode::METHOD_NOT_ALLOWED, "tiles are read with GET\n");
        }
        if path.starts_with("/tile/entries/") {
            match self.verifier.verify_header(req.headers().get(header::AUTHORIZATION)) {
                Ok(_) => {}
                Err(quis_auth::AuthError::RevocationListStale) => {
                    return plain_response(StatusCode::SERVICE_UNAVAILABLE, "token verification unavailable\n");
                }
                Err(_) => return plain_response(StatusCode::UNAUTHORIZED, "a verified bearer token is required\n"),
            }
        } else {
            req.headers_mut().remove(header::AUTHORIZATION);
        }
        let headers = req.headers_mut();
        headers.remove(SOURCE_ADDRESS_HEADER);
        headers.remove(FORWARDED_BY_HEADER);
        if let Some(v) = peer.and_then(|p| HeaderValue::from_str(&p.ip().to_string()).ok()) {
            headers.insert(SOURCE_ADDRESS_HEADER, v);
        }
        let Some(base) = &self.tiles else { return plain_response(StatusCode::NOT_FOUND, "no tiles upstream\n") };
        let timeout = Duration::from_millis(self.config.gateway.max_grpc_timeout_ms);
        match tokio::time::timeout(timeout, self.forward_tiles(base, req)).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => plain_response(StatusCode::BAD_GATEWAY, "tiles upstream unavailable\n"),
            Err(_) => plain_response(StatusCode::GATEWAY_TIMEOUT, "tiles upstream timed out\n"),
        }
    }

    async fn forward_tiles(&self, base: &Uri, req: Request<Body>) -> Result<Response<Body>, String> {
        let mut sender = self.dialer.http1(base).await?;
        let (mut parts, body) = req.into_parts();
        let prefix = base.path().trim_end_matches('/');
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        parts.uri = format!("{prefix}{pq}").parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
        parts.version = http::Version::HTTP_11;
        if let Some(host) = base.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            parts.headers.insert(header::HOST, host);
        }
        let response = sender.send_request(Request::from_parts(parts, body)).await.map_err(|e| e.to_string())?;
        Ok(response.map(Body::new))
    }

    /// Publishes the suite's health: each service SERVING while one of its
    /// replicas is, and the suite as a whole while all of them are.
    async fn publish_health(&self, draining: bool) {
        use tonic_health::ServingStatus::{NotServing, Serving};
        for (short, pool) in &self.pools {
            let status = if pool.any_healthy() && !draining { Serving } else { NotServing };
            for full in
                quis_proto::SERVICE_NAMES.iter().filter(|n| service_short_name(&format!("/{n}/x")) == Some(short))
            {
                self.health.set_service_status(*full, status).await;
            }
        }
    }

    /// The health reporter of the suite-wide grpc.health.v1 the gateway serves;
    /// the empty service name is driven by [`UpstreamsReady`] through the runtime.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Runs active health checks of every upstream until `stop`, then turns health NOT_SERVING.
    pub async fn watch_health(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every = Duration::from_millis(self.config.gateway.health_check_interval_ms.max(100));
        loop {
            for pool in self.pools.values() {
                pool.check_health(every.max(Duration::from_millis(500))).await;
            }
            self.publish_health(false).await;
            self.by_address.retain_recent();
            self.by_principal.retain_recent();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        self.publish_health(true).await;
    }
}

/// The path as a metric label: a method the suite serves, the tiles, or
/// `other`, so that callers cannot grow the label set.
fn metric_label(path: &str) -> &'static str {
    if let Some(known) = quis_proto::method_paths().get(path) {
        known
    } else if is_tiles_path(path) {
        "/tiles/get"
    } else {
        quis_core::metrics::OTHER
    }
}

/// The request's `x-request-id` if it is sane, else a new one.
fn request_id(req: &Request<Body>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn is_grpc(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn plain_response(status: http::StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from_static(text.as_bytes()))));
    *response.status_mut() = status;
    response
}

pin_project_lite::pin_project! {
    /// An upstream response body whose transport failure becomes gRPC trailers
    /// (RESOURCE_EXHAUSTED if the request was cut for size, else UNAVAILABLE)
    /// instead of a reset stream, so the caller always gets a status.
    struct UpstreamBody {
        #[pin]
        inner: hyper::body::Incoming,
        tripped: Arc<AtomicBool>,
        max: u32,
        done: bool,
    }
}

impl UpstreamBody {
    fn new(inner: hyper::body::Incoming, tripped: Arc<AtomicBool>, max: u32) -> Self {
        Self { inner, tripped, max, done: false }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(_))) => {
                *this.done = true;
                let err = if this.tripped.load(Ordering::Acquire) {
                    GatewayError::MessageTooLarge(*this.max)
                } else {
                    GatewayError::UpstreamReset
                };
                let status = to_status(&err);
                let mut trailers = http::HeaderMap::new();
                let _ = status.add_header(&mut trailers);
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
            other => other.map_err(|_| tonic::Status::unavailable("upstream reset")),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

/// Readiness of the gateway: every configured service has a healthy replica.
pub struct UpstreamsReady(pub Arc<Gateway>);

impl quis_core::health::ReadinessCheck for UpstreamsReady {
    fn name(&self) -> &str {
        "upstreams"
    }
    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let down: Vec<_> = self.0.pools.iter().filter(|(_, p)| !p.any_healthy()).map(|(n, _)| n.as_str()).collect();
            if down.is_empty() { Ok(()) } else { Err(format!("no healthy replica of {}", down.join(", "))) }
        })
    }
}
