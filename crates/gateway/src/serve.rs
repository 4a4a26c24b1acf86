//! The gateway's listener: connection limits (in total and per source
//! address), a deadline for a new connection to say something, TLS, HTTP/2
//! and HTTP/1.1 (gRPC-Web) on one port, and graceful shutdown.
use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tower::{Layer, ServiceExt};

use crate::{Gateway, Peer, upstream::Io};

/// Counts open connections per source address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = self.0.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { map: Arc::clone(self), ip })
    }
}

struct AddressSlot {
    map: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.0.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves the gateway on `listener` until `stop`, then lets open calls finish
/// for at most the configured grace period.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, stop: CancellationToken) -> Result<(), String> {
    let config = Arc::clone(&gateway.config);
    let gw = &config.gateway;
    let tls = if config.tls.enabled {
        let material = quis_core::tls::TlsMaterial::load(&config).map_err(|e| e.to_string())?;
        Some(tokio_rustls::TlsAcceptor::from(material.server_config(false).map_err(|e| e.to_string())?))
    } else {
        None
    };
    let connections = Arc::new(Semaphore::new(gw.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let first_bytes = Duration::from_millis(gw.header_read_timeout_ms);
    // Health turns NOT_SERVING at the signal; the listener keeps accepting for the
    // drain delay so that balancers notice before connections are refused.
    let closing = CancellationToken::new();
    tokio::spawn({
        let (stop, closing) = (stop.clone(), closing.clone());
        let delay = Duration::from_millis(config.shutdown.drain_delay_ms);
        async move {
            stop.cancelled().await;
            tokio::time::sleep(delay).await;
            closing.cancel();
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(first_bytes).max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(gw.max_concurrent_streams)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        // Explicit windows: h2's adaptive window caps unread frames per connection
        // and fails calls beyond ~180 in flight on one connection.
        .initial_connection_window_size(4 << 20)
        .initial_stream_window_size(1 << 20);
    let builder = Arc::new(builder);

    let handler = tower::service_fn({
        let gateway = Arc::clone(&gateway);
        move |req: http::Request<Body>| {
            let gateway = Arc::clone(&gateway);
            async move { Ok::<_, Infallible>(gateway.handle(req).await) }
        }
    });
    let service = tonic_web::GrpcWebLayer::new().layer(handler);

    tracing::info!(addr = %listener.local_addr().map_err(|e| e.to_string())?, tls = tls.is_some(), "gateway serving");
    loop {
        let (tcp, peer) = tokio::select! {
            _ = closing.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: gateway.max_connections reached");
            continue;
        };
        let Some(slot) = per_address.acquire(peer.ip(), gw.max_connections_per_address) else {
            tracing::warn!(%peer, "connection refused: gateway.max_connections_per_address reached");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let service = service.clone();
        let gateway = Arc::clone(&gateway);
        let tls = tls.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            let _held = (permit, slot);
            // A connection that says nothing in time is closed, so idle sockets cannot pile up.
            let io: Box<dyn Io> = match tokio::time::timeout(first_bytes, handshake(tcp, tls)).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection closed before the first request");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "connection closed: nothing received in time");
                    return;
                }
            };
            let hyper_service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                let req = req.map(Body::new);
                let service = service.clone();
                let gateway = Arc::clone(&gateway);
                async move {
                    // Tiles are plain HTTP; everything else is gRPC or gRPC-Web.
                    if crate::is_tiles_path(req.uri().path()) {
                        Ok(gateway.handle(req).await)
                    } else {
                        service.oneshot(req).await
                    }
                }
            });
            let conn = builder.serve_connection(TokioIo::new(io), hyper_service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // Wait for open connections to finish their calls, up to the grace period.
    let grace = Duration::from_secs(config.shutdown.grace_secs);
    let all = u32::try_from(gw.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, connections.acquire_many(all)).await.is_err() {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    Ok(())
}

/// Waits for the client's first bytes (plain) or completes the TLS handshake.
async fn handshake(tcp: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<Box<dyn Io>> {
    match tls {
        Some(acceptor) => Ok(Box::new(acceptor.accept(tcp).await?)),
        None => {
            let mut byte = [0u8; 1];
            if tcp.peek(&mut byte).await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            Ok(Box::new(tcp))
        }
    }
}
