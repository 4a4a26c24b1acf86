//! The `vault` section: the vault's keys and limits, where policy and the
//! ledger are, and how the vault authenticates to them.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the vault's secrets live; relative paths are under the data
/// directory, absolute ones (e.g. a mounted secrets volume) are used as they are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct VaultKeyConfig {
    /// Directory of the KEK files `k1.hex`, `k2.hex`, ... (32 bytes as hex, mode 0600).
    pub kek_dir: PathBuf,
    /// The KEK that wraps new data keys, e.g. `k2`; unset means the highest-numbered.
    pub active_kek: Option<String>,
    /// The organization secret (32 bytes as hex, mode 0600) keying blind
    /// indexes and relationship keys; separate from every KEK.
    pub org_secret: PathBuf,
}

impl Default for VaultKeyConfig {
    fn default() -> Self {
        Self {
            kek_dir: PathBuf::from("keys/vault-kek"),
            active_kek: None,
            org_secret: PathBuf::from("keys/org-secret.hex"),
        }
    }
}

/// Who a data subject sees in their access history.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAccessor {
    /// The accessor's team (organization unit), as the token named it.
    #[default]
    Team,
    /// The accessor's principal id.
    Person,
}

/// The vault service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    pub keys: VaultKeyConfig,
    /// Searches return at most this many subjects; more are cut and reported as truncated.
    pub max_search_results: usize,
    /// Largest encoded record body, in bytes.
    pub max_record_bytes: usize,
    /// The policy service's gRPC URL; unset means its configured listener.
    pub policy_url: Option<String>,
    /// The ledger's gRPC URL; unset means its configured listener.
    pub ledger_url: Option<String>,
    /// A file holding the vault's service token (re-read when it changes); unset
    /// means tokens minted with the development signing key (`quis init`).
    pub token_file: Option<PathBuf>,
    /// The service principal the vault acts as (`sub` of its tokens).
    pub service_principal: String,
    /// Who a data subject sees in their access history.
    pub history_accessor: HistoryAccessor,
    /// Largest request or answer message, in bytes.
    pub max_message_bytes: usize,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            keys: VaultKeyConfig::default(),
            max_search_results: 50,
            max_record_bytes: 1 << 20,
            policy_url: None,
            ledger_url: None,
            token_file: None,
            service_principal: "vault".into(),
            history_accessor: HistoryAccessor::default(),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

impl VaultConfig {
    /// The rules serde cannot express: the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_search_results == 0 || self.max_search_results > 1000 {
            return Err(("vault.max_search_results", "must be 1 to 1000"));
        }
        if self.max_record_bytes < 1024 || self.max_record_bytes > 64 << 20 {
            return Err(("vault.max_record_bytes", "must be 1024 to 67108864"));
        }
        if self.max_message_bytes < self.max_record_bytes {
            return Err(("vault.max_message_bytes", "must be at least vault.max_record_bytes"));
        }
        if self.service_principal.is_empty() {
            return Err(("vault.service_principal", "must be set"));
        }
        Ok(())
    }
}
