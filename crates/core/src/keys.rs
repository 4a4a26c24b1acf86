//! Key material from files, behind a small interface so a KMS can replace files.
//!
//! Key files are created with mode 0600, and loading refuses a file that group
//! or others can read: a key another local user could copy is not a key.
use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Why key material could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where secret key material comes from. Files today; a KMS later.
pub trait KeySource: Send + Sync {
    /// Returns the secret named `name` (e.g. `keys/token-signing.pem`).
    fn load(&self, name: &str) -> Result<Vec<u8>, KeyError>;
    /// Stores a new secret under `name`; fails if it exists.
    fn create(&self, name: &str, secret: &[u8]) -> Result<(), KeyError>;
    /// Whether `name` exists.
    fn exists(&self, name: &str) -> bool;
}

/// Key files under a directory.
#[derive(Clone, Debug)]
pub struct FileKeySource {
    dir: PathBuf,
}

impl FileKeySource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() { p.to_path_buf() } else { self.dir.join(p) }
    }
}

impl KeySource for FileKeySource {
    fn load(&self, name: &str) -> Result<Vec<u8>, KeyError> {
        read_private(&self.path(name))
    }

    fn create(&self, name: &str, secret: &[u8]) -> Result<(), KeyError> {
        write_private(&self.path(name), secret)
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }
}

/// Reads a 32-byte secret (a signing seed or an encryption key) stored as hex,
/// creating a random one (mode 0600) on first use.
pub fn load_or_create_seed(keys: &dyn KeySource, name: &str) -> Result<[u8; 32], String> {
    if !keys.exists(name) {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        keys.create(name, format!("{}\n", hex::encode(secret)).as_bytes()).map_err(|e| e.to_string())?;
    }
    let text = keys.load(name).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&text).map_err(|_| format!("{name}: not hex text"))?;
    let bytes = hex::decode(text.trim()).map_err(|_| format!("{name}: not hex text"))?;
    bytes.try_into().map_err(|_| format!("{name}: must hold 32 bytes"))
}

/// Reads a key file after checking that only its owner can read it.
pub fn read_private(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path: path.to_path_buf(), mode });
    }
    fs::read(path).map_err(io)
}

/// Creates a key file with mode 0600 (never wider, even briefly); fails if it exists.
pub fn write_private(path: &Path, secret: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
        fs::set_permissions(parent, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(secret).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_keys_are_owner_only_and_open_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = FileKeySource::new(dir.path());
        keys.create("keys/a.pem", b"secret").expect("create");
        let path = dir.path().join("keys/a.pem");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(keys.load("keys/a.pem").expect("load"), b"secret");
        assert!(keys.create("keys/a.pem", b"other").is_err(), "existing keys are never overwritten");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = keys.load("keys/a.pem").expect_err("world-readable key must be refused");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
}
