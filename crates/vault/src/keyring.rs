//! The vault's secrets: its key-encryption keys (KEKs) and the organization
//! secret of blind indexes and relationship keys, loaded through
//! [`quis_core::keys`] (hex files, mode 0600, created on first use).
//!
//! KEKs are files `<kek_dir>/k<N>.hex`. Several are loaded at once so that a
//! rotation can re-wrap data keys in batches while every record stays
//! readable: new data keys go under the active KEK (the highest `N` unless the
//! configuration pins one), older KEKs stay until no data key uses them.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use quis_core::keys::{FileKeySource, load_or_create_seed};
use zeroize::Zeroizing;

/// Where the vault's secrets live (the `vault.keys` section of the configuration).
pub use quis_core::vault::VaultKeyConfig as KeyConfig;

/// Why the vault's keys could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("{0}")]
    Load(String),
    #[error("unexpected file {0} in the key-encryption key directory: only k<N>.hex files belong there")]
    StrayFile(PathBuf),
    #[error("the active key-encryption key {0} is not loaded")]
    ActiveMissing(String),
    #[error("the organization secret must differ from every key-encryption key")]
    SecretReused,
    #[error("no key-encryption key in {0}, yet the store holds sealed data: restore the key files")]
    NoKeys(PathBuf),
    #[error(
        "key-encryption key {0} is not the key it was when first used (its check value differs): restore the right file"
    )]
    WrongKey(String),
    #[error(
        "key-encryption key {kek_id} still wraps {count} data keys but is not loaded: keep it until a rotation moved them"
    )]
    InUseMissing { kek_id: String, count: i64 },
}

/// The loaded KEKs, one of them active.
pub struct Keyring {
    keks: BTreeMap<String, Zeroizing<[u8; 32]>>,
    active: String,
    active_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keks.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl Keyring {
    /// A keyring from keys in memory.
    pub fn from_keys(keys: impl IntoIterator<Item = (String, [u8; 32])>, active: &str) -> Result<Self, KeyringError> {
        let keks: BTreeMap<_, _> = keys.into_iter().map(|(id, key)| (id, Zeroizing::new(key))).collect();
        let active_key = keks.get(active).cloned().ok_or_else(|| KeyringError::ActiveMissing(active.to_string()))?;
        Ok(Self { keks, active: active.to_string(), active_key })
    }

    /// Loads every KEK under `config.kek_dir`. If there is none, creates `k1`
    /// when `create_first` (a new vault), and fails otherwise: a fresh key
    /// would silently make every sealed row unreadable.
    pub fn load(data_dir: &Path, config: &KeyConfig, create_first: bool) -> Result<Self, KeyringError> {
        let keys = FileKeySource::new(data_dir);
        let mut numbered = list_keks(&data_dir.join(&config.kek_dir))?;
        if numbered.is_empty() {
            if !create_first {
                return Err(KeyringError::NoKeys(data_dir.join(&config.kek_dir)));
            }
            numbered.push(1);
        }
        let mut keks = BTreeMap::new();
        for n in &numbered {
            let id = format!("k{n}");
            let path = config.kek_dir.join(format!("{id}.hex"));
            let key = load_or_create_seed(&keys, &path.to_string_lossy()).map_err(KeyringError::Load)?;
            keks.insert(id, key);
        }
        let active = match &config.active_kek {
            Some(id) => id.clone(),
            None => format!("k{}", numbered.iter().max().copied().unwrap_or(1)),
        };
        Self::from_keys(keks, &active)
    }

    /// Creates the next KEK file (`k<N+1>.hex`) and returns its id; it becomes
    /// active on the next [`Keyring::load`] unless the configuration pins another.
    pub fn create_next(data_dir: &Path, config: &KeyConfig) -> Result<String, KeyringError> {
        let next = list_keks(&data_dir.join(&config.kek_dir))?.into_iter().max().unwrap_or(0) + 1;
        let id = format!("k{next}");
        let path = config.kek_dir.join(format!("{id}.hex"));
        load_or_create_seed(&FileKeySource::new(data_dir), &path.to_string_lossy()).map_err(KeyringError::Load)?;
        Ok(id)
    }

    /// The active KEK: its id and key.
    pub fn active(&self) -> (&str, &[u8; 32]) {
        (&self.active, &self.active_key)
    }

    /// The KEK with this id, if loaded.
    pub fn get(&self, id: &str) -> Option<&[u8; 32]> {
        self.keks.get(id).map(|k| &**k)
    }

    /// The ids of every loaded KEK.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keks.keys().map(String::as_str)
    }

    /// A value that identifies the KEK without revealing it:
    /// HMAC-SHA256(KEK, `quis.vault.kek-check.v1`).
    pub fn check_value(&self, id: &str) -> Option<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let kek = self.keks.get(id)?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(kek.as_ref()).ok()?;
        mac.update(b"quis.vault.kek-check.v1");
        Some(mac.finalize().into_bytes().into())
    }

    fn contains_key_material(&self, secret: &[u8; 32]) -> bool {
        self.keks.values().any(|k| **k == *secret)
    }
}

/// Loads (creating it on first use) the organization secret.
pub fn load_org_secret(
    data_dir: &Path,
    config: &KeyConfig,
    keyring: &Keyring,
) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
    let keys = FileKeySource::new(data_dir);
    let secret =
        Zeroizing::new(load_or_create_seed(&keys, &config.org_secret.to_string_lossy()).map_err(KeyringError::Load)?);
    if keyring.contains_key_material(&secret) {
        return Err(KeyringError::SecretReused);
    }
    Ok(secret)
}

/// The numbers N of the `k<N>.hex` files in `dir` (none if it does not exist).
fn list_keks(dir: &Path) -> Result<Vec<u32>, KeyringError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KeyringError::Load(format!("{}: {e}", dir.display()))),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| KeyringError::Load(format!("{}: {e}", dir.display())))?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('k'))
            .and_then(|n| n.strip_suffix(".hex"))
            .filter(|n| !n.starts_with('0'))
            .and_then(|n| n.parse::<u32>().ok());
        match number {
            Some(n) => numbers.push(n),
            None => return Err(KeyringError::StrayFile(path)),
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn first_load_creates_an_owner_only_kek_and_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = KeyConfig::default();
        let ring = Keyring::load(dir.path(), &config, true).expect("load");
        assert_eq!(ring.active().0, "k1");
        let path = dir.path().join("keys/vault-kek/k1.hex");
        assert_eq!(std::fs::metadata(&path).expect("kek").permissions().mode() & 0o777, 0o600);
        let secret = load_org_secret(dir.path(), &config, &ring).expect("secret");
        assert_ne!(*secret, *ring.active().1);
        // Loading again reads the same keys.
        let again = Keyring::load(dir.path(), &config, false).expect("reload");
        assert_eq!(again.active().1, ring.active().1);
        assert_eq!(*load_org_secret(dir.path(), &config, &again).expect("secret"), *secret);
    }

    #[test]
    fn a_missing_kek_is_created_only_for_a_new_vault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = KeyConfig::default();
        let err = Keyring::load(dir.path(), &config, false).expect_err("no keys, existing data");
        assert!(matches!(err, KeyringError::NoKeys(_)), "{err}");
        let ring = Keyring::load(dir.path(), &config, true).expect("new vault");
        assert_eq!(ring.check_value("k1"), Keyring::load(dir.path(), &config, false).expect("again").check_value("k1"));
        assert_eq!(ring.check_value("k9"), None);
    }

    #[test]
    fn the_newest_kek_is_active_unless_pinned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = KeyConfig::default();
        Keyring::load(dir.path(), &config, true).expect("load");
        assert_eq!(Keyring::create_next(dir.path(), &config).expect("next"), "k2");
        let ring = Keyring::load(dir.path(), &config, true).expect("load");
        assert_eq!(ring.active().0, "k2");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k1", "k2"]);
        config.active_kek = Some("k1".into());
        assert_eq!(Keyring::load(dir.path(), &config, true).expect("load").active().0, "k1");
        config.active_kek = Some("k7".into());
        assert_eq!(
            Keyring::load(dir.path(), &config, true).expect_err("missing"),
            KeyringError::ActiveMissing("k7".into())
        );
    }

    #[test]
    fn keys_may_live_outside_the_data_directory() {
        let data = tempfile::tempdir().expect("data");
        let secrets = tempfile::tempdir().expect("secrets");
        let config = KeyConfig {
            kek_dir: secrets.path().join("kek"),
            org_secret: secrets.path().join("org.hex"),
            active_kek: None,
        };
        let ring = Keyring::load(data.path(), &config, true).expect("load");
        load_org_secret(data.path(), &config, &ring).expect("secret");
        assert!(secrets.path().join("kek/k1.hex").exists() && secrets.path().join("org.hex").exists());
        assert!(!data.path().join("keys").exists(), "nothing written in the data directory");
    }

    #[test]
    fn open_or_stray_key_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = KeyConfig::default();
        Keyring::load(dir.path(), &config, true).expect("load");
        let kek = dir.path().join("keys/vault-kek/k1.hex");
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(Keyring::load(dir.path(), &config, true), Err(KeyringError::Load(_))));
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(dir.path().join("keys/vault-kek/k1.hex.bak"), "x").expect("write");
        assert!(matches!(Keyring::load(dir.path(), &config, true), Err(KeyringError::StrayFile(_))));
    }

    #[test]
    fn an_org_secret_equal_to_a_kek_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = KeyConfig { org_secret: PathBuf::from("keys/vault-kek/k1.hex"), ..KeyConfig::default() };
        // Pointing the secret at the KEK file itself is the copy-paste mistake this guards against.
        let ring = Keyring::load(dir.path(), &config, true).expect("load");
        assert_eq!(load_org_secret(dir.path(), &config, &ring).expect_err("reused"), KeyringError::SecretReused);
    }
}
