//! `quis init`: development key material in the data directory. Existing files
//! are kept, so running it again never replaces a key.
//!
//! - `keys/token-signing.pem` (Ed25519, mode 0600) and `keys/jwks.json`
//! - `pki/ca.crt`, `pki/ca.key`: a development CA
//! - `pki/service.crt`, `pki/service.key`: a certificate for every service
//!   name and loopback, usable as server and client (mutual TLS)
use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use quis_core::keys::{FileKeySource, KeySource};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

use crate::mint::SIGNING_KEY;

/// Path of the JWKS under the data directory.
pub const JWKS_FILE: &str = "keys/jwks.json";

/// DNS names in the development service certificate.
const SERVICE_NAMES: &[&str] =
    &["localhost", "gateway", "identity", "echo", "ledger", "policy", "vault", "sentinel", "witness"];

/// What `init` wrote or found.
#[derive(Debug)]
pub struct DevKeys {
    pub jwks: PathBuf,
    pub signing_key: PathBuf,
    pub ca_cert: PathBuf,
    pub created: Vec<PathBuf>,
}

/// The key id of an Ed25519 public key: the first 8 bytes of its SHA-256, hex.
pub fn kid_for(public: &[u8; 32]) -> String {
    let digest = Sha256::digest(public);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn kid_from_private_pem(pem: &[u8]) -> Result<String, String> {
    let pem = std::str::from_utf8(pem).map_err(|e| e.to_string())?;
    let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())?;
    Ok(kid_for(key.verifying_key().as_bytes()))
}

/// Creates whatever is missing of the development key material under `dir`.
pub fn init(dir: &Path) -> Result<DevKeys, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The data directory holds the stores too: owner only.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let keys = FileKeySource::new(dir);
    let mut created = Vec::new();
    // Existing private keys must still be owner-only: refuse to run on keys others could copy.
    for name in [SIGNING_KEY, "pki/ca.key", "pki/service.key"] {
        if keys.exists(name) {
            keys.load(name).map_err(|e| e.to_string())?;
        }
    }

    if !keys.exists(SIGNING_KEY) {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
        keys.create(SIGNING_KEY, pem.as_bytes()).map_err(|e| e.to_string())?;
        created.push(dir.join(SIGNING_KEY));
    }
    let jwks_path = dir.join(JWKS_FILE);
    // A new signing key gets a new JWKS; an old JWKS would make every new token unknown.
    if !jwks_path.exists() || created.contains(&dir.join(SIGNING_KEY)) {
        let pem = keys.load(SIGNING_KEY).map_err(|e| e.to_string())?;
        let pem = std::str::from_utf8(&pem).map_err(|e| e.to_string())?;
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())?;
        let public = key.verifying_key().to_bytes();
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": kid_for(&public), "x": URL_SAFE_NO_PAD.encode(public),
        }]});
        let text = serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())?;
        std::fs::write(&jwks_path, text).map_err(|e| format!("{}: {e}", jwks_path.display()))?;
        created.push(jwks_path.clone());
    }
    if !keys.exists("pki/ca.key") {
        write_pki(dir, &keys)?;
        created.extend(["pki/ca.crt", "pki/ca.key", "pki/service.crt", "pki/service.key"].map(|p| dir.join(p)));
    }
    Ok(DevKeys { jwks: jwks_path, signing_key: dir.join(SIGNING_KEY), ca_cert: dir.join("pki/ca.crt"), created })
}

fn write_pki(dir: &Path, keys: &FileKeySource) -> Result<(), String> {
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(DnType::CommonName, "Quis development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;

    let leaf_key = KeyPair::generate().map_err(err)?;
    let mut names: Vec<String> = SERVICE_NAMES.iter().map(|s| (*s).to_string()).collect();
    names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    let mut leaf = CertificateParams::new(names).map_err(err)?;
    leaf.distinguished_name.push(DnType::CommonName, "quis-service");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;

    let write_public = |name: &str, pem: String| {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))
    };
    keys.create("pki/ca.key", ca_key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
    write_public("pki/ca.crt", ca_cert.pem())?;
    keys.create("pki/service.key", leaf_key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
    write_public("pki/service.crt", leaf_cert.pem())?;
    Ok(())
}
