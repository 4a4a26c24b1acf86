//! The tower layer every gRPC service sits behind: it verifies the bearer
//! token itself (no service trusts a header it did not verify) and hands the
//! typed [`Principal`] to the handler through request extensions. Only
//! grpc.health.v1 answers without a token.
use std::{
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

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: Arc<TokenVerifier>,
}

impl AuthLayer {
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, verifier: Arc::clone(&self.verifier) }
    }
}

/// See [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
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

/// Refuses callers that hold none of `roles`.
pub fn require_any_role(principal: &Principal, roles: &[Role]) -> Result<(), Status> {
    if roles.iter().any(|r| principal.has_role(*r)) { Ok(()) } else { Err(AuthError::MissingRole.into()) }
}
