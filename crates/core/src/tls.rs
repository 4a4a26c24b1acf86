//! TLS on every listener and mutual TLS between services (rustls).
//!
//! One certificate, key and CA per process, from the configuration (`quis
//! init` writes a development set). With `tls.mutual`, service listeners
//! require a client certificate signed by the CA, and clients present theirs.
use std::sync::Arc;

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::{config::QuisConfig, keys};

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("{path}: {reason}")]
    Material { path: String, reason: String },
}

/// PEM certificate chain, private key (checked to be owner-only) and CA of this process.
pub struct TlsMaterial {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

impl TlsMaterial {
    pub fn load(config: &QuisConfig) -> Result<Self, TlsError> {
        let read = |p: &std::path::Path| {
            let path = config.path(p);
            std::fs::read(&path)
                .map_err(|e| TlsError::Material { path: path.display().to_string(), reason: e.to_string() })
        };
        Ok(Self {
            cert_pem: read(&config.tls.cert)?,
            key_pem: keys::read_private(&config.path(&config.tls.key))?,
            ca_pem: read(&config.tls.ca)?,
        })
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Material { path: "tls.cert".into(), reason: e.to_string() })
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| TlsError::Material { path: "tls.key".into(), reason: e.to_string() })
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let cert = cert.map_err(|e| TlsError::Material { path: "tls.ca".into(), reason: e.to_string() })?;
            roots.add(cert).map_err(|e| TlsError::Material { path: "tls.ca".into(), reason: e.to_string() })?;
        }
        Ok(roots)
    }

    /// A rustls server configuration offering HTTP/2 and HTTP/1.1 (for gRPC-Web).
    pub fn server_config(&self, require_client_cert: bool) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Material { path: "tls".into(), reason: e.to_string() })?;
        let builder = if require_client_cert {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
                .build()
                .map_err(|e| TlsError::Material { path: "tls.ca".into(), reason: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(self.certs()?, self.key()?)
            .map_err(|e| TlsError::Material { path: "tls.key".into(), reason: e.to_string() })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A rustls client configuration for HTTP/2 towards services, presenting this
    /// process's certificate (for mutual TLS).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Material { path: "tls".into(), reason: e.to_string() })?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.certs()?, self.key()?)
            .map_err(|e| TlsError::Material { path: "tls.key".into(), reason: e.to_string() })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// Tonic's server TLS settings.
    pub fn tonic_server(&self, require_client_cert: bool) -> tonic::transport::ServerTlsConfig {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem));
        if require_client_cert {
            tls.client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
        } else {
            tls
        }
    }

    /// Tonic's client TLS settings, presenting this process's certificate.
    pub fn tonic_client(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}
