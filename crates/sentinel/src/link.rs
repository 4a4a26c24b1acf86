//! Sentinel's connection to the ledger: a tonic channel plus a source of
//! bearer tokens for the `sentinel` service principal. The token source is a
//! closure so that a shared service-credentials component can replace it.
use std::sync::Arc;

use quis_proto::ledger::ledger_service_client::LedgerServiceClient;
use tonic::transport::Channel;

/// Produces a current bearer token for the `sentinel` principal.
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> Result<String, String> + Send + Sync>);

impl TokenSource {
    pub fn new(f: impl Fn() -> Result<String, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource(..)")
    }
}

/// A ledger client that authenticates every call.
#[derive(Clone, Debug)]
pub struct LedgerLink {
    channel: Channel,
    token: TokenSource,
}

impl LedgerLink {
    pub fn new(channel: Channel, token: TokenSource) -> Self {
        Self { channel, token }
    }

    pub fn client(&self) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::new(self.channel.clone()).max_decoding_message_size(8 * 1024 * 1024)
    }

    /// A request carrying a fresh bearer token.
    pub fn request<T>(&self, message: T) -> Result<tonic::Request<T>, tonic::Status> {
        let token = (self.token.0)().map_err(|e| {
            tracing::error!(error = %e, "no token for the ledger");
            tonic::Status::unauthenticated("sentinel has no token for the ledger")
        })?;
        let mut req = tonic::Request::new(message);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::unauthenticated("the token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}
