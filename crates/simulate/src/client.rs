//! Real clients of the gateway: one HTTP/2 connection per source address
//! (bound to a loopback address of its own, so that the gateway sees each
//! workstation as a distinct peer and passes that address on to the
//! services), and development tokens minted with the data directory's key,
//! as `quis token` mints them.
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use quis_auth::{
    PrincipalKind, Role,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, keys::FileKeySource};
use tokio::net::TcpSocket;
use tonic::{
    Request,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

/// How long minted tokens live: longer than any simulation takes.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// The gateway, reached from any loopback source address.
pub struct Gateway {
    addr: SocketAddr,
    channels: Mutex<HashMap<Ipv4Addr, Channel>>,
}

impl Gateway {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, channels: Mutex::new(HashMap::new()) }
    }

    /// A channel whose connection comes from `from` (a loopback address).
    pub fn channel(&self, from: Ipv4Addr) -> Result<Channel> {
        let mut channels = self.channels.lock().map_err(|_| anyhow::anyhow!("channel cache poisoned"))?;
        if let Some(channel) = channels.get(&from) {
            return Ok(channel.clone());
        }
        let addr = self.addr;
        let connector = tower::service_fn(move |_| async move {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(from.into(), 0))?;
            let stream = socket.connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .timeout(Duration::from_secs(60))
            .connect_with_connector_lazy(connector);
        channels.insert(from, channel.clone());
        Ok(channel)
    }
}

/// Mints tokens for the simulated principals.
pub struct Tokens {
    signer: TokenSigner,
}

impl Tokens {
    /// The signer of `config`'s data directory (created by `devkeys::init`).
    pub fn load(config: &QuisConfig) -> Result<Self> {
        let signer =
            TokenSigner::load(&FileKeySource::new(&config.data_dir), &config.auth.issuer, &config.auth.audience)
                .with_context(|| format!("no token-signing key in {}", config.data_dir.display()))?;
        Ok(Self { signer })
    }

    /// A staff member's token.
    pub fn staff(&self, id: &str, role: Role, team: &str, site: &str) -> Result<String> {
        let spec = TokenSpec {
            team: Some(team.to_string()),
            site: Some(site.to_string()),
            ttl: TOKEN_TTL,
            ..TokenSpec::new(id, PrincipalKind::Staff, &[role])
        };
        Ok(self.signer.mint(&spec)?.0)
    }

    /// A service's token (the ingest feed).
    pub fn service(&self, id: &str, roles: &[Role]) -> Result<String> {
        let spec = TokenSpec { ttl: TOKEN_TTL, ..TokenSpec::new(id, PrincipalKind::Service, roles) };
        Ok(self.signer.mint(&spec)?.0)
    }
}

/// `message` with `token` as its bearer credential.
pub fn authed<T>(message: T, token: &str) -> Result<Request<T>> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().context("token is not a header value")?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// The ledger index a refusal names, if the service put one in its `ErrorInfo`
/// (denied accesses are recorded too).
pub fn refused_index(status: &tonic::Status) -> Option<u64> {
    use tonic_types::StatusExt;
    status.get_details_error_info()?.metadata.get("ledger_index")?.parse().ok()
}
