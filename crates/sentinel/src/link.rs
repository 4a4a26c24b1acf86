//! Sentinel's connection to the ledger: a tonic channel plus the `sentinel`
//! service principal's credentials.
use std::time::Duration;

use quis_auth::credentials::ServiceCredentials;
use quis_proto::ledger::ledger_service_client::LedgerServiceClient;
use tonic::transport::Channel;

/// A ledger client that authenticates every call.
#[derive(Clone, Debug)]
pub struct LedgerLink {
    channel: Channel,
    credentials: ServiceCredentials,
}

impl LedgerLink {
    pub fn new(channel: Channel, credentials: ServiceCredentials) -> Self {
        Self { channel, credentials }
    }

    /// A link to the ledger at `url`; connects on first use, so the ledger may start later.
    pub fn connect(
        url: &str,
        credentials: ServiceCredentials,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, String> {
        let mut endpoint = Channel::from_shared(url.to_string())
            .map_err(|e| format!("sentinel.ledger_url {url:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| format!("ledger TLS: {e}"))?;
        }
        Ok(Self::new(endpoint.connect_lazy(), credentials))
    }

    pub fn client(&self) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::new(self.channel.clone()).max_decoding_message_size(8 * 1024 * 1024)
    }

    /// A request carrying a current bearer token.
    pub fn request<T>(&self, message: T) -> Result<tonic::Request<T>, tonic::Status> {
        let header = self.credentials.header().map_err(|e| {
            tracing::error!(error = %e, "no token for the ledger");
            tonic::Status::unauthenticated("sentinel has no token for the ledger")
        })?;
        let mut req = tonic::Request::new(message);
        req.metadata_mut().insert("authorization", header);
        Ok(req)
    }
}
