//! The tower layer every gRPC service sits behind: it verifies the bearer
//! token itself (no service trusts a header it did not verify) and hands the
//! typed [`Principal`] to the handler through request extensions. Only
//! grpc.health.v1 answers without a token.
//!
//! It also decides where a call came from ([`source_address`]): the TCP peer,
//! unless the call carries, in `quis-forwarded-by`, a verified token of a
//! trusted forwarder (the gateway), whose `quis-source-address` is then believed.
//! Anyone else who sets that header is ignored, so a caller that reaches a
//! backend directly cannot pass for another address.
use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{Status, body::Body};
use tower::{Layer, Service};

use crate::{
    error::AuthError,
    principal::{Principal, Role},
    verifier::TokenVerifier,
};

/// Paths that answer without a verified identity, per the design.
pub const PUBLIC_GRPC_PREFIXES: &[&str] = &["/grpc.health.v1.Health/"];

/// The header in which the gateway says which peer address it saw.
pub const SOURCE_ADDRESS_HEADER: &str = "quis-source-address";
/// The header in which the gateway presents its own bearer token, vouching for [`SOURCE_ADDRESS_HEADER`].
pub const FORWARDED_BY_HEADER: &str = "quis-forwarded-by";

/// Where a call came from, as [`AuthLayer`] established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceAddress(pub IpAddr);

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: Arc<TokenVerifier>,
    trusted_forwarders: Arc<[String]>,
}

impl AuthLayer {
    /// A layer that believes no forwarder: every source address is the TCP peer.
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self { verifier, trusted_forwarders: Arc::new([]) }
    }

    /// Believes `quis-source-address` on calls vouched for by these service principals.
    pub fn trusting_forwarders(mut self, principals: &[String]) -> Self {
        self.trusted_forwarders = principals.into();
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            verifier: Arc::clone(&self.verifier),
            trusted_forwarders: Arc::clone(&self.trusted_forwarders),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
    trusted_forwarders: Arc<[String]>,
}

impl<S> Authenticated<S> {
    /// The forwarded address if a trusted forwarder vouches for it, else the TCP peer.
    fn source_address(&self, req: &http::Request<Body>) -> Option<IpAddr> {
        let headers = req.headers();
        let forwarded = headers.get(SOURCE_ADDRESS_HEADER).and_then(|v| v.to_str().ok()?.parse::<IpAddr>().ok());
        if let Some(address) = forwarded
            && !self.trusted_forwarders.is_empty()
            && let Some(forwarder) = headers.get(FORWARDED_BY_HEADER)
        {
            match self.verifier.verify_header(Some(forwarder)) {
                Ok(p) if p.is_service() && self.trusted_forwarders.contains(&p.id) => return Some(address),
                Ok(p) => tracing::warn!(principal = %p.id, "quis-forwarded-by from a principal not trusted to forward"),
                Err(e) => tracing::warn!(reason = quis_core::ApiError::reason(&e), "quis-forwarded-by did not verify"),
            }
        }
        req.extensions().get::<tonic::transport::server::TcpConnectInfo>().and_then(|i| i.remote_addr()).map(|a| a.ip())
    }
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, std::future::Ready<Result<http::Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path();
        if PUBLIC_GRPC_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return futures::future::Either::Left(self.inner.call(req));
        }
        match self.verifier.verify_header(req.headers().get(http::header::AUTHORIZATION)) {
            Ok(principal) => {
                if let Some(address) = self.source_address(&req) {
                    req.extensions_mut().insert(SourceAddress(address));
                }
                req.extensions_mut().insert(principal);
                futures::future::Either::Left(self.inner.call(req))
            }
            Err(e) => {
                tracing::debug!(path, reason = quis_core::ApiError::reason(&e), "refused call");
                futures::future::Either::Right(std::future::ready(Ok(Status::from(e).into_http())))
            }
        }
    }
}

/// The verified principal of a request (set by [`AuthLayer`]).
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Arc<Principal>, Status> {
    req.extensions().get::<Arc<Principal>>().cloned().ok_or_else(|| AuthError::Missing.into())
}

/// Where the call came from (set by [`AuthLayer`]): see the module documentation.
pub fn source_address<T>(req: &tonic::Request<T>) -> Option<IpAddr> {
    req.extensions().get::<SourceAddress>().map(|s| s.0)
}

/// Refuses callers that hold none of `roles`.
pub fn require_any_role(principal: &Principal, roles: &[Role]) -> Result<(), Status> {
    if roles.iter().any(|r| principal.has_role(*r)) { Ok(()) } else { Err(AuthError::MissingRole.into()) }
}
