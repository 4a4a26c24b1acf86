//! Sentinel's connection to the ledger: a tonic channel plus the `sentinel`
//! service principal's credentials.
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
